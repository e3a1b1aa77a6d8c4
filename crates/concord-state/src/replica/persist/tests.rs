use serde_json::json;

use super::*;
use crate::{Millis, VectorClock};

fn actor(n: u8) -> ActorId {
    ActorId::from(&[n; 16][..])
}

fn fresh(n: u8) -> Replica {
    Replica::recover("s", actor(n), Durable::default(), ReplicaConfig::default()).unwrap()
}

/// A disk that applies ops as the storage backends do.
#[derive(Default)]
struct Disk {
    durable: Durable,
    /// The last version written.
    written: u64,
}

impl Disk {
    /// Writes every op the replica hands out; returns them.
    fn drain(&mut self, r: &mut Replica) -> Vec<PersistOp> {
        let ops: Vec<PersistOp> = std::iter::from_fn(|| r.poll_persist()).collect();
        for op in &ops {
            assert!(op.version > self.written, "versions must increase");
            self.written = op.version;
            match &op.op {
                Persist::Append(record) => self.durable.records.push(record.clone()),
                Persist::Snapshot(doc) => {
                    self.durable = Durable {
                        snapshot: Some(doc.clone()),
                        records: Vec::new(),
                    }
                }
            }
        }
        ops
    }

    /// Writes and confirms everything.
    fn sync(&mut self, r: &mut Replica) {
        self.drain(r);
        r.persisted(self.written);
    }
}

#[test]
fn an_in_memory_replica_hands_out_nothing() {
    let mut r = Replica::new("s", actor(1));
    r.put(Millis(1), "observation/a", &1).unwrap();
    assert_eq!(r.compact(Millis(2)).unwrap().snapshot_bytes, 0);
    assert_eq!(r.poll_persist(), None);
    assert_eq!((r.unpersisted(), r.unpersisted_bytes()), (0, 0));
    assert_eq!(r.durable_seq(), 0);
}

#[test]
fn a_fresh_replica_queues_its_genesis_and_every_change_after_it() {
    let mut r = fresh(1);
    assert_eq!(r.unpersisted(), 1, "the genesis change");
    r.put(Millis(1), "observation/a", &1).unwrap();
    r.append(Millis(2), "intent/log", &"x").unwrap();
    assert_eq!(r.unpersisted(), 3);
    let mut disk = Disk::default();
    let ops = disk.drain(&mut r);
    assert_eq!(ops.len(), 3);
    assert!(ops.iter().all(|op| matches!(op.op, Persist::Append(_))));
    assert_eq!(r.unpersisted(), 3, "handed out is not durable");
    assert_eq!(r.durable_seq(), 0);
    r.persisted(disk.written);
    assert_eq!(
        (r.unpersisted(), r.unpersisted_bytes(), r.durable_seq()),
        (0, 0, 2)
    );
    // What was written rebuilds the replica.
    let again = Replica::recover("s", actor(2), disk.durable, ReplicaConfig::default()).unwrap();
    assert_eq!(again.heads(), r.heads());
    assert_eq!(again.get("observation/a").unwrap(), Some(json!(1)));
    assert_eq!(again.unpersisted(), 0, "a recovered replica queues nothing");
}

#[test]
fn a_recovered_replica_knows_its_own_changes_on_disk_are_durable() {
    let mut r = fresh(1);
    r.put(Millis(1), "observation/a", &1).unwrap();
    let mut disk = Disk::default();
    disk.sync(&mut r);
    // The same actor after a clean restart.
    let again = Replica::recover("s", actor(1), disk.durable, ReplicaConfig::default()).unwrap();
    assert_eq!(again.durable_seq(), 1);
}

