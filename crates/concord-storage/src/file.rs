//! [`FileStorage`]: a space's snapshot and log as two files in a directory.
//!
//! It owns those files (locked while open) and their I/O. It must never
//! parse or frame bytes itself (the `format` module does, for both backends)
//! and never append after a torn tail, into a stale log, or after a failed
//! write or fsync before a load or a compaction.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{debug, warn};

use crate::format::{
    check_record_len, check_snapshot_len, framed_len, log_header, peek_generation, read_snapshot,
    read_snapshot_header, record_header, scan_log, snapshot_prefix,
};
use crate::{
    FILE_HEADER_BYTES, LOG_MAGIC, MAX_RECORD_BYTES, MAX_SNAPSHOT_BYTES, Recovered, SNAPSHOT_MAGIC,
    SNAPSHOT_OVERHEAD_BYTES, Storage, StorageError, SyncJob, TornTail,
};

/// Appends are gathered in memory up to this many bytes before they are
/// written to the log file (and always on `sync`, `load` and drop).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Read buffer used while scanning the log on recovery.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// File backend of [`Storage`]: `dir/snapshot` and `dir/log`, in the format
/// and with the recovery rules of the [crate documentation](crate).
///
/// - `append` costs a memcpy into a 64 KiB buffer (a write syscall when it
///   fills); `sync` writes the buffer and calls `fsync` (`File::sync_data`).
/// - `bytes_on_disk` is kept up to date in memory, without `stat` calls.
/// - The log file is locked (`flock`) while the storage is open: a second
///   `open` of the same directory, in this process or another, fails with
///   [`StorageError::Locked`] instead of interleaving two writers' records.
/// - Dropping the storage writes buffered records to the file but does not
///   fsync them: only `sync` makes them durable.
pub struct FileStorage {
    dir: PathBuf,
    snapshot_path: PathBuf,
    tmp_path: PathBuf,
    /// `log_path` as a string, for errors and events.
    log_name: String,
    snapshot_name: String,
    /// The log, opened for read + append and locked for as long as we live
    /// (shared with the fsync jobs of [`Storage::start_sync`]).
    log: Arc<File>,
    /// Framed records appended but not yet written to `log`.
    buf: Vec<u8>,
    /// Log length including `buf`.
    log_len: u64,
    /// Snapshot file length (0 if none).
    snapshot_len: u64,
    /// Whether the log was scanned (and repaired) so appends land right after
    /// its last good record.
    ready: bool,
    /// Set when a write or fsync of the log failed; see [`StorageError::Poisoned`].
    poisoned: bool,
    max_record_bytes: usize,
    max_snapshot_bytes: usize,
}

impl FileStorage {
    /// Name of the log file inside the space's directory.
    pub const LOG_FILE: &'static str = "log";
    /// Name of the snapshot file inside the space's directory.
    pub const SNAPSHOT_FILE: &'static str = "snapshot";
    /// Name of the temporary snapshot written during compaction.
    pub const SNAPSHOT_TMP_FILE: &'static str = "snapshot.tmp";

