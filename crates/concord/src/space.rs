//! [`Space`]: the application's view of one replicated space on a node.
//! Every call runs on the replica inside the network driver, so local writes
//! are pushed to peers as soon as they commit.

use concord_net::{NetHandle, PeerInfo, Subscription, wall_clock};
use concord_state::{ChannelSpec, Conflict, Replica, StateError, VectorClock, WriteReceipt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use std::sync::Arc;

use concord_lease::LeaseBackend;

use crate::channels::{Counter, LastValue, SetChannel, Topic};
use crate::quorum::{self, NodeLeases};
use crate::{Ephemeral, Error};

/// Default number of deliveries buffered in a subscription stream.
pub const SUBSCRIPTION_CAPACITY: usize = 256;

/// A replicated space on a node. Cheap to clone.
///
/// Every clone is a handle to the same replica:
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
/// use serde_json::json;
///
/// let space = node.space("team").await?;
/// let same = space.clone();
/// space.put("observation/ci", json!("green")).await?;
/// assert_eq!(same.get("observation/ci").await?, Some(json!("green")));
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Space {
    net: NetHandle,
    name: String,
    leases: Arc<NodeLeases>,
}

impl Space {
    pub(crate) fn new(net: NetHandle, name: &str, leases: Arc<NodeLeases>) -> Self {
        Space {
            net,
            name: name.to_owned(),
            leases,
        }
    }

    /// The lease service that grants this space's locks (see
    /// [`crate::Node::space_lease`]).
    ///
    /// # Errors
    /// [`Error::LeaseQuorum`] if the space has no usable lease quorum.
    pub async fn lease_backend(&self) -> Result<Arc<dyn LeaseBackend>, Error> {
        quorum::backend(self, &self.leases.own, &self.leases.quorum).await
    }

    /// The name this node's lock holders go by (its peer id).
    pub(crate) fn holder_name(&self) -> String {
        self.net.peer_id().to_string()
    }

    /// The space's name.
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
    /// assert_eq!(node.space("release").await?.name(), "release");
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on the replica; changes it commits are pushed to peers at once.
    ///
    /// The escape hatch to every [`concord_state::Replica`] operation the
    /// handles do not offer, such as reading a channel's declaration:
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
    /// use concord::{ChannelSpec, Policy};
    ///
    /// space.put("observation/ci", serde_json::json!("green")).await?;
    /// let spec = space.with(|r| r.spec("observation/ci")).await??;
    /// assert_eq!(spec, Some(ChannelSpec::last_value(Policy::LastWriteWins)));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Replica) -> R + Send + 'static,
    ) -> Result<R, Error> {
        Ok(self.net.with_replica(&self.name, f).await?)
    }

    /// Runs `f` on the replica and answers as soon as it ran; the
    /// [`concord_net::Durability`] resolves once its writes are fsynced
    /// (see [`NetHandle::commit`]).
    pub(crate) async fn commit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Replica) -> R + Send + 'static,
    ) -> Result<(R, concord_net::Durability), Error> {
        Ok(self.net.commit(&self.name, f).await?)
    }

    /// Runs the read-only `f` on the replica, without waiting for writes
    /// under way to reach the disk (as [`Space::with`] does).
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Replica) -> R + Send + 'static,
    ) -> Result<R, Error> {
        Ok(self.commit_lazy(move |r| f(r)).await?.0)
    }

    /// Like [`Space::commit`], for writes nobody waits on: they start no
    /// fsync of their own, but go to disk with the next one (see
    /// [`concord_net::NetHandle::commit_lazy`]).
    pub(crate) async fn commit_lazy<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Replica) -> R + Send + 'static,
    ) -> Result<(R, concord_net::Durability), Error> {
        Ok(self.net.commit_lazy(&self.name, f).await?)
    }

    /// Bytes the space occupies in the node's data directory (snapshot +
    /// log).
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
    /// let before = space.bytes_on_disk().await?;
    /// space.put("observation/ci", serde_json::json!("green")).await?;
    /// assert!(space.bytes_on_disk().await? > before);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn bytes_on_disk(&self) -> Result<u64, Error> {
        Ok(self.net.bytes_on_disk(&self.name).await?)
    }

    /// Runs a fallible replica operation and flattens its error.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Replica) -> Result<R, StateError> + Send + 'static,
    ) -> Result<R, Error> {
        Ok(self.with(f).await??)
    }

    /// Declares a channel's kind and policy.
    ///
    /// Writing an undeclared channel declares it with the written kind (a
    /// `LastValue` as `last_write_wins`); declare first for another policy:
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
    /// use concord::{ChannelSpec, Error, Policy};
    /// use serde_json::json;
    ///
    /// let first_wins = ChannelSpec::last_value(Policy::FirstWriteWins);
    /// space.declare("coordination/leader", first_wins).await?;
    /// space.put("coordination/leader", json!("agent-a")).await?;
    /// let second = space.put("coordination/leader", json!("agent-b")).await;
    /// assert!(matches!(second, Err(Error::State(_))));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn declare(&self, path: &str, spec: ChannelSpec) -> Result<(), Error> {
        let path = path.to_owned();
        self.run(move |r| r.declare(wall_clock(), path.as_str(), spec).map(|_| ()))
            .await
    }

    /// Writes a JSON value to a `LastValue` channel.
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
    /// use serde_json::json;
    ///
    /// let receipt = space.put("observation/ci", json!({"status": "green"})).await?;
    /// let again = space.put("observation/ci", json!({"status": "red"})).await?;
    /// assert!(again.seq > receipt.seq);
    /// assert_eq!(space.get("observation/ci").await?, Some(json!({"status": "red"})));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn put(&self, path: &str, value: Value) -> Result<WriteReceipt, Error> {
        let path = path.to_owned();
        // The driver answers only once the write is fsynced: it is durable.
        self.run(move |r| r.put(wall_clock(), path.as_str(), &value))
            .await
    }

    /// The visible value of any channel as JSON (see `Replica::get`).
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
    /// use serde_json::json;
    ///
    /// assert_eq!(space.get("observation/unknown").await?, None);
    /// space.counter("observation/builds")?.add(3).await?;
    /// assert_eq!(space.get("observation/builds").await?, Some(json!(3)));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn get(&self, path: &str) -> Result<Option<Value>, Error> {
        let path = path.to_owned();
        self.run(move |r| r.get(path.as_str())).await
    }

    /// A typed handle to a `LastValue` channel.
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
    /// let status = space.last_value::<String>("observation/ci.status")?;
    /// status.set(&"green".to_owned()).await?;
    /// assert_eq!(status.get().await?.as_deref(), Some("green"));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn last_value<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
    ) -> Result<LastValue<T>, Error> {
        LastValue::new(self.clone(), path)
    }

    /// A typed handle to a `Topic` channel.
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
    /// let log = space.topic::<String>("execution/log")?;
    /// log.append(&"build started".to_owned()).await?;
    /// assert_eq!(log.entries().await?.len(), 1);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn topic<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
    ) -> Result<Topic<T>, Error> {
        Topic::new(self.clone(), path)
    }

    /// A handle to a `Counter` channel.
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
    /// let builds = space.counter("observation/builds")?;
    /// builds.add(2).await?;
    /// assert_eq!(builds.value().await?, 2);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn counter(&self, path: &str) -> Result<Counter, Error> {
        Counter::new(self.clone(), path)
    }

    /// A typed handle to a `Set` channel.
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
    /// let reviewers = space.set::<String>("coordination/reviewers")?;
    /// reviewers.insert(&"alice".to_owned()).await?;
    /// assert_eq!(reviewers.members().await?, ["alice"]);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn set<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
    ) -> Result<SetChannel<T>, Error> {
        SetChannel::new(self.clone(), path)
    }

    /// A typed handle to an ephemeral channel: every node's last value,
    /// living `ttl` after its write, gossiped to peers and handed to those
    /// that join, never written to the document or to disk (see
    /// [`Ephemeral`]).
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
    /// let presence = space.ephemeral::<String>("coordination/presence", Duration::from_secs(30))?;
    /// presence.set(&"reviewing #42".to_owned()).await?;
    /// assert_eq!(presence.get().await?.len(), 1);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn ephemeral<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        ttl: std::time::Duration,
    ) -> Result<Ephemeral<T>, Error> {
        Ephemeral::new(self.clone(), path, ttl)
    }

    /// A stream of events on channels matching the glob `pattern`.
    ///
    /// Local writes are delivered as well as those replicated from peers.
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
    /// use concord::{Delivery, Origin};
    /// use futures::StreamExt;
    /// use serde_json::json;
    ///
    /// let mut events = space.subscribe("observation/*").await?;
    /// space.put("observation/ci", json!("green")).await?;
    /// let Some(Delivery::Event(event)) = events.next().await else { panic!("no event") };
    /// assert_eq!((event.path.as_str(), event.new), ("observation/ci", Some(json!("green"))));
    /// assert_eq!(event.origin, Origin::Local);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, Error> {
        Ok(self
            .net
            .subscribe(&self.name, pattern, SUBSCRIPTION_CAPACITY)
            .await?)
    }

    /// The replica's vector clock.
    ///
    /// Every committed change advances it; two replicas holding the same
    /// changes have equal clocks.
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
    /// let before = space.vector_clock().await?;
    /// space.put("observation/ci", serde_json::json!("green")).await?;
    /// let after = space.vector_clock().await?;
    /// assert_eq!(after.total(), before.total() + 1);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn vector_clock(&self) -> Result<VectorClock, Error> {
        self.with(|r| r.vector_clock().clone()).await
    }

    /// Unresolved conflicts on `reject` channels.
    ///
    /// Here a second, in-memory replica stands in for a peer that writes
    /// concurrently with this node:
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
    /// use concord::{ChannelSpec, Policy, VectorClock};
    /// use concord_state::{ActorId, Replica};
    /// use serde_json::json;
    ///
    /// space.declare("coordination/leader", ChannelSpec::last_value(Policy::Reject)).await?;
    /// let mut peer = Replica::new("team", ActorId::from(&[7u8; 16][..]));
    /// let ours = space.with(|r| r.changes_since(&VectorClock::new())).await?;
    /// peer.apply_changes(concord_net::wall_clock(), ours)?;
    /// peer.put(concord_net::wall_clock(), "coordination/leader", &json!("agent-b"))?;
    /// space.put("coordination/leader", json!("agent-a")).await?;
    /// let theirs = peer.changes_since(&VectorClock::new());
    /// space.with(move |r| r.apply_changes(concord_net::wall_clock(), theirs)).await??;
    /// let conflicts = space.conflicts().await?;
    /// assert_eq!(conflicts[0].path, "coordination/leader");
    /// assert_eq!(conflicts[0].candidates.len(), 2);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn conflicts(&self) -> Result<Vec<Conflict>, Error> {
        self.with(|r| r.conflicts()).await
    }

    /// Peers connected to this node.
    ///
    /// The same list as [`crate::Node::peers`]: connections belong to the
    /// node, not to one space.
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
    /// assert!(space.peers().await?.is_empty());
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        Ok(self.net.peers().await?)
    }
}
