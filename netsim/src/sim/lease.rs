//! Driving the lease machines inside the event loop: configuration of the
//! lease peers (and of adversarial clocks), lease messages over the
//! simulated network (point-to-point, under the same loss, latency,
//! partitions, crashes and pauses as every other frame), proposer timers on
//! each node's own clock, the acceptors' simulated fsyncs, the applications
//! (acquire, hold, renew, write, release and wait for the release to be
//! done, or walk away), and feeding the lease checker.
//!
//! It owns the order in which lease inputs reach the machines. It must
//! never make a protocol decision the machines make in production (when to
//! retry, how long to wait for an answer or a confirmation: it follows
//! `poll_timeout` and the events, like concord-net's lease node), never
//! bypass the network for a lease message (a proposer's message to the
//! acceptor on its own node crosses the node's loopback link too), show a
//! node anything but its own clock, or draw randomness from anything but
//! the simulator's lease stream. A proposer timer that does not move past
//! the moment it fired is reported as a protocol violation.

use concord_lease::{
    AcceptorConfig, AcceptorInput, DriftBound, Event as LeaseEvent, Input, LeaseError, LeaseId,
    Message, Millis, NodeId as LeaseNodeId, Permits, ProposerConfig, Quorum, Resource,
};
use rand::Rng;

use super::{Event, Sim};
use crate::check::{Kind, LeaseCheck};
use crate::lease::{Agent, Holding, LeaseLocal, LeaseNode, PendingWrite, frame_name};
use crate::node::{Inbound, NodeId, Status};
use crate::scenario::LeasePlan;
use crate::trace::TraceEvent;

/// Lease work scheduled in the event queue.
pub(super) enum Scheduled {
    /// A proposer timer (virtual time of the deadline it was armed for).
    Timer { node: NodeId, at: u64 },
    /// An acceptor's fsync completes.
    Synced {
        node: NodeId,
        generation: u64,
        version: u64,
    },
    /// Work of the process itself, queued while it is paused.
    Local {
        node: NodeId,
        generation: u64,
        work: LeaseLocal,
    },
}

/// The lease id of node `i`, if it fits.
fn lease_id(i: usize) -> Option<LeaseNodeId> {
    u16::try_from(i).ok().map(LeaseNodeId)
}

/// The resources and machines of a lease plan, validated.
pub(super) struct LeaseSetup {
    pub(super) resources: Vec<(Resource, Permits)>,
    pub(super) nodes: Vec<LeaseNode>,
}

/// Validates `plan` for `peers` nodes and builds every node's machines.
pub(super) fn setup(plan: &LeasePlan, peers: usize) -> Result<LeaseSetup, String> {
    let resources = plan
        .resources
        .iter()
        .map(|r| Ok((Resource::new(r.name.as_str())?, Permits::new(r.permits)?)))
        .collect::<Result<Vec<_>, LeaseError>>()
        .map_err(|e| format!("lease plan: {e}"))?;
    let acceptors = plan.acceptors.min(peers);
    let quorum =
        Quorum::new((0..acceptors).filter_map(lease_id)).map_err(|e| format!("lease plan: {e}"))?;
    let drift = DriftBound::from_ppm(plan.drift_bound_ppm).map_err(|e| format!("{e}"))?;
    let mut nodes = Vec::with_capacity(peers);
    for i in 0..peers {
        let id = lease_id(i);
        let acceptor = id.filter(|_| plan.is_acceptor(i)).map(|id| AcceptorConfig {
            max_ttl: Millis(plan.max_ttl_ms),
            ..AcceptorConfig::new(id)
        });
        let proposer = id.filter(|_| plan.is_proposer(i)).map(|id| ProposerConfig {
            drift,
            max_ttl: Millis(plan.max_ttl_ms),
            round_timeout: Millis(plan.round_timeout_ms),
            retry_backoff: Millis(plan.retry_backoff_ms),
            ..ProposerConfig::new(id, quorum.clone())
        });
        nodes.push(LeaseNode::new(acceptor, proposer));
    }
    Ok(LeaseSetup { resources, nodes })
}

