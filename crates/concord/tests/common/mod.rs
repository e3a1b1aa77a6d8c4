//! Clusters of in-process nodes on loopback, shared by the multi-node
//! tests.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part

use std::sync::Arc;
use std::time::Duration;

use concord::{LeasePeer, Node, NodeId};

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends the lease service's log to the test's output, which the harness
/// shows for a failing test only.
fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_ansi(false)
        .with_env_filter("warn,concord_net::lease=debug,concord_lease=debug")
        .try_init();
}

/// `n` nodes, each a lease peer of the same quorum, syncing through the first.
pub async fn quorum(root: &std::path::Path, n: u16) -> Vec<Arc<Node>> {
    trace();
    let dirs: Vec<_> = (1..=n).map(|i| root.join(format!("node-{i}"))).collect();
    let peers: Vec<LeasePeer> = (1..=n)
        .zip(&dirs)
        .map(|(i, dir)| LeasePeer {
            node: NodeId(i),
            peer_id: Node::peer_id_in(dir).unwrap(),
            addr: format!("/ip4/127.0.0.1/tcp/{}", free_port())
                .parse()
                .unwrap(),
        })
        .collect();
    let mut nodes: Vec<Arc<Node>> = Vec::new();
    for dir in &dirs {
        let mut builder = Node::builder()
            .data_dir(dir)
            .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .lease_peers(peers.clone());
        if let Some(first) = nodes.first() {
            let addr = first.wait_listening(Duration::from_secs(5)).await.unwrap()[0].clone();
            builder = builder.bootstrap(addr);
        }
        nodes.push(Arc::new(builder.build().await.unwrap()));
    }
    nodes
}

/// `n` nodes with no lease configuration: the first starts alone (and so
/// declares itself the quorum of the spaces it opens), the others join it.
pub async fn joined(root: &std::path::Path, n: u16) -> Vec<Arc<Node>> {
    trace();
    let mut nodes: Vec<Arc<Node>> = Vec::new();
    for i in 1..=n {
        let mut builder = Node::builder()
            .data_dir(root.join(format!("node-{i}")))
            .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap());
        if let Some(first) = nodes.first() {
            let addr = first.wait_listening(Duration::from_secs(5)).await.unwrap()[0].clone();
            builder = builder.bootstrap(addr);
        }
        nodes.push(Arc::new(builder.build().await.unwrap()));
    }
    nodes
}

/// Polls `check` until it is true or 10 s pass.
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached in 10 s");
}

/// Shuts every node down.
pub async fn shutdown(nodes: Vec<Arc<Node>>) {
    for node in nodes {
        Arc::into_inner(node).unwrap().shutdown().await.unwrap();
    }
}
