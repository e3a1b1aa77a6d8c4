//! The replica's side of epochs (see [`crate::epoch`]): where its epoch
//! starts, cutting at its own state, adopting a peer's cut, the first
//! document for a peer that lacks a cut, and the earlier epochs it keeps.
//!
//! A switch never changes what readers see: the new document holds the
//! live state of the cut plus every change the cut lacks, carried over, so
//! it publishes no events. Changes still waiting for their dependencies are
//! dropped (they belong to the old epoch; peers carry them over and send
//! them again).

use std::collections::{HashMap, HashSet, VecDeque};

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};

use super::doc::{Layout, causal_order};
use tracing::{debug, info};

use super::{Millis, Replica};
use crate::epoch::cut::{CutState, DocView};
use crate::epoch::origin::Dot;
use crate::epoch::translate::{Source, Target, decode_past};
use crate::epoch::{EpochId, archive, genesis};
use crate::keys::GENESIS_ACTOR;
use crate::replica::doc::is_genesis_actor;
use crate::{Causality, Hlc, StateError, VectorClock};

/// What a replica knows of its current epoch.
#[derive(Debug, Clone)]
pub(crate) struct EpochState {
    pub id: EpochId,
    /// Every logical change the cut holds.
    pub base: VectorClock,
    /// The largest hybrid logical clock in the cut.
    pub base_hlc: Hlc,
    /// Switches this replica made since it was created (for display).
    pub number: u64,
    /// The changes of the epoch's first document.
    pub genesis: HashSet<ChangeHash>,
    /// Changes, bytes and bucket operations added since the cut.
    pub growth: Growth,
}

/// What an epoch added since its cut.
#[derive(Debug, Clone, Default)]
pub(crate) struct Growth {
    pub changes: u64,
    pub bytes: u64,
    /// The largest hybrid logical clock of those changes (the replica's own
    /// clock also moves with ephemeral writes, which are in no change).
    pub max_hlc: Hlc,
    pub bucket_ops: HashMap<automerge::ObjId, u64>,
}

impl EpochState {
    /// The epoch of `doc`: its descriptor if it has one, else the first epoch.
    pub(crate) fn of(doc: &Automerge, number: u64) -> Result<EpochState, StateError> {
        let genesis: HashSet<ChangeHash> = doc
            .get_changes_meta(&[])
            .iter()
            .filter(|m| is_genesis_actor(&m.actor))
            .map(|m| m.hash)
            .collect();
        let (id, base, base_hlc) = match genesis::descriptor(doc)? {
            Some(d) => {
                let base = d
                    .clock()
                    .ok_or_else(|| StateError::InvalidEpoch("descriptor actor not hex".into()))?;
                let seal = match doc.get(automerge::ROOT, genesis::EPOCH_KEY)? {
                    Some((_, id)) => doc.hash_for_opid(&id),
                    None => None,
                };
                let seal = seal.ok_or_else(|| StateError::InvalidEpoch("no seal".into()))?;
                (EpochId(seal), base, d.hlc)
            }
            None => {
                let first = genesis.iter().next().copied();
                let seal = first
                    .filter(|_| genesis.len() == 1)
                    .ok_or_else(|| StateError::NotASpace("no genesis change".into()))?;
                (EpochId(seal), VectorClock::new(), Hlc::default())
            }
        };
        Ok(EpochState {
            id,
            base,
            base_hlc,
            number,
            genesis,
            growth: Growth::default(),
        })
    }

    /// The first epoch of a document that holds only the genesis change.
    pub(crate) fn first(doc: &Automerge) -> EpochState {
        let genesis: HashSet<ChangeHash> = doc.get_heads().into_iter().collect();
        debug_assert_eq!(genesis.len(), 1);
        EpochState {
            id: EpochId(
                genesis
                    .iter()
                    .next()
                    .copied()
                    .unwrap_or(ChangeHash([0; 32])),
            ),
            base: VectorClock::new(),
            base_hlc: Hlc::default(),
            number: 0,
            genesis,
            growth: Growth::default(),
        }
    }

    /// The logical number of `actor`'s `seq`-th change in this epoch's document.
    pub(crate) fn logical(&self, actor: &ActorId, seq: u64) -> u64 {
        self.base.get(actor) + seq
    }
}

/// A peer's word about its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochAnnounce {
    /// The epoch.
    pub id: EpochId,
    /// Its cut.
    pub cut: VectorClock,
}

