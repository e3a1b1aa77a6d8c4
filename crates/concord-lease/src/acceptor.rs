//! The acceptor role: one lease peer's vote, as a sans-IO state machine
//! ([`Acceptor`]).
//!
//! This module owns an acceptor's promises (durable, [`AcceptorState`]), its
//! live grants (in memory, one [`HolderSet`] per resource), the ordering
//! rule "durable before reply", and the quiet period after a restart. It
//! must never read a clock, never do I/O, never release a reply that
//! depends on a promise before the driver confirmed that promise durable,
//! and never let a peer grow its memory beyond
//! [`AcceptorConfig::max_resources`] resources, [`crate::MAX_PERMITS`]
//! holders per resource and [`AcceptorConfig::max_outbox`] queued replies.
//!
//! # Driving it
//!
//! ```
//! use concord_lease::{Acceptor, AcceptorConfig, AcceptorInput, NodeId, Millis};
//! # use concord_lease::{Message, Resource, Ballot, Permits};
//! let mut acceptor = Acceptor::new(AcceptorConfig::new(NodeId(1)))?;
//! # let message = Message::Prepare { resource: Resource::new("r")?, ballot: Ballot::new(1, NodeId(7))?, limit: Permits::MUTEX };
//! acceptor.handle_input(Millis(0), AcceptorInput::Message { from: NodeId(7), message })?;
//! while let Some(p) = acceptor.poll_persist() {
//!     // write p.state durably (fsync), then:
//!     acceptor.handle_input(Millis(1), AcceptorInput::Persisted { version: p.version })?;
//! }
//! while let Some(t) = acceptor.poll_transmit() { /* send t.message to t.to */ }
//! # Ok::<(), concord_lease::LeaseError>(())
//! ```
//!
//! # What is persisted, and why
//!
//! The promises: per resource, the highest ballot promised or accepted, plus
//! a `floor` that applies to every resource; and the longest ttl ever
//! granted (for the quiet period below). The promises make tokens strictly
//! increase across restarts (see [`crate::ballot`]): a restarted acceptor
//! that forgot a promise could accept a lower ballot, and a lower token,
//! than one it already granted. Every reply produced after a change waits in
//! the outbox until the driver reports that version durable
//! ([`AcceptorInput::Persisted`]); if the node crashes first, the reply is
//! never sent, which the protocol treats as a lost message.
//!
//! The promise map is bounded by [`AcceptorConfig::max_resources`]. To make
//! room, the acceptor forgets an idle resource (no live holder) and raises
//! `floor` to that resource's promise: every resource's effective promise is
//! `max(floor, own)`, so no promise ever decreases.
//!
//! # What is not persisted, and the quiet period
//!
//! Grants (who holds what until when) live in memory only: their expiry is a
//! reading of a clock that does not survive a restart. A restarted acceptor
//! ([`Acceptor::restore`]) therefore refuses every request with
//! [`RejectReason::Recovering`] for the longer of
//! [`AcceptorConfig::max_ttl`] and [`AcceptorState::longest_ttl`], on its
//! new clock. Any grant it made before the crash was received before the
//! crash and lasts at most that long (a grant with a new longest ttl is
//! only acknowledged once that ttl is durable), and by the argument in
//! [`crate::time`] its holder stops relying on it before the quiet period
//! ends in real time. This is PaxosLease's rule. An acceptor whose disk was
//! lost must come back through [`Acceptor::restore`] with a default state
//! (quiet for `max_ttl`), never through [`Acceptor::new`], and with a
//! `max_ttl` at least the longest ttl it may have granted. Mutual
//! exclusion then holds; but if a majority of acceptors lose their disks,
//! tokens may repeat or go backwards.
//!
//! # Refusing a full resource
//!
//! A `Prepare` for a resource whose permits are all held by other nodes is
//! refused with [`RejectReason::Full`] (the proposer reports it as busy)
//! instead of promised. Refusing is always safe; it spares a write, and a
//! waiter polling a held lock no longer outranks, with each poll, the
//! ballot of the holder's renewal. The holder's own node is still promised.
//!
//! # Releases
//!
//! A `Release` drops the holder's entry if its token matches, and is
//! answered with `Released` in any case (also during the quiet period, when
//! every grant is forgotten anyway), so that the releasing proposer knows
//! when every acceptor has let go (see [`crate::proposer`]). A release that
//! carries a [`crate::Handoff`] context leaves it for the next holder: the
//! acceptor keeps the one with the highest token per resource it has a
//! promise for (so at most `max_resources` of them, in memory like grants)
//! and lists it in its promises.
//!
//! Acceptors need no timers: expiry is evaluated lazily against the `now`
//! of each input.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ballot::{Ballot, FencingToken};
use crate::error::LeaseError;
use crate::ids::{Holder, NodeId};
use crate::messages::{Handoff, Message, RejectReason, Transmit};
use crate::resource::Resource;
use crate::semaphore::{HolderSet, Permits};
use crate::time::Millis;

