//! Checkers: causal order of subscriber events (per step), the registry of
//! acknowledged writes and the lost-write check, the final convergence
//! check (heads, vector clocks, every channel's value but ephemeral ones,
//! conflicts), lease safety with its model of fenced external systems
//! ([`LeaseCheck`]), and handoffs between lease holders ([`HandoffCheck`]).
//!
//! It owns the definition of each violation and only *reads* replicas. It
//! must never modify a replica or an engine, and never decide what the
//! simulation does next.

use std::collections::{BTreeMap, BTreeSet};

use concord_state::{ActorId, ChangeHash, ChannelKind, EventPosition, Replica, VectorClock};
use serde::Serialize;

use crate::ids::IdSet;
use crate::node::NodeId;
use crate::workload::Effect;

mod handoff;

pub use handoff::{HandoffCheck, HandoffFloor};

/// Violation counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Violations {
    /// Live nodes whose final state differs from the first live node's.
    pub convergence: u64,
    /// Subscriber events delivered after an event that depends on them.
    pub causality: u64,
    /// Acknowledged writes missing on some live replica at the end.
    pub lost_writes: u64,
    /// Counters and topics that do not show each write a live replica holds
    /// exactly once (a write carried into a new epoch twice, or lost there).
    pub not_once: u64,
    /// Bounded queues over their bound (engine transmits, pending changes)
    /// and lagged subscribers.
    pub bounds: u64,
    /// Protocol errors between honest nodes (always a bug).
    pub protocol: u64,
    /// Storage failures (start, stop, flush) and an exhausted event budget.
    pub errors: u64,
    /// Lease safety: overlapping holders, fencing tokens out of order, and
    /// fenced writes wrongly accepted or refused (see [`LeaseCheck`]).
    pub lease: u64,
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
    /// See [`Violations::lease`].
    Lease,
}

impl std::fmt::Display for Violations {
    /// `convergence=0 causality=0 …`, every count by name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "convergence={} causality={} lost_writes={} not_once={} bounds={} protocol={} errors={} lease={}",
            self.convergence,
            self.causality,
            self.lost_writes,
            self.not_once,
            self.bounds,
            self.protocol,
            self.errors,
            self.lease
        )
    }
}

impl Violations {
    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.convergence
            + self.causality
            + self.lost_writes
            + self.not_once
            + self.bounds
            + self.protocol
            + self.errors
            + self.lease
    }

    /// Counts one violation of `kind`.
    pub fn count(&mut self, kind: Kind) {
        let slot = match kind {
            Kind::Causality => &mut self.causality,
            Kind::Bounds => &mut self.bounds,
            Kind::Protocol => &mut self.protocol,
            Kind::Errors => &mut self.errors,
            Kind::Lease => &mut self.lease,
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
    delivered: IdSet<ChangeHash>,
}

impl CausalOrder {
    /// Records one delivered event; returns `false` on a causality violation.
    pub fn observe(&mut self, replica: &Replica, position: &EventPosition) -> bool {
        if self.delivered.contains(&position.change) {
            return true;
        }
        let ok = !self.frontier.contains(&position.actor, position.seq);
        self.absorb(replica, position.change);
        self.delivered.insert(position.change);
        ok
    }

    /// Adds the change's causal past (logical, across epochs) to the
    /// frontier. The frontier is a union of down-sets, hence down-closed:
    /// the walk stops at changes it already covers, and skips delivered
    /// ones (their pasts were absorbed when they came) without looking them
    /// up in the document.
    fn absorb(&mut self, replica: &Replica, change: ChangeHash) {
        let delivered = &self.delivered;
        let found = replica.causal_past_beyond(&change, &self.frontier, |h| delivered.contains(h));
        self.frontier.merge(&found);
    }
}

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

/// Names one grant (one `Acquired`, with its renewals) in [`LeaseCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrantId(pub u64);

/// A grant whose validity may not have ended yet.
#[derive(Debug, Clone, Copy)]
struct LiveGrant {
    id: GrantId,
    node: NodeId,
    token: u64,
    /// Virtual time the holder learnt of it.
    start: u64,
    /// Virtual time (exclusive) its holder stops believing in it: its local
    /// end of validity mapped through its clock, cut short by a release or
    /// a crash.
    end: u64,
}

/// One resource as the checker sees it.
#[derive(Debug, Default)]
struct ResourceLog {
    permits: u32,
    live: Vec<LiveGrant>,
    /// Token of the grant that started last.
    latest: Option<u64>,
    /// Highest token of any grant started so far.
    max_token: u64,
    /// The fenced external system: the highest token it has seen.
    highest_seen: u64,
}

/// What the fenced external system made of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The system took the write (its token was at least every token seen).
    pub accepted: bool,
    /// A newer grant of the resource had started: the writer is stale.
    pub stale: bool,
}

