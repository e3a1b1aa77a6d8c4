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
//! kept renewed, and records the outcome. A node that dies stops renewing;
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
mod work;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use concord_net::wall_clock;
use concord_state::{Delivery, Event};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;
use tracing::Instrument;

use super::events::{AgentEvent, EVENT_RETENTION, EVENTS, check_name};
use super::retry::RetryPolicy;
use super::task::TaskHandle;
use crate::{Error, Space};
pub use claims::CLAIM_PARTITIONS;
use claims::Claims;
pub use work::MAX_TRACKED_EVENTS;
use work::{Due, Work};

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
    run: F,
}

/// A running handler; stopping or dropping it stops it: a run under way is
/// dropped, and the partitions this node held wait for their claims to
/// expire (the claim ttl) before other nodes take them over.
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

    /// How long a claim lasts unrenewed (default [`DEFAULT_CLAIM_TTL`]):
    /// how long the events of a node that died wait, at most, before other
    /// nodes take them over. Also the ttl of the handler's announcements
    /// (the first node to announce a handler declares it).
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
        if self.every_node {
            self.serve_every_node().await
        } else {
            self.serve_once().await
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

    /// Once across the space: run the events of the partitions this node
    /// holds, as they arrive.
    async fn serve_once(self) -> Result<(), Error> {
        let space = &self.space;
        let mut arrivals = space.subscribe(EVENTS).await?;
        let mut records = space.subscribe(HANDLED).await?;
        let mut claims = Claims::new(space, &self.handler, self.claim_ttl).await?;
        let mut work = Work::new(&self.handler, &self.event, MAX_TRACKED_EVENTS);
        // Events stuck this long in a partition held elsewhere are taken.
        let grace = self.claim_ttl * 2;
        let mut look_at = Instant::now();
        loop {
            let stale = work.stale(Instant::now(), grace);
            if claims.upkeep(&stale).await {
                look_at = Instant::now();
            }
            if Instant::now() >= look_at {
                self.look(&mut work).await?;
                look_at = Instant::now() + self.claim_ttl;
            }
            while let Some(due) = work.next_due(Instant::now(), |p| claims.holds(p)) {
                self.run_claimed(&mut claims, &mut work, due).await?;
                if claims.upkeep(&work.stale(Instant::now(), grace)).await {
                    self.look(&mut work).await?;
                }
            }
            let stale = !work.stale(Instant::now(), grace).is_empty();
            let wake = [
                Some(claims.next_upkeep(stale)),
                work.next_due_at(|p| claims.holds(p)),
                Some(look_at),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(look_at);
            tokio::select! {
                arrived = arrivals.next() => match arrived {
                    None => return Ok(()), // the node stopped
                    Some(Delivery::Event(Event { key: Some(id), new: Some(value), .. })) => {
                        work.arrived(&id, value, Instant::now());
                    }
                    Some(Delivery::Event(_)) => {}
                    Some(Delivery::Lagged { .. }) => look_at = Instant::now(),
                },
                recorded = records.next() => match recorded {
                    None => return Ok(()),
                    Some(Delivery::Event(Event { new: Some(value), .. })) => work.recorded(value),
                    Some(Delivery::Event(_)) => {}
                    Some(Delivery::Lagged { .. }) => look_at = Instant::now(),
                },
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Rebuilds `work` from every retained event and record.
    async fn look(&self, work: &mut Work) -> Result<(), Error> {
        let (events, records) = self
            .space
            .read(|r| {
                Ok::<_, concord_state::StateError>((
                    r.topic_entries(EVENTS)?,
                    r.topic_entries(HANDLED)?,
                ))
            })
            .await??;
        let records = records.into_iter().map(|(_, v)| v).collect();
        let untracked = work.untracked();
        work.rescan(events, records, Instant::now());
        if work.untracked() > untracked {
            tracing::warn!(
                untracked = work.untracked(),
                "more events waiting than MAX_TRACKED_EVENTS; the rest wait for a later look"
            );
        }
        Ok(())
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

    /// Runs `due`, whose partition this node holds, and records the
    /// outcome (done, or to be tried again after the retry backoff).
    async fn run_claimed(
        &self,
        claims: &mut Claims,
        work: &mut Work,
        due: Due,
    ) -> Result<(), Error> {
        let Due {
            id,
            event,
            partition,
            attempt,
        } = due;
        let context = HandlerContext {
            event_id: id.clone(),
            attempt,
            space: self.space.clone(),
        };
        let Some(outcome) = claims
            .hold_while(partition, (self.run)(event, context))
            .await
        else {
            // The claim was lost mid-run: whoever takes it runs the event.
            tracing::warn!(event = %id, "claim lost during the run; the event is left to its next holder");
            work.later(&id, Instant::now() + self.claim_ttl);
            return Ok(());
        };
        let ok = outcome.is_ok();
        let done = ok || self.retry.is_last(attempt);
        let failed = outcome.err().map(|e| {
            let name = format!("{}_failed", self.handler);
            (
                name,
                json!({"event": &id, "error": e.to_string(), "attempt": attempt}),
            )
        });
        let record = Handled {
            handler: self.handler.clone(),
            event: id.clone(),
            by: self.space.holder_name(),
            attempt,
            ok,
            done,
        };
        let ttl = u64::try_from(EVENT_RETENTION.as_millis()).unwrap_or(u64::MAX);
        let by = record.by.clone();
        // The failure and the record in one step, not waited for on disk
        // here: the claim is given back only once they are.
        let (written, durable) = self
            .space
            .commit(move |r| {
                if let Some((name, payload)) = failed {
                    super::events::append_event(r, &by, &name, payload)?;
                }
                r.append_with_ttl(wall_clock(), HANDLED, &record, ttl)
            })
            .await?;
        written?;
        claims.wrote(durable);
        work.ran(
            &id,
            attempt,
            done,
            Instant::now() + self.retry.backoff(attempt),
        );
        Ok(())
    }
}
