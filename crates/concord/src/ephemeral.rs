//! [`Ephemeral<T>`]: a typed handle to an ephemeral channel, for values
//! agents publish many times a second and that stop being true on their own
//! (heartbeats, presence, progress). Each node's last value lives in memory
//! on every node for the channel's TTL; it never enters the space's
//! document nor its storage, so writing it costs no history.
//!
//! This module owns the handle only; the values, their order and expiry are
//! concord-state's, their replication concord-sync's.

use std::marker::PhantomData;
use std::time::Duration;

use concord_net::wall_clock;
use concord_state::{ActorId, ChannelSpec, EphemeralReceipt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::channels::{Channel, from_json, to_json};
use crate::{Error, Space};

/// An ephemeral channel of `T`: every node's last value, visible on every
/// node until the channel's TTL after its write.
///
/// Values and their expiries show up in [`Space::subscribe`] streams as
/// events with [`concord_state::Event::ephemeral`] set.
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
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Beat { step: u32, busy: bool }
///
/// let beat = space.ephemeral::<Beat>("observation/agent-7.heartbeat", Duration::from_secs(5))?;
/// beat.set(&Beat { step: 1, busy: true }).await?; // declares the channel
/// let changes = space.vector_clock().await?.total();
/// for step in 2..=50 {
///     beat.set(&Beat { step, busy: true }).await?;
/// }
/// assert_eq!(space.vector_clock().await?.total(), changes); // no history written
/// let values = beat.get().await?;
/// assert_eq!(values, [(node.actor().clone(), Beat { step: 50, busy: true })]);
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Ephemeral<T> {
    channel: Channel,
    ttl_ms: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Ephemeral<T> {
    pub(crate) fn new(space: Space, path: &str, ttl: Duration) -> Result<Self, Error> {
        Ok(Ephemeral {
            channel: Channel::new(space, path)?,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            _t: PhantomData,
        })
    }

    /// Publishes this node's value, replacing its previous one; peers get
    /// it on the fast path.
    ///
    /// The first write to a channel never declared declares it ephemeral
    /// with the handle's TTL (an error if that TTL is zero or over
    /// [`concord_state::MAX_EPHEMERAL_TTL_MS`]); a channel declared already
    /// keeps its declared TTL, so that every writer's values live as long.
    /// A channel declared with another kind is refused.
    pub async fn set(&self, value: &T) -> Result<EphemeralReceipt, Error> {
        let json = to_json(value)?;
        let ttl_ms = self.ttl_ms;
        self.channel
            .run(move |r, path| {
                let now = wall_clock();
                if r.spec(&path)?.is_none() {
                    r.declare(now, &path, ChannelSpec::ephemeral(ttl_ms))?;
                }
                r.put_ephemeral(now, path, &json)
            })
            .await
    }

    /// Every node's live value, by writer (this node's own included).
    pub async fn get(&self) -> Result<Vec<(ActorId, T)>, Error> {
        let values = self.channel.run(|r, path| r.ephemeral_values(path)).await?;
        values
            .into_iter()
            .map(|v| Ok((v.writer, from_json(v.value)?)))
            .collect()
    }
}
