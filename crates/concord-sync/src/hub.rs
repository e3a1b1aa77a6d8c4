//! The sync hub: a sans-IO state machine that owns the [`SyncEngine`] of
//! every space a node holds and runs one heartbeat per peer for all the
//! spaces the two share (DESIGN §5 "Many spaces" and §10), so that idle
//! traffic and timers do not grow with the number of spaces.
//!
//! * **Which spaces are shared.** When a peer comes up the hub sends it a
//!   [`NodeFrame::Spaces`]: the keys ([`space_key`]) of the spaces it holds
//!   and lets that peer see (allowlists), with a version. A list that
//!   changes (a space opened or closed) goes out again
//!   [`ANNOUNCE_DELAY_MS`] later, once for a whole burst. A space is shared
//!   with a peer when both lists hold it; its engine gets
//!   [`Input::PeerUp`] and [`Input::PeerDown`] as that starts and stops.
//! * **One summary per heartbeat.** Every `heartbeat_ms` (plus jitter) per
//!   peer the hub sends a [`NodeFrame::Summary`]: the versions of the two
//!   lists its view is built on, how many spaces it shares and the XOR of
//!   their leaves (module `tree`), about 30 bytes whatever the number of
//!   spaces. A peer that receives one built on the same lists postpones its
//!   own, so in-sync peers exchange about one small frame per heartbeat in
//!   all. A summary built on a list the receiver lacks is answered with
//!   that list (at most once per heartbeat) or with a summary saying which
//!   list is held; it is never compared.
//! * **Finding what differs.** A receiver whose summary differs answers
//!   with its buckets (hex-digit prefixes of keys, [`wire::TREE_FANOUT`]
//!   children each) under the root; each side answers the children that
//!   differ with their own children, a bucket of at most [`LEAF_SPACES`]
//!   spaces with its leaves, and a bucket of one space by handing that
//!   space to its engine ([`Input::Differs`]), which runs the digest
//!   exchange of DESIGN §3. That takes O(log spaces) round trips and
//!   O(differences × log spaces) bytes. A lost frame is repaired by the
//!   next summary round.
//! * **Engines** keep the fast path and answer digests, epochs and
//!   ephemeral values as before, with no heartbeat of their own. A frame of
//!   a space goes to its engine by name ([`wire::peek`]); a broadcast of a
//!   space under an allowlist becomes one transmit per peer sharing it.
//!   Engine timers (epoch cuts, ephemeral expiry) sit in one ordered set:
//!   an idle space holds no timer, and [`SyncHub::poll_timeout`] costs
//!   O(peers).
//! * **Bad input.** A frame that does not decode, or a summary counting
//!   more spaces than the peer listed, gives [`SyncEvent::ProtocolError`]
//!   and [`SyncEvent::Disconnect`] (with no space) and the hub forgets the
//!   peer; no replica is touched.
//! * **Bounds.** At most [`SyncConfig::max_spaces`] spaces and
//!   [`SyncConfig::max_peers`] peers (more are refused), a peer's list of at
//!   most [`wire::MAX_SPACE_KEYS`] keys (the codec's limit), at most
//!   [`MAX_QUEUED_TRANSMITS`] transmits and [`MAX_QUEUED_EVENTS`] events
//!   waiting; frames for a space not open here, from a peer outside its
//!   allowlist, or node-level frames from a peer not up are dropped. Every
//!   drop is counted in [`HubStats`].
//!
//! It must never do I/O, read a clock or use a global RNG, and it makes
//! every protocol decision: concord-net and netsim drive it alike.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;

use concord_state::{Millis, Replica};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{debug, warn};

use crate::engine::{Destination, Input, ProtocolError, SyncConfig, SyncEngine, SyncEvent};
use crate::wire::{self, NodeFrame};

mod peer;
#[cfg(test)]
mod tests;
mod tree;

use peer::Peer;
pub use tree::{SpaceKey, space_key};

/// How long a changed list of spaces waits before it goes out, so that a
/// burst of spaces opening sends one list.
pub const ANNOUNCE_DELAY_MS: u64 = 10;

