//! Remote changes in, deltas out: applying peers' changes (with a bounded
//! queue for changes whose dependencies are missing), computing exact deltas
//! from a vector clock, and automerge's own sync protocol as the fallback.
//!
//! Invariant: automerge is only ever handed a change whose dependencies it
//! already holds, so its internal (unbounded) queue stays empty and the
//! vector clock names exactly the changes held.

use automerge::sync::{self, SyncDoc};
use automerge::{Change, PatchLog, ReadDoc};
use tracing::{debug, trace, warn};

use super::doc::is_genesis_actor;
use super::{Millis, Replica};
use crate::subscription::{Event, EventPosition, Origin};
use crate::{Hlc, StateError, VectorClock};

/// What [`Replica::apply_changes`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyOutcome {
    /// Changes applied to the document (from this batch or released from the queue).
    pub applied: usize,
    /// Changes already held.
    pub duplicates: usize,
    /// Changes now waiting for dependencies.
    pub pending: usize,
    /// Changes dropped: the pending queue was full, or the persist backlog
    /// at its bound ([`crate::ReplicaConfig::max_unpersisted_bytes`]).
    pub dropped: usize,
    /// Of the applied changes, those whose events were known from cached
    /// register state and published before automerge applied them.
    pub published_early: usize,
}

impl ApplyOutcome {
    /// Whether changes were dropped: the caller should run anti-entropy.
    pub fn overflowed(&self) -> bool {
        self.dropped > 0
    }
}

/// Most changes packed into one bundle by [`Replica::changes_since`].
pub const MAX_CHANGES_PER_BUNDLE: usize = 256;

/// Decodes one item of a changes frame: a change chunk or a bundle of changes.
fn parse_item(bytes: &[u8]) -> Result<Vec<Change>, StateError> {
    let changes = match Change::from_bytes(bytes.to_vec()) {
        Ok(change) => vec![change],
        Err(_) => automerge::Bundle::try_from(bytes)
            .map_err(|e| StateError::InvalidChange(e.to_string()))?
            .to_changes()
            .map_err(|e| StateError::InvalidChange(e.to_string()))?,
    };
    for change in &changes {
        check_ops(change)?;
    }
    Ok(changes)
}

/// Refuses a change whose ops automerge accepts but cannot serve again: a
/// delete or an increment that names no predecessor is not kept in its op
/// set, and rebuilding the change later (for a peer, or for `history`)
/// then panics inside automerge 0.12. No honest writer makes one.
fn check_ops(change: &Change) -> Result<(), StateError> {
    let empty = change.decode().operations.iter().any(|op| {
        matches!(
            op.action,
            automerge::legacy::OpType::Delete | automerge::legacy::OpType::Increment(_)
        ) && op.pred.is_empty()
    });
    if empty {
        return Err(StateError::InvalidChange(format!(
            "change {} deletes or increments nothing",
            change.hash()
        )));
    }
    Ok(())
}

impl Replica {
    /// Applies changes received from a peer (raw automerge change chunks or
    /// bundles, in any order, duplicates allowed). Changes whose dependencies are missing
    /// wait in a queue bounded by [`crate::ReplicaConfig::max_pending_changes`].
    /// While the persist backlog is at its bound no change is applied or
    /// queued: they count as dropped, for anti-entropy to bring them later.
    ///
    /// If any element is not a valid change, nothing is applied and
    /// [`StateError::InvalidChange`] is returned: the peer sent garbage.
    pub fn apply_changes<B: AsRef<[u8]>>(
        &mut self,
        now: Millis,
        changes: impl IntoIterator<Item = B>,
    ) -> Result<ApplyOutcome, StateError> {
        self.tick(now);
        let mut parsed = Vec::new();
        for item in changes {
            parsed.extend(parse_item(item.as_ref())?);
        }
        let mut outcome = ApplyOutcome::default();
        for change in parsed {
            if self.known.contains(&change.hash())
                || self
                    .clock
                    .contains(change.actor_id(), self.logical_seq(&change))
                || self.pending.iter().any(|p| p.hash() == change.hash())
            {
                outcome.duplicates += 1;
            } else if self.backlogged() {
                outcome.dropped += 1;
            } else if self.is_ready(&change) {
                outcome.published_early += usize::from(self.apply_one(change)?);
                outcome.applied += 1;
                self.drain_pending(&mut outcome)?;
            } else if self.pending.len() >= self.config.max_pending_changes {
                outcome.dropped += 1;
            } else {
                self.pending.push(change);
            }
        }
        outcome.pending = self.pending.len();
        if outcome.dropped > 0 {
            warn!(
                space = %self.space,
                dropped = outcome.dropped,
                backlog = self.backlogged(),
                "pending queue or persist backlog full"
            );
        }
        trace!(space = %self.space, ?outcome, "applied changes");
        Ok(outcome)
    }

