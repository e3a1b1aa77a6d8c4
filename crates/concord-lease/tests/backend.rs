//! Shows that `LeaseBackend` fits a driver of the sans-IO machines: a
//! loopback backend that runs one proposer and three acceptors in-process,
//! polled by hand without any async runtime.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use concord_lease::{
    Acceptor, AcceptorConfig, AcceptorInput, AcquireRequest, BackendError, BoxFuture, DenyReason,
    Event, Input, Lease, LeaseBackend, LeaseHandle, LeaseId, Millis, NodeId, Permits, Proposer,
    ProposerConfig, Quorum, Resource,
};

struct World {
    now: Millis,
    proposer: Proposer,
    acceptors: Vec<Acceptor>,
    next_lease: u64,
}

impl World {
    /// Delivers messages instantly and advances time by 1ms whenever the
    /// network is quiet, until an event about `lease` arrives (events about
    /// other leases, e.g. `Lost`, are dropped in this toy).
    fn next_event(&mut self, lease: LeaseId) -> Event {
        loop {
            while let Some(e) = self.proposer.poll_event() {
                if event_lease(&e) == lease {
                    return e;
                }
            }
            let mut moved = false;
            while let Some(t) = self.proposer.poll_transmit() {
                moved = true;
                let a = usize::from(t.to.0) - 1;
                let input = AcceptorInput::Message {
                    from: self.proposer.id(),
                    message: t.message,
                };
                self.acceptors[a].handle_input(self.now, input).unwrap();
                while let Some(p) = self.acceptors[a].poll_persist() {
                    let done = AcceptorInput::Persisted { version: p.version };
                    self.acceptors[a].handle_input(self.now, done).unwrap();
                }
                while let Some(reply) = self.acceptors[a].poll_transmit() {
                    let input = Input::Message {
                        from: NodeId(u16::try_from(a + 1).unwrap()),
                        message: reply.message,
                    };
                    self.proposer.handle_input(self.now, input).unwrap();
                }
            }
            if !moved {
                self.now = self.now.saturating_add(Millis(1));
                self.proposer
                    .handle_input(self.now, Input::Timeout)
                    .unwrap();
            }
        }
    }
}

fn event_lease(e: &Event) -> LeaseId {
    match e {
        Event::Acquired { lease, .. }
        | Event::Renewed { lease, .. }
        | Event::RenewFailed { lease, .. }
        | Event::Denied { lease, .. }
        | Event::Lost { lease, .. }
        | Event::Released { lease, .. } => *lease,
    }
}

struct Loopback {
    world: Mutex<World>,
}

impl Loopback {
    fn new() -> Loopback {
        let quorum = Quorum::new([NodeId(1), NodeId(2), NodeId(3)]).unwrap();
        let proposer = Proposer::new(ProposerConfig::new(NodeId(100), quorum), 1).unwrap();
        let acceptors = (1..=3)
            .map(|i| Acceptor::new(AcceptorConfig::new(NodeId(i))).unwrap())
            .collect();
        Loopback {
            world: Mutex::new(World {
                now: Millis(0),
                proposer,
                acceptors,
                next_lease: 0,
            }),
        }
    }
}

fn deny(reason: DenyReason) -> BackendError {
    match reason {
        DenyReason::Busy => BackendError::Busy,
        other => BackendError::Unavailable(format!("{other:?}")),
    }
}

impl LeaseBackend for Loopback {
    fn now(&self) -> Millis {
        self.world.lock().unwrap().now
    }

