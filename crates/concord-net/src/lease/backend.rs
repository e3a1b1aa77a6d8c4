//! [`QuorumLeaseBackend`]: the application's handle on a running quorum
//! lease node.
//!
//! This module owns the [`LeaseBackend`] face of the node: each call becomes
//! a command to the node task and waits for its answer. It must never hold
//! lease state of its own (the node task's proposer does) and never block a
//! thread.

use concord_lease::{
    AcquireRequest, BackendError, BoxFuture, Lease, LeaseBackend, Millis, NodeId, ProposerStats,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::client::{ClientAnswer, ClientCall};
use super::node::{self, Command, Reply};
use super::{Clock, LeaseNetError, QuorumConfig};

/// Quorum leases among a configured set of lease peers, over the network.
///
/// One per lease peer: it runs that peer's acceptor (voting on everyone's
/// requests) and its proposer (this node's own requests). A lease is granted
/// when a majority of the configured peers accepts it, so a minority
/// partition cannot acquire. See [`crate::lease`] for the transport and
/// [`concord_lease`] for the protocol and its clock-drift assumption.
#[derive(Debug)]
pub struct QuorumLeaseBackend {
    commands: mpsc::Sender<Command>,
    clock: Clock,
    node: NodeId,
    peer_id: PeerId,
    /// `None` once stopped.
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl QuorumLeaseBackend {
    /// Loads the acceptor state from `config.data_dir`, starts listening on
    /// `config.listen` and spawns the node task on the current tokio
    /// runtime (so it must be called from within one).
    ///
    /// A peer that restarts from a non-empty data dir refuses to vote for
    /// `config.max_ttl` (its quiet period; see
    /// [`concord_lease::acceptor`]).
    ///
    /// # Errors
    /// An inconsistent configuration (this node not among the peers, a peer
    /// listed twice, a bad quorum), an unreadable data dir, or a listen
    /// address the transport does not support.
    pub fn start(config: QuorumConfig) -> Result<QuorumLeaseBackend, LeaseNetError> {
        let peer_id = config.keypair.public().to_peer_id();
        let spawned = node::spawn(config)?;
        Ok(QuorumLeaseBackend {
            commands: spawned.commands,
            clock: spawned.clock,
            node: spawned.node,
            peer_id,
            task: std::sync::Mutex::new(Some(spawned.task)),
        })
    }

    /// This peer's lease identity.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// This peer's libp2p identity.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// This peer's proposer counters: grants, denials, renewals, renewal
    /// failures and losses of the requests it ran (this node's own and
    /// those of the clients it serves), and more (see [`ProposerStats`]).
    ///
    /// # Errors
    /// [`BackendError::Unavailable`] once the node stopped.
    pub async fn stats(&self) -> Result<ProposerStats, BackendError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// Stops the node and waits until its swarm is gone (its port is free
    /// and its data dir no longer written). Leases it holds are not
    /// released; they expire at the acceptors.
    pub async fn shutdown(self) {
        self.stop().await;
    }

    /// Like [`QuorumLeaseBackend::shutdown`], through a shared handle:
    /// every call after it fails as unavailable.
    pub async fn stop(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(task) = task else {
            return;
        };
        if self.commands.send(Command::Stop).await.is_err() {
            tracing::debug!("lease node already gone");
        }
        if let Err(e) = task.await {
            tracing::error!(error = %e, "lease node task failed");
        }
    }

    /// Sends `call` to the lease peer `to` through this node's lease swarm,
    /// as its client, and returns the answer.
    pub(super) async fn call_lease_peer(
        &self,
        to: PeerId,
        addrs: Vec<Multiaddr>,
        call: ClientCall,
    ) -> Result<ClientAnswer, BackendError> {
        self.call(|reply| Command::Call {
            to,
            addrs,
            call,
            reply,
        })
        .await
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, BackendError> {
        let stopped = || BackendError::Unavailable("the lease node has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl LeaseBackend for QuorumLeaseBackend {
    fn now(&self) -> Millis {
        self.clock.now()
    }

    fn acquire_with(&self, request: AcquireRequest) -> BoxFuture<'_, Result<Lease, BackendError>> {
        Box::pin(self.call(|reply| Command::Acquire { request, reply }))
    }

    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Millis,
    ) -> BoxFuture<'a, Result<Lease, BackendError>> {
        Box::pin(self.call(move |reply| Command::Renew {
            lease: lease.clone(),
            ttl,
            reply,
        }))
    }

    fn release_with(
        &self,
        lease: Lease,
        handoff: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.call(|reply| Command::Release {
            lease,
            handoff,
            reply,
        }))
    }
}
