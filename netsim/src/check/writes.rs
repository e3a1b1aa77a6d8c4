//! The registry of every write of a run ([`WriteLog`]), by actor, with
//! acknowledgement marks, and the final checks built on it: acknowledged
//! writes lost on a live replica ([`LostWrite`]), and counters and topics
//! that do not show each held write exactly once.
//!
//! It owns what counts as a lost or a twice-applied write. It must never
//! modify a replica, and never decide when a write is acknowledged: the
//! simulator tells it.

use std::collections::{BTreeMap, BTreeSet};

use concord_state::{ActorId, Replica};

use crate::node::NodeId;
use crate::workload::Effect;

/// The writes of one incarnation (actor) and how far they were acknowledged.
#[derive(Debug, Clone)]
struct ActorWrites {
    actor: ActorId,
    node: NodeId,
    changes: Vec<(u64, Effect)>,
    acked_seq: u64,
}

/// Every write made in the run, by actor, with acknowledgement marks.
#[derive(Debug, Default)]
pub struct WriteLog {
    actors: BTreeMap<(NodeId, u32), ActorWrites>,
}

/// An acknowledged write missing from a replica at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostWrite {
    /// The writing node.
    pub writer: NodeId,
    /// The writer's actor id (hex).
    pub actor: String,
    /// The change's sequence number.
    pub seq: u64,
    /// A node lacking it.
    pub missing_on: NodeId,
}

impl WriteLog {
    /// Records a write by `node` (incarnation `inc`): the actor's logical
    /// change `seq` and its effect.
    pub fn record(&mut self, node: NodeId, inc: u32, actor: &ActorId, seq: u64, effect: Effect) {
        self.entry(node, inc, actor).changes.push((seq, effect));
    }

    /// Marks everything up to `seq` of the incarnation acknowledged
    /// (durable); returns whether that raised the mark.
    pub fn ack(&mut self, node: NodeId, inc: u32, actor: &ActorId, seq: u64) -> bool {
        let e = self.entry(node, inc, actor);
        let raised = seq > e.acked_seq;
        e.acked_seq = e.acked_seq.max(seq);
        raised
    }

    fn entry(&mut self, node: NodeId, inc: u32, actor: &ActorId) -> &mut ActorWrites {
        self.actors
            .entry((node, inc))
            .or_insert_with(|| ActorWrites {
                actor: actor.clone(),
                node,
                changes: Vec::new(),
                acked_seq: 0,
            })
    }

    /// Writes made so far.
    pub fn total(&self) -> u64 {
        self.actors.values().map(|a| a.changes.len() as u64).sum()
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.actors
            .values()
            .map(|a| a.changes.iter().filter(|(s, _)| *s <= a.acked_seq).count() as u64)
            .sum()
    }

    /// Every acknowledged write that some replica in `live` lacks, with the
    /// first replica lacking it. Writes are logical changes: a write carried
    /// into a later epoch is the same write under another change hash, and
    /// one inside an epoch's cut has no change of its own any more.
    pub fn lost<'a>(
        &self,
        live: impl Iterator<Item = (NodeId, &'a Replica)> + Clone,
    ) -> Vec<LostWrite> {
        let mut out = Vec::new();
        for w in self.actors.values() {
            for (seq, _) in w.changes.iter().filter(|(s, _)| *s <= w.acked_seq) {
                let seq = *seq;
                let missing = live
                    .clone()
                    .find(|(_, r)| !r.vector_clock().contains(&w.actor, seq));
                if let Some((node, _)) = missing {
                    out.push(LostWrite {
                        writer: w.node,
                        actor: w.actor.to_hex_string(),
                        seq,
                        missing_on: node,
                    });
                }
            }
        }
        out
    }
}

impl WriteLog {
    /// Counters and topics of `replica` that do not show every write it
    /// holds exactly once: each counter must equal the sum of the
    /// increments of the writes its vector clock covers, each topic hold
    /// exactly the entries those writes appended. Returns what differs.
    pub fn applied_once(&self, replica: &Replica) -> Vec<String> {
        let clock = replica.vector_clock();
        let mut counters: BTreeMap<&str, i64> = BTreeMap::new();
        let mut topics: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for w in self.actors.values() {
            for (seq, effect) in &w.changes {
                let held = clock.contains(&w.actor, *seq);
                match effect {
                    Effect::Increment(path, delta) => {
                        let sum = counters.entry(path).or_default();
                        if held {
                            *sum = sum.saturating_add(*delta);
                        }
                    }
                    Effect::Append(path, id) => {
                        let ids = topics.entry(path).or_default();
                        if held {
                            ids.insert(id);
                        }
                    }
                    Effect::Other => {}
                }
            }
        }
        let mut out = Vec::new();
        for (path, expected) in counters {
            match replica.counter(path) {
                Ok(actual) if actual == expected => {}
                got => out.push(format!("{path}: {got:?}, expected {expected}")),
            }
        }
        for (path, expected) in topics {
            let actual = replica.topic_entries(path).unwrap_or_default();
            let ids: Vec<&str> = actual.iter().map(|(id, _)| id.as_str()).collect();
            let distinct: BTreeSet<&str> = ids.iter().copied().collect();
            if distinct != expected || distinct.len() != ids.len() {
                out.push(format!(
                    "{path}: {} entries ({} distinct), expected {}",
                    ids.len(),
                    distinct.len(),
                    expected.len()
                ));
            }
        }
        out
    }
}
