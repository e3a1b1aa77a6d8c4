//! Document helpers: the genesis change and conversions between automerge
//! values and ours. Owns nothing but pure functions over a document.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjId, ObjType, ROOT, ReadDoc, Value, ValueRef};

use crate::keys::GENESIS_ACTOR;
use crate::{Family, StateError};

/// A document holding only the genesis change, writing as `actor`, and the
/// ids of its family maps.
///
/// Every replica builds the genesis change byte for byte the same (fixed
/// actor, seq 1, time 0, no message), so it has the same hash everywhere and
/// the family maps are never created concurrently.
pub(crate) fn genesis(actor: ActorId) -> (Automerge, [ObjId; 4]) {
    let mut doc = Automerge::new().with_actor(ActorId::from(&GENESIS_ACTOR[..]));
    let mut tx = doc.transaction();
    let families = Family::ALL.map(|f| {
        tx.put_object(ROOT, f.as_str(), ObjType::Map)
            .unwrap_or(ObjId::Root)
    });
    tx.commit_with(CommitOptions::default().with_time(0));
    doc.set_actor(actor);
    (doc, families)
}

/// The family maps of a loaded document.
pub(crate) fn families(doc: &Automerge) -> Result<[ObjId; 4], StateError> {
    let mut out = [ObjId::Root, ObjId::Root, ObjId::Root, ObjId::Root];
    for (slot, family) in out.iter_mut().zip(Family::ALL) {
        match doc.get(ROOT, family.as_str())? {
            Some((Value::Object(ObjType::Map), id)) => *slot = id,
            _ => return Err(StateError::NotASpace(format!("no {family} map"))),
        }
    }
    Ok(out)
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
