//! Carrying a change made outside a cut into the epoch that starts at the
//! cut. The result is a deterministic function of the change and the cut,
//! so every replica that carries the same change over produces the same
//! automerge change, byte for byte, and automerge keeps it once: a write
//! takes effect exactly once whoever carries it, and an offline writer's
//! changes can be carried by the writer itself or by any peer that holds
//! them.
//!
//! The carried change keeps the write's actor, its logical sequence number
//! (as `seq - cut[actor]` in the new document), hybrid logical clock, time
//! and operations. What changes:
//!
//! - its dependencies: the carried versions of the maximal changes of its
//!   causal past that the cut lacks, or the epoch's seal when the cut holds
//!   its whole past;
//! - each operation's predecessors: the writes it replaced (named by their
//!   origins, read in the document it comes from), as far as they are still
//!   live in the new document at those dependencies (the cut may have
//!   replaced some concurrently); a counter contribution replaces whatever
//!   is live at its key, since only its own actor writes it;
//! - its extra bytes: its causal past (a vector clock), since its
//!   dependencies in the new document say more than the writer saw.
//!
//! This module builds changes and applies them to the target document; it
//! never touches a replica's indexes.

use std::collections::HashMap;

use automerge::legacy::{self, OpId, OpType};
use automerge::{Automerge, Change, ChangeHash, ExpandedChange, ReadDoc, Value};

use super::cut::DocView;
use super::origin::Dot;
use crate::keys::{self, Slot};
use crate::replica::doc::Layout;
use crate::{StateError, VectorClock};

/// A logical change to carry over, read from the document that holds it.
pub(crate) struct Source<'a> {
    /// The document holding it.
    pub view: &'a DocView<'a>,
    /// The change as its document holds it.
    pub change: &'a Change,
    /// Its logical identity.
    pub dot: Dot,
    /// Its causal past, itself included.
    pub past: &'a VectorClock,
}

/// The epoch a change is carried into.
pub(crate) struct Target<'a> {
    /// The new document (the epoch's first document plus what was carried so far).
    pub doc: &'a mut Automerge,
    /// Its layout.
    pub layout: &'a Layout,
    /// The cut the epoch starts at.
    pub cut: &'a VectorClock,
    /// The epoch's seal.
    pub seal: ChangeHash,
    /// The carried changes so far, by dot.
    pub carried: &'a mut HashMap<Dot, ChangeHash>,
    /// The causal past of every logical change that may be carried.
    pub pasts: &'a HashMap<Dot, VectorClock>,
}

/// The footer id of a carried change's extra bytes. automerge reads its
/// extra bytes as footers (`id:leb128 len:leb128 bytes`; id 1 is its author
/// footer), so the causal past travels as a footer of its own kind.
const PAST_FOOTER: u64 = 0x636f;

