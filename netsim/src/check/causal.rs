//! The causal-order checker of one subscriber ([`CausalOrder`]), run per
//! step on every delivered event.
//!
//! It owns the rule that no event comes after an event whose change
//! causally depends on it. It must never modify the replica it reads.

use concord_state::{ChangeHash, EventPosition, Replica, VectorClock};

use crate::ids::IdSet;

/// Checks that one subscriber never receives an event after an event whose
/// change causally depends on it.
///
/// It keeps the down-set (as a vector clock) of every change delivered so
/// far. A new event's change inside that down-set, but not itself delivered
/// before, was overtaken by a descendant: a violation. Events of one change
/// may come several at a time; they are fine.
#[derive(Debug, Default)]
pub struct CausalOrder {
    frontier: VectorClock,
    delivered: IdSet<ChangeHash>,
}

impl CausalOrder {
    /// Records one delivered event; returns `false` on a causality violation.
    pub fn observe(&mut self, replica: &Replica, position: &EventPosition) -> bool {
        if self.delivered.contains(&position.change) {
            return true;
        }
        let ok = !self.frontier.contains(&position.actor, position.seq);
        self.absorb(replica, position.change);
        self.delivered.insert(position.change);
        ok
    }

    /// Adds the change's causal past (logical, across epochs) to the
    /// frontier. The frontier is a union of down-sets, hence down-closed:
    /// the walk stops at changes it already covers, and skips delivered
    /// ones (their pasts were absorbed when they came) without looking them
    /// up in the document.
    fn absorb(&mut self, replica: &Replica, change: ChangeHash) {
        let delivered = &self.delivered;
        let found = replica.causal_past_beyond(&change, &self.frontier, |h| delivered.contains(h));
        self.frontier.merge(&found);
    }
}
