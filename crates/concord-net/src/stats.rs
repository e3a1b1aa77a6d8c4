//! What the driver reports of each open space on request
//! ([`NetHandle::space_stats`](crate::NetHandle::space_stats)), for
//! operators' metrics: the replica's own counters and epoch, the peers the
//! space's engine syncs with, and its storage as the driver keeps it.
//!
//! This module holds the report's shape; the driver fills it (in its
//! `commands` module) from numbers the sans-IO hub, the replicas and the
//! persist bookkeeping already hold, never changing them and never
//! touching the disk.

use concord_state::{EpochInfo, Stats};

/// One open space, as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpaceStats {
    /// The space's name.
    pub space: String,
    /// Peers its sync engine tracks (connected peers that share it).
    pub peers: usize,
    /// The replica's counters (changes held, pending changes, ...).
    pub replica: Stats,
    /// Where the replica's epoch stands (changes, bytes and ops since its cut).
    pub epoch: EpochInfo,
    /// Bytes of snapshot plus log on its storage.
    pub bytes_on_disk: u64,
    /// Persist ops (records) written to its storage and not yet fsynced.
    pub unsynced: u64,
}
