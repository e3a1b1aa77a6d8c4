//! `concord node`: runs one node until SIGINT/SIGTERM and serves the client
//! commands on the control socket (see [`crate::control`]).
//!
//! This module owns the node process's lifecycle (start, startup lines,
//! signal handling, graceful shutdown) and the server side of the control
//! protocol. It never prints anything but the startup lines to stdout and
//! never implements replication: every request is answered through the
//! `concord` facade.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use concord::{LeasePeer, Multiaddr, Node, NodeId, PeerId};
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use self::server::{Server, connection};
use crate::control;

mod server;

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
    let server = Arc::new(Server::new(node));
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
