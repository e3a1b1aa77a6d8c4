//! The discrete-event loop: a queue of events ordered by (virtual time,
//! sequence number), dispatched one at a time to the nodes, the network and
//! the fault plan, with the per-step checks after every engine input, and
//! the final checks and report at the end. What each event does is in the
//! submodules: the nodes and their engines (`sim/nodes.rs`), frames on the
//! network (`sim/network.rs`), the workload's writes (`sim/writes.rs`), the
//! fault plan (`sim/faults.rs`); the lease machines of each node are driven
//! from the same loop (`sim/lease.rs`).
//!
//! It owns virtual time and the order of everything. It must never read a
//! wall clock, use threads, or let hash-map iteration order reach the
//! output: the same plan gives the same trace, byte for byte.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

use concord_state::ReplicaConfig;
use concord_sync::SyncConfig;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::check::{self, Kind, Violations, WriteLog};
use crate::lease::LeaseNode;
use crate::network::{Mesh, Network};
use crate::node::{Inbound, LocalClock, Node, NodeId, NodeSetup, SPACE};
use crate::profile::Stopwatch;
use crate::progress::Progress;
use crate::report::{Counters, Report};
use crate::scenario::{Plan, stream_rng};
use crate::trace::{Trace, TraceEvent};
use crate::workload;

mod faults;
mod lease;
mod network;
mod nodes;
mod writes;

use writes::commit;

/// RNG streams (the plan uses stream 0).
const NET_STREAM: u64 = 1;
const WORK_STREAM: u64 = 2;
const NODE_STREAM: u64 = 3;
const LEASE_STREAM: u64 = 4;

/// Safety valve: a run stops (and fails) after this many events.
const MAX_EVENTS: u64 = 200_000_000;

/// Failure descriptions kept in the report (the counts are always complete).
const MAX_FAILURES: usize = 50;

