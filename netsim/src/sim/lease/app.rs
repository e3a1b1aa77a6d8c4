//! The application on each lease proposer: request a lease, hold it
//! (renewing), write to the fenced external system under it, then release
//! it and wait until the release is done, or walk away; and what the lease
//! checker learns from it.
//!
//! It owns the application's choices, all drawn from the simulator's lease
//! stream. It must never make a protocol decision (the proposer's events
//! say what happened to a request), and never write under a lease without
//! checking it first.

use concord_lease::{Event as LeaseEvent, Input, LeaseError, LeaseId, Millis, Permits};
use rand::Rng;

use super::super::Sim;
use crate::check::Kind;
use crate::lease::{Agent, Holding, LeaseLocal, PendingWrite};
use crate::node::NodeId;
use crate::trace::TraceEvent;

impl Sim {
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
    pub(super) fn lease_wake(&mut self, id: NodeId) {
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
                    handoff_floor: self.handoff_check.floor(resource),
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
                    // The handoff is the holder's token: the checker knows
                    // which release each grant's handoff came from.
                    Input::Release {
                        lease: h.lease,
                        handoff: Some(h.token.get().to_be_bytes().to_vec()),
                    }
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
    pub(super) fn lease_event(&mut self, id: NodeId, event: LeaseEvent) {
        let Some(plan) = self.plan.lease.clone() else {
            return;
        };
        let agent = self.leases[id.index()].agent.clone();
        match event {
            LeaseEvent::Acquired {
                lease,
                token,
                valid_until,
                handoff,
                ..
            } => {
                let Agent::Acquiring {
                    lease: expected,
                    resource,
                    token_floor,
                    handoff_floor,
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
                let mutex = self.lease_resources[resource].1 == Permits::MUTEX;
                let handed = handoff
                    .as_ref()
                    .map(|h| (h.token.get(), h.context.as_slice()));
                let missed = self
                    .handoff_check
                    .grant(resource, token.get(), handoff_floor, handed)
                    .filter(|_| mutex);
                for v in found.into_iter().chain(missed) {
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
                        if let Agent::Releasing { resource, token } = agent {
                            self.handoff_check.confirmed(resource, token.get());
                        }
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
    pub(super) fn lease_write_check(&mut self, id: NodeId, lease: LeaseId) {
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
    pub(super) fn lease_write_lands(&mut self, id: NodeId, write: PendingWrite) {
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
