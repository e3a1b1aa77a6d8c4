//! Clusters of in-process nodes on loopback, shared by the multi-node
//! tests: [`concord::testing`] with the lease service's log in the test's
//! output.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part

use std::sync::Arc;
use std::time::Duration;

use concord::Node;

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
pub async fn quorum(root: &std::path::Path, n: usize) -> Vec<Arc<Node>> {
    trace();
    concord::testing::quorum_in(root, n).await.unwrap()
}

/// `n` nodes with no lease configuration: the first starts alone (and so
/// declares itself the quorum of the spaces it opens), the others join it.
pub async fn joined(root: &std::path::Path, n: usize) -> Vec<Arc<Node>> {
    trace();
    concord::testing::joined_in(root, n).await.unwrap()
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
