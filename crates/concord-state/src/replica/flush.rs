//! Making appended changes durable: in place ([`Replica::flush`]) or in two
//! halves ([`Replica::start_flush`], then [`Replica::finish_flush`]), so that
//! an owner with other work (the network driver) can run the fsync on
//! another thread instead of stalling on the disk.
//!
//! Bookkeeping: `appended` counts records handed to storage since open,
//! `synced` how many of them are known durable; a flush covers the records
//! appended before it started, never later ones. Nothing here blocks except
//! [`Replica::flush`] and [`PendingFlush::run`].

use super::Replica;
use crate::StateError;
use crate::storage::{StorageError, SyncJob};

/// A flush begun by [`Replica::start_flush`]: [`PendingFlush::run`] it on any
/// thread, then hand the outcome to [`Replica::finish_flush`]. Until then
/// the changes it covers are not known durable.
#[must_use = "the changes count as durable only after run + finish_flush"]
pub struct PendingFlush {
    job: Option<SyncJob>,
    covers: u64,
    own_seq: u64,
}

impl std::fmt::Debug for PendingFlush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingFlush")
            .field("job", &self.job.is_some())
            .field("covers", &self.covers)
            .field("own_seq", &self.own_seq)
            .finish()
    }
}

impl PendingFlush {
    /// Runs the slow half (an fsync, for files); blocks on the disk.
    pub fn run(self) -> FlushOutcome {
        FlushOutcome {
            result: self.job.map_or(Ok(()), |job| job()),
            covers: self.covers,
            own_seq: self.own_seq,
        }
    }
}

/// What a [`PendingFlush`] did, for [`Replica::finish_flush`].
#[derive(Debug)]
#[must_use = "hand it to Replica::finish_flush"]
pub struct FlushOutcome {
    result: Result<(), StorageError>,
    covers: u64,
    own_seq: u64,
}

impl Replica {
    /// Highest sequence number of this replica's own changes known durable.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Changes appended to storage but not yet known durable (always 0
    /// without storage): what the next flush would cover.
    pub fn unsynced(&self) -> usize {
        match self.storage {
            Some(_) => usize::try_from(self.appended - self.synced).unwrap_or(usize::MAX),
            None => 0,
        }
    }

    /// Makes every written change durable (fsync) and returns the durable sequence.
    pub fn flush(&mut self) -> Result<u64, StateError> {
        if let Some(storage) = &mut self.storage {
            if self.appended > self.synced {
                storage.sync()?;
                self.synced = self.appended;
            }
            self.durable_seq = self.clock.get(&self.actor);
        }
        Ok(self.durable_seq)
    }

