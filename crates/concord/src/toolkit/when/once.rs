//! Once across the space: the handler task that runs the events of the
//! partitions this node holds, each run a task of its own (one per
//! partition at a time, at most [`super::When::concurrency`] at once), and
//! records their outcomes.
//!
//! This module owns the order check, run, record. It must never start a run
//! outside a held claim, never run two events of one partition at once,
//! never let a run go on once its partition's claim was lost (it is
//! aborted), and never record an outcome after that.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use concord_net::wall_clock;
use concord_state::{Delivery, Event, StateError};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, Id, JoinSet};
use tokio::time::Instant;

use super::claims::{Claims, Demand, presence_path};
use super::work::{Due, MAX_TRACKED_EVENTS, Work};
use super::{HANDLED, Handled, HandlerContext, When};
use crate::Error;
use crate::toolkit::events::{AgentEvent, EVENT_RETENTION, EVENTS, append_event};

/// A run under way.
struct Running {
    partition: u16,
    event: String,
    attempt: u32,
    abort: AbortHandle,
}

/// How a run ended: the handler's error as text if it failed.
type Outcome = Result<(), String>;

impl<F, Fut, E> When<F>
where
    F: Fn(AgentEvent, HandlerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    /// Runs the events of the partitions this node holds, as they arrive,
    /// until the node stops or `stop` says to (then the runs stop and the
    /// partitions are given back).
    pub(super) async fn serve_once(self, mut stop: oneshot::Receiver<()>) -> Result<(), Error> {
        let space = &self.space;
        let mut arrivals = space.subscribe(EVENTS).await?;
        let mut records = space.subscribe(HANDLED).await?;
        let mut members = space.subscribe(&presence_path(&self.handler)).await?;
        let mut claims = Claims::new(space, &self.handler, self.claim_ttl).await?;
        let mut work = Work::new(&self.handler, &self.event, MAX_TRACKED_EVENTS);
        // Dropped with this task when the handler stops: its runs with it.
        let mut runs: JoinSet<Outcome> = JoinSet::new();
        let mut running: BTreeMap<Id, Running> = BTreeMap::new();
        // Events stuck this long in a partition held elsewhere are taken.
        let grace = self.claim_ttl * 2;
        let mut look_at = Instant::now();
        loop {
            let demand = Demand {
                waiting: work.partitions(),
                stale: work.stale(Instant::now(), grace),
                busy: running.values().map(|r| r.partition).collect(),
            };
            if claims.upkeep(&demand).await {
                look_at = Instant::now();
            }
            // Only a lost lease takes a partition away during a run.
            for run in running.values().filter(|r| !claims.holds(r.partition)) {
                run.abort.abort();
            }
            if Instant::now() >= look_at {
                self.look(&mut work).await?;
                look_at = Instant::now() + self.claim_ttl;
            }
            self.start_due(&claims, &mut work, &mut runs, &mut running);
            let busy: BTreeSet<u16> = running.values().map(|r| r.partition).collect();
            let wake = [
                Some(claims.next_upkeep()),
                work.next_due_at(|p| claims.holds(p) && !busy.contains(&p)),
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
                Some(joined) = runs.join_next_with_id(), if !runs.is_empty() => {
                    let (id, outcome) = match joined {
                        Ok((id, outcome)) => (id, Some(outcome)),
                        Err(e) if e.is_cancelled() => (e.id(), None),
                        Err(e) => (e.id(), Some(Err(format!("the handler panicked: {e}")))),
                    };
                    if let Some(run) = running.remove(&id) {
                        self.finish(&mut claims, &mut work, run, outcome).await?;
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
                changed = members.next() => match changed {
                    None => return Ok(()),
                    Some(_) => claims.members_changed(),
                },
                _ = &mut stop => {
                    runs.shutdown().await;
                    claims.leave().await;
                    return Ok(());
                }
            }
        }
    }

    /// Starts the due events of held partitions that have no run under
    /// way, up to the concurrency.
    fn start_due(
        &self,
        claims: &Claims,
        work: &mut Work,
        runs: &mut JoinSet<Outcome>,
        running: &mut BTreeMap<Id, Running>,
    ) {
        while running.len() < self.concurrency {
            let busy: BTreeSet<u16> = running.values().map(|r| r.partition).collect();
            let free = |p: u16| claims.holds(p) && !busy.contains(&p);
            let Some(Due {
                id,
                event,
                partition,
                attempt,
            }) = work.next_due(Instant::now(), free)
            else {
                return;
            };
            let context = HandlerContext {
                event_id: id.clone(),
                attempt,
                space: self.space.clone(),
            };
            let run = (self.run)(event, context);
            let abort = runs.spawn(async move { run.await.map_err(|e| e.to_string()) });
            let run = Running {
                partition,
                event: id,
                attempt,
                abort,
            };
            running.insert(run.abort.id(), run);
        }
    }

    /// Records how `run` ended (done, or to be tried again after the retry
    /// backoff); `None`, or a claim lost meanwhile, leaves the event to the
    /// partition's next holder.
    async fn finish(
        &self,
        claims: &mut Claims,
        work: &mut Work,
        run: Running,
        outcome: Option<Outcome>,
    ) -> Result<(), Error> {
        let Running {
            partition,
            event: id,
            attempt,
            ..
        } = run;
        let Some(outcome) = outcome.filter(|_| claims.holds(partition)) else {
            tracing::warn!(event = %id, "claim lost during the run; the event is left to its next holder");
            work.later(&id, Instant::now() + self.claim_ttl);
            return Ok(());
        };
        let ok = outcome.is_ok();
        let done = ok || self.retry.is_last(attempt);
        let failed = outcome.err().map(|error| {
            let name = format!("{}_failed", self.handler);
            (
                name,
                json!({"event": &id, "error": error, "attempt": attempt}),
            )
        });
        let by = self.space.holder_name();
        let record = Handled {
            handler: self.handler.clone(),
            event: id.clone(),
            by: by.clone(),
            attempt,
            ok,
            done,
        };
        let ttl = u64::try_from(EVENT_RETENTION.as_millis()).unwrap_or(u64::MAX);
        // The failure and the record in one step, not waited for on disk
        // here: the claim is given back only once they are.
        let (written, durable) = self
            .space
            .commit(move |r| {
                if let Some((name, payload)) = failed {
                    append_event(r, &by, &name, payload)?;
                }
                r.append_with_ttl(wall_clock(), HANDLED, &record, ttl)
            })
            .await?;
        written?;
        claims.wrote(durable);
        let again = Instant::now() + self.retry.backoff(attempt);
        work.ran(&id, attempt, done, again);
        Ok(())
    }

    /// Rebuilds `work` from every retained event and record.
    async fn look(&self, work: &mut Work) -> Result<(), Error> {
        let (events, records) = self
            .space
            .read(|r| Ok::<_, StateError>((r.topic_entries(EVENTS)?, r.topic_entries(HANDLED)?)))
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
}
