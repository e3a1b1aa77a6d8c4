//! What a `when` handler still has to see handled: its events not yet
//! recorded as done in [`super::HANDLED`], each with its partition, how
//! many runs it had and when it may run next.
//!
//! Kept in memory from the space's events and records as they arrive, and
//! rebuilt from a full look at the space when a partition is gained, when
//! a subscription lagged, and now and then. This module owns that
//! bookkeeping only; it never runs a handler nor touches a lease.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::Handled;
use super::claims::partition_of;
use crate::AgentEvent;

/// Most events one handler keeps track of on a node; past it, the newest
/// wait for a later look at the space (counted, and logged).
pub const MAX_TRACKED_EVENTS: usize = 65_536;

/// One event still to be handled.
#[derive(Debug, Clone)]
struct Tracked {
    event: AgentEvent,
    partition: u16,
    /// Runs recorded so far.
    runs: u32,
    /// When it may run (again).
    due: Instant,
    /// When this node first saw it waiting.
    since: Instant,
}

/// One handler's events still to be handled (see the module docs).
#[derive(Debug)]
pub(crate) struct Work {
    handler: String,
    event: String,
    limit: usize,
    waiting: BTreeMap<String, Tracked>,
    /// Events known handled, so that a late delivery does not bring one
    /// back (forgotten once out of the space's retention).
    done: BTreeSet<String>,
    /// Events left untracked because `limit` was reached.
    untracked: u64,
}

/// An event to run now.
#[derive(Debug)]
pub(crate) struct Due {
    pub(crate) id: String,
    pub(crate) event: AgentEvent,
    pub(crate) partition: u16,
    /// Which run this is (1 for the first).
    pub(crate) attempt: u32,
}

impl Work {
    /// No events yet, for `handler` of events named `event`, tracking at
    /// most `limit` of them.
    pub(crate) fn new(handler: &str, event: &str, limit: usize) -> Work {
        debug_assert!(limit > 0, "a handler must be able to track an event");
        Work {
            handler: handler.to_owned(),
            event: event.to_owned(),
            limit,
            waiting: BTreeMap::new(),
            done: BTreeSet::new(),
            untracked: 0,
        }
    }

    /// Events left untracked so far because the limit was reached.
    pub(crate) fn untracked(&self) -> u64 {
        self.untracked
    }

    /// An entry of the events topic arrived.
    pub(crate) fn arrived(&mut self, id: &str, value: Value, now: Instant) {
        if self.done.contains(id) || self.waiting.contains_key(id) {
            return;
        }
        let Ok(event) = serde_json::from_value::<AgentEvent>(value) else {
            tracing::warn!(%id, "skipping a malformed agent event");
            return;
        };
        if event.name == self.event {
            self.track(id, event, 0, now);
        }
    }

    /// An entry of the records topic arrived (or was written here).
    pub(crate) fn recorded(&mut self, value: Value) {
        let Ok(record) = serde_json::from_value::<Handled>(value) else {
            return;
        };
        if record.handler != self.handler {
            return;
        }
        if record.done {
            self.waiting.remove(&record.event);
            self.done.insert(record.event);
        } else if let Some(tracked) = self.waiting.get_mut(&record.event) {
            tracked.runs = tracked.runs.max(record.attempt);
        }
    }

    /// Rebuilds from every retained event and record of the space.
    pub(crate) fn rescan(
        &mut self,
        events: Vec<(String, Value)>,
        records: Vec<Value>,
        now: Instant,
    ) {
        let mut runs: BTreeMap<String, u32> = BTreeMap::new();
        let mut done = BTreeSet::new();
        for record in records {
            let Ok(record) = serde_json::from_value::<Handled>(record) else {
                continue;
            };
            if record.handler != self.handler {
                continue;
            }
            if record.done {
                done.insert(record.event);
            } else {
                let n = runs.entry(record.event).or_default();
                *n = (*n).max(record.attempt);
            }
        }
        let mut before = std::mem::take(&mut self.waiting);
        let mut retained = BTreeSet::new();
        for (id, value) in events {
            let Ok(event) = serde_json::from_value::<AgentEvent>(value) else {
                continue;
            };
            if event.name != self.event {
                continue;
            }
            retained.insert(id.clone());
            if done.contains(&id) {
                continue;
            }
            let runs = runs.get(&id).copied().unwrap_or(0);
            match before.remove(&id) {
                Some(mut tracked) if self.waiting.len() < self.limit => {
                    tracked.runs = tracked.runs.max(runs);
                    self.waiting.insert(id, tracked);
                }
                _ => self.track(&id, event, runs, now),
            }
        }
        done.retain(|id| retained.contains(id));
        self.done = done;
    }

    fn track(&mut self, id: &str, event: AgentEvent, runs: u32, now: Instant) {
        if self.waiting.len() >= self.limit {
            self.untracked += 1;
            return;
        }
        let tracked = Tracked {
            partition: partition_of(id),
            event,
            runs,
            due: now,
            since: now,
        };
        self.waiting.insert(id.to_owned(), tracked);
    }

    /// The first event due by `now` in a partition `held` says this node
    /// holds.
    pub(crate) fn next_due(&self, now: Instant, held: impl Fn(u16) -> bool) -> Option<Due> {
        self.waiting
            .iter()
            .find(|(_, t)| t.due <= now && held(t.partition))
            .map(|(id, t)| Due {
                id: id.clone(),
                event: t.event.clone(),
                partition: t.partition,
                attempt: t.runs.saturating_add(1),
            })
    }

