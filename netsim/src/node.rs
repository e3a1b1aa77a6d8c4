//! One simulated process: its disk, its (optional, while running) sync
//! hub holding the one space's engine over a durable replica, the
//! replica's storage on that disk, its
//! local clock, its incarnation, its inbox while paused, and its gossip
//! de-duplication cache.
//!
//! It owns the life cycle of a process (start, clean stop, power loss,
//! pause) and carries out what the replica hands out to persist, as the
//! network driver does: records are written when handed out and become
//! durable when the simulator fsyncs them ([`Node::sync`]). It must never
//! route messages or decide about the network, and it never reads a real
//! clock: its `now` is a function of virtual time.

use std::collections::VecDeque;
use std::fmt;

use concord_state::{
    ActorId, Durable, Millis, Persist, Replica, ReplicaConfig, SubscribeOptions, SubscriptionId,
};
use concord_storage::{MemDisk, MemStorage, Storage};
use concord_sync::{HubInput, SyncConfig, SyncHub};
use serde::Serialize;

use crate::check::CausalOrder;
use crate::network::SeenCache;

/// The single space every node replicates.
pub const SPACE: &str = "netsim";

/// A node's index, used as the engines' peer type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The index into node tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// The actor id of a node's incarnation: node index and incarnation number,
/// big-endian, padded to 16 bytes (DESIGN §5).
pub fn actor_id(node: NodeId, incarnation: u32) -> ActorId {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(b"node");
    bytes[4..8].copy_from_slice(&node.0.to_be_bytes());
    bytes[8..12].copy_from_slice(&incarnation.to_be_bytes());
    ActorId::from(&bytes[..])
}

/// Local time of a process: `EPOCH + offset + v * (1 + drift)` for virtual
/// time `v`, never negative and never decreasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalClock {
    /// Constant offset from virtual time, in ms.
    pub offset_ms: i64,
    /// Rate error in parts per million (> -1,000,000).
    pub drift_ppm: i64,
}

/// Local clocks start here, so that negative offsets stay positive.
const EPOCH_MS: i128 = 1_000_000_000;

impl LocalClock {
    /// A perfect clock.
    pub const EXACT: LocalClock = LocalClock {
        offset_ms: 0,
        drift_ppm: 0,
    };

    /// Local time at virtual time `v`.
    pub fn local(&self, v: u64) -> Millis {
        let v = i128::from(v);
        let t =
            EPOCH_MS + i128::from(self.offset_ms) + v + v * i128::from(self.drift_ppm) / 1_000_000;
        Millis(u64::try_from(t.max(0)).unwrap_or(u64::MAX))
    }

    /// The earliest virtual time, not before `not_before`, at which local
    /// time has reached `target`.
    pub fn virtual_at(&self, target: Millis, not_before: u64) -> u64 {
        if self.local(not_before) >= target {
            return not_before;
        }
        let rate = 1_000_000 + i128::from(self.drift_ppm);
        let want = i128::from(target.0) - EPOCH_MS - i128::from(self.offset_ms);
        let mut v = u64::try_from((want * 1_000_000 / rate.max(1)).max(0)).unwrap_or(u64::MAX);
        v = v.max(not_before);
        while self.local(v) < target {
            v += 1;
        }
        while v > not_before && self.local(v - 1) >= target {
            v -= 1;
        }
        v
    }
}

/// Whether a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Processing.
    Up,
    /// Frozen: nothing processed, timers deferred, frames queued.
    Paused,
    /// Crashed or stopped.
    Down,
}

