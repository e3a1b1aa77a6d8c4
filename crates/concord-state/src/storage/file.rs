//! [`FileStorage`]: a space's snapshot and log as two files in a directory.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{debug, warn};

use super::{
    FILE_HEADER_BYTES, MAX_RECORD_BYTES, MAX_SNAPSHOT_BYTES, Recovered, SNAPSHOT_OVERHEAD_BYTES,
    Storage, StorageError, SyncJob, TornTail, check_record_len, check_snapshot_len, framed_len,
    log_header, read_snapshot, record_header, scan_log, snapshot_prefix,
};

/// Appends are gathered in memory up to this many bytes before they are
/// written to the log file (and always on `sync`, `load` and drop).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Read buffer used while scanning the log on recovery.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// File backend of [`Storage`]: `dir/snapshot` and `dir/log`, in the format
/// and with the recovery rules of the [module documentation](super).
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

    /// Scans the log (handing intact records to `on_record`), truncates a torn
    /// tail, writes the header of a new log, and makes the storage ready for
    /// appends. On `Corrupt` nothing changes.
    fn recover_log(
        &mut self,
        on_record: &mut dyn FnMut(Vec<u8>),
    ) -> Result<Option<TornTail>, StorageError> {
        let reader = File::open(self.dir.join(Self::LOG_FILE))
            .map_err(|e| StorageError::io("open", self.log_name.clone(), e))?;
        let total = reader
            .metadata()
            .map_err(|e| StorageError::io("stat", self.log_name.clone(), e))?
            .len();
        let reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
        let scan = scan_log(reader, total, &self.log_name, on_record)?;
        if let Some(t) = &scan.torn_tail {
            warn!(
                file = %self.log_name,
                offset = t.offset,
                dropped_bytes = t.dropped_bytes,
                "dropping torn tail of log"
            );
        }
        if scan.valid_len < FILE_HEADER_BYTES as u64 {
            // New log, or one whose header never made it: (re)write it.
            self.reset_log()?;
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

    /// Empties the log down to its header and makes that durable (the
    /// directory too, in case the log file is new). A crash part way leaves
    /// an empty log or a prefix of the header, both recovered as empty.
    fn reset_log(&mut self) -> Result<(), StorageError> {
        self.buf.clear();
        let name = &self.log_name;
        self.log
            .set_len(0)
            .map_err(|e| StorageError::io("truncate", name.clone(), e))?;
        self.log_len = 0;
        // The file is in append mode: the header lands at offset 0.
        (&*self.log)
            .write_all(&log_header())
            .map_err(|e| StorageError::io("write", name.clone(), e))?;
        self.log
            .sync_all()
            .map_err(|e| StorageError::io("fsync", name.clone(), e))?;
        sync_dir(&self.dir)?;
        self.log_len = FILE_HEADER_BYTES as u64;
        Ok(())
    }

    fn load_snapshot(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
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
        let payload = read_snapshot(file, len, &self.snapshot_name)?;
        self.snapshot_len = len;
        Ok(Some(payload))
    }

    fn write_tmp_snapshot(&self, snapshot: &[u8]) -> Result<(), StorageError> {
        let name = || self.tmp_path.display().to_string();
        let mut tmp = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.tmp_path)
            .map_err(|e| StorageError::io("create", name(), e))?;
        tmp.write_all(&snapshot_prefix(snapshot))
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
        let snapshot = self.load_snapshot()?;
        let mut records = Vec::new();
        let torn_tail = self.recover_log(&mut |r| records.push(r))?;
        self.poisoned = false;
        debug!(
            dir = %self.dir.display(),
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
            self.recover_log(&mut |_| {})?;
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
        if let Err(e) = self.write_tmp_snapshot(snapshot) {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(e);
        }
        if let Err(e) = fs::rename(&self.tmp_path, &self.snapshot_path) {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(StorageError::io("rename to", self.snapshot_name.clone(), e));
        }
        self.snapshot_len = (SNAPSHOT_OVERHEAD_BYTES + snapshot.len()) as u64;
        sync_dir(&self.dir)?;
        // From here a crash leaves the new snapshot and the old log: fine,
        // the old records are in the snapshot already.
        let log_before = self.log_len;
        if let Err(e) = self.reset_log() {
            self.poisoned = true;
            self.ready = false;
            return Err(e);
        }
        self.ready = true;
        self.poisoned = false;
        debug!(
            dir = %self.dir.display(),
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
mod tests {
    use super::super::RECORD_HEADER_BYTES;
    use super::*;

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let len = (i * 37) % 300;
                (0..len).map(|j| (i * 7 + j) as u8).collect()
            })
            .collect()
    }

    fn open(dir: &Path) -> FileStorage {
        FileStorage::open(dir).unwrap()
    }

    fn log_path(dir: &Path) -> PathBuf {
        dir.join(FileStorage::LOG_FILE)
    }

    /// Writes `recs` to a fresh log in `dir`, synced, and returns the log's
    /// bytes and the offset of each record.
    fn write_log(dir: &Path, recs: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
        let mut s = open(dir);
        s.load().unwrap();
        let mut offsets = Vec::new();
        for r in recs {
            offsets.push(s.bytes_on_disk());
            s.append(r).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        (fs::read(log_path(dir)).unwrap(), offsets)
    }

    fn files_len(dir: &Path) -> u64 {
        [FileStorage::LOG_FILE, FileStorage::SNAPSHOT_FILE]
            .iter()
            .map(|f| fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
            .sum()
    }

    #[test]
    fn round_trip_append_sync_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut recs = records(100);
        // One record larger than the write buffer takes the direct path.
        recs.insert(50, vec![0xab; WRITE_BUFFER_BYTES + 10]);
        let mut s = open(dir.path());
        let first = s.load().unwrap();
        assert_eq!(first, Recovered::default());
        for r in &recs {
            s.append(r).unwrap();
        }
        s.sync().unwrap();
        assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
        drop(s);
        let mut s = open(dir.path());
        let got = s.load().unwrap();
        assert_eq!(got.records, recs);
        assert_eq!(got.snapshot, None);
        assert_eq!(got.torn_tail, None);
        assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
    }

    #[test]
    fn load_sees_appended_records_before_sync() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(b"one").unwrap();
        s.append(b"two").unwrap();
        assert_eq!(
            s.load().unwrap().records,
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        s.append(b"three").unwrap();
        assert_eq!(s.load().unwrap().records.len(), 3);
    }

    #[test]
    fn torn_tail_at_every_offset_of_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut recs = records(5);
        recs.push(b"the last record, cut everywhere".to_vec());
        let (log, offsets) = write_log(dir.path(), &recs);
        let last = offsets[5];
        assert_eq!(
            last + (RECORD_HEADER_BYTES + recs[5].len()) as u64,
            log.len() as u64
        );
        for cut in last..log.len() as u64 {
            fs::write(log_path(dir.path()), &log[..cut as usize]).unwrap();
            let mut s = open(dir.path());
            let got = s.load().unwrap();
            assert_eq!(got.records, recs[..5], "cut at {cut}");
            let expected = (cut > last).then_some(TornTail {
                offset: last,
                dropped_bytes: cut - last,
            });
            assert_eq!(got.torn_tail, expected, "cut at {cut}");
            // The torn bytes are gone from disk.
            assert_eq!(fs::metadata(log_path(dir.path())).unwrap().len(), last);
            assert_eq!(s.bytes_on_disk(), last);
            // Appending after recovery works, and survives a reopen.
            s.append(b"after").unwrap();
            s.sync().unwrap();
            drop(s);
            let got = open(dir.path()).load().unwrap();
            assert_eq!(got.records.len(), 6, "cut at {cut}");
            assert_eq!(got.records[..5], recs[..5]);
            assert_eq!(got.records[5], b"after");
            assert_eq!(got.torn_tail, None);
        }
    }

    #[test]
    fn every_prefix_of_the_log_recovers_the_whole_records_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(6);
        let (log, offsets) = write_log(dir.path(), &recs);
        for cut in 0..=log.len() {
            fs::write(log_path(dir.path()), &log[..cut]).unwrap();
            let whole = offsets
                .iter()
                .zip(&recs)
                .filter(|(off, r)| **off + (RECORD_HEADER_BYTES + r.len()) as u64 <= cut as u64)
                .count();
            let mut s = open(dir.path());
            let got = s.load().unwrap();
            assert_eq!(got.records, recs[..whole], "cut at {cut}");
            // Loading again finds a clean log.
            assert_eq!(s.load().unwrap().torn_tail, None, "cut at {cut}");
        }
    }

    #[test]
    fn bad_checksum_of_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(5);
        let (mut log, offsets) = write_log(dir.path(), &recs);
        let last = offsets[4];
        log[last as usize + 5] ^= 0x40; // a byte of the crc
        fs::write(log_path(dir.path()), &log).unwrap();
        let got = open(dir.path()).load().unwrap();
        assert_eq!(got.records, recs[..4]);
        assert_eq!(
            got.torn_tail,
            Some(TornTail {
                offset: last,
                dropped_bytes: log.len() as u64 - last
            })
        );
        assert_eq!(fs::metadata(log_path(dir.path())).unwrap().len(), last);
    }

    #[test]
    fn bad_record_in_the_middle_is_corrupt_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(5);
        let (log, offsets) = write_log(dir.path(), &recs);
        // A byte of the crc, then a byte of the payload, of record 2.
        for at in [offsets[2] as usize + 6, offsets[2] as usize + 9] {
            let mut bad = log.clone();
            bad[at] ^= 0x01;
            fs::write(log_path(dir.path()), &bad).unwrap();
            let mut s = open(dir.path());
            match s.load() {
                Err(StorageError::Corrupt { offset, file, .. }) => {
                    assert_eq!(offset, offsets[2]);
                    assert!(file.ends_with(FileStorage::LOG_FILE), "{file}");
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
            // Appending refuses too, and writes nothing.
            assert!(matches!(s.append(b"x"), Err(StorageError::Corrupt { .. })));
            s.sync().unwrap();
            drop(s);
            assert_eq!(fs::read(log_path(dir.path())).unwrap(), bad);
        }
    }

    #[test]
    fn oversized_length_at_the_end_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(3);
        let (mut log, _) = write_log(dir.path(), &recs);
        let good = log.len() as u64;
        log.extend_from_slice(&u32::MAX.to_le_bytes());
        log.extend_from_slice(&[9; 20]);
        fs::write(log_path(dir.path()), &log).unwrap();
        let got = open(dir.path()).load().unwrap();
        assert_eq!(got.records, recs);
        assert_eq!(got.torn_tail.map(|t| t.offset), Some(good));
    }

    #[test]
    fn zero_filled_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(3);
        let (mut log, _) = write_log(dir.path(), &recs);
        let good = log.len() as u64;
        log.resize(log.len() + 4096, 0);
        fs::write(log_path(dir.path()), &log).unwrap();
        let got = open(dir.path()).load().unwrap();
        assert_eq!(got.records, recs);
        assert_eq!(
            got.torn_tail,
            Some(TornTail {
                offset: good,
                dropped_bytes: 4096
            })
        );
    }

    #[test]
    fn torn_log_header_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(log_path(dir.path()), &log_header()[..3]).unwrap();
        let mut s = open(dir.path());
        let got = s.load().unwrap();
        assert_eq!(
            got.torn_tail,
            Some(TornTail {
                offset: 0,
                dropped_bytes: 3
            })
        );
        assert_eq!(fs::read(log_path(dir.path())).unwrap(), log_header());
        s.append(b"r").unwrap();
        s.sync().unwrap();
        drop(s);
        assert_eq!(
            open(dir.path()).load().unwrap().records,
            vec![b"r".to_vec()]
        );
    }

    #[test]
    fn foreign_or_newer_log_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let mut newer = log_header().to_vec();
        newer[4] = 9;
        for (bytes, want_version) in [(newer, true), (b"not a concord log".to_vec(), false)] {
            fs::write(log_path(dir.path()), &bytes).unwrap();
            let err = open(dir.path()).load().unwrap_err();
            if want_version {
                assert!(
                    matches!(err, StorageError::UnsupportedVersion { found: 9, .. }),
                    "{err:?}"
                );
            } else {
                assert!(
                    matches!(err, StorageError::Corrupt { offset: 0, .. }),
                    "{err:?}"
                );
            }
            assert_eq!(fs::read(log_path(dir.path())).unwrap(), bytes);
        }
    }

    #[test]
    fn append_before_load_repairs_a_torn_tail_first() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(3);
        let (log, _) = write_log(dir.path(), &recs);
        fs::write(log_path(dir.path()), &log[..log.len() - 2]).unwrap();
        let mut s = open(dir.path());
        s.append(b"new").unwrap();
        s.sync().unwrap();
        drop(s);
        let got = open(dir.path()).load().unwrap();
        assert_eq!(got.records[..2], recs[..2]);
        assert_eq!(got.records[2], b"new");
        assert_eq!(got.records.len(), 3);
        assert_eq!(got.torn_tail, None);
    }

    #[test]
    fn compact_replaces_snapshot_and_empties_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        // Compacting before any load is fine.
        s.compact(b"snap 1").unwrap();
        s.append(b"a").unwrap();
        s.append(b"b").unwrap();
        s.sync().unwrap();
        s.compact(b"snap 2").unwrap();
        assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
        assert_eq!(
            s.bytes_on_disk(),
            (SNAPSHOT_OVERHEAD_BYTES + 6 + FILE_HEADER_BYTES) as u64
        );
        s.append(b"c").unwrap();
        s.sync().unwrap();
        drop(s);
        let got = open(dir.path()).load().unwrap();
        assert_eq!(got.snapshot.as_deref(), Some(&b"snap 2"[..]));
        assert_eq!(got.records, vec![b"c".to_vec()]);
        assert!(!dir.path().join(FileStorage::SNAPSHOT_TMP_FILE).exists());
    }

    #[test]
    fn crash_before_snapshot_rename_keeps_old_snapshot_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.load().unwrap();
        s.compact(b"old snapshot").unwrap();
        s.append(b"r1").unwrap();
        s.append(b"r2").unwrap();
        s.sync().unwrap();
        drop(s);
        let tmp = dir.path().join(FileStorage::SNAPSHOT_TMP_FILE);
        // A complete new snapshot that never got renamed, then a torn one.
        let mut complete = snapshot_prefix(b"new snapshot").to_vec();
        complete.extend_from_slice(b"new snapshot");
        for content in [
            complete.clone(),
            complete[..10].to_vec(),
            b"garbage".to_vec(),
        ] {
            fs::write(&tmp, &content).unwrap();
            let mut s = open(dir.path());
            assert!(!tmp.exists(), "leftover snapshot.tmp not removed");
            let got = s.load().unwrap();
            assert_eq!(got.snapshot.as_deref(), Some(&b"old snapshot"[..]));
            assert_eq!(got.records, vec![b"r1".to_vec(), b"r2".to_vec()]);
            assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
        }
    }

    #[test]
    fn crash_after_rename_before_log_reset_replays_old_log_on_new_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.load().unwrap();
        s.append(b"r1").unwrap();
        s.sync().unwrap();
        drop(s);
        // The rename happened (new snapshot in place), the log reset did not.
        let mut snap = snapshot_prefix(b"new snapshot").to_vec();
        snap.extend_from_slice(b"new snapshot");
        fs::write(dir.path().join(FileStorage::SNAPSHOT_FILE), &snap).unwrap();
        let got = open(dir.path()).load().unwrap();
        assert_eq!(got.snapshot.as_deref(), Some(&b"new snapshot"[..]));
        assert_eq!(got.records, vec![b"r1".to_vec()]);
    }

    #[test]
    fn corrupt_snapshot_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.compact(b"a perfectly good snapshot").unwrap();
        s.append(b"r").unwrap();
        s.sync().unwrap();
        drop(s);
        let path = dir.path().join(FileStorage::SNAPSHOT_FILE);
        let good = fs::read(&path).unwrap();
        let log = fs::read(log_path(dir.path())).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let mut bad_magic = good.clone();
        bad_magic[..4].copy_from_slice(b"XXXX");
        let mut longer = good.clone();
        longer.push(0);
        let cases: Vec<Vec<u8>> = vec![
            flipped,
            good[..good.len() - 1].to_vec(),
            good[..5].to_vec(),
            Vec::new(),
            bad_magic,
            longer,
        ];
        for bad in cases {
            fs::write(&path, &bad).unwrap();
            match open(dir.path()).load() {
                Err(StorageError::Corrupt { file, .. }) => {
                    assert!(file.ends_with(FileStorage::SNAPSHOT_FILE), "{file}");
                }
                other => panic!("expected Corrupt for {bad:?}, got {other:?}"),
            }
            assert_eq!(fs::read(&path).unwrap(), bad);
            assert_eq!(fs::read(log_path(dir.path())).unwrap(), log);
        }
    }

    #[test]
    fn record_too_large_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path()).with_max_record_bytes(16);
        s.load().unwrap();
        s.append(b"ok").unwrap();
        let before = s.bytes_on_disk();
        match s.append(&[7; 17]) {
            Err(StorageError::RecordTooLarge { len: 17, max: 16 }) => {}
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        assert_eq!(s.bytes_on_disk(), before);
        s.append(&[7; 16]).unwrap();
        s.sync().unwrap();
        drop(s);
        let got = open(dir.path()).load().unwrap();
        assert_eq!(got.records, vec![b"ok".to_vec(), vec![7; 16]]);
        // The limit can be lowered, never raised.
        let s = open(dir.path()).with_max_record_bytes(usize::MAX);
        assert_eq!(s.max_record_bytes, MAX_RECORD_BYTES);
    }

    #[test]
    fn snapshot_too_large_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path()).with_max_snapshot_bytes(8);
        s.compact(b"small").unwrap();
        assert!(matches!(
            s.compact(b"far too large"),
            Err(StorageError::SnapshotTooLarge { len: 13, max: 8 })
        ));
        drop(s);
        let got = open(dir.path()).load().unwrap();
        assert_eq!(got.snapshot.as_deref(), Some(&b"small"[..]));
    }

    #[test]
    fn second_open_of_a_directory_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path());
        assert!(matches!(
            FileStorage::open(dir.path()),
            Err(StorageError::Locked { .. })
        ));
        drop(a);
        open(dir.path());
    }

    #[test]
    fn bytes_on_disk_tracks_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.load().unwrap();
        assert_eq!(s.bytes_on_disk(), FILE_HEADER_BYTES as u64);
        for r in records(20) {
            let before = s.bytes_on_disk();
            s.append(&r).unwrap();
            assert_eq!(s.bytes_on_disk(), before + framed_len(&r));
        }
        s.sync().unwrap();
        assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
        s.compact(&[1; 1000]).unwrap();
        assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
        drop(s);
        // Right after open, before load, too.
        assert_eq!(open(dir.path()).bytes_on_disk(), files_len(dir.path()));
    }
}
