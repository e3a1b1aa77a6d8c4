//! Acquisitions and attempts: a request's slot, the two phases of every
//! attempt (of an acquisition or a renewal), retries after a backoff or at
//! once for a lagging ballot, and giving up.
//!
//! This module owns when an attempt starts, succeeds, fails and is tried
//! again, and when a request is denied. It must never start an attempt
//! past the end of its request (beyond the [`OUTDATED_RETRIES`] allowance
//! of a fresh acquisition), never report a grant whose validity already
//! ended, and never let a fresh acquisition preempt its own node's renewal.

use rand::Rng;

use super::{DenyReason, Event, Proposer};
use crate::ballot::{Ballot, FencingToken};
use crate::error::LeaseError;
use crate::ids::{LeaseId, NodeId};
use crate::messages::{Handoff, HolderInfo, Message, RejectReason};
use crate::quorum::Tally;
use crate::resource::Resource;
use crate::semaphore::{Census, Permits};
use crate::time::Millis;

/// How many times a fresh acquisition is tried again at once, although
/// its wait is spent, after a majority refused it as
/// [`RejectReason::Outdated`]: its ballots lagged the acceptors' promises
/// (the proposer was quiet while others worked, or restarted), which says
/// nothing about whether the resource is free, and the refusals taught it
/// the round to use.
pub const OUTDATED_RETRIES: u8 = 2;

/// Why an attempt failed when acceptors refused it for `reason`: acceptors
/// whose permits are all held by others refuse as [`RejectReason::Full`],
/// which means [`DenyReason::Busy`].
fn refused(reason: RejectReason) -> DenyReason {
    match reason {
        RejectReason::Full => DenyReason::Busy,
        other => DenyReason::Rejected(other),
    }
}

/// A held lease: its token and end of validity on the local clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) token: FencingToken,
    pub(super) valid_until: Millis,
}

#[derive(Debug)]
enum Phase {
    Prepare { tally: Tally, census: Census },
    Propose { tally: Tally, token: FencingToken },
}

/// One attempt under way.
#[derive(Debug)]
pub(super) struct Attempt {
    pub(super) ballot: Ballot,
    /// When the current phase's messages went out: in the propose phase,
    /// the `sent` from which a granted lease's validity counts.
    pub(super) phase_sent: Millis,
    pub(super) deadline: Millis,
    phase: Phase,
    last_reject: Option<RejectReason>,
    /// The handoff with the highest token among the promises so far.
    handoff: Option<Handoff>,
}

impl Attempt {
    /// The token of the grant this attempt proposed, if it got that far.
    pub(super) fn proposed(&self) -> Option<FencingToken> {
        match self.phase {
            Phase::Propose { token, .. } => Some(token),
            Phase::Prepare { .. } => None,
        }
    }
}

/// One request from `Acquire` until it is denied, lost or released.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) resource: Resource,
    permits: Permits,
    pub(super) ttl: Millis,
    /// Acquisition: give up after this. Unused once held.
    wait_until: Millis,
    /// Acquisition: tries left after a refusal as outdated.
    outdated_retries: u8,
    pub(super) held: Option<Held>,
    pub(super) attempt: Option<Attempt>,
    pub(super) retry_at: Option<Millis>,
}

impl Slot {
    /// When the request must be done: the end of the caller's wait, or of
    /// the validity of a lease being renewed.
    fn deadline(&self) -> Millis {
        self.held.map_or(self.wait_until, |h| h.valid_until)
    }

    /// When a phase starting at `now` gives up waiting for a majority:
    /// after `timeout`, but no later than the request's deadline unless
    /// that leaves less than `base`.
    fn phase_deadline(&self, now: Millis, timeout: Millis, base: Millis) -> Millis {
        now.saturating_add(timeout)
            .min(self.deadline())
            .max(now.saturating_add(base))
    }

    /// The request's timers: end of validity, phase deadline, retry.
    pub(super) fn timers(&self) -> [Option<Millis>; 3] {
        [
            self.held.map(|h| h.valid_until),
            self.attempt.as_ref().map(|a| a.deadline),
            self.retry_at,
        ]
    }
}

impl Proposer {
    pub(super) fn check_ttl(&self, ttl: Millis) -> Result<(), LeaseError> {
        if ttl > self.config.max_ttl || self.config.drift.local_validity(ttl) == Millis::ZERO {
            return Err(LeaseError::InvalidTtl {
                ttl,
                max: self.config.max_ttl,
            });
        }
        Ok(())
    }