/// The extra bytes of a carried change: its causal past, as the footer
/// `PAST_FOOTER len (count (actor_len actor seq)*count)`, every number a
/// LEB128 varint (see [`decode_past`]).
pub(crate) fn encode_past(past: &VectorClock) -> Vec<u8> {
    let mut body = Vec::new();
    put_varint(&mut body, past.len() as u64);
    for (actor, seq) in past.iter() {
        let bytes = actor.to_bytes();
        put_varint(&mut body, bytes.len() as u64);
        body.extend_from_slice(bytes);
        put_varint(&mut body, seq);
    }
    let mut out = Vec::with_capacity(body.len() + 6);
    put_varint(&mut out, PAST_FOOTER);
    put_varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// The causal past in a carried change's extra bytes; `None` if there is
/// none or it is malformed.
pub(crate) fn decode_past(bytes: &[u8]) -> Option<VectorClock> {
    let mut input = bytes;
    if get_varint(&mut input)? != PAST_FOOTER {
        return None;
    }
    let len = usize::try_from(get_varint(&mut input)?).ok()?;
    let mut input = input.get(..len)?;
    let count = get_varint(&mut input)?;
    let mut clock = VectorClock::new();
    for _ in 0..count {
        let len = usize::try_from(get_varint(&mut input)?).ok()?;
        if len > input.len() {
            return None;
        }
        let (actor, rest) = input.split_at(len);
        input = rest;
        let seq = get_varint(&mut input)?;
        clock.observe(&automerge::ActorId::from(actor), seq);
    }
    input.is_empty().then_some(clock)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        v |= u64::from(byte & 0x7f).checked_shl(7 * i)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

impl Source<'_> {
    /// The writes `op` replaced, as dots, read in the source document at the
    /// change's dependencies (what its writer saw); `None` for a counter
    /// contribution, whose every write replaces the one live before it
    /// (only its own actor writes it, one change after the other).
    fn replaced(
        &self,
        op: &legacy::Op,
        obj: &automerge::ObjId,
        key: &str,
    ) -> Result<Option<Vec<Dot>>, StateError> {
        if matches!(keys::parse_key(key), Some((_, Slot::Contribution(_)))) {
            return Ok(None);
        }
        let mut dots = Vec::with_capacity(op.pred.len());
        let live = self.view.doc.get_all_at(obj, key, self.change.deps())?;
        for pred in op.pred.iter() {
            let found = live.iter().find(|(_, id)| {
                matches!(id, automerge::ObjId::Id(c, a, _) if *c == pred.counter() && a == pred.actor())
            });
            if let Some((Value::Scalar(v), id)) = found
                && let Some(dot) = self.view.origin_of(id, v, key, self.view.base)
            {
                dots.push(dot);
            }
        }
        Ok(Some(dots))
    }
}

impl Target<'_> {
    /// Carries `source` over and applies it to the target document; returns
    /// the carried change's hash. Every change of its causal past that the
    /// cut lacks must have been carried before.
    pub(crate) fn carry(&mut self, source: &Source<'_>) -> Result<ChangeHash, StateError> {
        let (actor, seq) = &source.dot;
        let base = self.cut.get(actor);
        debug_assert!(*seq > base, "a change the cut holds is never carried");
        let deps = self.deps(source)?;
        let max_op = deps
            .iter()
            .filter_map(|h| self.doc.get_change_meta_by_hash(h).map(|m| m.max_op))
            .max()
            .unwrap_or(0);
        let decoded = source.change.decode();
        let mut operations: Vec<legacy::Op> = Vec::with_capacity(decoded.operations.len());
        for op in &decoded.operations {
            let legacy::Key::Map(key) = &op.key else {
                continue;
            };
            if !matches!(op.action, OpType::Put(_) | OpType::Delete) || op.insert {
                continue;
            }
            let Some(obj) = self.layout.bucket_of_legacy(&op.obj).cloned() else {
                continue;
            };
            // An earlier op of this change at the same key replaced the rest.
            let counter = max_op + 1 + operations.len() as u64;
            let earlier = operations
                .iter()
                .enumerate()
                .rev()
                .find(|(_, o)| o.obj == op.obj && o.key == op.key)
                .map(|(i, _)| OpId(max_op + 1 + i as u64, actor.clone()));
            let pred = match earlier {
                Some(id) => vec![id],
                None => {
                    let replaced = source.replaced(op, &obj, key)?;
                    self.live_among(&deps, &obj, key, replaced.as_deref())?
                }
            };
            debug_assert!(pred.iter().all(|p| p.counter() < counter));
            if pred.is_empty() && op.action == OpType::Delete {
                // What it deleted is gone already (the cut replaced it
                // concurrently): a delete of nothing does nothing, and
                // automerge does not keep one.
                continue;
            }
            operations.push(legacy::Op {
                action: op.action.clone(),
                obj: op.obj.clone(),
                key: op.key.clone(),
                pred: pred.into_iter().collect(),
                insert: false,
            });
        }
        let start_op = std::num::NonZeroU64::new(max_op + 1)
            .ok_or_else(|| StateError::InvalidEpoch("start op overflow".into()))?;
        let change = Change::from(ExpandedChange {
            operations,
            actor_id: actor.clone(),
            hash: None,
            seq: seq - base,
            start_op,
            time: decoded.time,
            message: decoded.message.clone(),
            deps,
            extra_bytes: encode_past(source.past),
            author: None,
        });
        let hash = change.hash();
        self.doc.apply_changes([change])?;
        self.carried.insert(source.dot.clone(), hash);
        Ok(hash)
    }

    /// The carried versions of the maximal changes of the source's past that
    /// the cut lacks (the source aside), or the seal when there are none.
    fn deps(&self, source: &Source<'_>) -> Result<Vec<ChangeHash>, StateError> {
        let (me, my_seq) = &source.dot;
        let candidates: Vec<Dot> = source
            .past
            .iter()
            .map(|(a, s)| (a.clone(), if a == me { my_seq - 1 } else { s }))
            .filter(|(a, s)| *s > self.cut.get(a))
            .collect();
        let maximal = candidates.iter().filter(|x| {
            !candidates.iter().any(|y| {
                y != *x
                    && self
                        .pasts
                        .get(y)
                        .is_some_and(|past| past.contains(&x.0, x.1))
            })
        });
        let mut deps = Vec::new();
        for dot in maximal {
            let hash = self.carried.get(dot).copied().ok_or_else(|| {
                StateError::InvalidEpoch(format!(
                    "change {}:{} is carried before its dependency {}:{}",
                    me.to_hex_string(),
                    my_seq,
                    dot.0.to_hex_string(),
                    dot.1
                ))
            })?;
            deps.push(hash);
        }
        if deps.is_empty() {
            deps.push(self.seal);
        }
        deps.sort();
        Ok(deps)
    }

    /// The ops live at `key` at `deps` that are the writes `replaced` names
    /// (all of them when `replaced` is `None`).
    fn live_among(
        &self,
        deps: &[ChangeHash],
        obj: &automerge::ObjId,
        key: &str,
        replaced: Option<&[Dot]>,
    ) -> Result<Vec<OpId>, StateError> {
        let view = DocView {
            doc: self.doc,
            layout: self.layout,
            base: self.cut,
        };
        let mut out = Vec::new();
        for (value, id) in self.doc.get_all_at(obj, key, deps)? {
            let automerge::ObjId::Id(counter, writer, _) = &id else {
                continue;
            };
            let hit = match (replaced, &value) {
                (None, _) => true,
                (Some(dots), Value::Scalar(v)) => view
                    .origin_of(&id, v, key, self.cut)
                    .is_some_and(|o| dots.contains(&o)),
                (Some(_), Value::Object(_)) => false,
            };
            if hit {
                out.push(OpId(*counter, writer.clone()));
            }
        }
        Ok(out)
    }
}
