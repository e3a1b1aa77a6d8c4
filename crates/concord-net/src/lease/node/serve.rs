//! The lease node's `/concord/lease-client/1` side (see
//! [`super::super::client`]): running calls of clients through this node's
//! proposer, and making calls of this node's own to a lease peer.
//!
//! This module owns the bookkeeping of both: which client holds which
//! lease (a client may renew or release only its own), the bounds
//! [`MAX_CLIENT_CALLS`] and [`MAX_CLIENT_LEASES`], and the conversion of
//! expiries into time left. It must never decide a lease question: a
//! client's call becomes the same [`Command`] the node's own application
//! would send, and the proposer decides.

use std::time::Duration;

use concord_lease::{AcquireRequest, BackendError, Lease, Millis};
use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::super::client::{
    self, ClientAnswer, ClientCall, ClientFailure, MAX_CLIENT_CALLS, MAX_CLIENT_LEASES,
};
use super::{Command, Node, Reply};

/// How long a client waits for a lease peer's answer: longer than any
/// acquisition waits for a busy resource (`AcquireRequest::wait` as the
/// concord crate uses it) plus the proposer's rounds.
pub(super) const CLIENT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A client call under way: resolves to who asked, where to answer, what
/// was asked and the proposer's outcome.
pub(super) type Serving = BoxFuture<'static, Served>;

/// A finished client call.
pub(super) struct Served {
    peer: PeerId,
    channel: ResponseChannel<Vec<u8>>,
    outcome: Outcome,
}

enum Outcome {
    Granted(Result<Lease, BackendError>),
    Released(u64, Result<(), BackendError>),
}

/// A oneshot for a command's reply, and the future of its outcome.
fn await_reply<T: Send + 'static>(
    wrap: impl FnOnce(Result<T, BackendError>) -> Outcome + Send + 'static,
) -> (Reply<T>, BoxFuture<'static, Outcome>) {
    let (reply, answer) = oneshot::channel();
    let future =
        async move {
            wrap(answer.await.unwrap_or_else(|_| {
                Err(BackendError::Unavailable("the lease node stopped".into()))
            }))
        };
    (reply, future.boxed())
}

