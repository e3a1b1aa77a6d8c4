//! Each space's storage, kept by the driver beside the space's engine: the
//! replica hands out what to persist ([`Replica::poll_persist`], DESIGN §5)
//! and this module carries it out. Records are appended as soon as they
//! are handed out (a memcpy, for files); fsyncs run on a blocking thread
//! ([`Storage::start_sync`]), so the driver never waits for the disk, and
//! only a finished fsync is confirmed to the replica
//! ([`Replica::persisted`]) and answers the writes it covers. A snapshot
//! (compaction) is written in place with [`Storage::compact`] under
//! `block_in_place` (see [`blocking`]): the log's next appends must follow
//! it, and compactions are rare.
//!
//! It owns the storage of every open space and the bookkeeping of what was
//! written and what is known durable. It must never confirm a version to a
//! replica before an fsync (or a compaction) covering it returned, never
//! answer a writer before that, and never write a record after one it could
//! not write: a log with a hole would recover without the changes after it.
//! Once an op could not be written, the space's storage counts as broken
//! (its writers get [`NetError::Flush`]) until a snapshot rewrites the whole
//! state (a compaction, [`Replica::compact`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use concord_state::{Persist, Replica};
use concord_storage::{Storage, StorageError, SyncJob};
use tracing::warn;

use crate::driver::{Finish, NetError};

/// Runs `f`, which blocks on the disk. On a multi-thread runtime tokio is
/// told first (`block_in_place`), so it hands this worker's other tasks to
/// another thread instead of letting them wait for the disk; elsewhere `f`
/// just runs.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// One space's storage and what the driver did with it.
pub(crate) struct SpaceDisk {
    storage: Box<dyn Storage>,
    /// The last version handed to storage (appended or compacted).
    written: u64,
    /// The last version confirmed durable to the replica.
    confirmed: u64,
    /// Why the storage stopped taking records, if it did.
    broken: Option<String>,
}

/// An fsync on its way to a blocking thread: the job (none when the
/// storage synced in place) and the last version it covers.
pub(crate) struct PendingSync {
    job: Option<SyncJob>,
    covers: u64,
}

/// What a [`PendingSync`] did, for [`SpaceDisk::finish_sync`].
pub(crate) struct SyncDone {
    result: Result<(), StorageError>,
    covers: u64,
    /// How long the fsync took, if one ran (not for a storage that synced
    /// in place).
    pub(crate) took: Option<Duration>,
}

impl PendingSync {
    /// Runs the fsync; blocks on the disk.
    pub(crate) fn run(self) -> SyncDone {
        let (result, took) = match self.job {
            Some(job) => {
                let start = Instant::now();
                let result = job();
                (result, Some(start.elapsed()))
            }
            None => (Ok(()), None),
        };
        SyncDone {
            result,
            covers: self.covers,
            took,
        }
    }
}

impl SpaceDisk {
    pub(crate) fn new(storage: Box<dyn Storage>) -> SpaceDisk {
        SpaceDisk {
            storage,
            written: 0,
            confirmed: 0,
            broken: None,
        }
    }

