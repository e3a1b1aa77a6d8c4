//! [`MemDisk`] and [`MemStorage`]: a simulated disk for the deterministic
//! simulator. It holds the same bytes a [`crate::FileStorage`] would write and
//! recovers them with the same parser, so a simulated crash exercises the real
//! recovery rules.
//!
//! It owns the simulated disk's bytes. It must never consult a clock or an
//! RNG (a crash's outcome is given by the caller), nor let a storage that
//! lived through a crash write again before it is loaded.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::{debug, warn};

use crate::format::{
    check_record_len, check_snapshot_len, log_header, peek_generation, read_snapshot,
    read_snapshot_header, record_header, scan_log, snapshot_prefix,
};
use crate::{
    LOG_MAGIC, MAX_RECORD_BYTES, MAX_SNAPSHOT_BYTES, Recovered, SNAPSHOT_MAGIC, Storage,
    StorageError, TornTail,
};

/// One node's simulated disk, shared by the [`MemStorage`] of each of its
/// spaces. It survives a simulated crash of the node; a crash loses every
/// byte appended to a log and not yet synced ([`MemDisk::crash`]), or only
/// part of them ([`MemDisk::crash_with`]).
///
/// Cloning is cheap: clones are handles on the same disk. Everything is
/// deterministic: the disk never consults a clock or an RNG.
#[derive(Clone, Default)]
pub struct MemDisk {
    inner: Arc<Mutex<DiskInner>>,
}

#[derive(Default)]
struct DiskInner {
    spaces: BTreeMap<Arc<str>, SpaceFiles>,
    /// Number of crashes so far; a [`MemStorage`] that was in use across a
    /// crash notices it by this.
    crashes: u64,
}

/// The two "files" of one space.
#[derive(Default)]
struct SpaceFiles {
    /// The whole snapshot file (header + framed payload). Compaction replaces
    /// it atomically and durably, so there is no unsynced snapshot.
    snapshot: Option<Vec<u8>>,
    /// The whole log file (header + framed records).
    log: Vec<u8>,
    /// How many bytes of `log` are durable; the rest is lost by a crash.
    synced: usize,
}

impl SpaceFiles {
    fn bytes(&self) -> u64 {
        (self.snapshot.as_ref().map_or(0, Vec::len) + self.log.len()) as u64
    }
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskInner> {
        // Every critical section leaves the disk consistent before anything
        // that could panic, so a poisoned lock still guards valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Simulates a power failure: every space's log loses everything appended
    /// and not yet synced. Snapshots are unaffected (compaction is atomic and
    /// durable). A [`MemStorage`] in use during the crash must be loaded
    /// again (or compacted) before it accepts appends or syncs, like the
    /// restarted process it stands for.
    pub fn crash(&self) {
        self.crash_with(|_, _| 0);
    }

    /// Like [`MemDisk::crash`], but `keep(space, unsynced_bytes)` says how
    /// many of each log's unsynced bytes reached the disk anyway (clamped to
    /// `unsynced_bytes`). A number that ends inside a record leaves a torn
    /// tail for recovery to drop. The simulator draws it from its seeded RNG.
    pub fn crash_with(&self, mut keep: impl FnMut(&str, u64) -> u64) {
        let mut inner = self.lock();
        inner.crashes += 1;
        for (space, files) in inner.spaces.iter_mut() {
            let unsynced = (files.log.len() - files.synced) as u64;
            let kept = keep(space, unsynced).min(unsynced) as usize;
            files.log.truncate(files.synced + kept);
            files.synced = files.log.len();
            debug!(space = &**space, unsynced, kept, "mem disk crash");
        }
    }

    /// Names of the spaces that have files on this disk.
    pub fn spaces(&self) -> Vec<String> {
        self.lock().spaces.keys().map(|s| s.to_string()).collect()
    }

    /// Bytes on the disk, all spaces together (unsynced bytes included).
    pub fn bytes_on_disk(&self) -> u64 {
        self.lock().spaces.values().map(SpaceFiles::bytes).sum()
    }

    /// Bytes appended to `space`'s log and not yet synced: what
    /// [`MemDisk::crash`] would lose.
    pub fn unsynced_bytes(&self, space: &str) -> u64 {
        self.lock()
            .spaces
            .get(space)
            .map_or(0, |f| (f.log.len() - f.synced) as u64)
    }
}

impl fmt::Debug for MemDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemDisk")
            .field("spaces", &inner.spaces.len())
            .field("crashes", &inner.crashes)
            .finish_non_exhaustive()
    }
}

