//! Identifiers: which node ([`NodeId`]), which lease of a proposer
//! ([`LeaseId`]), and the pair naming a holder on the wire ([`Holder`]).
//!
//! This module owns only names. It must never hold protocol state.

use serde::{Deserialize, Serialize};

/// A lease peer or proposer, as known to the lease protocol.
///
/// The driver maps it to a network address (a peer id in
/// concord-net). It is 16 bits because it is packed into every ballot and
/// fencing token (see [`crate::Ballot`]). Two live proposers must never share
/// a `NodeId`; a proposer that restarts after its old process is gone may
/// reuse it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u16);

/// One lease request of one proposer, chosen by the application.
///
/// It names the request from `Acquire` until `Released`, `Lost` or
/// `Denied`, and may be reused afterwards.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LeaseId(pub u64);

/// A holder of a lease as acceptors see it: the proposer and its lease id.
///
/// Two requests of the same proposer are two holders, so they exclude each
/// other on a mutex and take two permits of a semaphore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Holder {
    /// The proposer.
    pub node: NodeId,
    /// The proposer's request.
    pub lease: LeaseId,
}