    /// Opens the storage in `dir`, creating the directory and an empty log if
    /// needed, and locks it. Removes a `snapshot.tmp` left by a compaction
    /// that crashed before its rename. Reads nothing else: call
    /// [`Storage::load`] to recover.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        let dir_name = dir.display().to_string();
        fs::create_dir_all(&dir)
            .map_err(|e| StorageError::io("create directory", dir_name.clone(), e))?;
        let log_path = dir.join(Self::LOG_FILE);
        let snapshot_path = dir.join(Self::SNAPSHOT_FILE);
        let tmp_path = dir.join(Self::SNAPSHOT_TMP_FILE);
        let log_name = log_path.display().to_string();
        let snapshot_name = snapshot_path.display().to_string();

        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(|e| StorageError::io("open", log_name.clone(), e))?;
        match log.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StorageError::Locked { file: log_name }),
            Err(TryLockError::Error(e)) => return Err(StorageError::io("lock", log_name, e)),
        }
        let log_len = log
            .metadata()
            .map_err(|e| StorageError::io("stat", log_name.clone(), e))?
            .len();

        match fs::remove_file(&tmp_path) {
            Ok(()) => warn!(
                dir = %dir_name,
                "removed snapshot.tmp left by an interrupted compaction"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StorageError::io(
                    "remove",
                    tmp_path.display().to_string(),
                    e,
                ));
            }
        }
        let snapshot_len = match fs::metadata(&snapshot_path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StorageError::io("stat", snapshot_name, e)),
        };
        debug!(dir = %dir_name, log_len, snapshot_len, "opened file storage");
        Ok(FileStorage {
            dir,
            snapshot_path,
            tmp_path,
            log_name,
            snapshot_name,
            log: Arc::new(log),
            buf: Vec::new(),
            log_len,
            snapshot_len,
            ready: false,
            poisoned: false,
            max_record_bytes: MAX_RECORD_BYTES,
            max_snapshot_bytes: MAX_SNAPSHOT_BYTES,
        })
    }

    /// Lowers the largest record `append` accepts (default and ceiling:
    /// [`MAX_RECORD_BYTES`]; larger values are clamped to it). Recovery
    /// always reads records up to [`MAX_RECORD_BYTES`].
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

    /// The space's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn poisoned_error(&self) -> StorageError {
        StorageError::Poisoned {
            file: self.log_name.clone(),
        }
    }

    /// Writes the append buffer to the log file. Poisons on failure: part of
    /// it may have reached the file.
    fn write_buffer(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = (&*self.log).write_all(&self.buf);
        self.buf.clear();
        res.map_err(|e| {
            self.poisoned = true;
            StorageError::io("append to", self.log_name.clone(), e)
        })
    }

    /// Scans the log of the snapshot's `generation` (handing intact records
    /// to `on_record`), truncates a torn tail, writes the header of a new log
    /// or resets a stale one, and makes the storage ready for appends. On
    /// `Corrupt` nothing changes.
    fn recover_log(
        &mut self,
        generation: u64,
        on_record: &mut dyn FnMut(Vec<u8>),
    ) -> Result<Option<TornTail>, StorageError> {
        let reader = File::open(self.dir.join(Self::LOG_FILE))
            .map_err(|e| StorageError::io("open", self.log_name.clone(), e))?;
        let total = reader
            .metadata()
            .map_err(|e| StorageError::io("stat", self.log_name.clone(), e))?
            .len();
        let reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
        let scan = scan_log(reader, total, &self.log_name, generation, on_record)?;
        if let Some(stale) = scan.stale {
            warn!(
                file = %self.log_name,
                stale,
                generation,
                bytes = total,
                "resetting the stale log of an interrupted compaction"
            );
        }
        if let Some(t) = &scan.torn_tail {
            warn!(
                file = %self.log_name,
                offset = t.offset,
                dropped_bytes = t.dropped_bytes,
                "dropping torn tail of log"
            );
        }
        if scan.valid_len == 0 {
            // New log, one whose header never made it, or a stale one:
            // (re)write it.
            self.reset_log(generation)?;
        } else if scan.torn_tail.is_some() {
            self.log
                .set_len(scan.valid_len)
                .map_err(|e| StorageError::io("truncate", self.log_name.clone(), e))?;
            self.log
                .sync_all()
                .map_err(|e| StorageError::io("fsync", self.log_name.clone(), e))?;
            self.log_len = scan.valid_len;
        } else {
            self.log_len = total;
        }
        self.ready = true;
        Ok(scan.torn_tail)
    }

    /// Empties the log down to a header of `generation` and makes that
    /// durable (the directory too, in case the log file is new). A crash
    /// part way leaves an empty log or a prefix of the header, both
    /// recovered as empty.
    fn reset_log(&mut self, generation: u64) -> Result<(), StorageError> {
        self.buf.clear();
        let name = &self.log_name;
        self.log
            .set_len(0)
            .map_err(|e| StorageError::io("truncate", name.clone(), e))?;
        self.log_len = 0;
        // The file is in append mode: the header lands at offset 0.
        (&*self.log)
            .write_all(&log_header(generation))
            .map_err(|e| StorageError::io("write", name.clone(), e))?;
        self.log
            .sync_all()
            .map_err(|e| StorageError::io("fsync", name.clone(), e))?;
        sync_dir(&self.dir)?;
        self.log_len = FILE_HEADER_BYTES as u64;
        Ok(())
    }

    /// The snapshot file and its length, if there is one.
    fn open_snapshot(&mut self) -> Result<Option<(File, u64)>, StorageError> {
        let file = match File::open(&self.snapshot_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.snapshot_len = 0;
                return Ok(None);
            }
            Err(e) => return Err(StorageError::io("open", self.snapshot_name.clone(), e)),
        };
        let len = file
            .metadata()
            .map_err(|e| StorageError::io("stat", self.snapshot_name.clone(), e))?
            .len();
        self.snapshot_len = len;
        Ok(Some((file, len)))
    }

    /// The snapshot's generation and payload (generation 0 without one).
    fn load_snapshot(&mut self) -> Result<(u64, Option<Vec<u8>>), StorageError> {
        Ok(match self.open_snapshot()? {
            Some((file, len)) => {
                let (generation, payload) = read_snapshot(file, len, &self.snapshot_name)?;
                (generation, Some(payload))
            }
            None => (0, None),
        })
    }

    /// Scans (and if needed repairs or resets) the log without loading the
    /// snapshot, whose header alone gives the log's generation.
    fn ready_log(&mut self) -> Result<(), StorageError> {
        let generation = match self.open_snapshot()? {
            Some((mut file, len)) => {
                read_snapshot_header(&mut file, len, &self.snapshot_name)?.generation
            }
            None => 0,
        };
        self.recover_log(generation, &mut |_| {}).map(|_| ())
    }

    /// The generation of the next snapshot: past both files' headers, so
    /// that a crash can never leave a log that passes for the new
    /// snapshot's. Unreadable headers count as generation 0 (the next load
    /// reports them).
    fn next_generation(&self) -> u64 {
        let peek = |path: &Path, magic| {
            let mut head = Vec::with_capacity(FILE_HEADER_BYTES);
            let read = File::open(path)
                .and_then(|f| f.take(FILE_HEADER_BYTES as u64).read_to_end(&mut head));
            read.map_or(0, |_| peek_generation(&head, magic))
        };
        let log = peek(&self.dir.join(Self::LOG_FILE), LOG_MAGIC);
        peek(&self.snapshot_path, SNAPSHOT_MAGIC)
            .max(log)
            .saturating_add(1)
    }

    fn write_tmp_snapshot(&self, snapshot: &[u8], generation: u64) -> Result<(), StorageError> {
        let name = || self.tmp_path.display().to_string();
        let mut tmp = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.tmp_path)
            .map_err(|e| StorageError::io("create", name(), e))?;
        tmp.write_all(&snapshot_prefix(snapshot, generation))
            .and_then(|()| tmp.write_all(snapshot))
            .map_err(|e| StorageError::io("write", name(), e))?;
        tmp.sync_all()
            .map_err(|e| StorageError::io("fsync", name(), e))
    }
}

