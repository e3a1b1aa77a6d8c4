//! Conflict policies for `LastValue` channels: given every write that is
//! still live at a register (automerge keeps concurrent writes side by side),
//! choose the visible value. Resolution is a pure function of that set, so
//! every replica holding the same changes shows the same value and the same
//! conflicts whatever order the changes arrived in. This module never reads
//! or writes the document.

use std::collections::HashMap;
use std::sync::Arc;

use automerge::ActorId;
use serde::Serialize;
use serde_json::Value;

use crate::{ChannelPath, Hlc, Policy, StateError};

/// A user merge function: receives the concurrent values ordered by
/// `(hlc, actor)` and returns the merged value. It must be deterministic.
pub type MergeFn = Arc<dyn Fn(&[Value]) -> Value + Send + Sync>;

/// One live write at a register.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The written value.
    pub value: Value,
    /// The write's hybrid logical clock.
    pub hlc: Hlc,
    /// Hex id of the actor that wrote it.
    pub actor: String,
    /// The value its writer saw before writing (kept for `reject` channels).
    pub previous: Option<Value>,
}

/// Concurrent writes to a `reject` channel, kept out of its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    /// The channel.
    pub path: String,
    /// The concurrent writes, ordered by `(hlc, actor)`.
    pub candidates: Vec<Candidate>,
    /// The value readers see meanwhile: the value before the conflicting writes.
    pub agreed: Option<Value>,
}

/// The outcome of resolving a register.
pub(crate) struct Resolution {
    pub value: Option<Value>,
    pub conflict: Option<Conflict>,
}

/// Resolves the live, unexpired writes of a register under `policy`.
pub(crate) fn resolve(
    path: &ChannelPath,
    policy: &Policy,
    mut candidates: Vec<Candidate>,
    merge_fns: &HashMap<String, MergeFn>,
) -> Result<Resolution, StateError> {
    candidates.sort_by(|a, b| (a.hlc, &a.actor).cmp(&(b.hlc, &b.actor)));
    let plain = |value| Resolution {
        value,
        conflict: None,
    };
    if candidates.len() <= 1 {
        return Ok(plain(candidates.pop().map(|c| c.value)));
    }
    match policy {
        Policy::LastWriteWins => Ok(plain(candidates.pop().map(|c| c.value))),
        Policy::FirstWriteWins => Ok(plain(candidates.into_iter().next().map(|c| c.value))),
        Policy::Merge(name) => {
            let f = merge_fns
                .get(name)
                .ok_or_else(|| StateError::UnknownMergeFn {
                    path: path.to_string(),
                    name: name.clone(),
                })?;
            let values: Vec<Value> = candidates.into_iter().map(|c| c.value).collect();
            Ok(plain(Some(f(&values))))
        }
        Policy::Reject => {
            let agreed = candidates.first().and_then(|c| c.previous.clone());
            Ok(Resolution {
                value: agreed.clone(),
                conflict: Some(Conflict {
                    path: path.to_string(),
                    candidates,
                    agreed,
                }),
            })
        }
    }
}

/// Hex form of an actor id, as used in keys and candidates.
pub(crate) fn actor_hex(actor: &ActorId) -> String {
    actor.to_hex_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cand(v: i64, wall: u64, actor: &str) -> Candidate {
        Candidate {
            value: json!(v),
            hlc: Hlc { wall, logical: 0 },
            actor: actor.into(),
            previous: Some(json!(0)),
        }
    }

    fn run(policy: Policy, c: Vec<Candidate>) -> Resolution {
        let mut fns: HashMap<String, MergeFn> = HashMap::new();
        fns.insert(
            "sum".into(),
            Arc::new(|vs: &[Value]| json!(vs.iter().filter_map(Value::as_i64).sum::<i64>())),
        );
        let path: ChannelPath = "observation/x".parse().unwrap();
        resolve(&path, &policy, c, &fns).unwrap()
    }

    #[test]
    fn each_policy_is_order_independent() {
        let a = cand(1, 5, "aa");
        let b = cand(2, 5, "bb");
        let c = cand(3, 4, "cc");
        for order in [
            vec![a.clone(), b.clone(), c.clone()],
            vec![c.clone(), b.clone(), a.clone()],
        ] {
            assert_eq!(
                run(Policy::LastWriteWins, order.clone()).value,
                Some(json!(2))
            );
            assert_eq!(
                run(Policy::FirstWriteWins, order.clone()).value,
                Some(json!(3))
            );
            assert_eq!(
                run(Policy::Merge("sum".into()), order.clone()).value,
                Some(json!(6))
            );
            let r = run(Policy::Reject, order);
            assert_eq!(r.value, Some(json!(0)));
            assert_eq!(r.conflict.unwrap().candidates.len(), 3);
        }
    }

    #[test]
    fn unknown_merge_fn_is_an_error() {
        let path: ChannelPath = "observation/x".parse().unwrap();
        let err = resolve(
            &path,
            &Policy::Merge("nope".into()),
            vec![cand(1, 1, "a"), cand(2, 2, "b")],
            &HashMap::new(),
        );
        assert!(matches!(err, Err(StateError::UnknownMergeFn { .. })));
    }
}
