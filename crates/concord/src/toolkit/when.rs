//! `space.when(event, handler)`: run a handler for every event of a name,
//! once across the whole space (or once on every node).
//!
//! Exactly once across the space: every node running the handler tries,
//! for each retained event not yet handled, to claim it with a lock that
//! spans the space (`when.<handler>.<event id>`, taken without waiting).
//! The holder first catches up with the last holder's writes (the lock's
//! handoff), checks the space's [`HANDLED`] record, runs the handler with
//! the claim kept renewed, records the outcome, then releases. A node that
//! dies mid-handler stops renewing; once the claim expires another node
//! takes it, finds no record, and runs the handler to completion. A failed
//! run emits `<handler>_failed` and is tried again after the retry
//! policy's backoff, up to its attempts, on any node.
//!
//! This module owns the claim-check-run-record order and the handler task.
//! It must never run a handler for an event already recorded as handled
//! (as this node sees the space after catching up with the claim's last
//! holder), and never record an outcome without holding the claim.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use concord_net::wall_clock;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;
use tracing::Instrument;

use super::events::{AgentEvent, EVENT_RETENTION, EVENTS, check_name};
use super::retry::RetryPolicy;
use super::task::TaskHandle;
use crate::{Error, HeldLock, Space};

/// The topic recording which handler handled which event, and how.
pub const HANDLED: &str = "coordination/handled";

/// Default claim ttl: how long a node that died mid-handler holds others
/// up, at most.
pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(5);

/// How often a handler task looks again for events to take over when no
/// event arrives.
const RESCAN: Duration = Duration::from_millis(250);

/// One entry of [`HANDLED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handled {
    /// The handler's name.
    pub handler: String,
    /// The event's id.
    pub event: String,
    /// The node that ran it (peer id).
    pub by: String,
    /// Which run this was (1 for the first).
    pub attempt: u32,
    /// Whether it succeeded.
    pub ok: bool,
    /// Whether no more runs will be made (it succeeded, or failed its last
    /// attempt).
    pub done: bool,
}

/// What a handler gets besides the event.
#[derive(Debug, Clone)]
pub struct HandlerContext {
    /// The event's id, the same on every node: use it to make the
    /// handler's effects idempotent.
    pub event_id: String,
    /// Which run this is (1 for the first).
    pub attempt: u32,
    /// The space.
    pub space: Space,
}

/// A handler being set up by [`Space::when`].
pub struct When<F> {
    space: Space,
    event: String,
    handler: String,
    every_node: bool,
    retry: RetryPolicy,
    claim_ttl: Duration,
    run: F,
}

/// A running handler; stopping or dropping it stops it (a run under way
/// is dropped; its claim expires).
pub type WhenHandle = TaskHandle;

impl Space {
    /// Runs `handler` for each event named `event`, once across the space
    /// by default (see the module docs), from [`When::start`] on.
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
    /// let handler = space
    ///     .when("researcher_complete", |event, ctx| async move {
    ///         let summary = format!("summary of {}", event.payload["result"]);
    ///         ctx.space.emit("summary_ready", json!(summary)).await?;
    ///         Ok::<_, concord::Error>(())
    ///     })
    ///     .start()?;
    /// space.emit("researcher_complete", json!({"result": "3 papers"})).await?;
    /// while space.events("summary_ready").await?.is_empty() {
    ///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    /// }
    /// handler.stop();
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn when<F, Fut, E>(&self, event: &str, handler: F) -> When<F>
    where
        F: Fn(AgentEvent, HandlerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        When {
            space: self.clone(),
            event: event.to_owned(),
            handler: event.to_owned(),
            every_node: false,
            retry: RetryPolicy::default(),
            claim_ttl: DEFAULT_CLAIM_TTL,
            run: handler,
        }
    }
}