impl Sim {
    fn lease_plan(&self) -> Option<&LeasePlan> {
        self.plan.lease.as_ref()
    }

    /// Node `id`'s clock, as the lease machines read it.
    fn lease_now(&self, id: NodeId) -> Millis {
        Millis(self.nodes[id.index()].now(self.now).0)
    }

    /// The virtual time (not before now) at which node `id`'s clock reads `t`.
    fn lease_virtual(&self, id: NodeId, t: Millis) -> u64 {
        let t = concord_state::Millis(t.0);
        self.nodes[id.index()].clock.virtual_at(t, self.now)
    }

    fn draw(&mut self, (lo, hi): (u64, u64)) -> u64 {
        self.lease_rng.random_range(lo..=hi.max(lo))
    }

    fn chance(&mut self, ppm: u32) -> bool {
        self.lease_rng.random_range(0..1_000_000) < ppm
    }

    /// Validates the lease plan and builds the machines (before any start).
    pub(super) fn lease_boot(&mut self) {
        let Some(plan) = self.plan.lease.clone() else {
            return;
        };
        match setup(&plan, self.nodes.len()) {
            Ok(setup) => {
                self.lease_check = LeaseCheck::new(setup.resources.iter().map(|(_, p)| p.get()));
                self.lease_resources = setup.resources;
                self.leases = setup.nodes;
            }
            Err(e) => self.violation(Kind::Errors, NodeId(0), e),
        }
        if plan.adversarial_clocks && self.plan.clocks.extreme {
            // Acceptors fast, everyone else slow (see `LeasePlan`).
            for (i, node) in self.nodes.iter_mut().enumerate() {
                let drift = node.clock.drift_ppm.abs();
                node.clock.drift_ppm = if plan.is_acceptor(i) { drift } else { -drift };
            }
        }
    }

    /// Starts node `id`'s lease machines after the process started.
    pub(super) fn lease_start(&mut self, id: NodeId) {
        if self.leases.is_empty() {
            return;
        }
        let seed = self.lease_rng.random();
        let now = self.lease_now(id);
        let disk = self.nodes[id.index()].disk.clone();
        let restarted = self.leases[id.index()].has_started();
        if let Err(e) = self.leases[id.index()].start(&disk, now, seed) {
            return self.violation(Kind::Errors, id, e);
        }
        if restarted && self.leases[id.index()].acceptor.is_some() {
            self.counters.lease.acceptor_restarts += 1;
        }
        if self.leases[id.index()].is_proposer() {
            let start = self.lease_plan().map_or(0, |p| p.start_ms);
            let idle = self.lease_plan().map_or((0, 0), |p| p.idle_ms);
            let at = self.now.max(start) + self.draw(idle);
            self.lease_wake_at(id, at);
        }
    }

    /// Stops node `id`'s lease machines as the process stops.
    pub(super) fn lease_stop(&mut self, id: NodeId, clean: bool) {
        let Some(lease) = self.leases.get_mut(id.index()) else {
            return;
        };
        if let Some(h) = lease.holding() {
            let (resource, grant) = (h.resource, h.grant);
            self.lease_check.end(resource, grant, self.now);
        }
        if let Err(e) = self.leases[id.index()].stop(clean) {
            self.violation(Kind::Errors, id, e);
        }
    }

    /// Called on resume: due proposer timers fire.
    pub(super) fn lease_resume(&mut self, id: NodeId) {
        if self
            .leases
            .get(id.index())
            .is_some_and(|l| l.proposer.is_some())
        {
            self.lease_timer_due(id);
        }
    }

