//! Persistence as an effect (DESIGN §5), in the shape of the lease
//! acceptor's `poll_persist` / `Persisted`: every change the replica comes to
//! hold, local or remote, is queued as a [`Persist::Append`] of its raw
//! bytes, a compaction as a [`Persist::Snapshot`] of the saved document. The
//! owner (the network driver, the simulator, a test) takes the ops in order
//! with [`Replica::poll_persist`], writes and fsyncs them, and reports the
//! highest version it made durable with [`Replica::persisted`]; a restart
//! rebuilds the replica from what storage held with [`Replica::recover`].
//!
//! This module owns the outbox of ops and the bookkeeping of what is known
//! durable. It must never do I/O, never count an op durable before its
//! owner confirmed it, and never let the bytes it holds unconfirmed grow past
//! [`ReplicaConfig::max_unpersisted_bytes`]: past the bound local writes are
//! refused ([`StateError::PersistBacklog`]) and remote changes dropped, so a
//! stalled disk slows the space down instead of filling memory.

use std::collections::VecDeque;

use automerge::sync;
use automerge::{ActorId, Automerge, Change};
use tracing::debug;

use super::{Replica, ReplicaConfig, doc};
use crate::StateError;

/// Default bound on the bytes of persist ops queued or handed out and not
/// yet confirmed ([`ReplicaConfig::max_unpersisted_bytes`]): 64 MiB.
pub const MAX_UNPERSISTED_BYTES: usize = 64 * 1024 * 1024;

/// A durable effect the replica asks its owner to carry out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// Append one record (one automerge change, raw bytes) to the log.
    Append(Vec<u8>),
    /// Atomically replace snapshot + log by this snapshot (a saved automerge
    /// document): it covers every record handed out before it.
    Snapshot(Vec<u8>),
}

impl Persist {
    /// The bytes to write.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Persist::Append(b) | Persist::Snapshot(b) => b,
        }
    }
}

/// One [`Persist`] with its version: versions strictly increase, and
/// [`Replica::persisted`] confirms every op up to a version at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistOp {
    /// Its place in the order of ops.
    pub version: u64,
    /// What to do.
    pub op: Persist,
}

/// What durable storage held when the replica is (re)built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durable {
    /// The newest snapshot (a saved automerge document), if any.
    pub snapshot: Option<Vec<u8>>,
    /// The log's records after it (automerge changes), in order.
    pub records: Vec<Vec<u8>>,
}

/// An op in the outbox: its version, size, and the replica's own highest
/// change sequence when it was queued (durable once the op is).
#[derive(Debug)]
struct Entry {
    version: u64,
    bytes: usize,
    own_seq: u64,
}

/// Ops not yet polled, ops handed out and not yet confirmed, and what is
/// known durable.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// False for an in-memory replica: nothing is ever queued.
    durable: bool,
    queue: VecDeque<(Entry, Persist)>,
    handed: VecDeque<Entry>,
    /// The last version given out.
    version: u64,
    /// Bytes of every op in `queue` and `handed`.
    bytes: usize,
    durable_seq: u64,
}

impl Outbox {
    /// The outbox of a replica that persists nothing.
    pub(crate) fn in_memory() -> Outbox {
        Outbox {
            durable: false,
            ..Outbox::durable(0)
        }
    }

    /// The outbox of a durable replica whose own changes up to
    /// `durable_seq` are on storage.
    fn durable(durable_seq: u64) -> Outbox {
        Outbox {
            durable: true,
            queue: VecDeque::new(),
            handed: VecDeque::new(),
            version: 0,
            bytes: 0,
            durable_seq,
        }
    }

    fn push(&mut self, op: Persist, own_seq: u64) {
        self.version += 1;
        self.bytes += op.bytes().len();
        let entry = Entry {
            version: self.version,
            bytes: op.bytes().len(),
            own_seq,
        };
        self.queue.push_back((entry, op));
    }

    /// Queues a record.
    pub(crate) fn append(&mut self, record: &[u8], own_seq: u64) {
        if self.durable {
            self.push(Persist::Append(record.to_vec()), own_seq);
        }
    }

    /// Queues a snapshot, dropping the ops not yet polled: it covers them.
    fn snapshot(&mut self, doc: Vec<u8>, own_seq: u64) {
        if !self.durable {
            return;
        }
        for (entry, _) in self.queue.drain(..) {
            self.bytes -= entry.bytes;
        }
        self.push(Persist::Snapshot(doc), own_seq);
    }