impl Storage for FileStorage {
    fn load(&mut self) -> Result<Recovered, StorageError> {
        if self.poisoned {
            // What is buffered may or may not follow what reached the file.
            self.buf.clear();
            self.ready = false;
        } else {
            self.write_buffer()?;
        }
        let (generation, snapshot) = self.load_snapshot()?;
        let mut records = Vec::new();
        let torn_tail = self.recover_log(generation, &mut |r| records.push(r))?;
        self.poisoned = false;
        debug!(
            dir = %self.dir.display(),
            generation,
            snapshot_bytes = snapshot.as_ref().map_or(0, Vec::len),
            records = records.len(),
            "loaded file storage"
        );
        Ok(Recovered {
            snapshot,
            records,
            torn_tail,
        })
    }

    fn append(&mut self, record: &[u8]) -> Result<(), StorageError> {
        check_record_len(record.len(), self.max_record_bytes)?;
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        if !self.ready {
            self.ready_log()?;
        }
        let header = record_header(record);
        let framed = framed_len(record);
        if self.buf.len() + header.len() + record.len() > WRITE_BUFFER_BYTES {
            self.write_buffer()?;
        }
        if header.len() + record.len() > WRITE_BUFFER_BYTES {
            // Too big to be worth copying: straight to the file.
            let mut log = &*self.log;
            let res = log.write_all(&header).and_then(|()| log.write_all(record));
            if let Err(e) = res {
                self.poisoned = true;
                return Err(StorageError::io("append to", self.log_name.clone(), e));
            }
        } else {
            self.buf.extend_from_slice(&header);
            self.buf.extend_from_slice(record);
        }
        self.log_len += framed;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        // Not ready: nothing is buffered, but an earlier storage on this
        // directory may have left records in the page cache; fsync them too.
        self.write_buffer()?;
        self.log.sync_data().map_err(|e| {
            // After a failed fsync the kernel may have dropped the dirty
            // pages: never trust the file's contents again without a reload.
            self.poisoned = true;
            StorageError::io("fsync", self.log_name.clone(), e)
        })
    }