enum Event {
    Arrive {
        to: NodeId,
        sent_at: u64,
        msg: Inbound,
    },
    Timer {
        node: NodeId,
        at: u64,
    },
    Write(NodeId),
    Heartbeat(NodeId),
    Flush(NodeId),
    Fault(usize),
    Redial(NodeId, NodeId),
    Lease(lease::Scheduled),
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One run in progress.
pub struct Sim {
    plan: Plan,
    now: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    nodes: Vec<Node>,
    net: Network,
    setup: NodeSetup,
    net_rng: ChaCha8Rng,
    work_rng: ChaCha8Rng,
    node_rng: ChaCha8Rng,
    trace: Trace,
    counters: Counters,
    violations: Violations,
    failures: Vec<String>,
    writes: WriteLog,
    progress: Progress,
    /// Per gossip message: the relay hop by which it reached the node it
    /// reached last (so far).
    spread: BTreeMap<u128, u32>,
    last_disturbance: u64,
    quiet_start: u64,
    end_at: Option<u64>,
    /// Every node's lease machines (empty when the plan has no leases).
    leases: Vec<LeaseNode>,
    lease_resources: Vec<(concord_lease::Resource, concord_lease::Permits)>,
    lease_check: check::LeaseCheck,
    handoff_check: check::HandoffCheck,
    lease_rng: ChaCha8Rng,
    /// Disconnected nodes, with the epoch switches counted when they left.
    away: BTreeMap<NodeId, u64>,
    /// Machine time, when the plan asks for a profile.
    stopwatch: Stopwatch,
}

impl Sim {
    /// Sets up the nodes, mesh and clocks for `plan`.
    pub fn new(plan: Plan) -> Sim {
        let n = plan.peers;
        let mut net_rng = stream_rng(plan.seed, NET_STREAM);
        let mesh = Mesh::build(n, plan.mesh_degree, &mut net_rng);
        let net = Network::new(plan.links, net_rng.next_u64(), mesh, n);
        let mut node_rng = stream_rng(plan.seed, NODE_STREAM);
        let nodes = (0..n as u32)
            .map(|i| {
                let clock = draw_clock(&mut node_rng, &plan);
                Node::new(NodeId(i), clock, plan.seen_capacity)
            })
            .collect();
        let setup = NodeSetup {
            sync: SyncConfig {
                heartbeat_ms: plan.heartbeat_ms,
                jitter_ms: plan.heartbeat_jitter_ms,
                ..SyncConfig::default()
            },
            subscriber_capacity: plan.subscriber_capacity,
            replica: ReplicaConfig {
                epochs: plan.epochs.clone(),
                ..ReplicaConfig::default()
            },
        };
        let quiet_start = plan.workload.end_ms.max(plan.last_fault_ms());
        let plan_seed = plan.seed;
        let plan_profile = plan.profile;
        Sim {
            trace: Trace::new(plan.record),
            work_rng: stream_rng(plan.seed, WORK_STREAM),
            progress: Progress::new(n),
            plan,
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            nodes,
            net,
            setup,
            net_rng,
            node_rng,
            counters: Counters::default(),
            violations: Violations::default(),
            failures: Vec::new(),
            writes: WriteLog::default(),
            spread: BTreeMap::new(),
            last_disturbance: 0,
            quiet_start,
            end_at: None,
            leases: Vec::new(),
            lease_resources: Vec::new(),
            lease_check: check::LeaseCheck::default(),
            handoff_check: check::HandoffCheck::default(),
            lease_rng: stream_rng(plan_seed, LEASE_STREAM),
            away: BTreeMap::new(),
            stopwatch: Stopwatch::new(plan_profile),
        }
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> Report {
        self.boot();
        let hard_end = self.quiet_start + self.plan.quiet_max_ms;
        while let Some(Reverse(next)) = self.queue.pop() {
            let deadline = self.end_at.unwrap_or(hard_end);
            if next.at > deadline {
                self.now = deadline;
                break;
            }
            self.now = next.at;
            self.counters.events += 1;
            if self.counters.events > MAX_EVENTS {
                self.violations.count(Kind::Errors);
                self.fail(format!("event budget of {MAX_EVENTS} exhausted"));
                break;
            }
            self.dispatch(next.event);
            if self.end_at.is_none() && self.now >= self.quiet_start && self.progress.all_complete()
            {
                self.end_at = Some(self.now + self.plan.settle_ms);
            }
        }
        self.finish()
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn fail(&mut self, what: String) {
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(format!("t={}ms {what}", self.now));
        }
    }

    fn violation(&mut self, kind: Kind, node: NodeId, what: String) {
        self.violations.count(kind);
        self.trace.record(
            self.now,
            TraceEvent::Violation {
                node: node.0,
                what: what.clone(),
            },
        );
        self.fail(format!("{node:?}: {what}"));
    }

    fn boot(&mut self) {
        for i in 0..self.plan.faults.len() {
            self.schedule(self.plan.faults[i].at_ms, Event::Fault(i));
        }
        self.lease_boot();
        for i in 0..self.nodes.len() {
            self.start(NodeId(i as u32));
        }
        if let Some(node) = self.nodes.first_mut()
            && let Some(replica) = node.hub.as_mut().and_then(|h| h.replica_mut(SPACE))
        {
            match workload::declare(replica, node.clock.local(0)) {
                Ok(_) => self.feed(NodeId(0), commit()),
                Err(e) => self.violation(
                    Kind::Errors,
                    NodeId(0),
                    format!("declaring the reject channel: {e}"),
                ),
            }
        }
        let w = self.plan.workload.clone();
        for i in 0..self.nodes.len() as u32 {
            if (i as usize) < w.writers || w.hot.is_some_and(|(h, _)| h == i) {
                let first = w.start_ms + self.write_gap(NodeId(i));
                self.schedule(first, Event::Write(NodeId(i)));
            }
            if let Some(every) = self.plan.flush_interval_ms {
                let first = self.work_rng.random_range(0..every.max(1));
                self.schedule(first, Event::Flush(NodeId(i)));
            }
            if let Some(every) = w.heartbeat_ms {
                let first = w.start_ms + self.work_rng.random_range(0..every.max(1));
                self.schedule(first, Event::Heartbeat(NodeId(i)));
            }
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Arrive { to, sent_at, msg } => self.arrive(to, sent_at, msg),
            Event::Timer { node, at } => self.timer(node, at),
            Event::Write(node) => self.write(node),
            Event::Heartbeat(node) => self.heartbeat(node),
            Event::Flush(node) => self.flush(node),
            Event::Fault(i) => {
                let fault = self.plan.faults[i].fault.clone();
                self.fault(fault);
            }
            Event::Redial(a, b) => self.connect(a, b),
            Event::Lease(event) => self.lease_dispatch(event),
        }
    }

    fn finish(mut self) -> Report {
        for n in &self.nodes {
            if let Some(r) = n.replica() {
                self.writes
                    .ack(n.id, n.incarnation, r.actor(), r.durable_seq());
            }
        }
        let live: Vec<(NodeId, &concord_state::Replica)> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica().map(|r| (n.id, r)))
            .collect();
        let divergent = check::divergent(live.iter().copied());
        let lost = self.writes.lost(live.iter().copied());
        let mut notes = Vec::new();
        for (node, replica) in &live {
            for what in self.writes.applied_once(replica) {
                self.violations.not_once += 1;
                notes.push(format!("{node:?}: not each write once: {what}"));
            }
        }
        for node in &divergent {
            notes.push(format!("{node:?}: state differs from the first live node"));
        }
        for l in &lost {
            notes.push(format!(
                "{:?}: acknowledged write {}#{} of {:?} missing",
                l.missing_on, l.actor, l.seq, l.writer
            ));
        }
        self.violations.convergence = divergent.len() as u64;
        self.violations.lost_writes = lost.len() as u64;
        let complete = self.progress.all_complete();
        for note in notes {
            self.fail(note);
        }
        let converged = complete && divergent.is_empty();
        let convergence_ms = self
            .progress
            .complete_since()
            .filter(|_| converged)
            .map(|t| t.saturating_sub(self.last_disturbance));
        self.counters.trace_lines = self.trace.lines();
        self.counters.writes = self.writes.total();
        self.counters.acked_writes = self.writes.acked();
        self.counters.mesh_diameter = self.net.mesh.diameter();
        let (trace_hash, records) = self.trace.finish();
        Report {
            scenario: self.plan.scenario.name().to_owned(),
            peers: self.plan.peers,
            seed: self.plan.seed,
            converged,
            convergence_ms,
            rounds: self.spread.values().copied().max().unwrap_or(0),
            messages: self.counters.messages,
            bytes: self.counters.bytes,
            trace_hash,
            violations: self.violations,
            virtual_ms: self.now,
            counters: self.counters,
            failures: self.failures,
            curve: self.progress.into_curve(),
            records,
            plan: self.plan,
            profile: self.stopwatch.finish(),
        }
    }
}

/// A node's clock drawn from the plan's spread.
fn draw_clock(rng: &mut ChaCha8Rng, plan: &Plan) -> LocalClock {
    let skew = i64::try_from(plan.clocks.max_skew_ms).unwrap_or(i64::MAX / 2);
    let drift = i64::from(plan.clocks.max_drift_ppm.min(900_000));
    LocalClock {
        offset_ms: if skew == 0 {
            0
        } else {
            rng.random_range(-skew..=skew)
        },
        drift_ppm: if drift == 0 {
            0
        } else if plan.clocks.extreme {
            if rng.random_bool(0.5) { drift } else { -drift }
        } else {
            rng.random_range(-drift..=drift)
        },
    }
}
