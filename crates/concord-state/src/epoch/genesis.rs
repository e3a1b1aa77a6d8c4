//! The first document of an epoch: a deterministic function of the state at
//! its cut, so every replica that holds the cut builds it byte for byte the
//! same, and a replica that does not can check a peer's copy.
//!
//! It is a small graph of changes by fixed genesis actors, all at time 0:
//!
//! - `G0`: the channel maps (the same change as in every space's first
//!   epoch, so object ids never change across epochs);
//! - `G1` (after `G0`): for each key in order, its first live write;
//! - `E1`, `E2`, … (each after `G0` only, so concurrent with `G1` and each
//!   other): the second, third, … live write of keys that hold several
//!   (concurrent writes stay concurrent, for the conflict policies);
//! - the seal (after all of them): the cut's vector clock and hybrid
//!   logical clock under the root key [`EPOCH_KEY`].
//!
//! The seal is the epoch's only head; its hash is the [`EpochId`].
//!
//! This module builds and inspects such documents; it never touches a
//! replica.

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ChangeHash, PatchLog, ROOT, ReadDoc, Value};
use serde::{Deserialize, Serialize};

use super::cut::CutState;
use super::{EpochId, origin};
use crate::keys::{GENESIS_ACTOR, MAX_CONCURRENT_WRITES, extra_genesis_actor};
use crate::replica::doc::{self, Layout};
use crate::{Hlc, StateError, VectorClock};

/// Root key of the seal: the epoch's descriptor.
pub(crate) const EPOCH_KEY: &str = "epoch";

/// What the seal records about the cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Descriptor {
    /// The cut's vector clock: actor hex -> logical sequence.
    pub cut: BTreeMap<String, u64>,
    /// The largest hybrid logical clock of the cut's changes.
    pub hlc: Hlc,
}

impl Descriptor {
    fn of(state: &CutState) -> Descriptor {
        Descriptor {
            cut: state
                .clock
                .iter()
                .map(|(a, s)| (a.to_hex_string(), s))
                .collect(),
            hlc: state.hlc,
        }
    }

    /// The cut as a vector clock; `None` if an actor is not hex.
    pub(crate) fn clock(&self) -> Option<VectorClock> {
        self.cut
            .iter()
            .map(|(a, s)| Some((ActorId::from(hex::decode(a).ok()?), *s)))
            .collect()
    }
}

fn commit(tx: automerge::transaction::Transaction<'_>) -> Result<ChangeHash, StateError> {
    tx.commit_with(CommitOptions::default().with_time(0))
        .0
        .ok_or_else(|| StateError::InvalidEpoch("a genesis change came out empty".into()))
}

/// Builds the first document of the epoch whose cut has `state`; returns it
/// with its layout and id. The document writes as `actor` afterwards.
pub(crate) fn build(
    state: &CutState,
    actor: ActorId,
) -> Result<(Automerge, Layout, EpochId), StateError> {
    let extras = state.max_concurrent().saturating_sub(1);
    if extras > MAX_CONCURRENT_WRITES {
        return Err(StateError::InvalidEpoch(format!(
            "a key holds {} concurrent writes; a cut carries at most {}",
            extras + 1,
            MAX_CONCURRENT_WRITES + 1
        )));
    }
    let (mut doc, layout) = doc::genesis(ActorId::from(&GENESIS_ACTOR[..]));
    let g0 = doc.get_heads();
    let mut heads = Vec::with_capacity(extras + 1);
    // G1, then E1.. (each at G0's heads): the r-th live write of each key.
    for rank in 0..=extras {
        let writer = match rank {
            0 => ActorId::from(&GENESIS_ACTOR[..]),
            r => extra_genesis_actor(r),
        };
        doc.set_actor(writer);
        let mut tx = doc
            .transaction_at(PatchLog::inactive(), &g0)
            .map_err(|e| StateError::InvalidEpoch(e.to_string()))?;
        for (slot, live) in &state.slots {
            let Some(write) = live.get(rank) else {
                continue;
            };
            let value = match &write.origin {
                Some(origin) => origin::tag(&write.value, origin),
                None => write.value.clone(),
            };
            let obj = &layout.family(slot.family)[slot.bucket];
            tx.put(obj, slot.key.as_str(), value)?;
        }
        if tx.pending_ops() == 0 {
            tx.put(ROOT, EPOCH_KEY, "")?;
        }
        heads.push(commit(tx)?);
    }
    doc.set_actor(ActorId::from(&GENESIS_ACTOR[..]));
    let mut tx = doc
        .transaction_at(PatchLog::inactive(), &heads)
        .map_err(|e| StateError::InvalidEpoch(e.to_string()))?;
    let descriptor = serde_json::to_string(&Descriptor::of(state))?;
    tx.put(ROOT, EPOCH_KEY, descriptor)?;
    let seal = commit(tx)?;
    doc.set_actor(actor);
    Ok((doc, layout, EpochId(seal)))
}

/// The descriptor of the epoch whose first document is `doc`, if it is one.
pub(crate) fn descriptor(doc: &Automerge) -> Result<Option<Descriptor>, StateError> {
    match doc.get(ROOT, EPOCH_KEY)? {
        Some((Value::Scalar(s), _)) => match s.as_str() {
            Some("") | None => Ok(None),
            Some(json) => Ok(Some(serde_json::from_str(json).map_err(|e| {
                StateError::InvalidEpoch(format!("unreadable epoch descriptor: {e}"))
            })?)),
        },
        _ => Ok(None),
    }
}
