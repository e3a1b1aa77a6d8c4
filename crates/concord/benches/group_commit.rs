//! Durable write throughput of one `concord::Node` (a real data dir, an
//! fsync before every acknowledgement): one writer waiting for each write,
//! beside 16 concurrent writers whose queued writes the driver commits in
//! groups under one fsync (DESIGN §9). Last line:
//! `group_commit_speedup <16 writers' writes/s / 1 writer's writes/s>`.

use std::time::Instant;

use concord::Node;
use serde_json::json;

const WRITES: usize = 2_000;
const WRITERS: usize = 16;

async fn node(dir: &std::path::Path) -> Node {
    Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .build()
        .await
        .expect("node")
}

/// Writes/s of `writers` tasks sharing `WRITES` acknowledged puts.
async fn throughput(writers: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path()).await;
    let space = node.space("bench").await.expect("space");
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let space = space.clone();
            tokio::spawn(async move {
                for i in 0..WRITES / writers {
                    // Answered once fsynced: every put is durable.
                    space
                        .put(&format!("observation/w{w}"), json!(i))
                        .await
                        .expect("put");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let rate = WRITES as f64 / started.elapsed().as_secs_f64();
    node.shutdown().await.expect("shutdown");
    rate
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut one, mut many) = (Vec::new(), Vec::new());
    // Interleaved, best of 3, so background load hits both alike.
    for _ in 0..3 {
        one.push(rt.block_on(throughput(1)));
        many.push(rt.block_on(throughput(WRITERS)));
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!("{WRITES} acknowledged durable puts on one node (fsync per acknowledgement)");
    println!("  1 writer:   {:>8.0} writes/s", best(&one));
    println!(
        "  {WRITERS} writers:  {:>8.0} writes/s (group commit)",
        best(&many)
    );
    println!("group_commit_speedup {:.2}", best(&many) / best(&one));
}