#[test]
fn persisted_counts_exactly_the_ops_it_covers() {
    let mut r = fresh(1);
    let mut disk = Disk::default();
    disk.sync(&mut r);
    for i in 1..=3 {
        r.put(Millis(i), "observation/a", &i).unwrap();
    }
    let ops = disk.drain(&mut r);
    r.put(Millis(4), "observation/a", &4).unwrap(); // not handed out yet
    r.persisted(ops[1].version);
    assert_eq!((r.durable_seq(), r.unpersisted()), (2, 2));
    // Stale or repeated confirmations change nothing.
    r.persisted(ops[0].version);
    r.persisted(0);
    assert_eq!((r.durable_seq(), r.unpersisted()), (2, 2));
    // A version beyond what was handed out covers only what was.
    r.persisted(u64::MAX);
    assert_eq!((r.durable_seq(), r.unpersisted()), (3, 1));
    disk.sync(&mut r);
    assert_eq!((r.durable_seq(), r.unpersisted()), (4, 0));
}

#[test]
fn remote_changes_are_persisted_too() {
    let mut a = Replica::new("s", actor(1));
    a.put(Millis(1), "observation/a", &1).unwrap();
    let mut b = fresh(2);
    let mut disk = Disk::default();
    disk.sync(&mut b);
    b.apply_changes(Millis(2), a.changes_since(&VectorClock::new()))
        .unwrap();
    let ops = disk.drain(&mut b);
    assert_eq!(ops.len(), 1, "the genesis was held already");
    b.persisted(disk.written);
    assert_eq!(b.durable_seq(), 0, "b wrote nothing itself");
    let again = Replica::recover("s", actor(3), disk.durable, ReplicaConfig::default()).unwrap();
    assert_eq!(again.get("observation/a").unwrap(), Some(json!(1)));
}

#[test]
fn a_snapshot_replaces_the_ops_not_handed_out_and_covers_those_that_were() {
    let mut r = fresh(1);
    let mut disk = Disk::default();
    disk.sync(&mut r);
    r.put(Millis(1), "observation/a", &1).unwrap();
    let handed = disk.drain(&mut r);
    r.put(Millis(2), "observation/a", &2).unwrap();
    r.put(Millis(3), "observation/b", &3).unwrap();
    assert_eq!(r.unpersisted(), 3);
    let report = r.compact(Millis(4)).unwrap();
    assert!(report.snapshot_bytes > 0);
    assert_eq!(r.unpersisted(), 2, "the handed-out append and the snapshot");
    let ops = disk.drain(&mut r);
    assert_eq!(ops.len(), 1);
    assert!(matches!(&ops[0].op, Persist::Snapshot(doc) if doc.len() == report.snapshot_bytes));
    assert!(ops[0].version > handed[0].version);
    r.persisted(ops[0].version);
    assert_eq!(
        (r.durable_seq(), r.unpersisted(), r.unpersisted_bytes()),
        (3, 0, 0)
    );
    r.put(Millis(5), "observation/b", &5).unwrap();
    disk.sync(&mut r);
    let again = Replica::recover("s", actor(2), disk.durable, ReplicaConfig::default()).unwrap();
    assert_eq!(again.heads(), r.heads());
    assert_eq!(again.get("observation/b").unwrap(), Some(json!(5)));
}

/// A replica whose persist backlog is full after its genesis change (the
/// bound is one byte) until its owner catches up.
fn backlogged() -> (Replica, Disk) {
    let config = ReplicaConfig {
        max_unpersisted_bytes: 1,
        ..ReplicaConfig::default()
    };
    let r = Replica::recover("s", actor(1), Durable::default(), config).unwrap();
    (r, Disk::default())
}

#[test]
fn past_the_backlog_bound_a_write_is_refused_and_changes_nothing() {
    let (mut r, mut disk) = backlogged();
    let (heads, clock, hlc) = (r.heads(), r.vector_clock().clone(), r.hlc());
    let unpersisted = r.unpersisted_bytes();
    for result in [
        r.put(Millis(1), "observation/a", &1).map(|_| ()),
        r.append(Millis(1), "intent/log", &1).map(|_| ()),
        r.increment(Millis(1), "coordination/n", 1).map(|_| ()),
        r.set_add(Millis(1), "coordination/members", &"x")
            .map(|_| ()),
        r.declare(Millis(1), "intent/x", crate::ChannelSpec::topic())
            .map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(StateError::PersistBacklog { max: 1, .. })),
            "{result:?}"
        );
    }
    assert_eq!((r.heads(), r.vector_clock(), r.hlc()), (heads, &clock, hlc));
    assert_eq!(r.unpersisted_bytes(), unpersisted);
    // Handing the ops out is not enough; confirming them is.
    disk.drain(&mut r);
    assert!(r.put(Millis(2), "observation/a", &2).is_err());
    r.persisted(disk.written);
    r.put(Millis(3), "observation/a", &3).unwrap();
    assert!(r.put(Millis(4), "observation/a", &4).is_err());
}

