//! Building subscription events from automerge patches, and replay of past
//! events from a vector clock. Owns the mapping from touched document keys to
//! channel-level events; it never mutates the document.

use std::collections::HashSet;

use automerge::{ChangeHash, Patch, PatchAction, Prop};

use super::Replica;
use crate::keys::{self, Slot};
use crate::subscription::{
    Event, EventPosition, EventSink, Origin, SubscribeOptions, SubscriptionId, compile_pattern,
};
use crate::{Causality, ChannelKind, ChannelPath, Delivery, Family, Hlc, StateError, VectorClock};

impl Replica {
    /// Subscribes to events on channels whose path matches the glob `pattern`
    /// (e.g. `intent/*`), after local commits and after remote changes apply.
    pub fn subscribe(
        &mut self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<SubscriptionId, StateError> {
        self.subs.add(pattern, options)
    }

    /// Gives a subscription a sink that takes its events the moment they
    /// are published, for as long as its buffer is empty (see
    /// [`EventSink`]); events the sink hands back wait in the buffer for
    /// [`Replica::poll_event`], and later ones queue behind them.
    ///
    /// ```
    /// use concord_state::{ActorId, Millis, Replica, SubscribeOptions};
    /// use std::sync::mpsc;
    ///
    /// let mut r = Replica::new("team", ActorId::random());
    /// let sub = r.subscribe("observation/*", SubscribeOptions::default())?;
    /// let (tx, rx) = mpsc::sync_channel(1);
    /// let sink = move |e| match tx.try_send(e) {
    ///     Ok(()) => None,
    ///     Err(mpsc::TrySendError::Full(e) | mpsc::TrySendError::Disconnected(e)) => Some(e),
    /// };
    /// r.set_event_sink(sub, Box::new(sink))?;
    /// r.put(Millis(1), "observation/a", &1)?;
    /// r.put(Millis(2), "observation/a", &2)?; // the channel is full: buffered
    /// assert_eq!(rx.try_recv()?.new, Some(serde_json::json!(1)));
    /// assert_eq!(r.buffered_events(sub), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_event_sink(
        &mut self,
        id: SubscriptionId,
        sink: EventSink,
    ) -> Result<(), StateError> {
        self.subs.set_sink(id, sink)
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> bool {
        self.subs.remove(id)
    }

    /// Takes the next delivery for a subscriber, if any.
    pub fn poll_event(&mut self, id: SubscriptionId) -> Result<Option<Delivery>, StateError> {
        self.subs.poll(id)
    }

    /// Events waiting in a subscriber's buffer.
    pub fn buffered_events(&self, id: SubscriptionId) -> usize {
        self.subs.buffered(id)
    }

    /// Every event on channels matching `pattern` caused by changes *not*
    /// covered by `since`, in causal order. Each event shows the change's
    /// effect as its writer saw it (old value at the change's dependencies).
    ///
    /// Ephemeral values are not replayed: they never enter the document, so
    /// no change and no vector clock covers them, and the old ones are gone
    /// by design. The live ones are read with [`Replica::get`] or
    /// [`Replica::ephemeral_values`].
    ///
    /// Across epochs: `since` may lie before the current epoch's cut as far
    /// as the retained earlier epochs reach ([`crate::EpochConfig::retain`]);
    /// each write is replayed once, from the oldest epoch holding it as a
    /// change. Before that, [`StateError::ReplayTooOld`].
    pub fn replay(&self, pattern: &str, since: &VectorClock) -> Result<Vec<Event>, StateError> {
        let matcher = compile_pattern(pattern)?;
        let wants = |p: &ChannelPath| matcher.is_match(p.as_str());
        let (oldest, _) = self
            .epochs_held()
            .next()
            .unwrap_or((&self.epoch.base, &self.doc));
        if !matches!(since.compare(oldest), Causality::After | Causality::Equal) {
            return Err(StateError::ReplayTooOld {
                oldest: oldest.total(),
            });
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        // Every switch carries what its cut lacks: past the current cut,
        // the current document holds it all.
        let within = matches!(
            since.compare(&self.epoch.base),
            Causality::After | Causality::Equal
        );
        if !within {
            for retained in self.retained_views()? {
                retained.replay_here(since, &wants, &mut seen, &mut out)?;
            }
        }
        self.replay_here(since, &wants, &mut seen, &mut out)?;
        Ok(out)
    }

    /// The events of this epoch's changes that `since` and `seen` lack.
    fn replay_here(
        &self,
        since: &VectorClock,
        wants: &dyn Fn(&ChannelPath) -> bool,
        seen: &mut HashSet<(automerge::ActorId, u64)>,
        out: &mut Vec<Event>,
    ) -> Result<(), StateError> {
        for change in self.changes_after(since) {
            if !seen.insert((change.actor_id().clone(), self.logical_seq(&change))) {
                continue;
            }
            let after = [change.hash()];
            let patches = self.doc.diff(change.deps(), &after);
            let origin = if change.actor_id() == &self.actor {
                Origin::Local
            } else {
                Origin::Remote
            };
            let position = EventPosition {
                actor: change.actor_id().clone(),
                seq: self.logical_seq(&change),
                change: change.hash(),
                hlc: change.message().and_then(Hlc::parse),
            };
            out.extend(self.events_for_patches(
                &patches,
                change.deps(),
                Some(&after),
                origin,
                &position,
                wants,
            )?);
        }
        Ok(())
    }

    /// Turns patches between `before` and `after` (now if `None`) into events.
    pub(crate) fn events_for_patches(
        &self,
        patches: &[Patch],
        before: &[ChangeHash],
        after: Option<&[ChangeHash]>,
        origin: Origin,
        position: &EventPosition,
        wants: &dyn Fn(&ChannelPath) -> bool,
    ) -> Result<Vec<Event>, StateError> {
        let keys = patches.iter().filter_map(|patch| {
            let family = self.layout.family_of(&patch.obj)?;
            let key = match &patch.action {
                PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => key.as_str(),
                PatchAction::Increment {
                    prop: Prop::Map(key),
                    ..
                } => key.as_str(),
                _ => return None,
            };
            Some((family, key))
        });
        let touched = touched(keys, wants);
        let old = self.slot_values(&touched, Some(before))?;
        let new = self.slot_values(&touched, after)?;
        Ok(build_events(touched, old, new, origin, position))
    }

    /// The channel slots a change writes, from its decoded operations.
    pub(crate) fn touched_by(
        &self,
        change: &automerge::ExpandedChange,
        wants: &dyn Fn(&ChannelPath) -> bool,
    ) -> Vec<Touched> {
        let keys = change.operations.iter().filter_map(|op| {
            let automerge::legacy::Key::Map(key) = &op.key else {
                return None;
            };
            let family = self.layout.family_of_legacy(&op.obj)?;
            Some((family, key.as_str()))
        });
        touched(keys, wants)
    }

    /// The visible value of each touched slot at `heads` (now if `None`).
    pub(crate) fn slot_values(
        &self,
        touched: &[Touched],
        heads: Option<&[ChangeHash]>,
    ) -> Result<Vec<SlotValue>, StateError> {
        touched
            .iter()
            .map(|t| match self.slot_value(t, heads) {
                Ok(value) => Ok(SlotValue::Read(value)),
                Err(e) if e.is_unreadable_value() => {
                    tracing::warn!(space = %self.space, path = %t.path, error = %e,
                        "a value this node cannot read at the channel's schema version");
                    Ok(SlotValue::Unreadable)
                }
                Err(e) => Err(e),
            })
            .collect()
    }

    /// The visible value of one touched slot at `heads` (now if `None`).
    fn slot_value(
        &self,
        t: &Touched,
        heads: Option<&[ChangeHash]>,
    ) -> Result<Option<serde_json::Value>, StateError> {
        Ok(match &t.slot {
            TouchedSlot::Register => match (heads, self.live_register(&t.path)) {
                // the cache holds exactly the document's live writes
                (None, Some(register)) => self.resolve_live(&t.path, register)?,
                _ => {
                    let spec = self
                        .spec_of(&t.path)
                        .unwrap_or_else(|| crate::ChannelSpec::of_kind(ChannelKind::LastValue));
                    self.register_at(&t.path, &spec, heads)?.value
                }
            },
            TouchedSlot::Entry(id) => self.entry_at(&t.path, id, heads)?,
            TouchedSlot::Counter => Some(self.counter_at(&t.path, heads)?.into()),
            TouchedSlot::Member { key, member } => {
                self.member_at(&t.path, key, heads)?.then(|| member.clone())
            }
        })
    }

    /// Publishes events for patches produced by applying remote changes.
    pub(crate) fn publish_remote(
        &mut self,
        patches: &[Patch],
        before: &[ChangeHash],
        position: &EventPosition,
    ) -> Result<(), StateError> {
        let subs = &self.subs;
        let events =
            self.events_for_patches(patches, before, None, Origin::Remote, position, &|p| {
                subs.wants(p)
            })?;
        for event in &events {
            self.subs.publish(event);
        }
        Ok(())
    }
}

/// A channel slot a change touched: what one event is about.
pub(crate) struct Touched {
    path: ChannelPath,
    slot: TouchedSlot,
}

impl Touched {
    /// The register's path, if this slot is a register.
    pub(crate) fn register(&self) -> Option<&ChannelPath> {
        matches!(self.slot, TouchedSlot::Register).then_some(&self.path)
    }
}

enum TouchedSlot {
    Register,
    Entry(String),
    Counter,
    Member {
        key: String,
        member: serde_json::Value,
    },
}

/// Distinct touched slots of channels the caller wants, in first-seen order.
fn touched<'a>(
    keys: impl Iterator<Item = (Family, &'a str)>,
    wants: &dyn Fn(&ChannelPath) -> bool,
) -> Vec<Touched> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (family, key) in keys {
        let Some((name, slot)) = keys::parse_key(key) else {
            continue;
        };
        let Ok(path) = ChannelPath::new(family, name) else {
            continue;
        };
        let slot = match slot {
            Slot::Meta => continue,
            Slot::Register => TouchedSlot::Register,
            Slot::Contribution(_) => TouchedSlot::Counter,
            Slot::Entry(id) => TouchedSlot::Entry(id.to_owned()),
            Slot::Member(m) => TouchedSlot::Member {
                key: key.to_owned(),
                member: serde_json::from_str(m).unwrap_or(serde_json::Value::Null),
            },
        };
        let dedup = match &slot {
            TouchedSlot::Register | TouchedSlot::Counter => String::new(),
            TouchedSlot::Entry(id) => id.clone(),
            TouchedSlot::Member { key, .. } => key.clone(),
        };
        if wants(&path) && seen.insert((path.clone(), dedup)) {
            out.push(Touched { path, slot });
        }
    }
    out
}

/// A touched slot's value as events see it.
pub(crate) enum SlotValue {
    /// The visible value (`None`: nothing there).
    Read(Option<serde_json::Value>),
    /// A value the replica holds but cannot read at the channel's schema
    /// version (see [`crate::schema`]): never shown to subscribers.
    Unreadable,
}

/// Events for the slots whose value changed between `old` and `new`. A
/// slot that became unreadable raises none; one that was unreadable shows
/// `old: None`.
pub(crate) fn build_events(
    touched: Vec<Touched>,
    old: Vec<SlotValue>,
    new: Vec<SlotValue>,
    origin: Origin,
    position: &EventPosition,
) -> Vec<Event> {
    touched
        .into_iter()
        .zip(old.into_iter().zip(new))
        .filter_map(|(t, (o, n))| match (o, n) {
            (_, SlotValue::Unreadable) => None,
            (SlotValue::Read(o), SlotValue::Read(n)) => Some((t, (o, n))),
            (SlotValue::Unreadable, SlotValue::Read(n)) => Some((t, (None, n))),
        })
        .filter(|(_, (o, n))| o != n)
        .map(|(t, (old, new))| Event {
            key: match t.slot {
                TouchedSlot::Entry(id) => Some(id),
                TouchedSlot::Member { member, .. } => Some(member.to_string()),
                TouchedSlot::Register | TouchedSlot::Counter => None,
            },
            path: t.path,
            old,
            new,
            origin,
            position: position.clone(),
            ephemeral: false,
        })
        .collect()
}