    /// When the next event of a partition `held` says this node holds is
    /// due, if any is.
    pub(crate) fn next_due_at(&self, held: impl Fn(u16) -> bool) -> Option<Instant> {
        self.waiting
            .values()
            .filter(|t| held(t.partition))
            .map(|t| t.due)
            .min()
    }

    /// Event `id` had run `attempt`: it is done, or may run again at
    /// `again`.
    pub(crate) fn ran(&mut self, id: &str, attempt: u32, done: bool, again: Instant) {
        if done {
            self.waiting.remove(id);
            self.done.insert(id.to_owned());
        } else if let Some(tracked) = self.waiting.get_mut(id) {
            tracked.runs = tracked.runs.max(attempt);
            tracked.due = again;
        }
    }

    /// Puts off event `id` (its run could not be made) until `again`.
    pub(crate) fn later(&mut self, id: &str, again: Instant) {
        if let Some(tracked) = self.waiting.get_mut(id) {
            tracked.due = again;
        }
    }

    /// The partitions with events waiting (running ones included).
    pub(crate) fn partitions(&self) -> BTreeSet<u16> {
        self.waiting.values().map(|t| t.partition).collect()
    }

    /// The partitions of events due for longer than `grace`: whoever holds
    /// them is not getting on with them.
    pub(crate) fn stale(&self, now: Instant, grace: Duration) -> BTreeSet<u16> {
        self.waiting
            .values()
            .filter(|t| t.due.max(t.since) + grace <= now)
            .map(|t| t.partition)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(name: &str) -> Value {
        json!({"name": name, "payload": null, "by": "p", "at_ms": 0})
    }

    fn record(handler: &str, event: &str, attempt: u32, done: bool) -> Value {
        serde_json::to_value(Handled {
            handler: handler.into(),
            event: event.into(),
            by: "p".into(),
            attempt,
            ok: done,
            done,
        })
        .unwrap()
    }

    #[test]
    fn events_of_the_handler_wait_until_recorded_done() {
        let now = Instant::now();
        let mut work = Work::new("h", "build", 16);
        work.arrived("1", event("build"), now);
        work.arrived("2", event("other"), now);
        work.arrived("3", json!("garbage"), now);
        let due = work.next_due(now, |_| true).unwrap();
        assert_eq!((due.id.as_str(), due.attempt), ("1", 1));
        assert!(work.next_due(now, |_| false).is_none());
        // A failed run: again later, as attempt 2.
        work.ran("1", 1, false, now + Duration::from_secs(1));
        assert!(work.next_due(now, |_| true).is_none());
        let due = work
            .next_due(now + Duration::from_secs(1), |_| true)
            .unwrap();
        assert_eq!(due.attempt, 2);
        // Another handler's record changes nothing; this one's ends it.
        work.recorded(record("g", "1", 2, true));
        assert!(work.next_due_at(|_| true).is_some());
        work.recorded(record("h", "1", 2, true));
        assert!(work.next_due_at(|_| true).is_none());
        // A late delivery does not bring it back.
        work.arrived("1", event("build"), now);
        assert!(work.next_due_at(|_| true).is_none());
    }

    #[test]
    fn a_rescan_takes_runs_and_done_from_the_records() {
        let now = Instant::now();
        let mut work = Work::new("h", "build", 16);
        let events = vec![
            ("1".into(), event("build")),
            ("2".into(), event("build")),
            ("3".into(), event("deploy")),
        ];
        let records = vec![record("h", "1", 1, true), record("h", "2", 2, false)];
        work.rescan(events, records, now);
        let due = work.next_due(now, |_| true).unwrap();
        assert_eq!((due.id.as_str(), due.attempt), ("2", 3));
        // Out of retention: forgotten, done or not.
        work.rescan(vec![], vec![record("h", "1", 1, true)], now);
        assert!(work.next_due_at(|_| true).is_none());
        assert!(work.done.is_empty());
    }

    #[test]
    fn past_the_limit_events_wait_for_a_later_look() {
        let now = Instant::now();
        let mut work = Work::new("h", "build", 2);
        for id in ["1", "2", "3"] {
            work.arrived(id, event("build"), now);
        }
        assert_eq!((work.waiting.len(), work.untracked()), (2, 1));
        work.ran("1", 1, true, now);
        let events = ["1", "2", "3"].map(|id| (id.to_owned(), event("build")));
        work.rescan(events.into(), vec![record("h", "1", 1, true)], now);
        assert_eq!(work.waiting.keys().collect::<Vec<_>>(), ["2", "3"]);
    }

    #[test]
    fn events_waiting_past_the_grace_mark_their_partition_stale() {
        let now = Instant::now();
        let mut work = Work::new("h", "build", 16);
        work.arrived("1", event("build"), now);
        let grace = Duration::from_secs(2);
        assert!(work.stale(now + Duration::from_secs(1), grace).is_empty());
        let stale = work.stale(now + Duration::from_secs(2), grace);
        assert_eq!(stale, BTreeSet::from([partition_of("1")]));
        // An event put off (its retry backoff) is not stale meanwhile.
        work.later("1", now + Duration::from_secs(5));
        assert!(work.stale(now + Duration::from_secs(6), grace).is_empty());
    }
}
