//! The write workload: random operations on `LastValue` (last-write-wins
//! and `reject`), `Topic`, `Counter` and `Set` channels, from a small pool of
//! channel names so that concurrent writes collide; and, when a scenario
//! enables them, heartbeats on an ephemeral channel shared by every node.
//!
//! It owns the choice of operation and its application to one replica. It
//! must never schedule anything or talk to the network.

use concord_state::{ChannelSpec, Millis, Policy, Replica, StateError, WriteReceipt};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// The `LastValue` channel declared with the `reject` policy.
pub const REJECT_CHANNEL: &str = "coordination/leader";

/// The ephemeral channel heartbeats go to: one live value per node.
pub const PRESENCE_CHANNEL: &str = "coordination/presence";

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `put` on a `LastValue` channel.
    Put(String, Value),
    /// `append` on a `Topic`.
    Append(String, Value),
    /// `increment` on a `Counter`.
    Increment(String, i64),
    /// `set_add`.
    SetAdd(String, Value),
    /// `set_remove`.
    SetRemove(String, Value),
    /// `put_ephemeral` on an ephemeral channel with this TTL (ms), declaring
    /// it first if needed.
    Heartbeat(String, Value, u64),
}

impl Op {
    /// Draws a random operation for `node`'s `n`-th write.
    pub fn random(rng: &mut ChaCha8Rng, node: u32, n: u64) -> Op {
        let value = json!({ "node": node, "n": n });
        match rng.random_range(0..100) {
            0..35 => Op::Put(format!("observation/lv{}", rng.random_range(0..4)), value),
            35..45 => Op::Put(REJECT_CHANNEL.to_owned(), value),
            45..70 => Op::Append(format!("intent/log{}", rng.random_range(0..2)), value),
            70..85 => {
                let delta = match rng.random_range(-3..=5) {
                    0 => 1,
                    d => d,
                };
                Op::Increment(format!("execution/count{}", rng.random_range(0..2)), delta)
            }
            _ => {
                let path = format!("observation/set{}", rng.random_range(0..2));
                let member = json!(format!("m{}", rng.random_range(0..8)));
                if rng.random_bool(0.5) {
                    Op::SetAdd(path, member)
                } else {
                    Op::SetRemove(path, member)
                }
            }
        }
    }

    /// `node`'s `n`-th heartbeat on [`PRESENCE_CHANNEL`], living three
    /// heartbeat intervals.
    pub fn heartbeat(node: u32, n: u64, interval_ms: u64) -> Op {
        let value = json!({ "node": node, "beat": n });
        let ttl = interval_ms.saturating_mul(3).max(1);
        Op::Heartbeat(PRESENCE_CHANNEL.to_owned(), value, ttl)
    }

    /// The channel written.
    pub fn path(&self) -> &str {
        match self {
            Op::Put(p, _)
            | Op::Append(p, _)
            | Op::Increment(p, _)
            | Op::SetAdd(p, _)
            | Op::SetRemove(p, _)
            | Op::Heartbeat(p, _, _) => p,
        }
    }

    /// Applies the operation; `None` when it changed nothing in the
    /// document (removing an absent member; a heartbeat on a channel
    /// declared already: ephemeral values are no change).
    pub fn apply(
        &self,
        replica: &mut Replica,
        now: Millis,
    ) -> Result<Option<(WriteReceipt, Effect)>, StateError> {
        let plain = |r: WriteReceipt| (r, Effect::Other);
        match self {
            Op::Put(p, v) => replica.put(now, p.as_str(), v).map(|r| Some(plain(r))),
            Op::Append(p, v) => replica
                .append(now, p.as_str(), v)
                .map(|(id, r)| Some((r, Effect::Append(p.clone(), id)))),
            Op::Increment(p, d) => Ok(replica
                .increment(now, p.as_str(), *d)?
                .map(|r| (r, Effect::Increment(p.clone(), *d)))),
            Op::SetAdd(p, m) => replica.set_add(now, p.as_str(), m).map(|r| Some(plain(r))),
            Op::SetRemove(p, m) => Ok(replica.set_remove(now, p.as_str(), m)?.map(plain)),
            Op::Heartbeat(p, v, ttl) => {
                let declared = replica.declare(now, p.as_str(), ChannelSpec::ephemeral(*ttl))?;
                replica.put_ephemeral(now, p.as_str(), v)?;
                Ok(declared.map(plain))
            }
        }
    }
}

/// What a write does that must show exactly once in every replica that
/// holds it (see `check::WriteLog::applied_once`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Adds the delta to the counter.
    Increment(String, i64),
    /// Adds the entry (by id) to the topic.
    Append(String, String),
    /// Anything else (its effect depends on concurrent writes).
    Other,
}

/// Declares [`REJECT_CHANNEL`] (done once, by node 0, at start).
pub fn declare(replica: &mut Replica, now: Millis) -> Result<Option<WriteReceipt>, StateError> {
    replica.declare(now, REJECT_CHANNEL, ChannelSpec::last_value(Policy::Reject))
}
