//! Building subscription events from automerge patches, and replay of past
//! events from a vector clock. Owns the mapping from touched document keys to
//! channel-level events; it never mutates the document.

use std::collections::HashSet;

use automerge::{ChangeHash, Patch, PatchAction, Prop};

use super::Replica;
use crate::keys::{self, Slot};
use crate::subscription::{
    Event, EventPosition, Origin, SubscribeOptions, SubscriptionId, compile_pattern,
};
use crate::{ChannelKind, ChannelPath, Delivery, Family, Hlc, StateError, VectorClock};

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
    pub fn replay(&self, pattern: &str, since: &VectorClock) -> Result<Vec<Event>, StateError> {
        let matcher = compile_pattern(pattern)?;
        let wants = |p: &ChannelPath| matcher.is_match(p.as_str());
        let mut out = Vec::new();
        for change in self.changes_after(since) {
            let after = [change.hash()];
            let patches = self.doc.diff(change.deps(), &after);
            let origin = if change.actor_id() == &self.actor {
                Origin::Local
            } else {
                Origin::Remote
            };
            let position = EventPosition {
                actor: change.actor_id().clone(),
                seq: change.seq(),
                change: change.hash(),
                hlc: change.message().and_then(Hlc::parse),
            };
            out.extend(self.events_for_patches(
                &patches,
                change.deps(),
                Some(&after),
                origin,
                &position,
                &wants,
            )?);
        }
        Ok(out)
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
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for patch in patches {
            let Some(family) = Family::ALL
                .into_iter()
                .find(|f| self.family_obj(*f) == &patch.obj)
            else {
                continue;
            };
            let key = match &patch.action {
                PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => key.as_str(),
                PatchAction::Increment {
                    prop: Prop::Map(key),
                    ..
                } => key.as_str(),
                _ => continue,
            };
            let Some((name, slot)) = keys::parse_key(key) else {
                continue;
            };
            let Ok(path) = ChannelPath::new(family, name) else {
                continue;
            };
            let dedup_key = match slot {
                Slot::Meta => continue,
                Slot::Register | Slot::Contribution(_) => String::new(),
                Slot::Entry(id) | Slot::Member(id) => id.to_owned(),
            };
            if !wants(&path) || !seen.insert((path.clone(), dedup_key)) {
                continue;
            }
            if let Some(event) =
                self.event_for(&path, &slot, key, before, after, origin, position)?
            {
                out.push(event);
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn event_for(
        &self,
        path: &ChannelPath,
        slot: &Slot<'_>,
        key: &str,
        before: &[ChangeHash],
        after: Option<&[ChangeHash]>,
        origin: Origin,
        position: &EventPosition,
    ) -> Result<Option<Event>, StateError> {
        let spec = self
            .spec_of(path)
            .unwrap_or_else(|| crate::ChannelSpec::of_kind(ChannelKind::LastValue));
        let (entry_key, old, new) = match slot {
            Slot::Meta => return Ok(None),
            Slot::Register => (
                None,
                self.register_at(path, &spec, Some(before))?.value,
                self.register_at(path, &spec, after)?.value,
            ),
            Slot::Entry(id) => (
                Some((*id).to_owned()),
                self.entry_at(path, id, Some(before))?,
                self.entry_at(path, id, after)?,
            ),
            Slot::Contribution(_) => (
                None,
                Some(self.counter_at(path, Some(before))?.into()),
                Some(self.counter_at(path, after)?.into()),
            ),
            Slot::Member(m) => {
                let member: serde_json::Value =
                    serde_json::from_str(m).unwrap_or(serde_json::Value::Null);
                let had = self.member_at(path, key, Some(before))?;
                let has = self.member_at(path, key, after)?;
                (
                    Some((*m).to_owned()),
                    had.then(|| member.clone()),
                    has.then_some(member),
                )
            }
        };
        if old == new {
            return Ok(None);
        }
        Ok(Some(Event {
            path: path.clone(),
            key: entry_key,
            old,
            new,
            origin,
            position: position.clone(),
        }))
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
