//! Sans-IO replication protocol for Concord spaces (see DESIGN.md §3 and §10).
//!
//! - [`wire`]: the frame codec with its hard limits (pure encode/decode).

pub mod wire;
