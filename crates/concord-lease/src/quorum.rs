//! The configured set of lease peers ([`Quorum`]) and the counting of their
//! answers to one request ([`Tally`]).
//!
//! This module owns what "a majority" means: more than half of the
//! *configured* acceptors, never of the reachable ones, which is why the
//! minority side of a partition cannot acquire. It must never change the
//! membership at run time (reconfiguration is not supported: changing the
//! set while leases are held could break the majority intersection) and
//! never count an acceptor twice.

use std::collections::BTreeSet;

use crate::error::LeaseError;
use crate::ids::NodeId;

/// Largest number of configured acceptors. Lease quorums are meant to be
/// small (3, 5 or 7 peers); the bound keeps tallies and censuses small.
pub const MAX_ACCEPTORS: usize = 31;

/// The fixed set of acceptors every proposer of a deployment is configured
/// with. All proposers must use the same set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quorum {
    members: Vec<NodeId>,
}

impl Quorum {
    /// A quorum of `members`.
    ///
    /// # Errors
    /// [`LeaseError::InvalidConfig`] if the set is empty, larger than
    /// [`MAX_ACCEPTORS`], or names a node twice.
    pub fn new(members: impl IntoIterator<Item = NodeId>) -> Result<Quorum, LeaseError> {
        let mut members: Vec<NodeId> = members.into_iter().take(MAX_ACCEPTORS + 1).collect();
        if members.is_empty() {
            return Err(LeaseError::InvalidConfig("quorum has no acceptors"));
        }
        if members.len() > MAX_ACCEPTORS {
            return Err(LeaseError::InvalidConfig(
                "quorum has more than MAX_ACCEPTORS",
            ));
        }
        members.sort_unstable();
        let before = members.len();
        members.dedup();
        if members.len() != before {
            return Err(LeaseError::InvalidConfig("quorum names an acceptor twice"));
        }
        Ok(Quorum { members })
    }

    /// The members, sorted.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a quorum has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Smallest number of members that is more than half.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: NodeId) -> bool {
        self.members.binary_search(&node).is_ok()
    }
}

/// Distinct members that said yes or no to one request.
///
/// Bounded by the quorum: callers only record members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    yes: BTreeSet<NodeId>,
    no: BTreeSet<NodeId>,
}

impl Tally {
    /// Records a yes from `node`; returns whether it is its first answer
    /// counted as yes. A yes overrides an earlier no (answers to duplicated
    /// requests can arrive in any order).
    pub fn yes(&mut self, node: NodeId) -> bool {
        self.no.remove(&node);
        self.yes.insert(node)
    }

    /// Records a no from `node`, unless it already said yes.
    pub fn no(&mut self, node: NodeId) {
        if !self.yes.contains(&node) {
            self.no.insert(node);
        }
    }

    /// Number of distinct yes.
    pub fn yes_count(&self) -> usize {
        self.yes.len()
    }

    /// Whether a majority of `quorum` said yes.
    pub fn has_majority(&self, quorum: &Quorum) -> bool {
        self.yes.len() >= quorum.majority()
    }

    /// Whether so many said no that a majority of yes is out of reach.
    pub fn is_lost(&self, quorum: &Quorum) -> bool {
        self.no.len() > quorum.len() - quorum.majority()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities() {
        let q = |n: u16| Quorum::new((0..n).map(NodeId)).unwrap();
        assert_eq!(q(1).majority(), 1);
        assert_eq!(q(2).majority(), 2);
        assert_eq!(q(3).majority(), 2);
        assert_eq!(q(4).majority(), 3);
        assert_eq!(q(5).majority(), 3);
        assert!(q(3).contains(NodeId(2)) && !q(3).contains(NodeId(3)));
        assert_eq!(q(3).members(), &[NodeId(0), NodeId(1), NodeId(2)]);
        assert!(!q(3).is_empty());
    }

    #[test]
    fn bad_quorums_are_refused() {
        assert!(Quorum::new([]).is_err());
        assert!(Quorum::new([NodeId(1), NodeId(1)]).is_err());
        assert!(Quorum::new((0..MAX_ACCEPTORS as u16).map(NodeId)).is_ok());
        assert!(Quorum::new((0..=MAX_ACCEPTORS as u16).map(NodeId)).is_err());
    }

    #[test]
    fn tally_counts_each_member_once() {
        let q = Quorum::new((0..5).map(NodeId)).unwrap();
        let mut t = Tally::default();
        assert!(t.yes(NodeId(0)));
        assert!(!t.yes(NodeId(0)));
        t.no(NodeId(0));
        assert_eq!(t.yes_count(), 1);
        t.no(NodeId(1));
        t.no(NodeId(2));
        assert!(!t.is_lost(&q));
        t.no(NodeId(3));
        assert!(t.is_lost(&q));
        // A late yes overrides a no.
        t.yes(NodeId(1));
        t.yes(NodeId(2));
        assert!(t.has_majority(&q));
        assert!(!t.is_lost(&q));
    }
}