/// Default [`AcceptorConfig::max_ttl`]: 60 seconds.
pub const DEFAULT_MAX_TTL: Millis = Millis(60_000);
/// Default [`AcceptorConfig::max_resources`].
pub const DEFAULT_MAX_RESOURCES: usize = 4096;
/// Default [`AcceptorConfig::max_outbox`].
pub const DEFAULT_MAX_OUTBOX: usize = 1024;

/// Configuration of an [`Acceptor`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptorConfig {
    /// This acceptor's id (a member of every proposer's [`crate::Quorum`]).
    pub id: NodeId,
    /// Longest ttl granted, and the length of the quiet period after a
    /// restart. Proposers must not be configured with a larger one.
    pub max_ttl: Millis,
    /// Bound on resources with a remembered promise (and on resources with
    /// live holders). Peer input can name any resource; beyond the bound an
    /// idle one is forgotten (its promise folded into the floor), and if
    /// none is idle the request is refused with
    /// [`RejectReason::TooManyResources`].
    pub max_resources: usize,
    /// Bound on replies waiting for persistence or for
    /// [`Acceptor::poll_transmit`]. A reply beyond it is dropped (counted in
    /// [`AcceptorStats::dropped_replies`]); the protocol tolerates lost
    /// messages.
    pub max_outbox: usize,
}

impl AcceptorConfig {
    /// The default configuration for acceptor `id`.
    pub fn new(id: NodeId) -> AcceptorConfig {
        AcceptorConfig {
            id,
            max_ttl: DEFAULT_MAX_TTL,
            max_resources: DEFAULT_MAX_RESOURCES,
            max_outbox: DEFAULT_MAX_OUTBOX,
        }
    }

    fn validate(&self) -> Result<(), LeaseError> {
        if self.max_ttl == Millis::ZERO {
            return Err(LeaseError::InvalidConfig("acceptor max_ttl is zero"));
        }
        if self.max_resources == 0 {
            return Err(LeaseError::InvalidConfig("acceptor max_resources is zero"));
        }
        if self.max_outbox == 0 {
            return Err(LeaseError::InvalidConfig("acceptor max_outbox is zero"));
        }
        Ok(())
    }
}

/// The state an acceptor must keep durable: its promises.
///
/// Small and serializable; the driver stores the latest one it is handed
/// ([`Persist`]) and gives it back to [`Acceptor::restore`] after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorState {
    /// A promise that applies to every resource (raised when a resource is
    /// forgotten to make room).
    pub floor: Ballot,
    /// The longest ttl this acceptor ever granted, so that the quiet period
    /// after a restart covers it even if `max_ttl` was lowered meanwhile.
    #[serde(default)]
    pub longest_ttl: Millis,
    /// The highest ballot promised or accepted, per resource.
    pub promises: BTreeMap<Resource, Ballot>,
}

impl AcceptorState {
    /// The effective promise for `resource`: `max(floor, own)`.
    pub fn promised(&self, resource: &Resource) -> Ballot {
        self.promises
            .get(resource)
            .copied()
            .unwrap_or(Ballot::ZERO)
            .max(self.floor)
    }
}

/// A request to make `state` durable; replies wait until the driver
/// confirms `version` with [`AcceptorInput::Persisted`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persist {
    /// Version of the state, increasing with every change.
    pub version: u64,
    /// The whole state to store (it replaces any older one).
    pub state: AcceptorState,
}

