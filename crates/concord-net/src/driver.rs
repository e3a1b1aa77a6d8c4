//! The driver task: owns the swarm, the sync engines and each space's
//! storage, turns swarm events and commands into engine inputs and engine
//! outputs into swarm actions and storage writes (the `persist` module).
//! Never decides what to send or what to persist: that is the engine's and
//! the replica's job.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use concord_state::{
    Delivery, EventSink, Millis, Replica, StateError, SubscribeOptions, SubscriptionId,
};
use concord_storage::Storage;
use concord_sync::wire::Frame;
use concord_sync::{Destination, Input, SyncConfig, SyncEngine, SyncEvent};
use futures::{FutureExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identity, mdns, request_response};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::handle::{NetHandle, PeerInfo};
use crate::persist::{FlushDone, Flushing, SpaceDisk, answer};

/// Bound on commands waiting for the driver.
pub const COMMAND_QUEUE: usize = 256;

/// Longest wait between redials of a bootstrap address.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Most swarm events handled inline after a local commit, before its fsync
/// (see [`Driver::kick`]); the rest wait for the main loop.
const MAX_KICK_EVENTS: usize = 16;

/// Most queued write commands ([`NetHandle::with_replica`] calls) committed
/// together: their writes run and are broadcast one after another, then each
/// space they wrote is fsynced once, off the driver task, and all of them
/// are answered (group commit).
pub const MAX_GROUP_COMMIT: usize = 64;

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The driver task has stopped.
    #[error("the network driver has stopped")]
    Stopped,
    /// The space is not open on this node.
    #[error("space {0:?} is not open on this node")]
    UnknownSpace(String),
    /// The space is already open.
    #[error("space {0:?} is already open")]
    SpaceExists(String),
    /// The swarm could not be built or could not listen/dial.
    #[error("transport: {0}")]
    Transport(String),
    /// The replica refused an operation.
    #[error(transparent)]
    State(#[from] StateError),
    /// Writing a space's changes to its storage, or fsyncing them, failed:
    /// the writes of the command are not known to be durable.
    #[error("flushing space storage: {0}")]
    Flush(String),
}

/// How to run the network driver.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The node's identity.
    pub keypair: identity::Keypair,
    /// Addresses to listen on (e.g. `/ip4/127.0.0.1/tcp/0`).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and to redial with backoff when lost.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Settings of every space's sync engine.
    pub sync: SyncConfig,
    /// How often engines get a tick.
    pub tick: Duration,
}

impl NetConfig {
    /// Defaults for `keypair`: no listen address, no bootstrap, no mDNS.
    pub fn new(keypair: identity::Keypair) -> Self {
        NetConfig {
            keypair,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            sync: SyncConfig::default(),
            tick: Duration::from_millis(50),
        }
    }
}

/// Per-space network options.
#[derive(Debug, Clone, Default)]
pub struct SpaceOptions {
    /// When set, only these peers may sync the space: others are refused at
    /// the protocol level and the space's changes never travel on gossipsub.
    pub allowlist: Option<BTreeSet<PeerId>>,
}

/// Work for a space's replica, run inside the driver; it returns how to
/// answer once the replica is flushed (see [`Command::With`]).
pub(crate) type Job = Box<dyn FnOnce(Option<&mut Replica>) -> Finish + Send>;

/// Answers a [`Job`]'s caller with the outcome of the flush that followed it.
pub(crate) type Finish = Box<dyn FnOnce(Result<(), NetError>) + Send>;

