//! [`Coordinator`]: turns operations posted by agents into effects, once.
//!
//! An [`Operation`] without a resource is *internal*: [`Coordinator::submit`]
//! applies it to the space at once (appends it to [`INTENT_OPS`]) and
//! records it in [`COMPLETED`]; no lock is taken (DESIGN §4). One with a
//! resource is *external*: it is appended to [`EXECUTION_QUEUE`], and
//! [`Coordinator::run_once`] (or the loop [`Coordinator::run`]) executes it:
//! take the lease on its resource, re-check that nobody settled it
//! meanwhile, run the [`Executor`] registered for its kind with the lease's
//! fencing token, append the outcome to [`COMPLETED`] or, after the last of
//! [`RetryPolicy::max_attempts`] failures, to [`ERRORS`], and release. Every
//! attempt takes the lease anew, so each runs under its own, higher token.
//!
//! Idempotence comes from operation ids: an id already recorded in
//! [`COMPLETED`] or [`ERRORS`] is *settled* and never runs again, and a
//! duplicate submission of a queued or settled id is ignored (the check and
//! the append happen in one step on the replica). Within one node that
//! makes execution at most once, however many coordinators run. Across
//! nodes it relies on the outcome having replicated before the next
//! holder's re-check; the fencing token is what lets the external system
//! refuse a late or stale holder.
//!
//! This module owns the operation channels' format and the execution
//! procedure. It must never run an executor without holding the lease on
//! the operation's resource, never release that lease before the outcome is
//! recorded, and never execute a settled operation.
//!
//! ```
//! # async fn example() -> anyhow::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let node = concord::Node::builder()
//! #     .data_dir(dir.path())
//! #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
//! #     .build()
//! #     .await?;
//! use concord::coordinator::{COMPLETED, Coordinator, Operation, Outcome};
//! use serde_json::json;
//!
//! let space = node.space("release").await?;
//! let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
//! coordinator.register("deploy", |op, token| async move {
//!     Ok(json!({"deployed": op.payload["version"], "token": token.get()}))
//! });
//! let deploy = Operation {
//!     id: "deploy-2.1".into(),
//!     kind: "deploy".into(),
//!     resource: Some("prod".into()),
//!     payload: json!({"version": "2.1"}),
//! };
//! coordinator.submit(deploy).await?;
//! assert_eq!(coordinator.run_once().await?, 1);
//! let outcomes = space.topic::<Outcome>(COMPLETED)?.entries().await?;
//! assert_eq!(outcomes[0].1.result["deployed"], "2.1");
//! # node.shutdown().await?;
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use concord_lease::{FencingToken, LeaseBackend};
use concord_net::wall_clock;
use concord_state::{Replica, StateError};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, HeldLock, Space};

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
/// coordinator.register("deploy", |_, _| async { Ok(serde_json::json!("done")) });
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
/// coordinator.register("deploy", |_, _| async { Err("cluster unreachable".to_owned()) });
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
/// coordinator.register("deploy", |_, token| async move { Ok(token.get().into()) });
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
/// coordinator.register("deploy", |_, _| async { Err("quota exceeded".to_owned()) });
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

/// How failed attempts are retried: `base_backoff`, doubled after each
/// failure up to `max_backoff`, at most `max_attempts` attempts in all.
///
/// ```
/// use concord::coordinator::RetryPolicy;
/// use std::time::Duration;
///
/// let default = RetryPolicy::default();
/// assert_eq!(default.max_attempts, 3);
/// // Five attempts, waiting 1 s, 2 s, 4 s, then 5 s between them.
/// let patient = RetryPolicy {
///     max_attempts: 5,
///     base_backoff: Duration::from_secs(1),
///     max_backoff: Duration::from_secs(5),
/// };
/// # let _ = patient;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before the failure is recorded in [`ERRORS`] (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failure.
    pub base_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.base_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// Runs one external operation under its lease's fencing token.
