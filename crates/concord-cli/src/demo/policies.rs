//! The demo's account of what each channel's policy did with the writes of
//! the "everyone writes at once" step: for every channel, the writes a
//! replica holds (its history) and the value it shows, and which write that
//! value came from.
//!
//! This module owns that account. It only reads a replica, never writes
//! one, and states nothing it did not read there.

use anyhow::{Result, bail};
use concord::{ChannelKind, ChannelSpec, Policy, Space};
use concord_state::{HistoryEntry, Replica};
use serde_json::Value;

use super::agents::Names;

/// What one channel's policy made of its writes.
pub(super) struct Outcome {
    /// The channel.
    pub path: String,
    /// Its policy (`last_value` channels) or kind.
    pub rule: String,
    /// The writes and the value they resulted in.
    pub what: String,
}

/// A channel as one replica holds it.
struct Read {
    path: String,
    spec: Option<ChannelSpec>,
    writes: Vec<HistoryEntry>,
    /// Per write, whether a later write by a writer who had seen it replaced it.
    replaced: Vec<bool>,
    shown: Option<Value>,
}

/// The outcome of every channel in `paths`, read from `space`'s replica.
pub(super) async fn outcomes(space: &Space, paths: &[&str], names: &Names) -> Result<Vec<Outcome>> {
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    let reads = space
        .with(move |r| {
            paths
                .into_iter()
                .map(|path| {
                    let spec = r.spec(path.as_str())?;
                    let writes = r.history(path.as_str())?;
                    let replaced = replaced(r, &writes);
                    let shown = r.get(path.as_str())?;
                    Ok(Read {
                        path,
                        spec,
                        writes,
                        replaced,
                        shown,
                    })
                })
                .collect::<Result<Vec<_>, concord_state::StateError>>()
        })
        .await??;
    reads.into_iter().map(|read| outcome(read, names)).collect()
}

fn outcome(read: Read, names: &Names) -> Result<Outcome> {
    let Read {
        path,
        spec,
        writes,
        replaced,
        shown,
    } = read;
    let Some(spec) = spec else {
        bail!("{path} is not declared");
    };
    let kept = shown.as_ref().and_then(Value::as_array).map_or(0, Vec::len);
    let shown = shown.map_or("nothing".to_string(), |v| v.to_string());
    let n = writes.len();
    let by = writers(&writes, names);
    let what = match (&spec.kind, &spec.policy) {
        (ChannelKind::LastValue, Policy::LastWriteWins) => {
            let latest = writes.iter().max_by_key(|w| (w.hlc, &w.actor));
            format!(
                "{n} writes by {by}: shows {shown}, {}",
                whose(latest, &shown, "latest", names)?
            )
        }
        (ChannelKind::LastValue, Policy::FirstWriteWins) => {
            let earliest = writes.iter().min_by_key(|w| (w.hlc, &w.actor));
            format!(
                "{n} claim(s) stored, by {by}: shows {shown}, {}",
                whose(earliest, &shown, "earliest", names)?
            )
        }
        (ChannelKind::LastValue, Policy::Merge(f)) => {
            let listed = |keep: bool| {
                let picked: Vec<String> = writes
                    .iter()
                    .zip(&replaced)
                    .filter(|(_, r)| **r != keep)
                    .map(|(w, _)| format!("{} {}", names.of(&w.actor), value_of(w)))
                    .collect();
                if picked.is_empty() {
                    "none".to_string()
                } else {
                    picked.join(", ")
                }
            };
            format!(
                "{n} writes; concurrent at the end: {}; replaced by a writer who had seen them: {}. Shows {shown}, the concurrent ones merged by {f}",
                listed(true),
                listed(false)
            )
        }
        (ChannelKind::Topic, _) => {
            format!("{n} entries appended by {by}: {kept} kept, in hlc order")
        }
        (ChannelKind::Counter, _) => format!(
            "contributions {}: shows total {shown}",
            contributions(&writes, names)
        ),
        (ChannelKind::Set, _) => format!("{n} inserts by {by}: members {shown}"),
        (kind, policy) => bail!("{path}: the demo has no account of {kind:?} / {policy}"),
    };
    let rule = match spec.kind {
        ChannelKind::LastValue => spec.policy.to_string(),
        kind => kind.as_str().to_string(),
    };
    Ok(Outcome { path, rule, what })
}

/// Per write, whether another write's writer had seen it (for a register,
/// such a write replaces it: only writes nobody saw stay concurrent).
fn replaced(r: &Replica, writes: &[HistoryEntry]) -> Vec<bool> {
    let actor = |hex: &str| {
        r.vector_clock()
            .iter()
            .find(|(a, _)| a.to_hex_string() == hex)
            .map(|(a, _)| a.clone())
    };
    let clocks: Vec<_> = writes
        .iter()
        .map(|w| r.clock_of(&r.change_hash(&actor(&w.actor)?, w.seq)?))
        .collect();
    writes
        .iter()
        .enumerate()
        .map(|(i, w)| {
            actor(&w.actor).is_some_and(|a| {
                clocks
                    .iter()
                    .enumerate()
                    .any(|(j, c)| j != i && c.as_ref().is_some_and(|c| c.get(&a) >= w.seq))
            })
        })
        .collect()
}

/// The writers of `writes`, in order, each once.
fn writers(writes: &[HistoryEntry], names: &Names) -> String {
    let mut out: Vec<String> = Vec::new();
    for w in writes {
        let name = names.of(&w.actor);
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out.join(", ")
}

/// Says whose write `chosen` is, checking that it is the one shown.
fn whose(chosen: Option<&HistoryEntry>, shown: &str, order: &str, names: &Names) -> Result<String> {
    let Some(w) = chosen else {
        bail!("no write to show");
    };
    if value_of(w) != shown {
        bail!("shows {shown}, but the {order} write is {}", value_of(w));
    }
    let hlc = w.hlc.map_or("none".to_string(), |h| h.to_string());
    Ok(format!(
        "{}'s, the {order} write (hlc {hlc})",
        names.of(&w.actor)
    ))
}

/// Each writer's latest counter contribution, and their sum.
fn contributions(writes: &[HistoryEntry], names: &Names) -> String {
    let mut latest: Vec<(&str, i64)> = Vec::new();
    for w in writes {
        let v = w.value.as_ref().and_then(Value::as_i64).unwrap_or(0);
        match latest.iter_mut().find(|(a, _)| *a == w.actor) {
            Some(slot) => slot.1 = v,
            None => latest.push((&w.actor, v)),
        }
    }
    let sum: i64 = latest.iter().map(|(_, v)| v).sum();
    let terms: Vec<String> = latest
        .iter()
        .map(|(a, v)| format!("{} {v}", names.of(a)))
        .collect();
    format!("{} = {sum}", terms.join(" + "))
}

fn value_of(w: &HistoryEntry) -> String {
    w.value
        .as_ref()
        .map_or("nothing".to_string(), Value::to_string)
}
