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
//! An execution *is* a coordinated step ([`Space::coordinate`] with the
//! operation's kind as the agent): one code path takes the lock, waits for
//! the last holder's writes, announces `<kind>_started`, runs the executor
//! with the lock renewed, records the outcome and `<kind>_complete` (or
//! `<kind>_failed`), and releases.
//!
//! Idempotence comes from operation ids: an id already recorded in
//! [`COMPLETED`] or [`ERRORS`] is *settled* and never runs again, and a
//! duplicate submission of a queued or settled id is ignored (the check and
//! the append happen in one step on the replica). Within one node that
//! makes execution at most once, however many coordinators run. Across
//! nodes the lock's handoff makes the next holder wait for the outcome
//! the last one recorded before its re-check; the fencing token is what
//! lets the external system refuse a late or stale holder.
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
//! })?;
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

mod executor;
mod ops;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use concord_lease::{FencingToken, LeaseBackend};
use concord_net::wall_clock;
use concord_state::{Replica, StateError};
use serde_json::Value;

pub use self::executor::Executor;
pub use self::ops::{
    COMPLETED, ERRORS, EXECUTION_QUEUE, Failure, INTENT_OPS, Operation, Outcome, Submitted,
};
pub use crate::toolkit::RetryPolicy;
use crate::toolkit::{StepContext, StepError, check_name};
use crate::{Error, Space};

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
/// coordinator.register("deploy", |op, _token| async move { Ok(op.payload) })?;
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
    executors: HashMap<String, Arc<dyn Executor>>,
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
    /// coordinator.register("deploy", |_, _| async { Ok(serde_json::Value::Null) })?;
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
    /// })?;
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

    /// The space whose operations it executes.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// Runs `executor` for external operations of `kind`. Operations of a
    /// kind with no executor stay queued (another coordinator may run them).
    /// Executions are announced as `<kind>_started` and `<kind>_complete`
    /// or `<kind>_failed` ([`Space::coordinate`]).
    ///
    /// # Errors
    /// [`Error::EventName`] if `<kind>_complete` is not a valid event name
    /// (letters, digits, `_ - .`, at most 64 bytes).
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
    /// })?;
    /// coordinator.submit(op("deploy-1", Some("prod"))).await?;
    /// assert_eq!(coordinator.run_once().await?, 1);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn register<F, Fut>(&mut self, kind: &str, executor: F) -> Result<(), Error>
    where
        F: Fn(Operation, FencingToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        self.register_executor(kind, executor)
    }

    /// Like [`Coordinator::register`], for an [`Executor`] of any type.
    ///
    /// # Errors
    /// [`Error::EventName`] if `kind_complete` is not a valid event name.
    pub fn register_executor(&mut self, kind: &str, executor: impl Executor) -> Result<(), Error> {
        // Its executions are announced as `<kind>_started` / `_complete` /
        // `_failed`: the longest must be a valid event name.
        check_name(&format!("{kind}_complete"))?;
        self.executors.insert(kind.to_owned(), Arc::new(executor));
        Ok(())
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
    /// coordinator.register("deploy", |_, _| async { Ok(serde_json::Value::Null) })?;
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
    /// coordinator.register("deploy", |_, _| async { Ok(serde_json::Value::Null) })?;
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

    /// Executes `op` on `resource` until it settles: each attempt is a
    /// coordinated step under a fresh lease (so a higher token) that first
    /// re-checks that nobody settled it meanwhile. `Ok(false)` if somebody
    /// had.
    async fn execute(
        &self,
        op: Operation,
        resource: &str,
        executor: &Arc<dyn Executor>,
    ) -> Result<bool, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = self.retry.is_last(attempt);
            let id = op.id.clone();
            let step = self
                .space
                .coordinate(&op.kind)
                .lock(resource)
                .ttl(self.ttl)
                .leases(Arc::clone(&self.backend))
                .holder(&self.name)
                .unless_done(move |r| settled(r, &id));
            let run = |ctx| self.attempt(op.clone(), ctx, Arc::clone(executor), attempt, last);
            match step.run(run).await {
                Ok(_) => return Ok(true),
                Err(StepError::AlreadyDone) => return Ok(false),
                Err(StepError::Concord(e) | StepError::Failed(Attempt::Unrecorded(e))) => {
                    return Err(e);
                }
                Err(StepError::Failed(Attempt::Failed(_))) if last => return Ok(true),
                Err(StepError::Failed(Attempt::Failed(error))) => {
                    tracing::warn!(id = %op.id, attempt, %error, "operation failed; retrying");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                }
            }
        }
    }

    /// One attempt at `op`, under the step's lock: runs the executor and
    /// records its outcome, or its failure if this was the `last` attempt,
    /// before the step's lock is released.
    async fn attempt(
        &self,
        op: Operation,
        ctx: StepContext,
        executor: Arc<dyn Executor>,
        attempt: u32,
        last: bool,
    ) -> Result<Value, Attempt> {
        let Some(token) = ctx.token() else {
            debug_assert!(false, "an execution always runs under a lock");
            return Err(Attempt::Failed("no lease held".to_owned()));
        };
        let result = executor.execute(op.clone(), token).await;
        let record = match &result {
            Ok(value) => Some((COMPLETED, self.outcome(&op, token, value.clone()))),
            Err(error) if last => Some((ERRORS, self.failure(&op, token, attempt, error))),
            Err(_) => None,
        };
        if let Some((path, record)) = record {
            let record = record.map_err(|e| Attempt::Unrecorded(Error::State(e.into())))?;
            self.space
                .run(move |r| r.append(wall_clock(), path, &record))
                .await
                .map_err(Attempt::Unrecorded)?;
        }
        result.map_err(Attempt::Failed)
    }

    fn outcome(
        &self,
        op: &Operation,
        token: FencingToken,
        result: Value,
    ) -> serde_json::Result<Value> {
        serde_json::to_value(Outcome {
            id: op.id.clone(),
            kind: op.kind.clone(),
            token: Some(token.get()),
            by: self.name.clone(),
            result,
        })
    }

    fn failure(
        &self,
        op: &Operation,
        token: FencingToken,
        attempts: u32,
        error: &str,
    ) -> serde_json::Result<Value> {
        serde_json::to_value(Failure {
            id: op.id.clone(),
            kind: op.kind.clone(),
            token: token.get(),
            by: self.name.clone(),
            attempts,
            error: error.to_owned(),
        })
    }
}

/// Why one attempt did not complete.
#[derive(Debug, thiserror::Error)]
enum Attempt {
    /// The executor failed (announced in `<kind>_failed`).
    #[error("{0}")]
    Failed(String),
    /// Its outcome could not be recorded.
    #[error("the outcome could not be recorded: {0}")]
    Unrecorded(Error),
}
