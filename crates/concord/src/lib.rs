//! # concord — coordinate AI agents without a central server
//!
//! The facade users link. A [`Node`] is one agent process: it owns a libp2p
//! identity (persisted in its data directory), durable replicas of the
//! [`Space`]s it joins, and the network driver that keeps them converged with
//! its peers. A [`Space`] gives typed access to channels in the four families
//! (`observation`, `intent`, `coordination`, `execution`), ephemeral
//! channels for heartbeats and presence ([`Ephemeral`]: gossiped, never
//! stored) and subscriptions as [`futures::Stream`]s.
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
//! Every node also runs a lease service ([`NodeBuilder::lease_peers`]):
//! [`Node::lock`] takes a lease with a [`FencingToken`] on a named
//! resource from the space's lease quorum, declared in the space
//! ([`LEASE_QUORUM`]), so that it excludes holders on every node of the
//! space; the next holder waits until it has what the last one wrote.
//!
//! A [`coordinator::Coordinator`] executes operations posted to a space
//! under those leases, at most once per operation id.
//!
//! This crate owns the node's files (identity, incarnation, space storage,
//! lease acceptor state) and the ergonomic API; it never speaks to the network directly
//! (concord-net does) and never decides replication (concord-sync does).

mod channels;
pub mod coordinator;
mod ephemeral;
mod error;
mod handoff;
mod identity;
mod lease;
mod node;
mod quorum;
mod schema;
mod settle;
mod space;
mod stats;
pub mod testing;
pub mod toolkit;

pub use channels::{Counter, LastValue, SetChannel, Topic};
pub use concord_lease::{
    BackendError, FencingToken, Lease, LeaseBackend, Millis, NodeId, ProposerStats, Resource,
};
/// Makes an async fn a coordinated step of an agent: the one-line form of
/// [`Space::coordinate`]`(agent).lock(resource).run(..)`.
///
/// The fn gains the [`Space`] as its first parameter, loses its (optional,
/// first) [`StepContext`] parameter, and returns `Result<T, StepError<E>>`
/// for its `Result<T, E>`. Arguments: `agent` (default: the fn's name),
/// `lock` (none by default), `ttl_ms` (the lock's ttl). Misuse (a fn that
/// is not async, a method, a return type that is not a `Result`) is a
/// compile error saying why.
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # let node = concord::Node::builder()
/// #     .data_dir(dir.path())
/// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
/// #     .build()
/// #     .await?;
/// use concord::StepContext;
///
/// #[concord::coordinate(agent = "researcher", lock = "openai_api")]
/// async fn research(ctx: StepContext, topic: &str) -> Result<String, std::io::Error> {
///     let token = ctx.token().expect("under the lock");
///     Ok(format!("3 papers on {topic} (token {token})"))
/// }
///
/// let space = node.space("team").await?;
/// let summary = research(&space, "CRDTs").await?;
/// assert!(summary.starts_with("3 papers on CRDTs"));
/// assert_eq!(space.events("researcher_complete").await?.len(), 1);
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub use concord_macros::coordinate;
pub use concord_net::lease::LeasePeer;
pub use concord_net::{
    Flow, Histogram, LATENCY_BUCKETS, Latency, Multiaddr, PeerId, PeerInfo, SpaceStats,
    Subscription, Traffic,
};
pub use concord_state::{
    ActorId, ChannelKind, ChannelSpec, Delivery, EphemeralReceipt, Event, MAX_MIGRATIONS,
    MAX_SCHEMA_VERSION, Origin, Policy, StateError, VectorClock, WriteReceipt,
};
pub use ephemeral::Ephemeral;
pub use error::Error;
pub use lease::{HeldLock, LOCK_HOLDERS, LockHolder};
pub use node::{Node, NodeBuilder, valid_space_name};
pub use quorum::{Declaration, DeclaredPeer, LEASE_QUORUM, MAX_QUORUM_MEMBERS, QUORUM_WAIT};
pub use space::Space;
pub use stats::NodeStats;
pub use toolkit::{
    AgentEvent, HandlerContext, Observation, Observer, RetryPolicy, Runner, StepContext, StepError,
};
