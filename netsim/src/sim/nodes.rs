//! The nodes inside the event loop: starting them (from their disk) and
//! crashing them, connections going up and down, whatever reaches a node
//! (processed if it runs, queued while it is paused, lost while it is
//! down), feeding its engine and, after every engine input, persisting what
//! the replica hands out, draining transmits, engine and subscriber events,
//! the per-step checks (bounded queues, causal order, subscriber lag) and
//! re-arming the node's timer.
//!
//! It owns the order in which inputs reach a node's engine. It must never
//! let a paused node process anything or a crashed one receive anything,
//! and never feed an engine without the per-step checks after the input.

use concord_state::{Delivery, MAX_PENDING_CHANGES};
use concord_sync::hub::MAX_QUEUED_TRANSMITS;
use concord_sync::{HubEvent, HubInput, HubTransmit, SyncEvent};
use rand::{Rng, RngCore};

use super::{Event, Sim};
use crate::check::Kind;
use crate::node::{Inbound, Node, NodeId, SPACE, Status};
use crate::trace::TraceEvent;

impl Sim {
    pub(super) fn node(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.index()]
    }

    pub(super) fn start(&mut self, id: NodeId) {
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
    pub(super) fn connect(&mut self, a: NodeId, b: NodeId) {
        let down =
            |s: &Self, x: NodeId| s.nodes[x.index()].status == Status::Down || s.net.is_offline(x);
        if down(self, a) || down(self, b) {
            return;
        }
        self.inbound(a, Inbound::PeerUp(b));
        self.inbound(b, Inbound::PeerUp(a));
    }

    pub(super) fn crash(&mut self, id: NodeId, clean: bool) {
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
    pub(super) fn inbound(&mut self, id: NodeId, msg: Inbound) {
        let node = &mut self.nodes[id.index()];
        match node.status {
            Status::Down => {}
            Status::Paused => node.inbox.push_back(msg),
            Status::Up => self.process(id, msg),
        }
    }

    pub(super) fn process(&mut self, id: NodeId, msg: Inbound) {
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

    pub(super) fn feed(&mut self, id: NodeId, input: HubInput<NodeId>) {
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

    pub(super) fn timer(&mut self, id: NodeId, at: u64) {
        let node = &self.nodes[id.index()];
        if node.status != Status::Up || node.timer_at != Some(at) {
            return;
        }
        self.node(id).timer_at = None;
        self.trace.record(self.now, TraceEvent::Tick { node: id.0 });
        self.feed(id, HubInput::Tick);
    }
}
