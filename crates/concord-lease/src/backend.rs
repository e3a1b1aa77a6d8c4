//! The [`LeaseBackend`] trait: what the coordinator asks of any lease
//! service, whether the built-in quorum leases or an etcd cluster.
//!
//! This module owns the contract only: the trait, the [`Lease`] it hands
//! out and the [`BackendError`]s it may return. It must never implement a
//! backend (those need I/O: the quorum backend lives with the network
//! driver, the etcd backend behind a crate feature) and never name a
//! runtime.
//!
//! # Shape, and why
//!
//! The methods return a boxed `Send` future ([`BoxFuture`]) instead of being
//! `async fn`:
//!
//! * the trait stays dyn-compatible, so the coordinator holds an
//!   `Arc<dyn LeaseBackend>` chosen from configuration at run time;
//! * the futures are `Send`, so they can be spawned on a multi-threaded
//!   tokio runtime (native `async fn` in traits cannot promise that to a
//!   generic caller);
//! * no runtime is named: the quorum backend's future waits on a reply
//!   channel from the task that drives a [`crate::Proposer`], the etcd
//!   backend's future is its gRPC client's, and a test can poll either by
//!   hand. A boxed future per call costs one allocation, noise next to a
//!   network round trip.
//!
//! A synchronous trait over a handle was the alternative; it would force
//! the etcd client (async only) to block a thread per call.
//!
//! # Time
//!
//! [`Lease::expires`] is a reading of the *backend's* clock, the one
//! [`LeaseBackend::now`] returns, already shortened by the backend's drift
//! margin: the lease may be used while `now() < expires`. Both backends
//! time a lease from before they sent the request (for etcd: before the
//! lease grant), so the same argument as in [`crate::time`] applies.
//!
//! # Fencing tokens
//!
//! Strictly increasing per resource: the granting ballot for the quorum
//! backend, the key's creation revision for etcd. A renewal keeps the
//! token.

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

use crate::ballot::FencingToken;
use crate::error::LeaseError;
use crate::resource::Resource;
use crate::semaphore::Permits;
use crate::time::Millis;

/// A boxed, `Send` future, as returned by [`LeaseBackend`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An opaque, backend-specific name of one grant (the proposer's
/// [`crate::LeaseId`], or an etcd lease id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseHandle(pub u64);

/// A held lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The resource.
    pub resource: Resource,
    /// The fencing token to pass to whatever acts under the lease.
    pub token: FencingToken,
    /// End of validity (exclusive) on the backend's clock
    /// ([`LeaseBackend::now`]).
    pub expires: Millis,
    /// The permit count it was acquired with (1 for a mutex).
    pub permits: Permits,
    /// The backend's name for this grant, for renew and release.
    pub handle: LeaseHandle,
    /// What the previous holder left when it released (see
    /// [`crate::Handoff`]), on a fresh grant; `None` on a renewal, or if
    /// no holder left anything this grant's quorum knows of.
    pub handoff: Option<Vec<u8>>,
}

/// What to acquire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcquireRequest {
    /// The resource.
    pub resource: Resource,
    /// Time to live requested (the backend may round it, e.g. etcd to whole
    /// seconds, and reports the result in [`Lease::expires`]).
    pub ttl: Millis,
    /// 1 for a mutex, N for a counting semaphore.
    pub permits: Permits,
    /// How long to keep trying while others hold every permit.
    pub wait: Millis,
}

/// Why a backend call failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BackendError {
    /// Others held every permit for the whole `wait`.
    #[error("resource busy")]
    Busy,
    /// The backend could not reach enough of its peers (no quorum,
    /// partition, etcd unreachable).
    #[error("lease service unavailable: {0}")]
    Unavailable(String),
    /// The lease had already ended (renew or release too late).
    #[error("lease expired")]
    Expired,
    /// The request was invalid.
    #[error(transparent)]
    Invalid(#[from] LeaseError),
    /// Anything else the backend reports.
    #[error("lease backend error: {0}")]
    Other(String),
}

/// A lease service: acquire, renew and release leases with fencing tokens.
pub trait LeaseBackend: Send + Sync {
    /// The backend's clock, in which [`Lease::expires`] is expressed.
    fn now(&self) -> Millis;

    /// Acquires `request.permits`-counted `request.resource`.
    fn acquire_with(&self, request: AcquireRequest) -> BoxFuture<'_, Result<Lease, BackendError>>;

    /// Extends `lease` to `ttl` from now, keeping its token.
    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Millis,
    ) -> BoxFuture<'a, Result<Lease, BackendError>>;

    /// Gives `lease` up, leaving `handoff` (at most
    /// [`crate::MAX_HANDOFF_BYTES`]) for the next holder, who finds it in
    /// [`Lease::handoff`].
    fn release_with(
        &self,
        lease: Lease,
        handoff: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), BackendError>>;

    /// Gives `lease` up, leaving nothing for the next holder.
    fn release(&self, lease: Lease) -> BoxFuture<'_, Result<(), BackendError>> {
        self.release_with(lease, None)
    }

    /// Acquires `resource` as a mutex, waiting up to `wait`.
    fn acquire(
        &self,
        resource: Resource,
        ttl: Millis,
        wait: Millis,
    ) -> BoxFuture<'_, Result<Lease, BackendError>> {
        self.acquire_permit(resource, Permits::MUTEX, ttl, wait)
    }

    /// Acquires one of `permits` permits of `resource` (a counting
    /// semaphore), waiting up to `wait`.
    fn acquire_permit(
        &self,
        resource: Resource,
        permits: Permits,
        ttl: Millis,
        wait: Millis,
    ) -> BoxFuture<'_, Result<Lease, BackendError>> {
        self.acquire_with(AcquireRequest {
            resource,
            ttl,
            permits,
            wait,
        })
    }
}