/// A differing bucket of at most this many shared spaces is answered with
/// their leaves instead of its children.
pub const LEAF_SPACES: usize = 8;

/// Bound on transmits waiting for the driver (past it new ones are dropped
/// and counted; anti-entropy repairs what they carried).
pub const MAX_QUEUED_TRANSMITS: usize = 16_384;

/// Bound on events waiting for the driver (oldest dropped and counted).
pub const MAX_QUEUED_EVENTS: usize = 16_384;

/// Something that happened to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubInput<P> {
    /// A connection to a peer is up.
    PeerUp(P),
    /// A connection to a peer is gone.
    PeerDown(P),
    /// Bytes arrived from a peer: a node-level frame or a frame of a space
    /// (directly or relayed on the space's topic).
    Frame {
        /// The peer that sent (or relayed) them.
        from: P,
        /// The encoded frame.
        bytes: Vec<u8>,
    },
    /// The application committed local changes to a space's replica.
    LocalCommit {
        /// The space.
        space: String,
    },
    /// Time passed; run due timers.
    Tick,
}

/// Bytes the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubTransmit<P> {
    /// The space the frame is about (a broadcast's topic); `None` for a
    /// node-level frame.
    pub space: Option<String>,
    /// Recipient.
    pub to: Destination<P>,
    /// The encoded frame.
    pub bytes: Vec<u8>,
}

/// Something the hub or one of its engines tells the application.
#[derive(Debug)]
pub struct HubEvent<P> {
    /// The space whose engine reported it; `None` for the hub itself (a
    /// refused node-level frame, or [`SyncEvent::InSync`]: every shared
    /// space in sync with the peer).
    pub space: Option<String>,
    /// What happened.
    pub event: SyncEvent<P>,
}

/// Why a space could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A space of that name is open already.
    #[error("space {0:?} is already open")]
    SpaceExists(String),
    /// The hub holds [`SyncConfig::max_spaces`] spaces already.
    #[error("the hub holds its maximum of {0} spaces")]
    TooManySpaces(usize),
    /// Another open space has the same key (a 64-bit hash collision).
    #[error("space {space:?} has the same key as open space {with:?}")]
    KeyCollision {
        /// The space being opened.
        space: String,
        /// The open space with the same key.
        with: String,
    },
}

/// Counters of what the hub did and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Summaries sent.
    pub summaries_sent: u64,
    /// Summaries received that matched this node's view.
    pub summaries_matched: u64,
    /// Descents started (a received summary differed).
    pub descents: u64,
    /// Spaces handed to their engines because the summaries found them
    /// different ([`Input::Differs`]).
    pub probes: u64,
    /// Lists of spaces sent.
    pub lists_sent: u64,
    /// Frames dropped because they are for a space not open here.
    pub unknown_space: u64,
    /// Frames dropped because their sender is outside the space's allowlist.
    pub not_allowed: u64,
    /// Node-level frames dropped because their sender is not up.
    pub unknown_peer: u64,
    /// Peers refused because the hub had [`SyncConfig::max_peers`].
    pub refused_peers: u64,
    /// Transmits dropped because [`MAX_QUEUED_TRANSMITS`] were waiting.
    pub dropped_transmits: u64,
    /// Events dropped because [`MAX_QUEUED_EVENTS`] were waiting.
    pub dropped_events: u64,
}

/// One open space.
struct Space<P> {
    name: String,
    engine: SyncEngine<P>,
    /// The peers allowed in the space; `None`: everyone.
    access: Option<BTreeSet<P>>,
    /// Its current leaf (see the `tree` module).
    leaf: u128,
    /// Its engine's timer, as entered in `SyncHub::deadlines`.
    deadline: Option<Millis>,
}

impl<P: Ord> Space<P> {
    fn allows(&self, peer: &P) -> bool {
        self.access.as_ref().is_none_or(|a| a.contains(peer))
    }
}

