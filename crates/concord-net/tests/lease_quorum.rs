//! The quorum lease backend over real libp2p connections on loopback: mutual
//! exclusion with increasing tokens under contention, no progress for a
//! minority, semaphores, renewals, handoffs from one holder to the next, and
//! tokens that survive restarts.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_lease::{BackendError, FencingToken, LeaseBackend, Millis, Permits, Resource};
use concord_net::lease::{QuorumConfig, QuorumLeaseBackend, RemoteLeaseBackend};

fn cluster(n: usize, dir: &std::path::Path) -> Vec<QuorumConfig> {
    QuorumConfig::loopback(n, dir).unwrap()
}

fn start(configs: &[QuorumConfig]) -> Vec<Arc<QuorumLeaseBackend>> {
    configs
        .iter()
        .map(|c| Arc::new(QuorumLeaseBackend::start(c.clone()).unwrap()))
        .collect()
}

fn resource() -> Resource {
    Resource::new("github.main").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_concurrent_acquirers_get_increasing_tokens_and_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let backends = start(&cluster(3, dir.path()));
    let backends = backends
        .into_iter()
        .map(|b| b as Arc<dyn LeaseBackend>)
        .collect();
    common::contend(backends, &resource(), 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_holder_leaves_on_release_reaches_the_next_holder() {
    let dir = tempfile::tempdir().unwrap();
    let backends = start(&cluster(3, dir.path()));
    common::hands_off(backends[0].as_ref(), backends[2].as_ref(), &resource()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handoffs_reach_clients_of_the_quorum_too() {
    let dir = tempfile::tempdir().unwrap();
    let configs = cluster(3, &dir.path().join("quorum"));
    let peers = start(&configs);
    let members: Vec<_> = configs[0]
        .peers
        .iter()
        .map(|p| (p.peer_id, vec![p.addr.clone()]))
        .collect();
    let client = |name: &str| {
        let solo = cluster(1, &dir.path().join(name)).remove(0);
        let local = Arc::new(QuorumLeaseBackend::start(solo).unwrap());
        RemoteLeaseBackend::new(local, members.clone()).unwrap()
    };
    let (a, b) = (client("a"), client("b"));
    common::hands_off(&a, &b, &resource()).await;
    // And between a client and a lease peer.
    common::hands_off(peers[1].as_ref(), &a, &Resource::new("db").unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_cannot_acquire() {
    let dir = tempfile::tempdir().unwrap();
    let mut backends = start(&cluster(3, dir.path()));
    let first = &backends[0];
    let lease = first
        .acquire(resource(), Millis(2_000), Millis(10_000))
        .await
        .unwrap();
    first.release(lease).await.unwrap();

    // Two of three lease peers go away: the survivor is a minority.
    for backend in backends.drain(1..) {
        Arc::into_inner(backend).unwrap().shutdown().await;
    }
    let started = Instant::now();
    let denied = backends[0]
        .acquire(resource(), Millis(2_000), Millis(1_500))
        .await;
    assert!(
        matches!(denied, Err(BackendError::Unavailable(_))),
        "{denied:?}"
    );
    // It kept trying (rounds time out, retries back off) before giving up.
    assert!(started.elapsed() >= Duration::from_millis(1_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn semaphore_admits_its_permits_and_renewal_keeps_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let backends = start(&cluster(3, dir.path()));
    let api = Resource::new("api.openai").unwrap();
    let two = Permits::new(2).unwrap();
    let a = backends[0]
        .acquire_permit(api.clone(), two, Millis(10_000), Millis(10_000))
        .await
        .unwrap();
    let b = backends[1]
        .acquire_permit(api.clone(), two, Millis(10_000), Millis(10_000))
        .await
        .unwrap();
    assert_ne!(a.token, b.token);
    let third = backends[2]
        .acquire_permit(api.clone(), two, Millis(10_000), Millis(0))
        .await;
    assert_eq!(third, Err(BackendError::Busy));

    let renewed = backends[0].renew(&a, Millis(10_000)).await.unwrap();
    assert_eq!(renewed.token, a.token);
    assert!(renewed.expires >= a.expires);

    backends[0].release(renewed.clone()).await.unwrap();
    assert_eq!(
        backends[0].release(renewed).await,
        Err(BackendError::Expired)
    );
    let c = backends[2]
        .acquire_permit(api, two, Millis(10_000), Millis(10_000))
        .await
        .unwrap();
    assert!(c.token > a.token.max(b.token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_keep_increasing_after_every_lease_peer_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let configs: Vec<QuorumConfig> = cluster(3, dir.path())
        .into_iter()
        .map(|c| QuorumConfig {
            max_ttl: Millis(1_000),
            ..c
        })
        .collect();
    let backends = start(&configs);
    let mut last = FencingToken::new(0);
    for backend in &backends {
        let lease = backend
            .acquire(resource(), Millis(1_000), Millis(10_000))
            .await
            .unwrap();
        assert!(lease.token > last);
        last = lease.token;
        backend.release(lease).await.unwrap();
    }
    for backend in backends {
        Arc::into_inner(backend).unwrap().shutdown().await;
    }

    // Same keys, ports and data dirs: promises come back from disk, and
    // every acceptor sits out its quiet period (max_ttl) first.
    let backends = start(&configs);
    let started = Instant::now();
    let lease = backends[1]
        .acquire(resource(), Millis(1_000), Millis(10_000))
        .await
        .unwrap();
    // The restarted acceptors sat out (most of) their quiet period first.
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(lease.token > last, "{} after {last}", lease.token);
}
