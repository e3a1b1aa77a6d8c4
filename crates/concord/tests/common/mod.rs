//! Clusters of in-process nodes on loopback, shared by the multi-node
//! tests: [`concord::testing`] with the lease service's log in the test's
//! output.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part

use std::sync::Arc;

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
