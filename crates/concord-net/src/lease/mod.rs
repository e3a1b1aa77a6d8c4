//! Leases over the network: implementations of
//! [`concord_lease::LeaseBackend`] that do the I/O the sans-IO lease crate
//! leaves out.
//!
//! - [`QuorumLeaseBackend`]: the built-in quorum leases (DESIGN §4). Every
//!   configured lease peer runs a [`concord_lease::Acceptor`], whose promises
//!   are made durable (fsync) in the node's data dir before any reply that
//!   depends on them leaves, and a [`concord_lease::Proposer`] for the
//!   node's own requests. Peers talk the request-response protocol
//!   `/concord/lease/1` (see [`MAX_LEASE_MESSAGE_BYTES`]).
//! - [`RemoteLeaseBackend`]: leases from a quorum this node is not part of,
//!   taken through one of its lease peers over `/concord/lease-client/1`
//!   (at most [`MAX_CLIENT_CALLS`] under way and [`MAX_CLIENT_LEASES`] held
//!   per lease peer). This is how every member of a space takes the
//!   space's locks from the space's one quorum.
//! - `EtcdLeaseBackend` (cargo feature `etcd`): the same trait on a real
//!   etcd cluster, plus `EtcdServer`, a throwaway etcd for tests and
//!   benchmarks.
//!
//! This module owns the lease transport, the durable acceptor state file and
//! the mapping between libp2p identities and lease [`NodeId`]s. It must
//! never make a protocol decision (who gets a lease, when a lease ends,
//! which ballot to use: that is the machines' business), never release an
//! acceptor reply before the state it depends on is durable, and never feed
//! the machines a message it could not decode or that came from a peer
//! outside the configured set: such a message is a typed error, the peer is
//! disconnected and nothing it said is acted upon. (Anyone may connect to
//! make client calls; only configured lease peers take part in the
//! protocol.)
//!
//! # Why a swarm of its own
//!
//! The quorum backend runs as a small tokio task with its own libp2p
//! [`Swarm`](libp2p::Swarm) (TCP and QUIC, noise, yamux, `/concord/lease/1`
//! among the configured lease peers and `/concord/lease-client/1` for
//! everyone else), instead of a second
//! protocol inside the sync driver's behaviour. Reasons:
//!
//! - Lease timing must not queue behind replication: a lease message waiting
//!   behind a burst of large sync frames or a slow subscriber in the sync
//!   driver's loop eats into the holder's validity.
//! - The lease peers are a fixed, configured set with their own addresses,
//!   while sync peers come and go (bootstrap, mDNS); the lease swarm only
//!   takes protocol messages from configured peers.
//! - The sync driver stays untouched; a node that is not a lease peer pays
//!   nothing.
//!
//! The cost is one more listening address per lease peer and a second
//! connection between two nodes that are also sync peers. The same keypair
//! may serve both swarms (the node keeps one identity).

mod backend;
mod client;
#[cfg(feature = "etcd")]
mod etcd;
mod node;
mod remote;
mod store;
mod wire;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use concord_lease::{DriftBound, LeaseError, Millis, NodeId};
use libp2p::{Multiaddr, PeerId, identity};
use thiserror::Error;

pub use backend::QuorumLeaseBackend;
pub use client::{MAX_CLIENT_CALLS, MAX_CLIENT_LEASES};
#[cfg(feature = "etcd")]
pub use etcd::{ETCD_KEY_PREFIX, EtcdLeaseBackend, EtcdServer};
pub use remote::RemoteLeaseBackend;
pub use wire::MAX_LEASE_MESSAGE_BYTES;

/// One configured lease peer: who it is on the network and in the lease
/// protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasePeer {
    /// Its lease identity (packed into ballots and tokens; unique in the set).
    pub node: NodeId,
    /// Its libp2p identity.
    pub peer_id: PeerId,
    /// Where its lease swarm listens.
    pub addr: Multiaddr,
}