    pub(super) fn lease_dispatch(&mut self, event: Scheduled) {
        match event {
            Scheduled::Timer { node, at } => {
                let n = &self.nodes[node.index()];
                if n.status != Status::Up || self.leases[node.index()].timer_at != Some(at) {
                    return;
                }
                self.leases[node.index()].timer_at = None;
                self.lease_timer_due(node);
                self.lease_check_timer_advanced(node);
            }
            Scheduled::Synced {
                node,
                generation,
                version,
            } => {
                if self.leases[node.index()].generation != generation {
                    return; // the process died before the fsync completed
                }
                if let Err(e) = self.leases[node.index()].sync() {
                    return self.violation(Kind::Errors, node, e);
                }
                self.counters.lease.persisted += 1;
                self.trace.record(
                    self.now,
                    TraceEvent::LeaseDurable {
                        node: node.0,
                        version,
                    },
                );
                self.inbound(node, Inbound::LeaseLocal(LeaseLocal::Persisted(version)));
            }
            Scheduled::Local {
                node,
                generation,
                work,
            } => {
                if self.leases[node.index()].generation == generation {
                    self.inbound(node, Inbound::LeaseLocal(work));
                }
            }
        }
    }

    fn lease_local_at(&mut self, id: NodeId, at: u64, work: LeaseLocal) {
        let generation = self.leases[id.index()].generation;
        self.schedule(
            at,
            Event::Lease(Scheduled::Local {
                node: id,
                generation,
                work,
            }),
        );
    }

    fn lease_wake_at(&mut self, id: NodeId, at: u64) {
        let lease = &mut self.leases[id.index()];
        lease.wake_epoch += 1;
        let epoch = lease.wake_epoch;
        self.lease_local_at(id, at, LeaseLocal::Wake(epoch));
    }

    /// Lease work of the running process `id`.
    pub(super) fn lease_local(&mut self, id: NodeId, work: LeaseLocal) {
        match work {
            LeaseLocal::Wake(epoch) => {
                if self.leases[id.index()].wake_epoch == epoch {
                    self.lease_wake(id);
                }
            }
            LeaseLocal::Persisted(version) => {
                let now = self.lease_now(id);
                let Some(acceptor) = self.leases[id.index()].acceptor.as_mut() else {
                    return;
                };
                let persisted = AcceptorInput::Persisted { version };
                if let Err(e) = self
                    .stopwatch
                    .machine(|| acceptor.handle_input(now, persisted))
                {
                    return self.violation(Kind::Errors, id, format!("persisted: {e}"));
                }
                self.lease_after_acceptor(id);
            }
            LeaseLocal::WriteCheck(lease) => self.lease_write_check(id, lease),
            LeaseLocal::WriteLands(write) => self.lease_write_lands(id, write),
        }
    }

    /// A lease message reaches the running process `id`.
    pub(super) fn lease_message(&mut self, id: NodeId, from: NodeId, bytes: &[u8]) {
        let message: Message = match serde_json::from_slice(bytes) {
            Ok(m) => m,
            Err(e) => {
                return self.violation(
                    Kind::Protocol,
                    id,
                    format!("lease frame from {from:?}: {e}"),
                );
            }
        };
        let Some(sender) = lease_id(from.index()) else {
            return self.violation(Kind::Protocol, id, format!("lease frame from {from:?}"));
        };
        let now = self.lease_now(id);
        let to_acceptor = matches!(
            message,
            Message::Prepare { .. } | Message::Propose { .. } | Message::Release { .. }
        );
        let Some(lease) = self.leases.get_mut(id.index()) else {
            return self.violation(Kind::Protocol, id, format!("lease frame from {from:?}"));
        };
        let watch = &mut self.stopwatch;
        let result = if to_acceptor {
            lease.acceptor.as_mut().map(|a| {
                watch.machine(|| {
                    a.handle_input(
                        now,
                        AcceptorInput::Message {
                            from: sender,
                            message,
                        },
                    )
                })
            })
        } else {
            lease.proposer.as_mut().map(|p| {
                watch.machine(|| {
                    p.handle_input(
                        now,
                        Input::Message {
                            from: sender,
                            message,
                        },
                    )
                })
            })
        };
        match result {
            None => self.violation(
                Kind::Protocol,
                id,
                format!("lease frame from {from:?} for a role this node lacks"),
            ),
            Some(Err(e)) => self.violation(Kind::Protocol, id, format!("lease from {from:?}: {e}")),
            Some(Ok(())) => {}
        }
        if to_acceptor {
            self.lease_after_acceptor(id);
        } else {
            self.lease_after_proposer(id);
        }
    }

