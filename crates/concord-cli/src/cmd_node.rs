//! `concord node`: runs one node until SIGINT/SIGTERM and serves the client
//! commands on the control socket (see [`crate::control`]).
//!
//! This module owns the node process's lifecycle (start, startup lines,
//! signal handling, graceful shutdown) and the server side of the control
//! protocol. It never prints anything but the startup lines to stdout and
//! never implements replication: every request is answered through the
//! `concord` facade.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use concord::{ChannelKind, Delivery, LeasePeer, Multiaddr, Node, NodeId, Origin, PeerId, Space};
use concord_state::Replica;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::control::{
    self, ChannelRow, EphemeralPutResult, EpochRow, ExportFormat, ExportResult, GetResult,
    InspectReport, LockGranted, LockReleased, PeerRow, PutResult, QueueStats, Reply, Request,
    SpaceReport, WatchItem, WriterRow,
};

/// The channel that lists unresolved conflicts; it is never declared, so it
/// reads as an empty list rather than as an unknown channel.
const CONFLICTS_PATH: &str = "coordination/conflicts";

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the node waits for its listen addresses at start.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// `--allow SPACE=PEERID,PEERID`: the only peers that may sync SPACE.
#[derive(Debug, Clone)]
pub struct Allow {
    space: String,
    peers: Vec<PeerId>,
}

impl std::str::FromStr for Allow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (space, list) = s
            .split_once('=')
            .ok_or_else(|| format!("expected SPACE=PEERID[,PEERID...], got {s:?}"))?;
        let peers = list
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().map_err(|e| format!("bad peer id {p:?}: {e}")))
            .collect::<Result<Vec<PeerId>, String>>()?;
        Ok(Allow {
            space: space.to_owned(),
            peers,
        })
    }
}

/// `--lease-peer NODE=MULTIADDR/p2p/PEERID`: one member of the lease quorum,
/// its lease id (1..=65535, unique in the set) and where its lease swarm
/// listens, ending in its peer id.
#[derive(Debug, Clone)]
pub struct LeasePeerArg(LeasePeer);

impl std::str::FromStr for LeasePeerArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (node, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NODE=MULTIADDR/p2p/PEERID, got {s:?}"))?;
        let node: u16 = node
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("lease node id must be 1..=65535, got {node:?}"))?;
        let (addr, peer_id) = addr.rsplit_once("/p2p/").ok_or_else(|| {
            format!("the lease peer address must end in /p2p/PEERID (see `concord id`), got {s:?}")
        })?;
        let addr: Multiaddr = addr
            .parse()
            .map_err(|e| format!("bad multiaddr {addr:?}: {e}"))?;
        let peer_id: PeerId = peer_id
            .parse()
            .map_err(|e| format!("bad peer id {peer_id:?}: {e}"))?;
        Ok(LeasePeerArg(LeasePeer {
            node: NodeId(node),
            peer_id,
            addr,
        }))
    }
}

/// Options of `concord node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Address to listen on (repeatable); default `/ip4/127.0.0.1/tcp/0`.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peer to dial and keep redialing (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub peer: Vec<Multiaddr>,
    /// Space to open at start (repeatable); others open on first use.
    #[arg(long, value_name = "NAME")]
    pub space: Vec<String>,
    /// Restrict SPACE to these peers: `SPACE=PEERID,PEERID` (repeatable).
    #[arg(long, value_name = "SPACE=PEERS")]
    pub allow: Vec<Allow>,
    /// Discover peers on the local network with mDNS.
    #[arg(long)]
    pub mdns: bool,
    /// A member of the lease quorum, this node included:
    /// `NODE=MULTIADDR/p2p/PEERID` (repeatable; the same list on every lease
    /// peer). Without it the node is a lease quorum of its own.
    #[arg(long, value_name = "NODE=ADDR")]
    pub lease_peer: Vec<LeasePeerArg>,
    /// Longest lease ttl granted, and the lease service's quiet period after
    /// a restart; the same on every lease peer.
    #[arg(long, value_name = "SECS")]
    pub lease_max_ttl: Option<u64>,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics,
    /// e.g. `127.0.0.1:9464`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// What the node prints on stdout once it is ready.
#[derive(Serialize)]
struct Startup {
    peer_id: String,
    listen: Vec<String>,
}

