//! Propagation latency on loopback: a `put` on one node to the subscription
//! event on another, beside raw libp2p gossipsub publish-to-receive latency
//! for a message of the same size, in the same run; plus sustained writes/s
//! across three nodes.
//!
//! Two raw baselines run interleaved with Concord: gossipsub with libp2p's
//! defaults (signed messages), and gossipsub with the settings Concord's fast
//! path uses (anonymous messages, content ids). The first is what an
//! application gets from gossipsub directly, the second isolates Concord's
//! own cost (automerge commit, apply, events). Last line:
//! `latency_ratio <concord p50 / default gossipsub p50>`.

use std::time::{Duration, Instant};

use common::percentile;
use concord_net::{NetConfig, NetHandle, identity};
use concord_state::{ActorId, Delivery, Millis, Replica};
use concord_sync::wire;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, gossipsub, noise, tcp, yamux};
use tokio::sync::mpsc;

mod common;

const SAMPLES: usize = 300;
const SUSTAINED_PER_NODE: usize = 500;
/// Concurrent writers per node in the sustained run.
const SUSTAINED_WRITERS: usize = 4;

/// A node as `concord::Node` runs one: the space on disk (`FileStorage` in
/// `dir`) kept by the driver, which writes what the replica hands out,
/// fsyncs every write while its gossip is on the way and answers after the
/// fsync.
async fn concord_node(
    boot: Option<Multiaddr>,
    actor: u8,
    dir: &std::path::Path,
) -> (NetHandle, Multiaddr) {
    let mut config = NetConfig::new(identity::Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    config.bootstrap = boot.into_iter().collect();
    let handle = concord_net::spawn(config).expect("spawn");
    common::open_durable(&handle, dir, "bench", actor).await;
    let addr = common::listen_addr(&handle).await;
    (handle, addr)
}

struct ConcordRig {
    nodes: [NetHandle; 3],
    events: concord_net::Subscription,
    _dirs: tempfile::TempDir,
}

async fn concord_rig() -> (ConcordRig, usize) {
    let dirs = tempfile::tempdir().expect("tempdir");
    let (a, a_addr) = concord_node(None, 1, &dirs.path().join("a")).await;
    let (b, _) = concord_node(Some(a_addr.clone()), 2, &dirs.path().join("b")).await;
    let (c, _) = concord_node(Some(a_addr), 3, &dirs.path().join("c")).await;
    for h in [&a, &b, &c] {
        while h.peers().await.expect("peers").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // gossipsub meshes need a heartbeat or two
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = b
        .subscribe("bench", "observation/*", 1024)
        .await
        .expect("sub");
    // frame size of one such write, for the raw baseline
    let frame_len = a
        .with_replica("bench", |r| {
            let mut probe = Replica::new("bench", ActorId::from(&[9u8; 16][..]));
            probe.put(Millis(1), "observation/lat", &0u64).ok();
            let change = probe.own_changes_after(0);
            let _ = r;
            wire::Frame::Changes {
                space: "bench".into(),
                epoch: probe.epoch().id.0.0,
                changes: change,
            }
            .encoded_len()
        })
        .await
        .expect("probe");
    (
        ConcordRig {
            nodes: [a, b, c],
            events,
            _dirs: dirs,
        },
        frame_len,
    )
}

/// One put on node 0 until node 1's subscription shows it (the put's own
/// answer, which waits for node 0's fsync, is awaited alongside).
async fn concord_sample(rig: &mut ConcordRig, i: usize) -> Duration {
    let t0 = Instant::now();
    let put = rig.nodes[0].with_replica("bench", move |r| {
        r.put(concord_net::wall_clock(), "observation/lat", &(i as u64))
    });
    let events = &mut rig.events;
    let seen = async move {
        loop {
            match events.next().await {
                Some(Delivery::Event(e)) if e.new == Some(serde_json::json!(i as u64)) => {
                    return t0.elapsed();
                }
                Some(_) => continue,
                None => panic!("subscription ended"),
            }
        }
    };
    let (acked, latency) = tokio::join!(put, seen);
    acked.expect("with").expect("put");
    latency
}

/// Waits until every Concord node has finished the previous sample's
/// trailing work (receivers fsync after delivering the event), so that it
/// never lands inside a baseline's measurement: a no-op command is answered
/// only after its node's pending flush.
async fn settle(rig: &ConcordRig) {
    for node in &rig.nodes {
        node.with_replica("bench", |_| ()).await.expect("settle");
    }
}

/// Every node writes with [`SUSTAINED_WRITERS`] concurrent writers (each
/// waiting for its acknowledgement, i.e. its fsync) until all clocks agree;
/// returns writes/s across the three nodes.
async fn sustained(rig: ConcordRig) -> f64 {
    let [a, b, c] = rig.nodes;
    let t0 = Instant::now();
    let mut writers = Vec::new();
    for h in [&a, &b, &c] {
        for w in 0..SUSTAINED_WRITERS {
            let h = h.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..SUSTAINED_PER_NODE / SUSTAINED_WRITERS {
                    let key = format!("observation/k{w}-{}", i % 10);
                    h.with_replica("bench", move |r| {
                        r.put(concord_net::wall_clock(), key.as_str(), &i)
                    })
                    .await
                    .expect("with")
                    .expect("put");
                }
            }));
        }
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    loop {
        let mut clocks = Vec::new();
        for h in [&a, &b, &c] {
            clocks.push(
                h.with_replica("bench", |r| r.vector_clock().clone())
                    .await
                    .expect("clock"),
            );
        }
        if clocks.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = (3 * SUSTAINED_PER_NODE) as f64 / t0.elapsed().as_secs_f64();
    for h in [a, b, c] {
        h.shutdown().await.expect("shutdown");
    }
    rate
}

/// The two gossipsub settings the baseline runs with.
#[derive(Clone, Copy)]
enum Gossip {
    /// libp2p's defaults: every message signed by its author.
    Signed,
    /// Concord's fast path: anonymous messages identified by their content.
    Anonymous,
}

/// A bare gossipsub node: publishes what it is told, reports what it receives.
async fn raw_node(
    boot: Option<Multiaddr>,
    gossip: Gossip,
) -> (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>, Multiaddr) {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| {
            let mut config = gossipsub::ConfigBuilder::default();
            config
                .heartbeat_interval(Duration::from_millis(500))
                .flood_publish(true);
            let authenticity = match gossip {
                Gossip::Signed => gossipsub::MessageAuthenticity::Signed(key.clone()),
                Gossip::Anonymous => {
                    config
                        .validation_mode(gossipsub::ValidationMode::Anonymous)
                        .message_id_fn(|m: &gossipsub::Message| {
                            use sha2::{Digest, Sha256};
                            gossipsub::MessageId::from(&Sha256::digest(&m.data)[..20])
                        });
                    gossipsub::MessageAuthenticity::Anonymous
                }
            };
            gossipsub::Behaviour::<
                gossipsub::IdentityTransform,
                gossipsub::AllowAllSubscriptionFilter,
            >::new(authenticity, config.build().expect("config"))
            .expect("behaviour")
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let topic = gossipsub::IdentTopic::new("raw");
    swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    if let Some(b) = boot {
        swarm.dial(b).expect("dial");
    }
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let (pub_tx, mut pub_rx) = mpsc::channel::<Vec<u8>>(16);
    let (got_tx, got_rx) = mpsc::channel::<Vec<u8>>(1024);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(msg) = pub_rx.recv() => {
                    let _ = swarm.behaviour_mut().publish(topic.clone(), msg);
                }
                ev = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = ev
                        && got_tx.send(message.data).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    (pub_tx, got_rx, addr)
}

/// A bare node's publish and receive ends, kept alive for the whole run.
type RawEnds = (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>);

struct RawRig {
    publish: mpsc::Sender<Vec<u8>>,
    received: mpsc::Receiver<Vec<u8>>,
    _others: Vec<RawEnds>,
}

async fn raw_rig(gossip: Gossip) -> RawRig {
    let (a_pub, a_got, a_addr) = raw_node(None, gossip).await;
    let (b_pub, b_got, _) = raw_node(Some(a_addr.clone()), gossip).await;
    let (c_pub, c_got, _) = raw_node(Some(a_addr), gossip).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    RawRig {
        publish: a_pub,
        received: b_got,
        _others: vec![(b_pub, a_got), (c_pub, c_got)],
    }
}

/// One publish on node 0 until node 1 receives it.
async fn raw_sample(rig: &mut RawRig, i: usize, size: usize) -> Duration {
    let mut msg = vec![0u8; size.max(8)];
    msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let t0 = Instant::now();
    rig.publish.send(msg).await.expect("publish");
    loop {
        let got = rig.received.recv().await.expect("receive");
        if got[..8] == (i as u64).to_le_bytes() {
            break;
        }
    }
    t0.elapsed()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Samples alternate between the three stacks so background load hits all alike.
    let (mut ours, mut signed, mut anonymous, frame_len, rate) = rt.block_on(async {
        let (mut concord, frame_len) = concord_rig().await;
        let mut signed_rig = raw_rig(Gossip::Signed).await;
        let mut anonymous_rig = raw_rig(Gossip::Anonymous).await;
        let (mut ours, mut signed, mut anonymous) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..SAMPLES {
            ours.push(concord_sample(&mut concord, i).await);
            settle(&concord).await;
            signed.push(raw_sample(&mut signed_rig, i, frame_len).await);
            anonymous.push(raw_sample(&mut anonymous_rig, i, frame_len).await);
        }
        (ours, signed, anonymous, frame_len, sustained(concord).await)
    });
    for samples in [&mut ours, &mut signed, &mut anonymous] {
        samples.sort();
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p50 = |s: &[Duration]| percentile(s, 0.5).as_secs_f64();
    println!("three nodes on loopback, {SAMPLES} samples, message {frame_len} bytes");
    for (name, samples) in [
        ("concord put -> remote event            ", &ours),
        ("raw gossipsub, libp2p defaults (signed)", &signed),
        ("raw gossipsub, Concord's settings      ", &anonymous),
    ] {
        println!(
            "{name} p50 {:>6.0} us   p99 {:>6.0} us",
            us(percentile(samples, 0.5)),
            us(percentile(samples, 0.99))
        );
    }
    println!(
        "sustained: {rate:.0} durable writes/s across 3 nodes ({SUSTAINED_WRITERS} writers each, converged)"
    );
    println!(
        "latency_ratio_same_settings {:.3} (concord p50 / gossipsub with Concord's settings p50)",
        p50(&ours) / p50(&anonymous)
    );
    println!("latency_ratio {:.3}", p50(&ours) / p50(&signed));
}