/// Memory backend of [`Storage`]: one space on a [`MemDisk`].
///
/// It keeps the very bytes [`crate::FileStorage`] writes and recovers them
/// with the same code. `append` is "written to the page cache": visible to
/// `load` and to a new `MemStorage` on the same disk, lost by a crash until
/// `sync`. Only one `MemStorage` should use a space at a time.
#[derive(Debug)]
pub struct MemStorage {
    disk: MemDisk,
    space: Arc<str>,
    log_name: String,
    snapshot_name: String,
    /// The disk's crash count when this storage last loaded or repaired the
    /// log; `None` before that. Appends need it to match the disk.
    ready_at: Option<u64>,
    max_record_bytes: usize,
    max_snapshot_bytes: usize,
}

impl MemStorage {
    /// The storage of `space` on `disk`. Reads nothing until [`Storage::load`].
    pub fn new(disk: MemDisk, space: &str) -> Self {
        MemStorage {
            disk,
            space: Arc::from(space),
            log_name: format!("mem:{space}/log"),
            snapshot_name: format!("mem:{space}/snapshot"),
            ready_at: None,
            max_record_bytes: MAX_RECORD_BYTES,
            max_snapshot_bytes: MAX_SNAPSHOT_BYTES,
        }
    }

    /// Lowers the largest record `append` accepts (default and ceiling:
    /// [`MAX_RECORD_BYTES`]; larger values are clamped to it).
    #[must_use]
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max.min(MAX_RECORD_BYTES);
        self
    }

    /// Lowers the largest snapshot `compact` accepts (default and ceiling:
    /// [`MAX_SNAPSHOT_BYTES`]; larger values are clamped to it).
    #[must_use]
    pub fn with_max_snapshot_bytes(mut self, max: usize) -> Self {
        self.max_snapshot_bytes = max.min(MAX_SNAPSHOT_BYTES);
        self
    }

    /// The space this storage holds.
    pub fn space(&self) -> &str {
        &self.space
    }

    /// The disk it lives on.
    pub fn disk(&self) -> &MemDisk {
        &self.disk
    }

    fn poisoned_error(&self) -> StorageError {
        StorageError::Poisoned {
            file: self.log_name.clone(),
        }
    }

    /// Whether appends may go ahead on a disk that has seen `crashes`
    /// crashes; `Err` when this storage lived through a crash.
    fn check_alive(&self, crashes: u64) -> Result<bool, StorageError> {
        match self.ready_at {
            None => Ok(false),
            Some(at) if at == crashes => Ok(true),
            Some(_) => Err(self.poisoned_error()),
        }
    }
}