/// What [`Replica::adopt_epoch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// The peer's cut is within this replica's: nothing to do (the peer
    /// moves up when it hears of this replica's epoch).
    Current,
    /// This replica lacks changes of the peer's cut: call again with the
    /// peer's [`Replica::epoch_snapshot`].
    NeedSnapshot,
    /// The replica moved to a new epoch.
    Switched {
        /// The new epoch.
        to: EpochId,
        /// Changes the cut lacked, carried over.
        carried: usize,
    },
}

/// Where a replica's epoch stands, for `inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochInfo {
    /// The epoch.
    pub id: EpochId,
    /// Switches this replica made since it was created (local count).
    pub number: u64,
    /// The epoch's cut.
    pub cut: VectorClock,
    /// Changes added since the cut.
    pub changes: u64,
    /// Bytes of changes added since the cut.
    pub bytes: u64,
    /// Most operations added to one channel bucket since the cut.
    pub max_bucket_ops: u64,
    /// Earlier epochs retained, oldest first.
    pub retained: Vec<EpochId>,
    /// Operations held in memory: this epoch's document and the retained
    /// ones (automerge keeps every op it ever applied).
    pub ops: u64,
}

/// An earlier epoch kept for history and replay.
pub(crate) struct Retained {
    pub id: EpochId,
    pub base: VectorClock,
    pub doc: Automerge,
    /// The document saved, once: it never changes, and every snapshot
    /// carries it.
    pub saved: Vec<u8>,
}

impl Replica {
    /// Where this replica's epoch stands.
    pub fn epoch(&self) -> EpochInfo {
        let e = &self.epoch;
        EpochInfo {
            id: e.id,
            number: e.number,
            cut: e.base.clone(),
            changes: e.growth.changes,
            bytes: e.growth.bytes,
            max_bucket_ops: e.growth.bucket_ops.values().copied().max().unwrap_or(0),
            retained: self.retained.iter().map(|r| r.id).collect(),
            ops: self.epochs_held().map(|(_, doc)| doc.stats().num_ops).sum(),
        }
    }

    /// This replica's epoch as peers are told of it.
    pub fn epoch_announce(&self) -> EpochAnnounce {
        EpochAnnounce {
            id: self.epoch.id,
            cut: self.epoch.base.clone(),
        }
    }

    /// Whether the current epoch passed one of the configured thresholds
    /// ([`crate::EpochConfig`]), so the owner should [`Replica::cut_epoch`].
    pub fn wants_cut(&self) -> bool {
        let c = &self.config.epochs;
        let g = &self.epoch.growth;
        c.max_changes > 0
            && (g.changes >= c.max_changes
                || g.bytes >= c.max_bytes
                || g.bucket_ops.values().any(|ops| *ops >= c.max_bucket_ops))
    }

    /// Cuts the epoch at this replica's state: the new epoch's first
    /// document holds the live state of every change it holds. `None` when
    /// there is nothing since the cut.
    pub fn cut_epoch(&mut self, now: Millis) -> Result<Option<EpochId>, StateError> {
        let _span = tracing::debug_span!("cut_epoch", space = %self.space).entered();
        self.tick(now);
        if self.clock == self.epoch.base {
            return Ok(None);
        }
        let heads = self.doc.get_heads();
        let hlc = self.epoch.base_hlc.max(self.epoch.growth.max_hlc);
        debug_assert_eq!(hlc, self.hlc_of(|_| true));
        let state = self.read_cut(&heads, self.clock.clone(), hlc)?;
        let built = genesis::build(&state, self.actor.clone())?;
        let (to, _) = self.switch_to(&state, built)?;
        Ok(Some(to))
    }