/// Lease safety, checked online in virtual (simulated real) time.
///
/// * **Overlap.** A grant's validity is what its holder believes: from the
///   moment it learns of the grant until its local end of validity, mapped
///   back to virtual time through its clock (extended by renewals, cut
///   short by a release or a crash). When a grant starts, fewer than
///   `permits` other grants of the resource may still be valid. (The number
///   of valid grants peaks at some grant's start, so checking at starts is
///   checking always.)
/// * **Tokens.** A mutex's tokens strictly increase in grant order. For any
///   resource, a grant's token exceeds every token granted before it was
///   requested, and differs from every token still valid.
/// * **Fencing.** Each mutex guards a model external system that accepts a
///   write only if its token is at least the highest it has seen. A holder
///   writes once as it acquires (so the system learns the new token at
///   once) and then repeatedly, checking its lease before each write, which
///   lands a little later (or, if the process is paused meanwhile, after it
///   resumes). A write accepted from a *stale* holder (a newer grant of the
///   resource has started) is a violation; so is a refused write from a
///   holder that is not stale (tokens out of order). A write from a holder
///   whose lease ended but that nobody superseded is accepted: the resource
///   was free, so fencing neither can nor needs to refuse it. Callers count
///   it as a late write.
///
/// It keeps only grants that may still be valid, so it stays small however
/// long the run.
#[derive(Debug, Default)]
pub struct LeaseCheck {
    resources: Vec<ResourceLog>,
    next_id: u64,
}

impl LeaseCheck {
    /// A checker for resources with these permit counts.
    pub fn new(permits: impl IntoIterator<Item = u32>) -> LeaseCheck {
        LeaseCheck {
            resources: permits
                .into_iter()
                .map(|permits| ResourceLog {
                    permits,
                    ..ResourceLog::default()
                })
                .collect(),
            next_id: 0,
        }
    }

    /// Highest token of any grant of `resource` started so far: a request
    /// made now must get a higher one.
    pub fn token_floor(&self, resource: usize) -> u64 {
        self.resources.get(resource).map_or(0, |r| r.max_token)
    }

    /// Records a grant of `resource` to `node` with `token`, valid over
    /// `[start, end)`, requested when the floor was `token_floor`; returns
    /// its id and the violations it reveals.
    pub fn grant(
        &mut self,
        resource: usize,
        node: NodeId,
        token: u64,
        token_floor: u64,
        (start, end): (u64, u64),
    ) -> (GrantId, Vec<String>) {
        let id = GrantId(self.next_id);
        self.next_id += 1;
        let mut found = Vec::new();
        let Some(r) = self.resources.get_mut(resource) else {
            return (id, vec![format!("grant of unknown resource {resource}")]);
        };
        r.live.retain(|g| g.end > start);
        if r.live.len() >= r.permits as usize {
            let holders: Vec<String> = r
                .live
                .iter()
                .map(|g| format!("{:?} token {} until {}", g.node, g.token, g.end))
                .collect();
            found.push(format!(
                "overlap: resource {resource} ({} permits) granted to {node:?} with token {token} while held by {}",
                r.permits,
                holders.join(", ")
            ));
        }
        if r.permits == 1 && r.latest.is_some_and(|t| t >= token) {
            found.push(format!(
                "tokens: mutex {resource} granted token {token} after token {}",
                r.latest.unwrap_or_default()
            ));
        }
        if token <= token_floor {
            found.push(format!(
                "tokens: resource {resource} granted token {token}, not above {token_floor} granted before the request"
            ));
        }
        if r.live.iter().any(|g| g.token == token) {
            found.push(format!(
                "tokens: resource {resource} granted token {token} twice"
            ));
        }
        r.live.push(LiveGrant {
            id,
            node,
            token,
            start,
            end,
        });
        r.latest = Some(token);
        r.max_token = r.max_token.max(token);
        (id, found)
    }

    /// Grants of `resource` valid at the start of the latest grant, that
    /// one included.
    pub fn holders(&self, resource: usize) -> u64 {
        self.resources
            .get(resource)
            .map_or(0, |r| r.live.len() as u64)
    }

    /// A renewal: the grant is valid until `end` now, if that is later.
    pub fn extend(&mut self, resource: usize, id: GrantId, end: u64) {
        if let Some(g) = self.live_mut(resource, id) {
            g.end = g.end.max(end);
        }
    }

    /// The holder stopped believing in the grant at `at` (release, crash).
    pub fn end(&mut self, resource: usize, id: GrantId, at: u64) {
        if let Some(g) = self.live_mut(resource, id) {
            g.end = g.end.min(at).max(g.start);
        }
    }

    fn live_mut(&mut self, resource: usize, id: GrantId) -> Option<&mut LiveGrant> {
        self.resources
            .get_mut(resource)?
            .live
            .iter_mut()
            .find(|g| g.id == id)
    }