/// Scans `files.log` if it has the snapshot's `generation`, truncates a
/// torn tail, writes the header of a new log or resets a stale one. Repairs
/// count as synced, as the file backend fsyncs them.
fn recover_log(
    files: &mut SpaceFiles,
    generation: u64,
    name: &str,
    on_record: &mut dyn FnMut(Vec<u8>),
) -> Result<Option<TornTail>, StorageError> {
    let total = files.log.len() as u64;
    let scan = scan_log(&files.log[..], total, name, generation, on_record)?;
    if let Some(stale) = scan.stale {
        warn!(
            file = name,
            stale,
            generation,
            bytes = total,
            "resetting the stale log of an interrupted compaction"
        );
    }
    if let Some(t) = &scan.torn_tail {
        warn!(
            file = name,
            offset = t.offset,
            dropped_bytes = t.dropped_bytes,
            "dropping torn tail of log"
        );
    }
    // valid_len <= log.len(), so it fits a usize.
    let valid = usize::try_from(scan.valid_len).unwrap_or(files.log.len());
    if valid == 0 {
        files.log.clear();
        files.log.extend_from_slice(&log_header(generation));
        files.synced = files.log.len();
    } else if scan.torn_tail.is_some() {
        files.log.truncate(valid);
        files.synced = files.log.len();
    }
    Ok(scan.torn_tail)
}

impl Storage for MemStorage {
    fn load(&mut self) -> Result<Recovered, StorageError> {
        let mut inner = self.disk.lock();
        let crashes = inner.crashes;
        let files = inner.spaces.entry(Arc::clone(&self.space)).or_default();
        let (generation, snapshot) = match &files.snapshot {
            None => (0, None),
            Some(bytes) => {
                let (generation, payload) =
                    read_snapshot(&bytes[..], bytes.len() as u64, &self.snapshot_name)?;
                (generation, Some(payload))
            }
        };
        let mut records = Vec::new();
        let torn_tail = recover_log(files, generation, &self.log_name, &mut |r| {
            records.push(r);
        })?;
        self.ready_at = Some(crashes);
        Ok(Recovered {
            snapshot,
            records,
            torn_tail,
        })
    }

    fn append(&mut self, record: &[u8]) -> Result<(), StorageError> {
        check_record_len(record.len(), self.max_record_bytes)?;
        let mut inner = self.disk.lock();
        let crashes = inner.crashes;
        let ready = self.check_alive(crashes)?;
        let files = inner.spaces.entry(Arc::clone(&self.space)).or_default();
        if !ready {
            let generation = match &files.snapshot {
                None => 0,
                Some(bytes) => {
                    let mut reader = &bytes[..];
                    let len = bytes.len() as u64;
                    read_snapshot_header(&mut reader, len, &self.snapshot_name)?.generation
                }
            };
            recover_log(files, generation, &self.log_name, &mut |_| {})?;
            self.ready_at = Some(crashes);
        }
        files.log.extend_from_slice(&record_header(record));
        files.log.extend_from_slice(record);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let mut inner = self.disk.lock();
        // Also makes durable what an earlier storage of the space appended
        // (fsync works on the file, not on one handle's writes).
        self.check_alive(inner.crashes)?;
        if let Some(files) = inner.spaces.get_mut(&*self.space) {
            files.synced = files.log.len();
        }
        Ok(())
    }

    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
        check_snapshot_len(snapshot.len(), self.max_snapshot_bytes)?;
        let mut inner = self.disk.lock();
        let crashes = inner.crashes;
        let files = inner.spaces.entry(Arc::clone(&self.space)).or_default();
        // Past both headers, as the file backend does.
        let old = files.snapshot.as_deref().unwrap_or_default();
        let generation = peek_generation(old, SNAPSHOT_MAGIC)
            .max(peek_generation(&files.log, LOG_MAGIC))
            .saturating_add(1);
        let mut file = Vec::with_capacity(crate::SNAPSHOT_OVERHEAD_BYTES + snapshot.len());
        file.extend_from_slice(&snapshot_prefix(snapshot, generation));
        file.extend_from_slice(snapshot);
        files.snapshot = Some(file);
        files.log.clear();
        files.log.extend_from_slice(&log_header(generation));
        files.synced = files.log.len();
        self.ready_at = Some(crashes);
        Ok(())
    }

    fn bytes_on_disk(&self) -> u64 {
        self.disk
            .lock()
            .spaces
            .get(&*self.space)
            .map_or(0, SpaceFiles::bytes)
    }
}

#[cfg(test)]
mod tests;
