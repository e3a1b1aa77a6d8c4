//! One register written again and again, as agents write their status all
//! day: what a remote write costs near write 1,000 and near write 1,000,000,
//! with Concord's default epoch settings, beside raw automerge (whose cost
//! grows with the register's history).
//!
//! Concord: replica A writes `observation/agent.status`; replica B applies
//! each change as it arrives (`Replica::apply_changes`); both hand their
//! persist ops to a simulated disk (concord-storage's `MemStorage`). When A
//! passes its epoch thresholds it cuts, and B adopts the cut (B holds every
//! change of it, so it builds the first document itself).
//!
//! Raw: automerge document A puts the same key; document B applies each
//! change; up to 50,000 writes.
//!
//! Printed: p50 and p99 of the remote apply around each checkpoint; the
//! disk (bytes of snapshot + log of both replicas); memory as the ops
//! B's documents hold (current epoch plus retained ones; automerge keeps
//! every op in memory, so this is what grows) and the process's resident
//! set; the cost of a cut and of an adoption.
//! The last line is `hot_register_growth <p50 near the last write / p50
//! near write 1,000>`. `HOT_REGISTER_WRITES` lowers the number of writes.

use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ActorId as RawActor, Automerge, ROOT, ReadDoc};
use concord_state::{ActorId, Durable, Millis, Persist, Replica, ReplicaConfig};
use concord_storage::{MemDisk, MemStorage, Storage};

const PATH: &str = "observation/agent.status";
/// Writes sampled around each checkpoint: about one epoch's worth with
/// the default thresholds, so that both samples span every point of an
/// epoch's life (the cost of a write grows within an epoch and drops at
/// each cut).
const WINDOW: u64 = 2_000;
const RAW_WRITES: u64 = 50_000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(i).copied().unwrap_or_default()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Side {
    replica: Replica,
    storage: MemStorage,
}

impl Side {
    fn new(n: u8, disk: &MemDisk) -> Side {
        let space = format!("hot{n}");
        let mut storage = MemStorage::new(disk.clone(), &space);
        storage.load().expect("load");
        let replica = Replica::recover(
            "hot",
            ActorId::from(&[n; 16][..]),
            Durable::default(),
            ReplicaConfig::default(),
        )
        .expect("recover");
        let mut side = Side { replica, storage };
        side.persist();
        side
    }

    /// Writes and fsyncs every persist op, as a driver does.
    fn persist(&mut self) {
        let mut last = None;
        while let Some(op) = self.replica.poll_persist() {
            match &op.op {
                Persist::Append(r) => self.storage.append(r).expect("append"),
                Persist::Snapshot(s) => self.storage.compact(s).expect("compact"),
            }
            last = Some(op.version);
        }
        if let Some(v) = last {
            self.storage.sync().expect("sync");
            self.replica.persisted(v);
        }
    }
}

struct Checkpoint {
    at: u64,
    p50: Duration,
    p99: Duration,
    disk: u64,
    ops: u64,
    rss: u64,
}

/// Samples the apply times around each checkpoint.
struct Sampler {
    checkpoints: Vec<u64>,
    last: u64,
    samples: Vec<Duration>,
}

impl Sampler {
    fn new(checkpoints: Vec<u64>, last: u64) -> Sampler {
        Sampler {
            checkpoints,
            last,
            samples: Vec::new(),
        }
    }

    /// Records write `i`'s apply time if it is near a checkpoint; at the
    /// end of a window, the checkpoint with the window's p50 and p99.
    fn sample(&mut self, i: u64, took: Duration) -> Option<(u64, Duration, Duration)> {
        if self
            .checkpoints
            .iter()
            .any(|c| i + WINDOW / 2 > *c && i <= *c + WINDOW / 2)
        {
            self.samples.push(took);
        }
        let at = self
            .checkpoints
            .iter()
            .copied()
            .find(|c| i == (*c + WINDOW / 2).min(self.last))?;
        let p50 = percentile(&mut self.samples, 0.5);
        let p99 = percentile(&mut self.samples, 0.99);
        self.samples.clear();
        Some((at, p50, p99))
    }
}

/// The process's resident set, in bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}