/// How to run a [`QuorumLeaseBackend`].
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    /// This node's identity; its peer id must be one of `peers`.
    pub keypair: identity::Keypair,
    /// Address the lease swarm listens on (this node's entry in `peers`).
    pub listen: Multiaddr,
    /// Every lease peer, this node included. Each runs an acceptor; a
    /// majority of them must answer for any lease to be granted.
    pub peers: Vec<LeasePeer>,
    /// Where the acceptor keeps its promises. Never wipe it while leases
    /// its old incarnation granted may be live: a lease peer that starts
    /// with an empty dir is trusted as brand new and skips the quiet period.
    pub data_dir: PathBuf,
    /// Longest ttl granted, and the quiet period of a restarted acceptor.
    /// Must be the same on every lease peer.
    pub max_ttl: Millis,
    /// How long one phase of an attempt waits for a majority, at least
    /// (longer for lease peers the proposer learned are slow); a release
    /// waits as long for every lease peer to confirm it.
    pub round_timeout: Millis,
    /// Base of the randomized backoff between attempts.
    pub retry_backoff: Millis,
    /// The assumed bound on clock drift between lease peers.
    pub drift: DriftBound,
}

impl QuorumConfig {
    /// A configuration with the lease protocol's defaults.
    pub fn new(
        keypair: identity::Keypair,
        listen: Multiaddr,
        peers: Vec<LeasePeer>,
        data_dir: impl Into<PathBuf>,
    ) -> QuorumConfig {
        QuorumConfig {
            keypair,
            listen,
            peers,
            data_dir: data_dir.into(),
            max_ttl: concord_lease::acceptor::DEFAULT_MAX_TTL,
            round_timeout: concord_lease::proposer::DEFAULT_ROUND_TIMEOUT,
            retry_backoff: concord_lease::proposer::DEFAULT_RETRY_BACKOFF,
            drift: DriftBound::DEFAULT,
        }
    }

    /// Configurations of `n` lease peers on 127.0.0.1 (TCP, free ports,
    /// fresh keys, `NodeId`s 1..=n, data dirs `data_root/lease-<i>`), for
    /// tests, benchmarks and demos on one machine.
    ///
    /// # Errors
    /// If no free port could be found, or `n` does not fit a `NodeId`.
    pub fn loopback(n: usize, data_root: &Path) -> io::Result<Vec<QuorumConfig>> {
        let mut members = Vec::with_capacity(n);
        for i in 1..=n {
            let node = u16::try_from(i)
                .map(NodeId)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many lease peers"))?;
            let keypair = identity::Keypair::generate_ed25519();
            let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_tcp_port()?)
                .parse()
                .map_err(io::Error::other)?;
            members.push((keypair, addr, node));
        }
        let peers: Vec<LeasePeer> = members
            .iter()
            .map(|(keypair, addr, node)| LeasePeer {
                node: *node,
                peer_id: keypair.public().to_peer_id(),
                addr: addr.clone(),
            })
            .collect();
        Ok(members
            .into_iter()
            .map(|(keypair, addr, node)| {
                let dir = data_root.join(format!("lease-{}", node.0));
                QuorumConfig::new(keypair, addr, peers.clone(), dir)
            })
            .collect())
    }
}

/// Why a lease backend could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LeaseNetError {
    /// The configuration is inconsistent; the text says how.
    #[error("invalid lease configuration: {0}")]
    Config(String),
    /// The lease machines refused the configuration.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The acceptor's state could not be read or prepared.
    #[error("lease state in {path}: {source}")]
    Storage {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The swarm could not be built or could not listen.
    #[error("lease transport: {0}")]
    Transport(String),
}

/// A node's monotonic lease clock: whole milliseconds since the backend
/// started. [`concord_lease::LeaseBackend::now`] and every `now` fed to the
/// machines read it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn start() -> Clock {
        Clock {
            origin: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The instant at which this clock reads `at` (`None` beyond the
    /// platform's range).
    pub(crate) fn instant(&self, at: Millis) -> Option<tokio::time::Instant> {
        self.origin.checked_add(Duration::from_millis(at.0))
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
/// the port, release it).
fn free_tcp_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}
