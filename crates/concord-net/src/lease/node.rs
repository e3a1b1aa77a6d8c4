//! The quorum lease node: a tokio task that owns a libp2p swarm speaking
//! `/concord/lease/1` with the other lease peers and
//! `/concord/lease-client/1` with clients (`serve.rs`), this lease peer's
//! [`Acceptor`] and [`Proposer`], and the acceptor's [`StateStore`].
//!
//! This module owns the plumbing between them: messages to and from peers
//! (to its own acceptor in-process, whose side is in `node/acceptor.rs`),
//! the order "fsync, then release the replies that depend on it", the
//! timers the proposer asks for, and the answers to
//! [`QuorumLeaseBackend`](super::QuorumLeaseBackend) calls, each mapped
//! from the proposer's event about its request. It must never decide a
//! lease question itself (whether to ask again, how long to wait for
//! anything: the proposer decides, and netsim checks the same decisions),
//! never block its loop on the disk (state is written on the blocking pool,
//! one write at a time, the next one carrying every change made meanwhile),
//! and never pass a message to a machine that did not decode or came from
//! an unknown peer.
//!
//! # Replies and response streams
//!
//! A proposer's message goes out as a request. The acceptor's reply, once
//! durable, goes back in the response of a request from that proposer that
//! is still open (replies name their resource and ballot, so any open one
//! will do), or as a request of its own if none is. When the acceptor has
//! nothing left to say (no write in flight, no reply queued), the remaining
//! open requests are answered with [`wire::NO_REPLY`].
//!
//! A call returns with the proposer's final word on its request: an
//! acquisition with `Acquired` or `Denied`, a renewal with `Renewed`,
//! `RenewFailed` or `Lost`, a release with `Released`, which the proposer
//! reports once every acceptor confirmed or a round timeout (see
//! [`QuorumConfig::round_timeout`]) passed.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use concord_lease::{
    Acceptor, AcceptorConfig, AcceptorState, AcquireRequest, BackendError, DenyReason, Event,
    FencingToken, Input, Lease, LeaseError, LeaseHandle, LeaseId, Message, Millis, NodeId, Permits,
    Proposer, ProposerConfig, ProposerStats, Quorum, RejectReason, Resource, Transmit,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::core::upgrade::Version;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, allow_block_list};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, error, info, info_span, warn};

use self::acceptor::PersistDone;
use self::serve::Serving;
use super::client::{ClientAnswer, ClientCall, LEASE_CLIENT_PROTOCOL};
use super::store::{Loaded, StateStore};
use super::wire::{self, LEASE_PROTOCOL, LeaseCodec};
use super::{Clock, LeaseNetError, QuorumConfig};

/// Bound on backend calls waiting for the node task.
const COMMAND_QUEUE: usize = 256;

/// Where a backend call's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, BackendError>>;

/// A backend call, sent to the node task.
pub(super) enum Command {
    /// Stop the node.
    Stop,
    /// A call to a lease peer, as its client (see [`super::client`]).
    Call {
        to: PeerId,
        addrs: Vec<Multiaddr>,
        call: ClientCall,
        reply: Reply<ClientAnswer>,
    },
    Acquire {
        request: AcquireRequest,
        reply: Reply<Lease>,
    },
    Renew {
        lease: Lease,
        ttl: Millis,
        reply: Reply<Lease>,
    },
    Release {
        lease: Lease,
        handoff: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    /// The proposer's counters.
    Stats { reply: Reply<ProposerStats> },
}

/// What [`spawn`] hands the backend.
pub(super) struct Spawned {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) clock: Clock,
    pub(super) node: NodeId,
    pub(super) task: JoinHandle<()>,
}

/// Lease peers speak `/concord/lease/1` (a message from anyone else is
/// refused and its sender disconnected); clients, lease peers or not, speak
/// `/concord/lease-client/1`. Peers that sent garbage are blocked.
#[derive(NetworkBehaviour)]
struct LeaseBehaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    rpc: request_response::Behaviour<LeaseCodec>,
    client: request_response::Behaviour<LeaseCodec>,
}

/// A fresh grant (not a renewal), with the previous holder's handoff.
struct Fresh(Option<Vec<u8>>);

/// An acquisition or renewal waiting for its outcome.
struct Waiter {
    reply: Reply<Lease>,
    permits: Permits,
}

