//! Frames between nodes inside the event loop: routing an engine's
//! transmits (to one peer, or a broadcast flooded over the gossip mesh,
//! de-duplicated and counted in relay hops), sending them over the virtual
//! network (loss, duplication, latency, jitter) and their arrival (cut by
//! partitions, disconnections, crashes and full inboxes).
//!
//! It owns what happens to a frame on its way between two nodes. It must
//! never deliver a frame the network dropped or blocked, and never draw
//! randomness from anything but the simulator's network stream.

use std::rc::Rc;

use concord_sync::wire::FrameKind;
use concord_sync::{Destination, HubTransmit};

use super::{Event, Sim};
use crate::network::{DropReason, message_id};
use crate::node::{Inbound, NodeId, Status};
use crate::trace::TraceEvent;

impl Sim {
    pub(super) fn route(&mut self, from: NodeId, t: HubTransmit<NodeId>) {
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
    pub(super) fn gossip(
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

    pub(super) fn send(&mut self, from: NodeId, to: NodeId, msg: Inbound) {
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

    pub(super) fn arrive(&mut self, to: NodeId, sent_at: u64, msg: Inbound) {
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
