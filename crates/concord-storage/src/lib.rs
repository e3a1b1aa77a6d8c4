//! # concord-storage — durable storage of a Concord space
//!
//! One space's durable state: a snapshot plus an append-only log of
//! checksummed records (see DESIGN.md §5 "Persistence"). This crate owns the
//! on-disk format, the recovery rules and the two backends; it is where
//! Concord's persistence does its file I/O.
//!
//! It must never know what a record means (it stores bytes; the replica in
//! concord-state decides what they are) and never depend on another Concord
//! crate: the sans-IO replica hands out records to persist, and its owner
//! (the network driver, the simulator) writes them here.
//!
//! Two backends implement [`Storage`] on the same on-disk format and the same
//! recovery code (the parsers in this crate):
//!
//! - [`FileStorage`]: the real thing, two files in a directory per space.
//! - [`MemStorage`] on a [`MemDisk`]: a simulated disk for the deterministic
//!   simulator, where [`MemDisk::crash`] loses everything not yet synced.
//!
//! # With a replica
//!
//! The replica (`concord_state::Replica`) never sees a [`Storage`]: its owner
//! loads what storage holds, rebuilds the replica from it, then carries out
//! the ops the replica hands out, fsyncs, and confirms them.
//!
//! ```
//! use concord_state::{ActorId, Durable, Millis, Persist, Replica, ReplicaConfig};
//! use concord_storage::{MemDisk, MemStorage, Storage};
//!
//! let disk = MemDisk::new();
//! let mut storage = MemStorage::new(disk.clone(), "team");
//! let recovered = storage.load()?;
//! if let Some(torn) = recovered.torn_tail {
//!     eprintln!("dropped {} torn bytes", torn.dropped_bytes); // the owner reports it
//! }
//! let durable = Durable { snapshot: recovered.snapshot, records: recovered.records };
//! let actor = ActorId::from(&[1u8; 16][..]);
//! let mut replica = Replica::recover("team", actor, durable, ReplicaConfig::default())?;
//!
//! let receipt = replica.put(Millis(1), "observation/ci", &"green")?;
//! let mut written = 0;
//! while let Some(op) = replica.poll_persist() {
//!     match &op.op {
//!         Persist::Append(record) => storage.append(record)?,
//!         Persist::Snapshot(doc) => storage.compact(doc)?,
//!     }
//!     written = op.version;
//! }
//! storage.sync()?; // the fsync: only now is the write durable...
//! replica.persisted(written); // ...and the replica knows it
//! assert_eq!(replica.durable_seq(), receipt.seq);
//!
//! disk.crash(); // power loss: nothing synced is lost
//! let recovered = MemStorage::new(disk, "team").load()?;
//! let durable = Durable { snapshot: recovered.snapshot, records: recovered.records };
//! let again = Replica::recover("team", ActorId::from(&[2u8; 16][..]), durable, ReplicaConfig::default())?;
//! assert_eq!(again.get("observation/ci")?, Some(serde_json::json!("green")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Format
//!
//! Every integer is little-endian.
//!
//! ```text
//! log      = log header, then zero or more records
//! header   = magic (4 bytes: "CCLG" for the log, "CCSN" for the snapshot)
//!            ++ format version (u32, currently FORMAT_VERSION = 2)
//!            ++ generation (u64)
//!            ++ header crc (u32) = CRC-32 of the 16 bytes before it
//! record   = len (u32) ++ crc (u32) ++ payload (len bytes)
//!            crc = CRC-32 (crc32fast) of len's 4 bytes ++ payload
//! snapshot = snapshot header ++ exactly one record (nothing after it)
//! ```
//!
//! The checksum covers the length field as well as the payload, so a flipped
//! bit in a length is caught when the record is complete, and a run of zero
//! bytes never parses as a valid (empty) record: the CRC-32 of an all-zero
//! input is 0 for the empty string but not for the four bytes of a zero
//! length.
//!
//! The *generation* says which snapshot a log belongs to: a log holds the
//! records written after the snapshot of the same generation (no snapshot:
//! generation 0). Every compaction writes its snapshot with the next
//! generation and starts a log of that generation. It has its own checksum
//! because a log whose generation is older than the snapshot's is dropped
//! (see Compaction and crashes): a damaged generation must never pass for an
//! old one.
//!
//! Version 1 of the format (header = magic ++ version, 8 bytes, no
//! generation) is still read, as generation 0; records appended to a
//! version-1 log keep its header until the next compaction rewrites both
//! files in version 2.
//!
//! # Recovery rules
//!
//! [`Storage::load`] returns the snapshot and every intact record of the log
//! of the same generation, in order. It drops a *torn tail* — the remains of
//! appends that were cut short by a crash — truncates it away and reports it
//! in [`Recovered::torn_tail`]. What counts as a torn tail, and what is
//! corruption:
//!
//! 1. A record whose header or payload runs past the end of the log
//!    (incomplete) is a torn tail. So is a log header cut short (a prefix of
//!    the header), which happens on a crash while the log is created, and a
//!    header whose checksum fails with nothing after it.
//! 2. A complete record with a bad checksum that ends exactly at the end of
//!    the log is a torn tail too: the last write was interrupted.
//! 3. A length over [`MAX_RECORD_BYTES`] is a torn tail when the record would
//!    end at or past the end of the log, and corruption otherwise. Lengths
//!    read from disk are checked against the limit and against the bytes that
//!    are actually there before anything is allocated.
//! 4. A bad record (or log header) followed by more data is
//!    [`StorageError::Corrupt`], with the record's offset, and nothing on
//!    disk is changed: good records are never dropped silently. One
//!    exception: when the bad record and everything after it are zero bytes,
//!    that is the zero-filled tail some file systems leave after a crash (the
//!    file size reached the disk, its data did not), and it is a torn tail.
//!    Zeros can never be a valid record (see Format).
//! 5. A snapshot is written atomically and is never torn: a snapshot that
//!    fails any check is [`StorageError::Corrupt`]; a newer format version is
//!    [`StorageError::UnsupportedVersion`] (for the log too).
//! 6. A log of an older generation than the snapshot is *stale* (see
//!    below): it is reset to an empty log of the snapshot's generation and
//!    none of its records is returned. A log of a newer generation cannot
//!    come from a crash and is [`StorageError::Corrupt`].
//!
//! Limits of rule 1: a corrupted length *inside* the log that points past the
//! end of the file cannot be told apart from a torn append, so the records
//! after it are dropped as a torn tail. Only a checksum over the whole log
//! (which would make appends cost O(log)) could tell them apart.
//!
//! # Compaction and crashes
//!
//! [`Storage::compact`] writes the new snapshot, with the next generation
//! `g + 1`, to `snapshot.tmp`, fsyncs it, renames it over `snapshot`, fsyncs
//! the directory, and only then resets the log to a bare header of
//! generation `g + 1` (and fsyncs it). A crash at any point leaves one of:
//!
//! - old snapshot + old log, plus maybe a leftover `snapshot.tmp` (crash before
//!   the rename): the temp file is ignored and removed when the storage is
//!   opened;
//! - new snapshot + old log (crash after the rename, before the log reset):
//!   the old log has generation `g`, older than the snapshot's, so it is
//!   stale: recovery resets it and never replays its records on top of the
//!   newer snapshot. So a caller must only compact with a snapshot that
//!   covers every record appended before it (the records are discarded
//!   either way), and a snapshot need not contain the records it replaces
//!   (a space that starts a new epoch writes a document of its own);
//! - new snapshot + empty log.
//!
//! # Durability
//!
//! [`Storage::append`] only buffers; a record is durable once
//! [`Storage::sync`] returns `Ok`. After a failed write or sync the storage is
//! *poisoned* ([`StorageError::Poisoned`]): what reached the disk is unknown
//! (and after a failed fsync the kernel may have dropped the dirty pages while
//! the file still looks intact), so further appends are refused until
//! [`Storage::load`] re-reads the disk, or [`Storage::compact`] rewrites the
//! whole state.
//!
//! Appending before the first [`Storage::load`] is allowed: the backend then
//! scans (and if needed repairs or resets) the log first, so a new record
//! never lands after a torn tail or in a stale log.