impl<F, Fut, E> When<F>
where
    F: Fn(AgentEvent, HandlerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    /// Runs on every node that registers it, once per node, for events
    /// that arrive after it started (a broadcast).
    pub fn on_every_node(mut self) -> Self {
        self.every_node = true;
        self
    }

    /// Names the handler (default: the event's name). Two handlers of one
    /// event need different names, each running once per event.
    pub fn named(mut self, handler: &str) -> Self {
        handler.clone_into(&mut self.handler);
        self
    }

    /// The retry policy for failed runs.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How long a claim lasts unrenewed (default [`DEFAULT_CLAIM_TTL`]).
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// Starts the handler on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::EventName`] for an invalid event or handler name (the
    /// handler's `_failed` event included).
    pub fn start(self) -> Result<WhenHandle, Error> {
        check_name(&self.event)?;
        check_name(&format!("{}_failed", self.handler))?;
        let span = tracing::info_span!("when", event = %self.event, handler = %self.handler);
        let task = tokio::spawn(
            async move {
                if let Err(e) = self.serve().await {
                    tracing::warn!(error = %e, "handler stopped");
                }
            }
            .instrument(span),
        );
        Ok(TaskHandle::new(task))
    }

    async fn serve(self) -> Result<(), Error> {
        let mut arrivals = self.space.subscribe(EVENTS).await?;
        // Events handled (or, for a broadcast, there before it started),
        // and when to look again at events another node has claimed.
        let mut seen = BTreeSet::new();
        let mut retry_at: BTreeMap<String, Instant> = BTreeMap::new();
        if self.every_node {
            seen.extend(
                self.space
                    .events(&self.event)
                    .await?
                    .into_iter()
                    .map(|(id, _)| id),
            );
        }
        loop {
            let events = self.space.events(&self.event).await?;
            let retained: BTreeSet<String> = events.iter().map(|(id, _)| id.clone()).collect();
            for (id, event) in events {
                if seen.contains(&id) || retry_at.get(&id).is_some_and(|at| *at > Instant::now()) {
                    continue;
                }
                if self.every_node {
                    seen.insert(id.clone());
                    self.run_once_here(&id, event).await;
                    continue;
                }
                match self.claim_and_run(&id, event).await {
                    Ok(Claim::Finished) => {
                        retry_at.remove(&id);
                        seen.insert(id);
                    }
                    Ok(Claim::Later(wait)) => {
                        retry_at.insert(id, Instant::now() + wait);
                    }
                    Err(e) => {
                        tracing::warn!(event = %id, error = %e, "claim failed; trying again later");
                        retry_at.insert(id, Instant::now() + self.claim_ttl / 2);
                    }
                }
            }
            // Forget what left the retention window: memory stays bounded
            // by the retained events.
            seen.retain(|id| retained.contains(id));
            retry_at.retain(|id, _| retained.contains(id));
            tokio::select! {
                arrived = arrivals.next() => if arrived.is_none() {
                    return Ok(()); // the node stopped
                },
                () = tokio::time::sleep(RESCAN) => {}
            }
        }
    }

    /// A broadcast run: no claim, no record.
    async fn run_once_here(&self, id: &str, event: AgentEvent) {
        let context = HandlerContext {
            event_id: id.to_owned(),
            attempt: 1,
            space: self.space.clone(),
        };
        if let Err(e) = (self.run)(event, context).await {
            let failed = json!({"event": id, "error": e.to_string(), "attempt": 1});
            if let Err(e) = self
                .space
                .emit(&format!("{}_failed", self.handler), failed)
                .await
            {
                tracing::warn!(error = %e, "could not emit the failure");
            }
        }
    }

    /// Claims event `id`, and if it is still to be handled, runs the
    /// handler once and records the outcome.
    async fn claim_and_run(&self, id: &str, event: AgentEvent) -> Result<Claim, Error> {
        let space = &self.space;
        let resource = format!("when.{}.{id}", self.handler);
        let backend = space.lease_backend().await?;
        let holder = space.holder_name();
        let Some(mut claim) =
            HeldLock::try_acquire(backend, space, &resource, self.claim_ttl, &holder).await?
        else {
            // Another node runs it; look again once its claim could expire.
            return Ok(Claim::Later(self.claim_ttl / 2));
        };
        // Caught up with the claim's last holder: its record is here.
        let runs = self.runs(id).await?;
        if runs.iter().any(|r| r.done) {
            claim.release().await?;
            return Ok(Claim::Finished);
        }
        let attempt = u32::try_from(runs.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let context = HandlerContext {
            event_id: id.to_owned(),
            attempt,
            space: space.clone(),
        };
        let outcome = claim.hold_while((self.run)(event, context)).await?;
        let ok = outcome.is_ok();
        let done = ok || self.retry.is_last(attempt);
        if let Err(e) = &outcome {
            let failed = json!({"event": id, "error": e.to_string(), "attempt": attempt});
            space
                .emit(&format!("{}_failed", self.handler), failed)
                .await?;
        }
        let record = Handled {
            handler: self.handler.clone(),
            event: id.to_owned(),
            by: holder,
            attempt,
            ok,
            done,
        };
        let ttl = u64::try_from(EVENT_RETENTION.as_millis()).unwrap_or(u64::MAX);
        // Committed before the release (the next claimant waits for it),
        // fsynced while the release is under way.
        let (recorded, durable) = space
            .commit(move |r| r.append_with_ttl(wall_clock(), HANDLED, &record, ttl))
            .await?;
        recorded?;
        claim.release().await?;
        durable.wait().await.map_err(Error::from)?;
        Ok(if done {
            Claim::Finished
        } else {
            Claim::Later(self.retry.backoff(attempt))
        })
    }

    /// The recorded runs of this handler for event `id`.
    async fn runs(&self, id: &str) -> Result<Vec<Handled>, Error> {
        let raw = self.space.read(|r| r.topic_entries(HANDLED)).await??;
        Ok(raw
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_value::<Handled>(v).ok())
            .filter(|h| h.handler == self.handler && h.event == id)
            .collect())
    }
}

/// How a claim attempt ended.
enum Claim {
    /// Handled, here or elsewhere: nothing more to do.
    Finished,
    /// Look again after this long.
    Later(Duration),
}
