//! [`Node`]: one agent process, its identity, its spaces ([`NodeBuilder`]
//! in [`builder`] configures and starts one).
//!
//! This module owns what a running node does: opening spaces, leases,
//! peers, shutdown. It never speaks to the network itself (concord-net does).

mod builder;

pub use builder::NodeBuilder;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use concord_lease::LeaseBackend;
use concord_net::{Multiaddr, NetHandle, PeerId, PeerInfo, SpaceOptions};
use concord_state::{ActorId, Durable, Replica, ReplicaConfig};
use concord_storage::{FileStorage, Storage};

use crate::identity::NodeIdentity;
use crate::lease::HeldLock;
use crate::quorum::{self, NodeLeases};
use crate::{Error, Space};

/// One agent process: identity, durable spaces, and the network driver.
///
/// What a node writes survives a restart from the same data directory:
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// use concord::Node;
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let node = Node::builder().data_dir(dir.path()).build().await?;
/// node.space("team").await?.put("observation/ci", json!("green")).await?;
/// node.shutdown().await?;
///
/// let node = Node::builder().data_dir(dir.path()).build().await?;
/// let ci = node.space("team").await?.get("observation/ci").await?;
/// assert_eq!(ci, Some(json!("green")));
/// node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub struct Node {
    net: NetHandle,
    identity: NodeIdentity,
    actor: ActorId,
    allowlists: BTreeMap<String, BTreeSet<PeerId>>,
    /// Spaces already open; held across the opening so two callers never race.
    open: tokio::sync::Mutex<BTreeSet<String>>,
    leases: Arc<NodeLeases>,
    /// Whether this node declares its lease quorum in the spaces it opens.
    seed: bool,
    /// Settings of every replica this node opens.
    replica: ReplicaConfig,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.net.peer_id())
            .finish_non_exhaustive()
    }
}

/// Whether `name` may name a space (it is also a directory name under the
/// data directory): 1 to 64 bytes of ASCII letters, digits, `.`, `_` and
/// `-`, not starting with `.`. [`Node::space`] refuses others with
/// [`Error::SpaceName`].
///
/// ```
/// assert!(concord::valid_space_name("release-2.1"));
/// assert!(!concord::valid_space_name("../etc"));
/// assert!(!concord::valid_space_name(&"a".repeat(65)));
/// ```
pub fn valid_space_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with('.')
}

impl Node {
    /// A builder.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// let dir = tempfile::tempdir()?;
    /// let node = concord::Node::builder().data_dir(dir.path()).build().await?;
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// The peer id of the node whose data directory is `dir`, creating its
    /// identity if it has none yet: what to put in the [`crate::LeasePeer`] lists
    /// of [`NodeBuilder::lease_peers`] before the first start.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use concord::Node;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let peer_id = Node::peer_id_in(dir.path())?; // creates the identity
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// assert_eq!(node.peer_id(), peer_id);
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn peer_id_in(dir: impl AsRef<std::path::Path>) -> Result<PeerId, Error> {
        Ok(crate::identity::load_keypair(dir.as_ref())?
            .public()
            .to_peer_id())
    }

    /// This node's libp2p identity.
    ///
    /// It is stored in the data directory, so it survives restarts:
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use concord::Node;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// let id = node.peer_id();
    /// node.shutdown().await?;
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// assert_eq!(node.peer_id(), id);
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn peer_id(&self) -> PeerId {
        self.net.peer_id()
    }

    /// The automerge actor id this node writes as (identity + incarnation).
    ///
    /// A clean restart keeps it:
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use concord::Node;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// let actor = node.actor().clone();
    /// node.shutdown().await?;
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// assert_eq!(node.actor(), &actor);
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// The incarnation number (bumped after every unclean shutdown).
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use concord::Node;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// assert_eq!(node.incarnation(), 0);
    /// node.shutdown().await?; // clean: the next start keeps incarnation 0
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// assert_eq!(node.incarnation(), 0);
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn incarnation(&self) -> u32 {
        self.identity.incarnation
    }