    fn poll(&mut self) -> Option<PersistOp> {
        let (entry, op) = self.queue.pop_front()?;
        debug_assert!(
            self.handed.back().is_none_or(|h| h.version < entry.version),
            "persist versions must increase"
        );
        let version = entry.version;
        self.handed.push_back(entry);
        Some(PersistOp { version, op })
    }

    fn persisted(&mut self, version: u64) {
        while let Some(entry) = self.handed.front() {
            if entry.version > version {
                break;
            }
            self.bytes -= entry.bytes;
            self.durable_seq = self.durable_seq.max(entry.own_seq);
            self.handed.pop_front();
        }
    }

    fn len(&self) -> usize {
        self.queue.len() + self.handed.len()
    }

    /// Whether the unconfirmed bytes reached `max`.
    fn full(&self, max: usize) -> bool {
        self.bytes >= max
    }
}

impl Replica {
    /// Rebuilds a durable replica of `space`, writing as `actor`, from what
    /// storage held (the snapshot, then the log's records); a fresh one
    /// (empty [`Durable`]) queues its genesis change as an
    /// [`Persist::Append`]. From here on every change it holds is handed
    /// out by [`Replica::poll_persist`].
    ///
    /// A node that restarts after an unclean shutdown must pass a *new*
    /// actor id (identity + incarnation, see DESIGN §5): a change it wrote
    /// but lost before its fsync may already be held by peers under the old
    /// sequence number.
    ///
    /// # Errors
    /// [`StateError::InvalidChange`] for a record that is not an automerge
    /// change, [`StateError::Automerge`] for a snapshot automerge cannot
    /// load, [`StateError::NotASpace`] for a document without the channel
    /// families.
    ///
    /// ```
    /// use concord_state::{ActorId, Durable, Millis, Persist, Replica, ReplicaConfig};
    ///
    /// let actor = ActorId::from(&[1u8; 16][..]);
    /// let mut r = Replica::recover("team", actor, Durable::default(), ReplicaConfig::default())?;
    /// r.put(Millis(1), "observation/ci", &"green")?;
    /// // The owner's disk: a log of records (and a snapshot, after a compaction).
    /// let mut disk = Durable::default();
    /// let mut written = 0;
    /// while let Some(op) = r.poll_persist() {
    ///     match op.op {
    ///         Persist::Append(record) => disk.records.push(record),
    ///         Persist::Snapshot(doc) => disk = Durable { snapshot: Some(doc), records: Vec::new() },
    ///     }
    ///     written = op.version;
    /// }
    /// assert_eq!(r.durable_seq(), 0, "nothing counts before the owner confirms");
    /// // ...fsync, then:
    /// r.persisted(written);
    /// assert_eq!((r.durable_seq(), r.unpersisted()), (1, 0));
    /// // A restart (under a new incarnation of the actor id, DESIGN §5).
    /// let again = Replica::recover("team", ActorId::from(&[2u8; 16][..]), disk, ReplicaConfig::default())?;
    /// assert_eq!(again.get("observation/ci")?, Some(serde_json::json!("green")));
    /// # Ok::<(), concord_state::StateError>(())
    /// ```
    pub fn recover(
        space: &str,
        actor: ActorId,
        durable: Durable,
        config: ReplicaConfig,
    ) -> Result<Replica, StateError> {
        let _span = tracing::info_span!("replica_recover", space).entered();
        let Durable { snapshot, records } = durable;
        let fresh = snapshot.is_none() && records.is_empty();
        let (mut doc, retained) = match &snapshot {
            Some(bytes) => super::epoch::load_snapshot(bytes)?,
            None if fresh => (doc::genesis(actor.clone()).0, VecDeque::new()),
            None => (Automerge::new(), VecDeque::new()),
        };
        let changes = records
            .into_iter()
            .map(|r| Change::from_bytes(r).map_err(|e| StateError::InvalidChange(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        doc.apply_changes(changes)?;
        doc.set_actor(actor.clone());
        let layout = doc::layout(&doc)?;
        let epoch = super::epoch::EpochState::of(&doc, 0)?;
        let mut r =
            Replica::from_parts(space, doc, layout, epoch, actor, Outbox::durable(0), config);
        r.retained = retained;
        r.reindex();
        r.outbox.durable_seq = r.clock.get(&r.actor);
        if fresh {
            for change in r.doc.get_changes(&[]) {
                r.outbox.append(change.raw_bytes(), 0);
            }
        }
        debug!(space, changes = r.clock.total(), fresh, "replica recovered");
        Ok(r)
    }

    /// The next op to carry out, in order (versions strictly increase);
    /// `None` when there is nothing to persist (always, for a replica made
    /// by [`Replica::new`]). The op counts as durable only once
    /// [`Replica::persisted`] confirms its version.
    pub fn poll_persist(&mut self) -> Option<PersistOp> {
        self.outbox.poll()
    }

    /// The owner made every op up to `version` durable. Versions not handed
    /// out by [`Replica::poll_persist`] yet, and versions already confirmed,
    /// change nothing.
    pub fn persisted(&mut self, version: u64) {
        self.outbox.persisted(version);
    }

    /// Ops queued or handed out and not yet confirmed.
    pub fn unpersisted(&self) -> usize {
        self.outbox.len()
    }

    /// Bytes of the ops queued or handed out and not yet confirmed (bounded
    /// by [`ReplicaConfig::max_unpersisted_bytes`]).
    pub fn unpersisted_bytes(&self) -> usize {
        self.outbox.bytes
    }

    /// Highest sequence number of this replica's own changes known durable.
    pub fn durable_seq(&self) -> u64 {
        self.outbox.durable_seq
    }

    /// The replica's whole durable state as one snapshot, taken now: the
    /// bytes a [`Persist::Snapshot`] would carry (the current document and
    /// the retained epochs). Recovering from it alone, as
    /// `Durable { snapshot: Some(bytes), records: vec![] }`, gives a replica
    /// with every change this one holds; queues nothing (e.g. for a backup).
    ///
    /// ```
    /// use concord_state::{ActorId, Durable, Millis, Replica, ReplicaConfig};
    ///
    /// let mut r = Replica::recover("team", ActorId::from(&[1u8; 16][..]), Durable::default(), ReplicaConfig::default())?;
    /// r.put(Millis(1), "observation/ci", &"green")?;
    /// let before = r.unpersisted();
    /// let snapshot = r.durable_snapshot();
    /// assert_eq!(r.unpersisted(), before, "nothing queued");
    /// let durable = Durable { snapshot: Some(snapshot), records: Vec::new() };
    /// let copy = Replica::recover("team", ActorId::from(&[2u8; 16][..]), durable, ReplicaConfig::default())?;
    /// assert_eq!(copy.get("observation/ci")?, Some(serde_json::json!("green")));
    /// assert_eq!(copy.vector_clock(), r.vector_clock());
    /// # Ok::<(), concord_state::StateError>(())
    /// ```
    pub fn durable_snapshot(&self) -> Vec<u8> {
        let _span = tracing::debug_span!("durable_snapshot", space = %self.space).entered();
        self.snapshot_bytes()
    }

    /// Queues a snapshot of the whole document and the retained epochs (see
    /// [`Replica::compact`] and the `epoch` module); returns its size (0 for
    /// an in-memory replica, which queues nothing).
    pub(crate) fn queue_snapshot(&mut self) -> usize {
        if !self.outbox.durable {
            return 0;
        }
        let doc = self.snapshot_bytes();
        let len = doc.len();
        let own_seq = self.clock.get(&self.actor);
        self.outbox.snapshot(doc, own_seq);
        len
    }

    /// Whether the persist backlog is at its bound: no change may be added.
    pub(crate) fn backlogged(&self) -> bool {
        self.outbox.full(self.config.max_unpersisted_bytes)
    }

    /// [`StateError::PersistBacklog`] when the backlog is at its bound.
    pub(crate) fn check_backlog(&self) -> Result<(), StateError> {
        if self.backlogged() {
            return Err(StateError::PersistBacklog {
                unpersisted_bytes: self.outbox.bytes,
                max: self.config.max_unpersisted_bytes,
            });
        }
        Ok(())
    }

    /// A sync message that arrives while the backlog is at its bound is not
    /// received: the session starts over once the owner caught up.
    pub(crate) fn refuse_sync_message(&self, state: &mut sync::State) {
        debug!(space = %self.space, "persist backlog: sync message dropped");
        *state = sync::State::new();
    }
}

#[cfg(test)]
mod tests;