/// An input to [`Acceptor::handle_input`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptorInput {
    /// A message from a peer.
    Message {
        /// The sender, as authenticated by the driver.
        from: NodeId,
        /// The message.
        message: Message,
    },
    /// The driver made the state of this version (and all older) durable.
    Persisted {
        /// The version from [`Persist::version`].
        version: u64,
    },
}

/// Counters for observability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptorStats {
    /// Replies dropped because the outbox was at
    /// [`AcceptorConfig::max_outbox`].
    pub dropped_replies: u64,
    /// Resources forgotten to stay within [`AcceptorConfig::max_resources`].
    pub evicted_resources: u64,
}

/// An acceptor (lease peer) as a sans-IO state machine.
#[derive(Debug)]
pub struct Acceptor {
    config: AcceptorConfig,
    state: AcceptorState,
    holders: BTreeMap<Resource, HolderSet>,
    /// The latest handoff per resource with a promise.
    handoffs: BTreeMap<Resource, Handoff>,
    recovering_until: Option<Millis>,
    version: u64,
    handed_out: u64,
    durable: u64,
    outbox: VecDeque<(u64, Transmit)>,
    stats: AcceptorStats,
}

impl Acceptor {
    /// A brand-new acceptor that never ran before (no quiet period).
    ///
    /// # Errors
    /// [`LeaseError::InvalidConfig`] for a zero bound.
    pub fn new(config: AcceptorConfig) -> Result<Acceptor, LeaseError> {
        config.validate()?;
        Ok(Acceptor {
            config,
            state: AcceptorState::default(),
            holders: BTreeMap::new(),
            handoffs: BTreeMap::new(),
            recovering_until: None,
            version: 0,
            handed_out: 0,
            durable: 0,
            outbox: VecDeque::new(),
            stats: AcceptorStats::default(),
        })
    }

    /// An acceptor restarted at `now` from its last durable `state`.
    ///
    /// It refuses requests until `now + max(max_ttl, state.longest_ttl)`
    /// (the quiet period). A state
    /// with more resources than [`AcceptorConfig::max_resources`] (the bound
    /// was lowered) is compacted by folding every promise into the floor.
    ///
    /// # Errors
    /// [`LeaseError::InvalidConfig`] for a zero bound.
    pub fn restore(
        config: AcceptorConfig,
        mut state: AcceptorState,
        now: Millis,
    ) -> Result<Acceptor, LeaseError> {
        config.validate()?;
        if state.promises.len() > config.max_resources {
            let highest = state.promises.values().copied().max();
            state.floor = state.floor.max(highest.unwrap_or(Ballot::ZERO));
            state.promises.clear();
        }
        let quiet = config.max_ttl.max(state.longest_ttl);
        let mut acceptor = Acceptor::new(config)?;
        acceptor.recovering_until = Some(now.saturating_add(quiet));
        acceptor.state = state;
        Ok(acceptor)
    }

    /// This acceptor's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The current (possibly not yet durable) promises.
    pub fn state(&self) -> &AcceptorState {
        &self.state
    }

    /// Counters.
    pub fn stats(&self) -> AcceptorStats {
        self.stats
    }

    /// Whether the acceptor is still in its quiet period at `now`.
    pub fn is_recovering(&self, now: Millis) -> bool {
        self.recovering_until.is_some_and(|until| now < until)
    }

    /// Number of resources with a remembered promise.
    pub fn resource_count(&self) -> usize {
        self.state.promises.len()
    }

    /// Live holders of `resource` at `now`, for inspection.
    pub fn holders(&mut self, now: Millis, resource: &Resource) -> Vec<crate::HolderInfo> {
        match self.holders.get_mut(resource) {
            Some(set) => {
                set.prune(now);
                set.active()
            }
            None => Vec::new(),
        }
    }

