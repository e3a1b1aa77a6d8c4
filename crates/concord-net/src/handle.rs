//! The application's side of the driver: a cheap, clonable handle that sends
//! commands to the driver task and awaits answers. Owns no state of its own.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use concord_state::{Delivery, Replica};
use concord_storage::Storage;
use futures::Stream;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Command, Finish, Flush, NetError, SpaceOptions};
use crate::latency::{Latency, LatencyCounters};
use crate::stats::SpaceStats;
use crate::traffic::{Traffic, TrafficCounters};

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its libp2p identity.
    pub peer_id: PeerId,
    /// Address of (one of) its connections.
    pub address: Option<Multiaddr>,
    /// Smoothed round trip of directed sync frames to it (sent until
    /// acknowledged), once one was acknowledged.
    pub rtt: Option<std::time::Duration>,
    /// Bytes of directed sync frames sent to it since it connected (the
    /// fast path publishes to a topic, not to a peer: not counted here).
    pub sent_bytes: u64,
    /// Bytes of directed frames and gossip it sent or relayed since it
    /// connected.
    pub received_bytes: u64,
}

/// Resolves once the writes of a [`NetHandle::commit`] are fsynced.
#[derive(Debug)]
pub struct Durability(oneshot::Receiver<Result<(), NetError>>);

impl Durability {
    /// Waits for the fsync.
    ///
    /// # Errors
    /// Writing or fsyncing the space failed, or the driver stopped.
    pub async fn wait(self) -> Result<(), NetError> {
        self.0.await.map_err(|_| NetError::Stopped)?
    }
}

/// Handle to a running network driver. Dropping every handle stops the driver.
#[derive(Debug, Clone)]
pub struct NetHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
    pub(crate) traffic: Arc<TrafficCounters>,
    pub(crate) latency: Arc<LatencyCounters>,
}

/// A stream of subscription deliveries (see [`NetHandle::subscribe`]).
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Delivery>,
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.rx.poll_recv(cx)
    }
}

impl NetHandle {
    /// This node's libp2p identity.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Bytes and messages the driver sent and received so far, per
    /// protocol (see [`Traffic`] for what is counted). Reads shared
    /// counters: it does not wait for the driver.
    pub fn traffic(&self) -> Traffic {
        self.traffic.read()
    }

    /// Histograms of how long the driver took to apply received frames
    /// and to fsync spaces (see [`Latency`]). Reads shared counters: it
    /// does not wait for the driver.
    pub fn latency(&self) -> Latency {
        self.latency.read()
    }

    /// Every open space's counters: changes, pending changes, epoch,
    /// peers, bytes on disk, records waiting for their fsync.
    pub async fn space_stats(&self) -> Result<Vec<SpaceStats>, NetError> {
        self.ask(|reply| Command::SpaceStats { reply }).await
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Starts replicating a space held by `replica`, persisting it on
    /// `storage`: `replica` must have been rebuilt from what `storage` holds
    /// ([`Replica::recover`] from [`Storage::load`]'s snapshot and records).
    /// The driver keeps both: it carries out every persist op the replica
    /// hands out on `storage`, fsyncs off its task, and confirms them
    /// ([`Replica::persisted`]). An in-memory replica ([`Replica::new`])
    /// hands out nothing, and `storage` then stays untouched.
    pub async fn open_space(
        &self,
        replica: Replica,
        storage: Box<dyn Storage>,
        options: SpaceOptions,
    ) -> Result<(), NetError> {
        self.ask(|reply| Command::OpenSpace {
            replica: Box::new(replica),
            storage,
            options,
            reply,
        })
        .await?
    }

    /// Runs `f` on a space's replica inside the driver, then pushes any
    /// changes it committed to peers at once (the fast path), writes them to
    /// the space's storage and fsyncs it; returns once the fsync is done, so
    /// whatever `f` wrote is durable by then (an error if writing or
    /// fsyncing failed). The push and the fsync overlap: peers may hold a
    /// change before it is on this node's disk, which incarnations make safe
    /// (DESIGN §5).
    pub async fn with_replica<R: Send + 'static>(
        &self,
        space: &str,
        f: impl FnOnce(&mut Replica) -> R + Send + 'static,
    ) -> Result<R, NetError> {
        let (value, durable) = self.commit(space, f).await?;
        durable.wait().await?;
        Ok(value)
    }

