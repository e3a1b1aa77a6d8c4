//! The proposer role: one node's requests for leases, as a sans-IO state
//! machine ([`Proposer`]).
//!
//! This module owns a node's lease requests from `Acquire` to their end:
//! ballots, the two phases of each attempt, retries with randomized backoff,
//! renewals, releases, and the local validity of every held lease. It must
//! never read a clock or a global RNG (time is the `now` of each input,
//! randomness a ChaCha RNG seeded at construction), never do I/O, and never
//! report a lease valid past `sent + local_validity(ttl)` (see
//! [`crate::time`]).
//!
//! # Driving it
//!
//! ```
//! use concord_lease::*;
//! let quorum = Quorum::new([NodeId(1), NodeId(2), NodeId(3)])?;
//! let mut proposer = Proposer::new(ProposerConfig::new(NodeId(9), quorum), 42)?;
//! proposer.handle_input(Millis(0), Input::Acquire {
//!     lease: LeaseId(1),
//!     resource: Resource::new("github.main")?,
//!     ttl: Millis(10_000),
//!     permits: Permits::MUTEX,
//!     wait: Millis(5_000),
//! })?;
//! while let Some(t) = proposer.poll_transmit() { /* send t.message to t.to */ }
//! while let Some(e) = proposer.poll_event() { /* Acquired, Denied, Lost, ... */ }
//! let wake_at = proposer.poll_timeout(); // then handle_input(now, Input::Timeout)
//! # assert!(wake_at.is_some());
//! # Ok::<(), LeaseError>(())
//! ```
//!
//! Replies go in as [`Input::Message`]. Every input first fires due timers,
//! so a lease whose validity ended is reported [`Event::Lost`] before any
//! later message about it is looked at.
//!
//! # An attempt
//!
//! 1. Pick a ballot above every ballot seen in a rejection; send `Prepare`
//!    to every acceptor.
//! 2. On promises from a majority: if the census of other holders (see
//!    [`crate::semaphore`]) leaves a permit free, note `sent = now` and send
//!    `Propose` to every acceptor; otherwise the attempt fails as
//!    [`DenyReason::Busy`].
//! 3. On acceptance by a majority the lease is held until
//!    `sent + local_validity(ttl)`, unless that moment has already passed.
//!
//! An attempt fails when a majority becomes impossible (rejections) or
//! when a phase waited its round timeout without a majority (lost
//! messages, partition, crashed acceptors, slow disks). A failed
//! acquisition is retried after a random backoff until its `wait` is spent,
//! then reported [`Event::Denied`].
//!
//! The round timeout and the retry backoff are learned from how long the
//! acceptors take to answer, late answers to abandoned phases included:
//! never below [`ProposerConfig::round_timeout`] and
//! [`ProposerConfig::retry_backoff`], and never above
//! [`MAX_ROUND_TIMEOUT_FACTOR`](crate::MAX_ROUND_TIMEOUT_FACTOR) times the configured round timeout. A
//! phase never waits past the end of its request (the caller's wait, or
//! the validity of a lease being renewed) unless that leaves less than the
//! configured round timeout. A node on the minority side of a partition
//! never gathers a majority of the *configured* acceptors, so it never
//! acquires.
//!
//! # Renewal and release
//!
//! A renewal is an attempt that keeps the lease's token. It is only started
//! while the lease is valid, and it only extends the lease if it succeeds
//! before the current validity ends; otherwise the lease is reported
//! [`Event::Lost`] at that moment and never comes back (a later success
//! would resurrect a token that another holder may have superseded). The
//! validity after a renewal is the later of the old and the new one, which
//! is safe because acceptors keep the later expiry of a renewed entry.
//!
//! Release and loss send a best-effort `Release` to every acceptor (no
//! acknowledgement; a lost release only delays others until the entry
//! expires). A failed fresh attempt that got as far as `Propose` also sends
//! `Release` for its token, in case a majority accepted but the answers
//! were lost.

