//! The proposer role: one node's requests for leases, as a sans-IO state
//! machine ([`Proposer`]).
//!
//! This module owns a node's lease requests from `Acquire` to their end:
//! ballots, the two phases of each attempt, retries with randomized backoff
//! (and at once for a ballot that merely lagged), renewals, releases and
//! their confirmation, and the local validity of every held lease. It must
//! never read a clock or a global RNG (time is the `now` of each input,
//! randomness a ChaCha RNG seeded at construction), never do I/O, and never
//! report a lease valid past `sent + local_validity(ttl)` (see
//! [`crate::time`]). Every protocol decision about a node's own requests is
//! made here, so that a driver (concord-net, netsim) only carries messages,
//! timers and events, and what production decides is what the simulator
//! checks.
//!
//! The machine is split along its seams:
//!
//! - this file: configuration, inputs, events, and the machine's face
//!   (`handle_input`, the `poll_*` methods, routing of replies);
//! - `attempt`: acquisitions and the two phases of every attempt, retries,
//!   giving up;
//! - `renewal`: renewing a held lease, and losing it when its validity ends;
//! - `release`: giving a request up and waiting for the acceptors to
//!   confirm it;
//! - `pace` (a crate-private sibling): the learned round timeout and
//!   backoff.
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
//! then reported [`Event::Denied`]: an `Acquire` ends in exactly one
//! [`Event::Acquired`] or [`Event::Denied`] (or [`Event::Released`] if the
//! application gives it up first).
//!
//! A proposer whose ballots lag behind the acceptors' promises (it was
//! quiet while others worked, or it restarted) has its attempt refused as
//! [`RejectReason::Outdated`], and learns from the refusals the round to
//! use. If no backoff fits in what is left of the wait, such an
//! acquisition is not denied (nobody may hold the resource) but tried again
//! at once with the learned round, at most [`OUTDATED_RETRIES`] times.
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
//! A release ends the lease's validity at once and sends `Release` to every
//! acceptor, each of which answers `Released` once it dropped the grant.
//! The request is over, and [`Event::Released`] reported, when every
//! acceptor confirmed, or when the learned round timeout passed first (an
//! acceptor that did not confirm drops the grant when it expires): so an
//! acquisition right after a release does not, as a rule, find the old
//! grant still listed. A loss, and a failed fresh attempt that
//! got as far as `Propose` (in case a majority accepted but the answers
//! were lost), send a `Release` too, and wait for nothing.

mod attempt;
mod release;
mod renewal;

use std::collections::{BTreeMap, VecDeque};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::ballot::{Ballot, FencingToken};
use crate::error::LeaseError;
use crate::ids::{Holder, LeaseId, NodeId};
use crate::messages::{Handoff, Message, RejectReason, Transmit};
use crate::pace::Pace;
use crate::quorum::Quorum;
use crate::resource::Resource;
use crate::semaphore::Permits;
use crate::time::{DriftBound, Millis};

use attempt::Slot;
use release::Releasing;

pub use attempt::OUTDATED_RETRIES;

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
    /// A release waits as long (as learned) for every acceptor to confirm
    /// it.
    pub round_timeout: Millis,
    /// Base of the randomized backoff between attempts: a retry waits
    /// between one and two times this, or the typical time the acceptors
    /// take to answer if that is longer.
    pub retry_backoff: Millis,
    /// Bound on leases tracked at once (held, being acquired, or being
    /// released).
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
    /// `wait` (zero: one attempt, or a few at once if the first ones only
    /// taught this proposer the round to use).
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
    /// Give up a lease, held or still being acquired; it ends with
    /// [`Event::Released`].
    Release {
        /// The lease.
        lease: LeaseId,
        /// Context for the next holder (at most
        /// [`crate::MAX_HANDOFF_BYTES`]; see [`crate::Handoff`]).
        handoff: Option<Vec<u8>>,
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
        /// What the previous holder left on release, the latest among the
        /// promises of this grant (see [`crate::Handoff`]).
        handoff: Option<Handoff>,
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
    /// A release the application asked for is done; the request is over.
    /// (The lease stopped being valid at the `Release` input already.)
    Released {
        /// The request.
        lease: LeaseId,
        /// The resource.
        resource: Resource,
        /// The token, if the lease was held.
        token: Option<FencingToken>,
        /// Whether every acceptor confirmed that it holds no grant of the
        /// request (trivially so if none was ever proposed). If not, the
        /// release waited one (learned) round timeout for the silent ones,
        /// which drop the grant when it expires.
        confirmed_by_all: bool,
    },
}