///
/// [`Coordinator::register`] turns an async closure into one; an
/// `Executor` is also a plain function value:
///
/// ```
/// use concord::FencingToken;
/// use concord::coordinator::{Executor, Operation};
/// use futures::FutureExt;
/// use std::sync::Arc;
///
/// let echo: Executor = Arc::new(|op: Operation, token: FencingToken| {
///     async move { Ok(serde_json::json!({"id": op.id, "token": token.get()})) }.boxed()
/// });
/// let op = Operation {
///     id: "op-1".into(),
///     kind: "echo".into(),
///     resource: None,
///     payload: Default::default(),
/// };
/// let result = futures::executor::block_on(echo(op, FencingToken::new(7)));
/// assert_eq!(result.unwrap()["token"], 7);
/// ```
pub type Executor =
    Arc<dyn Fn(Operation, FencingToken) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// Default lease ttl for one attempt; an executor should finish well within it.
const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Executes the operations of one space (see the module docs).
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
/// use concord::coordinator::Coordinator;
/// use std::time::Duration;
///
/// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?)
///     .with_name(&node.peer_id().to_string())
///     .with_ttl(Duration::from_secs(60));
/// coordinator.register("deploy", |op, _token| async move { Ok(op.payload) });
/// coordinator.submit(op("deploy-1", Some("prod"))).await?;
/// assert_eq!(coordinator.run_once().await?, 1);
/// assert_eq!(coordinator.run_once().await?, 0); // settled: never again
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub struct Coordinator {
    space: Space,
    backend: Arc<dyn LeaseBackend>,
    name: String,
    ttl: Duration,
    retry: RetryPolicy,
    executors: HashMap<String, Executor>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("space", &self.space.name())
            .field("name", &self.name)
            .field("kinds", &self.executors.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The ids of the operations in the topic at `path`.
fn ids_in(r: &Replica, path: &str) -> Result<HashSet<String>, StateError> {
    Ok(r.topic_entries(path)?
        .into_iter()
        .filter_map(|(_, v)| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect())
}

fn settled(r: &Replica, id: &str) -> Result<bool, StateError> {
    Ok(ids_in(r, COMPLETED)?.contains(id) || ids_in(r, ERRORS)?.contains(id))
}

impl Coordinator {
    /// A coordinator for `space` taking leases from `backend` (e.g.
    /// [`crate::Node::lease_backend`]), named `coordinator` in outcomes and
    /// lock mirrors until [`Coordinator::with_name`].
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
    /// use concord::coordinator::Coordinator;
    ///
    /// let coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
    /// // With no executor registered, it runs nothing.
    /// assert_eq!(coordinator.run_once().await?, 0);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn new(space: Space, backend: Arc<dyn LeaseBackend>) -> Coordinator {
        Coordinator {
            space,
            backend,
            name: "coordinator".to_owned(),
            ttl: DEFAULT_TTL,
            retry: RetryPolicy::default(),
            executors: HashMap::new(),
        }
    }

    /// Names this coordinator in outcomes and lock mirrors (e.g. its peer id).
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
    /// let coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?)
    ///     .with_name("planner");
    /// coordinator.submit(op("note-1", None)).await?;
    /// let (_, outcome) = space.topic::<Outcome>(COMPLETED)?.entries().await?.remove(0);
    /// assert_eq!(outcome.by, "planner");
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn with_name(mut self, name: &str) -> Coordinator {
        name.clone_into(&mut self.name);
        self
    }

    /// The lease ttl for one attempt (default 30 s).
    ///
    /// Choose it well above the slowest executor run: the lease is not
    /// renewed while the executor works.
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
    /// use concord::coordinator::Coordinator;
    /// use std::time::Duration;
    ///
    /// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?)
    ///     .with_ttl(Duration::from_secs(5));
    /// coordinator.register("deploy", |_, _| async { Ok(serde_json::Value::Null) });
    /// coordinator.submit(op("deploy-1", Some("prod"))).await?;
    /// assert_eq!(coordinator.run_once().await?, 1);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn with_ttl(mut self, ttl: Duration) -> Coordinator {
        self.ttl = ttl;
        self
    }

    /// The retry policy for failed attempts.
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
    /// use concord::coordinator::{COMPLETED, Coordinator, Outcome, RetryPolicy};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    ///
    /// let retry = RetryPolicy {
    ///     base_backoff: Duration::from_millis(1),
    ///     ..RetryPolicy::default() // 3 attempts
    /// };
    /// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?)
    ///     .with_retry(retry);
    /// let calls = AtomicU32::new(0);
    /// coordinator.register("deploy", move |_, _| {
    ///     let flaky = calls.fetch_add(1, Ordering::SeqCst) == 0; // the first attempt fails
    ///     async move { if flaky { Err("timeout".to_owned()) } else { Ok("ok".into()) } }
    /// });
    /// coordinator.submit(op("deploy-1", Some("prod"))).await?;
    /// coordinator.run_once().await?;
    /// let (_, outcome) = space.topic::<Outcome>(COMPLETED)?.entries().await?.remove(0);
    /// assert_eq!(outcome.result, "ok");
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn with_retry(mut self, retry: RetryPolicy) -> Coordinator {
        self.retry = retry;
        self
    }

    /// Runs `executor` for external operations of `kind`. Operations of a
    /// kind with no executor stay queued (another coordinator may run them).
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
    /// use concord::coordinator::Coordinator;
    ///
    /// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
    /// coordinator.register("deploy", |op, token| async move {
    ///     // Act on op.resource, handing the fencing token to the external system.
    ///     Ok(serde_json::json!({"id": op.id, "token": token.get()}))
    /// });
    /// coordinator.submit(op("deploy-1", Some("prod"))).await?;
    /// assert_eq!(coordinator.run_once().await?, 1);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn register<F, Fut>(&mut self, kind: &str, executor: F)
    where
        F: Fn(Operation, FencingToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        let executor: Executor = Arc::new(move |op, token| Box::pin(executor(op, token)));
        self.executors.insert(kind.to_owned(), executor);
    }

    /// Applies an internal operation or queues an external one, unless its
    /// id is already queued or settled.
    ///
    /// See [`Submitted`] for the three answers.
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
    /// assert_eq!(coordinator.submit(op("deploy-1", Some("prod"))).await?, Submitted::Queued);
    /// assert_eq!(coordinator.submit(op("deploy-1", Some("prod"))).await?, Submitted::Duplicate);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn submit(&self, op: Operation) -> Result<Submitted, Error> {
        let by = self.name.clone();
        self.space
            .run(move |r| {
                if settled(r, &op.id)? {
                    return Ok(Submitted::Duplicate);
                }
                if op.resource.is_some() {
                    if ids_in(r, EXECUTION_QUEUE)?.contains(&op.id) {
                        return Ok(Submitted::Duplicate);
                    }
                    r.append(wall_clock(), EXECUTION_QUEUE, &op)?;
                    return Ok(Submitted::Queued);
                }
                r.append(wall_clock(), INTENT_OPS, &op)?;
                let outcome = Outcome {
                    id: op.id,
                    kind: op.kind,
                    token: None,
                    by,
                    result: Value::Null,
                };
                r.append(wall_clock(), COMPLETED, &outcome)?;
                Ok(Submitted::Applied)
            })
            .await
    }

    /// Executes every queued, unsettled operation this coordinator has an
    /// executor for, one after another; returns how many it settled.
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
    /// use concord::coordinator::Coordinator;
    ///
    /// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
    /// coordinator.register("deploy", |_, _| async { Ok(serde_json::Value::Null) });
    /// coordinator.submit(op("deploy-1", Some("prod"))).await?;
    /// coordinator.submit(op("deploy-2", Some("staging"))).await?;
    /// assert_eq!(coordinator.run_once().await?, 2);
    /// assert_eq!(coordinator.run_once().await?, 0);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn run_once(&self) -> Result<usize, Error> {
        let queue = self
            .space
            .run(|r| {
                let settled: HashSet<String> = ids_in(r, COMPLETED)?
                    .into_iter()
                    .chain(ids_in(r, ERRORS)?)
                    .collect();
                let mut seen = HashSet::new();
                let mut pending = Vec::new();
                for (_, value) in r.topic_entries(EXECUTION_QUEUE)? {
                    let op: Operation = serde_json::from_value(value)?;
                    if !settled.contains(&op.id) && seen.insert(op.id.clone()) {
                        pending.push(op);
                    }
                }
                Ok(pending)
            })
            .await?;
        let mut settled = 0;
        for op in queue {
            let (Some(executor), Some(resource)) =
                (self.executors.get(&op.kind), op.resource.clone())
            else {
                continue;
            };
            if self.execute(op, &resource, executor).await? {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Calls [`Coordinator::run_once`] every `every` until it fails.
    ///
    /// Typically spawned for the life of the node:
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
    /// use std::time::Duration;
    ///
    /// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
    /// coordinator.register("deploy", |_, _| async { Ok(serde_json::Value::Null) });
    /// coordinator.submit(op("deploy-1", Some("prod"))).await?;
    /// let task = tokio::spawn(async move { coordinator.run(Duration::from_millis(20)).await });
    /// let completed = space.topic::<Outcome>(COMPLETED)?;
    /// # for _ in 0..500 {
    /// #     if !completed.entries().await?.is_empty() { break }
    /// #     tokio::time::sleep(Duration::from_millis(10)).await;
    /// # }
    /// // ... soon after:
    /// assert_eq!(completed.entries().await?[0].1.id, "deploy-1");
    /// task.abort();
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn run(&self, every: Duration) -> Error {
        loop {
            if let Err(e) = self.run_once().await {
                return e;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Runs `op` to an outcome unless someone settles it first; true if
    /// this call recorded the outcome.
    async fn execute(
        &self,
        op: Operation,
        resource: &str,
        executor: &Executor,
    ) -> Result<bool, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let held = HeldLock::acquire(
                Arc::clone(&self.backend),
                &self.space,
                resource,
                self.ttl,
                &self.name,
            )
            .await?;
            let id = op.id.clone();
            if self.space.run(move |r| settled(r, &id)).await? {
                release(held).await;
                return Ok(false);
            }
            let token = held.token();
            let result = executor(op.clone(), token).await;
            let last = attempt >= self.retry.max_attempts;
            let (path, record) = match result {
                Ok(result) => (
                    COMPLETED,
                    serde_json::to_value(Outcome {
                        id: op.id.clone(),
                        kind: op.kind.clone(),
                        token: Some(token.get()),
                        by: self.name.clone(),
                        result,
                    }),
                ),
                Err(error) if last => (
                    ERRORS,
                    serde_json::to_value(Failure {
                        id: op.id.clone(),
                        kind: op.kind.clone(),
                        token: token.get(),
                        by: self.name.clone(),
                        attempts: attempt,
                        error,
                    }),
                ),
                Err(error) => {
                    tracing::warn!(id = %op.id, attempt, %error, "operation failed; retrying");
                    release(held).await;
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    continue;
                }
            };
            let record = record.map_err(|e| Error::State(e.into()))?;
            let recorded = self
                .space
                .run(move |r| r.append(wall_clock(), path, &record))
                .await;
            release(held).await;
            recorded?;
            return Ok(true);
        }
    }
}

/// Releases `held`; a failure only delays the next holder until expiry.
async fn release(held: HeldLock) {
    if let Err(e) = held.release().await {
        tracing::warn!(error = %e, "lease not released; it will expire");
    }
}