use std::collections::{BTreeMap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ballot::{Ballot, FencingToken};
use crate::error::LeaseError;
use crate::ids::{Holder, LeaseId, NodeId};
use crate::messages::{HolderInfo, Message, RejectReason, Transmit};
use crate::pace::Pace;
use crate::quorum::{Quorum, Tally};
use crate::resource::Resource;
use crate::semaphore::{Census, Permits};
use crate::time::{DriftBound, Millis};

/// Default [`ProposerConfig::max_ttl`]: 60 seconds (the acceptors' default).
pub const DEFAULT_MAX_TTL: Millis = Millis(60_000);
/// Default [`ProposerConfig::round_timeout`].
pub const DEFAULT_ROUND_TIMEOUT: Millis = Millis(500);
/// Default [`ProposerConfig::retry_backoff`].
pub const DEFAULT_RETRY_BACKOFF: Millis = Millis(50);
/// Default [`ProposerConfig::max_leases`].
pub const DEFAULT_MAX_LEASES: usize = 1024;
/// Default [`ProposerConfig::max_outbox`].
pub const DEFAULT_MAX_OUTBOX: usize = 4096;

/// Configuration of a [`Proposer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposerConfig {
    /// This proposer's id: unique among live proposers.
    pub id: NodeId,
    /// The configured acceptors.
    pub acceptors: Quorum,
    /// The assumed bound on clock drift.
    pub drift: DriftBound,
    /// Longest ttl the application may ask for; at most the acceptors'
    /// `max_ttl`.
    pub max_ttl: Millis,
    /// How long one phase of an attempt waits for a majority at least; the
    /// proposer waits longer for acceptors it learned are slow (see the
    /// module docs), up to [`MAX_ROUND_TIMEOUT_FACTOR`](crate::MAX_ROUND_TIMEOUT_FACTOR) times this.
    pub round_timeout: Millis,
    /// Base of the randomized backoff between attempts: a retry waits
    /// between one and two times this, or the typical time the acceptors
    /// take to answer if that is longer.
    pub retry_backoff: Millis,
    /// Bound on leases tracked at once (held or being acquired).
    pub max_leases: usize,
    /// Bound on transmits waiting for [`Proposer::poll_transmit`]; beyond
    /// it the oldest is dropped (counted in
    /// [`ProposerStats::dropped_transmits`]) as if the network lost it.
    pub max_outbox: usize,
}

impl ProposerConfig {
    /// The default configuration for proposer `id` with `acceptors`.
    pub fn new(id: NodeId, acceptors: Quorum) -> ProposerConfig {
        ProposerConfig {
            id,
            acceptors,
            drift: DriftBound::DEFAULT,
            max_ttl: DEFAULT_MAX_TTL,
            round_timeout: DEFAULT_ROUND_TIMEOUT,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            max_leases: DEFAULT_MAX_LEASES,
            max_outbox: DEFAULT_MAX_OUTBOX,
        }
    }

    fn validate(&self) -> Result<(), LeaseError> {
        if self.max_ttl == Millis::ZERO {
            return Err(LeaseError::InvalidConfig("proposer max_ttl is zero"));
        }
        if self.round_timeout == Millis::ZERO {
            return Err(LeaseError::InvalidConfig("proposer round_timeout is zero"));
        }
        if self.max_leases == 0 {
            return Err(LeaseError::InvalidConfig("proposer max_leases is zero"));
        }
        if self.max_outbox == 0 {
            return Err(LeaseError::InvalidConfig("proposer max_outbox is zero"));
        }
        Ok(())
    }
}

/// An input to [`Proposer::handle_input`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Acquire `permits`-counted `resource` for `ttl`, retrying for up to
    /// `wait` (zero: one attempt).
    Acquire {
        /// The caller's name for this request (unused by any tracked lease).
        lease: LeaseId,
        /// The resource.
        resource: Resource,
        /// Time to live, as timed by acceptors.
        ttl: Millis,
        /// 1 for a mutex, N for a semaphore.
        permits: Permits,
        /// How long to keep trying.
        wait: Millis,
    },
    /// Extend a held lease to `ttl` from now (keeping its token).
    Renew {
        /// The lease.
        lease: LeaseId,
        /// New time to live.
        ttl: Millis,
    },
    /// Give up a lease, held or still being acquired.
    Release {
        /// The lease.
        lease: LeaseId,
    },
    /// A message from an acceptor.
    Message {
        /// The sender, as authenticated by the driver.
        from: NodeId,
        /// The message.
        message: Message,
    },
    /// Nothing but the passing of time (after [`Proposer::poll_timeout`]).
    Timeout,
}

