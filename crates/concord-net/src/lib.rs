//! # concord-net — the network driver
//!
//! The only Concord crate that touches the network. A tokio task owns a
//! libp2p [`Swarm`](libp2p::Swarm) (TCP and QUIC, noise, yamux, gossipsub,
//! request-response, identify, opt-in mDNS) and drives the node's sans-IO
//! [`concord_sync::SyncHub`], which owns one sync engine per space: frames
//! from the wire go through concord-sync's codec and limits, the hub's
//! transmits go out as gossipsub publications (fast path) or
//! request-response messages (directed frames), and the one timer follows
//! the hub's `poll_timeout` on tokio's clock. Each space's storage lives
//! beside its engine: the driver writes what the replica hands out to
//! persist and fsyncs it on a blocking thread (the `persist` module). What
//! it sends and receives is counted per protocol ([`NetHandle::traffic`])
//! and per peer, with each peer's round trip ([`NetHandle::peers`]); how
//! long applying received frames and fsyncing took goes into histograms
//! ([`NetHandle::latency`]), and each space's counters can be asked for
//! ([`NetHandle::space_stats`]).
//!
//! It must never implement protocol decisions itself: what to send and when
//! is the hub's business; this crate only moves bytes, keeps peers
//! connected, hands allowlists to the hub and disconnects misbehaving
//! peers.

mod behaviour;
mod codec;
mod driver;
mod handle;
#[cfg(test)]
mod hostile_tests;
mod latency;
pub mod lease;
mod peer_stats;
mod persist;
mod stats;
mod traffic;

pub use driver::{
    COMMAND_QUEUE, MAX_GROUP_COMMIT, NetConfig, NetError, SpaceOptions, spawn, wall_clock,
};
pub use handle::{Durability, NetHandle, PeerInfo, Subscription};
pub use latency::{Histogram, LATENCY_BUCKETS, Latency};
pub use libp2p::{Multiaddr, PeerId, identity, multiaddr};
pub use peer_stats::MAX_TIMED_REQUESTS;
pub use stats::SpaceStats;
pub use traffic::{Flow, Traffic};
