//! Durable storage of one space: a snapshot plus an append-only log of
//! checksummed records (see DESIGN.md §5 "Persistence").
//!
//! Two backends implement [`Storage`] on the same on-disk format and the same
//! recovery code (the parsers in this module):
//!
//! - [`FileStorage`]: the real thing, two files in a directory per space.
//! - [`MemStorage`] on a [`MemDisk`]: a simulated disk for the deterministic
//!   simulator, where [`MemDisk::crash`] loses everything not yet synced.
//!
//! # Format
//!
//! Every integer is little-endian.
//!
//! ```text
//! log      = log header, then zero or more records
//! header   = magic (4 bytes: "CCLG" for the log, "CCSN" for the snapshot)
//!            ++ format version (u32, currently FORMAT_VERSION = 1)
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
//! # Recovery rules
//!
//! [`Storage::load`] returns the snapshot and every intact record after it, in
//! order. It drops a *torn tail* — the remains of appends that were cut short
//! by a crash — truncates it away and reports it in [`Recovered::torn_tail`].
//! What counts as a torn tail, and what is corruption:
//!
//! 1. A record whose header or payload runs past the end of the log
//!    (incomplete) is a torn tail. So is a log header cut short (a prefix of
//!    the header), which happens on a crash while the log is created.
//! 2. A complete record with a bad checksum that ends exactly at the end of
//!    the log is a torn tail too: the last write was interrupted.
//! 3. A length over [`MAX_RECORD_BYTES`] is a torn tail when the record would
//!    end at or past the end of the log, and corruption otherwise. Lengths
//!    read from disk are checked against the limit and against the bytes that
//!    are actually there before anything is allocated.
//! 4. A bad record followed by more data is [`StorageError::Corrupt`], with the
//!    record's offset, and nothing on disk is changed: good records are never
//!    dropped silently. One exception: when the bad record and everything
//!    after it are zero bytes, that is the zero-filled tail some file systems
//!    leave after a crash (the file size reached the disk, its data did not),
//!    and it is a torn tail. Zeros can never be a valid record (see Format).
//! 5. A snapshot is written atomically and is never torn: a snapshot that
//!    fails any check is [`StorageError::Corrupt`]; a newer format version is
//!    [`StorageError::UnsupportedVersion`] (for the log too).
//!
//! Limits of rule 1: a corrupted length *inside* the log that points past the
//! end of the file cannot be told apart from a torn append, so the records
//! after it are dropped as a torn tail. Only a checksum over the whole log
//! (which would make appends cost O(log)) could tell them apart.
//!
//! # Compaction and crashes
//!
//! [`Storage::compact`] writes the new snapshot to `snapshot.tmp`, fsyncs it,
//! renames it over `snapshot`, fsyncs the directory, and only then resets the
//! log to its bare header (and fsyncs it). A crash at any point leaves one of:
//!
//! - old snapshot + old log, plus maybe a leftover `snapshot.tmp` (crash before
//!   the rename): the temp file is ignored and removed when the storage is
//!   opened;
//! - new snapshot + old log (crash after the rename, before the log reset):
//!   the old log's records are replayed on top of a snapshot that already
//!   contains them. That is fine for Concord because records are automerge
//!   changes, and applying a change twice is a no-op. It also means a caller
//!   must only compact with a snapshot that covers every record appended
//!   before it;
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
//! scans (and if needed repairs) the log first, so a new record never lands
//! after a torn tail.

use std::io::{self, Read};

mod file;
mod memory;

pub use file::FileStorage;
pub use memory::{MemDisk, MemStorage};

/// Largest payload of one log record: 64 MiB.
///
/// It bounds both what [`Storage::append`] accepts (larger is
/// [`StorageError::RecordTooLarge`], nothing written) and what recovery
/// believes: a length field above it is never allocated, it is a torn tail or
/// corruption. A record is one automerge change; a change carrying a value of
/// [`crate::MAX_VALUE_BYTES`] is far below this. A backend may be configured
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
/// of the log and of the snapshot. A file with another version is refused
/// with [`StorageError::UnsupportedVersion`].
pub const FORMAT_VERSION: u32 = 1;