    /// Feeds one input at local time `now`.
    ///
    /// # Errors
    /// A malformed message, a message kind acceptors never receive, or a
    /// confirmation of a version never handed out. The state is unchanged.
    pub fn handle_input(&mut self, now: Millis, input: AcceptorInput) -> Result<(), LeaseError> {
        match input {
            AcceptorInput::Persisted { version } => {
                if version > self.handed_out {
                    return Err(LeaseError::PersistVersion {
                        version,
                        latest: self.handed_out,
                    });
                }
                self.durable = self.durable.max(version);
                Ok(())
            }
            AcceptorInput::Message { from, message } => {
                message.validate()?;
                if let Some(until) = self.recovering_until {
                    if now < until {
                        return self.refuse_while_recovering(from, message);
                    }
                    self.recovering_until = None;
                }
                match message {
                    Message::Prepare {
                        resource,
                        ballot,
                        limit,
                    } => {
                        self.on_prepare(now, from, resource, ballot, limit);
                        Ok(())
                    }
                    Message::Propose {
                        resource,
                        ballot,
                        limit,
                        holder,
                        token,
                        ttl,
                    } => {
                        let request = ProposeRequest {
                            resource,
                            ballot,
                            limit,
                            holder,
                            token,
                            ttl,
                        };
                        self.on_propose(now, from, request);
                        Ok(())
                    }
                    Message::Release {
                        resource,
                        holder,
                        token,
                        handoff,
                    } => {
                        if let Some(set) = self.holders.get_mut(&resource) {
                            set.release(holder, token);
                        }
                        if let Some(context) = handoff {
                            self.keep_handoff(&resource, Handoff { token, context });
                        }
                        self.confirm_release(from, resource, holder, token);
                        Ok(())
                    }
                    other => Err(LeaseError::UnexpectedMessage { kind: other.kind() }),
                }
            }
        }
    }

    /// The latest state to make durable, if it changed since the last call.
    pub fn poll_persist(&mut self) -> Option<Persist> {
        if self.version > self.handed_out {
            self.handed_out = self.version;
            return Some(Persist {
                version: self.version,
                state: self.state.clone(),
            });
        }
        None
    }

