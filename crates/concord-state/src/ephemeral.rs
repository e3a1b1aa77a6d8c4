//! The in-memory store of ephemeral values (DESIGN §5 "Ephemeral
//! channels"): for each (channel path, writer actor), that writer's last
//! value by hybrid logical clock, with its expiry, plus the paths of local
//! writes not yet handed out for the fast path.
//!
//! This module owns the ordering rule (a write not newer than the writer's
//! stored one is ignored), expiry and the bound [`MAX_EPHEMERAL_VALUES`]. It
//! never touches the automerge document, storage or subscriptions (the
//! replica builds events from what it returns), and nothing in it is ever
//! persisted.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ActorId;
use serde_json::Value;

use crate::{ChannelPath, Hlc, Millis};

/// Most (channel path, writer) entries a replica holds per space. Past it a
/// local write on a new entry is refused with
/// [`crate::StateError::EphemeralFull`] and a remote one is dropped and
/// counted in [`crate::Stats::ephemeral_dropped`].
pub const MAX_EPHEMERAL_VALUES: usize = 4096;

/// Longest TTL of an ephemeral channel: one day. Ephemeral values are for
/// things that stop being true on their own (heartbeats, presence,
/// progress); anything meant to last belongs in the document.
pub const MAX_EPHEMERAL_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// One live ephemeral value, as [`crate::Replica::ephemeral_values`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct EphemeralValue {
    /// The replica that wrote it.
    pub writer: ActorId,
    /// Its write's hybrid logical clock.
    pub hlc: Hlc,
    /// When it expires: the write's HLC wall time plus the channel's TTL
    /// (compared with the replica's `now`, like every TTL).
    pub expires_at: Millis,
    /// The value.
    pub value: Value,
}

/// One ephemeral value as it travels between replicas (the sync engine puts
/// it in a wire frame): the value as JSON bytes, its TTL rather than its
/// expiry, so that the expiry is always `hlc.wall + ttl_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralUpdate {
    /// The channel.
    pub path: ChannelPath,
    /// The replica that wrote it.
    pub writer: ActorId,
    /// Its write's hybrid logical clock.
    pub hlc: Hlc,
    /// How long it lives after `hlc.wall`, in ms.
    pub ttl_ms: u64,
    /// The value, as JSON.
    pub value: Vec<u8>,
}

/// What [`crate::Replica::put_ephemeral`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EphemeralReceipt {
    /// The write's hybrid logical clock.
    pub hlc: Hlc,
    /// When the value expires.
    pub expires_at: Millis,
}

/// What [`crate::Replica::apply_ephemeral`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EphemeralOutcome {
    /// Values stored (and published to subscribers).
    pub applied: usize,
    /// Values ignored: not newer than their writer's stored value, expired
    /// on arrival, or on a channel declared with another kind.
    pub ignored: usize,
    /// Values dropped because the space holds [`MAX_EPHEMERAL_VALUES`].
    pub dropped: usize,
}

/// A stored value.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub hlc: Hlc,
    pub ttl_ms: u64,
    pub value: Value,
    /// `value` as JSON, as it goes to peers.
    pub json: Vec<u8>,
}

impl Slot {
    pub(crate) fn expires_at(&self) -> u64 {
        self.hlc.wall.saturating_add(self.ttl_ms)
    }

    pub(crate) fn update(&self, path: &ChannelPath, writer: &ActorId) -> EphemeralUpdate {
        EphemeralUpdate {
            path: path.clone(),
            writer: writer.clone(),
            hlc: self.hlc,
            ttl_ms: self.ttl_ms,
            value: self.json.clone(),
        }
    }
}

/// What [`EphemeralStore::offer`] did.
pub(crate) enum Offer {
    /// Stored; the writer's previous live value, if any.
    Stored { old: Option<Value> },
    /// Not newer than the stored value, or expired already.
    Stale,
    /// A new entry, and the store is full.
    Full,
}

