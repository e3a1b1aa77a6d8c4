//! The crate's error type, [`LeaseError`].
//!
//! This module owns the list of ways an input can be refused: invalid
//! configuration, invalid arguments from the application, and malformed or
//! misdirected messages from peers. It must never carry I/O errors (this
//! crate does no I/O) and never be produced by a panic path: every refusal
//! is a value the caller can match on, and the machine's state is left as it
//! was before the refused input.

use thiserror::Error;

use crate::ids::{LeaseId, NodeId};
use crate::time::Millis;

/// Why a machine, constructor or validator refused an input.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LeaseError {
    /// A resource name is empty or longer than [`crate::MAX_RESOURCE_LEN`].
    #[error("invalid resource name ({len} bytes; must be 1..={max})")]
    InvalidResource {
        /// Length of the refused name in bytes.
        len: usize,
        /// The limit, [`crate::MAX_RESOURCE_LEN`].
        max: usize,
    },
    /// A permit count is zero or above [`crate::MAX_PERMITS`].
    #[error("invalid permit count {permits} (must be 1..={max})")]
    InvalidPermits {
        /// The refused count.
        permits: u32,
        /// The limit, [`crate::MAX_PERMITS`].
        max: u32,
    },
    /// A ttl is zero, too short to leave any local validity after the drift
    /// margin, or longer than the configured maximum.
    #[error("invalid ttl {ttl} (must leave some local validity and be at most {max})")]
    InvalidTtl {
        /// The refused ttl.
        ttl: Millis,
        /// The configured maximum ttl.
        max: Millis,
    },
    /// A drift bound above [`crate::time::MAX_DRIFT_PPM`].
    #[error("invalid drift bound {ppm} ppm")]
    InvalidDrift {
        /// The refused bound in parts per million.
        ppm: u32,
    },
    /// A configuration value is out of range; the text names it.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// A ballot round beyond [`crate::Ballot::MAX_ROUND`].
    #[error("ballot round {round} exceeds the maximum")]
    RoundOverflow {
        /// The refused round.
        round: u64,
    },
    /// A message came from a node that is not a configured lease peer.
    #[error("message from {0:?}, which is not a configured lease peer")]
    NotAMember(NodeId),
    /// A message of a kind this role never receives (e.g. a `Promise` sent
    /// to an acceptor).
    #[error("unexpected {kind} message for this role")]
    UnexpectedMessage {
        /// The message kind.
        kind: &'static str,
    },
    /// A message breaks a protocol rule or a bound; the text names it.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The application named a lease this proposer does not track.
    #[error("unknown lease {0:?}")]
    UnknownLease(LeaseId),
    /// The application reused the id of a lease that is still tracked.
    #[error("lease id {0:?} is already in use")]
    LeaseInUse(LeaseId),
    /// Renew was asked for a lease that is not (yet) held.
    #[error("lease {0:?} is not held")]
    NotHeld(LeaseId),
    /// Renew was asked while a renewal of the same lease is under way.
    #[error("lease {0:?} is already being renewed")]
    RenewInProgress(LeaseId),
    /// The proposer already tracks its configured maximum of leases.
    #[error("too many leases (at most {max})")]
    TooManyLeases {
        /// The configured maximum.
        max: usize,
    },
    /// The driver confirmed a persist version the acceptor never handed out.
    #[error("persisted version {version} was never requested (latest {latest})")]
    PersistVersion {
        /// The version the driver confirmed.
        version: u64,
        /// The latest version handed out by `poll_persist`.
        latest: u64,
    },
}
