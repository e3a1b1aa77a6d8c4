//! Idle cost of many spaces: two nodes on loopback (each on its own tokio
//! runtime, spaces on `FileStorage` as `concord::Node` keeps them) share 1
//! space, then 1,000, idle and in sync. Over a window of several seconds it
//! measures the bytes and messages each node sends (the driver's
//! `NetHandle::traffic`) and the CPU time of each node's threads; with
//! 1,000 spaces it also measures how long one changed space takes to reach
//! the other node on the fast path, and how long a space one node opens
//! late takes to catch up (lists, summary, descent, digests). Every figure
//! is the median of several runs.
//!
//! Last line: `idle_spaces_ratio <bytes/s with 1,000 spaces / bytes/s with
//! 1 space>` (both directions together). Environment: `MANY_SPACES_RUNS`
//! (default 3), `MANY_SPACES_WINDOW_S` (default 10).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use concord_net::{NetConfig, NetHandle, Traffic, identity};
use concord_state::Delivery;
use futures::StreamExt;
use tokio::runtime::Runtime;

mod common;

const SPACES: usize = 1_000;
/// Changes whose propagation is timed, and late opens.
const CHANGES: usize = 20;
const LATE_OPENS: usize = 5;
/// Time for lists, summaries and gossipsub meshes to settle after connecting.
const WARMUP: Duration = Duration::from_secs(3);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A runtime whose threads (worker and blocking) carry `name`, so that its
/// CPU time can be told apart.
fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// CPU time (user + system) of each live thread whose name is `name`, by
/// thread id, from `/proc/self/task` (Linux; empty elsewhere).
fn thread_cpu(name: &str) -> BTreeMap<u64, Duration> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let tid = task.file_name().to_string_lossy().parse().unwrap_or(0);
        // schedstat: nanoseconds on the CPU, first field.
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
        if let Some(ns) = ns {
            out.insert(tid, Duration::from_nanos(ns));
        }
    }
    out
}

/// CPU time the threads named `name` spent between two samples (threads
/// that ended meanwhile are left out; idle threads spend nothing).
fn cpu_between(before: &BTreeMap<u64, Duration>, after: &BTreeMap<u64, Duration>) -> Duration {
    after
        .iter()
        .map(|(tid, t)| t.saturating_sub(before.get(tid).copied().unwrap_or_default()))
        .sum()
}

struct Node {
    runtime: Runtime,
    name: &'static str,
    handle: NetHandle,
}

fn start(name: &'static str) -> Node {
    let runtime = runtime(name);
    let handle = runtime.block_on(async {
        let mut config = NetConfig::new(identity::Keypair::generate_ed25519());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
        concord_net::spawn(config).expect("spawn")
    });
    Node {
        runtime,
        name,
        handle,
    }
}

fn space(i: usize) -> String {
    format!("space-{i}")
}

/// One configuration's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Idle {
    /// Bytes per second A sent to B, and B to A.
    a_to_b: f64,
    b_to_a: f64,
    /// Messages per second, each way.
    a_msgs: f64,
    b_msgs: f64,
    /// Share of one core each node's threads used.
    cpu_a: f64,
    cpu_b: f64,
}

struct Latency {
    changed: Vec<Duration>,
    late: Vec<Duration>,
}

/// Two nodes sharing `n` spaces: open them, connect, let them settle, and
/// measure the idle window.
async fn run(a: &Node, b: &Node, dirs: &Path, n: usize, window: Duration) -> Idle {
    for (node, actor) in [(a, 1u8), (b, 2u8)] {
        for i in 0..n {
            let dir = dirs.join(node.name).join(space(i));
            common::open_durable(&node.handle, &dir, &space(i), actor).await;
        }
    }
    let addr = common::listen_addr(&a.handle).await;
    b.handle.dial(addr).await.expect("dial");
    while a.handle.peers().await.expect("peers").is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(WARMUP).await;
    let traffic = |n: &Node| n.handle.traffic();
    let (ta, tb) = (traffic(a), traffic(b));
    let (ca, cb) = (thread_cpu(a.name), thread_cpu(b.name));
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let (ca, cb) = (
        cpu_between(&ca, &thread_cpu(a.name)),
        cpu_between(&cb, &thread_cpu(b.name)),
    );
    let sent = |before: Traffic, after: Traffic| {
        (
            (after.sent_bytes() - before.sent_bytes()) as f64 / secs,
            (after.sync.sent_messages + after.gossip.sent_messages
                - before.sync.sent_messages
                - before.gossip.sent_messages) as f64
                / secs,
        )
    };
    let (a_to_b, a_msgs) = sent(ta, traffic(a));
    let (b_to_a, b_msgs) = sent(tb, traffic(b));
    Idle {
        a_to_b,
        b_to_a,
        a_msgs,
        b_msgs,
        cpu_a: ca.as_secs_f64() / secs,
        cpu_b: cb.as_secs_f64() / secs,
    }
}

