//! The replica: one automerge document per space plus the bookkeeping around
//! it (vector clock, change index, pending queue, subscriptions, and the
//! outbox of records to persist).
//!
//! It owns every mutation of the document. It must never do I/O or read a
//! clock: callers pass `now`, peers' bytes come in through
//! [`Replica::apply_changes`] and [`Replica::receive_sync_message`], what
//! peers need goes out through [`Replica::changes_since`], and what must
//! reach the disk goes out through [`Replica::poll_persist`] (see the
//! `persist` module).

mod apply;
mod doc;
mod events;
mod live;
mod persist;
mod read;
mod write;

use std::collections::{HashMap, HashSet};

#[cfg(test)]
use automerge::sync;
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjId};

use crate::subscription::Subscriptions;
use crate::{ChannelPath, ChannelSpec, Hlc, HlcClock, MergeFn, VectorClock};

pub use apply::ApplyOutcome;
pub use live::{MAX_LIVE_REGISTER_BYTES, MAX_LIVE_REGISTERS};
pub use persist::{Durable, MAX_UNPERSISTED_BYTES, Persist, PersistOp};
pub use read::HistoryEntry;
pub use write::CompactReport;

/// Bound on channels remembered by the write-path cache (it is cleared when full).
pub(crate) const MAX_CACHED_CHANNELS: usize = 4096;

/// What the write path remembers about a channel between writes. Cleared
/// whenever remote changes arrive, so it only ever reflects local writes.
#[derive(Debug, Clone)]
pub(crate) struct CachedChannel {
    pub spec: ChannelSpec,
    /// After a local put the register holds exactly that write: its value
    /// and expiry (small values only), so the next put knows the old value
    /// without reading the document.
    pub last: Option<(serde_json::Value, Option<u64>)>,
}

/// A point in time, in milliseconds, as given by the caller (tokio's clock in
/// the network driver, virtual time in netsim). The replica never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// Largest encoded value (JSON plus metadata) accepted in one write.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Default bound on changes waiting for missing dependencies. Past it, new
/// out-of-order changes are dropped and [`ApplyOutcome::overflowed`] tells the
/// caller to run anti-entropy instead.
pub const MAX_PENDING_CHANGES: usize = 1024;

/// Local changes whose bytes are kept for the fast path, so broadcasting a
/// fresh commit never rebuilds the change from the document.
const RECENT_LOCAL_CHANGES: usize = 64;

/// Replica settings.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Bound on changes waiting for their dependencies.
    pub max_pending_changes: usize,
    /// Bound on the bytes of persist ops queued or handed out and not yet
    /// confirmed (see [`Replica::poll_persist`]); past it local writes are
    /// refused with [`crate::StateError::PersistBacklog`] and remote changes are
    /// dropped.
    pub max_unpersisted_bytes: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            max_pending_changes: MAX_PENDING_CHANGES,
            max_unpersisted_bytes: MAX_UNPERSISTED_BYTES,
        }
    }
}

/// What a local write produced. Whether it is durable is the owner's
/// business: it is once [`Replica::durable_seq`] reaches `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReceipt {
    /// The new change.
    pub change: ChangeHash,
    /// Its sequence number for this replica's actor.
    pub seq: u64,
    /// Its hybrid logical clock.
    pub hlc: Hlc,
}

/// Counters describing a replica.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Changes held (sum of the vector clock).
    pub changes: u64,
    /// Declared channels.
    pub channels: usize,
    /// Active subscriptions.
    pub subscribers: usize,
    /// Unresolved conflicts on `reject` channels.
    pub conflicts: usize,
    /// Changes waiting for dependencies.
    pub pending: usize,
    /// Actors in the vector clock.
    pub actors: usize,
}

/// One replica of one space.
pub struct Replica {
    space: String,
    doc: Automerge,
    layout: doc::Layout,
    actor: ActorId,
    actor_hex: String,
    hlc: HlcClock,
    now: Millis,
    clock: VectorClock,
    chains: HashMap<ActorId, Vec<ChangeHash>>,
    known: HashSet<ChangeHash>,
    pending: Vec<Change>,
    cache: HashMap<ChannelPath, CachedChannel>,
    live: live::LiveRegisters,
    merge_fns: HashMap<String, MergeFn>,
    subs: Subscriptions,
    outbox: persist::Outbox,
    config: ReplicaConfig,
    recent_local: std::collections::VecDeque<(u64, Vec<u8>)>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("space", &self.space)
            .field("actor", &self.actor_hex)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// An in-memory replica of `space` writing as `actor`: nothing is
    /// durable, and it hands out no persist ops at all.
    pub fn new(space: &str, actor: ActorId) -> Replica {
        let (doc, layout) = doc::genesis(actor.clone());
        let config = ReplicaConfig::default();
        let outbox = persist::Outbox::in_memory();
        let mut r = Replica::from_parts(space, doc, layout, actor, outbox, config);
        r.reindex();
        r
    }

