//! The operation channels and their records: what agents post
//! ([`Operation`]), where it goes ([`INTENT_OPS`], [`EXECUTION_QUEUE`]) and
//! how it settles ([`Outcome`] in [`COMPLETED`], [`Failure`] in [`ERRORS`]).
//!
//! This module owns their names and JSON shapes; it never reads or writes
//! a space (the [`super::Coordinator`] does).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(doc)]
use super::{Coordinator, Executor};

/// Topic of internal operations applied by [`Coordinator::submit`].
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
/// use concord::coordinator::{Coordinator, INTENT_OPS, Operation};
/// use serde_json::json;
///
/// let coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
/// let note = Operation {
///     id: "note-1".into(),
///     kind: "note".into(),
///     resource: None,
///     payload: json!("release frozen"),
/// };
/// coordinator.submit(note.clone()).await?;
/// assert_eq!(space.topic::<Operation>(INTENT_OPS)?.entries().await?[0].1, note);
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub const INTENT_OPS: &str = "intent/ops";
/// Topic of external operations waiting to be executed.
///
/// An operation stays there after it ran; [`COMPLETED`] and [`ERRORS`]
/// say which ones are settled.
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
/// # let op = |id: &str, resource: Option<&str>| concord::coordinator::Operation {
/// #     id: id.into(),
/// #     kind: "deploy".into(),
/// #     resource: resource.map(Into::into),
/// #     payload: serde_json::Value::Null,
/// # };
/// use concord::coordinator::{Coordinator, EXECUTION_QUEUE, Operation};
///
/// let coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
/// coordinator.submit(op("deploy-1", Some("prod"))).await?;
/// let queue = space.topic::<Operation>(EXECUTION_QUEUE)?.entries().await?;
/// assert_eq!(queue[0].1.id, "deploy-1");
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub const EXECUTION_QUEUE: &str = "coordination/execution_queue";
/// Topic of [`Outcome`]s: operations that completed.
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
/// # let op = |id: &str, resource: Option<&str>| concord::coordinator::Operation {
/// #     id: id.into(),
/// #     kind: "deploy".into(),
/// #     resource: resource.map(Into::into),
/// #     payload: serde_json::Value::Null,
/// # };
/// use concord::coordinator::{COMPLETED, Coordinator, Outcome};
///
/// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
/// coordinator.register("deploy", |_, _| async { Ok(serde_json::json!("done")) })?;
/// coordinator.submit(op("deploy-1", Some("prod"))).await?;
/// coordinator.run_once().await?;
/// let completed = space.topic::<Outcome>(COMPLETED)?.entries().await?;
/// assert_eq!(completed[0].1.id, "deploy-1");
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub const COMPLETED: &str = "execution/completed";
/// Topic of [`Failure`]s: operations that failed their last attempt.
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
/// # let op = |id: &str, resource: Option<&str>| concord::coordinator::Operation {
/// #     id: id.into(),
/// #     kind: "deploy".into(),
/// #     resource: resource.map(Into::into),
/// #     payload: serde_json::Value::Null,
/// # };
/// use concord::coordinator::{Coordinator, ERRORS, Failure, RetryPolicy};
///
/// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?)
///     .with_retry(RetryPolicy { max_attempts: 1, ..RetryPolicy::default() });
/// coordinator.register("deploy", |_, _| async { Err("cluster unreachable".to_owned()) })?;
/// coordinator.submit(op("deploy-1", Some("prod"))).await?;
/// coordinator.run_once().await?;
/// let errors = space.topic::<Failure>(ERRORS)?.entries().await?;
/// assert_eq!(errors[0].1.error, "cluster unreachable");
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub const ERRORS: &str = "execution/errors";