    /// After an acceptor input: write new state to disk (durable after a
    /// simulated fsync), send the replies it released.
    fn lease_after_acceptor(&mut self, id: NodeId) {
        let lease = &mut self.leases[id.index()];
        let Some(acceptor) = lease.acceptor.as_mut() else {
            return;
        };
        let (persists, transmits): (Vec<_>, Vec<_>) = self.stopwatch.machine(|| {
            (
                std::iter::from_fn(|| acceptor.poll_persist()).collect(),
                std::iter::from_fn(|| acceptor.poll_transmit()).collect(),
            )
        });
        for p in persists {
            if let Err(e) = self.leases[id.index()].persist(&p) {
                self.violation(Kind::Errors, id, e);
                continue;
            }
            let fsync = self.lease_plan().map_or((0, 0), |l| l.fsync_ms);
            let at = self.now + self.draw(fsync);
            let generation = self.leases[id.index()].generation;
            self.schedule(
                at,
                Event::Lease(Scheduled::Synced {
                    node: id,
                    generation,
                    version: p.version,
                }),
            );
        }
        for t in transmits {
            self.lease_send(id, t.to, &t.message);
        }
    }

    fn lease_send(&mut self, from: NodeId, to: LeaseNodeId, message: &Message) {
        let to = NodeId(u32::from(to.0));
        if to.index() >= self.nodes.len() {
            return self.violation(Kind::Protocol, from, format!("lease message to {to:?}"));
        }
        match serde_json::to_vec(message) {
            Ok(bytes) => {
                self.counters.lease.messages += 1;
                let frame = frame_name(message);
                let msg = Inbound::Lease {
                    from,
                    bytes: bytes.into(),
                    frame,
                };
                self.send(from, to, msg);
            }
            Err(e) => self.violation(Kind::Errors, from, format!("encoding: {e}")),
        }
    }

    /// Feeds the running proposer of `id`, then handles what it produced.
    fn lease_propose(&mut self, id: NodeId, input: Input) -> Result<(), LeaseError> {
        let now = self.lease_now(id);
        let result = match self.leases[id.index()].proposer.as_mut() {
            Some(p) => self.stopwatch.machine(|| p.handle_input(now, input)),
            None => Ok(()),
        };
        self.lease_after_proposer(id);
        result
    }

    fn lease_timer_due(&mut self, id: NodeId) {
        if let Err(e) = self.lease_propose(id, Input::Timeout) {
            self.violation(Kind::Errors, id, format!("timeout: {e}"));
        }
    }

    /// After a timer of `id` fired: a proposer whose next timer is not in
    /// its future would be woken again and again at the same moment. That
    /// is a bug; it is reported, and the timer dropped.
    fn lease_check_timer_advanced(&mut self, id: NodeId) {
        let now = self.lease_now(id);
        let next = self.leases[id.index()]
            .proposer
            .as_ref()
            .and_then(|p| p.poll_timeout());
        if let Some(next) = next.filter(|&t| t <= now) {
            self.leases[id.index()].timer_at = None;
            let what = format!("proposer timer did not advance: {next} after a timeout at {now}");
            self.violation(Kind::Protocol, id, what);
        }
    }

