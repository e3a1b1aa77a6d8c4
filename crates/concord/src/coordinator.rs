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
pub const INTENT_OPS: &str = "intent/ops";
/// Topic of external operations waiting to be executed.
pub const EXECUTION_QUEUE: &str = "coordination/execution_queue";
/// Topic of [`Outcome`]s: operations that completed.
pub const COMPLETED: &str = "execution/completed";
/// Topic of [`Failure`]s: operations that failed their last attempt.
pub const ERRORS: &str = "execution/errors";

/// Something an agent wants done.
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
pub type Executor =
    Arc<dyn Fn(Operation, FencingToken) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// Default lease ttl for one attempt; an executor should finish well within it.
const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Executes the operations of one space (see the module docs).
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
    pub fn with_name(mut self, name: &str) -> Coordinator {
        name.clone_into(&mut self.name);
        self
    }

    /// The lease ttl for one attempt (default 30 s).
    pub fn with_ttl(mut self, ttl: Duration) -> Coordinator {
        self.ttl = ttl;
        self
    }

    /// The retry policy for failed attempts.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Coordinator {
        self.retry = retry;
        self
    }

    /// Runs `executor` for external operations of `kind`. Operations of a
    /// kind with no executor stay queued (another coordinator may run them).
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
