//! Real nodes on loopback inside one process: writes propagate, concurrent
//! writes converge, subscriptions see remote events, a node that restarts
//! catches up, an allowlisted space refuses strangers, nodes that only
//! speak QUIC sync over it, ephemeral heartbeats reach peers (and a node
//! that joins later) without entering the document, nodes that cut epochs
//! often converge on one and recover it after a restart, and two nodes
//! sharing a hundred spaces stay converged and idle with one summary a second.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::eventually;
use concord::{Delivery, Node};
use futures::StreamExt;
use serde_json::json;

async fn node(dir: &std::path::Path, bootstrap: &[concord::Multiaddr]) -> Node {
    let mut b = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap());
    for a in bootstrap {
        b = b.bootstrap(a.clone());
    }
    b.build().await.unwrap()
}

async fn addr(n: &Node) -> concord::Multiaddr {
    n.wait_listening(Duration::from_secs(5)).await.unwrap()[0].clone()
}

/// A node whose spaces cut their epoch every 20 changes.
async fn cutting_node(dir: &std::path::Path, bootstrap: Option<concord::Multiaddr>) -> Node {
    let mut b = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .epochs(concord_state::EpochConfig {
            max_changes: 20,
            ..concord_state::EpochConfig::default()
        });
    if let Some(a) = bootstrap {
        b = b.bootstrap(a);
    }
    b.build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &[]).await;
    let a_addr = addr(&a).await;
    let b = node(dirs[1].path(), std::slice::from_ref(&a_addr)).await;
    let c = node(dirs[2].path(), &[a_addr]).await;
    let (sa, sb, sc) = (
        a.space("team").await.unwrap(),
        b.space("team").await.unwrap(),
        c.space("team").await.unwrap(),
    );
    let mut events = sc.subscribe("intent/*").await.unwrap();
    sa.put("observation/ci", json!("green")).await.unwrap();
    sb.topic::<String>("intent/ops")
        .unwrap()
        .append(&"deploy".into())
        .await
        .unwrap();
    eventually(|| async { sc.get("observation/ci").await.unwrap() == Some(json!("green")) }).await;
    let got = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    assert!(matches!(got, Some(Delivery::Event(e)) if e.new == Some(json!("deploy"))));
    // concurrent writes converge
    for (i, s) in [&sa, &sb, &sc].into_iter().enumerate() {
        s.put("observation/x", json!(i)).await.unwrap();
    }
    eventually(|| async {
        let (x, y, z) = (
            sa.vector_clock().await.unwrap(),
            sb.vector_clock().await.unwrap(),
            sc.vector_clock().await.unwrap(),
        );
        x == y && y == z
    })
    .await;
    let v = sa.get("observation/x").await.unwrap();
    assert_eq!(sb.get("observation/x").await.unwrap(), v);
    assert_eq!(sc.get("observation/x").await.unwrap(), v);
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_catches_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &[]).await;
    let a_addr = addr(&a).await;
    let b = node(dirs[1].path(), std::slice::from_ref(&a_addr)).await;
    let b_id = b.peer_id();
    let sb = b.space("team").await.unwrap();
    let sa = a.space("team").await.unwrap();
    sb.put("observation/before", json!(1)).await.unwrap();
    eventually(|| async { sa.get("observation/before").await.unwrap().is_some() }).await;
    b.shutdown().await.unwrap();
    sa.put("observation/while_down", json!(2)).await.unwrap();
    let b = node(dirs[1].path(), std::slice::from_ref(&a_addr)).await;
    assert_eq!(b.peer_id(), b_id);
    let sb = b.space("team").await.unwrap();
    assert_eq!(sb.get("observation/before").await.unwrap(), Some(json!(1)));
    eventually(|| async { sb.get("observation/while_down").await.unwrap() == Some(json!(2)) })
        .await;

    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlisted_space_refuses_a_stranger() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // First run: learn the (persisted) peer ids.
    let mut ids = Vec::new();
    for d in &dirs {
        let n = node(d.path(), &[]).await;
        ids.push(n.peer_id());
        n.shutdown().await.unwrap();
    }
    let members = [ids[0], ids[1]];
    let build = |dir: &std::path::Path, boot: Option<concord::Multiaddr>, allow: bool| {
        let mut b = Node::builder()
            .data_dir(dir)
            .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap());
        if let Some(a) = boot {
            b = b.bootstrap(a);
        }
        if allow {
            b = b.allow("secret", members);
        }
        b.build()
    };
    let a = build(dirs[0].path(), None, true).await.unwrap();
    let a_addr = addr(&a).await;
    let b = build(dirs[1].path(), Some(a_addr.clone()), true)
        .await
        .unwrap();
    let c = build(dirs[2].path(), Some(a_addr), false).await.unwrap();
    assert_eq!(
        [a.peer_id(), b.peer_id(), c.peer_id()],
        [ids[0], ids[1], ids[2]]
    );
    let (sa, sb, sc) = (
        a.space("secret").await.unwrap(),
        b.space("secret").await.unwrap(),
        c.space("secret").await.unwrap(),
    );
    eventually(|| async { c.peers().await.unwrap().iter().any(|p| p.peer_id == ids[0]) }).await;
    sa.put("observation/plan", json!("members only"))
        .await
        .unwrap();
    sc.put("observation/plan", json!("intruder")).await.unwrap();
    eventually(|| async {
        sb.get("observation/plan").await.unwrap() == Some(json!("members only"))
    })
    .await;
    // Give the stranger every chance (several heartbeats) to leak in either direction.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        sa.get("observation/plan").await.unwrap(),
        Some(json!("members only"))
    );
    assert_eq!(
        sb.get("observation/plan").await.unwrap(),
        Some(json!("members only"))
    );
    assert_eq!(
        sc.get("observation/plan").await.unwrap(),
        Some(json!("intruder"))
    );
    // The stranger holds only its own change: nothing of a's (the genesis
    // change is no write and counts in no vector clock).
    assert_eq!(sc.vector_clock().await.unwrap().len(), 1);
    assert_eq!(
        sa.vector_clock().await.unwrap(),
        sb.vector_clock().await.unwrap()
    );
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sync_over_quic() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let quic: concord::Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap();
    let a = Node::builder()
        .data_dir(dirs[0].path())
        .listen(quic.clone())
        .build()
        .await
        .unwrap();
    let a_addr = addr(&a).await;
    assert!(a_addr.to_string().contains("/quic-v1"), "{a_addr}");
    let b = Node::builder()
        .data_dir(dirs[1].path())
        .listen(quic)
        .bootstrap(a_addr)
        .build()
        .await
        .unwrap();
    let (sa, sb) = (
        a.space("edge").await.unwrap(),
        b.space("edge").await.unwrap(),
    );
    let mut events = sa.subscribe("observation/*").await.unwrap();
    sb.put("observation/battery", json!(81)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    assert!(matches!(got, Some(Delivery::Event(e)) if e.new == Some(json!(81))));
    sa.put("observation/mode", json!("eco")).await.unwrap();
    eventually(|| async { sb.get("observation/mode").await.unwrap() == Some(json!("eco")) }).await;
    // The only transport either node has is QUIC.
    let peers = b.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    let via = peers[0].address.as_ref().unwrap().to_string();
    assert!(via.contains("/quic-v1"), "{via}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_heartbeats_reach_peers_and_late_joiners() {
    const BEAT: &str = "observation/a.heartbeat";
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &[]).await;
    let a_addr = addr(&a).await;
    let b = node(dirs[1].path(), std::slice::from_ref(&a_addr)).await;
    let (sa, sb) = (
        a.space("team").await.unwrap(),
        b.space("team").await.unwrap(),
    );
    let mut events = sb.subscribe("observation/*").await.unwrap();
    let beat = sa.ephemeral::<u32>(BEAT, Duration::from_secs(30)).unwrap();
    beat.set(&0).await.unwrap(); // declares the channel: one change
    let changes = sa.vector_clock().await.unwrap().total();
    // Like any heartbeat: published again and again, until b has seen one.
    let mut sent = 0;
    let seen = loop {
        sent += 1;
        assert!(sent < 100, "no heartbeat reached b");
        beat.set(&sent).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(100), events.next()).await {
            Ok(Some(Delivery::Event(e))) if e.ephemeral => break e,
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("subscription closed"),
        }
    };
    assert_eq!(seen.path.as_str(), BEAT);
    assert_eq!(seen.origin, concord::Origin::Remote);
    assert_eq!(&seen.position.actor, a.actor());
    assert_eq!(seen.position.seq, 0);
    assert!(seen.new.is_some());
    let last = sent;
    let on_b = sb.ephemeral::<u32>(BEAT, Duration::from_secs(30)).unwrap();
    eventually(|| async { on_b.get().await.unwrap() == [(a.actor().clone(), last)] }).await;
    assert_eq!(
        sb.get(BEAT).await.unwrap(),
        Some(json!({ a.actor().to_hex_string(): last }))
    );
    // No heartbeat added to the document, on either side.
    assert_eq!(sa.vector_clock().await.unwrap().total(), changes);
    eventually(|| async { sb.vector_clock().await.unwrap() == sa.vector_clock().await.unwrap() })
        .await;

    // A node that joins later is handed the current value; a writes nothing more.
    let c = node(dirs[2].path(), &[a_addr]).await;
    let sc = c.space("team").await.unwrap();
    let on_c = sc.ephemeral::<u32>(BEAT, Duration::from_secs(30)).unwrap();
    eventually(|| async { on_c.get().await.unwrap() == [(a.actor().clone(), last)] }).await;
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_cut_converge_and_recover_their_epochs() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = cutting_node(dirs[0].path(), None).await;
    let a_addr = addr(&a).await;
    let b = cutting_node(dirs[1].path(), Some(a_addr.clone())).await;
    let (sa, sb) = (
        a.space("team").await.unwrap(),
        b.space("team").await.unwrap(),
    );
    let (na, nb) = (
        sa.counter("observation/n").unwrap(),
        sb.counter("observation/n").unwrap(),
    );
    let epoch = |s: &concord::Space| {
        let s = s.clone();
        async move { s.with(|r| (r.epoch().id, r.epoch().number)).await.unwrap() }
    };
    // six rounds of twenty concurrent changes, each past the threshold
    for round in 1..=6u64 {
        for _ in 0..10 {
            na.add(1).await.unwrap();
            nb.add(10).await.unwrap();
        }
        eventually(|| async {
            let (x, y) = (epoch(&sa).await, epoch(&sb).await);
            x.0 == y.0 && y.1 >= round.min(3)
        })
        .await;
    }
    eventually(|| async { na.value().await.unwrap() == 660 && nb.value().await.unwrap() == 660 })
        .await;
    eventually(|| async { epoch(&sa).await.0 == epoch(&sb).await.0 }).await;
    let (id, switches) = epoch(&sb).await;
    assert!(
        switches >= 3,
        "120 changes at 20 per epoch: {switches} switches"
    );
    // b restarts from its disk: same epoch, same state, and goes on
    b.shutdown().await.unwrap();
    let b = cutting_node(dirs[1].path(), Some(a_addr)).await;
    let sb = b.space("team").await.unwrap();
    assert_eq!(sb.with(|r| r.epoch().id).await.unwrap(), id);
    let nb = sb.counter("observation/n").unwrap();
    assert_eq!(nb.value().await.unwrap(), 660);
    nb.add(5).await.unwrap();
    eventually(|| async { na.value().await.unwrap() == 665 }).await;
    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_many_spaces_stay_converged_and_idle_quietly() {
    const SPACES: usize = 100;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &[]).await;
    let b = node(dirs[1].path(), &[addr(&a).await]).await;
    let names: Vec<String> = (0..SPACES).map(|i| format!("s-{i}")).collect();
    let mut spaces = Vec::new();
    for name in &names {
        spaces.push((a.space(name).await.unwrap(), b.space(name).await.unwrap()));
    }
    // Writes to random spaces on either node, some of them concurrent.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..300u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (sa, sb) = &spaces[(seed % SPACES as u64) as usize];
        let on = if seed & 0x100 == 0 { sa } else { sb };
        on.put(&format!("observation/k{}", i % 5), json!(i))
            .await
            .unwrap();
    }
    let converged = || async {
        for (sa, sb) in &spaces {
            if sa.vector_clock().await.unwrap() != sb.vector_clock().await.unwrap() {
                return false;
            }
        }
        true
    };
    eventually(converged).await;
    for (sa, sb) in &spaces {
        for k in 0..5 {
            let path = format!("observation/k{k}");
            assert_eq!(sa.get(&path).await.unwrap(), sb.get(&path).await.unwrap());
        }
    }
    // In sync, the two exchange about one small summary per second for all
    // hundred spaces: nothing per space.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = (a.net().traffic(), b.net().traffic());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = (a.net().traffic(), b.net().traffic());
    let sent =
        after.0.sent_bytes() - before.0.sent_bytes() + after.1.sent_bytes() - before.1.sent_bytes();
    assert!(
        sent < 1_000,
        "{sent} bytes in 3 s of idling over {SPACES} spaces"
    );
    assert!(converged().await);
    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}
