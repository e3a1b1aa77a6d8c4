//! The discrete-event loop: a queue of events ordered by (virtual time,
//! sequence number), dispatched one at a time to the nodes, the network and
//! the fault plan, with the per-step checks after every engine input. The
//! lease machines of each node are driven from the same loop (`sim/lease.rs`).
//!
//! It owns virtual time and the order of everything. It must never read a
//! wall clock, use threads, or let hash-map iteration order reach the
//! output: the same plan gives the same trace, byte for byte.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::rc::Rc;

use concord_state::{Delivery, MAX_PENDING_CHANGES, ReplicaConfig};
use concord_sync::hub::MAX_QUEUED_TRANSMITS;
use concord_sync::wire::FrameKind;
use concord_sync::{Destination, HubEvent, HubInput, HubTransmit, SyncConfig, SyncEvent};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::check::{self, Kind, Violations, WriteLog};
use crate::lease::LeaseNode;
use crate::network::{DropReason, Mesh, Network, message_id};
use crate::node::{Inbound, LocalClock, Node, NodeId, NodeSetup, SPACE, Status};
use crate::profile::Stopwatch;
use crate::progress::Progress;
use crate::report::{Counters, Report};
use crate::scenario::{Fault, Plan, stream_rng};
use crate::trace::{Trace, TraceEvent};
use crate::workload::{self, Op};

