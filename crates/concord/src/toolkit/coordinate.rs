//! `space.coordinate(agent)`: one step of an agent, optionally under a
//! lock that spans the space, announced to the space as events.
//!
//! ```text
//! <agent>_started   {"token": t}
//! <agent>_complete  {"result": <the step's output>, "duration_ms": n, "token": t}
//! <agent>_failed    {"error": "<its error>", "duration_ms": n, "token": t}
//! ```
//!
//! This module owns the order "lock, started, run (lock kept renewed),
//! complete or failed, release". It must never run the step without the
//! lock it was asked to take, never let it go on once a renewal failed
//! (the step's future is dropped), and never report a step as complete
//! before its outcome event is written.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_lease::{FencingToken, LeaseBackend, Permits, Resource};
use concord_state::{Replica, StateError};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::Instrument;

use super::events::{append_event, check_name};
use crate::lease::wait_for_permit;
use crate::{Error, HeldLock, Space};

/// Default lock ttl of a coordinated step; the lock is renewed while the
/// step runs, so this bounds only how long a crashed holder blocks others.
pub const DEFAULT_STEP_TTL: Duration = Duration::from_secs(10);

/// Checked on the replica once the step's lock is held: `true` means the
/// work was done already (by an earlier holder), so the step must not run.
type DoneCheck = Box<dyn FnOnce(&Replica) -> Result<bool, StateError> + Send>;

/// A coordinated step of `agent`, built by [`Space::coordinate`].
pub struct Coordinate {
    space: Space,
    agent: String,
    lock: Option<String>,
    limit: Option<Limit>,
    ttl: Duration,
    leases: Option<Arc<dyn LeaseBackend>>,
    holder: Option<String>,
    done: Option<DoneCheck>,
}

impl std::fmt::Debug for Coordinate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinate")
            .field("space", &self.space.name())
            .field("agent", &self.agent)
            .field("lock", &self.lock)
            .field("limit", &self.limit)
            .field("ttl", &self.ttl)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// A rate limit on a shared resource, counted across every node of the
/// space (see [`Coordinate::limit`]).
#[derive(Debug, Clone)]
struct Limit {
    resource: String,
    in_flight: u32,
    per_window: (u32, Duration),
}

/// What a coordinated step knows while it runs.
#[derive(Debug, Clone)]
pub struct StepContext {
    token: Option<FencingToken>,
    space: Space,
}

impl StepContext {
    /// The fencing token of the step's lock (`None` for a step without
    /// one): pass it to whatever the step changes in the outside world.
    pub fn token(&self) -> Option<FencingToken> {
        self.token
    }

    /// The space the step runs in.
    pub fn space(&self) -> &Space {
        &self.space
    }
}

/// Why a coordinated step did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StepError<E> {
    /// The step itself failed (`<agent>_failed` was emitted).
    #[error("the step failed: {0}")]
    Failed(E),
    /// Concord failed around it: taking or keeping the lock, or writing
    /// the events.
    #[error(transparent)]
    Concord(#[from] Error),
    /// The step did not run: once its lock was held, the space showed the
    /// work done already (only for the coordinator's executions, which
    /// check that their operation is not settled; nothing was emitted).
    #[error("the step was done already")]
    AlreadyDone,
}

impl Space {
    /// A step of `agent` (letters, digits, `_ - .`; with `_complete`
    /// appended, at most 64 bytes): see [`Coordinate::run`].
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
    /// let summary = space
    ///     .coordinate("researcher")
    ///     .lock("openai_api")
    ///     .run(|ctx| async move {
    ///         let token = ctx.token().expect("locked");
    ///         Ok::<_, std::io::Error>(format!("3 papers (token {token})"))
    ///     })
    ///     .await?;
    /// assert!(summary.starts_with("3 papers"));
    /// let done = space.events("researcher_complete").await?;
    /// assert_eq!(done[0].1.payload["result"], summary.as_str());
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn coordinate(&self, agent: &str) -> Coordinate {
        Coordinate {
            space: self.clone(),
            agent: agent.to_owned(),
            lock: None,
            limit: None,
            ttl: DEFAULT_STEP_TTL,
            leases: None,
            holder: None,
            done: None,
        }
    }
}