    pub(super) fn acquire(
        &mut self,
        now: Millis,
        lease: LeaseId,
        resource: Resource,
        ttl: Millis,
        permits: Permits,
        wait: Millis,
    ) -> Result<(), LeaseError> {
        self.check_ttl(ttl)?;
        if self.leases.contains_key(&lease) || self.releases.contains_key(&lease) {
            return Err(LeaseError::LeaseInUse(lease));
        }
        if self.lease_count() >= self.config.max_leases {
            return Err(LeaseError::TooManyLeases {
                max: self.config.max_leases,
            });
        }
        self.leases.insert(
            lease,
            Slot {
                resource,
                permits,
                ttl,
                wait_until: now.saturating_add(wait),
                outdated_retries: OUTDATED_RETRIES,
                held: None,
                attempt: None,
                retry_at: None,
            },
        );
        self.start_attempt(now, lease);
        Ok(())
    }

    pub(super) fn start_attempt(&mut self, now: Millis, id: LeaseId) {
        if self.own_attempt_under_way(id) {
            // Its higher ballot would only preempt our own attempt.
            self.retry_or_give_up(now, id, DenyReason::Busy);
            return;
        }
        let ballot = Ballot::new(self.round.saturating_add(1), self.config.id);
        let timeout = self.round_timeout();
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        slot.retry_at = None;
        let ballot = match ballot {
            Ok(b) => b,
            Err(_) => {
                self.give_up(id, DenyReason::RoundsExhausted);
                return;
            }
        };
        self.round = ballot.round();
        self.stats.attempts += 1;
        slot.attempt = Some(Attempt {
            ballot,
            phase_sent: now,
            deadline: slot.phase_deadline(now, timeout, self.config.round_timeout),
            phase: Phase::Prepare {
                tally: Tally::default(),
                census: Census::default(),
            },
            last_reject: None,
            handoff: None,
        });
        let message = Message::Prepare {
            resource: slot.resource.clone(),
            ballot,
            limit: slot.permits,
        };
        self.by_ballot.insert(ballot, id);
        self.broadcast(&message);
    }

    /// Whether `id` is a fresh acquisition and another request of this
    /// proposer for the same resource has an attempt under way. Such an
    /// acquisition waits: a renewal must not be preempted by its own
    /// node's next request (and a renewal itself never waits).
    fn own_attempt_under_way(&self, id: LeaseId) -> bool {
        let Some(slot) = self.leases.get(&id).filter(|s| s.held.is_none()) else {
            return false;
        };
        self.leases
            .iter()
            .any(|(other, s)| *other != id && s.resource == slot.resource && s.attempt.is_some())
    }

    /// Ends the current attempt of `id` and schedules a retry or gives up.
    pub(super) fn fail_attempt(&mut self, now: Millis, id: LeaseId, reason: DenyReason) {
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        let Some(attempt) = slot.attempt.take() else {
            return;
        };
        self.by_ballot.remove(&attempt.ballot);
        // A fresh grant that may have been accepted: clean it up. (Never for
        // a renewal: its token is the one still in use.)
        let cleanup = attempt.proposed().filter(|_| slot.held.is_none());
        let resource = slot.resource.clone();
        let reason = match (reason, attempt.last_reject) {
            (DenyReason::NoQuorum, Some(r)) => refused(r),
            (reason, _) => reason,
        };
        if let Some(token) = cleanup {
            self.send_release(id, resource, token, None);
        }
        self.retry_or_give_up(now, id, reason);
    }

    /// Schedules the next attempt of `id` after a backoff, or gives up if
    /// that would be too late (after `wait`, or after the validity of a
    /// lease being renewed). A fresh acquisition refused because its ballot
    /// lagged is instead tried again at once, [`OUTDATED_RETRIES`] times.
    fn retry_or_give_up(&mut self, now: Millis, id: LeaseId, reason: DenyReason) {
        let next = now.saturating_add(self.backoff());
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        if next < slot.deadline() {
            slot.retry_at = Some(next);
        } else if slot.held.is_none()
            && reason == DenyReason::Rejected(RejectReason::Outdated)
            && slot.outdated_retries > 0
        {
            slot.outdated_retries -= 1;
            self.stats.outdated_retries += 1;
            self.start_attempt(now, id);
        } else {
            self.give_up(id, reason);
        }
    }

    /// Stops trying for `id`: a held lease keeps its validity (renewal
    /// failed), an unheld request is denied and forgotten.
    fn give_up(&mut self, id: LeaseId, reason: DenyReason) {
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        slot.retry_at = None;
        if let Some(attempt) = slot.attempt.take() {
            self.by_ballot.remove(&attempt.ballot);
        }
        if let Some(held) = slot.held {
            self.events.push_back(Event::RenewFailed {
                lease: id,
                resource: slot.resource.clone(),
                reason,
                valid_until: held.valid_until,
            });
        } else if let Some(slot) = self.leases.remove(&id) {
            tracing::debug!(proposer = ?self.config.id, lease = ?id, ?reason, "denied");
            self.events.push_back(Event::Denied {
                lease: id,
                resource: slot.resource,
                reason,
            });
        }
    }

