//! [`NodeBuilder`]: a node's configuration, and starting it: identity,
//! network driver, and the lease service (its own single-member quorum
//! unless lease peers are configured).
//!
//! This module owns the start-up order and the solo lease address kept in
//! the data directory; it never opens a space (the [`Node`] does).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use concord_lease::NodeId;
use concord_net::lease::{LeasePeer, QuorumConfig, QuorumLeaseBackend};
use concord_net::{Multiaddr, NetConfig, PeerId};
use concord_state::{EpochConfig, ReplicaConfig};
use concord_sync::SyncConfig;

use super::Node;
use crate::Error;
use crate::identity::NodeIdentity;
use crate::quorum::NodeLeases;

/// Where a node's own single-member lease quorum listens, kept across
/// restarts (the address is declared in the spaces it seeds).
const SOLO_LEASE_FILE: &str = "lease/solo-listen";

/// Configures and starts a [`Node`].
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let node = concord::Node::builder()
///     .data_dir(dir.path())
///     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
///     .build()
///     .await?;
/// let space = node.space("team").await?;
/// space.counter("observation/builds")?.add(1).await?;
/// node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
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
    epochs: Option<EpochConfig>,
}

impl NodeBuilder {
    /// Where the node keeps its identity and spaces (required).
    ///
    /// The same directory gives the same identity on every start:
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// let dir = tempfile::tempdir()?;
    /// let node = concord::Node::builder().data_dir(dir.path()).build().await?;
    /// assert_eq!(node.peer_id(), concord::Node::peer_id_in(dir.path())?);
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds a listen address, e.g. `/ip4/127.0.0.1/tcp/0` (port chosen by the OS).
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// let node = concord::Node::builder()
    ///     .data_dir(dir.path())
    ///     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    ///     .build()
    ///     .await?;
    /// let addrs = node.wait_listening(std::time::Duration::from_secs(5)).await?;
    /// assert!(addrs[0].to_string().starts_with("/ip4/127.0.0.1/tcp/"));
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn listen(mut self, addr: Multiaddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Adds a bootstrap peer address, dialed at start and redialed with backoff.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use concord::Node;
    /// use std::time::Duration;
    /// # let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    ///
    /// let local = "/ip4/127.0.0.1/tcp/0".parse()?;
    /// let a = Node::builder().data_dir(dir_a.path()).listen(local).build().await?;
    /// let a_addr = a.wait_listening(Duration::from_secs(5)).await?[0].clone();
    /// let b = Node::builder().data_dir(dir_b.path()).bootstrap(a_addr).build().await?;
    /// # for _ in 0..500 {
    /// #     if !b.peers().await?.is_empty() { break }
    /// #     tokio::time::sleep(Duration::from_millis(10)).await;
    /// # }
    /// // ... once connected:
    /// assert_eq!(b.peers().await?[0].peer_id, a.peer_id());
    /// b.shutdown().await?;
    /// a.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn bootstrap(mut self, addr: Multiaddr) -> Self {
        self.bootstrap.push(addr);
        self
    }