    /// The next reply to send, once the state it depends on is durable.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        match self.outbox.front() {
            Some((needs, _)) if *needs <= self.durable => self.outbox.pop_front().map(|(_, t)| t),
            _ => None,
        }
    }

    fn refuse_while_recovering(
        &mut self,
        from: NodeId,
        message: Message,
    ) -> Result<(), LeaseError> {
        match message {
            Message::Prepare {
                resource, ballot, ..
            }
            | Message::Propose {
                resource, ballot, ..
            } => {
                self.reject(from, resource, ballot, RejectReason::Recovering);
                Ok(())
            }
            // Nothing to release: grants were forgotten.
            Message::Release {
                resource,
                holder,
                token,
                ..
            } => {
                self.confirm_release(from, resource, holder, token);
                Ok(())
            }
            other => Err(LeaseError::UnexpectedMessage { kind: other.kind() }),
        }
    }

    fn on_prepare(
        &mut self,
        now: Millis,
        from: NodeId,
        resource: Resource,
        ballot: Ballot,
        limit: Permits,
    ) {
        if ballot <= self.state.promised(&resource) {
            return self.reject(from, resource, ballot, RejectReason::Outdated);
        }
        if let Some(set) = self.holders.get_mut(&resource) {
            set.prune(now);
            if !set.limit_matches(limit) {
                return self.reject(from, resource, ballot, RejectReason::LimitMismatch);
            }
            if set.is_full_for(from) {
                // Every permit is held by other nodes. Refusing without a
                // promise costs no write and leaves the holders' renewals
                // undisturbed; a promise here would outrank them.
                return self.reject(from, resource, ballot, RejectReason::Full);
            }
        }
        if !self.make_room(now, &resource) {
            return self.reject(from, resource, ballot, RejectReason::TooManyResources);
        }
        self.state.promises.insert(resource.clone(), ballot);
        self.version += 1;
        let holders = self
            .holders
            .get(&resource)
            .map(HolderSet::active)
            .unwrap_or_default();
        let handoff = self.handoffs.get(&resource).cloned();
        self.reply(
            from,
            Message::Promise {
                resource,
                ballot,
                holders,
                handoff,
            },
        );
    }

    fn on_propose(&mut self, now: Millis, from: NodeId, request: ProposeRequest) {
        let ProposeRequest {
            resource,
            ballot,
            limit,
            holder,
            token,
            ttl,
        } = request;
        if ttl > self.config.max_ttl {
            return self.reject(from, resource, ballot, RejectReason::TtlTooLong);
        }
        if ballot < self.state.promised(&resource) {
            return self.reject(from, resource, ballot, RejectReason::Outdated);
        }
        if !self.make_room(now, &resource) {
            return self.reject(from, resource, ballot, RejectReason::TooManyResources);
        }
        let set = self
            .holders
            .entry(resource.clone())
            .or_insert_with(|| HolderSet::new(limit));
        if let Err(reason) = set.admit(now, holder, token, ttl, limit) {
            return self.reject(from, resource, ballot, reason);
        }
        if self.state.promises.get(&resource) != Some(&ballot) {
            self.state.promises.insert(resource.clone(), ballot);
            self.version += 1;
        }
        if ttl > self.state.longest_ttl {
            self.state.longest_ttl = ttl;
            self.version += 1;
        }
        tracing::trace!(acceptor = ?self.config.id, %resource, %ballot, ?holder, "accepted");
        self.reply(from, Message::Accepted { resource, ballot });
    }

    /// Makes sure `resource` has a slot in the promise map, forgetting an
    /// idle resource (and raising the floor) if the map is full. Returns
    /// false if every remembered resource has live holders.
    fn make_room(&mut self, now: Millis, resource: &Resource) -> bool {
        if self.state.promises.contains_key(resource)
            || self.state.promises.len() < self.config.max_resources
        {
            return true;
        }
        let mut victim: Option<(Resource, Ballot)> = None;
        for (name, promised) in &self.state.promises {
            let idle = match self.holders.get_mut(name) {
                Some(set) => {
                    set.prune(now);
                    set.is_empty()
                }
                None => true,
            };
            if idle && victim.as_ref().is_none_or(|(_, b)| promised < b) {
                victim = Some((name.clone(), *promised));
            }
        }
        let Some((name, promised)) = victim else {
            return false;
        };
        self.state.promises.remove(&name);
        self.holders.remove(&name);
        self.handoffs.remove(&name);
        self.state.floor = self.state.floor.max(promised);
        self.version += 1;
        self.stats.evicted_resources += 1;
        true
    }

    /// Keeps `handoff` for the next holder of `resource` unless one of a
    /// later grant is kept already. Only resources with a promise keep one
    /// (a genuine release follows a grant), which bounds them.
    fn keep_handoff(&mut self, resource: &Resource, handoff: Handoff) {
        if !self.state.promises.contains_key(resource) {
            return;
        }
        match self.handoffs.get(resource) {
            Some(kept) if kept.token > handoff.token => {}
            _ => {
                self.handoffs.insert(resource.clone(), handoff);
            }
        }
    }

    /// Tells the sender of a `Release` that this acceptor holds no such
    /// grant any more.
    fn confirm_release(
        &mut self,
        to: NodeId,
        resource: Resource,
        holder: Holder,
        token: FencingToken,
    ) {
        let message = Message::Released {
            resource,
            holder,
            token,
        };
        self.reply(to, message);
    }

    fn reject(&mut self, to: NodeId, resource: Resource, ballot: Ballot, reason: RejectReason) {
        let promised = self.state.promised(&resource);
        self.reply(
            to,
            Message::Reject {
                resource,
                ballot,
                promised,
                reason,
            },
        );
    }

    fn reply(&mut self, to: NodeId, message: Message) {
        if self.outbox.len() >= self.config.max_outbox {
            self.stats.dropped_replies += 1;
            tracing::debug!(acceptor = ?self.config.id, "outbox full, reply dropped");
            return;
        }
        self.outbox
            .push_back((self.version, Transmit { to, message }));
    }
}

/// The fields of a `Propose`, unpacked.
struct ProposeRequest {
    resource: Resource,
    ballot: Ballot,
    limit: Permits,
    holder: Holder,
    token: FencingToken,
    ttl: Millis,
}

#[cfg(test)]
mod tests;