/// Why an acquisition or renewal did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// Others hold every permit.
    Busy,
    /// No majority answered in time (partition, loss, crashed acceptors).
    NoQuorum,
    /// A majority refused; the last reason given.
    Rejected(RejectReason),
    /// Ballots ran out (a round above [`Ballot::MAX_ROUND`] was needed).
    RoundsExhausted,
}

/// Why an attempt failed when acceptors refused it for `reason`: acceptors
/// whose permits are all held by others refuse as [`RejectReason::Full`],
/// which means [`DenyReason::Busy`].
fn refused(reason: RejectReason) -> DenyReason {
    match reason {
        RejectReason::Full => DenyReason::Busy,
        other => DenyReason::Rejected(other),
    }
}

/// What happened to a lease, from [`Proposer::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The lease is held until `valid_until` on this node's clock.
    Acquired {
        /// The request.
        lease: LeaseId,
        /// The resource.
        resource: Resource,
        /// The fencing token, to pass to whatever acts under the lease.
        token: FencingToken,
        /// End of validity (exclusive) on the local clock.
        valid_until: Millis,
    },
    /// A renewal succeeded; the lease is now held until `valid_until`.
    Renewed {
        /// The request.
        lease: LeaseId,
        /// The resource.
        resource: Resource,
        /// The token (unchanged).
        token: FencingToken,
        /// New end of validity (exclusive) on the local clock.
        valid_until: Millis,
    },
    /// A renewal gave up; the lease stays valid until `valid_until`, then
    /// is [`Event::Lost`].
    RenewFailed {
        /// The request.
        lease: LeaseId,
        /// The resource.
        resource: Resource,
        /// Why.
        reason: DenyReason,
        /// Unchanged end of validity on the local clock.
        valid_until: Millis,
    },
    /// The acquisition gave up; the request is over.
    Denied {
        /// The request.
        lease: LeaseId,
        /// The resource.
        resource: Resource,
        /// Why (the last failure).
        reason: DenyReason,
    },
    /// The lease's validity ended without a successful renewal; stop using
    /// the token. The request is over.
    Lost {
        /// The request.
        lease: LeaseId,
        /// The resource.
        resource: Resource,
        /// The token that is no longer valid.
        token: FencingToken,
    },
    /// The application released the request; it is over.
    Released {
        /// The request.
        lease: LeaseId,
        /// The resource.
        resource: Resource,
        /// The token, if the lease was held.
        token: Option<FencingToken>,
    },
}

/// Counters for observability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProposerStats {
    /// Attempts started (prepare phases).
    pub attempts: u64,
    /// Transmits dropped because the outbox was at
    /// [`ProposerConfig::max_outbox`].
    pub dropped_transmits: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    token: FencingToken,
    valid_until: Millis,
}

#[derive(Debug)]
enum Phase {
    Prepare { tally: Tally, census: Census },
    Propose { tally: Tally, token: FencingToken },
}

#[derive(Debug)]
struct Attempt {
    ballot: Ballot,
    /// When the current phase's messages went out: in the propose phase,
    /// the `sent` from which a granted lease's validity counts.
    phase_sent: Millis,
    deadline: Millis,
    phase: Phase,
    last_reject: Option<RejectReason>,
}

#[derive(Debug)]
struct Slot {
    resource: Resource,
    permits: Permits,
    ttl: Millis,
    /// Acquisition: give up after this. Unused once held.
    wait_until: Millis,
    held: Option<Held>,
    attempt: Option<Attempt>,
    retry_at: Option<Millis>,
}

impl Slot {
    /// When the request must be done: the end of the caller's wait, or of
    /// the validity of a lease being renewed.
    fn deadline(&self) -> Millis {
        self.held.map_or(self.wait_until, |h| h.valid_until)
    }

    /// When a phase starting at `now` gives up waiting for a majority:
    /// after `timeout`, but no later than the request's deadline unless
    /// that leaves less than `base`.
    fn phase_deadline(&self, now: Millis, timeout: Millis, base: Millis) -> Millis {
        now.saturating_add(timeout)
            .min(self.deadline())
            .max(now.saturating_add(base))
    }
}

/// A proposer (lease client) as a sans-IO state machine.
#[derive(Debug)]
pub struct Proposer {
    config: ProposerConfig,
    rng: ChaCha8Rng,
    round: u64,
    leases: BTreeMap<LeaseId, Slot>,
    by_ballot: BTreeMap<Ballot, LeaseId>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: ProposerStats,
    pace: Pace,
}