    /// Writes the buffer to the file here; the job calls `fsync` on a
    /// shared handle of the same file.
    fn start_sync(&mut self) -> Result<Option<SyncJob>, StorageError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        self.write_buffer()?;
        let (log, name) = (Arc::clone(&self.log), self.log_name.clone());
        Ok(Some(Box::new(move || {
            log.sync_data()
                .map_err(|e| StorageError::io("fsync", name, e))
        })))
    }

    fn finish_sync(&mut self, result: Result<(), StorageError>) -> Result<(), StorageError> {
        // As in `sync`: after a failed fsync the file is never trusted again
        // without a reload.
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
        check_snapshot_len(snapshot.len(), self.max_snapshot_bytes)?;
        let generation = self.next_generation();
        if let Err(e) = self.write_tmp_snapshot(snapshot, generation) {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(e);
        }
        if let Err(e) = fs::rename(&self.tmp_path, &self.snapshot_path) {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(StorageError::io("rename to", self.snapshot_name.clone(), e));
        }
        self.snapshot_len = (SNAPSHOT_OVERHEAD_BYTES + snapshot.len()) as u64;
        // From here a crash leaves the new snapshot and the old log, which
        // is stale (an older generation): recovery resets it. Until the log
        // is reset here, nothing may be appended to it.
        let log_before = self.log_len;
        if let Err(e) = sync_dir(&self.dir).and_then(|()| self.reset_log(generation)) {
            self.poisoned = true;
            self.ready = false;
            return Err(e);
        }
        self.ready = true;
        self.poisoned = false;
        debug!(
            dir = %self.dir.display(),
            generation,
            snapshot_bytes = snapshot.len(),
            log_bytes_dropped = log_before,
            "compacted file storage"
        );
        Ok(())
    }

    fn bytes_on_disk(&self) -> u64 {
        self.snapshot_len + self.log_len
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        if !self.poisoned
            && let Err(e) = self.write_buffer()
        {
            warn!(file = %self.log_name, error = %e, "could not write buffered records on drop");
        }
    }
}

impl fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .field("log_len", &self.log_len)
            .field("snapshot_len", &self.snapshot_len)
            .field("buffered", &self.buf.len())
            .field("ready", &self.ready)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Makes a directory's entries (a new or renamed file) durable.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io("fsync directory", dir.display().to_string(), e))
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory as a file; NTFS journals renames.
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
