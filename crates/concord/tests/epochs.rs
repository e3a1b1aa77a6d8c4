//! Epochs between real nodes on loopback: nodes that write concurrently cut
//! often, converge on one epoch and state, and a node restarted after its
//! cuts recovers them from disk and goes on.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use concord::Node;
use concord_state::EpochConfig;

async fn node(dir: &std::path::Path, bootstrap: Option<concord::Multiaddr>) -> Node {
    let mut b = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .epochs(EpochConfig {
            max_changes: 20,
            ..EpochConfig::default()
        });
    if let Some(a) = bootstrap {
        b = b.bootstrap(a);
    }
    b.build().await.unwrap()
}

/// Polls `check` until it is true or 20 s pass.
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached in 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_cut_converge_and_recover_their_epochs() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), None).await;
    let a_addr = a.wait_listening(Duration::from_secs(5)).await.unwrap()[0].clone();
    let b = node(dirs[1].path(), Some(a_addr.clone())).await;
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
    let b = node(dirs[1].path(), Some(a_addr)).await;
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