impl Proposer {
    /// A proposer with `config`; `seed` seeds its RNG (backoff jitter).
    ///
    /// A restarted proposer starts from round 0 and climbs past the
    /// acceptors' promises through their rejections.
    ///
    /// # Errors
    /// [`LeaseError::InvalidConfig`] for a zero bound or timeout.
    pub fn new(config: ProposerConfig, seed: u64) -> Result<Proposer, LeaseError> {
        config.validate()?;
        Ok(Proposer {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            round: 0,
            leases: BTreeMap::new(),
            by_ballot: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: ProposerStats::default(),
            pace: Pace::default(),
        })
    }

    /// This proposer's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Counters.
    pub fn stats(&self) -> ProposerStats {
        self.stats
    }

    /// Number of tracked leases.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// The token and end of validity of `lease`, if held.
    ///
    /// The lease may be used while `now < valid_until`; callers that act on
    /// it should check this (or [`Proposer::is_valid`]) right before acting,
    /// since [`Event::Lost`] is only produced when the machine is next fed.
    pub fn held(&self, lease: LeaseId) -> Option<(FencingToken, Millis)> {
        self.leases
            .get(&lease)
            .and_then(|s| s.held)
            .map(|h| (h.token, h.valid_until))
    }

    /// Whether `lease` is held and valid at `now`.
    pub fn is_valid(&self, lease: LeaseId, now: Millis) -> bool {
        self.held(lease).is_some_and(|(_, until)| now < until)
    }

