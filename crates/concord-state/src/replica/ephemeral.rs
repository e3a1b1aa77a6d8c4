//! Ephemeral channels on the replica: local writes, values from peers,
//! reads, expiry with its events, and what the sync engine sends.
//!
//! The values live in the replica's [`EphemeralStore`], never in the
//! document: an ephemeral write makes no change, no storage record and no
//! snapshot content, and never shows in `changes_since`, `replay` or the
//! vector clock. Only the channel's declaration is in the document. This
//! module must never write to the document or to storage.

use automerge::{ActorId, ChangeHash};
use serde::Serialize;
use serde_json::Value;
use tracing::warn;

use super::{MAX_VALUE_BYTES, Millis, Replica};
use crate::ephemeral::{
    EphemeralOutcome, EphemeralReceipt, EphemeralUpdate, EphemeralValue, MAX_EPHEMERAL_TTL_MS,
    MAX_EPHEMERAL_VALUES, Offer, Slot,
};
use crate::path::IntoChannelPath;
use crate::subscription::{Event, EventPosition, Origin};
use crate::{ChannelKind, ChannelPath, Hlc, StateError};

impl Replica {
    /// Writes this replica's value on an ephemeral channel (declared with
    /// [`crate::ChannelSpec::ephemeral`]): it replaces this replica's
    /// previous value there, is visible until its HLC wall time plus the
    /// channel's TTL, and reaches peers through the sync engine's fast path.
    /// Nothing goes to the document or to storage.
    ///
    /// Errors: [`StateError::EphemeralTtl`] if the channel was never
    /// declared (its TTL lives in the declaration),
    /// [`StateError::WrongKind`] if it was declared with another kind,
    /// [`StateError::ValueTooLarge`] past [`MAX_VALUE_BYTES`] of JSON, and
    /// [`StateError::EphemeralFull`] when the space holds
    /// [`MAX_EPHEMERAL_VALUES`] live values and none of them is this
    /// replica's on this channel.
    ///
    /// ```
    /// use concord_state::{ActorId, ChannelSpec, EphemeralUpdate, Millis, Replica};
    /// use serde_json::json;
    ///
    /// let mut agent = Replica::new("team", ActorId::from(&[7u8; 16][..]));
    /// let mut watcher = Replica::new("team", ActorId::from(&[8u8; 16][..]));
    /// agent.declare(Millis(0), "observation/agent-7.heartbeat", ChannelSpec::ephemeral(5_000))?;
    /// // The declaration is in the document, like any other.
    /// watcher.apply_changes(Millis(1), agent.changes_since(watcher.vector_clock()))?;
    /// let changes = agent.vector_clock().total();
    /// for beat in 1..=100 {
    ///     agent.put_ephemeral(Millis(beat * 10), "observation/agent-7.heartbeat", &json!({"beat": beat}))?;
    /// }
    /// assert_eq!(agent.vector_clock().total(), changes); // the document did not grow
    ///
    /// // What the sync engine gossips: the latest value, not a hundred of them.
    /// let fresh: Vec<EphemeralUpdate> = agent.take_ephemeral_outbox();
    /// assert_eq!(fresh.len(), 1);
    /// watcher.apply_ephemeral(Millis(1_001), fresh)?;
    /// let writer = agent.actor().to_hex_string();
    /// assert_eq!(
    ///     watcher.get("observation/agent-7.heartbeat")?,
    ///     Some(json!({ writer: {"beat": 100} }))
    /// );
    /// // Five seconds after the last beat it is gone.
    /// watcher.tick(Millis(6_000));
    /// assert_eq!(watcher.get("observation/agent-7.heartbeat")?, Some(json!({})));
    /// # Ok::<(), concord_state::StateError>(())
    /// ```
    pub fn put_ephemeral<V: Serialize + ?Sized>(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
        value: &V,
    ) -> Result<EphemeralReceipt, StateError> {
        let path = path.into_path()?;
        self.tick(now);
        let ttl_ms = self.ephemeral_ttl(&path)?;
        let value = serde_json::to_value(value)?;
        let json = serde_json::to_vec(&value)?;
        if json.len() > MAX_VALUE_BYTES {
            return Err(StateError::ValueTooLarge {
                len: json.len(),
                max: MAX_VALUE_BYTES,
            });
        }
        let hlc = self.hlc.tick(now);
        let new = self.subs.wants(&path).then(|| value.clone());
        let slot = Slot {
            hlc,
            ttl_ms,
            value,
            json,
        };
        let receipt = EphemeralReceipt {
            hlc,
            expires_at: Millis(slot.expires_at()),
        };
        let writer = self.actor.clone();
        match self.ephemeral.offer(self.now, &path, &writer, slot) {
            Offer::Full => Err(StateError::EphemeralFull {
                path: path.to_string(),
                max: MAX_EPHEMERAL_VALUES,
            }),
            // Only when the caller's `now` went back past the TTL: the
            // value was dead on arrival.
            Offer::Stale => Ok(receipt),
            Offer::Stored { old } => {
                self.ephemeral.mark_outgoing(&path);
                if new.is_some() {
                    self.publish_ephemeral(&path, &writer, hlc, old, new, Origin::Local);
                }
                Ok(receipt)
            }
        }
    }

