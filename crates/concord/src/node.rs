//! [`Node`] and its builder: one agent process, its identity, its spaces.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use concord_net::{Multiaddr, NetConfig, NetHandle, PeerId, PeerInfo, SpaceOptions};
use concord_state::storage::FileStorage;
use concord_state::{ActorId, Replica, ReplicaConfig};
use concord_sync::SyncConfig;

use crate::identity::NodeIdentity;
use crate::{Error, Space};

/// Configures and starts a [`Node`].
#[derive(Debug, Default)]
pub struct NodeBuilder {
    data_dir: Option<PathBuf>,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    mdns: bool,
    sync: Option<SyncConfig>,
    allowlists: BTreeMap<String, BTreeSet<PeerId>>,
}

impl NodeBuilder {
    /// Where the node keeps its identity and spaces (required).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds a listen address, e.g. `/ip4/127.0.0.1/tcp/0` (port chosen by the OS).
    pub fn listen(mut self, addr: Multiaddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Adds a bootstrap peer address, dialed at start and redialed with backoff.
    pub fn bootstrap(mut self, addr: Multiaddr) -> Self {
        self.bootstrap.push(addr);
        self
    }

    /// Enables mDNS discovery on the local network (offline edge deployments).
    pub fn mdns(mut self, on: bool) -> Self {
        self.mdns = on;
        self
    }

    /// Overrides the sync engine settings (heartbeat, bounds).
    pub fn sync_config(mut self, config: SyncConfig) -> Self {
        self.sync = Some(config);
        self
    }

    /// Restricts `space` to these peers: any other peer can neither read nor write it.
    pub fn allow(mut self, space: &str, peers: impl IntoIterator<Item = PeerId>) -> Self {
        self.allowlists
            .entry(space.to_owned())
            .or_default()
            .extend(peers);
        self
    }

    /// Loads the identity, starts the network driver and returns the node.
    pub async fn build(self) -> Result<Node, Error> {
        let dir = self.data_dir.ok_or(Error::NoDataDir)?;
        let identity = NodeIdentity::load(&dir)?;
        let mut config = NetConfig::new(identity.keypair.clone());
        config.listen = self.listen;
        config.bootstrap = self.bootstrap;
        config.mdns = self.mdns;
        if let Some(sync) = self.sync {
            config.sync = sync;
        }
        let net = concord_net::spawn(config)?;
        tracing::info!(peer = %net.peer_id(), incarnation = identity.incarnation, "node started");
        Ok(Node {
            net,
            actor: identity.actor(),
            identity,
            allowlists: self.allowlists,
            open: tokio::sync::Mutex::new(BTreeSet::new()),
        })
    }
}

/// One agent process: identity, durable spaces, and the network driver.
pub struct Node {
    net: NetHandle,
    identity: NodeIdentity,
    actor: ActorId,
    allowlists: BTreeMap<String, BTreeSet<PeerId>>,
    /// Spaces already open; held across the opening so two callers never race.
    open: tokio::sync::Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.net.peer_id())
            .finish_non_exhaustive()
    }
}

fn valid_space_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with('.')
}

impl Node {
    /// A builder.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's libp2p identity.
    pub fn peer_id(&self) -> PeerId {
        self.net.peer_id()
    }

    /// The automerge actor id this node writes as (identity + incarnation).
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// The incarnation number (bumped after every unclean shutdown).
    pub fn incarnation(&self) -> u32 {
        self.identity.incarnation
    }

    /// The network handle (for advanced use).
    pub fn net(&self) -> &NetHandle {
        &self.net
    }

    /// Joins `name` (opening its storage on first use) and returns a handle.
    pub async fn space(&self, name: &str) -> Result<Space, Error> {
        if !valid_space_name(name) {
            return Err(Error::SpaceName(name.to_owned()));
        }
        let mut open = self.open.lock().await;
        if !open.contains(name) {
            let dir = self.identity.dir.join("spaces").join(name);
            let replica = FileStorage::open(&dir)
                .map_err(concord_state::StateError::from)
                .and_then(|storage| {
                    Replica::open(
                        name,
                        self.actor.clone(),
                        Box::new(storage),
                        ReplicaConfig::default(),
                    )
                })?;
            if let Some(t) = replica.recovered_torn_tail() {
                tracing::warn!(
                    space = name,
                    offset = t.offset,
                    "recovered from a torn log tail"
                );
            }
            let options = SpaceOptions {
                allowlist: self.allowlists.get(name).cloned(),
            };
            self.net.open_space(replica, options).await?;
            open.insert(name.to_owned());
        }
        Ok(Space::new(self.net.clone(), name))
    }

    /// Addresses the node listens on (may be empty right after start).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, Error> {
        Ok(self.net.listen_addrs().await?)
    }

    /// Waits until the node listens on at least one address, up to `timeout`.
    pub async fn wait_listening(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Vec<Multiaddr>, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let addrs = self.listen_addrs().await?;
            if !addrs.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(addrs);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        Ok(self.net.peers().await?)
    }

    /// Dials a peer.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), Error> {
        Ok(self.net.dial(addr).await?)
    }

    /// Flushes every space to disk, stops the network and records a clean
    /// shutdown (the next start keeps this incarnation).
    pub async fn shutdown(self) -> Result<(), Error> {
        self.net.shutdown().await?;
        self.identity.mark_clean()
    }
}