/// `concord id`: prints the peer id of the node in `data` (`peer_id=<id>`,
/// or `{"peer_id": ...}` with `--json`), creating its identity if needed.
pub fn id(data: &Path, json: bool) -> Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let peer_id = Node::peer_id_in(data)
        .with_context(|| format!("loading the identity in {}", data.display()))?;
    if json {
        println!("{}", serde_json::json!({ "peer_id": peer_id.to_string() }));
    } else {
        println!("peer_id={peer_id}");
    }
    Ok(())
}

/// Runs a node in `data` until SIGINT or SIGTERM.
pub fn run(data: &Path, args: NodeArgs, json: bool) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(serve(data, args, json))
}

async fn serve(data: &Path, args: NodeArgs, json: bool) -> Result<()> {
    let socket = control::socket_path(data);
    // Before touching the data dir: a second node would bump the first's incarnation.
    claim_socket(&socket, data)?;
    let metrics = match args.metrics {
        Some(addr) => Some(crate::metrics::Bound::bind(addr).await?),
        None => None,
    };
    let mut builder = Node::builder().data_dir(data).mdns(args.mdns);
    let listen = if args.listen.is_empty() {
        vec!["/ip4/127.0.0.1/tcp/0".parse()?]
    } else {
        args.listen
    };
    let wanted = listen.len();
    for addr in listen {
        builder = builder.listen(addr);
    }
    for addr in args.peer {
        builder = builder.bootstrap(addr);
    }
    for allow in args.allow {
        builder = builder.allow(&allow.space, allow.peers);
    }
    if !args.lease_peer.is_empty() {
        builder = builder.lease_peers(args.lease_peer.into_iter().map(|p| p.0).collect());
    }
    if let Some(secs) = args.lease_max_ttl {
        builder = builder.lease_max_ttl(Duration::from_secs(secs));
    }
    let node = builder
        .build()
        .await
        .with_context(|| format!("starting a node in {}", data.display()))?;
    let server = Arc::new(Server {
        node,
        spaces: tokio::sync::Mutex::new(BTreeMap::new()),
    });
    let metrics = metrics.map(|bound| bound.serve(server.node.stats()));
    let served = run_server(&server, &socket, wanted, &args.space, json).await;
    if let Some(metrics) = metrics {
        metrics.stop().await;
    }
    let _ = std::fs::remove_file(&socket);
    let server = Arc::into_inner(server).context("control connections outlived the node")?;
    let stopped = server
        .node
        .shutdown()
        .await
        .context("shutting the node down");
    served.and(stopped)
}

/// Refuses to start beside a live node; removes a stale socket.
fn claim_socket(socket: &Path, data: &Path) -> Result<()> {
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => bail!(
            "a node is already running in {} (its control socket answers)",
            data.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => match std::fs::remove_file(socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing stale socket {}", socket.display()))
            }
            _ => Ok(()),
        },
    }
}

/// Opens the spaces, binds the socket, prints the startup lines and serves
/// until a signal; every connection task has ended when it returns.
async fn run_server(
    server: &Arc<Server>,
    socket: &Path,
    wanted: usize,
    spaces: &[String],
    json: bool,
) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let addrs = wait_listening(&server.node, wanted).await?;
    for name in spaces {
        server.space(name).await?;
    }
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("binding the control socket {}", socket.display()))?;
    print_startup(&server.node, &addrs, json)?;
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tasks.spawn(connection(Arc::clone(server), stream));
                }
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next() => {}
        }
    }
    tracing::info!("signal received; shutting down");
    drop(listener);
    tasks.shutdown().await;
    Ok(())
}

