//! Checkers: causal order of subscriber events (per step), the registry of
//! acknowledged writes and the lost-write check, and the final convergence
//! check (heads, vector clocks, every channel's value, conflicts).
//!
//! It owns the definition of each violation and only *reads* replicas. It
//! must never modify a replica or an engine, and never decide what the
//! simulation does next.

use std::collections::{BTreeMap, BTreeSet};

use concord_state::{ActorId, ChangeHash, EventPosition, Replica, VectorClock};
use serde::Serialize;

use crate::node::NodeId;

/// Violation counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Violations {
    /// Live nodes whose final state differs from the first live node's.
    pub convergence: u64,
    /// Subscriber events delivered after an event that depends on them.
    pub causality: u64,
    /// Acknowledged writes missing (or different) on some live replica at the end.
    pub lost_writes: u64,
    /// Bounded queues over their bound (engine transmits, pending changes)
    /// and lagged subscribers.
    pub bounds: u64,
    /// Protocol errors between honest nodes (always a bug).
    pub protocol: u64,
    /// Storage failures (start, stop, flush) and an exhausted event budget.
    pub errors: u64,
}

/// A violation found during the run (convergence and lost writes are only
/// judged at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// See [`Violations::causality`].
    Causality,
    /// See [`Violations::bounds`].
    Bounds,
    /// See [`Violations::protocol`].
    Protocol,
    /// See [`Violations::errors`].
    Errors,
}

impl Violations {
    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.convergence
            + self.causality
            + self.lost_writes
            + self.bounds
            + self.protocol
            + self.errors
    }

    /// Counts one violation of `kind`.
    pub fn count(&mut self, kind: Kind) {
        let slot = match kind {
            Kind::Causality => &mut self.causality,
            Kind::Bounds => &mut self.bounds,
            Kind::Protocol => &mut self.protocol,
            Kind::Errors => &mut self.errors,
        };
        *slot += 1;
    }
}

/// Checks that one subscriber never receives an event after an event whose
/// change causally depends on it.
///
/// It keeps the down-set (as a vector clock) of every change delivered so
/// far. A new event's change inside that down-set, but not itself delivered
/// before, was overtaken by a descendant: a violation. Events of one change
/// may come several at a time; they are fine.
#[derive(Debug, Default)]
pub struct CausalOrder {
    frontier: VectorClock,
    delivered: BTreeSet<ChangeHash>,
}

impl CausalOrder {
    /// Records one delivered event; returns `false` on a causality violation.
    pub fn observe(&mut self, replica: &Replica, position: &EventPosition) -> bool {
        if self.delivered.contains(&position.change) {
            return true;
        }
        let ok = !self.frontier.contains(&position.actor, position.seq);
        self.delivered.insert(position.change);
        self.absorb(replica, position.change);
        ok
    }

    /// Adds the change's causal past to the frontier. The frontier is a
    /// union of down-sets, hence down-closed: the walk stops at changes it
    /// already covers. It only grows once the walk is done, because covering
    /// `(actor, seq)` in a clock claims predecessors not yet walked.
    fn absorb(&mut self, replica: &Replica, change: ChangeHash) {
        let doc = replica.doc();
        let mut stack = vec![change];
        let mut walked = BTreeSet::new();
        let mut found = Vec::new();
        while let Some(hash) = stack.pop() {
            if !walked.insert(hash) {
                continue;
            }
            let Some(meta) = doc.get_change_meta_by_hash(&hash) else {
                continue;
            };
            if self.frontier.contains(&meta.actor, meta.seq) {
                continue;
            }
            found.push((meta.actor.into_owned(), meta.seq));
            stack.extend(meta.deps.iter().copied());
        }
        for (actor, seq) in found {
            self.frontier.observe(&actor, seq);
        }
    }
}

