//! Checks shared by the lease backend tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord_lease::{FencingToken, LeaseBackend, Millis, Resource};

/// One critical section as seen from outside: who, with which token, from
/// when to when (real time, one process).
#[derive(Debug, Clone, Copy)]
struct Section {
    acquirer: usize,
    token: FencingToken,
    enter: Instant,
    exit: Instant,
}

/// Runs one acquirer per backend, all on `resource` at once, each taking
/// the lease `rounds` times (holding it briefly); then checks that the
/// critical sections never overlapped in real time and that tokens strictly
/// increased in the order of holding.
pub async fn contend(backends: Vec<Arc<dyn LeaseBackend>>, resource: &Resource, rounds: usize) {
    let log: Arc<Mutex<Vec<Section>>> = Arc::default();
    let mut tasks = Vec::new();
    for (acquirer, backend) in backends.iter().enumerate() {
        let backend = Arc::clone(backend);
        let log = Arc::clone(&log);
        let resource = resource.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let lease = backend
                    .acquire(resource.clone(), Millis(5_000), Millis(30_000))
                    .await
                    .unwrap();
                let enter = Instant::now();
                assert!(backend.now() < lease.expires);
                tokio::time::sleep(Duration::from_millis(15)).await;
                assert!(backend.now() < lease.expires, "held past its validity");
                let exit = Instant::now();
                log.lock().unwrap().push(Section {
                    acquirer,
                    token: lease.token,
                    enter,
                    exit,
                });
                backend.release(lease).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut sections = log.lock().unwrap().clone();
    assert_eq!(sections.len(), backends.len() * rounds);
    sections.sort_by_key(|s| s.enter);
    for pair in sections.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(a.exit <= b.enter, "overlap: {a:?} and {b:?}");
        assert!(
            a.token < b.token,
            "token did not increase: {a:?} then {b:?}"
        );
    }
    for acquirer in 0..backends.len() {
        let count = sections.iter().filter(|s| s.acquirer == acquirer).count();
        assert_eq!(count, rounds);
    }
}

/// Checks handoffs through two backends of one lease service: what the
/// holder on `first` leaves on release reaches the next holder on
/// `second`; a renewal carries none; a release without one leaves the
/// last one in place; an oversized one is refused.
pub async fn hands_off(first: &dyn LeaseBackend, second: &dyn LeaseBackend, resource: &Resource) {
    let ttl = Millis(10_000);
    let held = first
        .acquire(resource.clone(), ttl, Millis(5_000))
        .await
        .unwrap();
    assert_eq!(held.handoff, None, "nothing left yet");
    assert_eq!(first.renew(&held, ttl).await.unwrap().handoff, None);
    let oversized = vec![0; concord_lease::MAX_HANDOFF_BYTES + 1];
    assert!(
        first
            .release_with(held.clone(), Some(oversized))
            .await
            .is_err()
    );
    first
        .release_with(held, Some(b"seq 41".to_vec()))
        .await
        .unwrap();
    let next = second
        .acquire(resource.clone(), ttl, Millis(5_000))
        .await
        .unwrap();
    assert_eq!(next.handoff.as_deref(), Some(&b"seq 41"[..]));
    second.release(next).await.unwrap();
    let again = first
        .acquire(resource.clone(), ttl, Millis(5_000))
        .await
        .unwrap();
    assert_eq!(again.handoff.as_deref(), Some(&b"seq 41"[..]));
    first.release(again).await.unwrap();
}