fn concord(writes: u64) -> (Vec<Checkpoint>, Vec<Duration>, Vec<Duration>) {
    let disk = MemDisk::new();
    let mut a = Side::new(1, &disk);
    let mut b = Side::new(2, &disk);
    let mut sampler = Sampler::new(vec![1_000, writes - WINDOW / 2], writes);
    let mut out = Vec::new();
    let (mut cuts, mut adoptions) = (Vec::new(), Vec::new());
    let mut sent = 0;
    for i in 1..=writes {
        let now = Millis(1_000_000 + i);
        a.replica.put(now, PATH, &i).expect("put");
        let changes = a.replica.own_changes_after(sent);
        sent = a.replica.vector_clock().get(a.replica.actor());
        let start = Instant::now();
        b.replica.apply_changes(now, changes).expect("apply");
        let took = start.elapsed();
        a.persist();
        b.persist();
        if a.replica.wants_cut() {
            let start = Instant::now();
            a.replica.cut_epoch(now).expect("cut");
            cuts.push(start.elapsed());
            let start = Instant::now();
            b.replica
                .adopt_epoch(now, &a.replica.epoch_announce(), None)
                .expect("adopt");
            adoptions.push(start.elapsed());
            a.persist();
            b.persist();
        }
        if let Some((at, p50, p99)) = sampler.sample(i, took) {
            out.push(Checkpoint {
                at,
                p50,
                p99,
                disk: disk.bytes_on_disk(),
                ops: b.replica.epoch().ops,
                rss: rss(),
            });
        }
    }
    assert_eq!(
        b.replica.get(PATH).expect("get"),
        Some(serde_json::json!(writes))
    );
    (out, cuts, adoptions)
}

fn raw(writes: u64) -> Vec<Checkpoint> {
    let mut a = Automerge::new().with_actor(RawActor::from(&[1u8; 16][..]));
    let mut b = Automerge::new().with_actor(RawActor::from(&[2u8; 16][..]));
    let mut sampler = Sampler::new(vec![1_000, 10_000, writes - WINDOW / 2], writes);
    let mut out = Vec::new();
    for i in 1..=writes {
        let mut tx = a.transaction();
        tx.put(ROOT, "status", i).expect("put");
        tx.commit();
        let change = a.get_last_local_change().expect("change");
        let start = Instant::now();
        b.apply_changes([change]).expect("apply");
        if let Some((at, p50, p99)) = sampler.sample(i, start.elapsed()) {
            out.push(Checkpoint {
                at,
                p50,
                p99,
                disk: b.save().len() as u64,
                ops: b.stats().num_ops,
                rss: rss(),
            });
        }
    }
    assert!(b.get(ROOT, "status").expect("get").is_some());
    out
}

fn print(label: &str, rows: &[Checkpoint]) {
    for r in rows {
        println!(
            "{label:<8} near write {:>9}: apply p50 {:>8.1} µs  p99 {:>8.1} µs  disk {:>10} B  ops held {:>9}  rss {:>6} MiB",
            r.at,
            micros(r.p50),
            micros(r.p99),
            r.disk,
            r.ops,
            r.rss / (1024 * 1024)
        );
    }
}

fn main() {
    let writes: u64 = std::env::var("HOT_REGISTER_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let raw_rows = raw(RAW_WRITES.min(writes));
    print("raw", &raw_rows);
    let (rows, mut cuts, mut adoptions) = concord(writes);
    print("concord", &rows);
    println!(
        "epochs: {} cuts, cut p50 {:.1} µs p99 {:.1} µs; adoption p50 {:.1} µs p99 {:.1} µs",
        cuts.len(),
        micros(percentile(&mut cuts, 0.5)),
        micros(percentile(&mut cuts, 0.99)),
        micros(percentile(&mut adoptions, 0.5)),
        micros(percentile(&mut adoptions, 0.99)),
    );
    let first = rows.first().map(|r| r.p50).unwrap_or_default();
    let last = rows.last().map(|r| r.p50).unwrap_or_default();
    let raw_growth = raw_rows
        .last()
        .map(|r| r.p50)
        .unwrap_or_default()
        .as_secs_f64()
        / raw_rows
            .first()
            .map(|r| r.p50)
            .unwrap_or_default()
            .as_secs_f64()
            .max(1e-9);
    println!("raw_growth_to_{} {:.2}", RAW_WRITES.min(writes), raw_growth);
    println!(
        "hot_register_growth {:.2}",
        last.as_secs_f64() / first.as_secs_f64().max(1e-9)
    );
}
