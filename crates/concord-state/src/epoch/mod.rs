//! Epochs: how a long-lived space stays as cheap as its live state.
//!
//! automerge keeps every operation a document ever saw, and applying a
//! remote write costs time in proportion to the history of the map it
//! writes. So a space's document is replaced from time to time: a **cut**
//! (a causally closed set of changes, named by its vector clock) starts a
//! new **epoch** whose first document holds only the live state at the cut
//! ([`genesis`]), built identically by every replica that holds the cut.
//!
//! - **Logical sequence numbers.** An actor's changes are numbered across
//!   epochs: in an epoch whose cut holds `cut[actor]` of them, the actor's
//!   `n`-th change in the document is its logical change `cut[actor] + n`.
//!   Vector clocks, `changes_since`, subscriptions' positions and receipts
//!   all speak logical numbers, so they keep working across cuts.
//! - **Cuts join.** Any replica may cut at its own state; a replica that
//!   learns of a cut its own does not contain moves to the *union* of the
//!   two cuts, whose state is the join of the two states ([`cut`]): the
//!   same whichever replica computes it and in whichever order cuts meet.
//!   Concurrent cuts, including cuts made on both sides of a partition,
//!   therefore need no agreement protocol and no leader; they cost one
//!   more switch. A replica only ever moves to a larger cut.
//! - **Writes concurrent with a cut** are carried into the new epoch
//!   ([`translate`]) by a deterministic rewrite that keeps their meaning
//!   (which writes each one replaced, its HLC and actor for the policies,
//!   its topic entry, counter contribution or set member) and that every
//!   replica computes identically, so automerge applies each exactly once.
//!
//! This module owns the cut state, the first document of an epoch and the
//! carrying of changes; the replica decides when to switch. Nothing here
//! does I/O or reads a clock.

pub(crate) mod archive;
pub(crate) mod cut;
pub(crate) mod genesis;
pub(crate) mod origin;
pub(crate) mod translate;

use std::fmt;

use automerge::ChangeHash;

/// Names an epoch: the hash of the seal of its first document (see
/// [`genesis`]). A space's first epoch is named by its genesis change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EpochId(pub ChangeHash);

impl EpochId {
    /// The id's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0.0
    }
}

impl fmt::Display for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0.0[..6]))
    }
}

/// When a replica cuts its epoch on its own (see [`crate::Replica::wants_cut`]).
/// Every threshold counts what the current epoch added since its cut.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EpochConfig {
    /// Changes since the cut. `0` turns automatic cuts off.
    pub max_changes: u64,
    /// Bytes of changes since the cut.
    pub max_bytes: u64,
    /// Operations on any one channel bucket since the cut (automerge's
    /// cost of a remote write grows with its map's history).
    pub max_bucket_ops: u64,
    /// Earlier epochs kept (in memory and in the snapshot) for
    /// [`crate::Replica::history`] and [`crate::Replica::replay`].
    pub retain: usize,
}

impl Default for EpochConfig {
    fn default() -> Self {
        EpochConfig {
            max_changes: 4096,
            max_bytes: 4 * 1024 * 1024,
            max_bucket_ops: 2048,
            retain: 1,
        }
    }
}

impl EpochConfig {
    /// No automatic cuts (a replica still follows its peers' cuts).
    pub fn manual() -> Self {
        EpochConfig {
            max_changes: 0,
            ..EpochConfig::default()
        }
    }
}
