//! Document helpers: the genesis change, the [`Layout`] of the objects it
//! creates, and conversions between automerge values and ours. Owns nothing
//! but pure functions over a document.

use std::collections::HashMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjId, ObjType, ROOT, ReadDoc, Value, ValueRef, legacy};

use crate::keys::{self, GENESIS_ACTOR, GENESIS_PREFIX};
use crate::{ChannelPath, Family, StateError};

/// The objects of a space's document: for each family, its
/// [`keys::BUCKETS`] bucket maps (see [`keys`] for why), and the way back
/// from an object to its family.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    buckets: [Vec<ObjId>; 4],
    /// The same buckets as ids in decoded changes.
    legacy_buckets: [Vec<Option<legacy::ObjectId>>; 4],
    family_of: HashMap<ObjId, Family>,
    legacy_family_of: HashMap<legacy::ObjectId, Family>,
    legacy_obj: HashMap<legacy::ObjectId, ObjId>,
}

impl Layout {
    fn new(buckets: [Vec<ObjId>; 4]) -> Layout {
        let mut family_of = HashMap::new();
        let mut legacy_family_of = HashMap::new();
        let mut legacy_obj = HashMap::new();
        for family in Family::ALL {
            for obj in &buckets[family as usize] {
                family_of.insert(obj.clone(), family);
                if let Some(id) = legacy_id(obj) {
                    legacy_family_of.insert(id.clone(), family);
                    legacy_obj.insert(id, obj.clone());
                }
            }
        }
        let legacy_buckets = buckets
            .clone()
            .map(|family| family.iter().map(legacy_id).collect());
        Layout {
            buckets,
            legacy_buckets,
            family_of,
            legacy_family_of,
            legacy_obj,
        }
    }

    /// The bucket map `obj` (an object id of a decoded change) names, if it
    /// is one. Every epoch's first document creates the buckets with the
    /// same ids, so this holds across epochs.
    pub(crate) fn bucket_of_legacy(&self, obj: &legacy::ObjectId) -> Option<&ObjId> {
        self.legacy_obj.get(obj)
    }

    /// The distinct bucket maps a decoded change writes.
    pub(crate) fn buckets_written(&self, change: &automerge::ExpandedChange) -> Vec<ObjId> {
        let mut out: Vec<ObjId> = Vec::new();
        for op in &change.operations {
            if let Some(obj) = self.bucket_of_legacy(&op.obj)
                && !out.contains(obj)
            {
                out.push(obj.clone());
            }
        }
        out
    }

    /// The map holding every key of the channel at `path`.
    pub(crate) fn obj(&self, path: &ChannelPath) -> &ObjId {
        &self.buckets[path.family() as usize][keys::bucket_of(path.name())]
    }

    /// The bucket maps of `family`, in bucket order.
    /// The channel `name` written in `obj` (from a decoded change), if
    /// `obj` is the map that holds that channel.
    pub(crate) fn path_in(&self, obj: &legacy::ObjectId, name: &str) -> Option<ChannelPath> {
        let path = ChannelPath::new(self.family_of_legacy(obj)?, name).ok()?;
        let bucket = &self.legacy_buckets[path.family() as usize][keys::bucket_of(name)];
        (bucket.as_ref() == Some(obj)).then_some(path)
    }

    pub(crate) fn family(&self, family: Family) -> &[ObjId] {
        &self.buckets[family as usize]
    }

    /// The family whose bucket `obj` is, if it is one.
    pub(crate) fn family_of(&self, obj: &ObjId) -> Option<Family> {
        self.family_of.get(obj).copied()
    }

    /// Like [`Layout::family_of`] for the object ids of decoded changes.
    pub(crate) fn family_of_legacy(&self, obj: &legacy::ObjectId) -> Option<Family> {
        self.legacy_family_of.get(obj).copied()
    }
}