    /// Moves to the union of this replica's cut and a peer's (see
    /// [`Adoption`]). `snapshot` is the peer's [`Replica::epoch_snapshot`];
    /// it is only needed (and only read) when this replica lacks changes of
    /// the peer's cut.
    ///
    /// A snapshot that is not the first document of the announced epoch, or
    /// an announcement that contradicts changes this replica holds, is
    /// [`StateError::InvalidEpoch`] and changes nothing.
    pub fn adopt_epoch(
        &mut self,
        now: Millis,
        theirs: &EpochAnnounce,
        snapshot: Option<&[u8]>,
    ) -> Result<Adoption, StateError> {
        let _span =
            tracing::debug_span!("adopt_epoch", space = %self.space, to = %theirs.id).entered();
        self.tick(now);
        match self.epoch.base.compare(&theirs.cut) {
            Causality::Equal if theirs.id == self.epoch.id => return Ok(Adoption::Current),
            Causality::Equal => {
                return Err(StateError::InvalidEpoch(format!(
                    "epoch {} has this replica's cut but not its id {}",
                    theirs.id, self.epoch.id
                )));
            }
            Causality::After => return Ok(Adoption::Current),
            Causality::Before | Causality::Concurrent => {}
        }
        let mut target = self.epoch.base.clone();
        target.merge(&theirs.cut);
        let (state, built) = if matches!(
            self.clock.compare(&target),
            Causality::Equal | Causality::After
        ) {
            let heads = self.heads_within(&target);
            let hlc = if self.clock == target {
                self.epoch.base_hlc.max(self.epoch.growth.max_hlc)
            } else {
                self.hlc_of(|dot| target.contains(&dot.0, dot.1))
            };
            let state = self.read_cut(&heads, target.clone(), hlc)?;
            let built = genesis::build(&state, self.actor.clone())?;
            if target == theirs.cut && built.2 != theirs.id {
                return Err(StateError::InvalidEpoch(format!(
                    "epoch {} does not match its cut's changes held here (they give {})",
                    theirs.id, built.2
                )));
            }
            (state, built)
        } else {
            let Some(bytes) = snapshot else {
                return Ok(Adoption::NeedSnapshot);
            };
            let their_state = verified_snapshot(bytes, theirs)?;
            let mine = self.read_cut(
                &[self.epoch.id.0],
                self.epoch.base.clone(),
                self.epoch.base_hlc,
            )?;
            let state = mine.join(&their_state);
            let built = genesis::build(&state, self.actor.clone())?;
            (state, built)
        };
        let (to, carried) = self.switch_to(&state, built)?;
        Ok(Adoption::Switched { to, carried })
    }

    /// The first document of this replica's epoch, for a peer that lacks
    /// changes of its cut (`Automerge::save` bytes).
    pub fn epoch_snapshot(&self) -> Result<Vec<u8>, StateError> {
        let state = self.read_cut(
            &[self.epoch.id.0],
            self.epoch.base.clone(),
            self.epoch.base_hlc,
        )?;
        Ok(genesis::build(&state, self.actor.clone())?.0.save())
    }

    fn read_cut(
        &self,
        heads: &[ChangeHash],
        clock: VectorClock,
        hlc: Hlc,
    ) -> Result<CutState, StateError> {
        let view = DocView {
            doc: &self.doc,
            layout: &self.layout,
            base: &self.epoch.base,
        };
        CutState::read(&view, heads, clock, hlc)
    }

    /// The heads of the changes of this epoch whose logical dots `cut` holds.
    fn heads_within(&self, cut: &VectorClock) -> Vec<ChangeHash> {
        let inside: Vec<_> = self
            .doc
            .get_changes_meta(&[])
            .into_iter()
            .filter(|m| !self.epoch.genesis.contains(&m.hash))
            .filter(|m| cut.contains(&m.actor, self.epoch.logical(&m.actor, m.seq)))
            .collect();
        let covered: HashSet<ChangeHash> =
            inside.iter().flat_map(|m| m.deps.iter().copied()).collect();
        let mut heads: Vec<ChangeHash> = inside
            .iter()
            .map(|m| m.hash)
            .filter(|h| !covered.contains(h))
            .collect();
        if heads.is_empty() {
            heads.push(self.epoch.id.0);
        }
        heads.sort();
        heads
    }

    /// The largest hybrid logical clock of the cut and of this epoch's
    /// changes whose dots pass `keep`.
    fn hlc_of(&self, keep: impl Fn(&Dot) -> bool) -> Hlc {
        self.doc
            .get_changes_meta(&[])
            .iter()
            .filter(|m| !self.epoch.genesis.contains(&m.hash))
            .filter(|m| {
                keep(&(
                    m.actor.clone().into_owned(),
                    self.epoch.logical(&m.actor, m.seq),
                ))
            })
            .filter_map(|m| m.message.as_deref().and_then(Hlc::parse))
            .fold(self.epoch.base_hlc, Hlc::max)
    }