#[test]
fn the_default_bound_is_the_named_constant() {
    assert_eq!(
        ReplicaConfig::default().max_unpersisted_bytes,
        MAX_UNPERSISTED_BYTES
    );
}

#[test]
fn past_the_backlog_bound_remote_changes_are_dropped_for_anti_entropy() {
    let mut a = Replica::new("s", actor(2));
    a.put(Millis(1), "observation/a", &1).unwrap();
    a.put(Millis(2), "observation/b", &2).unwrap();
    let (mut r, mut disk) = backlogged();
    let outcome = r
        .apply_changes(Millis(3), a.changes_since(&VectorClock::new()))
        .unwrap();
    assert_eq!((outcome.applied, outcome.dropped), (0, 2));
    assert!(outcome.overflowed());
    assert_eq!(r.get("observation/a").unwrap(), None);
    assert_eq!(r.stats().pending, 0, "not even queued");
    // The sync protocol's messages are dropped as well, and the session
    // starts over.
    let mut theirs = sync::State::new();
    let mut mine = sync::State::new();
    let message = a.generate_sync_message(&mut theirs).unwrap();
    assert_eq!(
        r.receive_sync_message(Millis(4), &mut mine, &message)
            .unwrap(),
        0
    );
    assert_eq!(r.vector_clock().get(a.actor()), 0);
    // Once the owner caught up, anti-entropy brings them.
    disk.sync(&mut r);
    let delta = a.changes_since(r.vector_clock());
    let outcome = r.apply_changes(Millis(5), delta).unwrap();
    assert_eq!(
        outcome.applied, 1,
        "one change fits, then the bound is reached"
    );
    assert_eq!(outcome.dropped, 1);
    disk.sync(&mut r);
    let delta = a.changes_since(r.vector_clock());
    r.apply_changes(Millis(6), delta).unwrap();
    assert_eq!(r.vector_clock(), a.vector_clock());
}

#[test]
fn compaction_is_the_way_out_of_a_backlog() {
    let (mut r, mut disk) = backlogged();
    let report = r.compact(Millis(10)).unwrap();
    assert_eq!(report.expired_removed, 0);
    assert!(report.snapshot_bytes > 0);
    let ops = disk.drain(&mut r);
    assert!(matches!(
        ops.as_slice(),
        [PersistOp {
            op: Persist::Snapshot(_),
            ..
        }]
    ));
    r.persisted(disk.written);
    assert_eq!(r.unpersisted_bytes(), 0);
    r.put(Millis(11), "observation/a", &1).unwrap();
}

#[test]
fn a_durable_snapshot_carries_the_retained_epochs() {
    let mut r = fresh(1);
    r.put(Millis(1), "observation/a", &1).unwrap();
    r.cut_epoch(Millis(2)).unwrap().unwrap();
    r.put(Millis(3), "observation/a", &2).unwrap();
    let epoch = r.epoch();
    assert_eq!(epoch.retained.len(), 1, "the default retains one epoch");
    let queued = r.unpersisted();

    let snapshot = r.durable_snapshot();
    assert_eq!(r.unpersisted(), queued, "nothing queued");
    let durable = Durable {
        snapshot: Some(snapshot),
        records: Vec::new(),
    };
    let copy = Replica::recover("s", actor(2), durable, ReplicaConfig::default()).unwrap();
    assert_eq!(copy.epoch().id, epoch.id);
    assert_eq!(copy.epoch().retained, epoch.retained);
    assert_eq!(copy.get("observation/a").unwrap(), Some(json!(2)));
    assert_eq!(copy.vector_clock(), r.vector_clock());
}
