//! [`NodeStats`]: a cheap, clonable, read-only handle on a running node's
//! counters, for operators' metrics (the `concord` CLI serves them to
//! Prometheus; a library user can export them any way it likes).
//!
//! It only reads what the layers below already count: traffic and latency
//! histograms of the network driver, each open space's counters (asked of
//! the driver), and the node's lease proposer's counters (asked of the
//! lease node). It owns no registry and no metric names, and must never
//! change anything it reads.

use std::sync::Arc;

use concord_lease::ProposerStats;
use concord_net::lease::QuorumLeaseBackend;
use concord_net::{Latency, NetError, NetHandle, SpaceStats, Traffic};
use tracing::Instrument;

use crate::Error;

/// Read-only access to a node's counters; see [`crate::Node::stats`].
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let node = concord::Node::builder().data_dir(dir.path()).build().await?;
/// node.space("team").await?.put("observation/ci", json!("green")).await?;
/// let stats = node.stats();
/// let spaces = stats.spaces().await?;
/// assert_eq!(spaces[0].space, "team");
/// assert!(spaces[0].replica.changes >= 1);
/// assert!(stats.latency().fsync.count >= 1, "the put was fsynced");
/// assert_eq!(stats.lease().await?.grants, 0);
/// node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct NodeStats {
    net: NetHandle,
    lease: Arc<QuorumLeaseBackend>,
}

impl NodeStats {
    pub(crate) fn new(net: NetHandle, lease: Arc<QuorumLeaseBackend>) -> NodeStats {
        NodeStats { net, lease }
    }

    /// Bytes and messages sent and received per protocol (sync, gossip).
    pub fn traffic(&self) -> Traffic {
        self.net.traffic()
    }

    /// Histograms of apply and fsync latency.
    pub fn latency(&self) -> Latency {
        self.net.latency()
    }

    /// Every open space's counters (changes, pending changes, epoch, peers,
    /// bytes on disk, records waiting for their fsync).
    ///
    /// # Errors
    /// [`Error::Net`] once the node stopped.
    pub async fn spaces(&self) -> Result<Vec<SpaceStats>, Error> {
        Ok(self.net.space_stats().await?)
    }

    /// How many peers are connected.
    ///
    /// # Errors
    /// [`Error::Net`] once the node stopped.
    pub async fn peers(&self) -> Result<usize, Error> {
        Ok(self.net.peers().await?.len())
    }

    /// The lease proposer's counters: grants, denials, renewals, renewal
    /// failures and losses of the requests this node's lease service ran.
    ///
    /// # Errors
    /// [`Error::Net`] ([`NetError::Stopped`]) once the node stopped.
    pub async fn lease(&self) -> Result<ProposerStats, Error> {
        self.lease
            .stats()
            .instrument(tracing::debug_span!("lease_stats"))
            .await
            .map_err(|_| Error::Net(NetError::Stopped))
    }
}