/// With the nodes in sync on [`SPACES`] spaces: a put on A in one space
/// until B's subscription to that space shows it; then a space A holds
/// (with a change) that B opens late, until B shows the change.
async fn latency(a: &Node, b: &Node, dirs: &Path) -> Latency {
    let mut changed = Vec::new();
    for k in 0..CHANGES {
        let name = space((k * 397 + 11) % SPACES);
        let mut events = b
            .handle
            .subscribe(&name, "observation/*", 16)
            .await
            .expect("subscribe");
        let t0 = Instant::now();
        let value = k as u64;
        put(&a.handle, &name, value).await;
        seen(&mut events, value).await;
        changed.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut late = Vec::new();
    for k in 0..LATE_OPENS {
        let name = format!("late-{k}");
        common::open_durable(&a.handle, &dirs.join(a.name).join(&name), &name, 1).await;
        let value = k as u64;
        put(&a.handle, &name, value).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        common::open_durable(&b.handle, &dirs.join(b.name).join(&name), &name, 2).await;
        let mut events = b
            .handle
            .subscribe(&name, "observation/*", 16)
            .await
            .expect("subscribe");
        seen(&mut events, value).await;
        late.push(t0.elapsed());
    }
    Latency { changed, late }
}

/// A put of `value` on `node`, acknowledged (fsynced).
async fn put(node: &NetHandle, space: &str, value: u64) {
    node.with_replica(space, move |r| {
        r.put(concord_net::wall_clock(), "observation/x", &value)
    })
    .await
    .expect("with")
    .expect("put");
}

async fn seen(events: &mut concord_net::Subscription, value: u64) {
    let want = Some(serde_json::json!(value));
    let wait = async {
        loop {
            match events.next().await {
                Some(Delivery::Event(e)) if e.new == want => return,
                Some(_) => continue,
                None => panic!("subscription ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the change arrived within 10 s");
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runs = env("MANY_SPACES_RUNS", 3).max(1) as usize;
    let window = Duration::from_secs(env("MANY_SPACES_WINDOW_S", 10).max(1));
    let orchestra = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut idle: BTreeMap<usize, Vec<Idle>> = BTreeMap::new();
    let mut changed = Vec::new();
    let mut late = Vec::new();
    for _ in 0..runs {
        for n in [1, SPACES] {
            let dirs = tempfile::tempdir().expect("tempdir");
            let (a, b) = (start("node-a"), start("node-b"));
            orchestra.block_on(async {
                idle.entry(n)
                    .or_default()
                    .push(run(&a, &b, dirs.path(), n, window).await);
                if n == SPACES {
                    let l = latency(&a, &b, dirs.path()).await;
                    changed.extend(l.changed);
                    late.extend(l.late);
                }
                for node in [&a, &b] {
                    node.handle.shutdown().await.expect("shutdown");
                }
            });
            drop((a.runtime, b.runtime));
        }
    }
    println!(
        "two nodes on loopback, idle and in sync; {}-s window after {}-s warm-up; medians of {runs} runs",
        window.as_secs(),
        WARMUP.as_secs()
    );
    println!(
        "{:>7} {:>12} {:>12} {:>10} {:>10} {:>9} {:>9}",
        "spaces", "A->B B/s", "B->A B/s", "A msg/s", "B msg/s", "cpu A %", "cpu B %"
    );
    let mut total = BTreeMap::new();
    for (n, samples) in &idle {
        let m = |f: fn(&Idle) -> f64| median(samples.iter().map(f).collect());
        println!(
            "{n:>7} {:>12.1} {:>12.1} {:>10.2} {:>10.2} {:>9.2} {:>9.2}",
            m(|i| i.a_to_b),
            m(|i| i.b_to_a),
            m(|i| i.a_msgs),
            m(|i| i.b_msgs),
            m(|i| i.cpu_a * 100.0),
            m(|i| i.cpu_b * 100.0),
        );
        total.insert(*n, m(|i| i.a_to_b + i.b_to_a));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (what, samples) in [
        (
            format!("one changed space among {SPACES} reaches the other node (fast path)"),
            &mut changed,
        ),
        (
            format!("a space opened late among {SPACES} catches up (lists, summary, descent)"),
            &mut late,
        ),
    ] {
        samples.sort();
        println!(
            "{what}: p50 {:.2} ms, p90 {:.2} ms ({} samples)",
            ms(common::percentile(samples, 0.5)),
            ms(common::percentile(samples, 0.9)),
            samples.len()
        );
    }
    let one = total.get(&1).copied().unwrap_or(0.0);
    let many = total.get(&SPACES).copied().unwrap_or(0.0);
    println!("idle_spaces_ratio {:.2}", many / one.max(f64::MIN_POSITIVE));
}