    /// Feeds one input at local time `now`. Due timers fire first.
    ///
    /// # Errors
    /// Invalid application requests ([`LeaseError::InvalidTtl`],
    /// [`LeaseError::LeaseInUse`], [`LeaseError::UnknownLease`], ...) and
    /// bad peer messages ([`LeaseError::NotAMember`],
    /// [`LeaseError::UnexpectedMessage`], [`LeaseError::Malformed`]). The
    /// refused input changes nothing (timers may still have fired).
    pub fn handle_input(&mut self, now: Millis, input: Input) -> Result<(), LeaseError> {
        self.fire_timers(now);
        match input {
            Input::Acquire {
                lease,
                resource,
                ttl,
                permits,
                wait,
            } => self.acquire(now, lease, resource, ttl, permits, wait),
            Input::Renew { lease, ttl } => self.renew(now, lease, ttl),
            Input::Release { lease } => self.release(lease),
            Input::Message { from, message } => self.on_message(now, from, message),
            Input::Timeout => Ok(()),
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next event for the application.
    ///
    /// The event queue needs no bound of its own: each request produces at
    /// most one event per application input (`Acquire`, `Renew`,
    /// `Release`) plus one final `Lost` or `Denied`, so it grows with the
    /// application's own inputs, never with peer input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to feed [`Input::Timeout`] next, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.leases
            .values()
            .flat_map(|s| {
                [
                    s.held.map(|h| h.valid_until),
                    s.attempt.as_ref().map(|a| a.deadline),
                    s.retry_at,
                ]
            })
            .flatten()
            .min()
    }

    fn check_ttl(&self, ttl: Millis) -> Result<(), LeaseError> {
        if ttl > self.config.max_ttl || self.config.drift.local_validity(ttl) == Millis::ZERO {
            return Err(LeaseError::InvalidTtl {
                ttl,
                max: self.config.max_ttl,
            });
        }
        Ok(())
    }

    fn acquire(
        &mut self,
        now: Millis,
        lease: LeaseId,
        resource: Resource,
        ttl: Millis,
        permits: Permits,
        wait: Millis,
    ) -> Result<(), LeaseError> {
        self.check_ttl(ttl)?;
        if self.leases.contains_key(&lease) {
            return Err(LeaseError::LeaseInUse(lease));
        }
        if self.leases.len() >= self.config.max_leases {
            return Err(LeaseError::TooManyLeases {
                max: self.config.max_leases,
            });
        }
        self.leases.insert(
            lease,
            Slot {
                resource,
                permits,
                ttl,
                wait_until: now.saturating_add(wait),
                held: None,
                attempt: None,
                retry_at: None,
            },
        );
        self.start_attempt(now, lease);
        Ok(())
    }

    fn renew(&mut self, now: Millis, lease: LeaseId, ttl: Millis) -> Result<(), LeaseError> {
        self.check_ttl(ttl)?;
        let slot = self
            .leases
            .get_mut(&lease)
            .ok_or(LeaseError::UnknownLease(lease))?;
        if slot.held.is_none() {
            return Err(LeaseError::NotHeld(lease));
        }
        if slot.attempt.is_some() || slot.retry_at.is_some() {
            return Err(LeaseError::RenewInProgress(lease));
        }
        slot.ttl = ttl;
        self.start_attempt(now, lease);
        Ok(())
    }

    fn release(&mut self, lease: LeaseId) -> Result<(), LeaseError> {
        let slot = self
            .leases
            .remove(&lease)
            .ok_or(LeaseError::UnknownLease(lease))?;
        let holder = self.holder(lease);
        let mut release_token = slot.held.map(|h| h.token);
        if let Some(attempt) = &slot.attempt {
            self.by_ballot.remove(&attempt.ballot);
            if let Phase::Propose { token, .. } = attempt.phase {
                release_token = Some(token);
            }
        }
        if let Some(token) = release_token {
            self.broadcast(&Message::Release {
                resource: slot.resource.clone(),
                holder,
                token,
            });
        }
        self.events.push_back(Event::Released {
            lease,
            resource: slot.resource,
            token: slot.held.map(|h| h.token),
        });
        Ok(())
    }

    fn holder(&self, lease: LeaseId) -> Holder {
        Holder {
            node: self.config.id,
            lease,
        }
    }

    fn fire_timers(&mut self, now: Millis) {
        let ids: Vec<LeaseId> = self.leases.keys().copied().collect();
        for id in ids {
            let Some(slot) = self.leases.get(&id) else {
                continue;
            };
            if let Some(held) = slot.held
                && now >= held.valid_until
            {
                self.lose(id, held.token);
                continue;
            }
            if let Some(attempt) = slot.attempt.as_ref().filter(|a| now >= a.deadline) {
                self.pace.abandoned(attempt.ballot, attempt.phase_sent);
                self.fail_attempt(now, id, DenyReason::NoQuorum);
                continue;
            }
            if slot.retry_at.is_some_and(|at| now >= at) {
                self.start_attempt(now, id);
            }
        }
    }

    fn lose(&mut self, id: LeaseId, token: FencingToken) {
        tracing::debug!(proposer = ?self.config.id, lease = ?id, %token, "lease lost");
        self.send_release(id, token);
        let Some(slot) = self.leases.remove(&id) else {
            return;
        };
        if let Some(attempt) = &slot.attempt {
            self.by_ballot.remove(&attempt.ballot);
        }
        self.events.push_back(Event::Lost {
            lease: id,
            resource: slot.resource,
            token,
        });
    }

    fn start_attempt(&mut self, now: Millis, id: LeaseId) {
        if self.own_attempt_under_way(id) {
            // Its higher ballot would only preempt our own attempt.
            self.retry_or_give_up(now, id, DenyReason::Busy);
            return;
        }
        let ballot = Ballot::new(self.round.saturating_add(1), self.config.id);
        let timeout = self.round_timeout();
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        slot.retry_at = None;
        let ballot = match ballot {
            Ok(b) => b,
            Err(_) => {
                self.give_up(id, DenyReason::RoundsExhausted);
                return;
            }
        };
        self.round = ballot.round();
        self.stats.attempts += 1;
        slot.attempt = Some(Attempt {
            ballot,
            phase_sent: now,
            deadline: slot.phase_deadline(now, timeout, self.config.round_timeout),
            phase: Phase::Prepare {
                tally: Tally::default(),
                census: Census::default(),
            },
            last_reject: None,
        });
        let message = Message::Prepare {
            resource: slot.resource.clone(),
            ballot,
            limit: slot.permits,
        };
        self.by_ballot.insert(ballot, id);
        self.broadcast(&message);
    }

    /// Whether `id` is a fresh acquisition and another request of this
    /// proposer for the same resource has an attempt under way. Such an
    /// acquisition waits: a renewal must not be preempted by its own
    /// node's next request (and a renewal itself never waits).
    fn own_attempt_under_way(&self, id: LeaseId) -> bool {
        let Some(slot) = self.leases.get(&id).filter(|s| s.held.is_none()) else {
            return false;
        };
        self.leases
            .iter()
            .any(|(other, s)| *other != id && s.resource == slot.resource && s.attempt.is_some())
    }

    /// Ends the current attempt of `id` and schedules a retry or gives up.
    fn fail_attempt(&mut self, now: Millis, id: LeaseId, reason: DenyReason) {
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        let Some(attempt) = slot.attempt.take() else {
            return;
        };
        self.by_ballot.remove(&attempt.ballot);
        // A fresh grant that may have been accepted: clean it up. (Never for
        // a renewal: its token is the one still in use.)
        let cleanup = match attempt.phase {
            Phase::Propose { token, .. } if slot.held.is_none() => Some(token),
            _ => None,
        };
        let reason = match (reason, attempt.last_reject) {
            (DenyReason::NoQuorum, Some(r)) => refused(r),
            (reason, _) => reason,
        };
        if let Some(token) = cleanup {
            self.send_release(id, token);
        }
        self.retry_or_give_up(now, id, reason);
    }

    /// Schedules the next attempt of `id` after a backoff, or gives up if
    /// that would be too late (after `wait`, or after the validity of a
    /// lease being renewed).
    fn retry_or_give_up(&mut self, now: Millis, id: LeaseId, reason: DenyReason) {
        let next = now.saturating_add(self.backoff());
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        if next < slot.deadline() {
            slot.retry_at = Some(next);
        } else {
            self.give_up(id, reason);
        }
    }

    fn send_release(&mut self, id: LeaseId, token: FencingToken) {
        let Some(slot) = self.leases.get(&id) else {
            return;
        };
        let message = Message::Release {
            resource: slot.resource.clone(),
            holder: self.holder(id),
            token,
        };
        self.broadcast(&message);
    }

    /// Stops trying for `id`: a held lease keeps its validity (renewal
    /// failed), an unheld request is denied and forgotten.
    fn give_up(&mut self, id: LeaseId, reason: DenyReason) {
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        slot.retry_at = None;
        if let Some(attempt) = slot.attempt.take() {
            self.by_ballot.remove(&attempt.ballot);
        }
        if let Some(held) = slot.held {
            self.events.push_back(Event::RenewFailed {
                lease: id,
                resource: slot.resource.clone(),
                reason,
                valid_until: held.valid_until,
            });
        } else if let Some(slot) = self.leases.remove(&id) {
            tracing::debug!(proposer = ?self.config.id, lease = ?id, ?reason, "denied");
            self.events.push_back(Event::Denied {
                lease: id,
                resource: slot.resource,
                reason,
            });
        }
    }

    /// The learned round timeout.
    fn round_timeout(&self) -> Millis {
        self.pace.round_timeout(self.config.round_timeout)
    }

    /// A random wait between one and two times the learned retry backoff.
    fn backoff(&mut self) -> Millis {
        let base = self.pace.retry_backoff(self.config.retry_backoff).0.max(1);
        Millis(base.saturating_add(self.rng.random_range(0..base)))
    }

    fn on_message(
        &mut self,
        now: Millis,
        from: NodeId,
        message: Message,
    ) -> Result<(), LeaseError> {
        if !self.config.acceptors.contains(from) {
            return Err(LeaseError::NotAMember(from));
        }
        message.validate()?;
        let (resource, ballot) = match &message {
            Message::Promise {
                resource, ballot, ..
            }
            | Message::Accepted { resource, ballot }
            | Message::Reject {
                resource, ballot, ..
            } => (resource, *ballot),
            other => return Err(LeaseError::UnexpectedMessage { kind: other.kind() }),
        };
        if let Message::Reject { promised, .. } = &message {
            // Learn from every rejection, even a stale one.
            self.round = self.round.max(promised.round());
        }
        let Some(&id) = self.by_ballot.get(&ballot) else {
            // An answer to an attempt that is over: perhaps one abandoned
            // because the acceptors are slower than we thought.
            self.pace.late_answer(ballot, now);
            return Ok(());
        };
        let Some(slot) = self.leases.get(&id) else {
            return Ok(());
        };
        if &slot.resource != resource {
            return Err(LeaseError::Malformed(
                "reply names another resource than its ballot",
            ));
        }
        match message {
            Message::Promise { holders, .. } => self.on_promise(now, id, from, &holders),
            Message::Accepted { .. } => self.on_accepted(now, id, from),
            Message::Reject {
                promised, reason, ..
            } => self.on_reject(now, id, from, ballot, promised, reason),
            _ => {}
        }
        Ok(())
    }

    fn on_promise(&mut self, now: Millis, id: LeaseId, from: NodeId, holders: &[HolderInfo]) {
        let me = self.holder(id);
        let quorum = &self.config.acceptors;
        let (timeout, base) = (self.round_timeout(), self.config.round_timeout);
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        let deadline = slot.phase_deadline(now, timeout, base);
        let Some(attempt) = slot.attempt.as_mut() else {
            return;
        };
        let Phase::Prepare { tally, census } = &mut attempt.phase else {
            return; // late promise; already proposing
        };
        if tally.yes(from) {
            census.add(holders, me);
        }
        if !tally.has_majority(quorum) {
            return;
        }
        self.pace.answered(now.saturating_sub(attempt.phase_sent));
        if !census.admits(slot.permits) {
            self.fail_attempt(now, id, DenyReason::Busy);
            return;
        }
        let ballot = attempt.ballot;
        let token = slot.held.map_or(ballot.token(), |h| h.token);
        attempt.phase = Phase::Propose {
            tally: Tally::default(),
            token,
        };
        attempt.phase_sent = now;
        attempt.deadline = deadline;
        let message = Message::Propose {
            resource: slot.resource.clone(),
            ballot,
            limit: slot.permits,
            holder: me,
            token,
            ttl: slot.ttl,
        };
        self.broadcast(&message);
    }

    fn on_accepted(&mut self, now: Millis, id: LeaseId, from: NodeId) {
        let quorum = &self.config.acceptors;
        let drift = self.config.drift;
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        let Some(attempt) = slot.attempt.as_mut() else {
            return;
        };
        let sent = attempt.phase_sent;
        let Phase::Propose { tally, token } = &mut attempt.phase else {
            return; // cannot happen for an honest acceptor; ignore
        };
        tally.yes(from);
        if !tally.has_majority(quorum) {
            return;
        }
        let valid_until = sent.saturating_add(drift.local_validity(slot.ttl));
        let took = now.saturating_sub(sent);
        let token = *token;
        let ballot = attempt.ballot;
        slot.attempt = None;
        self.pace.answered(took);
        self.by_ballot.remove(&ballot);
        match &mut slot.held {
            Some(held) => {
                // Still valid: timers fired before this input.
                held.valid_until = held.valid_until.max(valid_until);
                let event = Event::Renewed {
                    lease: id,
                    resource: slot.resource.clone(),
                    token,
                    valid_until: held.valid_until,
                };
                self.events.push_back(event);
            }
            None if now < valid_until => {
                slot.held = Some(Held { token, valid_until });
                tracing::debug!(proposer = ?self.config.id, lease = ?id, %token, %valid_until, "acquired");
                let event = Event::Acquired {
                    lease: id,
                    resource: slot.resource.clone(),
                    token,
                    valid_until,
                };
                self.events.push_back(event);
            }
            None => {
                // Granted, but the answers took longer than the validity.
                self.send_release(id, token);
                self.retry_or_give_up(now, id, DenyReason::NoQuorum);
            }
        }
    }

    fn on_reject(
        &mut self,
        now: Millis,
        id: LeaseId,
        from: NodeId,
        ballot: Ballot,
        promised: Ballot,
        reason: RejectReason,
    ) {
        if reason == RejectReason::Outdated && promised == ballot {
            return; // our own ballot, promised before: a duplicated request
        }
        let quorum = &self.config.acceptors;
        let Some(slot) = self.leases.get_mut(&id) else {
            return;
        };
        let Some(attempt) = slot.attempt.as_mut() else {
            return;
        };
        attempt.last_reject = Some(reason);
        let tally = match &mut attempt.phase {
            Phase::Prepare { tally, .. } | Phase::Propose { tally, .. } => tally,
        };
        tally.no(from);
        if tally.is_lost(quorum) {
            self.fail_attempt(now, id, refused(reason));
        }
    }

    fn broadcast(&mut self, message: &Message) {
        for &to in self.config.acceptors.members() {
            if self.outbox.len() >= self.config.max_outbox {
                self.outbox.pop_front();
                self.stats.dropped_transmits += 1;
            }
            self.outbox.push_back(Transmit {
                to,
                message: message.clone(),
            });
        }
    }
}
