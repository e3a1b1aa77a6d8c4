//! In-process nodes on loopback for the examples: the first starts alone
//! (and so declares itself the lease quorum of the spaces it opens), the
//! others join it ([`concord::testing::joined_in`]).
//!
//! This module owns starting and stopping the examples' nodes and taking
//! their locks. It never writes to a space itself.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use concord::{HeldLock, Multiaddr, Node, Space};

use crate::ExampleError;

/// How long a node may take to listen, and nodes to meet or converge.
pub(crate) const DEADLINE: Duration = Duration::from_secs(15);

/// One node with the example's space open on it.
pub(crate) struct Member {
    /// `node-1`, `node-2`, ...
    pub name: String,
    pub node: Node,
    pub space: Space,
    /// Its own listen address.
    pub addr: Multiaddr,
}

/// Starts a node in `dir` listening on a free loopback port, with no peer,
/// and opens `space` on it.
pub(crate) async fn start(name: &str, dir: &Path, space: &str) -> Result<Member, ExampleError> {
    let listen = "/ip4/127.0.0.1/tcp/0"
        .parse()
        .map_err(|e| ExampleError::Io {
            what: "the loopback listen address",
            source: std::io::Error::other(e),
        })?;
    let node = Node::builder().data_dir(dir).listen(listen).build().await?;
    member(name, node, space).await
}

/// `node`, named `name`, with its listen address and `space` open on it.
async fn member(name: &str, node: Node, space: &str) -> Result<Member, ExampleError> {
    let addr = node
        .wait_listening(DEADLINE)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ExampleError::Timeout(format!("{name} is not listening")))?;
    let space = node.space(space).await?;
    Ok(Member {
        name: name.to_owned(),
        node,
        space,
        addr,
    })
}

/// `n` nodes in `root/node-<i>`, each joined to the ones before it
/// ([`concord::testing::joined_in`]), `space` open on each.
#[tracing::instrument(level = "debug", skip(root))]
pub(crate) async fn joined(
    root: &Path,
    n: usize,
    space: &str,
) -> Result<Vec<Member>, ExampleError> {
    let mut members = Vec::with_capacity(n);
    for (i, node) in (1..).zip(concord::testing::joined_in(root, n).await?) {
        let name = format!("node-{i}");
        let node = Arc::into_inner(node)
            .ok_or_else(|| ExampleError::Timeout(format!("{name} is still shared")))?;
        members.push(member(&name, node, space).await?);
    }
    Ok(members)
}

/// Shuts every node down cleanly.
pub(crate) async fn shutdown(members: Vec<Member>) -> Result<(), ExampleError> {
    for m in members {
        drop(m.space);
        m.node.shutdown().await?;
    }
    Ok(())
}

/// The member whose node has `peer_id` (as a string), by name.
pub(crate) fn name_of(members: &[Member], peer_id: &str) -> String {
    members
        .iter()
        .find(|m| m.node.peer_id().to_string() == peer_id)
        .map_or_else(|| format!("peer {peer_id}"), |m| m.name.clone())
}

/// Takes `resource` in `space` from its lease quorum for `ttl`, as
/// `holder`, waiting while others hold it.
pub(crate) async fn lock(
    space: &Space,
    resource: &str,
    ttl: Duration,
    holder: &str,
) -> Result<HeldLock, ExampleError> {
    let backend = space.lease_backend().await?;
    Ok(HeldLock::acquire(backend, space, resource, ttl, holder).await?)
}
