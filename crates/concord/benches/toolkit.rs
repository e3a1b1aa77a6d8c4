//! What the agent toolkit costs over the primitives it is built on, two
//! real nodes on loopback sharing a space (the second joined to the first,
//! so its locks come from the first node's lease service):
//!
//! - a `coordinate` step with a lock (acquire, catch up with the last
//!   holder, `_started`, the empty step, `_complete`, release) against a
//!   bare lease acquire + release through the same lease service;
//! - `emit` on one node → the start of a `when` handler on the other
//!   against `put` → the subscription event on the other, both timed where
//!   they happen on the other node (a task of their own), not when the
//!   writer's call returns.
//!
//! Interleaved rounds so background load hits both alike; p50 and p99 of
//! each. One more line compares `coordinate` with its floor, what its
//! guarantees cannot do without: a step's outcome is durable, so its floor
//! is the bare acquire + release plus one fsynced local write. (A `when`
//! handler's claim is held ahead of its events, so its floor is the remote
//! event itself.) Then `toolkit_floor_ratio <max of the coordinate-vs-floor
//! and when-vs-event p50 ratios>`, and last `toolkit_ratio <max of the
//! first two p50 ratios>`.

use std::time::{Duration, Instant};

use concord::{Error, Node};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

const ROUNDS: usize = 5;
const PER_ROUND: usize = 40;

async fn node(dir: &std::path::Path, bootstrap: Option<concord::Multiaddr>) -> Node {
    let mut builder = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"));
    if let Some(addr) = bootstrap {
        builder = builder.bootstrap(addr);
    }
    builder.build().await.expect("node")
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Prints one pair's p50 and p99; returns the p50 ratio.
fn report(what: &str, tool: &mut [Duration], base: &mut [Duration]) -> f64 {
    let (t50, t99) = (percentile(tool, 0.5), percentile(tool, 0.99));
    let (b50, b99) = (percentile(base, 0.5), percentile(base, 0.99));
    let ratio = t50.as_secs_f64() / b50.as_secs_f64();
    println!(
        "{what}: p50 {:.2} ms vs {:.2} ms, p99 {:.2} ms vs {:.2} ms, p50 ratio {ratio:.2}",
        ms(t50),
        ms(b50),
        ms(t99),
        ms(b99)
    );
    ratio
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = node(&dir.path().join("a"), None).await;
        let addr = a
            .wait_listening(Duration::from_secs(5))
            .await
            .expect("listening")[0]
            .clone();
        let b = node(&dir.path().join("b"), Some(addr)).await;
        let (sa, sb) = (
            a.space("bench").await.expect("space"),
            b.space("bench").await.expect("space"),
        );
        let leases = b.space_lease(&sb).await.expect("quorum");

        // emit → when on b; put → subscription event on b.
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let _handler = sb
            .when("tick", move |_, _| {
                let tx = started_tx.clone();
                async move {
                    let _ = tx.send(Instant::now());
                    Ok::<_, Error>(())
                }
            })
            .start()
            .expect("handler");
        // Timed where it arrives, as the handler's start is: in a task of
        // its own on b, not when the writer's call returns.
        let mut puts = sb.subscribe("observation/tick").await.expect("subscribe");
        let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
        let _arrivals = tokio::spawn(async move {
            while puts.next().await.is_some() {
                let _ = arrived_tx.send(Instant::now());
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;

        let (mut step, mut lease) = (Vec::new(), Vec::new());
        let (mut when, mut event, mut durable) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            for i in 0..PER_ROUND {
                let t = Instant::now();
                let held = leases
                    .acquire(
                        concord::Resource::new("bench").expect("name"),
                        concord::Millis(10_000),
                        concord::Millis(10_000),
                    )
                    .await
                    .expect("acquire");
                leases.release(held).await.expect("release");
                lease.push(t.elapsed());

                let t = Instant::now();
                sb.put("observation/durable", json!(i)).await.expect("put");
                durable.push(t.elapsed());

                let t = Instant::now();
                sb.coordinate("agent")
                    .lock("bench")
                    .run(|_| async { Ok::<_, Error>(()) })
                    .await
                    .expect("step");
                step.push(t.elapsed());

                let t = Instant::now();
                sa.put("observation/tick", json!(round * PER_ROUND + i))
                    .await
                    .expect("put");
                let at = arrived.recv().await.expect("event");
                event.push(at - t);

                let t = Instant::now();
                sa.emit("tick", json!(i)).await.expect("emit");
                let at = started.recv().await.expect("handler start");
                when.push(at - t);
            }
        }
        println!(
            "toolkit: two nodes on loopback, {} samples each, interleaved in {ROUNDS} rounds",
            ROUNDS * PER_ROUND
        );
        // A step's outcome is durable: its floor is the lease plus one
        // fsynced write.
        let mut step_floor: Vec<Duration> =
            lease.iter().zip(&durable).map(|(l, d)| *l + *d).collect();
        let r1 = report(
            "coordinate step vs bare lease acquire+release",
            &mut step,
            &mut lease,
        );
        let r2 = report(
            "emit -> remote when start vs put -> remote event",
            &mut when,
            &mut event,
        );
        let f1 = report(
            "coordinate step vs bare lease acquire+release + durable put",
            &mut step,
            &mut step_floor,
        );
        drop((sa, sb, leases));
        a.shutdown().await.expect("shutdown");
        b.shutdown().await.expect("shutdown");
        println!("toolkit_floor_ratio {:.2}", f1.max(r2));
        println!("toolkit_ratio {:.2}", r1.max(r2));
    });
}