/// The writes of one incarnation (actor) and how far they were acknowledged.
#[derive(Debug, Clone)]
struct ActorWrites {
    actor: ActorId,
    node: NodeId,
    changes: Vec<(u64, ChangeHash)>,
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
    /// Records a write by `node` (incarnation `inc`).
    pub fn record(
        &mut self,
        node: NodeId,
        inc: u32,
        actor: &ActorId,
        seq: u64,
        change: ChangeHash,
    ) {
        self.entry(node, inc, actor).changes.push((seq, change));
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

    /// Every acknowledged write that some replica in `live` lacks (or holds
    /// with another hash), with the first replica lacking it.
    pub fn lost<'a>(
        &self,
        live: impl Iterator<Item = (NodeId, &'a Replica)> + Clone,
    ) -> Vec<LostWrite> {
        let mut out = Vec::new();
        for w in self.actors.values() {
            for &(seq, hash) in w.changes.iter().filter(|(s, _)| *s <= w.acked_seq) {
                let missing = live
                    .clone()
                    .find(|(_, r)| r.change_hash(&w.actor, seq) != Some(hash));
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

/// What the final convergence check compares: everything a reader can see.
#[derive(Debug, PartialEq)]
struct Visible {
    heads: Vec<ChangeHash>,
    clock: VectorClock,
    values: Vec<(String, String, Option<serde_json::Value>)>,
    conflicts: Vec<concord_state::Conflict>,
}

fn visible(replica: &Replica) -> Visible {
    let values = replica
        .channels()
        .into_iter()
        .map(|(path, spec)| {
            let value = replica.get(&path).ok().flatten();
            (path.to_string(), spec.to_string(), value)
        })
        .collect();
    Visible {
        heads: replica.heads(),
        clock: replica.vector_clock().clone(),
        values,
        conflicts: replica.conflicts(),
    }
}

/// Live nodes whose visible state differs from the first live node's.
pub fn divergent<'a>(live: impl Iterator<Item = (NodeId, &'a Replica)>) -> Vec<NodeId> {
    let mut reference: Option<Visible> = None;
    let mut out = Vec::new();
    for (node, replica) in live {
        let v = visible(replica);
        match &reference {
            None => reference = Some(v),
            Some(r) if *r != v => out.push(node),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_state::Millis;

    fn actor(n: u8) -> ActorId {
        ActorId::from(&[n; 16][..])
    }

    #[test]
    fn causal_order_flags_an_overtaken_ancestor() {
        let mut a = Replica::new("s", actor(1));
        let first = a.put(Millis(1), "observation/x", &1).unwrap();
        let second = a.put(Millis(2), "observation/x", &2).unwrap();
        let pos = |r: &concord_state::WriteReceipt| EventPosition {
            actor: actor(1),
            seq: r.seq,
            change: r.change,
            hlc: Some(r.hlc),
        };
        let mut good = CausalOrder::default();
        assert!(good.observe(&a, &pos(&first)));
        assert!(good.observe(&a, &pos(&second)));
        assert!(good.observe(&a, &pos(&second)), "same change again is fine");
        let mut bad = CausalOrder::default();
        assert!(bad.observe(&a, &pos(&second)));
        assert!(!bad.observe(&a, &pos(&first)));
    }

    #[test]
    fn divergence_and_lost_writes_are_found() {
        let mut a = Replica::new("s", actor(1));
        let b = Replica::new("s", actor(2));
        let w = a.put(Millis(1), "observation/x", &1).unwrap();
        let mut log = WriteLog::default();
        log.record(NodeId(0), 0, &actor(1), w.seq, w.change);
        log.ack(NodeId(0), 0, &actor(1), w.seq);
        let live = [(NodeId(0), &a), (NodeId(1), &b)];
        assert_eq!(divergent(live.iter().copied()), vec![NodeId(1)]);
        let lost = log.lost(live.iter().copied());
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].missing_on, NodeId(1));
        assert_eq!((log.total(), log.acked()), (1, 1));
    }
}