    /// Applies ephemeral values received from a peer: each is stored if it
    /// is newer (by HLC) than its writer's stored value on that channel and
    /// still live, and published to subscribers; the replica's HLC observes
    /// them. A value on a channel declared with another kind is ignored; a
    /// value on a channel not declared (yet: values may overtake their
    /// declaration) is kept.
    ///
    /// If any value is malformed (bad JSON, over [`MAX_VALUE_BYTES`], a TTL
    /// of 0 or over [`MAX_EPHEMERAL_TTL_MS`]) nothing is applied and
    /// [`StateError::InvalidEphemeral`] is returned: the peer sent garbage.
    /// Values past [`MAX_EPHEMERAL_VALUES`] are dropped and counted
    /// ([`crate::Stats::ephemeral_dropped`]).
    pub fn apply_ephemeral(
        &mut self,
        now: Millis,
        updates: Vec<EphemeralUpdate>,
    ) -> Result<EphemeralOutcome, StateError> {
        self.tick(now);
        let mut parsed = Vec::with_capacity(updates.len());
        for update in updates {
            let invalid =
                |what: String| StateError::InvalidEphemeral(format!("{what} on {}", update.path));
            if !(1..=MAX_EPHEMERAL_TTL_MS).contains(&update.ttl_ms) {
                return Err(invalid(format!("a TTL of {} ms", update.ttl_ms)));
            }
            if update.value.len() > MAX_VALUE_BYTES {
                return Err(invalid(format!("{} bytes of value", update.value.len())));
            }
            let value: Value = serde_json::from_slice(&update.value)
                .map_err(|e| invalid(format!("a value that is not JSON ({e})")))?;
            parsed.push((update, value));
        }
        let mut outcome = EphemeralOutcome::default();
        for (update, value) in parsed {
            self.hlc.observe(update.hlc);
            if self
                .spec_of(&update.path)
                .is_some_and(|s| s.kind != ChannelKind::Ephemeral)
            {
                outcome.ignored += 1;
                continue;
            }
            let new = self.subs.wants(&update.path).then(|| value.clone());
            let slot = Slot {
                hlc: update.hlc,
                ttl_ms: update.ttl_ms,
                value,
                json: update.value,
            };
            match self
                .ephemeral
                .offer(self.now, &update.path, &update.writer, slot)
            {
                Offer::Stale => outcome.ignored += 1,
                Offer::Full => outcome.dropped += 1,
                Offer::Stored { old } => {
                    outcome.applied += 1;
                    if new.is_some() {
                        let (path, writer) = (&update.path, &update.writer);
                        self.publish_ephemeral(path, writer, update.hlc, old, new, Origin::Remote);
                    }
                }
            }
        }
        if outcome.dropped > 0 {
            self.ephemeral.dropped += outcome.dropped as u64;
            warn!(space = %self.space, dropped = outcome.dropped, "ephemeral values full");
        }
        Ok(outcome)
    }

    /// The live values of an ephemeral channel, in writer order.
    pub fn ephemeral_values(
        &self,
        path: impl IntoChannelPath,
    ) -> Result<Vec<EphemeralValue>, StateError> {
        let path = path.into_path()?;
        self.expect_kind(&path, ChannelKind::Ephemeral)?;
        Ok(self
            .ephemeral
            .live(&path, self.now)
            .map(|(writer, slot)| EphemeralValue {
                writer: writer.clone(),
                hlc: slot.hlc,
                expires_at: Millis(slot.expires_at()),
                value: slot.value.clone(),
            })
            .collect())
    }