impl Coordinate {
    /// Runs the step under the lock on `resource`, which excludes holders
    /// on every node of the space.
    pub fn lock(mut self, resource: &str) -> Coordinate {
        self.lock = Some(resource.to_owned());
        self
    }

    /// Runs the step only while at most `in_flight` steps limited on
    /// `resource` run at once and at most `per_window.0` of them started
    /// within any `per_window.1`, counted across every node of the space.
    ///
    /// The first is a counting semaphore (`<resource>.in_flight`) held
    /// while the step runs; the second, a semaphore of `per_window.0`
    /// permits (`<resource>.window`) of which each step takes one for
    /// `per_window.1` and never gives it back early, so that no more than
    /// that many steps start within any such window (the window must not
    /// exceed the lease service's maximum ttl; both counts are 1 to
    /// [`concord_lease::MAX_PERMITS`]). A step waits for both.
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
    /// let answer = space
    ///     .coordinate("caller")
    ///     .limit("openai_api", 4, (60, Duration::from_secs(60)))
    ///     .run(|_| async { Ok::<_, std::io::Error>("42") })
    ///     .await?;
    /// assert_eq!(answer, "42");
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn limit(
        mut self,
        resource: &str,
        in_flight: u32,
        per_window: (u32, Duration),
    ) -> Coordinate {
        self.limit = Some(Limit {
            resource: resource.to_owned(),
            in_flight,
            per_window,
        });
        self
    }

    /// The lock's ttl (default [`DEFAULT_STEP_TTL`]).
    pub fn ttl(mut self, ttl: Duration) -> Coordinate {
        self.ttl = ttl;
        self
    }

    /// Takes the lock and the limits from `leases` (etcd, say) instead of
    /// the space's lease quorum ([`Space::lease_backend`]).
    pub fn leases(mut self, leases: Arc<dyn LeaseBackend>) -> Coordinate {
        self.leases = Some(leases);
        self
    }

    /// Names the holder mirrored into [`crate::LOCK_HOLDERS`] (default:
    /// this node's peer id).
    pub fn holder(mut self, holder: &str) -> Coordinate {
        self.holder = Some(holder.to_owned());
        self
    }

    /// Skips the step, with [`StepError::AlreadyDone`] and no event, if
    /// `done` says so on the replica once the lock is held (and the last
    /// holder's writes are in).
    pub(crate) fn unless_done(
        mut self,
        done: impl FnOnce(&Replica) -> Result<bool, StateError> + Send + 'static,
    ) -> Coordinate {
        self.done = Some(Box::new(done));
        self
    }

    /// Takes the lock (waiting while others hold it, then until this node
    /// has what the last holder wrote), emits `<agent>_started`, runs
    /// `step` with the lock kept renewed, emits `<agent>_complete` with its
    /// output or `<agent>_failed` with its error, and releases the lock.
    ///
    /// # Errors
    /// [`StepError::Failed`] with the step's error, or
    /// [`StepError::Concord`] if the lock could not be taken or kept (the
    /// step is then stopped), the agent name is invalid, or an event could
    /// not be written.
    pub async fn run<T, E, F, Fut>(self, step: F) -> Result<T, StepError<E>>
    where
        T: Serialize,
        E: std::fmt::Display,
        F: FnOnce(StepContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // The longest event name it emits must be valid.
        check_name(&format!("{}_complete", self.agent))?;
        let span = tracing::info_span!("coordinate", agent = %self.agent, lock = ?self.lock);
        self.run_step(step).instrument(span).await
    }