    /// Bytes the space occupies on its storage.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.storage.bytes_on_disk()
    }

    /// Whether records were written and not yet fsynced.
    pub(crate) fn unsynced(&self) -> bool {
        self.written > self.confirmed
    }

    /// How many persist ops were written and not yet fsynced.
    pub(crate) fn unsynced_ops(&self) -> u64 {
        self.written.saturating_sub(self.confirmed)
    }

    /// Carries out every op `replica` hands out: appends records (not yet
    /// durable), writes snapshots (durable at once, confirmed).
    pub(crate) fn write(&mut self, space: &str, replica: &mut Replica) {
        while let Some(op) = replica.poll_persist() {
            let written = match &op.op {
                Persist::Append(_) if self.broken.is_some() => continue,
                Persist::Append(record) => self.storage.append(record),
                Persist::Snapshot(doc) => blocking(|| self.storage.compact(doc)),
            };
            match (written, &op.op) {
                (Ok(()), Persist::Append(_)) => self.written = op.version,
                (Ok(()), Persist::Snapshot(_)) => {
                    self.written = op.version;
                    self.confirmed = op.version;
                    self.broken = None;
                    replica.persisted(op.version);
                }
                (Err(error), _) => {
                    warn!(space, %error, "writing to the space's storage failed");
                    self.broken = Some(error.to_string());
                }
            }
        }
    }

    /// First half of an fsync of everything written: `None` when nothing
    /// waits for one; an error when the storage is broken (the first time,
    /// logged).
    pub(crate) fn start_sync(&mut self, space: &str) -> Result<Option<PendingSync>, String> {
        if let Some(error) = &self.broken {
            return Err(error.clone());
        }
        if !self.unsynced() {
            return Ok(None);
        }
        match self.storage.start_sync() {
            Ok(job) => Ok(Some(PendingSync {
                job,
                covers: self.written,
            })),
            Err(error) => {
                warn!(space, %error, "fsyncing the space's storage failed");
                let error = error.to_string();
                self.broken = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Second half: confirms what the fsync covered to `replica`. A failed
    /// fsync confirms nothing; the next flush tries again.
    pub(crate) fn finish_sync(
        &mut self,
        replica: &mut Replica,
        done: SyncDone,
    ) -> Result<(), String> {
        self.storage
            .finish_sync(done.result)
            .map_err(|e| e.to_string())?;
        self.confirmed = self.confirmed.max(done.covers);
        replica.persisted(done.covers);
        Ok(())
    }

    /// Fsyncs in place (when the driver stops) and confirms.
    pub(crate) fn sync_now(&mut self, replica: &mut Replica) -> Result<(), String> {
        if let Some(error) = &self.broken {
            return Err(error.clone());
        }
        if self.unsynced() {
            blocking(|| self.storage.sync()).map_err(|e| e.to_string())?;
            self.confirmed = self.written;
            replica.persisted(self.written);
        }
        Ok(())
    }
}

/// What a flush task returns: each space's fsync outcome.
pub(crate) type FlushDone = Result<Vec<(String, SyncDone)>, tokio::task::JoinError>;

/// Fsyncs running on a blocking thread, and the writes they answer.
pub(crate) struct Flushing {
    task: tokio::task::JoinHandle<Vec<(String, SyncDone)>>,
    /// The writers to answer once it is done.
    pub(crate) writers: Vec<(String, Finish)>,
    /// Spaces whose flush failed, with the error.
    pub(crate) failed: HashMap<String, String>,
}

impl Flushing {
    /// Starts an fsync, on a blocking thread, of every space in `disks`
    /// with records not yet synced; `writers` are answered when it is done
    /// (at once when there is nothing to fsync: `None`).
    pub(crate) fn start<'a>(
        disks: impl Iterator<Item = (&'a String, &'a mut SpaceDisk)>,
        writers: Vec<(String, Finish)>,
    ) -> Option<Flushing> {
        let mut failed = HashMap::new();
        let mut pending = Vec::new();
        for (name, disk) in disks {
            match disk.start_sync(name) {
                Ok(Some(sync)) => pending.push((name.clone(), sync)),
                Ok(None) => {}
                Err(error) => {
                    failed.insert(name.clone(), error);
                }
            }
        }
        if pending.is_empty() {
            answer(writers, &failed);
            return None;
        }
        let task = tokio::task::spawn_blocking(move || {
            pending
                .into_iter()
                .map(|(name, sync)| (name, sync.run()))
                .collect()
        });
        Some(Flushing {
            task,
            writers,
            failed,
        })
    }

    /// Waits for the flush in `slot`; forever if there is none.
    pub(crate) async fn done(slot: &mut Option<Flushing>) -> FlushDone {
        match slot {
            Some(f) => (&mut f.task).await,
            None => std::future::pending().await,
        }
    }
}

/// Answers every writer: an error for those whose space's flush failed.
pub(crate) fn answer(writers: Vec<(String, Finish)>, failed: &HashMap<String, String>) {
    for (space, finish) in writers {
        finish(match failed.get(&space) {
            Some(error) => Err(NetError::Flush(error.clone())),
            None => Ok(()),
        });
    }
}