use std::io;

mod file;
mod format;
mod memory;

pub use file::FileStorage;
pub use memory::{MemDisk, MemStorage};

/// Largest payload of one log record: 64 MiB.
///
/// It bounds both what [`Storage::append`] accepts (larger is
/// [`StorageError::RecordTooLarge`], nothing written) and what recovery
/// believes: a length field above it is never allocated, it is a torn tail or
/// corruption. A record is one automerge change; a change carrying a value of
/// concord-state's largest value (64 KiB) is far below this. A backend may be configured
/// to accept less (`with_max_record_bytes`), never more, so every log written
/// under the default limit stays readable.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Largest snapshot payload: 1 GiB.
///
/// [`Storage::compact`] refuses a larger snapshot with
/// [`StorageError::SnapshotTooLarge`] (nothing changes), and a snapshot file
/// that claims more is [`StorageError::Corrupt`]. Loading a snapshot holds it
/// in memory once, so this also bounds the memory one recovery needs beyond
/// the log's records. It fits the format's u32 length field.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

/// Version of the on-disk format written by this code, stored in the header
/// of the log and of the snapshot. Version 1 (no generation) is still read;
/// a file with any other version is refused with
/// [`StorageError::UnsupportedVersion`].
pub const FORMAT_VERSION: u32 = 2;