    /// The causal past of every change of this epoch (its own dot included),
    /// by dot.
    fn pasts(&self) -> HashMap<Dot, VectorClock> {
        let mut metas = self.doc.get_changes_meta(&[]);
        metas.sort_by(|a, b| (a.start_op, &a.actor).cmp(&(b.start_op, &b.actor)));
        let mut by_hash: HashMap<ChangeHash, VectorClock> = HashMap::new();
        let mut out = HashMap::new();
        for m in metas {
            if self.epoch.genesis.contains(&m.hash) {
                continue;
            }
            let dot = (
                m.actor.clone().into_owned(),
                self.epoch.logical(&m.actor, m.seq),
            );
            // A change written in this epoch saw its cut (its writer held
            // the first document); a carried one says what its writer saw.
            let past = decode_past(&m.extra).unwrap_or_else(|| {
                let mut past = self.epoch.base.clone();
                for dep in &m.deps {
                    if let Some(p) = by_hash.get(dep) {
                        past.merge(p);
                    }
                }
                past.observe(&dot.0, dot.1);
                past
            });
            by_hash.insert(m.hash, past.clone());
            out.insert(dot, past);
        }
        out
    }

    /// Starts the epoch whose cut has `state`: its first document plus every
    /// change of this replica the cut lacks, carried over.
    fn switch_to(
        &mut self,
        state: &CutState,
        (mut doc, layout, id): (Automerge, Layout, EpochId),
    ) -> Result<(EpochId, usize), StateError> {
        let beyond = causal_order(
            self.doc
                .get_changes_meta(&[])
                .into_iter()
                .filter(|m| !self.epoch.genesis.contains(&m.hash))
                .filter(|m| {
                    !state
                        .clock
                        .contains(&m.actor, self.epoch.logical(&m.actor, m.seq))
                }),
        );
        if !beyond.is_empty() {
            let pasts = self.pasts();
            let mut carried = HashMap::new();
            let source_view = DocView {
                doc: &self.doc,
                layout: &self.layout,
                base: &self.epoch.base,
            };
            let mut target = Target {
                doc: &mut doc,
                layout: &layout,
                cut: &state.clock,
                seal: id.0,
                carried: &mut carried,
                pasts: &pasts,
            };
            for hash in &beyond {
                let change = self.doc.get_change_by_hash(hash).ok_or_else(|| {
                    StateError::InvalidEpoch("a change of the epoch is gone".into())
                })?;
                let dot = (
                    change.actor_id().clone(),
                    self.epoch.logical(change.actor_id(), change.seq()),
                );
                let past = pasts.get(&dot).ok_or_else(|| {
                    StateError::InvalidEpoch("a change of the epoch has no causal past".into())
                })?;
                target.carry(&Source {
                    view: &source_view,
                    change: &change,
                    dot: dot.clone(),
                    past,
                })?;
            }
        }
        let changes = beyond;
        let from = self.epoch.id;
        let number = self.epoch.number + 1;
        let old_doc = std::mem::replace(&mut self.doc, doc);
        let old_base = std::mem::take(&mut self.epoch.base);
        self.retain(from, old_base, old_doc);
        self.layout = layout;
        self.epoch = EpochState::of(&self.doc, number)?;
        debug_assert_eq!(self.epoch.id, id);
        debug_assert_eq!(&self.epoch.base, &state.clock);
        let own = self.clock.get(&self.actor);
        self.clock = VectorClock::new();
        self.chains.clear();
        self.known.clear();
        self.pending.clear();
        self.cache.clear();
        self.live.clear();
        self.recent_local.clear();
        self.reindex();
        debug_assert!(
            self.clock.get(&self.actor) >= own,
            "a switch never loses this replica's own changes"
        );
        // The new epoch replaces everything on storage at once.
        self.queue_snapshot();
        info!(
            space = %self.space,
            %from,
            to = %id,
            carried = changes.len(),
            cut = state.clock.total(),
            "epoch switched"
        );
        Ok((id, changes.len()))
    }

    /// What a snapshot of this replica holds: the current document and the
    /// retained epochs (see [`crate::epoch::archive`]).
    pub(crate) fn snapshot_bytes(&self) -> Vec<u8> {
        let docs: Vec<Vec<u8>> = std::iter::once(self.doc.save())
            .chain(self.retained.iter().rev().map(|r| r.saved.clone()))
            .collect();
        archive::pack(&docs)
    }

