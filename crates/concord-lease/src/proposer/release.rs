//! Releases the application asks for: the lease ends at once, `Release`
//! goes to every acceptor, and the request is over ([`Event::Released`])
//! when every acceptor confirmed or the round timeout passed: the learned
//! one, as for any phase, so that acceptors that are merely slow (far away,
//! or behind a slow disk: their confirmation waits for the write before it)
//! are waited for, and an unreachable one costs no more than a phase.
//!
//! This module owns that wait and its deadline. It must never treat a
//! released lease as valid, never count a confirmation of another release
//! (another token, an older request of the same id) or an acceptor twice,
//! and never keep a release past its deadline.

use super::{Event, Proposer};
use crate::ballot::FencingToken;
use crate::error::LeaseError;
use crate::ids::{Holder, LeaseId, NodeId};
use crate::quorum::Tally;
use crate::resource::Resource;
use crate::time::Millis;

/// A released request waiting for the acceptors' confirmations.
#[derive(Debug)]
pub(super) struct Releasing {
    resource: Resource,
    /// The token of the lease if it was held (for the event).
    held: Option<FencingToken>,
    /// The token whose grant is given up.
    token: FencingToken,
    /// Acceptors that confirmed.
    confirmed: Tally,
    /// Stop waiting for confirmations at this time.
    deadline: Millis,
}

impl Releasing {
    /// When the release ends, confirmed or not.
    pub(super) fn deadline(&self) -> Millis {
        self.deadline
    }
}

impl Proposer {
    /// Gives up `lease`: its validity ends now; the acceptors are told if a
    /// grant may exist (held, or proposed by the attempt under way).
    pub(super) fn release(
        &mut self,
        now: Millis,
        lease: LeaseId,
        handoff: Option<Vec<u8>>,
    ) -> Result<(), LeaseError> {
        crate::check_handoff(handoff.as_deref())?;
        let slot = self
            .leases
            .remove(&lease)
            .ok_or(LeaseError::UnknownLease(lease))?;
        let held = slot.held.map(|h| h.token);
        let mut token = held;
        if let Some(attempt) = &slot.attempt {
            self.by_ballot.remove(&attempt.ballot);
            token = attempt.proposed().or(token);
        }
        let Some(token) = token else {
            // Nothing was ever proposed: no acceptor holds anything.
            self.events.push_back(Event::Released {
                lease,
                resource: slot.resource,
                token: None,
                confirmed_by_all: true,
            });
            return Ok(());
        };
        self.send_release(lease, slot.resource.clone(), token, handoff);
        let releasing = Releasing {
            resource: slot.resource,
            held,
            token,
            confirmed: Tally::default(),
            deadline: now.saturating_add(self.round_timeout()),
        };
        self.releases.insert(lease, releasing);
        Ok(())
    }

    /// Acceptor `from` confirms that it holds no grant of `holder` with
    /// `token`.
    pub(super) fn on_released(
        &mut self,
        from: NodeId,
        resource: &Resource,
        holder: Holder,
        token: FencingToken,
    ) -> Result<(), LeaseError> {
        if holder.node != self.config.id {
            return Err(LeaseError::Malformed(
                "confirms the release of another node's holder",
            ));
        }
        let all = self.config.acceptors.len();
        let Some(releasing) = self
            .releases
            .get_mut(&holder.lease)
            .filter(|r| r.token == token && &r.resource == resource)
        else {
            return Ok(()); // a loss, a cleanup, or a release that is over
        };
        releasing.confirmed.yes(from);
        if releasing.confirmed.yes_count() >= all {
            self.end_release(holder.lease, true);
        }
        Ok(())
    }

    /// Ends every release whose deadline passed at `now`.
    pub(super) fn end_overdue_releases(&mut self, now: Millis) {
        let overdue: Vec<LeaseId> = self
            .releases
            .iter()
            .filter(|(_, r)| now >= r.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            self.stats.unconfirmed_releases += 1;
            self.end_release(id, false);
        }
    }

    fn end_release(&mut self, lease: LeaseId, confirmed_by_all: bool) {
        let Some(releasing) = self.releases.remove(&lease) else {
            return;
        };
        tracing::debug!(proposer = ?self.config.id, lease = ?lease, confirmed_by_all, "released");
        self.events.push_back(Event::Released {
            lease,
            resource: releasing.resource,
            token: releasing.held,
            confirmed_by_all,
        });
    }
}
