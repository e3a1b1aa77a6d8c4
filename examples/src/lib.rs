//! Runnable examples of Concord on real systems. Each scenario lives here
//! as a function returning a report (what it measured and read back); the
//! binaries in `examples/` are thin `main`s that run one and print it, and
//! `tests/` assert each report's key claim.
//!
//! - [`git_cas`]: two agents on two nodes commit to one real git repository;
//!   a holder whose lease expired has its compare-and-swap refused.
//! - [`sqlite_optimistic`]: agents on three nodes update SQLite rows with
//!   version checks and fencing tokens; no update is lost, a stale token is
//!   refused.
//! - [`edge_offline`]: a node cut off keeps writing locally, rejoins and
//!   converges; its conflicting intent is resolved by the channel's policy.
//! - [`agent_pipeline`]: researcher, analyzer and summarizer chained with
//!   `space.when(..)` across three nodes, calling a fake model endpoint on
//!   loopback.
//! - [`reconcile`]: a reconciliation loop over real child processes; the
//!   executing node is killed mid-operation and another one carries on.
//!
//! This crate owns the examples only. It must never print a line that does
//! not report something measured or read back, and never talk to anything
//! but loopback and the temp directories it makes.

pub mod agent_pipeline;
mod cluster;
pub mod edge_offline;
mod error;
mod git;
pub mod git_cas;
pub mod llm;
pub mod reconcile;
pub mod sqlite_optimistic;

pub use error::ExampleError;

/// The first 8 hex digits of a git object id (or the whole id if shorter).
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