/// Something an agent wants done.
///
/// It crosses the space as JSON:
///
/// ```
/// use concord::coordinator::Operation;
/// use serde_json::json;
///
/// let restart = Operation {
///     id: "restart-web-42".into(),
///     kind: "restart".into(),
///     resource: Some("k8s/web".into()), // external: runs under a lease on k8s/web
///     payload: json!({"replicas": 3}),
/// };
/// let wire = serde_json::to_value(&restart).unwrap();
/// assert_eq!(wire["resource"], "k8s/web");
/// assert_eq!(serde_json::from_value::<Operation>(wire).unwrap(), restart);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique id; resubmitting the same id is a no-op.
    pub id: String,
    /// Selects the [`Executor`].
    pub kind: String,
    /// The external resource it acts on (`None`: internal, CRDT only).
    pub resource: Option<String>,
    /// Arguments for the executor.
    pub payload: Value,
}

/// A completed operation, in [`COMPLETED`].
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
/// # let op = |id: &str, resource: Option<&str>| concord::coordinator::Operation {
/// #     id: id.into(),
/// #     kind: "deploy".into(),
/// #     resource: resource.map(Into::into),
/// #     payload: serde_json::Value::Null,
/// # };
/// use concord::coordinator::{COMPLETED, Coordinator, Outcome};
///
/// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
/// coordinator.register("deploy", |_, token| async move { Ok(token.get().into()) })?;
/// coordinator.submit(op("deploy-1", Some("prod"))).await?;
/// coordinator.run_once().await?;
/// let (_, outcome) = space.topic::<Outcome>(COMPLETED)?.entries().await?.remove(0);
/// assert_eq!(outcome.result, outcome.token.unwrap()); // what the executor returned
/// assert_eq!(outcome.by, "coordinator");
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The operation's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// The fencing token it ran under (`None` for an internal operation).
    pub token: Option<u64>,
    /// The coordinator that recorded it.
    pub by: String,
    /// The executor's result (`null` for an internal operation).
    pub result: Value,
}

/// An operation that failed every attempt, in [`ERRORS`].
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
/// # let op = |id: &str, resource: Option<&str>| concord::coordinator::Operation {
/// #     id: id.into(),
/// #     kind: "deploy".into(),
/// #     resource: resource.map(Into::into),
/// #     payload: serde_json::Value::Null,
/// # };
/// use concord::coordinator::{Coordinator, ERRORS, Failure, RetryPolicy};
/// use std::time::Duration;
///
/// let retry = RetryPolicy {
///     max_attempts: 2,
///     base_backoff: Duration::from_millis(1),
///     ..RetryPolicy::default()
/// };
/// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?).with_retry(retry);
/// coordinator.register("deploy", |_, _| async { Err("quota exceeded".to_owned()) })?;
/// coordinator.submit(op("deploy-1", Some("prod"))).await?;
/// coordinator.run_once().await?;
/// let (_, failure) = space.topic::<Failure>(ERRORS)?.entries().await?.remove(0);
/// assert_eq!((failure.attempts, failure.error.as_str()), (2, "quota exceeded"));
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The operation's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// The fencing token of the last attempt.
    pub token: u64,
    /// The coordinator that recorded it.
    pub by: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: String,
}

/// What [`Coordinator::submit`] did.
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
/// # let op = |id: &str, resource: Option<&str>| concord::coordinator::Operation {
/// #     id: id.into(),
/// #     kind: "deploy".into(),
/// #     resource: resource.map(Into::into),
/// #     payload: serde_json::Value::Null,
/// # };
/// use concord::coordinator::{Coordinator, Submitted};
///
/// let coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
/// assert_eq!(coordinator.submit(op("note-1", None)).await?, Submitted::Applied);
/// assert_eq!(coordinator.submit(op("deploy-1", Some("prod"))).await?, Submitted::Queued);
/// assert_eq!(coordinator.submit(op("deploy-1", Some("prod"))).await?, Submitted::Duplicate);
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Internal: applied and recorded as completed.
    Applied,
    /// External: appended to the execution queue.
    Queued,
    /// The id was already queued or settled; nothing was written.
    Duplicate,
}
