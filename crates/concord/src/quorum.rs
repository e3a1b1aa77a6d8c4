//! A space's lease quorum: the lease peers that grant every lock taken in
//! the space, declared once in the space ([`LEASE_QUORUM`]) and learned by
//! every member when it syncs.
//!
//! - A node started with [`crate::NodeBuilder::lease_peers`] declares that
//!   list in every space it opens; a node started with no bootstrap peer
//!   and no mDNS (the first node of a deployment) declares itself, a quorum
//!   of one. Joining nodes never declare: they learn the quorum.
//! - The declaration is first-write-wins: the earliest declaration stays,
//!   whatever the order in which replicas learn of them.
//! - A lock in the space is taken from that quorum: by this node's own
//!   lease service if it is one of the lease peers, otherwise through one
//!   of them ([`concord_net::lease::RemoteLeaseBackend`]). So locks taken
//!   on any node of the space exclude each other.
//!
//! This module owns the declaration's format and the choice of backend. It
//! must never grant a lock of its own: with no declaration (after waiting
//! [`QUORUM_WAIT`] for one to arrive) or a malformed one, a lock fails with
//! [`Error::LeaseQuorum`], saying how to configure one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_lease::{LeaseBackend, NodeId};
use concord_net::lease::{LeasePeer, QuorumLeaseBackend, RemoteLeaseBackend};
use concord_state::{ChannelSpec, Policy};
use serde::{Deserialize, Serialize};

use crate::{Error, Space};

/// The first-write-wins register holding a space's lease quorum, as
/// [`Declaration`] JSON.
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # let node = concord::Node::builder()
/// #     .data_dir(dir.path())
/// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
/// #     .build()
/// #     .await?;
/// use concord::LEASE_QUORUM;
///
/// // A node started without bootstrap peers declares itself.
/// let space = node.space("team").await?;
/// let declared = space.get(LEASE_QUORUM).await?.expect("declared on open");
/// assert_eq!(declared["members"][0]["peer"], node.peer_id().to_string());
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub const LEASE_QUORUM: &str = "coordination/lease.quorum";

/// How long a lock waits for a space's quorum declaration to arrive (a
/// node that just joined may not have synced it yet).
pub const QUORUM_WAIT: Duration = Duration::from_secs(10);

/// Most lease peers in a declaration (a majority of them grants a lock).
pub const MAX_QUORUM_MEMBERS: usize = 15;

/// The value of [`LEASE_QUORUM`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declaration {
    /// The lease peers.
    pub members: Vec<DeclaredPeer>,
}

/// One lease peer of a [`Declaration`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredPeer {
    /// Its lease node id.
    pub node: u16,
    /// Its libp2p peer id.
    pub peer: String,
    /// Where its lease service listens.
    pub addr: String,
}

impl Declaration {
    /// The declaration of `peers`.
    pub(crate) fn of(peers: &[LeasePeer]) -> Declaration {
        Declaration {
            members: peers
                .iter()
                .map(|p| DeclaredPeer {
                    node: p.node.0,
                    peer: p.peer_id.to_string(),
                    addr: p.addr.to_string(),
                })
                .collect(),
        }
    }

    /// The lease peers, checked.
    fn peers(&self) -> Result<Vec<LeasePeer>, String> {
        if self.members.is_empty() || self.members.len() > MAX_QUORUM_MEMBERS {
            return Err(format!(
                "{} lease peers declared (1 to {MAX_QUORUM_MEMBERS} allowed)",
                self.members.len()
            ));
        }
        self.members
            .iter()
            .map(|m| {
                Ok(LeasePeer {
                    node: NodeId(m.node),
                    peer_id: m
                        .peer
                        .parse()
                        .map_err(|e| format!("peer {:?}: {e}", m.peer))?,
                    addr: m
                        .addr
                        .parse()
                        .map_err(|e| format!("address {:?}: {e}", m.addr))?,
                })
            })
            .collect()
    }
}

/// The identities of a quorum, to compare two.
fn identities(peers: &[LeasePeer]) -> BTreeSet<(u16, String)> {
    peers
        .iter()
        .map(|p| (p.node.0, p.peer_id.to_string()))
        .collect()
}

/// A node's lease service and the lease peers it belongs to, which every
/// space handle of the node carries.
#[derive(Debug)]
pub(crate) struct NodeLeases {
    /// The node's own lease service.
    pub(crate) own: Arc<QuorumLeaseBackend>,
    /// The lease peers `own` belongs to (the node alone by default).
    pub(crate) quorum: Vec<LeasePeer>,
}

/// Declares `mine` as `space`'s lease quorum unless it has one.
pub(crate) async fn declare(space: &Space, mine: &[LeasePeer]) -> Result<(), Error> {
    space
        .declare(
            LEASE_QUORUM,
            ChannelSpec::last_value(Policy::FirstWriteWins),
        )
        .await?;
    if space.get(LEASE_QUORUM).await?.is_none() {
        let value =
            serde_json::to_value(Declaration::of(mine)).map_err(|e| Error::LeaseQuorum {
                space: space.name().to_owned(),
                reason: format!("declaration not encodable: {e}"),
            })?;
        match space.put(LEASE_QUORUM, value).await {
            // Another node's declaration arrived meanwhile: it stands.
            Ok(_) | Err(Error::State(concord_state::StateError::AlreadySet { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The backend that grants `space`'s locks: `own` if this node is one of
/// the declared lease peers (with the same quorum), otherwise a client of
/// the declared ones.
pub(crate) async fn backend(
    space: &Space,
    own: &Arc<QuorumLeaseBackend>,
    own_quorum: &[LeasePeer],
) -> Result<Arc<dyn LeaseBackend>, Error> {
    let fail = |reason: String| Error::LeaseQuorum {
        space: space.name().to_owned(),
        reason,
    };
    let started = Instant::now();
    let declared = loop {
        if let Some(value) = space.read(|r| r.get(LEASE_QUORUM)).await?? {
            break value;
        }
        if started.elapsed() >= QUORUM_WAIT {
            return Err(fail(format!(
                "no lease quorum is declared in it (waited {QUORUM_WAIT:?} for one to sync). \
                 Open the space on a node started without --bootstrap (it declares itself), \
                 or start nodes with --lease-peer (NodeBuilder::lease_peers), which declare that list"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let peers = serde_json::from_value::<Declaration>(declared)
        .map_err(|e| e.to_string())
        .and_then(|d| d.peers())
        .map_err(|e| fail(format!("malformed {LEASE_QUORUM}: {e}")))?;
    let me = own.peer_id();
    if peers.iter().any(|p| p.peer_id == me) {
        if identities(&peers) != identities(own_quorum) {
            return Err(fail(format!(
                "this node is one of the space's lease peers, but its own lease peers differ \
                 from the ones declared in {LEASE_QUORUM}: start it with the declared list"
            )));
        }
        return Ok(Arc::clone(own) as Arc<dyn LeaseBackend>);
    }
    let members = peers
        .into_iter()
        .map(|p| (p.peer_id, vec![p.addr]))
        .collect();
    let remote =
        RemoteLeaseBackend::new(Arc::clone(own), members).map_err(|e| fail(e.to_string()))?;
    Ok(Arc::new(remote))
}