struct Node {
    swarm: Swarm<LeaseBehaviour>,
    clock: Clock,
    me: NodeId,
    node_of: HashMap<PeerId, NodeId>,
    peer_of: HashMap<NodeId, PeerId>,
    proposer: Proposer,
    /// `None` once a state write failed: this peer no longer votes.
    acceptor: Option<Acceptor>,
    /// `None` while a write is in flight.
    store: Option<StateStore>,
    persisted: mpsc::Sender<PersistDone>,
    /// Open requests to our acceptor, per proposer, oldest first.
    open: HashMap<NodeId, VecDeque<ResponseChannel<Vec<u8>>>>,
    waiters: HashMap<LeaseId, Waiter>,
    /// Release calls waiting for the proposer's `Released`.
    releases: HashMap<LeaseId, Reply<()>>,
    next_lease: u64,
    /// Client calls this lease peer runs, each ending in its answer.
    serving: FuturesUnordered<Serving>,
    /// Leases held for clients, by handle: who holds each.
    client_leases: HashMap<u64, (PeerId, Lease)>,
    /// This node's calls to lease peers, as their client.
    calling: HashMap<OutboundRequestId, Reply<ClientAnswer>>,
}

/// Checks the configuration, loads the acceptor state, builds the swarm
/// and spawns the node task on the current tokio runtime.
pub(super) fn spawn(config: QuorumConfig) -> Result<Spawned, LeaseNetError> {
    let local = config.keypair.public().to_peer_id();
    let mut node_of = HashMap::new();
    let mut peer_of = HashMap::new();
    for peer in &config.peers {
        if node_of.insert(peer.peer_id, peer.node).is_some() {
            return Err(LeaseNetError::Config(format!(
                "peer {} is listed twice",
                peer.peer_id
            )));
        }
        peer_of.insert(peer.node, peer.peer_id);
    }
    let me = *node_of.get(&local).ok_or_else(|| {
        LeaseNetError::Config(format!("this node ({local}) is not one of the lease peers"))
    })?;
    let quorum = Quorum::new(config.peers.iter().map(|p| p.node))?;
    let proposer_config = ProposerConfig {
        drift: config.drift,
        max_ttl: config.max_ttl,
        round_timeout: config.round_timeout,
        retry_backoff: config.retry_backoff,
        ..ProposerConfig::new(me, quorum)
    };
    let proposer = Proposer::new(proposer_config, RandomState::new().hash_one(me))?;

    let storage = |source| LeaseNetError::Storage {
        path: config.data_dir.clone(),
        source,
    };
    let (store, loaded) = StateStore::open(&config.data_dir).map_err(storage)?;
    let clock = Clock::start();
    let acceptor_config = AcceptorConfig {
        max_ttl: config.max_ttl,
        ..AcceptorConfig::new(me)
    };
    let acceptor = match loaded {
        Loaded::Fresh => Acceptor::new(acceptor_config)?,
        Loaded::State(state) => Acceptor::restore(acceptor_config, state, clock.now())?,
        Loaded::Unreadable => {
            warn!(dir = %config.data_dir.display(), "acceptor state unreadable; restarting as after a lost disk");
            Acceptor::restore(acceptor_config, AcceptorState::default(), clock.now())?
        }
    };

    let mut swarm = build_swarm(&config)?;
    for peer in config.peers.iter().filter(|p| p.node != me) {
        swarm.add_peer_address(peer.peer_id, peer.addr.clone());
        if let Err(e) = swarm.dial(peer.peer_id) {
            debug!(peer = %peer.peer_id, error = %e, "lease peer not dialed yet");
        }
    }
    let (persisted, persisted_rx) = mpsc::channel(1);
    let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let node = Node {
        swarm,
        clock,
        me,
        node_of,
        peer_of,
        proposer,
        acceptor: Some(acceptor),
        store: Some(store),
        persisted,
        open: HashMap::new(),
        waiters: HashMap::new(),
        releases: HashMap::new(),
        next_lease: 0,
        serving: FuturesUnordered::new(),
        client_leases: HashMap::new(),
        calling: HashMap::new(),
    };
    let span = info_span!("lease", node = me.0);
    let task = tokio::spawn(node.run(commands_rx, persisted_rx).instrument(span));
    Ok(Spawned {
        commands,
        clock,
        node: me,
        task,
    })
}

