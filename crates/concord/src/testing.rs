//! `concord::testing`: spaces of in-process nodes for testing agents.
//!
//! A [`Cluster`] is one or more real [`Node`]s in a temporary directory
//! that it deletes when dropped, talking over loopback only, with a lease
//! quorum, so that what an agent does under test is what it does deployed:
//! the same replicas, locks, handoffs and events. Tests drive agents step
//! by step ([`crate::toolkit::Runner::tick`]) and wait for replication with
//! [`Cluster::converged`], not with sleeps:
//!
//! ```
//! # async fn example() -> anyhow::Result<()> {
//! use concord::testing::Cluster;
//! use serde_json::json;
//! use std::time::Duration;
//!
//! let cluster = Cluster::joined(2).await?;
//! let [a, b] = [0, 1].map(|i| cluster.node(i));
//! a.space("fleet").await?.put("observation/disk", json!(93)).await?;
//! cluster.converged("fleet", Duration::from_secs(10)).await?;
//! assert_eq!(b.space("fleet").await?.get("observation/disk").await?, Some(json!(93)));
//! cluster.shutdown().await?;
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
//! ```
//!
//! **Virtual time.** A [`Cluster::solo`] node runs under tokio's paused
//! clock (`#[tokio::test(start_paused = true)]`, tokio's `test-util`
//! feature): the agent under test is alone in its space, the test writes
//! what its peers and the outside world would (observation channels,
//! intents), ticks it and asserts on what it wrote, and every timer of the
//! node and the agent (lease ttls and renewals, retries, the runner's
//! interval) runs on the virtual clock, so an hour of an agent's life takes
//! a fraction of a second (`crates/concord/tests/virtual_clock.rs`).
//! Clusters of several nodes talk over loopback sockets, and a paused
//! clock jumps ahead while a socket waits: run them on the real clock.
//!
//! This module owns test topologies and the convergence wait; it never
//! changes how a node behaves (no test-only switch reaches a node).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, LeasePeer, Node, NodeId, Space};

/// How long a node waits for the first node's listen address.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// Nodes of one test, in a temporary directory of their own.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Arc<Node>>,
    // Dropped after the nodes that live in it (fields drop in order).
    _root: tempfile::TempDir,
}

impl Cluster {
    /// One node: its spaces' lease quorum is the node itself.
    ///
    /// # Errors
    /// The node could not start.
    pub async fn solo() -> Result<Cluster, Error> {
        Cluster::joined(1).await
    }

    /// `n` nodes with no lease configuration: the first starts alone (and
    /// so declares itself the quorum of the spaces it opens), the others
    /// join it and each other.
    ///
    /// # Errors
    /// A node could not start.
    pub async fn joined(n: usize) -> Result<Cluster, Error> {
        let root = temp_root()?;
        let nodes = joined_in(root.path(), n).await?;
        Ok(Cluster { nodes, _root: root })
    }

    /// `n` nodes that are each a lease peer of the same quorum (locks
    /// survive the loss of a minority of them), each connected to the
    /// others.
    ///
    /// # Errors
    /// A node could not start.
    pub async fn quorum(n: usize) -> Result<Cluster, Error> {
        let root = temp_root()?;
        let nodes = quorum_in(root.path(), n).await?;
        Ok(Cluster { nodes, _root: root })
    }

    /// Node `i` (from 0).
    ///
    /// # Panics
    /// If there is no node `i`: a mistake in the test.
    pub fn node(&self, i: usize) -> &Arc<Node> {
        &self.nodes[i]
    }

    /// All the nodes.
    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// Space `name` on every node, in node order.
    ///
    /// # Errors
    /// As [`Node::space`].
    pub async fn space(&self, name: &str) -> Result<Vec<Space>, Error> {
        let mut spaces = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            spaces.push(node.space(name).await?);
        }
        Ok(spaces)
    }

    /// Waits until every node's replica of space `name` has seen the same
    /// writes (equal vector clocks), for at most `within`.
    ///
    /// # Errors
    /// [`Error::Timeout`] once `within` has passed.
    pub async fn converged(&self, name: &str, within: Duration) -> Result<(), Error> {
        Space::converge(&self.space(name).await?, within)
            .await
            .map(drop)
    }

    /// Shuts every node down, then deletes their directory.
    ///
    /// # Errors
    /// The first node that failed to shut down cleanly; the others are
    /// still shut down.
    pub async fn shutdown(self) -> Result<(), Error> {
        let mut first = Ok(());
        for node in self.nodes {
            let result = match Arc::try_unwrap(node) {
                Ok(node) => node.shutdown().await,
                // Still shared by the test: it stops when the last clone goes.
                Err(_) => Ok(()),
            };
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

fn temp_root() -> Result<tempfile::TempDir, Error> {
    tempfile::tempdir().map_err(|source| Error::Io {
        what: "creating the test directory",
        path: std::env::temp_dir().display().to_string(),
        source,
    })
}

/// [`Cluster::joined`] in `root`'s subdirectories `node-1` ... `node-n`:
/// for tests that restart a node from its directory.
///
/// # Errors
/// A node could not start.
pub async fn joined_in(root: &Path, n: usize) -> Result<Vec<Arc<Node>>, Error> {
    let mut nodes: Vec<Arc<Node>> = Vec::with_capacity(n);
    for i in 1..=n {
        let builder = Node::builder().data_dir(root.join(format!("node-{i}")));
        nodes.push(Arc::new(start(builder, &nodes).await?));
    }
    Ok(nodes)
}

/// [`Cluster::quorum`] in `root`'s subdirectories `node-1` ... `node-n`.
///
/// # Errors
/// A node could not start.
pub async fn quorum_in(root: &Path, n: usize) -> Result<Vec<Arc<Node>>, Error> {
    let dirs: Vec<_> = (1..=n).map(|i| root.join(format!("node-{i}"))).collect();
    let mut peers = Vec::with_capacity(n);
    for (i, dir) in (1..).zip(&dirs) {
        peers.push(LeasePeer {
            node: NodeId(i),
            peer_id: Node::peer_id_in(dir)?,
            addr: loopback(free_port()?),
        });
    }
    let mut nodes: Vec<Arc<Node>> = Vec::with_capacity(n);
    for dir in &dirs {
        let builder = Node::builder().data_dir(dir).lease_peers(peers.clone());
        nodes.push(Arc::new(start(builder, &nodes).await?));
    }
    Ok(nodes)
}

/// Starts `builder` listening on loopback, connected to every node of
/// `earlier`: a full mesh, so that the others still sync when any one of
/// them is stopped.
async fn start(builder: crate::NodeBuilder, earlier: &[Arc<Node>]) -> Result<Node, Error> {
    let mut builder = builder.listen(loopback(0));
    for node in earlier {
        let addrs = node.wait_listening(LISTEN_WAIT).await?;
        if let Some(addr) = addrs.into_iter().next() {
            builder = builder.bootstrap(addr);
        }
    }
    builder.build().await
}

fn loopback(port: u16) -> crate::Multiaddr {
    crate::Multiaddr::from(std::net::Ipv4Addr::LOCALHOST)
        .with(concord_net::multiaddr::Protocol::Tcp(port))
}

/// A TCP port free on loopback now (for lease peers, whose addresses must
/// be known before they start).
fn free_port() -> Result<u16, Error> {
    let io = |source| Error::Io {
        what: "finding a free port",
        path: "127.0.0.1".into(),
        source,
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(io)?;
    Ok(listener.local_addr().map_err(io)?.port())
}