/// The engines of every space of one node, and one heartbeat per peer.
pub struct SyncHub<P> {
    config: SyncConfig,
    seed: u64,
    rng: ChaCha8Rng,
    now: Millis,
    spaces: BTreeMap<SpaceKey, Space<P>>,
    names: BTreeMap<String, SpaceKey>,
    peers: BTreeMap<P, Peer>,
    /// Version of this node's list of spaces (moves on every open and close).
    version: u64,
    /// When the changed list goes out to the peers that lack it.
    announce_at: Option<Millis>,
    /// Every engine timer: (when, space).
    deadlines: BTreeSet<(Millis, SpaceKey)>,
    /// Spaces handed an input since the driver last asked.
    touched: BTreeSet<SpaceKey>,
    /// Peers to forget once the current input is handled.
    leaving: Vec<P>,
    transmits: VecDeque<HubTransmit<P>>,
    events: VecDeque<HubEvent<P>>,
    stats: HubStats,
}

impl<P: Clone + Ord + Debug> SyncHub<P> {
    /// A hub with no space yet; engines and summaries use `config`
    /// (`heartbeat_ms` and `jitter_ms` time the summaries), randomness
    /// comes from `seed`.
    pub fn new(config: SyncConfig, seed: u64) -> Self {
        SyncHub {
            config,
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Millis(0),
            spaces: BTreeMap::new(),
            names: BTreeMap::new(),
            peers: BTreeMap::new(),
            version: 1,
            announce_at: None,
            deadlines: BTreeSet::new(),
            touched: BTreeSet::new(),
            leaving: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: HubStats::default(),
        }
    }

    /// Starts replicating `replica`'s space with the peers in `access`
    /// (`None`: every peer). Peers hear of it with the next list.
    pub fn open_space(
        &mut self,
        now: Millis,
        replica: Replica,
        access: Option<BTreeSet<P>>,
    ) -> Result<(), HubError> {
        self.now = self.now.max(now);
        let name = replica.space().to_owned();
        if self.names.contains_key(&name) {
            return Err(HubError::SpaceExists(name));
        }
        let max = self.config.max_spaces.min(wire::MAX_SPACE_KEYS);
        if self.spaces.len() >= max {
            return Err(HubError::TooManySpaces(max));
        }
        let key = space_key(&name);
        if let Some(other) = self.spaces.get(&key) {
            let with = other.name.clone();
            return Err(HubError::KeyCollision { space: name, with });
        }
        let engine =
            SyncEngine::new(self.config.clone(), replica, self.seed ^ key).without_heartbeat();
        let leaf = tree::leaf(key, engine.replica());
        self.names.insert(name.clone(), key);
        self.spaces.insert(
            key,
            Space {
                name,
                engine,
                access,
                leaf,
                deadline: None,
            },
        );
        self.share(key);
        self.list_changed();
        self.after_engine(key);
        self.settle();
        Ok(())
    }

    /// Stops replicating a space and hands back its replica; peers hear of
    /// it with the next list.
    pub fn close_space(&mut self, now: Millis, space: &str) -> Option<Replica> {
        self.now = self.now.max(now);
        let key = self.names.remove(space)?;
        let closed = self.spaces.remove(&key)?;
        self.unshare(key, closed.leaf);
        if let Some(at) = closed.deadline {
            self.deadlines.remove(&(at, key));
        }
        self.touched.remove(&key);
        self.list_changed();
        Some(closed.engine.into_replica())
    }

    /// A space's replica (read access).
    pub fn replica(&self, space: &str) -> Option<&Replica> {
        let key = self.names.get(space)?;
        self.spaces.get(key).map(|s| s.engine.replica())
    }

    /// A space's replica, for local writes; follow them with
    /// [`HubInput::LocalCommit`].
    pub fn replica_mut(&mut self, space: &str) -> Option<&mut Replica> {
        let key = self.names.get(space)?;
        self.spaces.get_mut(key).map(|s| s.engine.replica_mut())
    }

    /// The names of the open spaces.
    pub fn spaces(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// Peers currently up.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers.keys()
    }

    /// How many peers share `space` with this node (its engine's peers);
    /// `None` if the space is not open.
    pub fn space_peers(&self, space: &str) -> Option<usize> {
        let key = self.names.get(space)?;
        self.spaces.get(key).map(|s| s.engine.peers().count())
    }