    /// First half of a flush that need not block this thread: hands what
    /// is appended to storage and returns the part that waits for the disk.
    /// Writes may go on meanwhile; the flush covers only changes made
    /// before this call.
    ///
    /// ```
    /// use concord_state::storage::FileStorage;
    /// use concord_state::{ActorId, Millis, Replica, ReplicaConfig, SyncPolicy};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let config = ReplicaConfig { sync: SyncPolicy::Batched { max_unsynced: 64 }, ..Default::default() };
    /// let storage = Box::new(FileStorage::open(dir.path())?);
    /// let mut r = Replica::open("team", ActorId::from(&[1u8; 16][..]), storage, config)?;
    /// r.put(Millis(1), "observation/ci", &"green")?;
    /// let pending = r.start_flush()?;
    /// let fsynced = std::thread::spawn(move || pending.run()); // the fsync, elsewhere
    /// r.put(Millis(2), "observation/ci", &"red")?; // not covered by it
    /// assert_eq!(r.finish_flush(fsynced.join().unwrap())?, 1); // own changes durable: 1
    /// assert_eq!(r.unsynced(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_flush(&mut self) -> Result<PendingFlush, StateError> {
        let job = match &mut self.storage {
            Some(storage) if self.appended > self.synced => storage.start_sync()?,
            _ => None,
        };
        Ok(PendingFlush {
            job,
            covers: self.appended,
            own_seq: self.clock.get(&self.actor),
        })
    }

    /// Second half: records a [`PendingFlush`]'s outcome and returns the
    /// durable sequence. On failure the storage counts as failed to sync
    /// (see [`StorageError::Poisoned`]) and nothing new is durable.
    pub fn finish_flush(&mut self, outcome: FlushOutcome) -> Result<u64, StateError> {
        if let Some(storage) = &mut self.storage {
            storage.finish_sync(outcome.result)?;
            self.synced = self.synced.max(outcome.covers);
            self.durable_seq = self.durable_seq.max(outcome.own_seq);
        }
        Ok(self.durable_seq)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io;

    use super::*;
    use crate::storage::{FileStorage, MemDisk, MemStorage, Recovered, Storage};
    use crate::{ActorId, Millis, ReplicaConfig, SyncPolicy};

    fn deferred() -> ReplicaConfig {
        ReplicaConfig {
            sync: SyncPolicy::Batched { max_unsynced: 64 },
            ..ReplicaConfig::default()
        }
    }

    fn open(storage: Box<dyn Storage>) -> Replica {
        Replica::open("s", ActorId::from(&[1u8; 16][..]), storage, deferred()).unwrap()
    }

    #[test]
    fn a_flush_covers_only_what_was_written_before_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = open(Box::new(FileStorage::open(dir.path()).unwrap()));
        r.put(Millis(1), "observation/a", &1).unwrap();
        let pending = r.start_flush().unwrap();
        // written while the fsync is on its way: not covered by it
        r.put(Millis(2), "observation/a", &2).unwrap();
        let outcome = std::thread::spawn(move || pending.run()).join().unwrap();
        assert_eq!(r.unsynced(), 2, "nothing counts before finish_flush");
        assert_eq!(r.finish_flush(outcome).unwrap(), 1);
        assert_eq!((r.unsynced(), r.durable_seq()), (1, 1));
        assert_eq!(r.flush().unwrap(), 2);
        assert_eq!(r.unsynced(), 0);
        // nothing to do: no job, nothing changes
        let outcome = r.start_flush().unwrap().run();
        assert_eq!(r.finish_flush(outcome).unwrap(), 2);
    }

    #[test]
    fn an_in_place_sync_meanwhile_is_not_undone() {
        let mut r = open(Box::new(MemStorage::new(MemDisk::new(), "s")));
        r.put(Millis(1), "observation/a", &1).unwrap();
        let pending = r.start_flush().unwrap();
        r.put(Millis(2), "observation/a", &2).unwrap();
        r.flush().unwrap();
        r.finish_flush(pending.run()).unwrap();
        assert_eq!((r.unsynced(), r.durable_seq()), (0, 2));
    }

    /// A disk whose detached fsync always fails.
    struct FailingFsync(MemStorage);

    impl Storage for FailingFsync {
        fn load(&mut self) -> Result<Recovered, StorageError> {
            self.0.load()
        }
        fn append(&mut self, record: &[u8]) -> Result<(), StorageError> {
            self.0.append(record)
        }
        fn sync(&mut self) -> Result<(), StorageError> {
            self.0.sync()
        }
        fn start_sync(&mut self) -> Result<Option<SyncJob>, StorageError> {
            Ok(Some(Box::new(|| {
                Err(StorageError::Io {
                    op: "fsync",
                    file: "failing".into(),
                    source: io::Error::other("disk gone"),
                })
            })))
        }
        fn compact(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
            self.0.compact(snapshot)
        }
        fn bytes_on_disk(&self) -> u64 {
            self.0.bytes_on_disk()
        }
    }

    #[test]
    fn a_failed_fsync_makes_nothing_durable() {
        let mut r = open(Box::new(FailingFsync(MemStorage::new(MemDisk::new(), "s"))));
        r.put(Millis(1), "observation/a", &1).unwrap();
        let outcome = r.start_flush().unwrap().run();
        assert!(matches!(
            r.finish_flush(outcome),
            Err(StateError::Storage(StorageError::Io { op: "fsync", .. }))
        ));
        assert_eq!((r.unsynced(), r.durable_seq()), (1, 0));
    }

    #[test]
    fn a_failed_detached_fsync_poisons_a_file_storage() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = FileStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        storage.append(b"one").unwrap();
        let job = storage.start_sync().unwrap();
        assert!(job.is_some(), "files fsync off the caller's thread");
        let failed = Err(StorageError::Io {
            op: "fsync",
            file: "log".into(),
            source: io::Error::other("EIO"),
        });
        assert!(storage.finish_sync(failed).is_err());
        assert!(matches!(
            storage.append(b"two"),
            Err(StorageError::Poisoned { .. })
        ));
        // a reload trusts only the disk again
        let recovered = storage.load().unwrap();
        assert_eq!(recovered.records, vec![b"one".to_vec()]);
        storage.append(b"two").unwrap();
    }
}