    /// Every live ephemeral value, whoever wrote it: what the sync engine
    /// hands a peer that comes up, so that it sees the current values.
    pub fn ephemeral_snapshot(&self) -> Vec<EphemeralUpdate> {
        self.ephemeral.all_live(self.now).collect()
    }

    /// This replica's ephemeral writes made since the last call, the latest
    /// value per channel (those still live): what the sync engine broadcasts
    /// on the fast path.
    pub fn take_ephemeral_outbox(&mut self) -> Vec<EphemeralUpdate> {
        let now = self.now;
        let paths = self.ephemeral.take_outbox();
        paths
            .iter()
            .filter_map(|path| {
                let slot = self.ephemeral.get(path, &self.actor)?;
                (slot.expires_at() > now.0).then(|| slot.update(path, &self.actor))
            })
            .collect()
    }

    /// When the next ephemeral value expires, if the replica holds any: the
    /// owner ticks the replica then (expiry events go out on that tick).
    pub fn next_ephemeral_expiry(&self) -> Option<Millis> {
        self.ephemeral.next_expiry()
    }

    /// `{ "<writer actor hex>": value, ... }` of the live values on `path`;
    /// `None` if there are none.
    pub(crate) fn ephemeral_object(&self, path: &ChannelPath) -> Option<Value> {
        let map: serde_json::Map<String, Value> = self
            .ephemeral
            .live(path, self.now)
            .map(|(writer, slot)| (writer.to_hex_string(), slot.value.clone()))
            .collect();
        (!map.is_empty()).then_some(Value::Object(map))
    }

    /// Removes the values expired at the replica's `now`, with an event
    /// each (old = the value, new = `None`). Run by [`Replica::tick`].
    pub(crate) fn expire_ephemeral(&mut self) {
        if self.ephemeral.next_expiry().is_none_or(|at| at > self.now) {
            return;
        }
        for (path, writer, slot) in self.ephemeral.expire(self.now) {
            if self.subs.wants(&path) {
                let origin = if writer == self.actor {
                    Origin::Local
                } else {
                    Origin::Remote
                };
                self.publish_ephemeral(&path, &writer, slot.hlc, Some(slot.value), None, origin);
            }
        }
    }

    /// The TTL of the ephemeral channel at `path`, from its declaration.
    fn ephemeral_ttl(&self, path: &ChannelPath) -> Result<u64, StateError> {
        match self.spec_of(path) {
            Some(spec) if spec.kind == ChannelKind::Ephemeral => check_ttl(path, spec.ttl_ms),
            Some(spec) => Err(StateError::WrongKind {
                path: path.to_string(),
                expected: ChannelKind::Ephemeral.as_str(),
                actual: spec.kind.as_str(),
            }),
            None => check_ttl(path, None),
        }
    }

    /// Publishes an ephemeral event (see [`Event::ephemeral`] for its position).
    fn publish_ephemeral(
        &mut self,
        path: &ChannelPath,
        writer: &ActorId,
        hlc: Hlc,
        old: Option<Value>,
        new: Option<Value>,
        origin: Origin,
    ) {
        let event = Event {
            path: path.clone(),
            key: Some(writer.to_hex_string()),
            old,
            new,
            origin,
            position: EventPosition {
                actor: writer.clone(),
                seq: 0,
                change: ChangeHash([0; 32]),
                hlc: Some(hlc),
            },
            ephemeral: true,
        };
        self.subs.publish(&event);
    }
}

/// The TTL of an ephemeral declaration, if it is one a channel may have.
pub(crate) fn check_ttl(path: &ChannelPath, ttl_ms: Option<u64>) -> Result<u64, StateError> {
    ttl_ms
        .filter(|ttl| (1..=MAX_EPHEMERAL_TTL_MS).contains(ttl))
        .ok_or_else(|| StateError::EphemeralTtl {
            path: path.to_string(),
            ttl_ms,
            max: MAX_EPHEMERAL_TTL_MS,
        })
}

#[cfg(test)]
mod tests;