    /// How many spaces this node shares with `peer`.
    pub fn shared_with(&self, peer: &P) -> usize {
        self.peers.get(peer).map_or(0, |p| p.shared.len())
    }

    /// What the hub did and dropped so far.
    pub fn stats(&self) -> HubStats {
        self.stats
    }

    /// Transmits waiting for the driver.
    pub fn queued_transmits(&self) -> usize {
        self.transmits.len()
    }

    /// Consumes the hub, returning every replica.
    pub fn into_replicas(self) -> Vec<Replica> {
        self.spaces
            .into_values()
            .map(|s| s.engine.into_replica())
            .collect()
    }

    /// Feeds one input at time `now`.
    pub fn handle_input(&mut self, now: Millis, input: HubInput<P>) {
        self.now = self.now.max(now);
        match input {
            HubInput::PeerUp(peer) => self.peer_up(peer),
            HubInput::PeerDown(peer) => self.forget(&peer),
            HubInput::Frame { from, bytes } => self.on_frame(from, bytes),
            HubInput::LocalCommit { space } => {
                if let Some(&key) = self.names.get(&space) {
                    self.feed(key, Input::LocalCommit);
                }
            }
            HubInput::Tick => self.on_tick(),
        }
        self.settle();
    }

    /// Next bytes to send, if any.
    pub fn poll_transmit(&mut self) -> Option<HubTransmit<P>> {
        self.transmits.pop_front()
    }