    /// After a proposer input: send, hand events to the application,
    /// re-arm the timer.
    fn lease_after_proposer(&mut self, id: NodeId) {
        loop {
            let Some(proposer) = self.leases[id.index()].proposer.as_mut() else {
                return;
            };
            let (transmits, events): (Vec<_>, Vec<_>) = self.stopwatch.machine(|| {
                (
                    std::iter::from_fn(|| proposer.poll_transmit()).collect(),
                    std::iter::from_fn(|| proposer.poll_event()).collect(),
                )
            });
            if transmits.is_empty() && events.is_empty() {
                break;
            }
            for t in transmits {
                self.lease_send(id, t.to, &t.message);
            }
            for e in events {
                self.lease_event(id, e);
            }
        }
        let timer = self.leases[id.index()]
            .proposer
            .as_ref()
            .and_then(|p| p.poll_timeout())
            .map(|t| self.lease_virtual(id, t));
        let lease = &mut self.leases[id.index()];
        if timer.is_some() && timer != lease.timer_at {
            lease.timer_at = timer;
            if let Some(at) = timer {
                self.schedule(at, Event::Lease(Scheduled::Timer { node: id, at }));
            }
        }
    }

    fn trace_lease(
        &mut self,
        id: NodeId,
        resource: usize,
        what: &'static str,
        token: Option<u64>,
        until: Option<u64>,
    ) {
        let resource = self
            .lease_resources
            .get(resource)
            .map_or_else(String::new, |(r, _)| r.to_string());
        self.trace.record(
            self.now,
            TraceEvent::Lease {
                node: id.0,
                resource,
                what,
                token,
                until,
            },
        );
    }

    /// The application of `id` wakes up: request, renew or release.
    fn lease_wake(&mut self, id: NodeId) {
        let Some(plan) = self.plan.lease.clone() else {
            return;
        };
        match self.leases[id.index()].agent.clone() {
            Agent::Idle if self.now < plan.end_ms && !self.lease_resources.is_empty() => {
                let resource = self.lease_rng.random_range(0..self.lease_resources.len());
                let ttl = Millis(self.draw(plan.ttl_ms));
                let wait = Millis(self.draw(plan.wait_ms));
                let lease_node = &mut self.leases[id.index()];
                let lease = LeaseId(lease_node.next_lease);
                lease_node.next_lease += 1;
                let (name, permits) = self.lease_resources[resource].clone();
                self.leases[id.index()].agent = Agent::Acquiring {
                    lease,
                    resource,
                    token_floor: self.lease_check.token_floor(resource),
                };
                let input = Input::Acquire {
                    lease,
                    resource: name,
                    ttl,
                    permits,
                    wait,
                };
                if let Err(e) = self.lease_propose(id, input) {
                    self.violation(Kind::Errors, id, format!("acquire: {e}"));
                    self.leases[id.index()].agent = Agent::Idle;
                    let at = self.now + self.draw(plan.idle_ms).max(1);
                    self.lease_wake_at(id, at);
                }
            }
            Agent::Holding(h) => {
                let input = if self.now >= h.hold_until {
                    if h.abandon {
                        // Walk away: the lease expires at its holder.
                        if let Agent::Holding(h) = &mut self.leases[id.index()].agent {
                            h.renews = false;
                        }
                        return;
                    }
                    // The holder stops using the lease now; its next
                    // request waits until the release is done.
                    self.lease_check.end(h.resource, h.grant, self.now);
                    self.trace_lease(id, h.resource, "released", Some(h.token.get()), None);
                    self.leases[id.index()].agent = Agent::Releasing {
                        resource: h.resource,
                        token: h.token,
                    };
                    Input::Release { lease: h.lease }
                } else if h.renews {
                    Input::Renew {
                        lease: h.lease,
                        ttl: h.renew_ttl,
                    }
                } else {
                    return self.lease_schedule_holding(id);
                };
                // The lease may run out as the input arrives (due timers
                // fire first): then it is unknown by the time it is named.
                match self.lease_propose(id, input) {
                    Ok(()) | Err(LeaseError::RenewInProgress(_) | LeaseError::UnknownLease(_)) => {}
                    Err(e) => self.violation(Kind::Errors, id, format!("holder: {e}")),
                }
                self.lease_schedule_holding(id);
            }
            Agent::Idle | Agent::Acquiring { .. } | Agent::Releasing { .. } | Agent::Down => {}
        }
    }

