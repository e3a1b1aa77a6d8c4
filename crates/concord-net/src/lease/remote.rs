//! [`RemoteLeaseBackend`]: leases from a quorum this node is not part of,
//! taken through one of its lease peers as a client (see
//! [`super::client`]).
//!
//! This module owns the mapping between the handles it gives out and the
//! lease peer and handle behind each, and the translation of a grant's
//! time left into an expiry on this node's clock. It must never make a
//! lease decision (the lease peer's proposer does) and never report a
//! lease as valid longer than the lease peer does: time left is counted
//! from when the call was sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use concord_lease::{
    AcquireRequest, BackendError, BoxFuture, Lease, LeaseBackend, LeaseHandle, Millis,
};
use libp2p::{Multiaddr, PeerId};

use super::QuorumLeaseBackend;
use super::client::{ClientAnswer, ClientCall, MAX_CLIENT_LEASES};

/// Leases of a quorum of lease peers this node does not belong to.
///
/// Every call goes, through `local`'s lease swarm, to a lease peer of the
/// quorum, which runs it through its own proposer: leases taken here
/// exclude those taken by the lease peers and by every other client. An
/// acquisition tries the lease peers in turn until one answers; renewals
/// and the release go to the one that granted.
#[derive(Debug)]
pub struct RemoteLeaseBackend {
    local: Arc<QuorumLeaseBackend>,
    members: Vec<(PeerId, Vec<Multiaddr>)>,
    grants: Mutex<Grants>,
}

#[derive(Debug, Default)]
struct Grants {
    next: u64,
    /// Our handle → (index of the lease peer, its handle, our expiry).
    held: HashMap<u64, (usize, u64, Millis)>,
}

impl RemoteLeaseBackend {
    /// Leases from the lease peers `members` (each with the addresses its
    /// lease swarm listens on), reached through `local`'s lease swarm.
    ///
    /// # Errors
    /// [`BackendError::Unavailable`] if `members` is empty.
    pub fn new(
        local: Arc<QuorumLeaseBackend>,
        members: Vec<(PeerId, Vec<Multiaddr>)>,
    ) -> Result<RemoteLeaseBackend, BackendError> {
        if members.is_empty() {
            return Err(BackendError::Unavailable(
                "a quorum of no lease peers".into(),
            ));
        }
        Ok(RemoteLeaseBackend {
            local,
            members,
            grants: Mutex::new(Grants::default()),
        })
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, Grants> {
        self.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn call(&self, member: usize, call: ClientCall) -> Result<ClientAnswer, BackendError> {
        let (peer, addrs) = &self.members[member];
        self.local.call_lease_peer(*peer, addrs.clone(), call).await
    }

    /// Records a grant from `member` (sent at `sent`) under `ours`, or a
    /// fresh handle; returns the lease as this node sees it.
    fn granted(
        &self,
        answer: ClientAnswer,
        member: usize,
        sent: Millis,
        ours: Option<u64>,
        template: (concord_lease::Resource, concord_lease::Permits),
    ) -> Result<Lease, BackendError> {
        match answer {
            ClientAnswer::Granted {
                token,
                remaining,
                handle,
                handoff,
            } => {
                let expires = sent.saturating_add(remaining);
                let mut grants = self.grants();
                let now = self.local.now();
                grants.held.retain(|_, (_, _, until)| *until > now);
                let ours = ours.unwrap_or_else(|| {
                    grants.next += 1;
                    grants.next
                });
                grants.held.insert(ours, (member, handle, expires));
                Ok(Lease {
                    resource: template.0,
                    token,
                    expires,
                    permits: template.1,
                    handle: LeaseHandle(ours),
                    handoff,
                })
            }
            ClientAnswer::Failed(f) => Err(f.into()),
            ClientAnswer::Released => Err(BackendError::Other(
                "the lease peer answered a grant with a release".into(),
            )),
        }
    }

    async fn acquire_remote(&self, request: AcquireRequest) -> Result<Lease, BackendError> {
        if self.grants().held.len() >= MAX_CLIENT_LEASES {
            return Err(BackendError::Unavailable(format!(
                "this node holds {MAX_CLIENT_LEASES} leases through lease peers"
            )));
        }
        let mut last = None;
        for member in 0..self.members.len() {
            let sent = self.local.now();
            let call = ClientCall::Acquire {
                resource: request.resource.clone(),
                ttl: request.ttl,
                permits: request.permits,
                wait: request.wait,
            };
            match self.call(member, call).await {
                Ok(answer) => {
                    let template = (request.resource.clone(), request.permits);
                    match self.granted(answer, member, sent, None, template) {
                        Err(BackendError::Unavailable(why)) => last = Some(why),
                        other => return other,
                    }
                }
                Err(BackendError::Unavailable(why)) => last = Some(why),
                Err(e) => return Err(e),
            }
        }
        Err(BackendError::Unavailable(format!(
            "no lease peer of the quorum could grant ({} tried); last: {}",
            self.members.len(),
            last.unwrap_or_default()
        )))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Millis) -> Result<Lease, BackendError> {
        let ours = lease.handle.0;
        let Some((member, handle, _)) = self.grants().held.get(&ours).copied() else {
            return Err(BackendError::Expired);
        };
        let sent = self.local.now();
        let answer = self.call(member, ClientCall::Renew { handle, ttl }).await?;
        let renewed = self.granted(
            answer,
            member,
            sent,
            Some(ours),
            (lease.resource.clone(), lease.permits),
        );
        if renewed.is_err() {
            self.grants().held.remove(&ours);
        }
        renewed
    }

    async fn release_lease(
        &self,
        lease: Lease,
        handoff: Option<Vec<u8>>,
    ) -> Result<(), BackendError> {
        // Refused before the grant is forgotten: the lease stays held.
        concord_lease::check_handoff(handoff.as_deref())?;
        let Some((member, handle, _)) = self.grants().held.remove(&lease.handle.0) else {
            return Err(BackendError::Expired);
        };
        match self
            .call(member, ClientCall::Release { handle, handoff })
            .await?
        {
            ClientAnswer::Released => Ok(()),
            ClientAnswer::Failed(f) => Err(f.into()),
            ClientAnswer::Granted { .. } => Err(BackendError::Other(
                "the lease peer answered a release with a grant".into(),
            )),
        }
    }
}

impl LeaseBackend for RemoteLeaseBackend {
    fn now(&self) -> Millis {
        self.local.now()
    }

    fn acquire_with(&self, request: AcquireRequest) -> BoxFuture<'_, Result<Lease, BackendError>> {
        Box::pin(self.acquire_remote(request))
    }

    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Millis,
    ) -> BoxFuture<'a, Result<Lease, BackendError>> {
        Box::pin(self.renew_lease(lease, ttl))
    }

    fn release_with(
        &self,
        lease: Lease,
        handoff: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.release_lease(lease, handoff))
    }
}

#[cfg(test)]
mod tests;
