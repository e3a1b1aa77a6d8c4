//! `space.when(event, handler)`: run a handler for every event of a name,
//! once across the whole space (or once on every node).
//!
//! Exactly once across the space: the nodes running a handler share its
//! events out by partition, each partition a lock that spans the space,
//! held standing by one node ahead of the events (see `claims.rs`). An
//! event arriving in a partition this node holds runs at once: the lease
//! was taken before, and the node caught up with the partition's last
//! holder (its records of what it handled) when it took it. The holder
//! checks the space's [`HANDLED`] record, runs the handler with the claim
//! kept renewed (events of different partitions at the same time, see
//! `once.rs`), and records the outcome. A node that dies stops renewing;
//! once its claims expire, the other nodes take its partitions, find no
//! record for what it did not finish, and run those to completion. A
//! failed run emits `<handler>_failed` and is tried again after the retry
//! policy's backoff, up to its attempts.
//!
//! This module owns the handler task: the order claim, check, run, record.
//! It must never run a handler for an event recorded as handled (as this
//! node sees the space after catching up with the partition's last
//! holder), and never run one nor record an outcome outside a held claim.

mod claims;
mod once;
mod work;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use concord_state::{Delivery, Event};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::events::{AgentEvent, EVENTS, check_name};
use super::retry::RetryPolicy;
use super::task::TaskHandle;
use crate::{Error, Space};
pub use claims::CLAIM_PARTITIONS;
pub use work::MAX_TRACKED_EVENTS;

/// The topic recording which handler handled which event, and how.
pub const HANDLED: &str = "coordination/handled";

/// Default claim ttl: how long a node that died (or stopped its handler)
/// holds up the events of its partitions, at most.
pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(5);

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
    concurrency: usize,
    run: F,
}

/// A running handler. [`TaskHandle::stop`] stops its runs and gives back
/// the partitions it holds, so other nodes take them at once (an event
/// whose run was stopped runs again there). Dropping it stops it as a
/// crash would: its partitions wait for their claims to expire (the claim
/// ttl) before other nodes take them over.
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
            concurrency: usize::from(CLAIM_PARTITIONS),
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

    /// How long a claim lasts unrenewed (default [`DEFAULT_CLAIM_TTL`]):
    /// how long the events of a node that died wait, at most, before other
    /// nodes take them over. Also the ttl of the handler's announcements
    /// (the first node to announce a handler declares it).
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// How many events this node runs at once, at most (default and
    /// highest: [`CLAIM_PARTITIONS`], one per partition; 0 counts as 1).
    /// Events of one partition always run one after another.
    pub fn concurrency(mut self, runs: usize) -> Self {
        self.concurrency = runs.clamp(1, usize::from(CLAIM_PARTITIONS));
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
        let (wind_down, stop) = oneshot::channel();
        let task = tokio::spawn(
            async move {
                if let Err(e) = self.serve(stop).await {
                    tracing::warn!(error = %e, "handler stopped");
                }
            }
            .instrument(span),
        );
        Ok(TaskHandle::winding_down(task, wind_down))
    }

    async fn serve(self, stop: oneshot::Receiver<()>) -> Result<(), Error> {
        if self.every_node {
            tokio::select! {
                served = self.serve_every_node() => served,
                _ = stop => Ok(()),
            }
        } else {
            self.serve_once(stop).await
        }
    }

    /// Broadcast: every event that arrives after the start, run here once.
    async fn serve_every_node(self) -> Result<(), Error> {
        let mut arrivals = self.space.subscribe(EVENTS).await?;
        let mut seen: BTreeSet<String> = self.retained().await?.into_keys().collect();
        while let Some(delivery) = arrivals.next().await {
            let events = match delivery {
                Delivery::Event(Event {
                    key: Some(id),
                    new: Some(value),
                    ..
                }) => match serde_json::from_value::<AgentEvent>(value) {
                    Ok(event) if event.name == self.event => BTreeMap::from([(id, event)]),
                    _ => BTreeMap::new(),
                },
                Delivery::Event(_) => BTreeMap::new(),
                // Some were missed: every retained one not seen yet.
                Delivery::Lagged { .. } => self.retained().await?,
            };
            for (id, event) in events {
                if seen.insert(id.clone()) {
                    self.run_once_here(&id, event).await;
                }
            }
            // Memory stays bounded by the retained events.
            if seen.len() > MAX_TRACKED_EVENTS {
                let retained = self.retained().await?;
                seen.retain(|id| retained.contains_key(id));
            }
        }
        Ok(()) // the node stopped
    }

    /// The retained events of this handler's name, by id.
    async fn retained(&self) -> Result<BTreeMap<String, AgentEvent>, Error> {
        Ok(self.space.events(&self.event).await?.into_iter().collect())
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
}
