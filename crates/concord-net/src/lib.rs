//! # concord-net — the network driver
//!
//! The only Concord crate that touches the network. A tokio task owns a
//! libp2p [`Swarm`](libp2p::Swarm) (TCP and QUIC, noise, yamux, gossipsub,
//! request-response, identify, opt-in mDNS) and drives one sans-IO
//! [`concord_sync::SyncEngine`] per space: frames from the wire go through
//! concord-sync's codec and limits, the engines' transmits go out as
//! gossipsub publications (fast path) or request-response messages (directed
//! frames), and ticks come from tokio's clock. Each space's storage lives
//! beside its engine: the driver writes what the replica hands out to
//! persist and fsyncs it on a blocking thread (the `persist` module).
//!
//! It must never implement protocol decisions itself: what to send and when
//! is the engine's business; this crate only moves bytes, keeps peers
//! connected, enforces allowlists and disconnects misbehaving peers.

mod behaviour;
mod codec;
mod driver;
mod handle;
#[cfg(test)]
mod hostile_tests;
pub mod lease;
mod persist;

pub use driver::{
    COMMAND_QUEUE, MAX_GROUP_COMMIT, NetConfig, NetError, SpaceOptions, spawn, wall_clock,
};
pub use handle::{NetHandle, PeerInfo, Subscription};
pub use libp2p::{Multiaddr, PeerId, identity};