    fn acquire_with(&self, request: AcquireRequest) -> BoxFuture<'_, Result<Lease, BackendError>> {
        Box::pin(async move {
            let mut w = self.world.lock().unwrap();
            let lease = LeaseId(w.next_lease);
            w.next_lease += 1;
            let now = w.now;
            w.proposer.handle_input(
                now,
                Input::Acquire {
                    lease,
                    resource: request.resource.clone(),
                    ttl: request.ttl,
                    permits: request.permits,
                    wait: request.wait,
                },
            )?;
            match w.next_event(lease) {
                Event::Acquired {
                    token,
                    valid_until,
                    handoff,
                    ..
                } => Ok(Lease {
                    resource: request.resource,
                    token,
                    expires: valid_until,
                    permits: request.permits,
                    handle: LeaseHandle(lease.0),
                    handoff: handoff.map(|h| h.context),
                }),
                Event::Denied { reason, .. } => Err(deny(reason)),
                other => Err(BackendError::Other(format!("{other:?}"))),
            }
        })
    }

    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Millis,
    ) -> BoxFuture<'a, Result<Lease, BackendError>> {
        Box::pin(async move {
            let mut w = self.world.lock().unwrap();
            let now = w.now;
            let id = LeaseId(lease.handle.0);
            match w
                .proposer
                .handle_input(now, Input::Renew { lease: id, ttl })
            {
                Ok(()) => {}
                Err(concord_lease::LeaseError::UnknownLease(_)) => {
                    return Err(BackendError::Expired);
                }
                Err(e) => return Err(e.into()),
            }
            match w.next_event(id) {
                Event::Renewed { valid_until, .. } => Ok(Lease {
                    expires: valid_until,
                    handoff: None,
                    ..lease.clone()
                }),
                Event::Lost { .. } => Err(BackendError::Expired),
                Event::RenewFailed { reason, .. } => Err(deny(reason)),
                other => Err(BackendError::Other(format!("{other:?}"))),
            }
        })
    }

    fn release_with(
        &self,
        lease: Lease,
        handoff: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let mut w = self.world.lock().unwrap();
            let now = w.now;
            let id = LeaseId(lease.handle.0);
            match w
                .proposer
                .handle_input(now, Input::Release { lease: id, handoff })
            {
                Ok(()) => {
                    w.next_event(id);
                    Ok(())
                }
                Err(concord_lease::LeaseError::UnknownLease(_)) => Err(BackendError::Expired),
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// Polls a future to completion without a runtime (the loopback backend
/// never returns `Pending`).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn mutex_through_the_trait() {
    let backend: Arc<dyn LeaseBackend> = Arc::new(Loopback::new());
    let r = Resource::new("github.main").unwrap();

    let fut = backend.acquire(r.clone(), Millis(1_000), Millis(0));
    assert_send(&fut);
    let first = block_on(fut).unwrap();
    assert!(backend.now() < first.expires);
    assert_eq!(first.permits, Permits::MUTEX);

    let busy = block_on(backend.acquire(r.clone(), Millis(1_000), Millis(0)));
    assert_eq!(busy, Err(BackendError::Busy));

    let renewed = block_on(backend.renew(&first, Millis(1_000))).unwrap();
    assert_eq!(renewed.token, first.token);
    assert!(renewed.expires >= first.expires);

    block_on(backend.release(renewed.clone())).unwrap();
    assert_eq!(
        block_on(backend.release(renewed)),
        Err(BackendError::Expired)
    );
    let second = block_on(backend.acquire(r, Millis(1_000), Millis(0))).unwrap();
    assert!(second.token > first.token);
}

#[test]
fn semaphore_through_the_trait() {
    let backend: Arc<dyn LeaseBackend> = Arc::new(Loopback::new());
    let api = Resource::new("api.openai").unwrap();
    let two = Permits::new(2).unwrap();
    let a = block_on(backend.acquire_permit(api.clone(), two, Millis(1_000), Millis(0))).unwrap();
    let b = block_on(backend.acquire_permit(api.clone(), two, Millis(1_000), Millis(0))).unwrap();
    assert!(b.token > a.token);
    let third = block_on(backend.acquire_permit(api.clone(), two, Millis(1_000), Millis(0)));
    assert_eq!(third, Err(BackendError::Busy));
    // Waiting long enough outlasts the holders' ttl.
    let c = block_on(backend.acquire_permit(api, two, Millis(1_000), Millis(3_000))).unwrap();
    assert!(c.token > b.token);
}

#[test]
fn invalid_requests_are_typed_errors() {
    let backend = Loopback::new();
    let r = Resource::new("x").unwrap();
    let err = block_on(backend.acquire(r, Millis(0), Millis(0))).unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)));
}