    /// Keeps an earlier epoch, within the configured retention.
    fn retain(&mut self, id: EpochId, base: VectorClock, doc: Automerge) {
        if self.config.epochs.retain == 0 {
            return;
        }
        if self.retained.len() >= self.config.epochs.retain {
            self.retained.pop_front();
        }
        let saved = doc.save();
        self.retained.push_back(Retained {
            id,
            base,
            doc,
            saved,
        });
        debug!(space = %self.space, retained = self.retained.len(), "epoch retained");
    }

    /// The epochs retained, oldest first, then the current one: (base, document).
    pub(crate) fn epochs_held(&self) -> impl Iterator<Item = (&VectorClock, &Automerge)> {
        self.retained
            .iter()
            .map(|r| (&r.base, &r.doc))
            .chain(std::iter::once((&self.epoch.base, &self.doc)))
    }

    /// Read-only replicas of the retained epochs, oldest first, for replay
    /// (each holds a copy of its document).
    pub(crate) fn retained_views(&self) -> Result<Vec<Replica>, StateError> {
        self.retained
            .iter()
            .map(|r| {
                let doc = r.doc.fork();
                let epoch = EpochState::of(&doc, 0)?;
                let mut view = Replica::from_parts(
                    &self.space,
                    doc,
                    self.layout.clone(),
                    epoch,
                    self.actor.clone(),
                    super::persist::Outbox::in_memory(),
                    self.config.clone(),
                );
                view.merge_fns = self.merge_fns.clone();
                view.migrations = self.migrations.clone();
                view.now = self.now;
                view.reindex();
                Ok(view)
            })
            .collect()
    }

    /// Counts what a change recorded in this epoch adds.
    pub(crate) fn grow(&mut self, change: &Change, buckets: &[automerge::ObjId]) {
        let g = &mut self.epoch.growth;
        g.changes += 1;
        g.bytes += change.raw_bytes().len() as u64;
        if let Some(hlc) = change.message().and_then(Hlc::parse) {
            g.max_hlc = g.max_hlc.max(hlc);
        }
        for obj in buckets {
            *g.bucket_ops.entry(obj.clone()).or_default() += 1;
        }
    }
}

/// The documents of a snapshot (see [`crate::epoch::archive`]): the current
/// one and the retained earlier epochs, oldest first.
pub(crate) fn load_snapshot(bytes: &[u8]) -> Result<(Automerge, VecDeque<Retained>), StateError> {
    let mut docs = archive::unpack(bytes)?.into_iter();
    let current = docs
        .next()
        .ok_or_else(|| StateError::NotASpace("empty snapshot".into()))?;
    let current = Automerge::load(current)?;
    let mut retained = VecDeque::new();
    for bytes in docs {
        let doc = Automerge::load(bytes)?;
        let epoch = EpochState::of(&doc, 0)?;
        retained.push_front(Retained {
            id: epoch.id,
            base: epoch.base,
            doc,
            saved: bytes.to_vec(),
        });
    }
    Ok((current, retained))
}

/// The state of the epoch a peer's snapshot starts, once it is checked to
/// be exactly the first document of the announced epoch.
fn verified_snapshot(bytes: &[u8], theirs: &EpochAnnounce) -> Result<CutState, StateError> {
    let bad = |why: String| StateError::InvalidEpoch(format!("snapshot of {}: {why}", theirs.id));
    let doc = Automerge::load(bytes).map_err(|e| bad(e.to_string()))?;
    if doc.get_heads() != [theirs.id.0] {
        return Err(bad("its head is not the epoch's seal".into()));
    }
    if doc
        .get_changes_meta(&[])
        .iter()
        .any(|m| !is_genesis_actor(&m.actor))
    {
        return Err(bad("it holds more than a first document".into()));
    }
    let descriptor = genesis::descriptor(&doc)?.ok_or_else(|| bad("no descriptor".into()))?;
    let cut = descriptor
        .clock()
        .ok_or_else(|| bad("descriptor actor not hex".into()))?;
    if cut != theirs.cut {
        return Err(bad("its cut is not the announced one".into()));
    }
    let layout = crate::replica::doc::layout(&doc)?;
    let view = DocView {
        doc: &doc,
        layout: &layout,
        base: &theirs.cut,
    };
    let state = CutState::read(&view, &[theirs.id.0], cut, descriptor.hlc)?;
    let (_, _, id) = genesis::build(&state, ActorId::from(&GENESIS_ACTOR[..]))?;
    if id != theirs.id {
        return Err(bad(
            "it is not the canonical first document of its cut".into()
        ));
    }
    Ok(state)
}
