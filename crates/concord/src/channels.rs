//! Typed channel handles: `LastValue<T>`, `Topic<T>`, `Counter`, `SetChannel<T>`
//! (and `Ephemeral<T>` in its own module, on the same [`Channel`]).
//! Each is a path plus a [`Space`]; values cross the API as `T` via serde.

use std::marker::PhantomData;

use concord_net::wall_clock;
use concord_state::{ChannelPath, Replica, StateError, WriteReceipt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Space};

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::State(e.into()))
}

pub(crate) fn from_json<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::State(e.into()))
}

/// What every handle holds: the space and the validated path.
#[derive(Debug, Clone)]
pub(crate) struct Channel {
    space: Space,
    path: ChannelPath,
}

impl Channel {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(Channel {
            space,
            path: path.parse::<ChannelPath>()?,
        })
    }

    /// Runs `f` with the replica and this channel's path.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Replica, ChannelPath) -> Result<R, StateError> + Send + 'static,
    ) -> Result<R, Error> {
        let path = self.path.clone();
        self.space.run(move |r| f(r, path)).await
    }
}

/// A register holding one `T`.
///
/// Any serde type can be stored; it crosses the network as JSON.
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
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Build { commit: String, green: bool }
///
/// let latest = space.last_value::<Build>("observation/ci.latest")?;
/// latest.set(&Build { commit: "4f2a9c1".into(), green: true }).await?;
/// assert!(latest.get().await?.is_some_and(|b| b.green));
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct LastValue<T> {
    channel: Channel,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> LastValue<T> {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(LastValue {
            channel: Channel::new(space, path)?,
            _t: PhantomData,
        })
    }

    /// Writes the value.
    ///
    /// The write replaces the previous value (under the channel's policy,
    /// last write wins by default).
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
    /// status.set(&"red".to_owned()).await?;
    /// let receipt = status.set(&"green".to_owned()).await?;
    /// assert!(receipt.seq > 0);
    /// assert_eq!(status.get().await?.as_deref(), Some("green"));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn set(&self, value: &T) -> Result<WriteReceipt, Error> {
        let json = to_json(value)?;
        self.channel
            .run(move |r, path| r.put(wall_clock(), path, &json))
            .await
    }

    /// Reads the visible value.
    ///
    /// `None` until something was written.
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
    /// let owner = space.last_value::<String>("coordination/owner")?;
    /// assert_eq!(owner.get().await?, None);
    /// owner.set(&"agent-7".to_owned()).await?;
    /// assert_eq!(owner.get().await?.as_deref(), Some("agent-7"));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn get(&self) -> Result<Option<T>, Error> {
        self.channel.run(|r, path| r.get_as::<T>(path)).await
    }
}

/// An append-only log of `T` entries.
///
/// Concurrent appends by different nodes never overwrite each other.
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
/// let proposals = space.topic::<String>("intent/proposals")?;
/// proposals.append(&"bump tokio".to_owned()).await?;
/// proposals.append(&"drop the cache".to_owned()).await?;
/// let entries: Vec<String> = proposals.entries().await?.into_iter().map(|(_, v)| v).collect();
/// assert_eq!(entries, ["bump tokio", "drop the cache"]);
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Topic<T> {
    channel: Channel,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Topic<T> {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(Topic {
            channel: Channel::new(space, path)?,
            _t: PhantomData,
        })
    }

    /// Appends an entry; returns its id (ids sort in causal-then-clock order).
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
    /// let log = space.topic::<u32>("execution/exit_codes")?;
    /// let first = log.append(&0).await?;
    /// let second = log.append(&1).await?;
    /// assert!(first < second);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn append(&self, value: &T) -> Result<String, Error> {
        let json = to_json(value)?;
        self.channel
            .run(move |r, path| r.append(wall_clock(), path, &json).map(|(id, _)| id))
            .await
    }

    /// All visible entries as `(id, value)`.
    ///
    /// In id order; empty for a channel never written.
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
    /// assert!(log.entries().await?.is_empty());
    /// let id = log.append(&"deployed".to_owned()).await?;
    /// assert_eq!(log.entries().await?, [(id, "deployed".to_owned())]);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn entries(&self) -> Result<Vec<(String, T)>, Error> {
        let raw = self.channel.run(|r, path| r.topic_entries(path)).await?;
        raw.into_iter()
            .map(|(id, v)| Ok((id, from_json(v)?)))
            .collect()
    }
}

