//! [`Node`] and its builder: one agent process, its identity, its spaces.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use concord_lease::{LeaseBackend, NodeId};
use concord_net::lease::{LeasePeer, QuorumConfig, QuorumLeaseBackend};

use concord_net::{Multiaddr, NetConfig, NetHandle, PeerId, PeerInfo, SpaceOptions};
use concord_state::storage::FileStorage;
use concord_state::{ActorId, Replica, ReplicaConfig};
use concord_sync::SyncConfig;

use crate::identity::NodeIdentity;
use crate::lease::HeldLock;
use crate::{Error, Space};

/// Where the default single-member lease quorum listens: loopback, a port
/// chosen by the OS (nobody else dials it).
const SOLO_LEASE_LISTEN: &str = "/ip4/127.0.0.1/tcp/0";

/// Configures and starts a [`Node`].
#[derive(Debug, Default)]
pub struct NodeBuilder {
    data_dir: Option<PathBuf>,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    mdns: bool,
    sync: Option<SyncConfig>,
    allowlists: BTreeMap<String, BTreeSet<PeerId>>,
    lease_peers: Option<Vec<LeasePeer>>,
    lease_max_ttl: Option<Duration>,
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

    /// Runs the lease service as one of these lease peers (this node's
    /// peer id must be among them; its entry's address is where its lease
    /// swarm listens). A lease is granted by a majority of them.
    ///
    /// Without this call the node is a single-member quorum of its own
    /// (lease node 1, listening on 127.0.0.1 on a free port): locking works
    /// out of the box on one node, but only excludes holders that use this
    /// same node. Either way the acceptor state lives in `DATA_DIR/lease/`;
    /// after a restart from a non-empty one the node grants no lease for
    /// the maximum ttl ([`NodeBuilder::lease_max_ttl`]), the quiet period that keeps leases granted
    /// before the restart exclusive.
    pub fn lease_peers(mut self, peers: Vec<LeasePeer>) -> Self {
        self.lease_peers = Some(peers);
        self
    }

    /// The longest lease ttl the lease service grants, which is also its
    /// quiet period after a restart (default 60 s). Must be the same on
    /// every lease peer.
    pub fn lease_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.lease_max_ttl = Some(max_ttl);
        self
    }

    /// Loads the identity, starts the network driver and the lease service
    /// (see [`NodeBuilder::lease_peers`]) and returns the node.
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
        let lease = start_lease(&identity, self.lease_peers, self.lease_max_ttl)?;
        tracing::info!(peer = %net.peer_id(), incarnation = identity.incarnation, "node started");
        Ok(Node {
            net,
            actor: identity.actor(),
            identity,
            allowlists: self.allowlists,
            open: tokio::sync::Mutex::new(BTreeSet::new()),
            lease,
        })
    }
}

/// Starts the node's lease peer: a member of `peers`, or a quorum of one.
fn start_lease(
    identity: &NodeIdentity,
    peers: Option<Vec<LeasePeer>>,
    max_ttl: Option<Duration>,
) -> Result<Arc<QuorumLeaseBackend>, Error> {
    let me = identity.keypair.public().to_peer_id();
    let peers = match peers {
        Some(peers) => peers,
        None => vec![LeasePeer {
            node: NodeId(1),
            peer_id: me,
            addr: SOLO_LEASE_LISTEN
                .parse()
                .map_err(|e| concord_net::lease::LeaseNetError::Config(format!("{e}")))?,
        }],
    };
    let listen = peers
        .iter()
        .find(|p| p.peer_id == me)
        .map(|p| p.addr.clone())
        .ok_or_else(|| {
            concord_net::lease::LeaseNetError::Config(format!(
                "this node ({me}) is not one of the lease peers"
            ))
        })?;
    let mut config = QuorumConfig::new(
        identity.keypair.clone(),
        listen,
        peers,
        identity.dir.join("lease"),
    );
    if let Some(max_ttl) = max_ttl {
        config.max_ttl = crate::lease::millis(max_ttl);
    }
    Ok(Arc::new(QuorumLeaseBackend::start(config)?))
}

/// One agent process: identity, durable spaces, and the network driver.
pub struct Node {
    net: NetHandle,
    identity: NodeIdentity,
    actor: ActorId,
    allowlists: BTreeMap<String, BTreeSet<PeerId>>,
    /// Spaces already open; held across the opening so two callers never race.
    open: tokio::sync::Mutex<BTreeSet<String>>,
    lease: Arc<QuorumLeaseBackend>,
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

    /// The peer id of the node whose data directory is `dir`, creating its
    /// identity if it has none yet: what to put in the [`LeasePeer`] lists
    /// of [`NodeBuilder::lease_peers`] before the first start.
    pub fn peer_id_in(dir: impl AsRef<std::path::Path>) -> Result<PeerId, Error> {
        Ok(crate::identity::load_keypair(dir.as_ref())?
            .public()
            .to_peer_id())
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

    /// The node's lease service (see [`NodeBuilder::lease_peers`]). It
    /// stops at [`Node::shutdown`], or when the last clone of this handle
    /// is dropped if one outlives the node.
    pub fn lease_backend(&self) -> Arc<dyn LeaseBackend> {
        Arc::clone(&self.lease) as Arc<dyn LeaseBackend>
    }

    /// Takes the lock on `resource` for `ttl`, waiting as long as others
    /// hold it, and mirrors the holder into `space`'s
    /// [`crate::LOCK_HOLDERS`] (see [`HeldLock`]).
    pub async fn lock(
        &self,
        space: &Space,
        resource: &str,
        ttl: Duration,
    ) -> Result<HeldLock, Error> {
        HeldLock::acquire(
            self.lease_backend(),
            space,
            resource,
            ttl,
            &self.peer_id().to_string(),
        )
        .await
    }

    /// Flushes every space to disk, stops the network and the lease service
    /// and records a clean shutdown (the next start keeps this incarnation).
    /// Leases still held are not released; they expire.
    pub async fn shutdown(self) -> Result<(), Error> {
        if let Some(lease) = Arc::into_inner(self.lease) {
            lease.shutdown().await;
        }
        self.net.shutdown().await?;
        self.identity.mark_clean()
    }
}
