//! Lease acquire + release latency on one machine: the quorum backend (three
//! lease peers on loopback, each fsyncing its acceptor state) beside an etcd
//! lock (a single-member etcd this bench starts, with its default fsync),
//! measured in alternating blocks in the same run so that background load
//! hits both alike. Both are driven through `LeaseBackend`.
//!
//! Needs the `etcd` binary (Debian: `etcd-server`) or `ETCD_BIN`.
//! `ACQUIRE_SAMPLES` sets the samples per backend (default 600).
//! Last line: `acquire_ratio <concord p50 / etcd p50>` (target at most 1.0).

use std::time::{Duration, Instant};

use concord_lease::{LeaseBackend, Millis, Resource};
use concord_net::lease::{EtcdLeaseBackend, EtcdServer, QuorumConfig, QuorumLeaseBackend};

const BLOCK: usize = 50;
const WARMUP: usize = 30;

/// Times `n` rounds of acquire + release of `resource` on `backend`.
async fn rounds(backend: &dyn LeaseBackend, resource: &Resource, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let lease = backend
            .acquire(resource.clone(), Millis(10_000), Millis(5_000))
            .await
            .expect("acquire");
        backend.release(lease).await.expect("release");
        out.push(start.elapsed());
    }
    out
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 50);
    println!(
        "{name:<44} n={:<5} p50={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms",
        samples.len(),
        ms(p50),
        ms(percentile(&samples, 99)),
        ms(samples[samples.len() - 1]),
    );
    p50
}

async fn run(samples: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let configs = QuorumConfig::loopback(3, dir.path()).expect("loopback configs");
    let peers: Vec<QuorumLeaseBackend> = configs
        .into_iter()
        .map(|c| QuorumLeaseBackend::start(c).expect("start lease peer"))
        .collect();
    let server = EtcdServer::start().await.expect("this bench needs etcd");
    let etcd = EtcdLeaseBackend::connect(&[server.endpoint()])
        .await
        .expect("connect to etcd");
    // The first lease peer acquires; the other two vote.
    let backends: [(&str, &dyn LeaseBackend); 2] = [
        ("concord quorum (3 lease peers, loopback)", &peers[0]),
        ("etcd lock (1 member, loopback)", &etcd),
    ];
    let resource = Resource::new("bench.acquire").expect("resource");
    for (_, backend) in &backends {
        rounds(*backend, &resource, WARMUP).await;
    }
    let mut measured: [Vec<Duration>; 2] = Default::default();
    while measured[0].len() < samples {
        for (i, (_, backend)) in backends.iter().enumerate() {
            measured[i].extend(rounds(*backend, &resource, BLOCK).await);
        }
    }
    println!(
        "acquire + release of one mutex, {samples} samples each, alternating blocks of {BLOCK}"
    );
    let [ours, theirs] = measured;
    let ours = report(backends[0].0, ours);
    let theirs = report(backends[1].0, theirs);
    println!(
        "acquire_ratio {:.3}",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}

fn main() {
    let samples = std::env::var("ACQUIRE_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(samples));
}
