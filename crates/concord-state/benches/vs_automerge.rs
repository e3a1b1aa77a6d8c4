//! Local write path of concord-state against raw automerge, in one run.
//!
//! Workload: 10,000 small writes, one commit each, keys drawn from 1,000.
//! Raw: automerge `put` + `commit` + `save_incremental`, bytes appended to a
//! file. Concord: `Replica::put` (LastValue, last_write_wins) + the persist
//! op it hands out appended to the file backend (concord-storage) + notify
//! one subscriber. Both without fsync for the headline ratio; the same pair
//! with an fsync per write (and its confirmation to the replica) is printed
//! beside it.
//!
//! The last line is `overhead_ratio <concord seconds / raw seconds>`.

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use concord_state::{
    ActorId, Delivery, Durable, Millis, Persist, Replica, ReplicaConfig, SubscribeOptions,
};
use concord_storage::{FileStorage, Storage};

const WRITES: usize = 10_000;
const KEYS: u64 = 1_000;
const FSYNC_WRITES: usize = 1_000;
const REPEATS: usize = 5;

fn key(i: usize) -> u64 {
    // A fixed LCG so both sides see the same key sequence.
    (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        % KEYS
}

struct Run {
    elapsed: Duration,
    bytes: u64,
}

fn raw(writes: usize, fsync: bool) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = File::create(dir.path().join("raw.log")).expect("create");
    let mut doc = AutoCommit::new();
    let start = Instant::now();
    for i in 0..writes {
        doc.put(ROOT, format!("k{}", key(i)), format!("{{\"v\":{i}}}"))
            .expect("put");
        doc.commit();
        let bytes = doc.save_incremental();
        file.write_all(&bytes).expect("write");
        if fsync {
            file.sync_data().expect("fsync");
        }
    }
    let elapsed = start.elapsed();
    Run {
        elapsed,
        bytes: file.metadata().map(|m| m.len()).unwrap_or(0),
    }
}

/// Appends every op the replica hands out to `storage`; with `fsync`, syncs
/// and confirms them.
fn persist(replica: &mut Replica, storage: &mut FileStorage, fsync: bool) {
    let mut written = None;
    while let Some(op) = replica.poll_persist() {
        match op.op {
            Persist::Append(record) => storage.append(&record).expect("append"),
            Persist::Snapshot(doc) => storage.compact(&doc).expect("compact"),
        }
        written = Some(op.version);
    }
    if let (Some(version), true) = (written, fsync) {
        storage.sync().expect("fsync");
        replica.persisted(version);
    }
}

fn concord(writes: usize, fsync: bool) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut storage = FileStorage::open(dir.path().join("space")).expect("storage");
    storage.load().expect("load");
    let mut replica = Replica::recover(
        "bench",
        ActorId::from(&[7u8; 16][..]),
        Durable::default(),
        ReplicaConfig::default(),
    )
    .expect("recover");
    let sub = replica
        .subscribe("observation/*", SubscribeOptions::default())
        .expect("subscribe");
    persist(&mut replica, &mut storage, true); // the genesis change
    let mut delivered = 0usize;
    let start = Instant::now();
    for i in 0..writes {
        let path = format!("observation/k{}", key(i));
        let receipt = replica
            .put(
                Millis(i as u64),
                path.as_str(),
                &serde_json::json!({ "v": i }),
            )
            .expect("put");
        persist(&mut replica, &mut storage, fsync);
        assert!(!fsync || replica.durable_seq() == receipt.seq);
        while let Some(Delivery::Event(_)) = replica.poll_event(sub).expect("poll") {
            delivered += 1;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(delivered, writes, "subscriber must see every write");
    Run {
        elapsed,
        bytes: storage.bytes_on_disk(),
    }
}

/// Runs both sides alternately `REPEATS` times and keeps each side's best
/// run, so background load hits both alike.
fn best_pair(raw_side: impl Fn() -> Run, concord_side: impl Fn() -> Run) -> (Run, Run) {
    let mut best: (Option<Run>, Option<Run>) = (None, None);
    for _ in 0..REPEATS {
        let r = raw_side();
        let c = concord_side();
        if best.0.as_ref().is_none_or(|b| r.elapsed < b.elapsed) {
            best.0 = Some(r);
        }
        if best.1.as_ref().is_none_or(|b| c.elapsed < b.elapsed) {
            best.1 = Some(c);
        }
    }
    match best {
        (Some(r), Some(c)) => (r, c),
        _ => panic!("REPEATS must be positive"),
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    let quick = std::env::args().any(|a| a == "--test");
    let (writes, fsync_writes) = if quick {
        (200, 20)
    } else {
        (WRITES, FSYNC_WRITES)
    };

    let (raw_nofsync, concord_nofsync) =
        best_pair(|| raw(writes, false), || concord(writes, false));
    let (raw_fsync, concord_fsync) =
        best_pair(|| raw(fsync_writes, true), || concord(fsync_writes, true));

    println!("workload: {writes} writes, one commit each, keys from {KEYS}");
    println!(
        "no fsync  raw automerge: {:>9.0} writes/s  {:>8} bytes on disk",
        rate(writes, raw_nofsync.elapsed),
        raw_nofsync.bytes
    );
    println!(
        "no fsync  concord-state: {:>9.0} writes/s  {:>8} bytes on disk",
        rate(writes, concord_nofsync.elapsed),
        concord_nofsync.bytes
    );
    println!(
        "fsync     raw automerge: {:>9.0} writes/s  ({fsync_writes} writes)",
        rate(fsync_writes, raw_fsync.elapsed)
    );
    println!(
        "fsync     concord-state: {:>9.0} writes/s  ({fsync_writes} writes)",
        rate(fsync_writes, concord_fsync.elapsed)
    );
    println!(
        "fsync_ratio {:.3}",
        concord_fsync.elapsed.as_secs_f64() / raw_fsync.elapsed.as_secs_f64()
    );
    println!(
        "overhead_ratio {:.3}",
        concord_nofsync.elapsed.as_secs_f64() / raw_nofsync.elapsed.as_secs_f64()
    );
}