/// Magic bytes at the start of a log file.
pub const LOG_MAGIC: [u8; 4] = *b"CCLG";

/// Magic bytes at the start of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"CCSN";

/// Bytes of a file header (magic + version + generation + header crc).
pub const FILE_HEADER_BYTES: usize = 20;

/// Bytes of the header of a version-1 file (magic + version), still read.
pub const V1_FILE_HEADER_BYTES: usize = 8;

/// Bytes of a record header (length + checksum) in front of each payload.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Bytes a snapshot file written by this code occupies beyond its payload
/// (file header + record header).
pub const SNAPSHOT_OVERHEAD_BYTES: usize = FILE_HEADER_BYTES + RECORD_HEADER_BYTES;

/// The slow half of a sync, returned by [`Storage::start_sync`] to run on
/// any thread (it blocks on the disk).
pub type SyncJob = Box<dyn FnOnce() -> Result<(), StorageError> + Send>;

/// One space's durable storage: a snapshot plus an append-only log of records.
///
/// The crate documentation gives the format, the recovery rules and what a
/// crash at each point of a compaction leaves behind.
pub trait Storage: Send {
    /// Reads what is durable: the newest snapshot and every intact record of
    /// the log of its generation, in order. Drops (and truncates away, for
    /// files) a torn tail and reports it in `Recovered::torn_tail`; resets a
    /// stale log (older generation) without returning its records.
    ///
    /// Records appended but not yet synced are included when the medium
    /// still holds them (a file's page cache does; a crashed [`MemDisk`]
    /// does not). A corrupt log or snapshot is an error and changes nothing.
    fn load(&mut self) -> Result<Recovered, StorageError>;
    /// Appends one record (e.g. one automerge change). Not durable until `sync`.
    ///
    /// A record over the limit ([`MAX_RECORD_BYTES`] or less if configured)
    /// is [`StorageError::RecordTooLarge`] and writes nothing.
    fn append(&mut self, record: &[u8]) -> Result<(), StorageError>;
    /// Makes every appended record durable (fsync for files).
    fn sync(&mut self) -> Result<(), StorageError>;
    /// `sync` in two halves, so that the slow one can run on another
    /// thread: hands every record appended so far to the medium now and
    /// returns the job that makes them durable (an `fsync`, for files).
    /// Its outcome must go to [`Storage::finish_sync`] before it counts.
    /// Appends may go on while the job runs; it covers only those made
    /// before this call.
    ///
    /// The default syncs in place and returns no job.
    fn start_sync(&mut self) -> Result<Option<SyncJob>, StorageError> {
        self.sync().map(|()| None)
    }
    /// Takes the outcome of a job from [`Storage::start_sync`]; a failure
    /// counts as a failed `sync` (files are poisoned, see
    /// [`StorageError::Poisoned`]).
    fn finish_sync(&mut self, result: Result<(), StorageError>) -> Result<(), StorageError> {
        result
    }
    /// Atomically replaces the snapshot with `snapshot` and empties the log,
    /// both under the next generation (write temp, fsync, rename, fsync
    /// dir, then reset log).
    ///
    /// `snapshot` must cover every record appended before the call, synced
    /// or not: those records are discarded, and a crash part way never
    /// replays them on top of it. On return everything is durable.
    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StorageError>;
    /// Bytes this space occupies on disk (snapshot + log).
    ///
    /// Counts appended records that are not synced yet; ignores a leftover
    /// temporary snapshot. Never touches the disk.
    fn bytes_on_disk(&self) -> u64;
}