/// Counters for observability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProposerStats {
    /// Attempts started (prepare phases).
    pub attempts: u64,
    /// Acquisitions asked again at once after their ballots lagged (see
    /// [`OUTDATED_RETRIES`]).
    pub outdated_retries: u64,
    /// Releases that ended at their deadline, some acceptor not having
    /// confirmed them.
    pub unconfirmed_releases: u64,
    /// Transmits dropped because the outbox was at
    /// [`ProposerConfig::max_outbox`].
    pub dropped_transmits: u64,
    /// Leases granted ([`Event::Acquired`] handed out).
    pub grants: u64,
    /// Acquisitions that gave up ([`Event::Denied`] handed out).
    pub denials: u64,
    /// Renewals that succeeded ([`Event::Renewed`] handed out).
    pub renewals: u64,
    /// Renewals that gave up ([`Event::RenewFailed`] handed out).
    pub renewal_failures: u64,
    /// Leases whose validity ended unrenewed ([`Event::Lost`] handed out).
    pub losses: u64,
}

/// A proposer (lease client) as a sans-IO state machine.
#[derive(Debug)]
pub struct Proposer {
    config: ProposerConfig,
    rng: ChaCha8Rng,
    round: u64,
    /// Requests being acquired, held or renewed.
    leases: BTreeMap<LeaseId, Slot>,
    /// Released requests waiting for the acceptors' confirmations.
    releases: BTreeMap<LeaseId, Releasing>,
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
            releases: BTreeMap::new(),
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

    /// Number of tracked leases (releases still waiting for confirmations
    /// included).
    pub fn lease_count(&self) -> usize {
        self.leases.len() + self.releases.len()
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
    /// [`LeaseError::LeaseInUse`], [`LeaseError::UnknownLease`] (also for
    /// a lease being released), ...) and bad peer messages
    /// ([`LeaseError::NotAMember`], [`LeaseError::UnexpectedMessage`],
    /// [`LeaseError::Malformed`]). The refused input changes nothing
    /// (timers may still have fired).
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
            Input::Release { lease, handoff } => self.release(now, lease, handoff),
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
    /// most one event per application input (`Acquire`, `Renew`) plus one
    /// final `Lost`, `Denied` or `Released`, so it grows with the
    /// application's own inputs, never with peer input.
    /// Each event is counted in [`ProposerStats`] as it is handed out.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        let counter = match &event {
            Event::Acquired { .. } => &mut self.stats.grants,
            Event::Denied { .. } => &mut self.stats.denials,
            Event::Renewed { .. } => &mut self.stats.renewals,
            Event::RenewFailed { .. } => &mut self.stats.renewal_failures,
            Event::Lost { .. } => &mut self.stats.losses,
            Event::Released { .. } => return Some(event),
        };
        *counter += 1;
        Some(event)
    }

    /// When to feed [`Input::Timeout`] next, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let requests = self.leases.values().flat_map(Slot::timers).flatten();
        let releases = self.releases.values().map(Releasing::deadline);
        requests.chain(releases).min()
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
        self.end_overdue_releases(now);
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
            Message::Released {
                resource,
                holder,
                token,
            } => return self.on_released(from, resource, *holder, *token),
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
            // A late answer to the same ballot used for another resource
            // before this node restarted (a restarted proposer climbs from
            // round 0 again): not about this attempt.
            return Ok(());
        }
        match message {
            Message::Promise {
                holders, handoff, ..
            } => self.on_promise(now, id, from, &holders, handoff),
            Message::Accepted { .. } => self.on_accepted(now, id, from),
            Message::Reject {
                promised, reason, ..
            } => self.on_reject(now, id, from, ballot, promised, reason),
            _ => {}
        }
        Ok(())
    }

    /// Sends `Release` of `token`, held by `lease`, to every acceptor.
    fn send_release(
        &mut self,
        lease: LeaseId,
        resource: Resource,
        token: FencingToken,
        handoff: Option<Vec<u8>>,
    ) {
        let message = Message::Release {
            resource,
            holder: self.holder(lease),
            token,
            handoff,
        };
        self.broadcast(&message);
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
