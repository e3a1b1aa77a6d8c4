//! A new lock holder acts only once it has what the previous holder wrote
//! before releasing: `HeldLock` against a lease service that hands over a
//! context naming writes this node does not have yet. Whether the context
//! travels from one holder to the next through the real lease services is
//! tested with them (concord-lease's protocol tests, concord-net's quorum,
//! client and etcd tests).
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::joined;
use concord::{Error, HeldLock, Lease, LeaseBackend, Millis, Node};
use concord_lease::{AcquireRequest, BackendError, BoxFuture, FencingToken, LeaseHandle};
use serde_json::json;

/// A lease service of one resource that always grants, handing out
/// `handoff` with the next grant, and records what releases leave.
struct Handing {
    started: Instant,
    handoff: Mutex<Option<Vec<u8>>>,
    released: Mutex<Vec<Option<Vec<u8>>>>,
}

impl Handing {
    fn new(handoff: Vec<u8>) -> Arc<Handing> {
        Arc::new(Handing {
            started: Instant::now(),
            handoff: Mutex::new(Some(handoff)),
            released: Mutex::new(Vec::new()),
        })
    }
}

impl LeaseBackend for Handing {
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.started.elapsed().as_millis()).unwrap())
    }

    fn acquire_with(&self, request: AcquireRequest) -> BoxFuture<'_, Result<Lease, BackendError>> {
        let lease = Lease {
            resource: request.resource,
            token: FencingToken::new(7),
            expires: self.now().saturating_add(request.ttl),
            permits: request.permits,
            handle: LeaseHandle(1),
            handoff: self.handoff.lock().unwrap().take(),
        };
        Box::pin(async move { Ok(lease) })
    }

    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        _ttl: Millis,
    ) -> BoxFuture<'a, Result<Lease, BackendError>> {
        Box::pin(async move { Ok(lease.clone()) })
    }

    fn release_with(
        &self,
        _lease: Lease,
        handoff: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        self.released.lock().unwrap().push(handoff);
        Box::pin(async { Ok(()) })
    }
}

/// Two nodes of space `ops`, the second joined to the first.
async fn pair(root: &std::path::Path) -> (Node, Node) {
    let mut nodes = joined(root, 2)
        .await
        .into_iter()
        .map(|n| Arc::into_inner(n).unwrap());
    (nodes.next().unwrap(), nodes.next().unwrap())
}

/// The context a holder on `node` leaves after its next `writes` writes.
async fn context_after(node: &Node, writes: u64) -> Vec<u8> {
    let space = node.space("ops").await.unwrap();
    let (actor, seq) = space
        .with(|r| {
            let actor = r.actor().clone();
            (actor.to_hex_string(), r.vector_clock().get(&actor))
        })
        .await
        .unwrap();
    serde_json::to_vec(&json!({"space": "ops", "actor": actor, "seq": seq + writes})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_next_holder_waits_for_the_previous_holders_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path()).await;
    let (sa, sb) = (a.space("ops").await.unwrap(), b.space("ops").await.unwrap());
    // a's holder "released" after a write that has not happened yet.
    let leases = Handing::new(context_after(&a, 1).await);
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sa.put("execution/deploy.done", json!(true)).await.unwrap();
        sa
    });
    let started = Instant::now();
    let held = HeldLock::acquire(leases.clone(), &sb, "deploy", Duration::from_secs(10), "b")
        .await
        .unwrap();
    // Not before the write was made, and it is there once the lock is.
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        sb.get("execution/deploy.done").await.unwrap(),
        Some(json!(true))
    );
    writer.await.unwrap();
    // b leaves its own context: its actor, up to its mirror write.
    held.release().await.unwrap();
    let left = leases.released.lock().unwrap().pop().unwrap().unwrap();
    let left: serde_json::Value = serde_json::from_slice(&left).unwrap();
    assert_eq!(left["space"], "ops");
    let mine = sb
        .with(|r| (r.actor().to_hex_string(), r.vector_clock().get(r.actor())))
        .await
        .unwrap();
    assert_eq!(
        (
            left["actor"].as_str().unwrap(),
            left["seq"].as_u64().unwrap()
        ),
        (mine.0.as_str(), mine.1)
    );
    assert_eq!(mine.1, 2, "the mirror entry, added and removed");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_that_never_arrive_give_the_lock_back_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path()).await;
    let sb = b.space("ops").await.unwrap();
    let leases = Handing::new(context_after(&a, 5).await);
    let started = Instant::now();
    let ttl = Duration::from_secs(2);
    match HeldLock::acquire(leases.clone(), &sb, "deploy", ttl, "b").await {
        Err(Error::Handoff { resource, seq, .. }) => {
            assert_eq!(resource, "deploy");
            assert!(seq >= 5);
        }
        other => panic!("{other:?}"),
    }
    // It waited about half the validity, then gave the lock back leaving
    // nothing of its own (the previous holder's context stays).
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(*leases.released.lock().unwrap(), vec![None]);
    // Contexts that are not Concord's, or about another space, hold no one up.
    for other in [
        b"not json".to_vec(),
        serde_json::to_vec(&json!({"space": "elsewhere", "actor": "00", "seq": 9})).unwrap(),
    ] {
        let leases = Handing::new(other);
        HeldLock::acquire(leases, &sb, "deploy", ttl, "b")
            .await
            .unwrap();
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
