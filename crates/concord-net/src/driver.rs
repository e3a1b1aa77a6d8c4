//! The driver task: owns the swarm, the node's [`SyncHub`] (which owns
//! every space's sync engine) and each space's storage; turns swarm events
//! and commands into hub inputs, and hub outputs into swarm actions and
//! storage writes (the `persist` module). It sleeps until the earliest of
//! the hub's [`SyncHub::poll_timeout`], the next bootstrap redial and the
//! next flush of received changes, so an idle node wakes about once per
//! peer and heartbeat whatever the number of spaces (`commands` and `swarm`
//! hold the rest of the loop).
//!
//! Never decides what to send or what to persist: that is the hub's, the
//! engines' and the replicas' job.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use concord_state::{Delivery, EventSink, Millis, Replica, StateError};
use concord_storage::Storage;
use concord_sync::{HubInput, SyncConfig, SyncHub};
use futures::{FutureExt, StreamExt};
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identity, request_response};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span};

use crate::behaviour::{self, Behaviour};
use crate::handle::{NetHandle, PeerInfo};
use crate::latency::LatencyCounters;
use crate::peer_stats::PeerTable;
use crate::persist::{FlushDone, Flushing, SpaceDisk, answer};
use crate::traffic::TrafficCounters;

mod commands;
mod swarm;

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
    /// The sync hub refused to open the space.
    #[error(transparent)]
    Hub(#[from] concord_sync::HubError),
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
    /// Settings of the sync hub and of every space's sync engine.
    pub sync: SyncConfig,
    /// How long changes received from peers wait before they are fsynced:
    /// one fsync covers all that arrive meanwhile (nobody waits for it).
    pub flush_delay: Duration,
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
            flush_delay: Duration::from_millis(50),
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

/// Whether a job's writes start an fsync of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// As soon as no fsync is running: its caller waits on it.
    Now,
    /// With the next fsync, at the latest after `flush_delay`.
    Later,
}

