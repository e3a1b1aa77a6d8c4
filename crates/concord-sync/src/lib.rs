//! Sans-IO replication protocol for Concord spaces (see DESIGN.md §3 and §10).
//!
//! - [`wire`]: the frame codec with its hard limits (pure encode/decode).
//! - [`engine`]: the sync engine state machine driven by concord-net and netsim.

pub mod engine;
pub mod wire;

pub use engine::{
    Destination, Input, ProtocolError, SyncConfig, SyncEngine, SyncEvent, Transmit, heads_hash,
};
