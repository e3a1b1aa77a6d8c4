//! The sync engine: a sans-IO state machine that keeps one space's replica
//! converged with its peers (DESIGN §3 and §10).
//!
//! * **Fast path.** After local commits the driver calls
//!   [`Input::LocalCommit`]; the engine broadcasts the new changes as
//!   [`Frame::Changes`] (gossipsub in production, a simulated mesh in netsim).
//! * **Guaranteed path.** On peer up and on a jittered heartbeat the engine
//!   sends a [`Frame::Digest`]: its vector clock and a short hash of its heads
//!   (under a [`SyncHub`](crate::SyncHub), which runs one heartbeat for all
//!   the spaces of a node, neither: the hub's summaries find the spaces that
//!   differ and hand them [`Input::Differs`], which sends the digest).
//!   The receiver answers with exactly the changes the clock lacks
//!   (`changes_since`, bounded per answer) and, if it lacks changes itself,
//!   with its own digest so the other side pushes them. Equal clocks with
//!   different heads, or a truncated clock, fall back to automerge's sync
//!   protocol ([`Frame::SyncMessage`]).
//! * **Epochs.** Every frame names its epoch (see `concord_state::epoch`).
//!   A digest from a peer in another epoch is answered with a
//!   [`Frame::Epoch`] (this side's cut) instead of a delta; a peer's cut
//!   that this replica's lacks is adopted (moving to the union of the two),
//!   with the peer's first document fetched in [`Frame::Snapshot`] pieces
//!   when this replica lacks changes of the cut. Changes of another epoch
//!   are dropped (their writer carries them over once it moves). A replica
//!   past its epoch thresholds cuts after a random delay of up to
//!   [`SyncConfig::cut_jitter_ms`], so that one replica's cut usually
//!   reaches the others before they make their own. See the `epoch`
//!   submodule.
//! * **Ephemeral values** (`engine/ephemeral.rs`). Local ephemeral writes
//!   are broadcast as [`Frame::Ephemeral`] on [`Input::LocalCommit`] (and
//!   on ticks); a peer that came up gets every live value once it is heard
//!   from (its session for the space runs then); received values
//!   go through [`Replica::apply_ephemeral`]. While the replica holds some,
//!   [`SyncEngine::poll_timeout`] includes the next expiry; otherwise they
//!   add no timer.
//! * **Bad input.** A frame that does not decode, names another space, or
//!   carries an invalid change or ephemeral value yields [`SyncEvent::ProtocolError`] and a
//!   [`SyncEvent::Disconnect`] for that peer; the replica is untouched.
//! * **Bounds.** Outgoing transmits are capped at [`MAX_QUEUED_TRANSMITS`]
//!   (oldest digests are dropped first: they are re-sent on the next
//!   heartbeat), an answer carries at most [`SyncConfig::max_changes_per_reply`]
//!   changes (the rest follow on the next digest), and the number of peers
//!   is capped at [`SyncConfig::max_peers`].
//!
//! It must never do I/O, read a clock or use a global RNG.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;

use automerge::sync;
use concord_state::{
    ActorId, ApplyOutcome, Causality, EpochId, Millis, Replica, StateError, VectorClock,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{debug, trace, warn};

use crate::wire::{self, ByeReason, DecodeError, Frame};

mod ephemeral;
mod epoch;

pub use epoch::SNAPSHOT_STALL_MS;

/// Bound on transmits waiting for the driver to take them.
pub const MAX_QUEUED_TRANSMITS: usize = 4096;

/// Bound on events waiting for the driver to take them (oldest dropped).
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Mean interval between digests to each peer.
    pub heartbeat_ms: u64,
    /// Uniform jitter added to each heartbeat, so peers do not synchronise.
    pub jitter_ms: u64,
    /// Most changes sent in answer to one digest.
    pub max_changes_per_reply: usize,
    /// Most peers tracked at once; more are refused.
    pub max_peers: usize,
    /// Longest random wait between passing an epoch threshold and cutting.
    pub cut_jitter_ms: u64,
    /// Most spaces a [`SyncHub`](crate::SyncHub) holds at once (at most
    /// [`wire::MAX_SPACE_KEYS`]); more are refused.
    pub max_spaces: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            heartbeat_ms: 1_000,
            jitter_ms: 250,
            max_changes_per_reply: 4_096,
            max_peers: 1_024,
            cut_jitter_ms: 500,
            max_spaces: wire::MAX_SPACE_KEYS,
        }
    }
}