/// A job's caller waiting for a flush.
type Waiter = (String, Finish, Flush);

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
        flush: Flush,
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
    SpaceStats {
        reply: oneshot::Sender<Vec<crate::SpaceStats>>,
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

/// What the driver keeps of an open space beside the hub's engine.
struct SpaceState {
    disk: SpaceDisk,
    topic: gossipsub::IdentTopic,
}

struct Sub {
    space: String,
    id: concord_state::SubscriptionId,
    tx: mpsc::Sender<Delivery>,
}

struct Bootstrap {
    addr: Multiaddr,
    connected: bool,
    next_attempt: Instant,
    backoff: Duration,
}

struct Driver {
    swarm: Swarm<Behaviour>,
    hub: SyncHub<PeerId>,
    spaces: BTreeMap<String, SpaceState>,
    /// The space of each gossipsub topic the node subscribed to.
    topics: HashMap<gossipsub::TopicHash, String>,
    subs: Vec<Sub>,
    peers: BTreeMap<PeerId, Option<Multiaddr>>,
    bootstrap: Vec<Bootstrap>,
    dialing: HashMap<ConnectionId, usize>,
    listen: Vec<Multiaddr>,
    config: NetConfig,
    traffic: Arc<TrafficCounters>,
    latency: Arc<LatencyCounters>,
    /// Bytes and round trips per connected peer.
    peer_stats: PeerTable<PeerId, request_response::OutboundRequestId>,
    /// When received changes written to storage get their fsync.
    flush_at: Option<Instant>,
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

/// Wall-clock milliseconds since the Unix epoch: the `now` the hub and
/// every local write get (hybrid logical clocks keep order if it steps
/// back).
pub fn wall_clock() -> Millis {
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// When, on tokio's clock, wall-clock time `at` comes (a millisecond late,
/// so that the hub finds its timer due when it wakes).
fn instant_of(at: Millis) -> Instant {
    Instant::now() + Duration::from_millis(at.0.saturating_sub(wall_clock().0) + 1)
}

fn seed_for(peer: &PeerId) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(peer.to_bytes());
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
    let start = Instant::now();
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
    let traffic = Arc::new(TrafficCounters::default());
    let latency = Arc::new(LatencyCounters::default());
    let driver = Driver {
        swarm,
        hub: SyncHub::new(config.sync.clone(), seed_for(&peer_id)),
        spaces: BTreeMap::new(),
        topics: HashMap::new(),
        subs: Vec::new(),
        peers: BTreeMap::new(),
        bootstrap,
        dialing: HashMap::new(),
        listen: Vec::new(),
        config,
        traffic: Arc::clone(&traffic),
        latency: Arc::clone(&latency),
        peer_stats: PeerTable::default(),
        flush_at: None,
    };
    tokio::spawn(
        driver
            .run(rx)
            .instrument(info_span!("node", peer = %peer_id)),
    );
    Ok(NetHandle {
        tx,
        peer_id,
        traffic,
        latency,
    })
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // One timer for everything, re-armed when the earliest deadline moves.
        let mut armed = self.next_wake(false);
        let timer = tokio::time::sleep_until(armed.unwrap_or_else(Instant::now));
        tokio::pin!(timer);
        // A command taken from the queue while gathering a write group,
        // handled once that group is on its way.
        let mut next = None;
        // Writes waiting for the next flush, and the flush on the disk now.
        let mut waiting: Vec<Waiter> = Vec::new();
        let mut flushing: Option<Flushing> = None;
        let reply = loop {
            let flow = match next.take() {
                Some(cmd) => self.on_received(Some(cmd), &mut commands, &mut next),
                None => tokio::select! {
                    cmd = commands.recv() => self.on_received(cmd, &mut commands, &mut next),
                    event = self.swarm.select_next_some() => {
                        self.on_swarm_event(event);
                        ControlFlow::Continue(Vec::new())
                    }
                    () = &mut timer, if armed.is_some() => {
                        armed = None;
                        self.on_timer();
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
            // Received changes and lazy writes wait for their flush
            // deadline (or the next write group): nobody waits for their
            // fsync, and one fsync covers all of them.
            if waiting.iter().any(|w| w.2 == Flush::Later) && self.flush_at.is_none() {
                self.flush_at = Some(Instant::now() + self.config.flush_delay);
            }
            let due = waiting.iter().any(|w| w.2 == Flush::Now)
                || self.flush_at.is_some_and(|at| at <= Instant::now());
            if flushing.is_none() && due {
                self.flush_at = None;
                flushing = self.start_flush(std::mem::take(&mut waiting));
            }
            let wake = self.next_wake(flushing.is_some());
            if wake != armed {
                if let Some(at) = wake {
                    timer.as_mut().reset(at);
                }
                armed = wake;
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
                .map(|(s, _, _)| (s.clone(), e.to_string()))
                .collect(),
        };
        answer(
            waiting.into_iter().map(|(s, f, _)| (s, f)).collect(),
            &failed,
        );
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    /// The earliest of the hub's next timer, the next bootstrap redial and
    /// the next flush of received changes (not while one runs: its end
    /// wakes the loop).
    fn next_wake(&self, flushing: bool) -> Option<Instant> {
        let hub = self.hub.poll_timeout().map(instant_of);
        let redial = self
            .bootstrap
            .iter()
            .filter(|b| !b.connected)
            .map(|b| b.next_attempt)
            .min();
        let flush = self.flush_at.filter(|_| !flushing);
        [hub, redial, flush].into_iter().flatten().min()
    }

    /// A deadline passed: the hub's timers run, due bootstrap addresses are
    /// dialed (the flush is the main loop's).
    fn on_timer(&mut self) {
        if self.hub.poll_timeout().is_some_and(|at| at <= wall_clock()) {
            self.input(HubInput::Tick);
        }
        let due = Instant::now();
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
    ) -> ControlFlow<Option<ShutdownReply>, Vec<Waiter>> {
        match cmd {
            None => ControlFlow::Break(None),
            Some(Command::Shutdown { reply }) => ControlFlow::Break(Some(reply)),
            Some(Command::With { space, job, flush }) => {
                let mut group = vec![self.run_job(space, job, flush)];
                while group.len() < MAX_GROUP_COMMIT {
                    match commands.try_recv() {
                        Ok(Command::With { space, job, flush }) => {
                            group.push(self.run_job(space, job, flush));
                        }
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

    /// Runs a job on its space's replica (brought to the current time
    /// first, so that reads see expired entries expired) and broadcasts
    /// what it committed; the main loop answers after the fsync.
    fn run_job(&mut self, space: String, job: Job, flush: Flush) -> Waiter {
        let now = wall_clock();
        let replica = self.hub.replica_mut(&space);
        let finish = match replica {
            Some(replica) => {
                replica.tick(now);
                job(Some(replica))
            }
            None => job(None),
        };
        let commit = HubInput::LocalCommit {
            space: space.clone(),
        };
        self.hub.handle_input(now, commit);
        self.pump();
        (space, finish, flush)
    }

    /// Feeds one input to the hub and carries out what it asks.
    fn input(&mut self, input: HubInput<PeerId>) {
        self.hub.handle_input(wall_clock(), input);
        self.pump();
    }

    /// Starts fsyncing, on a blocking thread, every space with records not
    /// yet synced; `writers` are answered when it is done (at once when
    /// there is nothing to fsync: `None`).
    fn start_flush(&mut self, writers: Vec<Waiter>) -> Option<Flushing> {
        let writers = writers.into_iter().map(|(s, f, _)| (s, f)).collect();
        let disks = self.spaces.iter_mut().map(|(n, s)| (n, &mut s.disk));
        Flushing::start(disks, writers)
    }

    /// Confirms a finished flush to its replicas and answers its writers.
    fn flushed(&mut self, mut flush: Flushing, done: FlushDone) {
        match done {
            Ok(outcomes) => {
                for (name, outcome) in outcomes {
                    if let Some(took) = outcome.took {
                        self.latency.fsync.record(took);
                    }
                    let (Some(state), Some(replica)) =
                        (self.spaces.get_mut(&name), self.hub.replica_mut(&name))
                    else {
                        continue;
                    };
                    if let Err(error) = state.disk.finish_sync(replica, outcome) {
                        tracing::warn!(space = %name, %error, "fsyncing the space's storage failed");
                        flush.failed.insert(name, error);
                    }
                }
            }
            // Nothing is known durable; the next flush covers it all again.
            Err(error) => {
                tracing::warn!(%error, "flush task failed");
                for (space, _) in &flush.writers {
                    flush.failed.insert(space.clone(), error.to_string());
                }
            }
        }
        answer(flush.writers, &flush.failed);
        // What a failed fsync left unsynced is tried again after the delay.
        if self.flush_at.is_none() && self.spaces.values().any(|s| s.disk.unsynced()) {
            self.flush_at = Some(Instant::now() + self.config.flush_delay);
        }
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
}