/// Something arriving at a node, processed now or queued while it is paused.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A point-to-point frame.
    Direct {
        /// Sender.
        from: NodeId,
        /// The frame.
        bytes: std::rc::Rc<[u8]>,
    },
    /// A gossip (broadcast) frame, relayed `hop` times so far.
    Gossip {
        /// The neighbour that relayed it.
        from: NodeId,
        /// The frame.
        bytes: std::rc::Rc<[u8]>,
        /// Message id for de-duplication.
        id: u128,
        /// Relay hops from the origin (1 = sent by the origin itself).
        hop: u32,
    },
    /// A lease message (point-to-point, JSON as concord-net sends it).
    Lease {
        /// Sender.
        from: NodeId,
        /// The encoded message.
        bytes: std::rc::Rc<[u8]>,
        /// Its frame name in the trace.
        frame: &'static str,
    },
    /// Lease work of the process itself (waits while it is paused).
    LeaseLocal(crate::lease::LeaseLocal),
    /// A connection came up.
    PeerUp(NodeId),
    /// A connection went down.
    PeerDown(NodeId),
}

/// What stopping a process left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// The stopped incarnation's highest durable (acknowledged) sequence.
    pub durable_seq: u64,
    /// Unsynced bytes the disk lost.
    pub lost_bytes: u64,
}

/// How a node's engine and replica are configured (same for every node).
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// Sync engine settings.
    pub sync: SyncConfig,
    /// The `*` subscriber's buffer.
    pub subscriber_capacity: usize,
    /// Replica settings (epoch thresholds).
    pub replica: ReplicaConfig,
}

/// One simulated process.
pub struct Node {
    /// Its id.
    pub id: NodeId,
    /// Running, paused or down.
    pub status: Status,
    /// The sync hub (holding the space's engine) while the process runs.
    pub hub: Option<SyncHub<NodeId>>,
    /// The replica's storage while the process runs.
    storage: Option<MemStorage>,
    /// The last persist version written to `storage`.
    written: u64,
    /// The `*` subscription of the running process.
    pub sub: Option<SubscriptionId>,
    /// Its disk, which survives crashes.
    pub disk: MemDisk,
    /// Current incarnation (part of the actor id).
    pub incarnation: u32,
    /// Whether the last stop was unclean (the next start takes a new incarnation).
    pub unclean: bool,
    /// Its clock.
    pub clock: LocalClock,
    /// Virtual time of the pending engine timer, if one is scheduled.
    pub timer_at: Option<u64>,
    /// Inputs queued while paused.
    pub inbox: VecDeque<Inbound>,
    /// Gossip ids already seen.
    pub seen: SeenCache,
    /// Causal-order checker of its subscriber.
    pub causal: CausalOrder,
    /// Sum of its vector clock when last looked at.
    pub clock_total: u64,
    /// Writes issued by this node so far (all incarnations).
    pub writes: u64,
}

impl Node {
    /// A node that has not started yet.
    pub fn new(id: NodeId, clock: LocalClock, seen_capacity: usize) -> Node {
        Node {
            id,
            status: Status::Down,
            hub: None,
            storage: None,
            written: 0,
            sub: None,
            disk: MemDisk::new(),
            incarnation: 0,
            unclean: false,
            clock,
            timer_at: None,
            inbox: VecDeque::new(),
            seen: SeenCache::new(seen_capacity),
            causal: CausalOrder::default(),
            clock_total: 0,
            writes: 0,
        }
    }

    /// The node's local time at virtual time `v`.
    pub fn now(&self, v: u64) -> Millis {
        self.clock.local(v)
    }

    /// The replica while the process runs.
    pub fn replica(&self) -> Option<&Replica> {
        self.hub.as_ref()?.replica(SPACE)
    }

    /// The actor id of the current incarnation.
    pub fn actor(&self) -> ActorId {
        actor_id(self.id, self.incarnation)
    }