mod lease;

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

    // ----- nodes -------------------------------------------------------

    fn node(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.index()]
    }

    fn start(&mut self, id: NodeId) {
        let seed = self.node_rng.next_u64();
        let (node, setup) = (&mut self.nodes[id.index()], &self.setup);
        if let Err(e) = self.stopwatch.machine(|| node.start(setup, seed)) {
            self.violation(Kind::Errors, id, format!("restart failed: {e}"));
            return;
        }
        let node = &self.nodes[id.index()];
        let incarnation = node.incarnation;
        self.trace.record(
            self.now,
            TraceEvent::Start {
                node: id.0,
                incarnation,
            },
        );
        if let Some(replica) = node.replica() {
            self.writes
                .ack(id, incarnation, replica.actor(), replica.durable_seq());
            self.progress
                .update(self.now, id.index(), replica.vector_clock());
        }
        let neighbours = self.net.mesh.neighbours(id).to_vec();
        for peer in neighbours {
            self.connect(id, peer);
        }
        self.after_input(id);
        self.lease_start(id);
    }

    /// Brings the connection between `a` and `b` up on both sides, if both
    /// run and neither is disconnected.
    fn connect(&mut self, a: NodeId, b: NodeId) {
        let down =
            |s: &Self, x: NodeId| s.nodes[x.index()].status == Status::Down || s.net.is_offline(x);
        if down(self, a) || down(self, b) {
            return;
        }
        self.inbound(a, Inbound::PeerUp(b));
        self.inbound(b, Inbound::PeerUp(a));
    }

    fn crash(&mut self, id: NodeId, clean: bool) {
        if self.nodes[id.index()].status == Status::Down {
            return;
        }
        self.lease_stop(id, clean);
        let node = &mut self.nodes[id.index()];
        let (incarnation, actor) = (node.incarnation, node.actor());
        let rng = &mut self.node_rng;
        match node.stop(clean, |n| rng.random_range(0..=n)) {
            Ok(stopped) => {
                self.writes
                    .ack(id, incarnation, &actor, stopped.durable_seq);
                self.trace.record(
                    self.now,
                    TraceEvent::Crash {
                        node: id.0,
                        clean,
                        lost_bytes: stopped.lost_bytes,
                    },
                );
            }
            Err(e) => self.violation(Kind::Errors, id, format!("stop failed: {e}")),
        }
        let live = self
            .nodes
            .iter()
            .filter_map(Node::replica)
            .map(|r| r.vector_clock());
        self.progress.down(self.now, id.index(), live);
        for peer in self.net.mesh.neighbours(id).to_vec() {
            self.inbound(peer, Inbound::PeerDown(id));
        }
    }

    /// Something reaches a node: processed if it runs, queued if paused.
    fn inbound(&mut self, id: NodeId, msg: Inbound) {
        let node = &mut self.nodes[id.index()];
        match node.status {
            Status::Down => {}
            Status::Paused => node.inbox.push_back(msg),
            Status::Up => self.process(id, msg),
        }
    }

    fn process(&mut self, id: NodeId, msg: Inbound) {
        match msg {
            Inbound::Direct { from, bytes } => self.feed(
                id,
                HubInput::Frame {
                    from,
                    bytes: bytes.to_vec(),
                },
            ),
            Inbound::Gossip {
                from,
                bytes,
                id: msg_id,
                hop,
            } => {
                if !self.nodes[id.index()].seen.insert(msg_id) {
                    self.counters.suppressed += 1;
                    self.trace.record(
                        self.now,
                        TraceEvent::Suppress {
                            node: id.0,
                            from: from.0,
                        },
                    );
                    return;
                }
                self.spread.insert(msg_id, hop);
                self.gossip(id, Some(from), &bytes, msg_id, hop + 1);
                self.feed(
                    id,
                    HubInput::Frame {
                        from,
                        bytes: bytes.to_vec(),
                    },
                );
            }
            Inbound::Lease { from, bytes, .. } => self.lease_message(id, from, &bytes),
            Inbound::LeaseLocal(work) => self.lease_local(id, work),
            Inbound::PeerUp(peer) | Inbound::PeerDown(peer) => {
                let up = matches!(msg, Inbound::PeerUp(_));
                self.trace.record(
                    self.now,
                    TraceEvent::Connection {
                        node: id.0,
                        peer: peer.0,
                        up,
                    },
                );
                self.feed(
                    id,
                    if up {
                        HubInput::PeerUp(peer)
                    } else {
                        HubInput::PeerDown(peer)
                    },
                );
            }
        }
    }

    fn feed(&mut self, id: NodeId, input: HubInput<NodeId>) {
        let now = self.now;
        let node = &mut self.nodes[id.index()];
        self.stopwatch.machine(|| node.handle(now, input));
        self.after_input(id);
    }

    /// After every engine input: write what the replica hands out to
    /// persist, check bounds, drain transmits, engine events and subscriber
    /// events, update progress, re-arm the timer.
    fn after_input(&mut self, id: NodeId) {
        if let Err(e) = self.nodes[id.index()].persist() {
            self.violation(Kind::Errors, id, format!("writing to disk failed: {e}"));
        }
        let now = self.now;
        let node = &mut self.nodes[id.index()];
        let Some(hub) = node.hub.as_mut() else {
            return;
        };
        let queued = hub.queued_transmits();
        let watch = &mut self.stopwatch;
        let (transmits, events, timer): (Vec<HubTransmit<NodeId>>, Vec<HubEvent<NodeId>>, _) =
            watch.machine(|| {
                (
                    std::iter::from_fn(|| hub.poll_transmit()).collect(),
                    std::iter::from_fn(|| hub.poll_event()).collect(),
                    hub.poll_timeout(),
                )
            });
        let timer = timer.map(|t| node.clock.virtual_at(t, now));
        let Some(replica) = hub.replica_mut(SPACE) else {
            return;
        };
        let mut causal_breaks = Vec::new();
        let mut lagged = 0;
        if let Some(sub) = node.sub {
            while let Ok(Some(delivery)) = watch.machine(|| replica.poll_event(sub)) {
                match delivery {
                    // Ephemeral values are in no change: no causal order.
                    Delivery::Event(e) if e.ephemeral => {}
                    Delivery::Event(e) => {
                        if !node.causal.observe(replica, &e.position) {
                            causal_breaks.push(format!(
                                "{} seq {} of {}",
                                e.path, e.position.seq, e.position.actor
                            ));
                        }
                    }
                    Delivery::Lagged { missed } => lagged += missed,
                }
            }
        }
        let clock = replica.vector_clock();
        if clock.total() != node.clock_total {
            node.clock_total = clock.total();
            self.progress.update(now, id.index(), clock);
        }
        if timer.is_some() && timer != node.timer_at {
            node.timer_at = timer;
            if let Some(at) = timer {
                self.schedule(at, Event::Timer { node: id, at });
            }
        }
        if queued > MAX_QUEUED_TRANSMITS {
            self.violation(
                Kind::Bounds,
                id,
                format!("{queued} queued transmits > {MAX_QUEUED_TRANSMITS}"),
            );
        }
        if lagged > 0 {
            self.violation(
                Kind::Bounds,
                id,
                format!("subscriber lagged, {lagged} events missed"),
            );
        }
        for what in causal_breaks {
            self.violation(
                Kind::Causality,
                id,
                format!("event out of causal order: {what}"),
            );
        }
        for t in transmits {
            self.route(id, t);
        }
        for e in events {
            self.engine_event(id, e.event);
        }
    }

    fn engine_event(&mut self, id: NodeId, event: SyncEvent<NodeId>) {
        let (peer, what) = match event {
            SyncEvent::PeerBehind(p) => (p, "behind"),
            SyncEvent::PeerAhead(p) => (p, "ahead"),
            SyncEvent::InSync(p) => (p, "in-sync"),
            SyncEvent::Applied { from, outcome } => {
                if outcome.pending > MAX_PENDING_CHANGES {
                    self.violation(
                        Kind::Bounds,
                        id,
                        format!(
                            "{} pending changes > {MAX_PENDING_CHANGES}",
                            outcome.pending
                        ),
                    );
                }
                (
                    from,
                    if outcome.dropped > 0 {
                        "pending-overflow"
                    } else {
                        "applied"
                    },
                )
            }
            SyncEvent::ProtocolError { peer, error } => {
                self.violation(
                    Kind::Protocol,
                    id,
                    format!("protocol error from {peer:?}: {error}"),
                );
                (peer, "error")
            }
            SyncEvent::Disconnect(p) => {
                // Close the connection; the peer redials after a heartbeat.
                self.inbound(p, Inbound::PeerDown(id));
                self.schedule(self.now + self.plan.heartbeat_ms, Event::Redial(id, p));
                (p, "disconnect")
            }
            SyncEvent::EpochSwitched { .. } => {
                self.counters.epoch_switches += 1;
                (id, "epoch")
            }
        };
        self.trace.record(
            self.now,
            TraceEvent::Sync {
                node: id.0,
                peer: peer.0,
                what,
            },
        );
    }

    fn timer(&mut self, id: NodeId, at: u64) {
        let node = &self.nodes[id.index()];
        if node.status != Status::Up || node.timer_at != Some(at) {
            return;
        }
        self.node(id).timer_at = None;
        self.trace.record(self.now, TraceEvent::Tick { node: id.0 });
        self.feed(id, HubInput::Tick);
    }

    // ----- network -----------------------------------------------------

    fn route(&mut self, from: NodeId, t: HubTransmit<NodeId>) {
        let bytes: Rc<[u8]> = t.bytes.into();
        match t.to {
            Destination::Peer(to) => self.send(from, to, Inbound::Direct { from, bytes }),
            Destination::Broadcast => {
                let id = message_id(&bytes);
                self.node(from).seen.insert(id);
                self.spread.insert(id, 0);
                self.gossip(from, None, &bytes, id, 1);
            }
        }
    }

    /// Sends a gossip message to every mesh neighbour except `except`.
    fn gossip(
        &mut self,
        from: NodeId,
        except: Option<NodeId>,
        bytes: &Rc<[u8]>,
        id: u128,
        hop: u32,
    ) {
        for to in self.net.mesh.neighbours(from).to_vec() {
            if Some(to) != except {
                let msg = Inbound::Gossip {
                    from,
                    bytes: Rc::clone(bytes),
                    id,
                    hop,
                };
                self.send(from, to, msg);
            }
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: Inbound) {
        let (bytes, hop, frame) = match &msg {
            Inbound::Direct { bytes, .. } => (bytes, None, frame_name(bytes)),
            Inbound::Gossip { bytes, hop, .. } => (bytes, Some(*hop), frame_name(bytes)),
            Inbound::Lease { bytes, frame, .. } => (bytes, None, *frame),
            Inbound::LeaseLocal(_) | Inbound::PeerUp(_) | Inbound::PeerDown(_) => return,
        };
        let len = bytes.len();
        self.counters.messages += 1;
        self.counters.bytes += len as u64;
        self.trace.record(
            self.now,
            TraceEvent::Send {
                from: from.0,
                to: to.0,
                bytes: len,
                frame,
                hop,
            },
        );
        match self.net.transmit(&mut self.net_rng, from, to) {
            Err(reason) => self.dropped(from, to, reason),
            Ok(delays) => {
                if delays.len() > 1 {
                    self.counters.duplicated += 1;
                    self.trace.record(
                        self.now,
                        TraceEvent::Duplicate {
                            from: from.0,
                            to: to.0,
                        },
                    );
                }
                let sent_at = self.now;
                for delay in delays {
                    self.schedule(
                        sent_at + delay,
                        Event::Arrive {
                            to,
                            sent_at,
                            msg: msg.clone(),
                        },
                    );
                }
            }
        }
    }

    fn dropped(&mut self, from: NodeId, to: NodeId, reason: DropReason) {
        self.counters.count_drop(reason);
        self.trace.record(
            self.now,
            TraceEvent::Drop {
                from: from.0,
                to: to.0,
                reason,
            },
        );
    }

    fn arrive(&mut self, to: NodeId, sent_at: u64, msg: Inbound) {
        let (from, bytes, hop, frame) = match &msg {
            Inbound::Direct { from, bytes } => (*from, bytes, None, frame_name(bytes)),
            Inbound::Gossip {
                from, bytes, hop, ..
            } => (*from, bytes, Some(*hop), frame_name(bytes)),
            Inbound::Lease { from, bytes, frame } => (*from, bytes, None, *frame),
            Inbound::LeaseLocal(_) | Inbound::PeerUp(_) | Inbound::PeerDown(_) => {
                return self.inbound(to, msg);
            }
        };
        let len = bytes.len();
        let node = &self.nodes[to.index()];
        // A partition or disconnection also cuts messages in flight.
        let blocked = self.net.blocked(from, to).or(match node.status {
            Status::Down => Some(DropReason::Down),
            Status::Paused if node.inbox.len() >= self.plan.inbox_capacity => {
                Some(DropReason::InboxFull)
            }
            _ => None,
        });
        if let Some(reason) = blocked {
            return self.dropped(from, to, reason);
        }
        self.counters.delivered += 1;
        self.trace.record(
            self.now,
            TraceEvent::Deliver {
                from: from.0,
                to: to.0,
                sent_at,
                bytes: len,
                frame,
                hop,
            },
        );
        self.inbound(to, msg);
    }

    // ----- workload ----------------------------------------------------

    fn write_gap(&mut self, id: NodeId) -> u64 {
        let w = &self.plan.workload;
        let mean = match w.hot {
            Some((h, interval)) if h == id.0 => interval,
            _ => w.interval_ms,
        }
        .max(1);
        self.work_rng
            .random_range(mean / 2..=mean + mean / 2)
            .max(1)
    }

    fn write(&mut self, id: NodeId) {
        if self.now >= self.plan.workload.end_ms {
            return;
        }
        let gap = self.write_gap(id);
        self.schedule(self.now + gap, Event::Write(id));
        if self.nodes[id.index()].status == Status::Up {
            let n = self.nodes[id.index()].writes;
            let op = Op::random(&mut self.work_rng, id.0, n);
            self.apply(id, op);
        }
    }

    /// A node's periodic heartbeat (ephemeral value), if the plan has them.
    fn heartbeat(&mut self, id: NodeId) {
        let Some(every) = self.plan.workload.heartbeat_ms else {
            return;
        };
        if self.now >= self.plan.workload.end_ms {
            return;
        }
        self.schedule(self.now + every.max(1), Event::Heartbeat(id));
        if self.nodes[id.index()].status == Status::Up {
            let n = self.nodes[id.index()].writes;
            self.apply(id, Op::heartbeat(id.0, n, every));
        }
    }

    /// Applies a write of a running node, records it and pushes it.
    fn apply(&mut self, id: NodeId, op: Op) {
        let now = self.now;
        let node = &mut self.nodes[id.index()];
        let Some(replica) = node.hub.as_mut().and_then(|h| h.replica_mut(SPACE)) else {
            return;
        };
        node.writes += 1;
        let local = node.clock.local(now);
        let path = op.path().to_owned();
        match self.stopwatch.machine(|| op.apply(replica, local)) {
            Ok(receipt) => {
                let settled = node.settle_write(self.plan.sync_writes);
                let seq = receipt.as_ref().map_or(0, |(r, _)| r.seq);
                let durable = seq > 0 && settled.as_ref().is_ok_and(|d| *d >= seq);
                if let Some((r, effect)) = receipt {
                    let actor = node.actor();
                    self.writes
                        .record(id, node.incarnation, &actor, r.seq, effect);
                    if let Ok(durable_seq) = settled {
                        self.writes.ack(id, node.incarnation, &actor, durable_seq);
                    }
                    self.last_disturbance = now;
                }
                if let Err(e) = settled {
                    self.violation(Kind::Errors, id, format!("write not persisted: {e}"));
                }
                self.trace.record(
                    now,
                    TraceEvent::Write {
                        node: id.0,
                        path,
                        seq,
                        durable,
                    },
                );
                self.feed(id, commit());
            }
            Err(e) => {
                let error = e.to_string();
                self.trace.record(
                    now,
                    TraceEvent::WriteError {
                        node: id.0,
                        path,
                        error,
                    },
                );
            }
        }
    }

    fn flush(&mut self, id: NodeId) {
        if let Some(every) = self.plan.flush_interval_ms {
            self.schedule(self.now + every.max(1), Event::Flush(id));
        }
        let node = &mut self.nodes[id.index()];
        if node.status != Status::Up {
            return;
        }
        // A write may have been synced already (`sync_writes`), so compare
        // with the last acknowledged mark, not with the durable sequence
        // before.
        match node.sync() {
            Ok(durable_seq) => {
                let actor = node.actor();
                if self.writes.ack(id, node.incarnation, &actor, durable_seq) {
                    self.trace.record(
                        self.now,
                        TraceEvent::Flush {
                            node: id.0,
                            durable_seq,
                        },
                    );
                }
            }
            Err(e) => self.violation(Kind::Errors, id, format!("flush failed: {e}")),
        }
    }

    // ----- faults ------------------------------------------------------

    fn fault(&mut self, fault: Fault) {
        self.last_disturbance = self.now;
        self.trace.record(
            self.now,
            TraceEvent::Fault {
                fault: fault.clone(),
            },
        );
        match fault {
            Fault::Partition(groups) => self.net.partition(&groups),
            Fault::Heal => self.net.heal(),
            Fault::Crash { node, clean } => self.crash(NodeId(node), clean),
            Fault::Restart(node) => {
                if self.nodes[node as usize].status == Status::Down {
                    self.start(NodeId(node));
                }
            }
            Fault::Pause(node) => {
                let n = self.node(NodeId(node));
                if n.status == Status::Up {
                    n.status = Status::Paused;
                }
            }
            Fault::Resume(node) => self.resume(NodeId(node)),
            Fault::Disconnect(node) => {
                let id = NodeId(node);
                self.away.insert(id, self.counters.epoch_switches);
                for peer in self.net.mesh.neighbours(id).to_vec() {
                    self.inbound(id, Inbound::PeerDown(peer));
                    self.inbound(peer, Inbound::PeerDown(id));
                }
                self.net.set_offline(id, true);
            }
            Fault::Reconnect(node) => {
                let id = NodeId(node);
                if let Some(before) = self.away.remove(&id) {
                    // switches of the others while this node was away, per node
                    let others = self.plan.peers.saturating_sub(1).max(1) as u64;
                    let missed = (self.counters.epoch_switches - before) / others;
                    let c = &mut self.counters;
                    c.epochs_missed_offline = c.epochs_missed_offline.max(missed);
                }
                self.net.set_offline(id, false);
                for peer in self.net.mesh.neighbours(id).to_vec() {
                    self.connect(id, peer);
                }
            }
            Fault::Links(params) => self.net.set_params(params),
        }
    }

    fn resume(&mut self, id: NodeId) {
        if self.nodes[id.index()].status != Status::Paused {
            return;
        }
        self.node(id).status = Status::Up;
        while let Some(msg) = self.node(id).inbox.pop_front() {
            self.process(id, msg);
        }
        self.feed(id, HubInput::Tick);
        self.lease_resume(id);
    }

    // ----- end ---------------------------------------------------------

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

/// The frame kind's name, from its second byte.
fn frame_name(bytes: &[u8]) -> &'static str {
    match bytes.get(1).copied().and_then(FrameKind::from_code) {
        Some(FrameKind::Changes) => "changes",
        Some(FrameKind::Digest) => "digest",
        Some(FrameKind::SyncMessage) => "sync",
        Some(FrameKind::Bye) => "bye",
        Some(FrameKind::Ephemeral) => "ephemeral",
        Some(FrameKind::Epoch) => "epoch",
        Some(FrameKind::SnapshotRequest) => "snapshot-request",
        Some(FrameKind::Snapshot) => "snapshot",
        Some(FrameKind::Spaces) => "spaces",
        Some(FrameKind::Summary) => "summary",
        Some(FrameKind::Buckets) => "buckets",
        Some(FrameKind::Leaves) => "leaves",
        None => "unknown",
    }
}

/// The input after a local write to the one space.
fn commit() -> HubInput<NodeId> {
    HubInput::LocalCommit {
        space: SPACE.to_owned(),
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