    /// The network handle (for advanced use).
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// let net = node.net().clone();
    /// assert_eq!(net.peer_id(), node.peer_id());
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn net(&self) -> &NetHandle {
        &self.net
    }

    /// Joins `name` (opening its storage on first use) and returns a handle.
    ///
    /// # Errors
    /// [`Error::SpaceName`] unless `name` is 1 to 64 ASCII letters, digits,
    /// `.`, `_` or `-` (not starting with `.`); otherwise its storage could
    /// not be opened.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// let space = node.space("release-2.1").await?;
    /// assert_eq!(space.name(), "release-2.1");
    /// assert!(matches!(node.space("no spaces").await, Err(concord::Error::SpaceName(_))));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn space(&self, name: &str) -> Result<Space, Error> {
        if !valid_space_name(name) {
            return Err(Error::SpaceName(name.to_owned()));
        }
        let mut open = self.open.lock().await;
        if !open.contains(name) {
            let dir = self.identity.dir.join("spaces").join(name);
            // The driver keeps the storage beside the replica: it writes
            // what the replica hands out to persist, fsyncs after each
            // write command (off its task, while the command's gossip is on
            // its way, DESIGN §5) and received changes shortly after they
            // arrive (`NetConfig::flush_delay`).
            let mut storage = FileStorage::open(&dir)?;
            let recovered = storage.load()?;
            if let Some(t) = recovered.torn_tail {
                tracing::warn!(
                    space = name,
                    offset = t.offset,
                    bytes = t.dropped_bytes,
                    "recovered from a torn log tail"
                );
            }
            let durable = Durable {
                snapshot: recovered.snapshot,
                records: recovered.records,
            };
            let replica =
                Replica::recover(name, self.actor.clone(), durable, self.replica.clone())?;
            let options = SpaceOptions {
                allowlist: self.allowlists.get(name).cloned(),
            };
            self.net
                .open_space(replica, Box::new(storage), options)
                .await?;
            open.insert(name.to_owned());
            if self.seed {
                quorum::declare(&self.handle(name), &self.leases.quorum).await?;
            }
        }
        Ok(self.handle(name))
    }

    /// Addresses the node listens on (may be empty right after start).
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// node.wait_listening(std::time::Duration::from_secs(5)).await?;
    /// let addrs = node.listen_addrs().await?;
    /// assert!(addrs.iter().all(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/")));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, Error> {
        Ok(self.net.listen_addrs().await?)
    }

    /// Waits until the node listens on at least one address, up to `timeout`.
    /// Returns the addresses, empty if `timeout` passed first.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// let addrs = node.wait_listening(std::time::Duration::from_secs(5)).await?;
    /// assert!(!addrs.is_empty());
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
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
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// // A node that dialed nobody and was dialed by nobody is alone.
    /// assert!(node.peers().await?.is_empty());
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        Ok(self.net.peers().await?)
    }

    /// Dials a peer.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use concord::Node;
    /// use std::time::Duration;
    /// # let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    ///
    /// let local = "/ip4/127.0.0.1/tcp/0".parse()?;
    /// let a = Node::builder().data_dir(dir_a.path()).listen(local).build().await?;
    /// let b = Node::builder().data_dir(dir_b.path()).build().await?;
    /// b.dial(a.wait_listening(Duration::from_secs(5)).await?[0].clone()).await?;
    /// # for _ in 0..500 {
    /// #     if !a.peers().await?.is_empty() { break }
    /// #     tokio::time::sleep(Duration::from_millis(10)).await;
    /// # }
    /// // ... once connected:
    /// assert_eq!(a.peers().await?[0].peer_id, b.peer_id());
    /// b.shutdown().await?;
    /// a.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), Error> {
        Ok(self.net.dial(addr).await?)
    }

    /// The node's lease service (see [`NodeBuilder::lease_peers`]). It
    /// stops at [`Node::shutdown`], or when the last clone of this handle
    /// is dropped if one outlives the node.
    ///
    /// Most code takes leases through [`Node::lock`]; the backend itself
    /// serves [`crate::coordinator::Coordinator::new`] and direct use:
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// use concord::{Millis, Resource};
    ///
    /// let backend = node.lease_backend();
    /// let lease = backend.acquire(Resource::new("db")?, Millis(5_000), Millis(1_000)).await?;
    /// assert!(lease.expires > backend.now());
    /// backend.release(lease).await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn lease_backend(&self) -> Arc<dyn LeaseBackend> {
        Arc::clone(&self.leases.own) as Arc<dyn LeaseBackend>
    }

    /// The lease service that grants `space`'s locks: the lease quorum
    /// declared in the space ([`crate::LEASE_QUORUM`]), through this node's
    /// own lease service if it is one of its lease peers, otherwise through
    /// one of them. Locks taken from it on any node of the space exclude
    /// each other. Pass it to a [`crate::coordinator::Coordinator`].
    ///
    /// # Errors
    /// [`Error::LeaseQuorum`] if the space declares no quorum (after
    /// waiting [`crate::QUORUM_WAIT`] for the declaration to sync), a
    /// malformed one, or one that lists this node with other lease peers
    /// than its own.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// let space = node.space("team").await?;
    /// let leases = node.space_lease(&space).await?;
    /// let coordinator = concord::coordinator::Coordinator::new(space.clone(), leases);
    /// # drop(coordinator);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn space_lease(&self, space: &Space) -> Result<Arc<dyn LeaseBackend>, Error> {
        space.lease_backend().await
    }

    /// A handle on the open space `name`.
    fn handle(&self, name: &str) -> Space {
        Space::new(self.net.clone(), name, Arc::clone(&self.leases))
    }

    /// Takes the lock on `resource` for `ttl` from `space`'s lease quorum
    /// (see [`Node::space_lease`]), waiting as long as others hold it, on
    /// this node or any other of the space, and mirrors the holder into
    /// `space`'s [`crate::LOCK_HOLDERS`] (see [`HeldLock`]).
    ///
    /// # Errors
    /// No usable lease quorum in the space ([`Node::space_lease`]), an
    /// invalid resource name, a ttl above [`NodeBuilder::lease_max_ttl`],
    /// or the lease service failing (see [`HeldLock::acquire`]).
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use std::time::Duration;
    ///
    /// let lock = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
    /// run_migration(lock.token().get()); // pass the fencing token along
    /// lock.release().await?;
    /// # fn run_migration(_token: u64) {}
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn lock(
        &self,
        space: &Space,
        resource: &str,
        ttl: Duration,
    ) -> Result<HeldLock, Error> {
        HeldLock::acquire(
            self.space_lease(space).await?,
            space,
            resource,
            ttl,
            &self.peer_id().to_string(),
        )
        .await
    }

    /// A read-only handle on this node's counters (traffic, latency
    /// histograms, per-space and lease counters) for metrics; see
    /// [`crate::NodeStats`].
    pub fn stats(&self) -> crate::NodeStats {
        crate::NodeStats::new(self.net.clone(), Arc::clone(&self.leases.own))
    }

    /// Flushes every space to disk, stops the network and the lease service
    /// and records a clean shutdown (the next start keeps this incarnation).
    /// Leases still held are not released; they expire.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use concord::Node;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// node.shutdown().await?;
    /// // The next start sees the clean shutdown and keeps the actor id.
    /// let node = Node::builder().data_dir(dir.path()).build().await?;
    /// assert_eq!(node.incarnation(), 0);
    /// node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn shutdown(self) -> Result<(), Error> {
        // Stopped even while space handles or locks still refer to it: its
        // data dir must not be written once this returns.
        self.leases.own.stop().await;
        self.net.shutdown().await?;
        self.identity.mark_clean()
    }
}