    fn from_parts(
        space: &str,
        doc: Automerge,
        layout: doc::Layout,
        actor: ActorId,
        outbox: persist::Outbox,
        config: ReplicaConfig,
    ) -> Replica {
        Replica {
            space: space.to_owned(),
            doc,
            layout,
            actor_hex: actor.to_hex_string(),
            actor,
            hlc: HlcClock::new(),
            now: Millis(0),
            clock: VectorClock::new(),
            chains: HashMap::new(),
            known: HashSet::new(),
            pending: Vec::new(),
            cache: HashMap::new(),
            live: live::LiveRegisters::default(),
            merge_fns: HashMap::new(),
            subs: Subscriptions::default(),
            outbox,
            config,
            recent_local: std::collections::VecDeque::new(),
        }
    }

    /// Rebuilds the vector clock, change index and HLC from the document.
    fn reindex(&mut self) {
        let mut metas = self.doc.get_changes_meta(&[]);
        metas.sort_by_key(|m| m.seq);
        for m in metas {
            self.clock.observe(&m.actor, m.seq);
            self.chains
                .entry(m.actor.clone().into_owned())
                .or_default()
                .push(m.hash);
            self.known.insert(m.hash);
            if let Some(h) = m.message.as_deref().and_then(Hlc::parse) {
                self.hlc.observe(h);
            }
        }
    }

    /// The space this replica holds.
    pub fn space(&self) -> &str {
        &self.space
    }

    /// The actor id this replica writes as.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// The vector clock: for each actor, the highest change sequence held.
    pub fn vector_clock(&self) -> &VectorClock {
        &self.clock
    }

    /// The document's heads.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Read access to the underlying automerge document (for export and the
    /// sync protocol; all mutation goes through the replica).
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// The latest hybrid logical clock issued or observed.
    pub fn hlc(&self) -> Hlc {
        self.hlc.last()
    }

    /// The latest `now` the caller passed; TTL visibility is judged against it.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Advances the replica's notion of time (reads use it for TTL).
    pub fn tick(&mut self, now: Millis) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Registers a merge function for `Policy::Merge(name)` channels. Every
    /// replica of the space must register the same function under the same name.
    pub fn register_merge(
        &mut self,
        name: &str,
        f: impl Fn(&[serde_json::Value]) -> serde_json::Value + Send + Sync + 'static,
    ) {
        self.merge_fns
            .insert(name.to_owned(), std::sync::Arc::new(f));
    }

    /// Counters describing this replica.
    pub fn stats(&self) -> Stats {
        Stats {
            changes: self.clock.total(),
            channels: self.channels().len(),
            subscribers: self.subs.len(),
            conflicts: self.conflicts().len(),
            pending: self.pending.len(),
            actors: self.clock.len(),
        }
    }

    /// The map holding every key of the channel at `path`.
    fn channel_obj(&self, path: &ChannelPath) -> &ObjId {
        self.layout.obj(path)
    }

    /// Records a change now held by the document (local or remote) in the
    /// index, and queues it to be persisted.
    fn record_change(&mut self, change: &Change, local: bool) {
        if local {
            if self.recent_local.len() >= RECENT_LOCAL_CHANGES {
                self.recent_local.pop_front();
            }
            self.recent_local
                .push_back((change.seq(), change.raw_bytes().to_vec()));
        }
        let actor = change.actor_id().clone();
        self.clock.observe(&actor, change.seq());
        self.chains.entry(actor).or_default().push(change.hash());
        self.known.insert(change.hash());
        let own_seq = self.clock.get(&self.actor);
        self.outbox.append(change.raw_bytes(), own_seq);
    }
}

impl Replica {
    /// The hash of `actor`'s change number `seq`, if held.
    pub fn change_hash(&self, actor: &ActorId, seq: u64) -> Option<ChangeHash> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.chains.get(actor)?.get(index).copied()
    }

    /// The causal clock of a held change: everything it depends on, itself included.
    pub fn clock_of(&self, change: &ChangeHash) -> Option<VectorClock> {
        let mut clock = VectorClock::new();
        let mut stack = vec![*change];
        let mut seen = HashSet::new();
        while let Some(h) = stack.pop() {
            if !seen.insert(h) {
                continue;
            }
            let meta = self.doc.get_change_meta_by_hash(&h)?;
            if clock.contains(&meta.actor, meta.seq) {
                continue;
            }
            clock.observe(&meta.actor, meta.seq);
            stack.extend(meta.deps.iter().copied());
        }
        Some(clock)
    }
}

#[cfg(test)]
mod tests;