impl<S: Storage + ?Sized> Storage for Box<S> {
    fn load(&mut self) -> Result<Recovered, StorageError> {
        (**self).load()
    }
    fn append(&mut self, record: &[u8]) -> Result<(), StorageError> {
        (**self).append(record)
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        (**self).sync()
    }
    fn start_sync(&mut self) -> Result<Option<SyncJob>, StorageError> {
        (**self).start_sync()
    }
    fn finish_sync(&mut self, result: Result<(), StorageError>) -> Result<(), StorageError> {
        (**self).finish_sync(result)
    }
    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
        (**self).compact(snapshot)
    }
    fn bytes_on_disk(&self) -> u64 {
        (**self).bytes_on_disk()
    }
}

/// What [`Storage::load`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Payload of the newest snapshot, if one was ever written.
    pub snapshot: Option<Vec<u8>>,
    /// Every intact record of the snapshot's log, in append order.
    pub records: Vec<Vec<u8>>,
    /// The torn tail that was dropped from the end of the log, if any.
    pub torn_tail: Option<TornTail>,
}

/// An incomplete or damaged end of the log, dropped by recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset in the log where the dropped bytes started; the log was
    /// truncated to this length.
    pub offset: u64,
    /// How many bytes were dropped.
    pub dropped_bytes: u64,
}

/// A storage failure. Each variant says whether anything changed on disk.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("{op} {file}: {source}")]
    Io {
        /// What was being done (e.g. "append to", "fsync").
        op: &'static str,
        /// The file or directory involved.
        file: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file holds data that is not a valid log or snapshot, at a place where
    /// it cannot be a torn tail. Nothing was changed on disk.
    #[error("corrupt {file} at byte {offset}: {reason}")]
    Corrupt {
        /// The file (for [`MemStorage`]: `mem:<space>/log` or `mem:<space>/snapshot`).
        file: String,
        /// Byte offset of the bad header or record.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A file was written in a format version this code cannot read.
    #[error("{file} has format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// Version found in its header.
        found: u32,
        /// [`FORMAT_VERSION`].
        supported: u32,
    },
    /// [`Storage::append`] was given a record over the limit. Nothing was written.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Size of the refused record.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// [`Storage::compact`] was given a snapshot over the limit. Nothing changed.
    #[error("snapshot of {len} bytes exceeds the limit of {max} bytes")]
    SnapshotTooLarge {
        /// Size of the refused snapshot.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// An earlier write or sync failed, so what reached the disk is unknown.
    /// Call [`Storage::load`] (which re-reads the disk) or [`Storage::compact`]
    /// before appending again.
    #[error("storage {file} is poisoned by an earlier failed write; load() it again")]
    Poisoned {
        /// The log file.
        file: String,
    },
    /// Another [`FileStorage`] (in this or another process) has the space's
    /// directory open.
    #[error("{file} is locked by another open storage")]
    Locked {
        /// The locked log file.
        file: String,
    },
}

impl StorageError {
    pub(crate) fn io(op: &'static str, file: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            file: file.into(),
            source,
        }
    }
}