fn build_swarm(config: &QuorumConfig) -> Result<Swarm<LeaseBehaviour>, LeaseNetError> {
    let transport = |e: &dyn std::fmt::Display| LeaseNetError::Transport(e.to_string());
    // Requests wait for an fsync at most; a stalled one is retried by the
    // proposer long before this.
    let rpc_config =
        request_response::Config::default().with_request_timeout(Duration::from_secs(10));
    let mut swarm = crate::behaviour::swarm(
        &config.keypair,
        |_| {
            Ok(LeaseBehaviour {
                blocked: allow_block_list::Behaviour::default(),
                rpc: request_response::Behaviour::with_codec(
                    LeaseCodec,
                    [(LEASE_PROTOCOL, request_response::ProtocolSupport::Full)],
                    rpc_config,
                ),
                client: request_response::Behaviour::with_codec(
                    LeaseCodec,
                    [(
                        LEASE_CLIENT_PROTOCOL,
                        request_response::ProtocolSupport::Full,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(serve::CLIENT_CALL_TIMEOUT),
                ),
            })
        },
        // Every peer of this swarm runs this code and speaks both protocols,
        // so a request need not wait a round trip for the protocol to be
        // confirmed before its bytes go out.
        |c| c.with_substream_upgrade_protocol_override(Version::V1Lazy),
    )
    .map_err(|e| transport(&e))?;
    swarm
        .listen_on(config.listen.clone())
        .map_err(|e| transport(&e))?;
    Ok(swarm)
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether an acceptor (rather than a proposer) handles `message`.
fn for_acceptor(message: &Message) -> bool {
    matches!(
        message,
        Message::Prepare { .. } | Message::Propose { .. } | Message::Release { .. }
    )
}

/// The backend error for a failed acquisition or renewal.
fn deny_error(reason: DenyReason) -> BackendError {
    match reason {
        DenyReason::Busy | DenyReason::Rejected(RejectReason::Full) => BackendError::Busy,
        DenyReason::NoQuorum => {
            BackendError::Unavailable("no majority of lease peers answered in time".into())
        }
        DenyReason::Rejected(reason) => {
            BackendError::Unavailable(format!("a majority of lease peers refused: {reason:?}"))
        }
        DenyReason::RoundsExhausted => BackendError::Other("ballot rounds exhausted".into()),
    }
}

/// The backend error for a renew or release the proposer refused.
fn call_error(error: LeaseError) -> BackendError {
    match error {
        LeaseError::UnknownLease(_) | LeaseError::NotHeld(_) => BackendError::Expired,
        other => other.into(),
    }
}

impl Node {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut persisted: mpsc::Receiver<PersistDone>,
    ) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Stop) | None => break,
                    Some(command) => self.on_command(command),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(served) = self.serving.next() => self.answer_client(served),
                Some(done) = persisted.recv() => self.on_persisted(done),
                () = sleep_until(wake) => self.on_timer(),
            }
            self.pump();
        }
        info!("lease node stopped");
    }

    fn next_wake(&self) -> Option<tokio::time::Instant> {
        self.clock.instant(self.proposer.poll_timeout()?)
    }

    fn propose(&mut self, input: Input) -> Result<(), LeaseError> {
        self.proposer.handle_input(self.clock.now(), input)
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Stop => {}
            Command::Stats { reply } => {
                let _ = reply.send(Ok(self.proposer.stats()));
            }
            Command::Call {
                to,
                addrs,
                call,
                reply,
            } => self.call_lease_peer(to, addrs, &call, reply),
            Command::Acquire { request, reply } => {
                let lease = LeaseId(self.next_lease);
                self.next_lease += 1;
                let input = Input::Acquire {
                    lease,
                    resource: request.resource,
                    ttl: request.ttl,
                    permits: request.permits,
                    wait: request.wait,
                };
                self.await_grant(lease, input, request.permits, reply);
            }
            Command::Renew { lease, ttl, reply } => {
                let id = LeaseId(lease.handle.0);
                self.await_grant(id, Input::Renew { lease: id, ttl }, lease.permits, reply);
            }
            Command::Release {
                lease,
                handoff,
                reply,
            } => {
                let id = LeaseId(lease.handle.0);
                match self.propose(Input::Release { lease: id, handoff }) {
                    Ok(()) => {
                        // A renewal under way was given up with the lease.
                        if let Some(waiter) = self.waiters.remove(&id) {
                            let _ = waiter.reply.send(Err(BackendError::Expired));
                        }
                        self.releases.insert(id, reply);
                    }
                    // Released twice at once: the first call does the work.
                    Err(e) => {
                        let _ = reply.send(Err(call_error(e)));
                    }
                }
            }
        }
    }

    /// Feeds `input` (an acquisition or renewal of `lease`) to the
    /// proposer; `reply` gets its outcome.
    fn await_grant(&mut self, lease: LeaseId, input: Input, permits: Permits, reply: Reply<Lease>) {
        match self.propose(input) {
            Ok(()) => {
                self.waiters.insert(lease, Waiter { reply, permits });
            }
            Err(e) => {
                let _ = reply.send(Err(call_error(e)));
            }
        }
    }

    fn on_timer(&mut self) {
        if let Err(e) = self.propose(Input::Timeout) {
            error!(error = %e, "proposer refused a timeout");
        }
    }

    /// Carries out everything the machines ask until they are quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.proposer.poll_transmit() {
                moved = true;
                self.send_from_proposer(t);
            }
            while let Some(event) = self.proposer.poll_event() {
                moved = true;
                self.on_event(event);
            }
            moved |= self.pump_acceptor();
            if !moved {
                return;
            }
        }
    }

    fn send_from_proposer(&mut self, t: Transmit) {
        if t.to == self.me {
            if let Err(e) = self.feed_acceptor(self.me, t.message, None) {
                error!(error = %e, "own acceptor refused own proposer's message");
            }
            return;
        }
        self.send_request(t.to, &t.message);
    }

    fn send_request(&mut self, to: NodeId, message: &Message) {
        let Some(peer) = self.peer_of.get(&to).copied() else {
            warn!(
                to = to.0,
                "message for a node that is not a lease peer dropped"
            );
            return;
        };
        match wire::encode(message) {
            Ok(bytes) => {
                self.swarm.behaviour_mut().rpc.send_request(&peer, bytes);
            }
            Err(e) => error!(error = %e, kind = message.kind(), "lease message not encodable"),
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Acquired {
                lease,
                resource,
                token,
                valid_until,
                handoff,
            } => {
                let fresh = Fresh(handoff.map(|h| h.context));
                self.granted(lease, resource, token, valid_until, Some(fresh));
            }
            Event::Renewed {
                lease,
                resource,
                token,
                valid_until,
            } => self.granted(lease, resource, token, valid_until, None),
            Event::Denied { lease, reason, .. } | Event::RenewFailed { lease, reason, .. } => {
                if let Some(waiter) = self.waiters.remove(&lease) {
                    let _ = waiter.reply.send(Err(deny_error(reason)));
                }
            }
            Event::Lost { lease, token, .. } => {
                debug!(lease = lease.0, %token, "lease lost");
                if let Some(waiter) = self.waiters.remove(&lease) {
                    let _ = waiter.reply.send(Err(BackendError::Expired));
                }
            }
            Event::Released {
                lease,
                confirmed_by_all,
                ..
            } => {
                if !confirmed_by_all {
                    // Unconfirmed acceptors drop the grant when it expires.
                    debug!(lease = lease.0, "release not confirmed by every acceptor");
                }
                if let Some(reply) = self.releases.remove(&lease) {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }

    /// Answers the acquisition (`fresh`, with the handoff it found) or
    /// renewal of `lease`.
    fn granted(
        &mut self,
        lease: LeaseId,
        resource: Resource,
        token: FencingToken,
        valid_until: Millis,
        fresh: Option<Fresh>,
    ) {
        let Some(waiter) = self.waiters.remove(&lease) else {
            return;
        };
        let granted = Lease {
            resource,
            token,
            expires: valid_until,
            permits: waiter.permits,
            handle: LeaseHandle(lease.0),
            handoff: fresh.as_ref().and_then(|f| f.0.clone()),
        };
        // A caller that stopped waiting for a fresh grant never learns of
        // it, so give it back. (A renewal's caller still holds its lease.)
        if waiter.reply.send(Ok(granted)).is_err()
            && fresh.is_some()
            && let Err(e) = self.propose(Input::Release {
                lease,
                handoff: None,
            })
        {
            debug!(error = %e, "abandoned lease already gone");
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<LeaseBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(LeaseBehaviourEvent::Rpc(event)) => self.on_rpc(event),
            SwarmEvent::Behaviour(LeaseBehaviourEvent::Client(event)) => self.on_client_rpc(event),
            SwarmEvent::Behaviour(LeaseBehaviourEvent::Blocked(never)) => match never {},
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "lease swarm listening"),
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "lease listener error"),
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                debug!(%peer_id, "lease peer connected");
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } => {
                debug!(%peer_id, "lease peer connection closed");
            }
            _ => {}
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => match wire::decode_request(&request) {
                Ok(message) => self.route(peer, message, Some(channel)),
                Err(e) => self.distrust(peer, &e),
            },
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response, .. },
                ..
            } => match wire::decode_response(&response) {
                Ok(Some(message)) => self.route(peer, message, None),
                Ok(None) => {}
                Err(e) => self.distrust(peer, &e),
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "lease request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound lease request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Hands a decoded message from `peer` to the machine it is for.
    fn route(&mut self, peer: PeerId, message: Message, channel: Option<ResponseChannel<Vec<u8>>>) {
        let Some(from) = self.node_of.get(&peer).copied() else {
            return self.distrust(peer, &"not a lease peer");
        };
        let result = if for_acceptor(&message) {
            self.feed_acceptor(from, message, channel)
        } else {
            if let Some(channel) = channel {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(channel, wire::NO_REPLY.to_vec());
            }
            self.propose(Input::Message { from, message })
        };
        if let Err(e) = result {
            self.distrust(peer, &e);
        }
    }

    /// Drops whatever `peer` said and disconnects it.
    fn distrust(&mut self, peer: PeerId, error: &dyn std::fmt::Display) {
        warn!(%peer, %error, "bad lease message; disconnecting the peer");
        let _ = self.swarm.disconnect_peer_id(peer);
    }
}

mod acceptor;
mod serve;
#[cfg(test)]
mod tests;