/// Magic bytes at the start of a log file.
pub const LOG_MAGIC: [u8; 4] = *b"CCLG";

/// Magic bytes at the start of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"CCSN";

/// Bytes of a file header (magic + version).
pub const FILE_HEADER_BYTES: usize = 8;

/// Bytes of a record header (length + checksum) in front of each payload.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Bytes a snapshot file occupies beyond its payload (file header + record header).
pub const SNAPSHOT_OVERHEAD_BYTES: usize = FILE_HEADER_BYTES + RECORD_HEADER_BYTES;

/// The slow half of a sync, returned by [`Storage::start_sync`] to run on
/// any thread (it blocks on the disk).
pub type SyncJob = Box<dyn FnOnce() -> Result<(), StorageError> + Send>;

/// One space's durable storage: a snapshot plus an append-only log of records.
///
/// The module documentation gives the format, the recovery rules and what a
/// crash at each point of a compaction leaves behind.
pub trait Storage: Send {
    /// Reads what is durable: the newest snapshot and every intact log record after it, in order.
    /// Drops (and truncates away, for files) a torn tail and reports it in `Recovered::torn_tail`.
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
    /// Atomically replaces the snapshot with `snapshot` and empties the log (write temp, fsync, rename, fsync dir, then reset log).
    ///
    /// `snapshot` must cover every record appended before the call, synced
    /// or not: those records are discarded. On return everything is durable.
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
    /// Every intact log record after the snapshot, in append order.
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

// ---------------------------------------------------------------------------
// Framing shared by both backends.

/// The header a log file starts with.
pub(crate) fn log_header() -> [u8; FILE_HEADER_BYTES] {
    file_header(LOG_MAGIC)
}

fn file_header(magic: [u8; 4]) -> [u8; FILE_HEADER_BYTES] {
    let mut h = [0u8; FILE_HEADER_BYTES];
    h[..4].copy_from_slice(&magic);
    h[4..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

fn record_crc(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// The header written in front of `payload` in the log. The caller must have
/// checked `payload.len()` against a limit that fits in a u32.
pub(crate) fn record_header(payload: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    // Both limits are far below u32::MAX; saturate rather than wrap if a
    // caller ever forgets (the record would then fail its checksum).
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let mut h = [0u8; RECORD_HEADER_BYTES];
    h[..4].copy_from_slice(&len);
    h[4..].copy_from_slice(&record_crc(len, payload).to_le_bytes());
    h
}

/// Size of `payload` once framed as a log record.
pub(crate) fn framed_len(payload: &[u8]) -> u64 {
    (RECORD_HEADER_BYTES + payload.len()) as u64
}

/// Everything a snapshot file holds before its payload.
pub(crate) fn snapshot_prefix(payload: &[u8]) -> [u8; SNAPSHOT_OVERHEAD_BYTES] {
    let mut p = [0u8; SNAPSHOT_OVERHEAD_BYTES];
    p[..FILE_HEADER_BYTES].copy_from_slice(&file_header(SNAPSHOT_MAGIC));
    p[FILE_HEADER_BYTES..].copy_from_slice(&record_header(payload));
    p
}

/// Checks a record length against a limit (the one in force for appends).
pub(crate) fn check_record_len(len: usize, max: usize) -> Result<(), StorageError> {
    if len > max {
        Err(StorageError::RecordTooLarge { len, max })
    } else {
        Ok(())
    }
}

/// Checks a snapshot length against a limit (the one in force for compaction).
pub(crate) fn check_snapshot_len(len: usize, max: usize) -> Result<(), StorageError> {
    if len > max {
        Err(StorageError::SnapshotTooLarge { len, max })
    } else {
        Ok(())
    }
}

/// Reads and verifies a whole snapshot file of `total_len` bytes from
/// `reader`, returning its payload. Allocates only after the length field
/// agreed with `total_len` and [`MAX_SNAPSHOT_BYTES`].
pub(crate) fn read_snapshot<R: Read>(
    mut reader: R,
    total_len: u64,
    file: &str,
) -> Result<Vec<u8>, StorageError> {
    let corrupt = |offset: u64, reason: &'static str| StorageError::Corrupt {
        file: file.to_owned(),
        offset,
        reason,
    };
    if total_len < SNAPSHOT_OVERHEAD_BYTES as u64 {
        return Err(corrupt(0, "snapshot shorter than its header"));
    }
    let mut prefix = [0u8; SNAPSHOT_OVERHEAD_BYTES];
    reader
        .read_exact(&mut prefix)
        .map_err(|e| StorageError::io("read", file, e))?;
    check_file_header(&prefix, SNAPSHOT_MAGIC, file, "snapshot has bad magic")?;
    let (len, crc) = split_record_header(&prefix[FILE_HEADER_BYTES..]);
    let len_field = len as u64;
    if len as usize > MAX_SNAPSHOT_BYTES {
        return Err(corrupt(
            FILE_HEADER_BYTES as u64,
            "snapshot length exceeds MAX_SNAPSHOT_BYTES",
        ));
    }
    if SNAPSHOT_OVERHEAD_BYTES as u64 + len_field != total_len {
        return Err(corrupt(
            FILE_HEADER_BYTES as u64,
            "snapshot length does not match the file size",
        ));
    }
    let mut payload = vec![0u8; len as usize];
    reader
        .read_exact(&mut payload)
        .map_err(|e| StorageError::io("read", file, e))?;
    if record_crc(len.to_le_bytes(), &payload) != crc {
        return Err(corrupt(
            FILE_HEADER_BYTES as u64,
            "snapshot checksum mismatch",
        ));
    }
    Ok(payload)
}

fn split_record_header(h: &[u8]) -> (u32, u32) {
    let mut len = [0u8; 4];
    let mut crc = [0u8; 4];
    len.copy_from_slice(&h[..4]);
    crc.copy_from_slice(&h[4..8]);
    (u32::from_le_bytes(len), u32::from_le_bytes(crc))
}

fn check_file_header(
    h: &[u8],
    magic: [u8; 4],
    file: &str,
    bad_magic: &'static str,
) -> Result<(), StorageError> {
    if h[..4] != magic {
        return Err(StorageError::Corrupt {
            file: file.to_owned(),
            offset: 0,
            reason: bad_magic,
        });
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&h[4..FILE_HEADER_BYTES]);
    let found = u32::from_le_bytes(v);
    if found != FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            file: file.to_owned(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Result of [`scan_log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogScan {
    /// Length of the intact prefix (header + whole good records). Zero when
    /// the log holds not even an intact header: it must be (re)written.
    pub valid_len: u64,
    /// What lies past `valid_len`, if anything.
    pub torn_tail: Option<TornTail>,
}

/// Parses a log of `total_len` bytes from `reader` by the recovery rules of
/// the module documentation, handing each intact record to `on_record` in
/// order. Never allocates more than [`MAX_RECORD_BYTES`] (and never more than
/// the bytes actually left) for one record. Changes nothing; the caller
/// truncates to `valid_len` when a torn tail is reported.
pub(crate) fn scan_log<R: Read>(
    mut reader: R,
    total_len: u64,
    file: &str,
    on_record: &mut dyn FnMut(Vec<u8>),
) -> Result<LogScan, StorageError> {
    let read_err = |e| StorageError::io("read", file, e);
    let torn = |offset: u64| LogScan {
        valid_len: offset,
        torn_tail: Some(TornTail {
            offset,
            dropped_bytes: total_len - offset,
        }),
    };
    if total_len == 0 {
        return Ok(LogScan {
            valid_len: 0,
            torn_tail: None,
        });
    }

    // File header.
    let header_len = total_len.min(FILE_HEADER_BYTES as u64) as usize;
    let mut header = [0u8; FILE_HEADER_BYTES];
    reader
        .read_exact(&mut header[..header_len])
        .map_err(read_err)?;
    let expected = log_header();
    if header_len < FILE_HEADER_BYTES {
        // Crash while the log was being created.
        let h = &header[..header_len];
        if h == &expected[..header_len] || h.iter().all(|&b| b == 0) {
            return Ok(torn(0));
        }
        return Err(StorageError::Corrupt {
            file: file.to_owned(),
            offset: 0,
            reason: "log has bad magic",
        });
    }
    if header[..4] != LOG_MAGIC
        && header.iter().all(|&b| b == 0)
        && rest_is_zero(&mut reader, file)?
    {
        // A log whose size reached the disk but whose header did not.
        return Ok(torn(0));
    }
    check_file_header(&header, LOG_MAGIC, file, "log has bad magic")?;

    // Records.
    let mut offset = FILE_HEADER_BYTES as u64;
    loop {
        let remaining = total_len - offset;
        if remaining == 0 {
            return Ok(LogScan {
                valid_len: offset,
                torn_tail: None,
            });
        }
        if remaining < RECORD_HEADER_BYTES as u64 {
            return Ok(torn(offset));
        }
        let mut rh = [0u8; RECORD_HEADER_BYTES];
        reader.read_exact(&mut rh).map_err(read_err)?;
        let (len, crc) = split_record_header(&rh);
        let end = offset + RECORD_HEADER_BYTES as u64 + u64::from(len);
        if len as usize > MAX_RECORD_BYTES {
            if end >= total_len {
                return Ok(torn(offset));
            }
            return Err(StorageError::Corrupt {
                file: file.to_owned(),
                offset,
                reason: "record length exceeds MAX_RECORD_BYTES",
            });
        }
        if end > total_len {
            return Ok(torn(offset));
        }
        // `len` is within the limit and within the bytes that are there.
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload).map_err(read_err)?;
        if record_crc(len.to_le_bytes(), &payload) != crc {
            if end == total_len {
                return Ok(torn(offset));
            }
            let all_zero = rh.iter().chain(payload.iter()).all(|&b| b == 0);
            if all_zero && rest_is_zero(&mut reader, file)? {
                return Ok(torn(offset));
            }
            return Err(StorageError::Corrupt {
                file: file.to_owned(),
                offset,
                reason: "record checksum mismatch",
            });
        }
        on_record(payload);
        offset = end;
    }
}

/// Whether everything `reader` has left is zero bytes (consumes it).
fn rest_is_zero<R: Read>(reader: &mut R, file: &str) -> Result<bool, StorageError> {
    let mut buf = [0u8; 8192];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StorageError::io("read", file, e)),
        };
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = record_header(payload).to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn log_of(records: &[&[u8]]) -> Vec<u8> {
        let mut v = log_header().to_vec();
        for r in records {
            v.extend(frame(r));
        }
        v
    }

    fn scan(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, LogScan), StorageError> {
        let mut out = Vec::new();
        let s = scan_log(bytes, bytes.len() as u64, "test", &mut |r| out.push(r))?;
        Ok((out, s))
    }

    #[test]
    fn framing_round_trip() {
        let log = log_of(&[b"a", b"", b"hello world"]);
        let (recs, s) = scan(&log).unwrap();
        assert_eq!(recs, vec![b"a".to_vec(), vec![], b"hello world".to_vec()]);
        assert_eq!(s.valid_len, log.len() as u64);
        assert_eq!(s.torn_tail, None);
    }

    #[test]
    fn zero_record_header_never_checks_out() {
        // An all-zero header (len 0, crc 0) must not be a valid empty record.
        assert_ne!(record_header(b""), [0u8; RECORD_HEADER_BYTES]);
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut log = log_of(&[b"one", b"two"]);
        let good = log.len() as u64;
        log.extend(std::iter::repeat_n(0u8, 100));
        let (recs, s) = scan(&log).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            s.torn_tail,
            Some(TornTail {
                offset: good,
                dropped_bytes: 100
            })
        );
        // ...but zeros followed by anything else are corruption.
        log.push(1);
        assert!(matches!(scan(&log), Err(StorageError::Corrupt { offset, .. }) if offset == good));
    }

    #[test]
    fn length_over_limit() {
        let mut log = log_of(&[b"one"]);
        let at = log.len() as u64;
        let huge = (MAX_RECORD_BYTES as u32 + 1).to_le_bytes();
        log.extend_from_slice(&huge);
        log.extend_from_slice(&[1, 2, 3, 4]);
        // At the end (runs past EOF): torn tail, nothing allocated.
        let (recs, s) = scan(&log).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(s.torn_tail.map(|t| t.offset), Some(at));
        // Followed by more data than it claims: corruption. The bytes after
        // it come from a lazy reader, so the test allocates nothing big.
        let extra = MAX_RECORD_BYTES as u64 + 100;
        let total = log.len() as u64 + extra;
        let reader = (&log[..]).chain(std::io::repeat(7).take(extra));
        let res = scan_log(reader, total, "test", &mut |_| {});
        assert!(
            matches!(res, Err(StorageError::Corrupt { offset, .. }) if offset == at),
            "{res:?}"
        );
    }

    #[test]
    fn bad_checksum_in_middle_is_corrupt() {
        let mut log = log_of(&[b"one", b"two", b"three"]);
        let second = (FILE_HEADER_BYTES + RECORD_HEADER_BYTES + 3) as u64;
        log[second as usize + 4] ^= 0xff;
        match scan(&log) {
            Err(StorageError::Corrupt { offset, .. }) => assert_eq!(offset, second),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn flipped_length_bit_is_caught_by_checksum() {
        let mut log = log_of(&[b"one", b"two"]);
        let second = FILE_HEADER_BYTES + RECORD_HEADER_BYTES + 3;
        log[second] ^= 0x01; // len 3 -> 2: record now ends before EOF
        // The record is complete (len 2) but its checksum covers the length,
        // so it fails; one stray byte follows it, so it is not last -> corrupt.
        assert!(matches!(scan(&log), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn header_rules() {
        assert_eq!(scan(&[]).unwrap().1.valid_len, 0);
        for n in 1..FILE_HEADER_BYTES {
            let (_, s) = scan(&log_header()[..n]).unwrap();
            assert_eq!(
                s.torn_tail,
                Some(TornTail {
                    offset: 0,
                    dropped_bytes: n as u64
                })
            );
        }
        assert!(matches!(
            scan(b"XXXX\x01\0\0\0"),
            Err(StorageError::Corrupt { offset: 0, .. })
        ));
        assert!(scan(b"CC").is_ok());
        assert!(matches!(scan(b"XY"), Err(StorageError::Corrupt { .. })));
        let mut v2 = log_header();
        v2[4] = 2;
        assert!(matches!(
            scan(&v2),
            Err(StorageError::UnsupportedVersion { found: 2, .. })
        ));
        let (_, s) = scan(&[0u8; 20]).unwrap();
        assert_eq!(s.valid_len, 0);
        assert!(s.torn_tail.is_some());
    }

    #[test]
    fn snapshot_rules() {
        let payload = b"snapshot payload".to_vec();
        let mut file = snapshot_prefix(&payload).to_vec();
        file.extend_from_slice(&payload);
        assert_eq!(
            read_snapshot(&file[..], file.len() as u64, "s").unwrap(),
            payload
        );
        // Every single-byte flip is detected.
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            assert!(
                read_snapshot(&bad[..], bad.len() as u64, "s").is_err(),
                "flip at {i} undetected"
            );
        }
        // Every truncation is detected, and trailing bytes too.
        for n in 0..file.len() {
            assert!(matches!(
                read_snapshot(&file[..n], n as u64, "s"),
                Err(StorageError::Corrupt { .. })
            ));
        }
        let mut long = file.clone();
        long.push(0);
        assert!(matches!(
            read_snapshot(&long[..], long.len() as u64, "s"),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
