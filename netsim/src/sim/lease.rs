//! Driving the lease machines inside the event loop: configuration of the
//! lease peers (and of adversarial clocks), lease messages over the
//! simulated network (point-to-point, under the same loss, latency,
//! partitions, crashes and pauses as every other frame), proposer timers on
//! each node's own clock, the acceptors' simulated fsyncs; the applications
//! that use the proposers, and what they tell the lease checker, are in
//! `app`.
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

mod app;

use concord_lease::{
    AcceptorConfig, AcceptorInput, DriftBound, Input, LeaseError, Message, Millis,
    NodeId as LeaseNodeId, Permits, ProposerConfig, Quorum, Resource,
};
use rand::Rng;

use super::{Event, Sim};
use crate::check::{Kind, LeaseCheck};
use crate::lease::{LeaseLocal, LeaseNode, frame_name};
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
            self.handoff_check.acceptor_restarted();
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
}
