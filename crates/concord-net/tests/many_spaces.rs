//! Two drivers sharing a thousand spaces: a change in one space reaches
//! the other node on the fast path at once (gossipsub learns every topic of
//! the peer, however many), and once in sync the two idle on summaries.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use concord_net::{NetConfig, NetHandle, SpaceOptions, identity};
use concord_state::{ActorId, Delivery, Millis, Replica};
use concord_storage::{MemDisk, MemStorage};
use futures::StreamExt;

const SPACES: usize = 1_000;

/// A node on loopback holding [`SPACES`] fresh spaces on one simulated disk.
async fn node(actor: u8) -> NetHandle {
    let key = identity::Keypair::generate_ed25519();
    let handle = concord_net::spawn(NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        ..NetConfig::new(key)
    })
    .unwrap();
    let disk = MemDisk::new();
    let actor = ActorId::from(&[actor; 16][..]);
    for name in (0..SPACES).map(|i| format!("s-{i}")) {
        let storage = Box::new(MemStorage::new(disk.clone(), &name));
        let replica = Replica::new(&name, actor.clone());
        let opened = handle.open_space(replica, storage, SpaceOptions::default());
        opened.await.unwrap();
    }
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_spaces_on_the_fast_path_and_idle() {
    let (a, b) = (node(1).await, node(2).await);
    let addr = loop {
        if let Some(addr) = a.listen_addrs().await.unwrap().pop() {
            break addr;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    b.dial(addr).await.unwrap();
    while a.peers().await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Subscriptions and meshes settle within a gossipsub heartbeat or two.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for k in [7, 512, 999] {
        let space = format!("s-{k}");
        let mut events = b.subscribe(&space, "observation/*", 8).await.unwrap();
        let t0 = Instant::now();
        a.with_replica(&space, |r| r.put(Millis(10), "observation/x", &1))
            .await
            .unwrap()
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
        assert!(matches!(got, Ok(Some(Delivery::Event(_)))));
        // Well under the summaries' heartbeat: gossip carried it.
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "{:?}",
            t0.elapsed()
        );
    }
    assert!(b.traffic().gossip.received_messages >= 3);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = (a.traffic(), b.traffic());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ta, tb) = (a.traffic(), b.traffic());
    let sent = ta.sent_bytes() - before.0.sent_bytes() + tb.sent_bytes() - before.1.sent_bytes();
    let messages = ta.sync.sent_messages - before.0.sync.sent_messages + tb.sync.sent_messages
        - before.1.sync.sent_messages;
    assert!(sent < 250, "{sent} bytes in 3 s idle over {SPACES} spaces");
    assert!((1..=6).contains(&messages), "{messages} frames in 3 s idle");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
