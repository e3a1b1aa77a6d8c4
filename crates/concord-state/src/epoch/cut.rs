//! The state at a cut: every live write of every key of the channel maps,
//! each with the logical change that wrote it (its *dot*), plus the cut's
//! vector clock and the largest hybrid logical clock in it.
//!
//! This is a causal CRDT in the dot-store sense (a dot store plus its causal
//! context): two states join without coordination, and the state of the
//! union of two cuts is the join of their states. A write survives the join
//! when both sides hold it, or when the side lacking it never saw it (its
//! dot is outside that side's clock); a write one side saw and dropped (it
//! was overwritten or deleted there) is dropped. So concurrent cuts, made on
//! both sides of a partition, merge deterministically.
//!
//! Expired values (TTL at or before the cut's hybrid logical clock) are left
//! out, which makes a cut a compaction too and keeps the state a function of
//! the cut alone, never of a replica's `now`.
//!
//! This module reads documents and builds values; it never mutates a document.

use std::collections::BTreeMap;

use automerge::{Automerge, ChangeHash, ObjId, ReadDoc, ScalarValue, Value};

use super::origin::{self, Dot};
use crate::keys::{self, Envelope, Slot};
use crate::replica::doc::{Layout, is_genesis_actor};
use crate::{Family, Hlc, StateError, VectorClock};

/// Where a key lives: its family, its bucket and the key itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SlotKey {
    pub family: Family,
    pub bucket: usize,
    pub key: String,
}

/// One live write at a key, as the cut carries it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Carried {
    /// The logical change that wrote it, when known (see [`origin`]).
    pub origin: Option<Dot>,
    /// The value as written (without any origin tag).
    pub value: ScalarValue,
}

/// The live state at a cut.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CutState {
    /// Every logical change the cut holds.
    pub clock: VectorClock,
    /// The largest hybrid logical clock of the cut's changes.
    pub hlc: Hlc,
    /// Live writes per key, ordered by origin; no key is empty.
    pub slots: BTreeMap<SlotKey, Vec<Carried>>,
}

/// How a document maps its op ids to logical changes: an actor's `n`-th
/// change in the document is its logical change `base[actor] + n`.
pub(crate) struct DocView<'a> {
    pub doc: &'a Automerge,
    pub layout: &'a Layout,
    pub base: &'a VectorClock,
}

impl DocView<'_> {
    /// The logical change behind the op `id` holding `value` at `key`; for a
    /// counter contribution, the stand-in origin in `cut` (see
    /// [`origin::pseudo_origin`]), whatever wrote it, so that every state
    /// names it alike.
    pub(crate) fn origin_of(
        &self,
        id: &ObjId,
        value: &ScalarValue,
        key: &str,
        cut: &VectorClock,
    ) -> Option<Dot> {
        if let Some(pseudo) = origin::pseudo_origin(key, cut) {
            return Some(pseudo);
        }
        let ObjId::Id(_, actor, _) = id else {
            return None;
        };
        if is_genesis_actor(actor) {
            return origin::untag(value).1;
        }
        let hash = self.doc.hash_for_opid(id)?;
        let meta = self.doc.get_change_meta_by_hash(&hash)?;
        Some((actor.clone(), self.base.get(actor) + meta.seq))
    }

    /// The live writes of every key at `heads`, which hold the logical
    /// changes of `cut`.
    pub(crate) fn live_at(
        &self,
        heads: &[ChangeHash],
        cut: &VectorClock,
    ) -> Result<BTreeMap<SlotKey, Vec<Carried>>, StateError> {
        let mut slots = BTreeMap::new();
        for family in Family::ALL {
            for (bucket, obj) in self.layout.family(family).iter().enumerate() {
                for key in self.doc.keys_at(obj, heads) {
                    let mut live = Vec::new();
                    for (value, id) in self.doc.get_all_at(obj, key.as_str(), heads)? {
                        let Value::Scalar(value) = value else {
                            continue;
                        };
                        let origin = self.origin_of(&id, &value, &key, cut);
                        let (value, _) = origin::untag(&value);
                        live.push(Carried { origin, value });
                    }
                    if !live.is_empty() {
                        let slot = SlotKey {
                            family,
                            bucket,
                            key,
                        };
                        slots.insert(slot, live);
                    }
                }
            }
        }
        Ok(slots)
    }
}

impl CutState {
    /// The state of `view`'s document at `heads`, which hold exactly the
    /// logical changes of `clock`, the largest of whose clocks is `hlc`.
    pub(crate) fn read(
        view: &DocView<'_>,
        heads: &[ChangeHash],
        clock: VectorClock,
        hlc: Hlc,
    ) -> Result<CutState, StateError> {
        let slots = view.live_at(heads, &clock)?;
        let mut state = CutState { clock, hlc, slots };
        state.normalize();
        Ok(state)
    }

    /// The state of the union of the cuts of `self` and `other`.
    pub(crate) fn join(&self, other: &CutState) -> CutState {
        let mut clock = self.clock.clone();
        clock.merge(&other.clock);
        let mut slots = BTreeMap::new();
        let none = Vec::new();
        let keys = self.slots.keys().chain(other.slots.keys());
        for key in keys {
            if slots.contains_key(key) {
                continue;
            }
            let mine = self.slots.get(key).unwrap_or(&none);
            let theirs = other.slots.get(key).unwrap_or(&none);
            let survives = |w: &Carried, other_side: &[Carried], other_clock: &VectorClock| {
                other_side.contains(w) || !covered(other_clock, w.origin.as_ref())
            };
            let mut live: Vec<Carried> = mine
                .iter()
                .filter(|w| survives(w, theirs, &other.clock))
                .cloned()
                .collect();
            for w in theirs {
                if !live.contains(w) && survives(w, mine, &self.clock) {
                    live.push(w.clone());
                }
            }
            slots.insert(key.clone(), live);
        }
        let mut state = CutState {
            clock,
            hlc: self.hlc.max(other.hlc),
            slots,
        };
        state.normalize();
        state
    }

    /// Drops expired values and empty keys; orders each key's writes.
    fn normalize(&mut self) {
        let wall = self.hlc.wall;
        self.slots.retain(|slot, live| {
            live.retain(|w| !expired(&slot.key, &w.value, wall));
            live.sort_by(|a, b| a.origin.cmp(&b.origin));
            !live.is_empty()
        });
    }

    /// Most writes live at one key.
    pub(crate) fn max_concurrent(&self) -> usize {
        self.slots.values().map(Vec::len).max().unwrap_or(0)
    }
}

/// Whether the write `origin` is one of the changes `clock` holds. A write
/// of unknown origin counts as held: it can only be a carried value, which
/// every later cut holds.
fn covered(clock: &VectorClock, origin: Option<&Dot>) -> bool {
    origin.is_none_or(|(actor, seq)| clock.contains(actor, *seq))
}

/// Whether a register or topic entry stored as `value` at `key` expired at
/// or before `wall`.
fn expired(key: &str, value: &ScalarValue, wall: u64) -> bool {
    let Some((_, Slot::Register | Slot::Entry(_))) = keys::parse_key(key) else {
        return false;
    };
    value
        .as_str()
        .and_then(|s| serde_json::from_str::<Envelope>(s).ok())
        .is_some_and(|e| e.expired(wall))
}
