//! Renewals of held leases, and their loss when validity ends.
//!
//! This module owns the rules of a held lease's validity: a renewal starts
//! only while the lease is valid, extends it to the later of the old and
//! the new end, and a lease whose validity ended is lost for good. It must
//! never extend a lease that was already reported lost, and never shorten
//! a validity the application relies on.

use super::{Event, Proposer};
use crate::ballot::FencingToken;
use crate::error::LeaseError;
use crate::ids::LeaseId;
use crate::time::Millis;

impl Proposer {
    pub(super) fn renew(
        &mut self,
        now: Millis,
        lease: LeaseId,
        ttl: Millis,
    ) -> Result<(), LeaseError> {
        self.check_ttl(ttl)?;
        let slot = self
            .leases
            .get_mut(&lease)
            .ok_or(LeaseError::UnknownLease(lease))?;
        if slot.held.is_none() {
            return Err(LeaseError::NotHeld(lease));
        }
        if slot.attempt.is_some() || slot.retry_at.is_some() {
            return Err(LeaseError::RenewInProgress(lease));
        }
        slot.ttl = ttl;
        self.start_attempt(now, lease);
        Ok(())
    }

    /// A renewal of `id` succeeded with a new end of validity
    /// `valid_until`; the lease is still valid (timers fired before the
    /// input that completed it).
    pub(super) fn renewed(&mut self, id: LeaseId, valid_until: Millis) {
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        let Some(held) = slot.held.as_mut() else {
            return;
        };
        // Acceptors keep the later expiry of a renewed entry.
        held.valid_until = held.valid_until.max(valid_until);
        let event = Event::Renewed {
            lease: id,
            resource: slot.resource.clone(),
            token: held.token,
            valid_until: held.valid_until,
        };
        self.events.push_back(event);
    }

    /// The validity of `id` ended: report it lost, tell the acceptors and
    /// forget the request (and any renewal under way).
    pub(super) fn lose(&mut self, id: LeaseId, token: FencingToken) {
        tracing::debug!(proposer = ?self.config.id, lease = ?id, %token, "lease lost");
        let Some(slot) = self.leases.remove(&id) else {
            return;
        };
        if let Some(attempt) = &slot.attempt {
            self.by_ballot.remove(&attempt.ballot);
        }
        self.send_release(id, slot.resource.clone(), token, None);
        self.events.push_back(Event::Lost {
            lease: id,
            resource: slot.resource,
            token,
        });
    }
}
