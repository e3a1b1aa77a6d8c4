//! The etcd lease backend against a real etcd started on loopback. Built
//! with the `etcd-tests` feature only; the `etcd` binary must then be
//! installed (or named by `ETCD_BIN`), or these tests fail saying so.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use concord_lease::{BackendError, LeaseBackend, Millis, Permits, Resource};
use concord_net::lease::{EtcdLeaseBackend, EtcdServer};

async fn etcd() -> EtcdServer {
    EtcdServer::start()
        .await
        .expect("the etcd lease tests need a local etcd")
}

async fn backend(server: &EtcdServer) -> EtcdLeaseBackend {
    EtcdLeaseBackend::connect(&[server.endpoint()])
        .await
        .unwrap()
}

fn resource() -> Resource {
    Resource::new("github.main").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_mutex_is_exclusive_renewable_and_releasable() {
    let server = etcd().await;
    let etcd = backend(&server).await;
    let first = etcd
        .acquire(resource(), Millis(10_000), Millis(0))
        .await
        .unwrap();
    assert!(etcd.now() < first.expires);
    assert_eq!(
        etcd.acquire(resource(), Millis(10_000), Millis(0)).await,
        Err(BackendError::Busy)
    );
    let renewed = etcd.renew(&first, Millis(10_000)).await.unwrap();
    assert_eq!(renewed.token, first.token);
    assert!(renewed.expires >= first.expires);
    etcd.release(renewed.clone()).await.unwrap();
    assert_eq!(etcd.release(renewed).await, Err(BackendError::Expired));
    let second = etcd
        .acquire(resource(), Millis(10_000), Millis(0))
        .await
        .unwrap();
    assert!(second.token > first.token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_hands_off_from_one_holder_to_the_next() {
    let server = etcd().await;
    let (a, b) = (backend(&server).await, backend(&server).await);
    common::hands_off(&a, &b, &resource()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_three_concurrent_acquirers_get_increasing_tokens_and_never_overlap() {
    let server = etcd().await;
    let mut backends: Vec<Arc<dyn LeaseBackend>> = Vec::new();
    for _ in 0..3 {
        backends.push(Arc::new(backend(&server).await));
    }
    common::contend(backends, &resource(), 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_semaphore_admits_its_permits() {
    let server = etcd().await;
    let etcd = backend(&server).await;
    let api = Resource::new("api.openai").unwrap();
    let two = Permits::new(2).unwrap();
    let acquire = |wait| etcd.acquire_permit(api.clone(), two, Millis(10_000), Millis(wait));
    let a = acquire(0).await.unwrap();
    let b = acquire(0).await.unwrap();
    assert!(b.token > a.token);
    assert_eq!(acquire(0).await, Err(BackendError::Busy));
    // A waiting acquirer gets in as soon as a permit is given back.
    let (c, ()) = tokio::join!(acquire(10_000), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        etcd.release(a).await.unwrap();
    });
    assert!(c.unwrap().token > b.token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_lease_of_a_vanished_holder_expires() {
    let server = etcd().await;
    let holder = backend(&server).await;
    let other = backend(&server).await;
    let abandoned = holder
        .acquire(resource(), Millis(2_000), Millis(0))
        .await
        .unwrap();
    drop(holder);
    let started = Instant::now();
    let next = other
        .acquire(resource(), Millis(2_000), Millis(10_000))
        .await
        .unwrap();
    assert!(started.elapsed().as_millis() >= 1_000);
    assert!(next.token > abandoned.token);
}