    /// Starts the process from its disk (a new incarnation after an unclean
    /// stop) with a hub seeded by `seed`.
    ///
    /// # Errors
    /// The disk or the replica could not be recovered; the node stays down.
    pub fn start(&mut self, setup: &NodeSetup, seed: u64) -> Result<(), String> {
        if self.unclean {
            self.incarnation += 1;
            self.unclean = false;
        }
        let mut storage = MemStorage::new(self.disk.clone(), SPACE);
        let recovered = storage.load().map_err(|e| format!("disk: {e}"))?;
        let durable = Durable {
            snapshot: recovered.snapshot,
            records: recovered.records,
        };
        let mut replica = Replica::recover(SPACE, self.actor(), durable, setup.replica.clone())
            .map_err(|e| format!("replica: {e}"))?;
        let sub = replica
            .subscribe(
                "*",
                SubscribeOptions::default().capacity(setup.subscriber_capacity),
            )
            .map_err(|e| format!("subscribe: {e}"))?;
        self.clock_total = replica.vector_clock().total();
        let mut hub = SyncHub::new(setup.sync.clone(), seed);
        hub.open_space(Millis(0), replica, None)
            .map_err(|e| format!("hub: {e}"))?;
        self.hub = Some(hub);
        self.storage = Some(storage);
        self.written = 0;
        self.sub = Some(sub);
        self.status = Status::Up;
        self.timer_at = None;
        self.causal = CausalOrder::default();
        self.persist()
    }

    /// Writes every op the replica hands out to the disk, as the driver
    /// does after every input: records not yet durable, snapshots durable
    /// at once.
    ///
    /// # Errors
    /// The disk refused a write.
    pub fn persist(&mut self) -> Result<(), String> {
        let (Some(hub), Some(storage)) = (&mut self.hub, &mut self.storage) else {
            return Ok(());
        };
        let Some(replica) = hub.replica_mut(SPACE) else {
            return Ok(());
        };
        while let Some(op) = replica.poll_persist() {
            match &op.op {
                Persist::Append(record) => storage.append(record),
                Persist::Snapshot(doc) => storage.compact(doc),
            }
            .map_err(|e| format!("disk: {e}"))?;
            self.written = op.version;
            if matches!(op.op, Persist::Snapshot(_)) {
                replica.persisted(op.version);
            }
        }
        Ok(())
    }

    /// The fsync: makes everything written durable and confirms it to the
    /// replica. Returns the replica's durable sequence (0 while down).
    ///
    /// # Errors
    /// The disk refused the sync.
    pub fn sync(&mut self) -> Result<u64, String> {
        self.persist()?;
        let (Some(hub), Some(storage)) = (&mut self.hub, &mut self.storage) else {
            return Ok(0);
        };
        storage.sync().map_err(|e| format!("disk: {e}"))?;
        let Some(replica) = hub.replica_mut(SPACE) else {
            return Ok(0);
        };
        replica.persisted(self.written);
        Ok(replica.durable_seq())
    }

    /// After a local write: writes what it handed out to persist and, with
    /// `sync`, fsyncs it, as the driver answers a write command once its
    /// fsync is done (here at once); without, the write waits for the next
    /// [`Node::sync`]. Returns the replica's durable sequence.
    ///
    /// # Errors
    /// The disk refused the write or the sync.
    pub fn settle_write(&mut self, sync: bool) -> Result<u64, String> {
        if sync {
            return self.sync();
        }
        self.persist()?;
        Ok(self.replica().map_or(0, Replica::durable_seq))
    }

    /// Stops the process. Clean: everything is fsynced first. Unclean: the
    /// disk loses what was not synced, except `keep(unsynced_bytes)` bytes
    /// that made it anyway (possibly a torn record).
    ///
    /// # Errors
    /// The final fsync of a clean stop failed; the stop then counts as
    /// unclean.
    pub fn stop(
        &mut self,
        clean: bool,
        mut keep: impl FnMut(u64) -> u64,
    ) -> Result<Stopped, String> {
        let mut stopped = Stopped::default();
        let flushed = if clean {
            self.sync().map(|_| ())
        } else {
            Ok(())
        };
        stopped.durable_seq = self.replica().map_or(0, Replica::durable_seq);
        self.hub = None;
        self.storage = None;
        // A failed flush makes the stop unclean: what reached the disk is unknown.
        let clean = clean && flushed.is_ok();
        if !clean {
            let mut lost = 0;
            self.disk.crash_with(|_, n| {
                let kept = keep(n).min(n);
                lost += n - kept;
                kept
            });
            stopped.lost_bytes = lost;
        }
        self.unclean = !clean;
        self.status = Status::Down;
        self.sub = None;
        self.timer_at = None;
        self.inbox.clear();
        self.seen.clear();
        flushed.map(|()| stopped)
    }

