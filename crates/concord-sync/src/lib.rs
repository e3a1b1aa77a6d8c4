//! Sans-IO replication protocol for Concord spaces (see DESIGN.md §3, §5
//! "Many spaces" and §10).
//!
//! - [`wire`]: the frame codec with its hard limits (pure encode/decode).
//! - [`engine`]: the sync engine of one space.
//! - [`hub`]: the sync hub, which owns the engines of every space of a node
//!   and runs one heartbeat per peer for all of them; concord-net and
//!   netsim drive it.

pub mod engine;
pub mod hub;
pub mod wire;

pub use engine::{
    Destination, Input, ProtocolError, SyncConfig, SyncEngine, SyncEvent, Transmit, heads_hash,
};
pub use hub::{HubError, HubEvent, HubInput, HubStats, HubTransmit, SpaceKey, SyncHub, space_key};