/// The hashes of `changes` in an order that puts every change after those
/// of its dependencies that are among them (ties: first op counter, then
/// actor, so every replica orders alike). A change's first op counter alone
/// is not enough: a change without ops (a carried change whose ops all
/// vanished, see `epoch::translate`) shares it with its successor.
pub(crate) fn causal_order<'a>(
    changes: impl IntoIterator<Item = automerge::ChangeMetadata<'a>>,
) -> Vec<automerge::ChangeHash> {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashMap};

    let metas: Vec<_> = changes.into_iter().collect();
    let index: HashMap<automerge::ChangeHash, usize> =
        metas.iter().enumerate().map(|(i, m)| (m.hash, i)).collect();
    let mut waiting = vec![0usize; metas.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); metas.len()];
    for (i, m) in metas.iter().enumerate() {
        for dep in &m.deps {
            if let Some(&d) = index.get(dep) {
                waiting[i] += 1;
                children[d].push(i);
            }
        }
    }
    let key = |i: usize| (metas[i].start_op, metas[i].actor.clone(), i);
    let mut ready: BinaryHeap<_> = (0..metas.len())
        .filter(|i| waiting[*i] == 0)
        .map(|i| Reverse(key(i)))
        .collect();
    let mut out = Vec::with_capacity(metas.len());
    while let Some(Reverse((_, _, i))) = ready.pop() {
        out.push(metas[i].hash);
        for &c in &children[i] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.push(Reverse(key(c)));
            }
        }
    }
    debug_assert_eq!(out.len(), metas.len(), "a document's changes form no cycle");
    out
}

/// Whether `actor` is one of the fixed actors of an epoch's first document
/// (see [`crate::epoch::genesis`]).
pub(crate) fn is_genesis_actor(actor: &ActorId) -> bool {
    let bytes = actor.to_bytes();
    bytes.len() == GENESIS_ACTOR.len() && bytes.starts_with(GENESIS_PREFIX)
}

/// The object id as decoded changes spell it.
pub(crate) fn legacy_id(obj: &ObjId) -> Option<legacy::ObjectId> {
    match obj {
        ObjId::Id(ctr, actor, _) => Some(legacy::ObjectId::Id(legacy::OpId(*ctr, actor.clone()))),
        ObjId::Root => None,
    }
}

/// A document holding only the genesis change, writing as `actor`, and its
/// layout.
///
/// Every replica builds the genesis change byte for byte the same (fixed
/// actor, seq 1, time 0, no message), so it has the same hash everywhere and
/// the family and bucket maps are never created concurrently. (Creating a
/// map in a fresh transaction of an empty document cannot fail; the root
/// fallback only keeps this function total.)
pub(crate) fn genesis(actor: ActorId) -> (Automerge, Layout) {
    let mut doc = Automerge::new().with_actor(ActorId::from(&GENESIS_ACTOR[..]));
    let mut tx = doc.transaction();
    let mut buckets: [Vec<ObjId>; 4] = Default::default();
    for family in Family::ALL {
        let map = tx
            .put_object(ROOT, family.as_str(), ObjType::Map)
            .unwrap_or(ObjId::Root);
        for bucket in 0..keys::BUCKETS {
            let obj = tx
                .put_object(&map, keys::bucket_key(bucket), ObjType::Map)
                .unwrap_or(ObjId::Root);
            buckets[family as usize].push(obj);
        }
    }
    tx.commit_with(CommitOptions::default().with_time(0));
    doc.set_actor(actor);
    (doc, Layout::new(buckets))
}

/// The layout of a loaded document.
pub(crate) fn layout(doc: &Automerge) -> Result<Layout, StateError> {
    let map_at = |obj: &ObjId, key: &str| match doc.get(obj, key) {
        Ok(Some((Value::Object(ObjType::Map), id))) => Ok(id),
        _ => Err(StateError::NotASpace(format!("no {key} map"))),
    };
    let mut buckets: [Vec<ObjId>; 4] = Default::default();
    for family in Family::ALL {
        let map = map_at(&ROOT, family.as_str())?;
        for bucket in 0..keys::BUCKETS {
            buckets[family as usize].push(map_at(&map, &keys::bucket_key(bucket))?);
        }
    }
    Ok(Layout::new(buckets))
}

/// The string inside a scalar value, if it is one.
pub(crate) fn as_str<'a>(v: &'a Value<'_>) -> Option<&'a str> {
    match v {
        Value::Scalar(s) => s.as_str(),
        Value::Object(_) => None,
    }
}

/// The integer inside a scalar value, if it is one.
pub(crate) fn as_int(v: &Value<'_>) -> Option<i64> {
    match v {
        Value::Scalar(s) => s.as_i64(),
        Value::Object(_) => None,
    }
}

/// The string inside a borrowed scalar value, if it is one.
pub(crate) fn ref_str<'a>(v: &'a ValueRef<'_>) -> Option<&'a str> {
    match v {
        ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => Some(s),
        _ => None,
    }
}

/// The integer inside a borrowed scalar value, if it is one.
pub(crate) fn ref_int(v: &ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Scalar(automerge::ScalarValueRef::Int(i)) => Some(*i),
        _ => None,
    }
}
