//! # concord — coordinate AI agents without a central server
//!
//! The facade users link. A [`Node`] is one agent process: it owns a libp2p
//! identity (persisted in its data directory), durable replicas of the
//! [`Space`]s it joins, and the network driver that keeps them converged with
//! its peers. A [`Space`] gives typed access to channels in the four families
//! (`observation`, `intent`, `coordination`, `execution`) and subscriptions
//! as [`futures::Stream`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), concord::Error> {
//! use futures::StreamExt;
//!
//! let node = concord::Node::builder()
//!     .data_dir("/tmp/agent-1")
//!     .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
//!     .build()
//!     .await?;
//! let space = node.space("release").await?;
//! let status = space.last_value::<String>("observation/ci.status")?;
//! status.set(&"green".to_string()).await?;
//! let mut events = space.subscribe("intent/*").await?;
//! if let Some(event) = events.next().await {
//!     println!("{event:?}");
//! }
//! node.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! This crate owns the node's files (identity, incarnation, space storage)
//! and the ergonomic API; it never speaks to the network directly
//! (concord-net does) and never decides replication (concord-sync does).

mod channels;
mod error;
mod identity;
mod node;
mod space;

pub use channels::{Counter, LastValue, SetChannel, Topic};
pub use concord_net::{Multiaddr, PeerId, PeerInfo, Subscription};
pub use concord_state::{
    ChannelKind, ChannelSpec, Delivery, Event, Origin, Policy, VectorClock, WriteReceipt,
};
pub use error::Error;
pub use node::{Node, NodeBuilder};
pub use space::Space;