    /// Wakes the holder at the end of its hold, or earlier to renew.
    fn lease_schedule_holding(&mut self, id: NodeId) {
        let Some(h) = self.leases[id.index()].holding().cloned() else {
            return;
        };
        let lead = self.draw(self.lease_plan().map_or((0, 0), |p| p.renew_lead_ms));
        let mut at = h.hold_until;
        let held = self.leases[id.index()]
            .proposer
            .as_ref()
            .and_then(|p| p.held(h.lease));
        if h.renews
            && let Some((_, valid_until)) = held
        {
            let renew_local = valid_until.saturating_sub(Millis(lead));
            at = at.min(self.lease_virtual(id, renew_local));
        }
        if self.now >= h.hold_until && h.abandon {
            return;
        }
        self.lease_wake_at(id, at.max(self.now + 5));
    }

    /// What the proposer of `id` tells its application.
    fn lease_event(&mut self, id: NodeId, event: LeaseEvent) {
        let Some(plan) = self.plan.lease.clone() else {
            return;
        };
        let agent = self.leases[id.index()].agent.clone();
        match event {
            LeaseEvent::Acquired {
                lease,
                token,
                valid_until,
                ..
            } => {
                let Agent::Acquiring {
                    lease: expected,
                    resource,
                    token_floor,
                    ..
                } = agent
                else {
                    return self.violation(Kind::Errors, id, "acquired while not acquiring".into());
                };
                if lease != expected {
                    return self.violation(Kind::Errors, id, format!("acquired {lease:?}"));
                }
                self.counters.lease.grants += 1;
                let end = self.lease_virtual(id, valid_until);
                let (grant, found) =
                    self.lease_check
                        .grant(resource, id, token.get(), token_floor, (self.now, end));
                if self.lease_resources[resource].1 != Permits::MUTEX {
                    let l = &mut self.counters.lease;
                    l.peak_semaphore_holders = l
                        .peak_semaphore_holders
                        .max(self.lease_check.holders(resource));
                }
                self.trace_lease(id, resource, "acquired", Some(token.get()), Some(end));
                for v in found {
                    self.violation(Kind::Lease, id, v);
                }
                let hold = self.draw(plan.hold_ms);
                let renews = self.chance(plan.renew_ppm);
                let abandon = self.chance(plan.abandon_ppm);
                let renew_ttl = Millis(self.draw(plan.ttl_ms));
                let holding = Holding {
                    lease,
                    resource,
                    grant,
                    token,
                    hold_until: self.now + hold,
                    renews,
                    renew_ttl,
                    abandon,
                };
                self.leases[id.index()].agent = Agent::Holding(holding);
                if self.lease_resources[resource].1 == Permits::MUTEX {
                    // The first write lands at once: the external system
                    // learns the new token as the lease is granted.
                    let write = PendingWrite {
                        lease,
                        resource,
                        token,
                    };
                    self.lease_write_lands(id, write);
                }
                self.lease_schedule_holding(id);
            }
            LeaseEvent::Renewed {
                token, valid_until, ..
            } => {
                self.counters.lease.renewals += 1;
                if let Agent::Holding(h) = agent {
                    let end = self.lease_virtual(id, valid_until);
                    self.lease_check.extend(h.resource, h.grant, end);
                    self.trace_lease(id, h.resource, "renewed", Some(token.get()), Some(end));
                }
                self.lease_schedule_holding(id);
            }
            LeaseEvent::RenewFailed { .. } => {
                if let Agent::Holding(mut h) = agent {
                    self.trace_lease(id, h.resource, "renew-failed", Some(h.token.get()), None);
                    h.renews = false;
                    self.leases[id.index()].agent = Agent::Holding(h);
                }
                self.lease_schedule_holding(id);
            }
            LeaseEvent::Lost { .. } | LeaseEvent::Denied { .. } | LeaseEvent::Released { .. } => {
                let l = &mut self.counters.lease;
                let what = match event {
                    LeaseEvent::Lost { .. } => {
                        l.expired += 1;
                        "expired"
                    }
                    LeaseEvent::Denied { .. } => {
                        l.denied += 1;
                        "denied"
                    }
                    LeaseEvent::Released {
                        confirmed_by_all: true,
                        ..
                    } => {
                        l.released += 1;
                        "release-confirmed"
                    }
                    _ => {
                        l.released += 1;
                        l.unconfirmed_releases += 1;
                        "release-unconfirmed"
                    }
                };
                match agent {
                    Agent::Holding(h) => {
                        self.lease_check.end(h.resource, h.grant, self.now);
                        self.trace_lease(id, h.resource, what, Some(h.token.get()), None);
                    }
                    Agent::Releasing { resource, token } => {
                        self.trace_lease(id, resource, what, Some(token.get()), None);
                    }
                    Agent::Acquiring { resource, .. } => {
                        self.trace_lease(id, resource, what, None, None);
                    }
                    Agent::Idle | Agent::Down => {}
                }
                self.leases[id.index()].agent = Agent::Idle;
                let at = self.now + self.draw(plan.idle_ms);
                self.lease_wake_at(id, at);
            }
        }
    }