pub(crate) enum Command {
    OpenSpace {
        replica: Box<Replica>,
        storage: Box<dyn Storage>,
        options: SpaceOptions,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    /// Runs a job on a replica, broadcasts what it committed, lets the swarm
    /// hand the frames to the connection tasks, then fsyncs (on a blocking
    /// thread) and answers: the gossip leaves while the fsync runs (DESIGN
    /// §5), the driver goes on meanwhile, and the caller hears back only
    /// once its writes are durable.
    With {
        space: String,
        job: Job,
    },
    Subscribe {
        space: String,
        pattern: String,
        capacity: usize,
        reply: oneshot::Sender<Result<mpsc::Receiver<Delivery>, NetError>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    BytesOnDisk {
        space: String,
        reply: oneshot::Sender<Result<u64, NetError>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Shutdown {
        reply: ShutdownReply,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

struct SpaceState {
    engine: SyncEngine<PeerId>,
    disk: SpaceDisk,
    options: SpaceOptions,
    topic: gossipsub::IdentTopic,
}

impl SpaceState {
    fn allows(&self, peer: &PeerId) -> bool {
        self.options
            .allowlist
            .as_ref()
            .is_none_or(|a| a.contains(peer))
    }
}

struct Sub {
    space: String,
    id: SubscriptionId,
    tx: mpsc::Sender<Delivery>,
}

struct Bootstrap {
    addr: Multiaddr,
    connected: bool,
    next_attempt: tokio::time::Instant,
    backoff: Duration,
}

struct Driver {
    swarm: Swarm<Behaviour>,
    spaces: BTreeMap<String, SpaceState>,
    subs: Vec<Sub>,
    peers: BTreeMap<PeerId, Option<Multiaddr>>,
    bootstrap: Vec<Bootstrap>,
    dialing: HashMap<ConnectionId, usize>,
    listen: Vec<Multiaddr>,
    config: NetConfig,
}

/// The caller of [`Command::Shutdown`].
type ShutdownReply = oneshot::Sender<Result<Vec<Replica>, NetError>>;

/// A sink that puts a subscriber's events straight into its channel as the
/// replica publishes them (for remote register writes, before the change is
/// even applied); what finds the channel full waits in the replica for
/// [`Driver::deliver`].
fn channel_sink(tx: mpsc::Sender<Delivery>) -> EventSink {
    Box::new(move |event| match tx.try_reserve() {
        Ok(permit) => {
            permit.send(Delivery::Event(event));
            None
        }
        Err(_) => Some(event),
    })
}

/// Wall-clock milliseconds since the Unix epoch: the `now` every engine and
/// every local write gets (hybrid logical clocks keep order if it steps back).
pub fn wall_clock() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

fn seed_for(peer: &PeerId, space: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(peer.to_bytes())
        .chain_update(space.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// Builds the swarm, starts listening and dialing, and spawns the driver task
/// on the current tokio runtime.
pub fn spawn(config: NetConfig) -> Result<NetHandle, NetError> {
    let transport = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    let mdns = config.mdns;
    let mut swarm = behaviour::swarm(&config.keypair, |key| behaviour::build(key, mdns), |c| c)
        .map_err(|e| transport(&e))?;
    for addr in &config.listen {
        swarm.listen_on(addr.clone()).map_err(|e| transport(&e))?;
    }
    let peer_id = *swarm.local_peer_id();
    let start = tokio::time::Instant::now();
    let bootstrap = config
        .bootstrap
        .iter()
        .map(|addr| Bootstrap {
            addr: addr.clone(),
            connected: false,
            next_attempt: start,
            backoff: Duration::from_millis(250),
        })
        .collect();
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let driver = Driver {
        swarm,
        spaces: BTreeMap::new(),
        subs: Vec::new(),
        peers: BTreeMap::new(),
        bootstrap,
        dialing: HashMap::new(),
        listen: Vec::new(),
        config,
    };
    tokio::spawn(
        driver
            .run(rx)
            .instrument(info_span!("node", peer = %peer_id)),
    );
    Ok(NetHandle { tx, peer_id })
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A command taken from the queue while gathering a write group,
        // handled once that group is on its way.
        let mut next = None;
        // Writes waiting for the next flush, and the flush on the disk now.
        let mut waiting: Vec<(String, Finish)> = Vec::new();
        let mut flushing: Option<Flushing> = None;
        let reply = loop {
            let mut ticked = false;
            let flow = match next.take() {
                Some(cmd) => self.on_received(Some(cmd), &mut commands, &mut next),
                None => tokio::select! {
                    cmd = commands.recv() => self.on_received(cmd, &mut commands, &mut next),
                    event = self.swarm.select_next_some() => {
                        self.on_swarm_event(event);
                        ControlFlow::Continue(Vec::new())
                    }
                    _ = tick.tick() => {
                        ticked = true;
                        self.on_tick();
                        ControlFlow::Continue(Vec::new())
                    }
                    done = Flushing::done(&mut flushing), if flushing.is_some() => {
                        if let Some(f) = flushing.take() {
                            self.flushed(f, done);
                        }
                        ControlFlow::Continue(Vec::new())
                    }
                },
            };
            let group = match flow {
                ControlFlow::Continue(group) => group,
                ControlFlow::Break(reply) => break reply,
            };
            if !group.is_empty() {
                // Let the frames just published leave before the flush
                // starts: gossipsub hands them to the connection tasks only
                // when the swarm is polled, and tokio runs a task woken
                // from this worker (in its LIFO slot) only once this one
                // yields.
                self.kick();
                tokio::task::yield_now().await;
                waiting.extend(group);
            }
            // Received changes wait for the next tick (or the next write
            // group): nobody waits for their fsync, and one fsync covers
            // all of them.
            let due =
                !waiting.is_empty() || (ticked && self.spaces.values().any(|s| s.disk.unsynced()));
            if flushing.is_none() && due {
                flushing = self.start_flush(std::mem::take(&mut waiting));
            }
        };
        // Stopping: the flush on the disk ends first (its outcome says
        // whether the storage is still trusted), then every space is
        // flushed in place and handed back.
        if flushing.is_some() {
            let done = Flushing::done(&mut flushing).await;
            if let Some(f) = flushing.take() {
                self.flushed(f, done);
            }
        }
        let result = self.shutdown();
        let failed = match &result {
            Ok(_) => HashMap::new(),
            Err(e) => waiting
                .iter()
                .map(|(s, _)| (s.clone(), e.to_string()))
                .collect(),
        };
        answer(waiting, &failed);
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    /// Handles a command from the queue (`None`: every handle is gone);
    /// `Break` when the driver must stop (with the shutdown's caller, if
    /// any), else the writes just run, to flush and answer.
    ///
    /// Write commands ([`Command::With`]) are committed in groups: the jobs
    /// of every `With` already queued behind the first (up to
    /// [`MAX_GROUP_COMMIT`]) run and broadcast one after another; the main
    /// loop then fsyncs each space once and answers every caller. Writes
    /// made while an fsync runs share the next one. Concurrent writers share
    /// fsyncs; a lone writer waits for nothing extra. A command of another
    /// kind met while gathering goes to `next`.
    fn on_received(
        &mut self,
        cmd: Option<Command>,
        commands: &mut mpsc::Receiver<Command>,
        next: &mut Option<Command>,
    ) -> ControlFlow<Option<ShutdownReply>, Vec<(String, Finish)>> {
        match cmd {
            None => ControlFlow::Break(None),
            Some(Command::Shutdown { reply }) => ControlFlow::Break(Some(reply)),
            Some(Command::With { space, job }) => {
                let mut group = vec![self.run_job(space, job)];
                while group.len() < MAX_GROUP_COMMIT {
                    match commands.try_recv() {
                        Ok(Command::With { space, job }) => group.push(self.run_job(space, job)),
                        Ok(other) => {
                            *next = Some(other);
                            break;
                        }
                        // Empty, or closed: `recv` reports the latter next.
                        Err(_) => break,
                    }
                }
                ControlFlow::Continue(group)
            }
            Some(other) => {
                self.on_command(other);
                ControlFlow::Continue(Vec::new())
            }
        }
    }

    /// Runs a write job on its space's replica and broadcasts what it
    /// committed; the main loop answers after the fsync.
    fn run_job(&mut self, space: String, job: Job) -> (String, Finish) {
        let finish = match self.spaces.get_mut(&space) {
            Some(state) => job(Some(state.engine.replica_mut())),
            None => job(None),
        };
        self.input(&space, wall_clock(), Input::LocalCommit);
        (space, finish)
    }

    /// Starts fsyncing, on a blocking thread, every space with records not
    /// yet synced; `writers` are answered when it is done (at once when
    /// there is nothing to fsync: `None`).
    fn start_flush(&mut self, writers: Vec<(String, Finish)>) -> Option<Flushing> {
        let disks = self.spaces.iter_mut().map(|(n, s)| (n, &mut s.disk));
        Flushing::start(disks, writers)
    }

    /// Confirms a finished flush to its replicas and answers its writers.
    fn flushed(&mut self, mut flush: Flushing, done: FlushDone) {
        match done {
            Ok(outcomes) => {
                for (name, outcome) in outcomes {
                    let Some(state) = self.spaces.get_mut(&name) else {
                        continue;
                    };
                    let replica = state.engine.replica_mut();
                    if let Err(error) = state.disk.finish_sync(replica, outcome) {
                        warn!(space = %name, %error, "fsyncing the space's storage failed");
                        flush.failed.insert(name, error);
                    }
                }
            }
            // Nothing is known durable; the next flush covers it all again.
            Err(error) => {
                warn!(%error, "flush task failed");
                for (space, _) in &flush.writers {
                    flush.failed.insert(space.clone(), error.to_string());
                }
            }
        }
        answer(flush.writers, &flush.failed);
    }

    /// Polls the swarm without waiting, handling what is ready: gossipsub
    /// hands freshly published frames to the connection tasks only when the
    /// swarm is polled, and those tasks then send them while the flush
    /// starts. (The main loop polls the swarm again, with its real waker,
    /// before it sleeps.)
    fn kick(&mut self) {
        for _ in 0..MAX_KICK_EVENTS {
            match self.swarm.next().now_or_never() {
                Some(Some(event)) => self.on_swarm_event(event),
                _ => return,
            }
        }
    }

    fn shutdown(&mut self) -> Result<Vec<Replica>, NetError> {
        let spaces = std::mem::take(&mut self.spaces);
        let mut out = Vec::new();
        for (_, mut space) in spaces {
            let mut replica = space.engine.into_replica();
            space.disk.sync_now(&mut replica).map_err(NetError::Flush)?;
            out.push(replica);
        }
        info!("driver stopped");
        Ok(out)
    }

    fn on_tick(&mut self) {
        let now = wall_clock();
        let names: Vec<String> = self.spaces.keys().cloned().collect();
        for name in names {
            self.input(&name, now, Input::Tick);
        }
        let due = tokio::time::Instant::now();
        for i in 0..self.bootstrap.len() {
            let b = &mut self.bootstrap[i];
            if b.connected || b.next_attempt > due {
                continue;
            }
            b.next_attempt = due + b.backoff;
            b.backoff = (b.backoff * 2).min(MAX_BACKOFF);
            let opts = DialOpts::unknown_peer_id().address(b.addr.clone()).build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.dialing.insert(id, i);
                }
                Err(e) => debug!(addr = %self.bootstrap[i].addr, error = %e, "dial failed"),
            }
        }
    }

    /// Feeds one input to a space's engine and carries out what it asks.
    fn input(&mut self, space: &str, now: Millis, input: Input<PeerId>) {
        let Some(state) = self.spaces.get_mut(space) else {
            return;
        };
        state.engine.handle_input(now, input);
        self.pump(space);
    }

    /// Carries out what an input made the engine and its replica ask for:
    /// transmits, events, records to persist, subscription deliveries.
    fn pump(&mut self, space: &str) {
        let Some(state) = self.spaces.get_mut(space) else {
            return;
        };
        while let Some(t) = state.engine.poll_transmit() {
            match t.to {
                Destination::Peer(peer) => {
                    self.swarm.behaviour_mut().sync.send_request(&peer, t.bytes);
                }
                Destination::Broadcast if state.options.allowlist.is_some() => {
                    let targets: Vec<PeerId> = self
                        .peers
                        .keys()
                        .filter(|p| state.allows(p))
                        .copied()
                        .collect();
                    for peer in targets {
                        self.swarm
                            .behaviour_mut()
                            .sync
                            .send_request(&peer, t.bytes.clone());
                    }
                }
                Destination::Broadcast => {
                    let topic = state.topic.clone();
                    if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, t.bytes) {
                        debug!(error = %e, "gossipsub publish");
                    }
                }
            }
        }
        while let Some(event) = state.engine.poll_event() {
            match event {
                SyncEvent::Disconnect(peer) => {
                    warn!(%peer, "disconnecting misbehaving peer");
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                SyncEvent::ProtocolError { peer, error } => {
                    warn!(%peer, %error, "protocol error");
                }
                other => debug!(?other, "sync event"),
            }
        }
        // After the transmits are handed to the swarm, so that writing a
        // compaction's snapshot (in place) never holds up gossip.
        state.disk.write(space, state.engine.replica_mut());
        self.deliver(space);
    }

    /// Moves subscription events from the replica to the application's
    /// channels, as far as they have room.
    fn deliver(&mut self, space: &str) {
        let Some(state) = self.spaces.get_mut(space) else {
            return;
        };
        let replica = state.engine.replica_mut();
        self.subs.retain(|sub| {
            if sub.space != space {
                return true;
            }
            loop {
                match sub.tx.try_reserve() {
                    Ok(permit) => match replica.poll_event(sub.id) {
                        Ok(Some(d)) => permit.send(d),
                        _ => return true,
                    },
                    Err(mpsc::error::TrySendError::Full(())) => return true,
                    Err(mpsc::error::TrySendError::Closed(())) => {
                        replica.unsubscribe(sub.id);
                        return false;
                    }
                }
            }
        });
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::OpenSpace {
                replica,
                storage,
                options,
                reply,
            } => {
                let _ = reply.send(self.open_space(*replica, storage, options));
            }
            Command::BytesOnDisk { space, reply } => {
                let bytes = self
                    .spaces
                    .get(&space)
                    .map(|s| s.disk.bytes_on_disk())
                    .ok_or(NetError::UnknownSpace(space));
                let _ = reply.send(bytes);
            }
            Command::Subscribe {
                space,
                pattern,
                capacity,
                reply,
            } => {
                let result = match self.spaces.get_mut(&space) {
                    None => Err(NetError::UnknownSpace(space.clone())),
                    Some(state) => {
                        let replica = state.engine.replica_mut();
                        let (tx, rx) = mpsc::channel(capacity);
                        replica
                            .subscribe(&pattern, SubscribeOptions::default())
                            .and_then(|id| {
                                replica.set_event_sink(id, channel_sink(tx.clone()))?;
                                Ok(id)
                            })
                            .map_err(NetError::from)
                            .map(|id| {
                                self.subs.push(Sub {
                                    space: space.clone(),
                                    id,
                                    tx,
                                });
                                rx
                            })
                    }
                };
                let _ = reply.send(result);
            }
            Command::Peers { reply } => {
                let peers = self
                    .peers
                    .iter()
                    .map(|(peer_id, address)| PeerInfo {
                        peer_id: *peer_id,
                        address: address.clone(),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen.clone());
            }
            Command::Dial { addr, reply } => {
                let result = self
                    .swarm
                    .dial(addr)
                    .map_err(|e| NetError::Transport(e.to_string()));
                let _ = reply.send(result);
            }
            // Both are handled by `on_received`, which never passes them here.
            Command::With { .. } | Command::Shutdown { .. } => {}
        }
    }

    fn open_space(
        &mut self,
        replica: Replica,
        storage: Box<dyn Storage>,
        options: SpaceOptions,
    ) -> Result<(), NetError> {
        let name = replica.space().to_owned();
        if self.spaces.contains_key(&name) {
            return Err(NetError::SpaceExists(name));
        }
        let topic = behaviour::topic(&name);
        if options.allowlist.is_none() {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&topic)
                .map_err(|e| NetError::Transport(e.to_string()))?;
        }
        let seed = seed_for(self.swarm.local_peer_id(), &name);
        let engine = SyncEngine::new(self.config.sync.clone(), replica, seed);
        let state = SpaceState {
            engine,
            disk: SpaceDisk::new(storage),
            options,
            topic,
        };
        let peers: Vec<PeerId> = self
            .peers
            .keys()
            .filter(|p| state.allows(p))
            .copied()
            .collect();
        self.spaces.insert(name.clone(), state);
        // A fresh replica's genesis change, fsynced on the next tick.
        self.pump(&name);
        let now = wall_clock();
        for peer in peers {
            self.input(&name, now, Input::PeerUp(peer));
        }
        info!(space = %name, "space open");
        Ok(())
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                num_established,
                ..
            } => {
                let address = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address.clone(),
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
                };
                if let Some(i) = self.dialing.remove(&connection_id) {
                    self.bootstrap[i].connected = true;
                    self.bootstrap[i].backoff = Duration::from_millis(250);
                }
                if num_established.get() == 1 {
                    info!(%peer_id, %address, "peer connected");
                    self.peers.insert(peer_id, Some(address));
                    self.peer_changed(peer_id, true);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    for b in self.bootstrap.iter_mut().filter(|b| &b.addr == address) {
                        b.connected = false;
                    }
                }
                if num_established == 0 {
                    info!(%peer_id, "peer disconnected");
                    self.peers.remove(&peer_id);
                    self.peer_changed(peer_id, false);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                self.dialing.remove(&connection_id);
                debug!(%error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn peer_changed(&mut self, peer: PeerId, up: bool) {
        let now = wall_clock();
        let names: Vec<String> = self
            .spaces
            .iter()
            .filter(|(_, s)| s.allows(&peer))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let input = if up {
                Input::PeerUp(peer)
            } else {
                Input::PeerDown(peer)
            };
            self.input(&name, now, input);
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let space = self
                    .spaces
                    .iter()
                    .find(|(_, s)| s.topic.hash() == message.topic && s.options.allowlist.is_none())
                    .map(|(n, _)| n.clone());
                let valid = space.is_some() && Frame::decode(&message.data).is_ok();
                let acceptance = if valid {
                    gossipsub::MessageAcceptance::Accept
                } else {
                    gossipsub::MessageAcceptance::Reject
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                if let Some(space) = space {
                    // Anonymous messages: the peer that handed us the frame
                    // (and validated it before relaying) answers for it.
                    let from = propagation_source;
                    self.input(
                        &space,
                        wall_clock(),
                        Input::Frame {
                            from,
                            bytes: message.data,
                        },
                    );
                }
            }
            BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, ());
                self.on_frame(peer, request);
            }
            BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                warn!(%peer, %error, "inbound sync stream failed");
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                peer, error, ..
            }) => {
                debug!(%peer, %error, "outbound sync stream failed");
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if !self.peers.contains_key(&peer) {
                        debug!(%peer, %addr, "mdns discovered");
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            _ => {}
        }
    }

    /// A directed frame from `peer`: route it to its space's engine, unless
    /// the peer is not allowed there.
    fn on_frame(&mut self, peer: PeerId, bytes: Vec<u8>) {
        let space = match Frame::decode(&bytes) {
            Ok(frame) => frame.space().to_owned(),
            Err(error) => {
                warn!(%peer, %error, "garbage frame; disconnecting");
                let _ = self.swarm.disconnect_peer_id(peer);
                return;
            }
        };
        match self.spaces.get(&space) {
            None => debug!(%peer, %space, "frame for a space not open here"),
            Some(state) if !state.allows(&peer) => {
                warn!(%peer, %space, "peer not in the space's allowlist; refused");
            }
            Some(_) => self.input(&space, wall_clock(), Input::Frame { from: peer, bytes }),
        }
    }
}