    /// Like [`NetHandle::with_replica`], but answers as soon as `f` ran:
    /// whatever it committed is on its way to peers, and the returned
    /// [`Durability`] resolves once it is fsynced here. For writes whose
    /// caller has more to do before it needs them on disk (a lock holder
    /// releasing while its last record is fsynced).
    pub async fn commit<R: Send + 'static>(
        &self,
        space: &str,
        f: impl FnOnce(&mut Replica) -> R + Send + 'static,
    ) -> Result<(R, Durability), NetError> {
        self.job(space, Flush::Now, f).await
    }

    /// Like [`NetHandle::commit`], but what `f` wrote starts no fsync of
    /// its own: it goes to disk with the next one (another write's, or the
    /// periodic flush of received changes, within `flush_delay`). For
    /// writes nobody waits on (a lock's mirror, a step's start), so that
    /// the write a caller does wait on next does not queue behind their
    /// fsync; and for reads.
    pub async fn commit_lazy<R: Send + 'static>(
        &self,
        space: &str,
        f: impl FnOnce(&mut Replica) -> R + Send + 'static,
    ) -> Result<(R, Durability), NetError> {
        self.job(space, Flush::Later, f).await
    }

    async fn job<R: Send + 'static>(
        &self,
        space: &str,
        flush: Flush,
        f: impl FnOnce(&mut Replica) -> R + Send + 'static,
    ) -> Result<(R, Durability), NetError> {
        let (committed, rx) = oneshot::channel();
        let (flushed, durable) = oneshot::channel();
        let space_name = space.to_owned();
        let job = Box::new(move |replica: Option<&mut Replica>| -> Finish {
            let _ = committed.send(match replica {
                Some(r) => Ok(f(r)),
                None => Err(NetError::UnknownSpace(space_name)),
            });
            Box::new(move |result: Result<(), NetError>| {
                let _ = flushed.send(result);
            })
        });
        self.tx
            .send(Command::With {
                space: space.to_owned(),
                job,
                flush,
            })
            .await
            .map_err(|_| NetError::Stopped)?;
        let value = rx.await.map_err(|_| NetError::Stopped)??;
        Ok((value, Durability(durable)))
    }

    /// Subscribes to events on a space's channels matching the glob `pattern`.
    /// At most `capacity` deliveries wait in the stream; past that the
    /// replica's own bounded buffer holds them and reports `Lagged` on overflow.
    pub async fn subscribe(
        &self,
        space: &str,
        pattern: &str,
        capacity: usize,
    ) -> Result<Subscription, NetError> {
        let rx = self
            .ask(|reply| Command::Subscribe {
                space: space.to_owned(),
                pattern: pattern.to_owned(),
                capacity: capacity.max(1),
                reply,
            })
            .await??;
        Ok(Subscription { rx })
    }

    /// Bytes the space occupies on its storage (snapshot + log).
    pub async fn bytes_on_disk(&self, space: &str) -> Result<u64, NetError> {
        self.ask(|reply| Command::BytesOnDisk {
            space: space.to_owned(),
            reply,
        })
        .await?
    }

    /// Currently connected peers, with the bytes exchanged with each and
    /// its round trip.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }

    /// Dials a peer address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Fsyncs every space's storage and stops the driver; returns the
    /// replicas so the caller can inspect them (their storages are closed).
    pub async fn shutdown(&self) -> Result<Vec<Replica>, NetError> {
        self.ask(|reply| Command::Shutdown { reply }).await?
    }
}