    /// Enables mDNS discovery on the local network (offline edge deployments).
    ///
    /// Nodes on the same network segment then find each other without any
    /// bootstrap address:
    ///
    /// ```no_run
    /// # async fn example() -> anyhow::Result<()> {
    /// let node = concord::Node::builder()
    ///     .data_dir("/var/lib/agent-1")
    ///     .listen("/ip4/0.0.0.0/tcp/0".parse()?)
    ///     .mdns(true)
    ///     .build()
    ///     .await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn mdns(mut self, on: bool) -> Self {
        self.mdns = on;
        self
    }

    /// Overrides the sync engine settings (heartbeat, bounds).
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// use concord_sync::SyncConfig;
    ///
    /// let fast = SyncConfig { heartbeat_ms: 200, jitter_ms: 50, ..SyncConfig::default() };
    /// let node = concord::Node::builder()
    ///     .data_dir(dir.path())
    ///     .sync_config(fast)
    ///     .build()
    ///     .await?;
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn sync_config(mut self, config: SyncConfig) -> Self {
        self.sync = Some(config);
        self
    }

    /// When this node's spaces cut their epoch (see the README's "Long-lived
    /// spaces"); every node of a space should use the same thresholds.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// use concord_state::EpochConfig;
    ///
    /// let busy = EpochConfig { max_changes: 1_000, ..EpochConfig::default() };
    /// let node = concord::Node::builder().data_dir(dir.path()).epochs(busy).build().await?;
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn epochs(mut self, config: EpochConfig) -> Self {
        self.epochs = Some(config);
        self
    }

    /// Restricts `space` to these peers: any other peer can neither read nor write it.
    ///
    /// Peer ids can be learned before the first start with
    /// [`Node::peer_id_in`]. Local access is unaffected:
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let (dir, teammate_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    /// use concord::Node;
    ///
    /// let teammate = Node::peer_id_in(teammate_dir.path())?;
    /// let node = Node::builder()
    ///     .data_dir(dir.path())
    ///     .allow("secret", [teammate])
    ///     .build()
    ///     .await?;
    /// let secret = node.space("secret").await?;
    /// secret.put("observation/plan", serde_json::json!("members only")).await?;
    /// assert!(secret.get("observation/plan").await?.is_some());
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
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
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// use concord::{LeasePeer, Node, NodeId};
    /// use std::time::Duration;
    ///
    /// // A one-member list; a real deployment lists several nodes at fixed addresses.
    /// let me = LeasePeer {
    ///     node: NodeId(1),
    ///     peer_id: Node::peer_id_in(dir.path())?,
    ///     addr: "/ip4/127.0.0.1/tcp/0".parse()?,
    /// };
    /// let node = Node::builder().data_dir(dir.path()).lease_peers(vec![me]).build().await?;
    /// let space = node.space("team").await?;
    /// let lock = node.lock(&space, "deploy", Duration::from_secs(5)).await?;
    /// lock.release().await?;
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn lease_peers(mut self, peers: Vec<LeasePeer>) -> Self {
        self.lease_peers = Some(peers);
        self
    }

    /// The longest lease ttl the lease service grants, which is also its
    /// quiet period after a restart (default 60 s). Must be the same on
    /// every lease peer.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// use std::time::Duration;
    ///
    /// let node = concord::Node::builder()
    ///     .data_dir(dir.path())
    ///     .lease_max_ttl(Duration::from_secs(10))
    ///     .build()
    ///     .await?;
    /// let space = node.space("team").await?;
    /// // A longer lease is refused.
    /// let refused = node.lock(&space, "deploy", Duration::from_secs(30)).await;
    /// assert!(matches!(refused, Err(concord::Error::Lease { .. })));
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn lease_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.lease_max_ttl = Some(max_ttl);
        self
    }

    /// Loads the identity, starts the network driver and the lease service
    /// (see [`NodeBuilder::lease_peers`]) and returns the node.
    ///
    /// # Errors
    /// [`Error::NoDataDir`] without [`NodeBuilder::data_dir`]; otherwise the
    /// identity, the network driver or the lease service could not start.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use concord::{Error, Node};
    ///
    /// let missing = Node::builder().build().await;
    /// assert!(matches!(missing, Err(Error::NoDataDir)));
    ///
    /// let dir = tempfile::tempdir()?;
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
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
        // The first node of a deployment declares the lease quorum of the
        // spaces it opens (see `quorum`); so does any node with configured
        // lease peers. Joiners learn it.
        let seed = self.lease_peers.is_some() || (config.bootstrap.is_empty() && !config.mdns);
        let peers = match self.lease_peers {
            Some(peers) => peers,
            None => vec![solo_lease_peer(&identity, &config.listen)?],
        };
        let net = concord_net::spawn(config)?;
        let lease = start_lease(&identity, peers.clone(), self.lease_max_ttl)?;
        tracing::info!(peer = %net.peer_id(), incarnation = identity.incarnation, "node started");
        Ok(Node {
            net,
            actor: identity.actor(),
            identity,
            allowlists: self.allowlists,
            open: tokio::sync::Mutex::new(BTreeSet::new()),
            leases: Arc::new(NodeLeases {
                own: lease,
                quorum: peers,
            }),
            seed,
            replica: ReplicaConfig {
                epochs: self.epochs.unwrap_or_default(),
                ..ReplicaConfig::default()
            },
        })
    }
}

/// This node as a lease quorum of its own: lease node 1, listening on the
/// host of its first sync listen address (loopback if that is unspecified
/// or absent) on a port kept in [`SOLO_LEASE_FILE`] across restarts.
fn solo_lease_peer(identity: &NodeIdentity, listen: &[Multiaddr]) -> Result<LeasePeer, Error> {
    use concord_net::multiaddr::Protocol;
    let config = |e: &dyn std::fmt::Display| {
        Error::LeaseStart(concord_net::lease::LeaseNetError::Config(e.to_string()))
    };
    let file = identity.dir.join(SOLO_LEASE_FILE);
    let addr: Multiaddr = match std::fs::read_to_string(&file) {
        Ok(kept) => kept.trim().parse().map_err(|e| config(&e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ip = listen
                .first()
                .and_then(|a| {
                    a.iter().find_map(|p| match p {
                        Protocol::Ip4(ip) if !ip.is_unspecified() => Some(std::net::IpAddr::V4(ip)),
                        Protocol::Ip6(ip) if !ip.is_unspecified() => Some(std::net::IpAddr::V6(ip)),
                        _ => None,
                    })
                })
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
            let port = std::net::TcpListener::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| Error::io("choosing the lease port", &file, e))?
                .port();
            let addr = Multiaddr::empty().with(ip.into()).with(Protocol::Tcp(port));
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
            }
            std::fs::write(&file, addr.to_string()).map_err(|e| Error::io("writing", &file, e))?;
            addr
        }
        Err(e) => return Err(Error::io("reading", &file, e)),
    };
    Ok(LeasePeer {
        node: NodeId(1),
        peer_id: identity.keypair.public().to_peer_id(),
        addr,
    })
}

/// Starts the node's lease peer, a member of `peers`.
fn start_lease(
    identity: &NodeIdentity,
    peers: Vec<LeasePeer>,
    max_ttl: Option<Duration>,
) -> Result<Arc<QuorumLeaseBackend>, Error> {
    let me = identity.keypair.public().to_peer_id();
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