    /// Feeds one input to the running hub at virtual time `v`.
    pub fn handle(&mut self, v: u64, input: HubInput<NodeId>) {
        let now = self.now(v);
        if let Some(hub) = &mut self.hub {
            hub.handle_input(now, input);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_clock_inverts() {
        let clocks = [
            LocalClock::EXACT,
            LocalClock {
                offset_ms: -30_000,
                drift_ppm: 50_000,
            },
            LocalClock {
                offset_ms: 12_345,
                drift_ppm: -50_000,
            },
            LocalClock {
                offset_ms: 7,
                drift_ppm: -500_000,
            },
        ];
        for c in clocks {
            for v in [0u64, 1, 999, 10_000, 123_456] {
                let local = c.local(v);
                let back = c.virtual_at(local, 0);
                assert!(back <= v, "{c:?} v={v} back={back}");
                assert_eq!(c.local(back), local);
                assert!(back == 0 || c.local(back - 1) < local);
                assert!(c.local(v + 1) >= local);
                assert_eq!(c.virtual_at(local, v + 5), v + 5);
            }
        }
    }

    #[test]
    fn actor_ids_differ_by_incarnation() {
        assert_ne!(actor_id(NodeId(1), 0), actor_id(NodeId(1), 1));
        assert_ne!(actor_id(NodeId(1), 0), actor_id(NodeId(2), 0));
    }

    fn put(node: &mut Node, v: u64) -> u64 {
        let hub = node.hub.as_mut().expect("running");
        let replica = hub.replica_mut(SPACE).expect("the space");
        let receipt = replica.put(Millis(v), "observation/a", &v);
        receipt.expect("put").seq
    }

    fn value(node: &Node) -> Option<serde_json::Value> {
        let replica = node.replica().expect("running");
        replica.get("observation/a").expect("get")
    }

    #[test]
    fn a_power_loss_keeps_what_was_synced_and_loses_the_rest() {
        let setup = NodeSetup {
            sync: SyncConfig::default(),
            subscriber_capacity: 16,
            replica: ReplicaConfig::default(),
        };
        let mut node = Node::new(NodeId(0), LocalClock::EXACT, 16);
        node.start(&setup, 1).expect("start");
        let first = put(&mut node, 1);
        assert_eq!(node.settle_write(true), Ok(first));
        put(&mut node, 2);
        assert_eq!(node.settle_write(false), Ok(first), "written, not synced");
        assert!(node.disk.unsynced_bytes(SPACE) > 0);
        let stopped = node.stop(false, |_| 0).expect("crash");
        assert_eq!(stopped.durable_seq, first);
        assert!(stopped.lost_bytes > 0);
        node.start(&setup, 2).expect("restart");
        assert_eq!(node.incarnation, 1, "a new incarnation after a crash");
        assert_eq!(value(&node), Some(serde_json::json!(1)));
        // A clean stop fsyncs first and keeps the incarnation.
        let third = put(&mut node, 3);
        assert_eq!(node.settle_write(false), Ok(0));
        assert_eq!(node.stop(true, |_| 0).expect("stop").durable_seq, third);
        node.start(&setup, 3).expect("restart");
        assert_eq!(node.incarnation, 1);
        assert_eq!(value(&node), Some(serde_json::json!(3)));
    }
}
