//! The workload inside the event loop: each writer's next write and each
//! node's heartbeat, applying them to the node's replica, recording them
//! and their acknowledgement in the write log, and the periodic flush.
//!
//! It owns when writes happen and when they count as acknowledged. It must
//! never acknowledge a write before it is durable, and never draw
//! randomness from anything but the simulator's workload stream.

use concord_sync::HubInput;
use rand::Rng;

use super::{Event, Sim};
use crate::check::Kind;
use crate::node::{NodeId, SPACE, Status};
use crate::trace::TraceEvent;
use crate::workload::Op;

impl Sim {
    pub(super) fn write_gap(&mut self, id: NodeId) -> u64 {
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

    pub(super) fn write(&mut self, id: NodeId) {
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
    pub(super) fn heartbeat(&mut self, id: NodeId) {
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

    pub(super) fn flush(&mut self, id: NodeId) {
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
}

/// The input after a local write to the one space.
pub(super) fn commit() -> HubInput<NodeId> {
    HubInput::LocalCommit {
        space: SPACE.to_owned(),
    }
}