    /// The learned round timeout.
    pub(super) fn round_timeout(&self) -> Millis {
        self.pace.round_timeout(self.config.round_timeout)
    }

    /// A random wait between one and two times the learned retry backoff.
    fn backoff(&mut self) -> Millis {
        let base = self.pace.retry_backoff(self.config.retry_backoff).0.max(1);
        Millis(base.saturating_add(self.rng.random_range(0..base)))
    }

    pub(super) fn on_promise(
        &mut self,
        now: Millis,
        id: LeaseId,
        from: NodeId,
        holders: &[HolderInfo],
        handoff: Option<Handoff>,
    ) {
        let me = self.holder(id);
        let quorum = &self.config.acceptors;
        let (timeout, base) = (self.round_timeout(), self.config.round_timeout);
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        let deadline = slot.phase_deadline(now, timeout, base);
        let Some(attempt) = slot.attempt.as_mut() else {
            return;
        };
        let Phase::Prepare { tally, census } = &mut attempt.phase else {
            return; // late promise; already proposing
        };
        if tally.yes(from) {
            census.add(holders, me);
            if let Some(h) = handoff
                && attempt
                    .handoff
                    .as_ref()
                    .is_none_or(|kept| kept.token < h.token)
            {
                attempt.handoff = Some(h);
            }
        }
        if !tally.has_majority(quorum) {
            return;
        }
        self.pace.answered(now.saturating_sub(attempt.phase_sent));
        if !census.admits(slot.permits) {
            self.fail_attempt(now, id, DenyReason::Busy);
            return;
        }
        let ballot = attempt.ballot;
        let token = slot.held.map_or(ballot.token(), |h| h.token);
        attempt.phase = Phase::Propose {
            tally: Tally::default(),
            token,
        };
        attempt.phase_sent = now;
        attempt.deadline = deadline;
        let message = Message::Propose {
            resource: slot.resource.clone(),
            ballot,
            limit: slot.permits,
            holder: me,
            token,
            ttl: slot.ttl,
        };
        self.broadcast(&message);
    }

    pub(super) fn on_accepted(&mut self, now: Millis, id: LeaseId, from: NodeId) {
        let quorum = &self.config.acceptors;
        let drift = self.config.drift;
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        let Some(attempt) = slot.attempt.as_mut() else {
            return;
        };
        let sent = attempt.phase_sent;
        let Phase::Propose { tally, token } = &mut attempt.phase else {
            return; // cannot happen for an honest acceptor; ignore
        };
        tally.yes(from);
        if !tally.has_majority(quorum) {
            return;
        }
        let valid_until = sent.saturating_add(drift.local_validity(slot.ttl));
        let token = *token;
        let ballot = attempt.ballot;
        let handoff = attempt.handoff.take();
        slot.attempt = None;
        let renewal = slot.held.is_some();
        let resource = slot.resource.clone();
        if !renewal && now < valid_until {
            slot.held = Some(Held { token, valid_until });
        }
        self.pace.answered(now.saturating_sub(sent));
        self.by_ballot.remove(&ballot);
        if renewal {
            // Still valid: timers fired before this input.
            self.renewed(id, valid_until);
        } else if now < valid_until {
            tracing::debug!(proposer = ?self.config.id, lease = ?id, %token, %valid_until, "acquired");
            self.events.push_back(Event::Acquired {
                lease: id,
                resource,
                token,
                valid_until,
                handoff,
            });
        } else {
            // Granted, but the answers took longer than the validity: give
            // it up (with no handoff: the previous holder's stays in place).
            self.send_release(id, resource, token, None);
            self.retry_or_give_up(now, id, DenyReason::NoQuorum);
        }
    }

    pub(super) fn on_reject(
        &mut self,
        now: Millis,
        id: LeaseId,
        from: NodeId,
        ballot: Ballot,
        promised: Ballot,
        reason: RejectReason,
    ) {
        if reason == RejectReason::Outdated && promised == ballot {
            return; // our own ballot, promised before: a duplicated request
        }
        let quorum = &self.config.acceptors;
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        let Some(attempt) = slot.attempt.as_mut() else {
            return;
        };
        attempt.last_reject = Some(reason);
        let tally = match &mut attempt.phase {
            Phase::Prepare { tally, .. } | Phase::Propose { tally, .. } => tally,
        };
        tally.no(from);
        if tally.is_lost(quorum) {
            self.fail_attempt(now, id, refused(reason));
        }
    }
}