    /// Whether `change` is the next of its actor and all its dependencies are
    /// held. Of the epoch's first document a change may only depend on its
    /// seal: anything else belongs to another epoch (whose changes also start
    /// from the same first genesis change) and must never apply here.
    fn is_ready(&self, change: &Change) -> bool {
        self.clock.get(change.actor_id()) + 1 == self.logical_seq(change)
            && !is_genesis_actor(change.actor_id())
            && change.deps().iter().all(|d| {
                self.known.contains(d) && (d == &self.epoch.id.0 || !self.epoch.genesis.contains(d))
            })
    }

    /// Applies every queued change whose dependencies are now held,
    /// counting them in `outcome`; stops early at the persist backlog's
    /// bound (the rest waits for the next change).
    fn drain_pending(&mut self, outcome: &mut ApplyOutcome) -> Result<(), StateError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        loop {
            let mut progressed = false;
            let mut i = 0;
            while i < self.pending.len() && !self.backlogged() {
                let c = &self.pending[i];
                if self.clock.contains(c.actor_id(), self.logical_seq(c)) {
                    self.pending.swap_remove(i);
                } else if self.is_ready(c) {
                    let change = self.pending.swap_remove(i);
                    outcome.published_early += usize::from(self.apply_one(change)?);
                    outcome.applied += 1;
                    progressed = true;
                } else {
                    i += 1;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Applies a change whose dependencies are held; returns whether its
    /// events went out before the apply (see the `live` module).
    fn apply_one(&mut self, change: Change) -> Result<bool, StateError> {
        let hlc = change.message().and_then(Hlc::parse);
        let position = EventPosition {
            actor: change.actor_id().clone(),
            seq: self.logical_seq(&change),
            change: change.hash(),
            hlc,
        };
        let decoded = change.decode();
        let buckets = self.layout.buckets_written(&decoded);
        let decoded = self.subs.any().then_some(decoded);
        // A change that only writes registers with cached live writes: its
        // events are known now, and go out before automerge applies it.
        if let Some(plan) = decoded
            .as_ref()
            .and_then(|d| self.plan_from_live(d, &position))
        {
            for event in &plan.events {
                self.subs.publish(event);
            }
            if let Err(error) = self.doc.apply_changes([change.clone()]) {
                // Not expected for a change that passed the plan's checks;
                // take the events back so subscribers end where the
                // document is.
                warn!(space = %self.space, %error, "a planned change failed to apply");
                for event in plan.events {
                    self.subs.publish(&Event {
                        old: event.new,
                        new: event.old,
                        ..event
                    });
                }
                self.live.clear();
                return Err(error.into());
            }
            self.observe_remote(&change, hlc, &buckets);
            self.plan_applied(plan);
            return Ok(true);
        }
        // Otherwise events compare the visible values just before and just
        // after this change, read from the current document (the fast,
        // indexed path).
        let touched = match &decoded {
            Some(d) => {
                let subs = &self.subs;
                self.touched_by(d, &|p| subs.wants(p))
            }
            None => Vec::new(),
        };
        let old = self.slot_values(&touched, None)?;
        self.doc.apply_changes([change.clone()])?;
        self.observe_remote(&change, hlc, &buckets);
        self.cache.clear();
        self.live.clear();
        if !touched.is_empty() {
            self.refresh_live(&touched)?;
            let new = self.slot_values(&touched, None)?;
            for event in super::events::build_events(touched, old, new, Origin::Remote, &position) {
                self.subs.publish(&event);
            }
        }
        Ok(false)
    }

    /// Bookkeeping for a remote change automerge just applied.
    fn observe_remote(&mut self, change: &Change, hlc: Option<Hlc>, buckets: &[automerge::ObjId]) {
        if let Some(h) = hlc {
            self.hlc.observe(h);
        }
        self.record_change(change, false, buckets);
    }

    /// Every held change not covered by `clock` — exactly what a peer at
    /// `clock` is missing — encoded for [`Replica::apply_changes`]: single
    /// changes as raw change chunks, runs of changes as automerge bundles
    /// (columnar, much smaller than the sum of their changes), in an order
    /// that respects dependencies.
    pub fn changes_since(&self, clock: &VectorClock) -> Vec<Vec<u8>> {
        self.changes_since_bounded(clock, usize::MAX).0
    }

    /// Like [`Replica::changes_since`] but at most `max` changes (the oldest
    /// first, still dependency-closed); the flag says whether more remain.
    pub fn changes_since_bounded(&self, clock: &VectorClock, max: usize) -> (Vec<Vec<u8>>, bool) {
        let all = self.changes_after(clock);
        let more = all.len() > max;
        let kept = &all[..all.len().min(max)];
        let items = kept
            .chunks(MAX_CHANGES_PER_BUNDLE)
            .map(|run| match run {
                [one] => one.raw_bytes().to_vec(),
                _ => self
                    .doc
                    .bundle(run.iter().map(Change::hash))
                    .map(|b| b.bytes().to_vec())
                    .unwrap_or_default(),
            })
            .filter(|b| !b.is_empty())
            .collect();
        (items, more)
    }

    /// Raw bytes of this replica's own changes after sequence `seq`.
    pub fn own_changes_after(&self, seq: u64) -> Vec<Vec<u8>> {
        if self
            .recent_local
            .front()
            .is_some_and(|(first, _)| *first <= seq + 1)
        {
            return self
                .recent_local
                .iter()
                .filter(|(s, _)| *s > seq)
                .map(|(_, bytes)| bytes.clone())
                .collect();
        }
        let base = self.epoch.base.get(&self.actor);
        let skip = usize::try_from(seq.saturating_sub(base)).unwrap_or(usize::MAX);
        self.chains
            .get(&self.actor)
            .map(|chain| {
                chain
                    .iter()
                    .skip(skip)
                    .filter_map(|h| self.doc.get_change_by_hash(h))
                    .map(|c| c.raw_bytes().to_vec())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn changes_after(&self, clock: &VectorClock) -> Vec<Change> {
        let mut metas = Vec::new();
        for (actor, chain) in &self.chains {
            let have = clock.get(actor).saturating_sub(self.epoch.base.get(actor));
            let have = usize::try_from(have).unwrap_or(usize::MAX);
            if have < chain.len() {
                metas.extend(
                    chain[have..]
                        .iter()
                        .filter_map(|h| self.doc.get_change_meta_by_hash(h)),
                );
            }
        }
        super::doc::causal_order(metas)
            .iter()
            .filter_map(|h| self.doc.get_change_by_hash(h))
            .collect()
    }

    /// Produces the next message of automerge's sync protocol for the peer
    /// whose session state is `state`, if there is anything to say.
    pub fn generate_sync_message(&self, state: &mut sync::State) -> Option<Vec<u8>> {
        self.doc.generate_sync_message(state).map(|m| m.encode())
    }

    /// Receives a message of automerge's sync protocol. Returns how many new
    /// changes it brought. Invalid bytes give [`StateError::InvalidChange`]
    /// and leave the replica untouched. While the persist backlog is at its
    /// bound the message is dropped (0 changes) and the session `state`
    /// starts over, so the exchange resumes from scratch later.
    pub fn receive_sync_message(
        &mut self,
        now: Millis,
        state: &mut sync::State,
        bytes: &[u8],
    ) -> Result<usize, StateError> {
        self.tick(now);
        let message =
            sync::Message::decode(bytes).map_err(|e| StateError::InvalidChange(e.to_string()))?;
        if self.backlogged() {
            self.refuse_sync_message(state);
            return Ok(0);
        }
        let before = self.doc.get_heads();
        let mut log = PatchLog::new(self.subs.any());
        self.doc
            .receive_sync_message_log_patches(state, message, &mut log)?;
        let fresh: Vec<Change> = super::doc::causal_order(
            self.doc
                .get_changes_meta(&before)
                .into_iter()
                .filter(|m| !self.known.contains(&m.hash)),
        )
        .iter()
        .filter_map(|h| self.doc.get_change_by_hash(h))
        .collect();
        for change in &fresh {
            if let Some(h) = change.message().and_then(Hlc::parse) {
                self.hlc.observe(h);
            }
            let buckets = self.layout.buckets_written(&change.decode());
            self.record_change(change, false, &buckets);
        }
        if !fresh.is_empty() {
            self.cache.clear();
            self.live.clear();
        }
        if let (Some(last), true) = (fresh.last(), self.subs.any()) {
            let patches = self.doc.make_patches(&mut log);
            let position = EventPosition {
                actor: last.actor_id().clone(),
                seq: self.logical_seq(last),
                change: last.hash(),
                hlc: last.message().and_then(Hlc::parse),
            };
            self.publish_remote(&patches, &before, &position)?;
        }
        self.drain_pending(&mut ApplyOutcome::default())?;
        debug!(space = %self.space, new = fresh.len(), "sync message received");
        Ok(fresh.len())
    }
}
