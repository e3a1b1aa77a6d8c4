//! Ballots and fencing tokens.
//!
//! This module owns the packing of a Paxos ballot `(round, node)` into one
//! `u64`, and the rule that a lease's [`FencingToken`] is the ballot that
//! first granted it. It must never hand out a ballot without validating its
//! round, and never compare ballots by anything but their packed value.
//!
//! # Why tokens strictly increase per resource
//!
//! A ballot is `round << 16 | node`, so ballots are totally ordered, first by
//! round, then by node, and two proposers never build the same ballot. A
//! restarted proposer may rebuild a ballot its previous incarnation used,
//! but acceptors promise a ballot only if it is *strictly* above their
//! promise, so at most one of the two incarnations can collect a majority of
//! promises for it.
//!
//! Acceptors make their promise durable before replying, and a promise never
//! decreases, across restarts too (see [`crate::acceptor`]). A grant at
//! ballot `b` means a majority accepted `b`, so a majority promised at least
//! `b`; any later request meets one of them and must use a ballot above
//! `b`. So a lease requested after another was granted gets a higher token,
//! whoever holds it and whatever restarted in between. For a mutex the
//! proof in [`crate::semaphore`] gives more: tokens increase in the order
//! in which holders hold the lease. Renewals keep the token of the original
//! grant.
//!
//! A fencing token is thus a plain `u64` an external system can store and
//! compare ("accept a write only with a token at least the highest seen").

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::LeaseError;
use crate::ids::NodeId;

/// A Paxos ballot number: `round << 16 | node`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Ballot(u64);

impl Ballot {
    /// The ballot below every ballot a proposer uses (round 0, node 0).
    pub const ZERO: Ballot = Ballot(0);
    /// The largest round that fits: 2^48 - 1.
    pub const MAX_ROUND: u64 = (1 << 48) - 1;

    /// The ballot of `round` for `node`.
    ///
    /// # Errors
    /// [`LeaseError::RoundOverflow`] if `round` exceeds [`Ballot::MAX_ROUND`].
    pub const fn new(round: u64, node: NodeId) -> Result<Ballot, LeaseError> {
        if round > Self::MAX_ROUND {
            return Err(LeaseError::RoundOverflow { round });
        }
        Ok(Ballot(round << 16 | node.0 as u64))
    }

    /// The packed value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The ballot with this packed value (every `u64` is a valid ballot).
    pub const fn from_raw(raw: u64) -> Ballot {
        Ballot(raw)
    }

    /// The round.
    pub const fn round(self) -> u64 {
        self.0 >> 16
    }

    /// The node that owns this ballot.
    pub const fn node(self) -> NodeId {
        NodeId((self.0 & 0xffff) as u16)
    }

    /// The fencing token of a lease first granted at this ballot.
    pub const fn token(self) -> FencingToken {
        FencingToken(self.0)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round(), self.node().0)
    }
}

/// A fencing token: strictly increasing per resource, handed to the code
/// that acts under a lease, and checked by the external system it writes to.
///
/// Quorum leases build it from the granting ballot ([`Ballot::token`]); an
/// etcd backend builds it from the key's revision ([`FencingToken::new`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct FencingToken(u64);

impl FencingToken {
    /// A token with this value (for backends with their own counters).
    pub const fn new(value: u64) -> FencingToken {
        FencingToken(value)
    }

    /// The value, e.g. for `CONCORD_FENCING_TOKEN`.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_node() {
        let a = Ballot::new(1, NodeId(9)).unwrap();
        let b = Ballot::new(2, NodeId(0)).unwrap();
        let c = Ballot::new(2, NodeId(1)).unwrap();
        assert!(Ballot::ZERO < a && a < b && b < c);
        assert_eq!(c.round(), 2);
        assert_eq!(c.node(), NodeId(1));
        assert_eq!(Ballot::from_raw(c.raw()), c);
        assert_eq!(c.to_string(), "2.1");
        assert!(a.token() < b.token());
    }

    #[test]
    fn round_overflow_is_an_error() {
        assert!(Ballot::new(Ballot::MAX_ROUND, NodeId(u16::MAX)).is_ok());
        assert_eq!(
            Ballot::new(Ballot::MAX_ROUND + 1, NodeId(0)),
            Err(LeaseError::RoundOverflow {
                round: Ballot::MAX_ROUND + 1
            })
        );
    }

    #[test]
    fn token_round_trips() {
        assert_eq!(FencingToken::new(42).get(), 42);
        assert_eq!(FencingToken::new(42).to_string(), "42");
    }
}
