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
pub(crate) mod doc;
mod ephemeral;
mod epoch;
mod events;
mod live;
mod persist;
mod read;
mod schema;
mod write;

use std::collections::{HashMap, HashSet, VecDeque};

#[cfg(test)]
use automerge::sync;
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjId};

use crate::epoch::EpochConfig;
use crate::subscription::Subscriptions;
use crate::{ChannelPath, ChannelSpec, Hlc, HlcClock, MergeFn, VectorClock};

pub use apply::ApplyOutcome;
pub use epoch::{Adoption, EpochAnnounce, EpochInfo};
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
    /// When the replica cuts its epoch, and how many earlier ones it keeps.
    pub epochs: EpochConfig,
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
            epochs: EpochConfig::default(),
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
    /// Changes held (sum of the vector clock), the epoch's cut included.
    pub changes: u64,
    /// Changes in the current epoch's document since its cut.
    pub epoch_changes: u64,
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
    /// Live ephemeral values, (channel, writer) pairs (never in the document).
    pub ephemeral_values: usize,
    /// Ephemeral values from peers dropped because the space held
    /// [`crate::MAX_EPHEMERAL_VALUES`] already.
    pub ephemeral_dropped: u64,
}

/// One replica of one space.
pub struct Replica {
    space: String,
    doc: Automerge,
    layout: doc::Layout,
    epoch: epoch::EpochState,
    retained: VecDeque<epoch::Retained>,
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
    ephemeral: crate::ephemeral::EphemeralStore,
    merge_fns: HashMap<String, MergeFn>,
    migrations: crate::schema::Migrations,
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
        Replica::with_config(space, actor, ReplicaConfig::default())
    }

    /// Like [`Replica::new`] with `config`.
    pub fn with_config(space: &str, actor: ActorId, config: ReplicaConfig) -> Replica {
        let (doc, layout) = doc::genesis(actor.clone());
        let epoch = epoch::EpochState::first(&doc);
        let outbox = persist::Outbox::in_memory();
        let mut r = Replica::from_parts(space, doc, layout, epoch, actor, outbox, config);
        r.reindex();
        r
    }

    fn from_parts(
        space: &str,
        doc: Automerge,
        layout: doc::Layout,
        epoch: epoch::EpochState,
        actor: ActorId,
        outbox: persist::Outbox,
        config: ReplicaConfig,
    ) -> Replica {
        Replica {
            space: space.to_owned(),
            doc,
            layout,
            epoch,
            retained: VecDeque::new(),
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
            ephemeral: crate::ephemeral::EphemeralStore::default(),
            merge_fns: HashMap::new(),
            migrations: crate::schema::Migrations::default(),
            subs: Subscriptions::default(),
            outbox,
            config,
            recent_local: std::collections::VecDeque::new(),
        }
    }

    /// Rebuilds the vector clock, change index and HLC from the document
    /// and its epoch's cut.
    fn reindex(&mut self) {
        self.clock.merge(&self.epoch.base);
        self.hlc.observe(self.epoch.base_hlc);
        let mut metas = self.doc.get_changes_meta(&[]);
        metas.sort_by_key(|m| m.seq);
        for m in metas {
            self.known.insert(m.hash);
            if self.epoch.genesis.contains(&m.hash) {
                continue;
            }
            self.clock
                .observe(&m.actor, self.epoch.logical(&m.actor, m.seq));
            self.chains
                .entry(m.actor.clone().into_owned())
                .or_default()
                .push(m.hash);
            // What the epoch added: counted again on every rebuild (bytes
            // and bucket ops only from here on: they are thresholds, while
            // the largest HLC goes into a cut's first document).
            let growth = &mut self.epoch.growth;
            growth.changes += 1;
            if let Some(h) = m.message.as_deref().and_then(Hlc::parse) {
                self.hlc.observe(h);
                growth.max_hlc = growth.max_hlc.max(h);
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

    /// Advances the replica's notion of time (reads use it for TTL) and
    /// removes the ephemeral values expired by then, with their events.
    pub fn tick(&mut self, now: Millis) {
        if now > self.now {
            self.now = now;
        }
        self.expire_ephemeral();
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
            epoch_changes: self.epoch.growth.changes,
            channels: self.channels().len(),
            subscribers: self.subs.len(),
            conflicts: self.conflicts().len(),
            pending: self.pending.len(),
            actors: self.clock.len(),
            ephemeral_values: self.ephemeral.live_count(self.now),
            ephemeral_dropped: self.ephemeral.dropped,
        }
    }

    /// The map holding every key of the channel at `path`.
    fn channel_obj(&self, path: &ChannelPath) -> &ObjId {
        self.layout.obj(path)
    }

    /// Records a change now held by the document (local or remote) in the
    /// index, and queues it to be persisted.
    fn record_change(&mut self, change: &Change, local: bool, buckets: &[ObjId]) {
        let seq = self.logical_seq(change);
        if local {
            if self.recent_local.len() >= RECENT_LOCAL_CHANGES {
                self.recent_local.pop_front();
            }
            self.recent_local
                .push_back((seq, change.raw_bytes().to_vec()));
        }
        self.grow(change, buckets);
        let actor = change.actor_id().clone();
        self.clock.observe(&actor, seq);
        self.chains.entry(actor).or_default().push(change.hash());
        self.known.insert(change.hash());
        let own_seq = self.clock.get(&self.actor);
        self.outbox.append(change.raw_bytes(), own_seq);
    }
}

impl Replica {
    /// The logical sequence number of a change of this epoch's document.
    fn logical_seq(&self, change: &Change) -> u64 {
        self.epoch.logical(change.actor_id(), change.seq())
    }

    /// The hash of `actor`'s change number `seq` in the current epoch's
    /// document, if held there.
    pub fn change_hash(&self, actor: &ActorId, seq: u64) -> Option<ChangeHash> {
        let first = self.epoch.base.get(actor) + 1;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.chains.get(actor)?.get(index).copied()
    }

    /// The part of a change's causal clock (see [`Replica::clock_of`]) that
    /// `covered` lacks, for a caller that keeps a down-closed union of
    /// causal pasts: the walk stops at changes `covered` holds, and without
    /// looking them up at changes `known` names (the caller vouches that
    /// `covered` holds their causal past). Empty for a change this epoch
    /// does not hold.
    pub fn causal_past_beyond(
        &self,
        change: &ChangeHash,
        covered: &VectorClock,
        known: impl Fn(&ChangeHash) -> bool,
    ) -> VectorClock {
        let mut found = VectorClock::new();
        let mut stack = vec![*change];
        let mut seen = HashSet::new();
        let mut native = false;
        while let Some(h) = stack.pop() {
            if !seen.insert(h) || self.epoch.genesis.contains(&h) || known(&h) {
                continue;
            }
            let Some(meta) = self.doc.get_change_meta_by_hash(&h) else {
                continue;
            };
            if let Some(past) = crate::epoch::translate::decode_past(&meta.extra) {
                found.merge(&past);
                continue;
            }
            let seq = self.epoch.logical(&meta.actor, meta.seq);
            if covered.contains(&meta.actor, seq) {
                continue;
            }
            native = true;
            found.observe(&meta.actor, seq);
            stack.extend(meta.deps.iter().copied());
        }
        if native {
            found.merge(&self.epoch.base);
        }
        found
    }

    /// The causal clock of a change of the current epoch: everything its
    /// writer had seen, itself included (for a change written in this
    /// epoch, the epoch's cut and its dependencies; for one carried over
    /// from an earlier epoch, what its writer saw there).
    pub fn clock_of(&self, change: &ChangeHash) -> Option<VectorClock> {
        let mut clock = VectorClock::new();
        let mut stack = vec![*change];
        let mut seen = HashSet::new();
        while let Some(h) = stack.pop() {
            if !seen.insert(h) || self.epoch.genesis.contains(&h) {
                continue;
            }
            let meta = self.doc.get_change_meta_by_hash(&h)?;
            if let Some(past) = crate::epoch::translate::decode_past(&meta.extra) {
                clock.merge(&past);
                continue;
            }
            clock.merge(&self.epoch.base);
            clock.observe(&meta.actor, self.epoch.logical(&meta.actor, meta.seq));
            stack.extend(meta.deps.iter().copied());
        }
        Some(clock)
    }
}

#[cfg(test)]
mod tests;