impl Node {
    /// Sends `call` to the lease peer `to` (at `addrs`); `reply` gets its
    /// answer.
    pub(super) fn call_lease_peer(
        &mut self,
        to: PeerId,
        addrs: Vec<Multiaddr>,
        call: &ClientCall,
        reply: Reply<ClientAnswer>,
    ) {
        let bytes = match client::encode(call) {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = reply.send(Err(BackendError::Other(e.to_string())));
                return;
            }
        };
        for addr in addrs {
            self.swarm.add_peer_address(to, addr);
        }
        let id = self.swarm.behaviour_mut().client.send_request(&to, bytes);
        self.calling.insert(id, reply);
    }

    pub(super) fn on_client_rpc(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => match client::decode::<ClientCall>(&request) {
                Ok(call) => self.serve(peer, call, channel),
                Err(e) => self.distrust(peer, &e),
            },
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(reply) = self.calling.remove(&request_id) else {
                    return;
                };
                match client::decode::<ClientAnswer>(&response) {
                    Ok(answer) => {
                        let _ = reply.send(Ok(answer));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(BackendError::Other(format!(
                            "lease peer {peer} answered garbage: {e}"
                        ))));
                        self.distrust(peer, &e);
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.calling.remove(&request_id) {
                    let _ = reply.send(Err(BackendError::Unavailable(format!(
                        "lease peer {peer} did not answer: {error}"
                    ))));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound lease client call failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Runs a client's call through the proposer, within the bounds.
    fn serve(&mut self, peer: PeerId, call: ClientCall, channel: ResponseChannel<Vec<u8>>) {
        if self.serving.len() >= MAX_CLIENT_CALLS {
            warn!(%peer, max = MAX_CLIENT_CALLS, "lease client call refused: too many under way");
            let busy = format!("lease peer busy: {MAX_CLIENT_CALLS} client calls under way");
            return self.respond(
                channel,
                &ClientAnswer::Failed(ClientFailure::Unavailable(busy)),
            );
        }
        let future = match call {
            ClientCall::Acquire {
                resource,
                ttl,
                permits,
                wait,
            } => {
                self.forget_expired_client_leases();
                if self.client_leases.len() >= MAX_CLIENT_LEASES {
                    warn!(%peer, max = MAX_CLIENT_LEASES, "lease client acquisition refused: too many client leases");
                    let full = format!("lease peer holds {MAX_CLIENT_LEASES} client leases");
                    return self.respond(
                        channel,
                        &ClientAnswer::Failed(ClientFailure::Unavailable(full)),
                    );
                }
                let (reply, future) = await_reply(Outcome::Granted);
                let request = AcquireRequest {
                    resource,
                    ttl,
                    permits,
                    wait,
                };
                self.on_command(Command::Acquire { request, reply });
                future
            }
            ClientCall::Renew { handle, ttl } => {
                let Some(lease) = self.client_lease(peer, handle) else {
                    return self.respond(channel, &ClientAnswer::Failed(ClientFailure::Expired));
                };
                let (reply, future) = await_reply(Outcome::Granted);
                self.on_command(Command::Renew { lease, ttl, reply });
                future
            }
            ClientCall::Release { handle, handoff } => {
                let Some(lease) = self.client_lease(peer, handle) else {
                    return self.respond(channel, &ClientAnswer::Failed(ClientFailure::Expired));
                };
                let (reply, future) = await_reply(move |r| Outcome::Released(handle, r));
                self.on_command(Command::Release {
                    lease,
                    handoff,
                    reply,
                });
                future
            }
        };
        self.serving.push(
            future
                .map(move |outcome| Served {
                    peer,
                    channel,
                    outcome,
                })
                .boxed(),
        );
    }

    /// The lease `peer` holds under `handle`, if it is its own.
    fn client_lease(&self, peer: PeerId, handle: u64) -> Option<Lease> {
        match self.client_leases.get(&handle) {
            Some((holder, lease)) if *holder == peer => Some(lease.clone()),
            _ => None,
        }
    }

    /// Drops the bookkeeping of client leases whose validity has passed
    /// (their clients stopped renewing).
    fn forget_expired_client_leases(&mut self) {
        let now = self.clock.now();
        self.client_leases
            .retain(|_, (_, lease)| lease.expires > now);
    }

    /// Sends a finished call's answer to its client.
    pub(super) fn answer_client(&mut self, served: Served) {
        let answer = match served.outcome {
            Outcome::Granted(Ok(lease)) => {
                let remaining = Millis(lease.expires.0.saturating_sub(self.clock.now().0));
                let handle = lease.handle.0;
                let answer = ClientAnswer::Granted {
                    token: lease.token,
                    remaining,
                    handle,
                    handoff: lease.handoff.clone(),
                };
                self.client_leases.insert(handle, (served.peer, lease));
                answer
            }
            Outcome::Granted(Err(e)) => ClientAnswer::Failed(e.into()),
            Outcome::Released(handle, result) => {
                self.client_leases.remove(&handle);
                match result {
                    Ok(()) => ClientAnswer::Released,
                    Err(e) => ClientAnswer::Failed(e.into()),
                }
            }
        };
        self.respond(served.channel, &answer);
    }

    fn respond(&mut self, channel: ResponseChannel<Vec<u8>>, answer: &ClientAnswer) {
        match client::encode(answer) {
            Ok(bytes) => {
                // A client that hung up misses its answer; a grant it
                // never learns of expires unrenewed.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .client
                    .send_response(channel, bytes);
            }
            Err(e) => warn!(error = %e, "lease client answer not encodable"),
        }
    }
}