    /// The holder checks its lease; if valid, it starts a write that lands
    /// after some work, without checking again.
    fn lease_write_check(&mut self, id: NodeId, lease: LeaseId) {
        let Some(h) = self.leases[id.index()].holding().cloned() else {
            return;
        };
        let now = self.lease_now(id);
        if h.lease != lease || !self.leases[id.index()].is_valid(lease, now) {
            return;
        }
        let work = self.draw(self.lease_plan().map_or((0, 0), |p| p.work_ms));
        let write = PendingWrite {
            lease,
            resource: h.resource,
            token: h.token,
        };
        self.lease_local_at(id, self.now + work, LeaseLocal::WriteLands(write));
    }

    /// A write reaches the fenced external system.
    fn lease_write_lands(&mut self, id: NodeId, write: PendingWrite) {
        let now = self.lease_now(id);
        let valid = self.leases[id.index()].is_valid(write.lease, now);
        let token = write.token.get();
        let (outcome, violation) = self.lease_check.write(write.resource, token);
        let l = &mut self.counters.lease;
        match (outcome.accepted, outcome.stale) {
            (true, _) if !valid => l.late_writes_accepted += 1,
            (false, true) => l.stale_writes_rejected += 1,
            _ => {}
        }
        if outcome.accepted {
            l.writes_accepted += 1;
        }
        let resource = self
            .lease_resources
            .get(write.resource)
            .map_or_else(String::new, |(r, _)| r.to_string());
        self.trace.record(
            self.now,
            TraceEvent::FencedWrite {
                node: id.0,
                resource,
                token,
                valid,
                stale: outcome.stale,
                accepted: outcome.accepted,
            },
        );
        if let Some(v) = violation {
            self.violation(Kind::Lease, id, v);
        }
        let still_holding = self.leases[id.index()]
            .holding()
            .is_some_and(|h| h.lease == write.lease);
        if still_holding {
            let gap = self.draw(self.lease_plan().map_or((0, 0), |p| p.write_gap_ms));
            self.lease_local_at(id, self.now + gap, LeaseLocal::WriteCheck(write.lease));
        }
    }
}