/// Waits until the node listens on `wanted` addresses (one requested address
/// may expand to several, e.g. `0.0.0.0`), up to [`LISTEN_TIMEOUT`]; past it,
/// goes on with what it has, or fails if that is nothing.
async fn wait_listening(node: &Node, wanted: usize) -> Result<Vec<Multiaddr>> {
    let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
    loop {
        let addrs = node.listen_addrs().await?;
        if addrs.len() >= wanted {
            return Ok(addrs);
        }
        if tokio::time::Instant::now() >= deadline {
            if addrs.is_empty() {
                bail!("the node is not listening after {LISTEN_TIMEOUT:?} (address in use?)");
            }
            tracing::warn!(
                listening = addrs.len(),
                wanted,
                "not every listen address came up"
            );
            return Ok(addrs);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn print_startup(node: &Node, addrs: &[Multiaddr], json: bool) -> Result<()> {
    use std::io::Write;
    let startup = Startup {
        peer_id: node.peer_id().to_string(),
        listen: addrs.iter().map(ToString::to_string).collect(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&startup)?)?;
    } else {
        writeln!(out, "peer_id={}", startup.peer_id)?;
        for addr in &startup.listen {
            writeln!(out, "listen={addr}")?;
        }
    }
    out.flush().context("writing the startup lines")
}

/// The node plus the spaces the control server opened on it.
struct Server {
    node: Node,
    /// Opening goes through this lock so two requests never race to open one space.
    spaces: tokio::sync::Mutex<BTreeMap<String, Space>>,
}

impl Server {
    /// The space `name`, opened on first use.
    async fn space(&self, name: &str) -> Result<Space> {
        let mut spaces = self.spaces.lock().await;
        if let Some(space) = spaces.get(name) {
            return Ok(space.clone());
        }
        let space = self
            .node
            .space(name)
            .await
            .with_context(|| format!("opening space {name:?}"))?;
        spaces.insert(name.to_owned(), space.clone());
        Ok(space)
    }

    /// Answers every request but `watch`.
    async fn answer(&self, request: Request) -> Result<Value> {
        Ok(match request {
            Request::Put {
                space,
                path,
                value,
                ttl_ms: Some(ttl_ms),
            } => {
                let handle = self
                    .space(&space)
                    .await?
                    .ephemeral::<Value>(&path, Duration::from_millis(ttl_ms))?;
                let receipt = handle.set(&value).await?;
                serde_json::to_value(EphemeralPutResult {
                    space,
                    path,
                    hlc: receipt.hlc.to_string(),
                    ttl_ms: receipt.expires_at.0.saturating_sub(receipt.hlc.wall),
                    ephemeral: true,
                })?
            }
            Request::Put {
                space,
                path,
                value,
                ttl_ms: None,
            } => {
                let handle = self.space(&space).await?;
                let receipt = handle.put(&path, value).await?;
                let seq = receipt.seq;
                let durable = handle.with(move |r| r.durable_seq() >= seq).await?;
                serde_json::to_value(PutResult {
                    space,
                    path,
                    seq: receipt.seq,
                    change: receipt.change.to_string(),
                    hlc: receipt.hlc.to_string(),
                    durable,
                })?
            }
            Request::Get { space, path } => {
                let found = {
                    let path = path.clone();
                    self.space(&space)
                        .await?
                        .with(move |r| visible_value(r, &path))
                        .await??
                };
                let value = match found {
                    Some(value) => value,
                    None if path == CONFLICTS_PATH => Value::Array(Vec::new()),
                    None => bail!(
                        "no channel {path} in space {space:?} (nothing was ever written there)"
                    ),
                };
                serde_json::to_value(GetResult { value })?
            }
            Request::Inspect { space, writers } => {
                serde_json::to_value(self.inspect(space, writers).await?)?
            }
            Request::Export { space, format } => {
                let space = self.space(&space).await?;
                let result = match format {
                    ExportFormat::Json => ExportResult::Json(space.with(visible_values).await?),
                    ExportFormat::Automerge => {
                        ExportResult::Automerge(space.with(|r| hex::encode(r.doc().save())).await?)
                    }
                };
                serde_json::to_value(result)?
            }
            Request::Watch { .. } | Request::Lock { .. } | Request::Backup { .. } => {
                bail!("watch, lock and backup are served by their own loops")
            }
        })
    }

    async fn inspect(&self, space: Option<String>, writers: bool) -> Result<InspectReport> {
        let spaces = match space {
            Some(name) => vec![self.space(&name).await?],
            None => self.spaces.lock().await.values().cloned().collect(),
        };
        let mut reports = Vec::with_capacity(spaces.len());
        for space in spaces {
            let bytes_on_disk = space.bytes_on_disk().await?;
            let report = space.with(move |r| space_report(r, bytes_on_disk, writers));
            reports.push(report.await?);
        }
        Ok(InspectReport {
            peer_id: self.node.peer_id().to_string(),
            actor: self.node.actor().to_hex_string(),
            listen: self
                .node
                .listen_addrs()
                .await?
                .iter()
                .map(ToString::to_string)
                .collect(),
            peers: self
                .node
                .peers()
                .await?
                .into_iter()
                .map(|p| PeerRow {
                    peer_id: p.peer_id.to_string(),
                    address: p.address.map(|a| a.to_string()),
                    rtt_ms: p.rtt.map(|rtt| rtt.as_secs_f64() * 1e3),
                    sent_bytes: p.sent_bytes,
                    received_bytes: p.received_bytes,
                })
                .collect(),
            spaces: reports,
        })
    }
}

/// A channel's visible value: `Some(null)` for a declared channel holding
/// nothing, `None` for a channel that was never declared or written.
fn visible_value(r: &mut Replica, path: &str) -> Result<Option<Value>, concord_state::StateError> {
    let value = r.get(path)?;
    Ok(match value {
        Some(v) => Some(v),
        None => r.spec(path)?.map(|_| Value::Null),
    })
}

/// Every declared channel's visible value, keyed by path.
fn visible_values(r: &mut Replica) -> BTreeMap<String, Value> {
    r.channels()
        .into_iter()
        .map(|(path, _)| {
            let value = r.get(&path).ok().flatten().unwrap_or(Value::Null);
            (path.to_string(), value)
        })
        .collect()
}

/// What `inspect` shows of a space; `bytes_on_disk` comes from its storage,
/// which the driver keeps; `writers` adds each channel's last writer.
fn space_report(r: &mut Replica, bytes_on_disk: u64, writers: bool) -> SpaceReport {
    let stats = r.stats();
    SpaceReport {
        name: r.space().to_owned(),
        vector_clock: r
            .vector_clock()
            .iter()
            .map(|(actor, seq)| (actor.to_hex_string(), seq))
            .collect(),
        channels: r
            .channels()
            .into_iter()
            .map(|(path, spec)| ChannelRow {
                value: r.get(&path).ok().flatten().unwrap_or(Value::Null),
                live: (spec.kind == ChannelKind::Ephemeral)
                    .then(|| r.ephemeral_values(&path).map_or(0, |v| v.len())),
                ttl_ms: spec.ttl_ms,
                writer: writers.then(|| last_writer(r, &path)).flatten(),
                path: path.to_string(),
                kind: spec.kind.to_string(),
                policy: spec.policy.to_string(),
                version: spec.version,
            })
            .collect(),
        queue: QueueStats {
            pending: stats.pending,
            subscribers: stats.subscribers,
            conflicts: stats.conflicts,
            changes: stats.changes,
            bytes_on_disk,
            channels: stats.channels,
            actors: stats.actors,
            ephemeral_values: stats.ephemeral_values as u64,
            ephemeral_dropped: stats.ephemeral_dropped,
        },
        epoch: {
            let e = r.epoch();
            EpochRow {
                id: e.id.to_string(),
                number: e.number,
                cut_changes: e.cut.total(),
                changes: e.changes,
                bytes: e.bytes,
                ops: e.ops,
                retained: e.retained.iter().map(ToString::to_string).collect(),
            }
        },
    }
}

/// The causally last write to a channel in the space's history.
fn last_writer(r: &Replica, path: &concord_state::ChannelPath) -> Option<WriterRow> {
    let last = r.history(path).ok()?.pop()?;
    Some(WriterRow {
        actor: last.actor,
        seq: last.seq,
        hlc: last.hlc.map(|h| h.to_string()),
    })
}

fn watch_item(delivery: Delivery) -> WatchItem {
    match delivery {
        Delivery::Event(e) => WatchItem::Event {
            path: e.path.to_string(),
            key: e.key,
            old: e.old,
            new: e.new,
            origin: match e.origin {
                Origin::Local => "local",
                Origin::Remote => "remote",
            }
            .to_owned(),
            actor: e.position.actor.to_hex_string(),
            seq: e.position.seq,
            hlc: e.position.hlc.map(|h| h.to_string()),
            ephemeral: e.ephemeral,
        },
        Delivery::Lagged { missed } => WatchItem::Lagged { missed },
    }
}

/// Serves one control connection: one request, one reply (or a stream).
async fn connection(server: Arc<Server>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let request = match read_request(&mut read).await {
        Ok(request) => request,
        Err(e) => {
            let _ = send(&mut write, &Reply::Error(format!("{e:#}"))).await;
            return;
        }
    };
    let request = match request {
        Request::Watch { space, pattern } => {
            watch(&server, space, pattern, read, write).await;
            return;
        }
        Request::Lock {
            space,
            resource,
            ttl_ms,
        } => {
            lock(&server, &space, resource, ttl_ms, read, write).await;
            return;
        }
        Request::Backup { space } => {
            crate::cmd_backup::serve(server.space(&space).await, &mut write).await;
            return;
        }
        other => other,
    };
    let reply = match server.answer(request).await {
        Ok(value) => Reply::Ok(value),
        Err(e) => Reply::Error(format!("{e:#}")),
    };
    let _ = send(&mut write, &reply).await;
}

async fn read_request(read: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Result<Request> {
    let mut line = String::new();
    let n = tokio::time::timeout(
        REQUEST_TIMEOUT,
        (&mut *read)
            .take(control::MAX_REQUEST_BYTES)
            .read_line(&mut line),
    )
    .await
    .context("no request within the timeout")?
    .context("reading the request")?;
    if n == 0 {
        bail!("empty request");
    }
    if !line.ends_with('\n') {
        bail!("request longer than {} bytes", control::MAX_REQUEST_BYTES);
    }
    serde_json::from_str(&line).context("malformed request")
}

/// Streams events until the client hangs up or the node stops.
async fn watch(
    server: &Server,
    space: String,
    pattern: String,
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) {
    let subscribed = async {
        let subscription = server.space(&space).await?.subscribe(&pattern).await?;
        anyhow::Ok(subscription)
    }
    .await;
    let mut events = match subscribed {
        Ok(events) => events,
        Err(e) => {
            let _ = send(&mut write, &Reply::Error(format!("{e:#}"))).await;
            return;
        }
    };
    let ack = WatchItem::Watching { space, pattern };
    if send_item(&mut write, &ack).await.is_err() {
        return;
    }
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            delivery = events.next() => {
                let Some(delivery) = delivery else {
                    let _ = send(&mut write, &Reply::Error("the node stopped".into())).await;
                    return;
                };
                if send_item(&mut write, &watch_item(delivery)).await.is_err() {
                    return;
                }
            }
            n = read.read(&mut scratch) => {
                if !matches!(n, Ok(k) if k > 0) {
                    return; // the client hung up
                }
            }
        }
    }
}

/// Holds a lease for a `lock` client until it hangs up (see
/// [`control`]): takes it (giving up if the client leaves while waiting),
/// renews it each time half of its remaining validity has passed, releases
/// it.
async fn lock(
    server: &Server,
    space: &str,
    resource: String,
    ttl_ms: u64,
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) {
    let ttl = Duration::from_millis(ttl_ms);
    let taken = async {
        let space = server.space(space).await?;
        anyhow::Ok(server.node.lock(&space, &resource, ttl).await?)
    };
    // The client sends nothing until it is done: any read that completes
    // (bytes or end of stream) means it is done or gone.
    let mut scratch = [0u8; 256];
    let held = tokio::select! {
        held = taken => held,
        _ = read.read(&mut scratch) => return,
    };
    let mut held = match held {
        Ok(held) => held,
        Err(e) => {
            let _ = send(&mut write, &Reply::Error(format!("{e:#}"))).await;
            return;
        }
    };
    let token = held.token().get();
    let granted = serde_json::to_value(LockGranted {
        resource: resource.clone(),
        token,
    });
    let announced = match granted {
        Ok(granted) => send(&mut write, &Reply::Ok(granted)).await,
        Err(e) => Err(e.into()),
    };
    if announced.is_ok() {
        loop {
            // Half of what is left, not half the ttl: taking or renewing
            // the lease may have used up a good part of the ttl already.
            let period = (held.valid_for() / 2).max(Duration::from_millis(1));
            tokio::select! {
                () = tokio::time::sleep(period) => {
                    if let Err(e) = held.renew().await {
                        let lost = Reply::Error(format!("lease lost: {e:#}"));
                        let _ = send(&mut write, &lost).await;
                        break;
                    }
                }
                _ = read.read(&mut scratch) => break,
            }
        }
    }
    let reply = match held.release().await {
        Ok(()) => serde_json::to_value(LockReleased { resource, token })
            .map_or_else(|e| Reply::Error(e.to_string()), Reply::Ok),
        Err(e) => Reply::Error(format!("{e:#}")),
    };
    let _ = send(&mut write, &reply).await;
}

async fn send_item(write: &mut (impl AsyncWrite + Unpin), item: &WatchItem) -> Result<()> {
    send(write, &Reply::Ok(serde_json::to_value(item)?)).await
}

async fn send(write: &mut (impl AsyncWrite + Unpin), reply: &Reply) -> Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await?;
    Ok(())
}
