//! The fault plan inside the event loop: partitions and heals, crashes and
//! restarts, pauses and resumes (a resumed node processes its queued
//! frames, then ticks), disconnections and reconnections, link changes.
//!
//! It owns carrying out each planned fault when its time comes. It must
//! never inject a fault the plan does not list, and never draw randomness
//! of its own.

use concord_sync::HubInput;

use super::Sim;
use crate::node::{Inbound, NodeId, Status};
use crate::scenario::Fault;
use crate::trace::TraceEvent;

impl Sim {
    pub(super) fn fault(&mut self, fault: Fault) {
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
}
