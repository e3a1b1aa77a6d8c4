//! Subscriptions: a glob on channel paths plus an optional predicate, each
//! with a bounded buffer of events. This module owns matching, buffering and
//! the overflow rule; it never reads the document (the replica builds the
//! events and hands them in).
//!
//! **Overflow.** A subscriber's buffer holds at most its `capacity` events.
//! When a new event arrives at a full buffer the *oldest* buffered event is
//! dropped and counted; the next [`Delivery`] the subscriber polls is then
//! `Delivery::Lagged { missed }`, followed by the newer events it still holds.
//! A subscriber that lags can catch up exactly with
//! [`crate::Replica::replay`] from the last vector clock it processed.
//!
//! **Sinks.** A subscriber may also have an [`EventSink`]: while its buffer
//! is empty, each event goes straight to the sink the moment it is
//! published (an owner hands it to a channel there, before the replica's
//! call returns); what the sink has no room for is buffered as above, and
//! later events queue behind it, so the order never changes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use automerge::{ActorId, ChangeHash};
use globset::{Glob, GlobMatcher};
use serde_json::Value;

use crate::{ChannelPath, Hlc, StateError};

/// Default number of events buffered per subscriber.
pub const DEFAULT_SUBSCRIBER_CAPACITY: usize = 1024;

/// Identifies a subscription on one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

/// Where the change behind an event was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// By this replica.
    Local,
    /// By a peer, received through replication.
    Remote,
}

/// The causal position of an event: the change that produced it (for an
/// [ephemeral](Event::ephemeral) event, which no change produced: the
/// writer, sequence 0, an all-zero hash and the write's HLC).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventPosition {
    /// The change's actor (an ephemeral value's writer).
    pub actor: ActorId,
    /// The change's sequence number for that actor (0 for an ephemeral event).
    pub seq: u64,
    /// The change's hash (all zero for an ephemeral event).
    pub change: ChangeHash,
    /// The change's hybrid logical clock, when it carries one.
    pub hlc: Option<Hlc>,
}

/// A visible change to a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The channel.
    pub path: ChannelPath,
    /// Topic entry id or set member for those kinds, the writer's actor id
    /// (hex) for an ephemeral value; `None` for the whole channel.
    pub key: Option<String>,
    /// Value before (for a topic entry or set member: whether it existed).
    pub old: Option<Value>,
    /// Value after.
    pub new: Option<Value>,
    /// Local or remote.
    pub origin: Origin,
    /// The change that caused it.
    pub position: EventPosition,
    /// Whether it is about an ephemeral value (a write, or an expiry with
    /// `new: None`) rather than a document change: `position` then names
    /// no change (`seq` 0, an all-zero `change`; `actor` is the writer and
    /// `hlc` the write's), and [`crate::Replica::replay`] never returns it.
    pub ephemeral: bool,
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // `Lagged` is rare; boxing every event would cost an allocation each
pub enum Delivery {
    /// One event.
    Event(Event),
    /// The buffer overflowed and `missed` older events were dropped; replay
    /// from your last clock to recover them.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

/// Takes a subscriber's events as they are published (see the module
/// documentation); returns an event it has no room for, `None` when it took
/// it.
pub type EventSink = Box<dyn FnMut(Event) -> Option<Event> + Send>;

/// A predicate applied to events after the path glob matched.
pub type EventFilter = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// Options of a subscription.
#[derive(Clone)]
pub struct SubscribeOptions {
    /// Buffer bound (at least 1).
    pub capacity: usize,
    /// Optional predicate; events for which it returns false are not delivered.
    pub filter: Option<EventFilter>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            capacity: DEFAULT_SUBSCRIBER_CAPACITY,
            filter: None,
        }
    }
}

impl SubscribeOptions {
    /// Sets the buffer bound.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Sets the predicate.
    pub fn filter(mut self, f: impl Fn(&Event) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(f));
        self
    }
}

struct Subscriber {
    matcher: GlobMatcher,
    filter: Option<EventFilter>,
    buffer: VecDeque<Event>,
    capacity: usize,
    missed: u64,
    sink: Option<EventSink>,
}

/// All subscriptions of one replica.
#[derive(Default)]
pub(crate) struct Subscriptions {
    next: u64,
    subs: BTreeMap<u64, Subscriber>,
}

pub(crate) fn compile_pattern(pattern: &str) -> Result<GlobMatcher, StateError> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| StateError::BadPattern {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })
}

impl Subscriptions {
    pub(crate) fn add(
        &mut self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<SubscriptionId, StateError> {
        let matcher = compile_pattern(pattern)?;
        self.next += 1;
        self.subs.insert(
            self.next,
            Subscriber {
                matcher,
                filter: options.filter,
                buffer: VecDeque::new(),
                capacity: options.capacity.max(1),
                missed: 0,
                sink: None,
            },
        );
        Ok(SubscriptionId(self.next))
    }

    pub(crate) fn set_sink(
        &mut self,
        id: SubscriptionId,
        sink: EventSink,
    ) -> Result<(), StateError> {
        let sub = self
            .subs
            .get_mut(&id.0)
            .ok_or(StateError::UnknownSubscription(id.0))?;
        sub.sink = Some(sink);
        Ok(())
    }

    pub(crate) fn remove(&mut self, id: SubscriptionId) -> bool {
        self.subs.remove(&id.0).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether any subscriber's glob matches `path` (events are only built then).
    pub(crate) fn wants(&self, path: &ChannelPath) -> bool {
        self.subs
            .values()
            .any(|s| s.matcher.is_match(path.as_str()))
    }

    pub(crate) fn any(&self) -> bool {
        !self.subs.is_empty()
    }

    pub(crate) fn publish(&mut self, event: &Event) {
        let p = event.path.as_str();
        for sub in self.subs.values_mut() {
            if !sub.matcher.is_match(p) || sub.filter.as_ref().is_some_and(|f| !f(event)) {
                continue;
            }
            let mut event = event.clone();
            if let (true, 0, Some(sink)) = (sub.buffer.is_empty(), sub.missed, &mut sub.sink) {
                match sink(event) {
                    None => continue,
                    Some(back) => event = back,
                }
            }
            if sub.buffer.len() >= sub.capacity {
                sub.buffer.pop_front();
                sub.missed += 1;
            }
            sub.buffer.push_back(event);
        }
    }

    pub(crate) fn poll(&mut self, id: SubscriptionId) -> Result<Option<Delivery>, StateError> {
        let sub = self
            .subs
            .get_mut(&id.0)
            .ok_or(StateError::UnknownSubscription(id.0))?;
        if sub.missed > 0 {
            let missed = std::mem::take(&mut sub.missed);
            return Ok(Some(Delivery::Lagged { missed }));
        }
        Ok(sub.buffer.pop_front().map(Delivery::Event))
    }

    pub(crate) fn buffered(&self, id: SubscriptionId) -> usize {
        self.subs.get(&id.0).map_or(0, |s| s.buffer.len())
    }
}