    /// A write with `token` reaches the external system of `resource`;
    /// returns what the system did and the violation it reveals, if any.
    pub fn write(&mut self, resource: usize, token: u64) -> (WriteOutcome, Option<String>) {
        let Some(r) = self.resources.get_mut(resource) else {
            let outcome = WriteOutcome {
                accepted: false,
                stale: false,
            };
            return (
                outcome,
                Some(format!("write to unknown resource {resource}")),
            );
        };
        let stale = r.latest != Some(token);
        let accepted = token >= r.highest_seen;
        if accepted {
            r.highest_seen = token;
        }
        let violation = match (accepted, stale) {
            (true, true) => Some(format!(
                "fencing: resource {resource} accepted a write with token {token} from a stale holder (latest grant {})",
                r.latest.unwrap_or_default()
            )),
            (false, false) => Some(format!(
                "fencing: resource {resource} refused the current holder's token {token} (seen {})",
                r.highest_seen
            )),
            _ => None,
        };
        (WriteOutcome { accepted, stale }, violation)
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
            // Ephemeral values are not replicated state: each node sees
            // those that reached it and have not expired.
            let value = (spec.kind != ChannelKind::Ephemeral)
                .then(|| replica.get(&path).ok().flatten())
                .flatten();
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
    fn lease_check_finds_overlaps_and_stale_writes() {
        let mut c = LeaseCheck::new([1, 2]);
        let (a, v) = c.grant(0, NodeId(0), 10, 0, (0, 100));
        assert!(v.is_empty());
        assert_eq!(
            c.write(0, 10).0,
            WriteOutcome {
                accepted: true,
                stale: false
            }
        );
        // An overlapping grant.
        let (_, v) = c.grant(0, NodeId(1), 20, 10, (50, 150));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("overlap"));
        // The new holder writes; the older one is stale now: refused.
        assert!(c.write(0, 20).1.is_none());
        let (out, v) = c.write(0, 10);
        assert_eq!(
            out,
            WriteOutcome {
                accepted: false,
                stale: true
            }
        );
        assert!(v.is_none());
        // Ending early, renewing, and order of tokens.
        c.extend(0, a, 500);
        c.end(0, a, 60);
        let (_, v) = c.grant(0, NodeId(2), 15, 0, (200, 300));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("tokens"), "{v:?}");
        // A semaphore allows two holders, not three.
        assert!(c.grant(1, NodeId(0), 5, 0, (0, 10)).1.is_empty());
        assert!(c.grant(1, NodeId(1), 6, 0, (1, 10)).1.is_empty());
        assert_eq!(c.holders(1), 2);
        assert_eq!(c.grant(1, NodeId(2), 7, 0, (2, 10)).1.len(), 1);
        assert_eq!(c.holders(1), 3, "the overlap is counted");
        assert!(c.grant(1, NodeId(2), 8, 7, (10, 20)).1.is_empty());
        assert_eq!(c.token_floor(1), 8);
    }

    #[test]
    fn divergence_and_lost_writes_are_found() {
        let mut a = Replica::new("s", actor(1));
        let b = Replica::new("s", actor(2));
        let w = a.put(Millis(1), "observation/x", &1).unwrap();
        let mut log = WriteLog::default();
        log.record(NodeId(0), 0, &actor(1), w.seq, Effect::Other);
        log.ack(NodeId(0), 0, &actor(1), w.seq);
        let live = [(NodeId(0), &a), (NodeId(1), &b)];
        assert_eq!(divergent(live.iter().copied()), vec![NodeId(1)]);
        let lost = log.lost(live.iter().copied());
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].missing_on, NodeId(1));
        assert_eq!((log.total(), log.acked()), (1, 1));
        // a write inside an epoch's cut has no change of its own: still held
        a.cut_epoch(Millis(2)).unwrap();
        assert!(log.lost([(NodeId(0), &a)].into_iter()).is_empty());
    }

    #[test]
    fn a_write_shown_twice_or_not_at_all_is_found() {
        let mut a = Replica::new("s", actor(1));
        let mut log = WriteLog::default();
        let one = a.increment(Millis(1), "execution/n", 2).unwrap().unwrap();
        log.record(
            NodeId(0),
            0,
            &actor(1),
            one.seq,
            Effect::Increment("execution/n".into(), 2),
        );
        let (id, two) = a.append(Millis(2), "intent/log", &"x").unwrap();
        log.record(
            NodeId(0),
            0,
            &actor(1),
            two.seq,
            Effect::Append("intent/log".into(), id),
        );
        assert!(log.applied_once(&a).is_empty());
        // a write the log says was made but counted once more
        log.record(
            NodeId(0),
            0,
            &actor(1),
            one.seq,
            Effect::Increment("execution/n".into(), 2),
        );
        assert_eq!(log.applied_once(&a).len(), 1, "{:?}", log.applied_once(&a));
        // an entry the replica holds but no held write appended
        let mut other = WriteLog::default();
        other.record(
            NodeId(0),
            0,
            &actor(1),
            one.seq,
            Effect::Increment("execution/n".into(), 2),
        );
        other.record(
            NodeId(0),
            0,
            &actor(1),
            two.seq,
            Effect::Append("intent/log".into(), "y".into()),
        );
        assert_eq!(other.applied_once(&a).len(), 1);
    }
}