/// The ephemeral values of one replica.
#[derive(Debug, Default)]
pub(crate) struct EphemeralStore {
    slots: BTreeMap<ChannelPath, BTreeMap<ActorId, Slot>>,
    /// Every stored entry by expiry, for [`EphemeralStore::expire`].
    by_expiry: BTreeSet<(u64, ChannelPath, ActorId)>,
    len: usize,
    /// Paths of local writes not yet taken for the fast path.
    outbox: BTreeSet<ChannelPath>,
    /// Remote values dropped because the store was full.
    pub dropped: u64,
}

impl EphemeralStore {
    /// Stores `slot` as `writer`'s value on `path` if it is newer (by HLC)
    /// than the stored one and still live at `now`.
    pub(crate) fn offer(
        &mut self,
        now: Millis,
        path: &ChannelPath,
        writer: &ActorId,
        slot: Slot,
    ) -> Offer {
        let expires_at = slot.expires_at();
        let stored = self.slots.get(path).and_then(|w| w.get(writer));
        if expires_at <= now.0 || stored.is_some_and(|s| s.hlc >= slot.hlc) {
            return Offer::Stale;
        }
        if stored.is_none() && self.len >= MAX_EPHEMERAL_VALUES {
            return Offer::Full;
        }
        let writers = self.slots.entry(path.clone()).or_default();
        let old = writers.insert(writer.clone(), slot);
        match &old {
            Some(old) => {
                self.by_expiry
                    .remove(&(old.expires_at(), path.clone(), writer.clone()));
            }
            None => self.len += 1,
        }
        self.by_expiry
            .insert((expires_at, path.clone(), writer.clone()));
        Offer::Stored {
            old: old.map(|s| s.value),
        }
    }

    /// Removes and returns every entry expired at `now`, earliest first.
    pub(crate) fn expire(&mut self, now: Millis) -> Vec<(ChannelPath, ActorId, Slot)> {
        let mut out = Vec::new();
        while let Some((at, path, writer)) = self.by_expiry.first().cloned() {
            if at > now.0 {
                break;
            }
            self.by_expiry.pop_first();
            let Some(writers) = self.slots.get_mut(&path) else {
                continue;
            };
            if let Some(slot) = writers.remove(&writer) {
                self.len -= 1;
                out.push((path.clone(), writer, slot));
            }
            if writers.is_empty() {
                // Keeps the outbox within the paths that hold values.
                self.slots.remove(&path);
                self.outbox.remove(&path);
            }
        }
        out
    }

    /// When the next entry expires, if any is stored.
    pub(crate) fn next_expiry(&self) -> Option<Millis> {
        self.by_expiry.first().map(|(at, _, _)| Millis(*at))
    }

    /// Entries live at `now`.
    pub(crate) fn live_count(&self, now: Millis) -> usize {
        let expired = self
            .by_expiry
            .iter()
            .take_while(|(at, _, _)| *at <= now.0)
            .count();
        self.len - expired
    }

    /// The entries of `path` live at `now`, by writer.
    pub(crate) fn live<'a>(
        &'a self,
        path: &ChannelPath,
        now: Millis,
    ) -> impl Iterator<Item = (&'a ActorId, &'a Slot)> + 'a {
        self.slots
            .get(path)
            .into_iter()
            .flatten()
            .filter(move |(_, s)| s.expires_at() > now.0)
    }

    /// Every entry live at `now`, in (path, writer) order.
    pub(crate) fn all_live(&self, now: Millis) -> impl Iterator<Item = EphemeralUpdate> + '_ {
        self.slots.iter().flat_map(move |(path, writers)| {
            writers
                .iter()
                .filter(move |(_, s)| s.expires_at() > now.0)
                .map(move |(writer, s)| s.update(path, writer))
        })
    }

    /// The value `writer` holds on `path`, if any.
    pub(crate) fn get(&self, path: &ChannelPath, writer: &ActorId) -> Option<&Slot> {
        self.slots.get(path)?.get(writer)
    }

    /// Remembers that a local write on `path` waits for the fast path.
    pub(crate) fn mark_outgoing(&mut self, path: &ChannelPath) {
        self.outbox.insert(path.clone());
    }

    /// Takes the paths of local writes waiting for the fast path.
    pub(crate) fn take_outbox(&mut self) -> BTreeSet<ChannelPath> {
        std::mem::take(&mut self.outbox)
    }
}