    async fn run_step<T, E, F, Fut>(self, step: F) -> Result<T, StepError<E>>
    where
        T: Serialize,
        E: std::fmt::Display,
        F: FnOnce(StepContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let space = &self.space;
        let backend = match &self.leases {
            Some(leases) => Some(Arc::clone(leases)),
            None if self.lock.is_some() || self.limit.is_some() => {
                Some(space.lease_backend().await?)
            }
            None => None,
        };
        let holder = self.holder.clone().unwrap_or_else(|| space.holder_name());
        let name = |what: &str| format!("{}_{what}", self.agent);
        let mut lock = match (&self.lock, &backend) {
            (Some(resource), Some(backend)) => Some(
                HeldLock::acquire(Arc::clone(backend), space, resource, self.ttl, &holder).await?,
            ),
            _ => None,
        };
        let mut slot = match (&self.limit, backend) {
            (Some(limit), Some(backend)) => {
                Some(take_limit(backend, space, limit, self.ttl, &holder).await?)
            }
            _ => None,
        };
        // Once the lock and limits are held, in one step: the done check,
        // then `_started` (not waited for on disk: the step's outcome is
        // what must last).
        let token = lock.as_ref().map(HeldLock::token);
        let (done, started_event, by) = (self.done, name("started"), space.holder_name());
        let entered = space
            .commit_lazy(move |r| {
                if let Some(done) = done
                    && done(r)?
                {
                    return Ok::<_, StateError>(true);
                }
                let announce = json!({"token": token.map(FencingToken::get)});
                append_event(r, &by, &started_event, announce)?;
                Ok(false)
            })
            .await?
            .0;
        match entered {
            Ok(false) => {}
            Ok(true) => {
                release_all(lock, slot).await?;
                return Err(StepError::AlreadyDone);
            }
            Err(e) => {
                release_all(lock, slot).await?;
                return Err(Error::from(e).into());
            }
        }
        let token = lock.as_ref().map(HeldLock::token);
        let started = Instant::now();
        let context = StepContext {
            token,
            space: space.clone(),
        };
        let outcome = match (lock.as_mut(), slot.as_mut()) {
            (Some(lock), Some(slot)) => lock.hold_while(slot.hold_while(step(context))).await??,
            (Some(held), None) | (None, Some(held)) => held.hold_while(step(context)).await?,
            (None, None) => step(context).await,
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let token = token.map(FencingToken::get);
        let (event, result) = match outcome {
            Ok(value) => {
                let result = serde_json::to_value(&value).unwrap_or(Value::Null);
                let event = json!({"result": result, "duration_ms": duration_ms, "token": token});
                ((name("complete"), event), Ok(value))
            }
            Err(e) => {
                let event =
                    json!({"error": e.to_string(), "duration_ms": duration_ms, "token": token});
                ((name("failed"), event), Err(StepError::Failed(e)))
            }
        };
        // The outcome is written in the step that releases the lock (so the
        // handoff covers it: the next holder waits for it), and on disk
        // here before the caller hears of it; the release and the fsync
        // overlap.
        let by = space.holder_name();
        let outcome = move |r: &mut Replica| append_event(r, &by, &event.0, event.1);
        // The lock (or else the slot) is released with the outcome.
        let (first, second) = match (lock, slot) {
            (Some(lock), slot) => (Some(lock), slot),
            (None, slot) => (slot, None),
        };
        let (written, durable) = match first {
            Some(first) => {
                let released = first.release_after(outcome).await;
                if let Some(second) = second {
                    second.release().await?;
                }
                released?
            }
            None => space.commit(outcome).await?,
        };
        written.map_err(Error::from)?;
        durable.wait().await.map_err(Error::from)?;
        result
    }
}

/// Waits for an in-flight slot, which it returns held, and then for a
/// start within `limit`'s window (a permit taken and left to expire). In
/// that order: the step starts as soon as its window permit is granted.
async fn take_limit(
    backend: Arc<dyn LeaseBackend>,
    space: &Space,
    limit: &Limit,
    ttl: Duration,
    holder: &str,
) -> Result<HeldLock, Error> {
    let in_flight = format!("{}.in_flight", limit.resource);
    let slot = HeldLock::acquire_permit(
        backend.clone(),
        space,
        &in_flight,
        limit.in_flight,
        ttl,
        holder,
    )
    .await?;
    let (starts, window) = limit.per_window;
    let resource = Resource::new(format!("{}.window", limit.resource))?;
    let started = wait_for_permit(
        backend.as_ref(),
        &resource,
        Permits::new(starts)?,
        crate::lease::millis(window),
    )
    .await?;
    // Never released: it counts against the window until it expires.
    drop(started);
    Ok(slot)
}

/// Releases what a step holds, the lock first.
async fn release_all(lock: Option<HeldLock>, slot: Option<HeldLock>) -> Result<(), Error> {
    for held in [lock, slot].into_iter().flatten() {
        held.release().await?;
    }
    Ok(())
}