    /// Next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<HubEvent<P>> {
        self.events.pop_front()
    }

    /// When the hub next wants a [`HubInput::Tick`]: the earliest engine
    /// timer, summary or list announcement.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let engines = self.deadlines.first().map(|(at, _)| *at);
        let summaries = self.peers.values().map(|p| p.next_summary).min();
        [engines, summaries, self.announce_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next space whose replica was handed an input since the last
    /// call: it may have records to persist or events for subscribers.
    pub fn poll_touched(&mut self) -> Option<String> {
        while let Some(key) = self.touched.pop_first() {
            if let Some(space) = self.spaces.get(&key) {
                return Some(space.name.clone());
            }
        }
        None
    }

    fn peer_up(&mut self, peer: P) {
        if self.peers.contains_key(&peer) {
            return;
        }
        if self.peers.len() >= self.config.max_peers {
            warn!(?peer, "peer limit reached; refusing");
            self.stats.refused_peers += 1;
            self.push_event(None, SyncEvent::Disconnect(peer));
            return;
        }
        let next = self.next_heartbeat();
        self.peers.insert(peer.clone(), Peer::new(next));
        self.send_list(&peer);
    }

    /// Forgets a peer that left or was refused: the engines of the spaces
    /// it shared see it go.
    fn forget(&mut self, peer: &P) {
        let Some(gone) = self.peers.remove(peer) else {
            return;
        };
        for key in gone.shared {
            self.feed(key, Input::PeerDown(peer.clone()));
        }
    }

    fn on_frame(&mut self, from: P, bytes: Vec<u8>) {
        let header = match wire::peek(&bytes) {
            Ok(header) => header,
            Err(e) => return self.refuse(from, e.into()),
        };
        if header.kind.is_node_level() {
            return match NodeFrame::decode(&bytes) {
                Ok(frame) if self.peers.contains_key(&from) => self.on_node_frame(from, frame),
                Ok(_) => self.stats.unknown_peer += 1,
                Err(e) => self.refuse(from, e.into()),
            };
        }
        let key = self.names.get(header.space).copied();
        match key {
            Some(key) if self.spaces.get(&key).is_none_or(|s| s.allows(&from)) => {
                self.feed(key, Input::Frame { from, bytes });
            }
            Some(_) => {
                warn!(
                    ?from,
                    space = header.space,
                    "peer outside the space's allowlist; dropped"
                );
                self.stats.not_allowed += 1;
            }
            None => {
                debug!(
                    ?from,
                    space = header.space,
                    "frame for a space not open here"
                );
                self.stats.unknown_space += 1;
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.now;
        let due: Vec<SpaceKey> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, key)| *key)
            .collect();
        for key in due {
            self.feed(key, Input::Tick);
        }
        let due: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, p)| p.next_summary <= now)
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in due {
            let next = self.next_heartbeat();
            if let Some(p) = self.peers.get_mut(&peer) {
                p.next_summary = next;
            }
            self.send_summary(&peer, false);
        }
        if self.announce_at.is_some_and(|at| at <= now) {
            self.announce_at = None;
            self.announce();
        }
    }

    /// The list of spaces changed: a new version, announced shortly.
    fn list_changed(&mut self) {
        self.version += 1;
        if self.announce_at.is_none() {
            self.announce_at = Some(self.now.plus(ANNOUNCE_DELAY_MS));
        }
    }

    /// Feeds an input to one space's engine and takes what it produced.
    fn feed(&mut self, key: SpaceKey, input: Input<P>) {
        let Some(space) = self.spaces.get_mut(&key) else {
            return;
        };
        space.engine.handle_input(self.now, input);
        self.after_engine(key);
    }

    /// After an engine input: moves its transmits and events to the hub's
    /// queues, updates its leaf and its timer.
    fn after_engine(&mut self, key: SpaceKey) {
        let Some(space) = self.spaces.get_mut(&key) else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = space.engine.poll_transmit() {
            match t.to {
                Destination::Broadcast if space.access.is_some() => {
                    for (peer, p) in &self.peers {
                        if p.shared.contains(&key) {
                            out.push((Destination::Peer(peer.clone()), t.bytes.clone()));
                        }
                    }
                }
                to => out.push((to, t.bytes)),
            }
        }
        let mut events = Vec::new();
        while let Some(event) = space.engine.poll_event() {
            if let SyncEvent::Disconnect(peer) = &event {
                self.leaving.push(peer.clone());
            }
            events.push(event);
        }
        let leaf = tree::leaf(key, space.engine.replica());
        let old_leaf = std::mem::replace(&mut space.leaf, leaf);
        let deadline = space.engine.poll_timeout();
        if deadline != space.deadline {
            if let Some(at) = space.deadline {
                self.deadlines.remove(&(at, key));
            }
            if let Some(at) = deadline {
                self.deadlines.insert((at, key));
            }
            space.deadline = deadline;
        }
        let name = space.name.clone();
        if leaf != old_leaf {
            self.leaf_changed(key, old_leaf ^ leaf);
        }
        for (to, bytes) in out {
            self.push_transmit(Some(name.clone()), to, bytes);
        }
        for event in events {
            self.push_event(Some(name.clone()), event);
        }
        self.touched.insert(key);
    }

    /// Forgets the peers refused while handling an input.
    fn settle(&mut self) {
        while let Some(peer) = self.leaving.pop() {
            self.forget(&peer);
        }
    }

    /// Refuses a peer's node-level input: it is reported, disconnected and
    /// forgotten; no replica is touched.
    fn refuse(&mut self, peer: P, error: ProtocolError) {
        warn!(?peer, %error, "refusing peer input");
        self.push_event(
            None,
            SyncEvent::ProtocolError {
                peer: peer.clone(),
                error,
            },
        );
        self.push_event(None, SyncEvent::Disconnect(peer.clone()));
        self.leaving.push(peer);
    }

    /// Sends a node-level frame to one peer.
    fn send_node(&mut self, to: &P, frame: &NodeFrame) {
        match frame.encode() {
            Ok(bytes) => self.push_transmit(None, Destination::Peer(to.clone()), bytes),
            Err(e) => warn!(error = %e, "cannot encode a node-level frame"),
        }
    }

    fn push_transmit(&mut self, space: Option<String>, to: Destination<P>, bytes: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            self.stats.dropped_transmits += 1;
            return;
        }
        self.transmits.push_back(HubTransmit { space, to, bytes });
    }

    fn push_event(&mut self, space: Option<String>, event: SyncEvent<P>) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.stats.dropped_events += 1;
        }
        self.events.push_back(HubEvent { space, event });
    }

    fn next_heartbeat(&mut self) -> Millis {
        let jitter = if self.config.jitter_ms == 0 {
            0
        } else {
            self.rng.random_range(0..=self.config.jitter_ms)
        };
        self.now.plus(self.config.heartbeat_ms + jitter)
    }
}
