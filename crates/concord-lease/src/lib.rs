//! Sans-IO leased locks with fencing tokens for Concord (DESIGN.md §4, §10).
//!
//! A quorum lease protocol in the spirit of PaxosLease (Trencseni, Gazsó,
//! Reinhardt, 2010) among a fixed, configured set of lease peers: a
//! proposer holds a lease on a resource for a bounded time once a majority
//! of acceptors accepted it. No synchronized clocks are needed, only a bound
//! on clock drift; every grant carries a fencing token that strictly
//! increases per resource, across holders and restarts; counting semaphores
//! allow up to N holders per resource. The machines never do I/O, read a
//! clock or use global randomness: a driver (concord-net on tokio, netsim in
//! virtual time) feeds them `now` and messages and carries out what they
//! ask.
//!
//! Modules, each small and named for what it holds:
//!
//! - [`time`] holds [`Millis`], the drift bound [`DriftBound`] and the safety
//!   argument for lease timing.
//! - [`ids`], [`resource`], [`ballot`] hold names, resource names, ballots and
//!   [`FencingToken`]s (why tokens increase).
//! - [`messages`] holds the wire [`Message`]s and [`Transmit`].
//! - [`quorum`] holds the configured acceptors and majorities.
//! - [`semaphore`] holds [`Permits`], per-resource holder sets and the counting
//!   rule (why at most N holders overlap).
//! - [`acceptor`] holds the [`Acceptor`] machine, its durable [`AcceptorState`]
//!   and the quiet period after a restart.
//! - [`proposer`] holds the [`Proposer`] machine and every decision about a
//!   node's own requests: attempts and retries (at once, up to
//!   [`OUTDATED_RETRIES`] times, for a ballot that merely lagged), renewals,
//!   and releases, which end when every acceptor confirmed them or a
//!   deadline passed ([`Event::Released`]).
//! - `pace` (internal) holds the proposer's learned round timeout and retry
//!   backoff, bounded by [`MAX_ROUND_TIMEOUT_FACTOR`] and
//!   [`MAX_ABANDONED_PHASES`].
//! - [`backend`] holds the [`LeaseBackend`] trait shared with the etcd backend.
//! - [`error`] holds [`LeaseError`].
//!
//! Both machines have the shape of DESIGN §10:
//! `handle_input(now, input)`, then `poll_transmit()` (messages addressed to
//! a peer), plus `poll_event()` / `poll_timeout()` for the proposer and
//! `poll_persist()` for the acceptor, whose replies wait until the driver
//! confirms the state durable. A driver makes no protocol decision of its
//! own: it carries messages, persists, follows `poll_timeout` and maps
//! events to its callers.
//!
//! The rules are checked in one place: netsim (the workspace's `netsim`
//! crate) runs these machines, unchanged, under loss, partitions, crashes
//! with slow fsyncs, drifting clocks and pauses, and checks lease safety
//! and fencing in simulated real time (its `lease-*` scenarios). This
//! crate's tests check the machines together in lockstep
//! (`tests/protocol.rs`), the proposer alone against scripted replies
//! (`tests/scripted.rs`), and a driver through the [`LeaseBackend`] trait
//! (`tests/backend.rs`).

pub mod acceptor;
pub mod backend;
pub mod ballot;
pub mod error;
pub mod ids;
pub mod messages;
mod pace;
pub mod proposer;
pub mod quorum;
pub mod resource;
pub mod semaphore;
pub mod time;

pub use acceptor::{
    Acceptor, AcceptorConfig, AcceptorInput, AcceptorState, AcceptorStats, Persist,
};
pub use backend::{AcquireRequest, BackendError, BoxFuture, Lease, LeaseBackend, LeaseHandle};
pub use ballot::{Ballot, FencingToken};
pub use error::LeaseError;
pub use ids::{Holder, LeaseId, NodeId};
pub use messages::{
    Handoff, HolderInfo, MAX_HANDOFF_BYTES, Message, RejectReason, Transmit, check_handoff,
};
pub use pace::{MAX_ABANDONED_PHASES, MAX_ROUND_TIMEOUT_FACTOR};
pub use proposer::{
    DenyReason, Event, Input, OUTDATED_RETRIES, Proposer, ProposerConfig, ProposerStats,
};
pub use quorum::{MAX_ACCEPTORS, Quorum};
pub use resource::{MAX_RESOURCE_LEN, Resource};
pub use semaphore::{MAX_PERMITS, Permits};
pub use time::{DriftBound, Millis};