/// Something that happened to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<P> {
    /// A connection to a peer is up.
    PeerUp(P),
    /// A connection to a peer is gone.
    PeerDown(P),
    /// Bytes arrived from a peer (directly or relayed on the space's topic).
    Frame {
        /// The peer that sent (or relayed) them.
        from: P,
        /// The encoded frame.
        bytes: Vec<u8>,
    },
    /// The application committed local changes to the replica.
    LocalCommit,
    /// Time passed; run due timers.
    Tick,
    /// The peer's copy of the space may differ from this one (a
    /// [`SyncHub`](crate::SyncHub) summary said so): send it a digest that
    /// asks for its own, starting anti-entropy.
    Differs(P),
}

/// Where a transmit goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination<P> {
    /// One peer.
    Peer(P),
    /// Everyone on the space's topic (the fast path).
    Broadcast,
}

/// Bytes the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<P> {
    /// Recipient.
    pub to: Destination<P>,
    /// The encoded frame.
    pub bytes: Vec<u8>,
}

/// Why a peer's input was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes are not a valid frame.
    #[error("bad frame: {0}")]
    Decode(#[from] DecodeError),
    /// The frame names another space.
    #[error("frame for space {0:?} sent to another space's engine")]
    WrongSpace(String),
    /// The frame's content was refused by the replica.
    #[error("refused by replica: {0}")]
    Replica(#[from] StateError),
    /// The pieces of a snapshot do not fit together.
    #[error("bad snapshot: {0}")]
    Snapshot(&'static str),
    /// A node-level frame contradicts what the peer said before (see
    /// [`SyncHub`](crate::SyncHub)).
    #[error("bad node-level frame: {0}")]
    Node(&'static str),
}

/// What the engine tells the application.
#[derive(Debug)]
pub enum SyncEvent<P> {
    /// The peer lacks changes we hold; we sent them.
    PeerBehind(P),
    /// The peer holds changes we lack; we asked for them.
    PeerAhead(P),
    /// Our clock and heads equal the peer's.
    InSync(P),
    /// Changes from the peer were applied.
    Applied {
        /// The sender.
        from: P,
        /// What happened to them.
        outcome: ApplyOutcome,
    },
    /// The peer sent something invalid.
    ProtocolError {
        /// The peer.
        peer: P,
        /// What was wrong.
        error: ProtocolError,
    },
    /// The driver must close the connection to this peer.
    Disconnect(P),
    /// The replica moved to a new epoch (its own cut, or a peer's).
    EpochSwitched {
        /// The new epoch.
        to: EpochId,
        /// Changes the new epoch's cut lacked, carried over.
        carried: usize,
    },
}

struct PeerState {
    sync: sync::State,
    /// The next heartbeat digest; never while a hub runs the heartbeat.
    next_digest: Option<Millis>,
    /// Whether the peer was handed the live ephemeral values of this session.
    ephemeral_handed: bool,
}

/// The sync engine of one space on one node.
pub struct SyncEngine<P> {
    config: SyncConfig,
    replica: Replica,
    peers: BTreeMap<P, PeerState>,
    rng: ChaCha8Rng,
    transmits: VecDeque<Transmit<P>>,
    events: VecDeque<SyncEvent<P>>,
    broadcast_seq: u64,
    now: Millis,
    epochs: epoch::Epochs<P>,
    /// Whether this engine sends its own heartbeat digests (off under a
    /// [`SyncHub`](crate::SyncHub), which runs one heartbeat for all spaces).
    heartbeat: bool,
}

/// A short hash of a set of heads (FNV-1a over the sorted hashes).
pub fn heads_hash(heads: &[automerge::ChangeHash]) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for head in heads {
        for b in head.0 {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.to_le_bytes()
}

fn clock_entries(clock: &VectorClock) -> impl Iterator<Item = (Vec<u8>, u64)> + '_ {
    clock.iter().map(|(a, s)| (a.to_bytes().to_vec(), s))
}

impl<P: Clone + Ord + Debug> SyncEngine<P> {
    /// An engine driving `replica`, with randomness from `seed`.
    pub fn new(config: SyncConfig, replica: Replica, seed: u64) -> Self {
        let broadcast_seq = replica.vector_clock().get(replica.actor());
        SyncEngine {
            config,
            replica,
            peers: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            broadcast_seq,
            now: Millis(0),
            epochs: epoch::Epochs::default(),
            heartbeat: true,
        }
    }

    /// The same engine run by a [`SyncHub`](crate::SyncHub): no heartbeat of
    /// its own and no digest when a peer comes up (the hub's summaries find
    /// the spaces that differ and hand them [`Input::Differs`]); a peer that
    /// comes up is known to hold the space, so it gets the live ephemeral
    /// values at once.
    pub(crate) fn without_heartbeat(mut self) -> Self {
        self.heartbeat = false;
        self
    }

    /// The replica (read access).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The replica, for local writes; follow them with [`Input::LocalCommit`].
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    /// Consumes the engine, returning its replica.
    pub fn into_replica(self) -> Replica {
        self.replica
    }

    /// Peers currently tracked.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers.keys()
    }

    /// Transmits waiting for the driver.
    pub fn queued_transmits(&self) -> usize {
        self.transmits.len()
    }

    /// Feeds one input at time `now`.
    pub fn handle_input(&mut self, now: Millis, input: Input<P>) {
        self.now = self.now.max(now);
        self.replica.tick(now);
        match input {
            Input::PeerUp(peer) => self.peer_up(peer),
            Input::PeerDown(peer) => {
                self.peers.remove(&peer);
                self.epochs.forget(&peer);
            }
            Input::Frame { from, bytes } => self.on_bytes(from, &bytes),
            Input::LocalCommit => {
                self.broadcast_local();
                self.broadcast_ephemeral();
            }
            Input::Tick => self.on_tick(),
            Input::Differs(peer) => {
                if !self.peers.contains_key(&peer) {
                    self.peer_up(peer.clone());
                }
                self.send_digest(&peer, true);
            }
        }
        self.consider_cut();
    }

    /// Next bytes to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// Next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<SyncEvent<P>> {
        self.events.pop_front()
    }

    /// When the engine next wants an [`Input::Tick`].
    pub fn poll_timeout(&self) -> Option<Millis> {
        let digests = self.peers.values().filter_map(|p| p.next_digest);
        let expiry = self.ephemeral_timeout();
        digests.chain(self.epochs.cut_at).chain(expiry).min()
    }

    fn peer_up(&mut self, peer: P) {
        if self.peers.contains_key(&peer) {
            return;
        }
        if self.peers.len() >= self.config.max_peers {
            warn!(?peer, "peer limit reached; refusing");
            self.send_bye(&peer, ByeReason::Overloaded);
            self.push_event(SyncEvent::Disconnect(peer));
            return;
        }
        let next_digest = self.heartbeat.then(|| self.next_heartbeat());
        self.peers.insert(
            peer.clone(),
            PeerState {
                sync: sync::State::new(),
                next_digest,
                ephemeral_handed: false,
            },
        );
        if self.heartbeat {
            self.send_digest(&peer, true);
        } else {
            self.greet_ephemeral(&peer);
        }
    }

    fn next_heartbeat(&mut self) -> Millis {
        let jitter = if self.config.jitter_ms == 0 {
            0
        } else {
            self.rng.random_range(0..=self.config.jitter_ms)
        };
        self.now.plus(self.config.heartbeat_ms + jitter)
    }

    fn on_tick(&mut self) {
        let due: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, s)| s.next_digest.is_some_and(|at| at <= self.now))
            .map(|(p, _)| p.clone())
            .collect();
        for peer in due {
            let next = self.next_heartbeat();
            if let Some(state) = self.peers.get_mut(&peer) {
                state.next_digest = Some(next);
            }
            self.send_digest(&peer, true);
        }
        // Local changes not yet broadcast (e.g. written without LocalCommit).
        self.broadcast_local();
        self.broadcast_ephemeral();
    }

    fn broadcast_local(&mut self) {
        let own = self.replica.vector_clock().get(self.replica.actor());
        if own <= self.broadcast_seq {
            return;
        }
        let changes = self.replica.own_changes_after(self.broadcast_seq);
        self.broadcast_seq = own;
        match wire::chunk_changes(self.replica.space(), self.epoch_bytes(), changes) {
            Ok(frames) => {
                for frame in frames {
                    self.send(Destination::Broadcast, &frame);
                }
            }
            // A change too large for a frame still reaches peers through the
            // automerge sync protocol fallback.
            Err(e) => warn!(error = %e, "local change does not fit a frame"),
        }
    }

    fn on_bytes(&mut self, from: P, bytes: &[u8]) {
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => return self.refuse(from, e.into()),
        };
        if frame.space() != self.replica.space() {
            return self.refuse(from, ProtocolError::WrongSpace(frame.space().to_owned()));
        }
        let mine = self.epoch_bytes();
        let sender = from.clone();
        match frame {
            Frame::Changes { epoch, .. }
            | Frame::SyncMessage { epoch, .. }
            | Frame::Digest { epoch, .. }
                if epoch != mine =>
            {
                self.other_epoch(from);
            }
            Frame::Changes { changes, .. } => self.on_changes(from, changes),
            Frame::Digest {
                clock,
                heads_hash: theirs,
                truncated,
                reply,
                ..
            } => self.on_digest(from, clock, theirs, truncated, reply),
            Frame::SyncMessage { message, .. } => self.on_sync_message(from, &message),
            Frame::Bye { reason, .. } => {
                debug!(?from, ?reason, "peer said bye");
                self.peers.remove(&from);
                self.epochs.forget(&from);
            }
            Frame::Epoch { epoch, cut, .. } => self.on_epoch(from, epoch, cut),
            Frame::SnapshotRequest { epoch, .. } => self.on_snapshot_request(from, epoch),
            Frame::Snapshot {
                epoch,
                total,
                offset,
                chunk,
                ..
            } => self.on_snapshot(from, epoch, total, offset, chunk),
            Frame::Ephemeral { entries, .. } => self.on_ephemeral(from, entries),
        }
        self.greet_ephemeral(&sender);
    }

    fn on_changes(&mut self, from: P, changes: Vec<Vec<u8>>) {
        match self.replica.apply_changes(self.now, changes) {
            Ok(outcome) => {
                trace!(?from, ?outcome, "changes applied");
                if outcome.pending > 0 || outcome.overflowed() {
                    // Missing dependencies: pull them with anti-entropy.
                    self.send_digest(&from, true);
                }
                self.push_event(SyncEvent::Applied { from, outcome });
            }
            Err(e) => self.refuse(from, e.into()),
        }
    }

    fn on_digest(
        &mut self,
        from: P,
        clock: Vec<(Vec<u8>, u64)>,
        theirs: [u8; 8],
        truncated: bool,
        reply: bool,
    ) {
        if !self.peers.contains_key(&from) {
            self.peer_up(from.clone());
        }
        let their_clock: VectorClock = clock
            .into_iter()
            .map(|(a, s)| (ActorId::from(a.as_slice()), s))
            .collect();
        let mine = heads_hash(&self.replica.heads());
        if truncated {
            return self.start_fallback(&from);
        }
        match self.replica.vector_clock().compare(&their_clock) {
            Causality::Equal if mine == theirs => self.push_event(SyncEvent::InSync(from)),
            Causality::Equal => self.start_fallback(&from),
            Causality::After => {
                self.send_delta(&from, &their_clock);
                self.push_event(SyncEvent::PeerBehind(from));
            }
            Causality::Before => {
                if reply {
                    self.send_digest(&from, false);
                }
                self.push_event(SyncEvent::PeerAhead(from));
            }
            Causality::Concurrent => {
                self.send_delta(&from, &their_clock);
                self.send_digest(&from, false);
                self.push_event(SyncEvent::PeerAhead(from));
            }
        }
    }

    fn send_delta(&mut self, to: &P, their_clock: &VectorClock) {
        let (changes, more) = self
            .replica
            .changes_since_bounded(their_clock, self.config.max_changes_per_reply);
        if more {
            debug!(?to, "delta capped; the rest follows on the next digest");
        }
        match wire::chunk_changes(self.replica.space(), self.epoch_bytes(), changes) {
            Ok(frames) => {
                for frame in frames {
                    self.send(Destination::Peer(to.clone()), &frame);
                }
            }
            Err(e) => {
                warn!(error = %e, "delta does not fit frames; using the sync protocol");
                self.start_fallback(to);
            }
        }
    }

    fn start_fallback(&mut self, peer: &P) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if let Some(message) = self.replica.generate_sync_message(&mut state.sync) {
            let frame = Frame::SyncMessage {
                space: self.replica.space().to_owned(),
                epoch: self.replica.epoch().id.0.0,
                message,
            };
            self.send(Destination::Peer(peer.clone()), &frame);
        }
    }

    fn on_sync_message(&mut self, from: P, message: &[u8]) {
        if !self.peers.contains_key(&from) {
            self.peer_up(from.clone());
        }
        let Some(state) = self.peers.get_mut(&from) else {
            return;
        };
        if let Err(e) = self
            .replica
            .receive_sync_message(self.now, &mut state.sync, message)
        {
            return self.refuse(from, e.into());
        }
        self.start_fallback(&from);
    }

    fn send_digest(&mut self, to: &P, reply: bool) {
        let heads = heads_hash(&self.replica.heads());
        let frame = Frame::digest(
            self.replica.space(),
            self.epoch_bytes(),
            clock_entries(self.replica.vector_clock()),
            heads,
            reply,
        );
        match frame {
            Ok(frame) => self.send(Destination::Peer(to.clone()), &frame),
            Err(e) => warn!(error = %e, "cannot encode digest"),
        }
    }

    fn send_bye(&mut self, to: &P, reason: ByeReason) {
        let frame = Frame::Bye {
            space: self.replica.space().to_owned(),
            reason,
        };
        self.send(Destination::Peer(to.clone()), &frame);
    }

    fn send(&mut self, to: Destination<P>, frame: &Frame) {
        let bytes = match frame.encode() {
            Ok(b) => b,
            Err(e) => return warn!(error = %e, "cannot encode frame"),
        };
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            // Drop the oldest digest if any: it is re-sent on the next heartbeat.
            let oldest_digest = self
                .transmits
                .iter()
                .position(|t| t.bytes.get(1) == Some(&wire::FrameKind::Digest.code()));
            match oldest_digest {
                Some(i) => {
                    self.transmits.remove(i);
                }
                None => {
                    warn!("transmit queue full; dropping frame (anti-entropy repairs it)");
                    return;
                }
            }
        }
        self.transmits.push_back(Transmit { to, bytes });
    }

    fn refuse(&mut self, peer: P, error: ProtocolError) {
        warn!(?peer, %error, "refusing peer input");
        self.send_bye(&peer, ByeReason::ProtocolViolation);
        self.peers.remove(&peer);
        self.push_event(SyncEvent::ProtocolError {
            peer: peer.clone(),
            error,
        });
        self.push_event(SyncEvent::Disconnect(peer));
    }

    fn push_event(&mut self, event: SyncEvent<P>) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}