/// A counter whose concurrent increments add up.
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
/// let retries = space.counter("observation/retries")?;
/// retries.add(1).await?;
/// retries.add(1).await?;
/// assert_eq!(retries.value().await?, 2);
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Counter {
    channel: Channel,
}

impl Counter {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(Counter {
            channel: Channel::new(space, path)?,
        })
    }

    /// Adds `delta`.
    ///
    /// `delta` may be negative.
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
    /// let slots = space.counter("coordination/free_slots")?;
    /// slots.add(4).await?;
    /// slots.add(-1).await?;
    /// assert_eq!(slots.value().await?, 3);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn add(&self, delta: i64) -> Result<(), Error> {
        self.channel
            .run(move |r, path| r.increment(wall_clock(), path, delta).map(|_| ()))
            .await
    }

    /// The total.
    ///
    /// 0 for a counter never written.
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
    /// assert_eq!(builds.value().await?, 0);
    /// builds.add(5).await?;
    /// assert_eq!(builds.value().await?, 5);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn value(&self) -> Result<i64, Error> {
        self.channel.run(|r, path| r.counter(path)).await
    }
}

/// An add-wins set of `T`.
///
/// An insert concurrent with a remove of the same member wins.
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
/// let online = space.set::<String>("observation/agents_online")?;
/// online.insert(&"planner".to_owned()).await?;
/// online.insert(&"coder".to_owned()).await?;
/// online.remove(&"planner".to_owned()).await?;
/// assert_eq!(online.members().await?, ["coder"]);
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SetChannel<T> {
    channel: Channel,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> SetChannel<T> {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(SetChannel {
            channel: Channel::new(space, path)?,
            _t: PhantomData,
        })
    }

    /// Adds a member.
    ///
    /// Inserting a member twice keeps one copy.
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
    /// let tags = space.set::<String>("observation/tags")?;
    /// tags.insert(&"urgent".to_owned()).await?;
    /// tags.insert(&"urgent".to_owned()).await?;
    /// assert_eq!(tags.members().await?.len(), 1);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn insert(&self, member: &T) -> Result<(), Error> {
        let json = to_json(member)?;
        self.channel
            .run(move |r, path| r.set_add(wall_clock(), path, &json).map(|_| ()))
            .await
    }

    /// Removes a member (no-op if absent).
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
    /// let tags = space.set::<String>("observation/tags")?;
    /// tags.insert(&"wip".to_owned()).await?;
    /// tags.remove(&"wip".to_owned()).await?;
    /// tags.remove(&"never-added".to_owned()).await?;
    /// assert!(tags.members().await?.is_empty());
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn remove(&self, member: &T) -> Result<(), Error> {
        let json = to_json(member)?;
        self.channel
            .run(move |r, path| r.set_remove(wall_clock(), path, &json).map(|_| ()))
            .await
    }

    /// The members.
    ///
    /// In canonical JSON order, whatever the insertion order.
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
    /// let ports = space.set::<u16>("coordination/ports")?;
    /// for port in [8080, 443, 80] {
    ///     ports.insert(&port).await?;
    /// }
    /// assert_eq!(ports.members().await?.len(), 3);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn members(&self) -> Result<Vec<T>, Error> {
        let raw = self.channel.run(|r, path| r.set_members(path)).await?;
        raw.into_iter().map(from_json).collect()
    }
}
