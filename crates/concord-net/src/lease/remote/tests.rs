//! Leases taken through a lease peer by nodes outside its quorum.

#![allow(clippy::unwrap_used)]

use concord_lease::{Permits, Resource};

use super::*;
use crate::lease::QuorumConfig;

/// A quorum of one lease peer and two clients, each client a lease node
/// of its own (as every concord node is).
fn start() -> (
    tempfile::TempDir,
    Arc<QuorumLeaseBackend>,
    [RemoteLeaseBackend; 2],
) {
    let dir = tempfile::tempdir().unwrap();
    let solo = |name: &str| {
        let config = QuorumConfig::loopback(1, &dir.path().join(name))
            .unwrap()
            .remove(0);
        (
            config.listen.clone(),
            Arc::new(QuorumLeaseBackend::start(config).unwrap()),
        )
    };
    let (addr, peer) = solo("peer");
    let member = vec![(peer.peer_id(), vec![addr])];
    let client = |name: &str| RemoteLeaseBackend::new(solo(name).1, member.clone()).unwrap();
    let clients = [client("b"), client("c")];
    (dir, peer, clients)
}

fn printer() -> Resource {
    Resource::new("printer").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_the_lease_peer_exclude_each_other_with_rising_tokens() {
    let (_dir, peer, [b, c]) = start();
    let held = b
        .acquire(printer(), Millis(5_000), Millis(0))
        .await
        .unwrap();
    assert!(held.expires > b.now());
    // Neither the other client nor the lease peer itself gets it meanwhile.
    assert_eq!(
        c.acquire(printer(), Millis(5_000), Millis(0)).await,
        Err(BackendError::Busy)
    );
    assert_eq!(
        peer.acquire(printer(), Millis(5_000), Millis(0)).await,
        Err(BackendError::Busy)
    );
    let renewed = b.renew(&held, Millis(5_000)).await.unwrap();
    assert_eq!(renewed.token, held.token);
    assert_eq!(renewed.handle, held.handle);
    // Once released, the next holder waits for it and gets a higher token.
    let (released, next) = tokio::join!(
        async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            b.release(renewed).await
        },
        c.acquire(printer(), Millis(5_000), Millis(5_000))
    );
    released.unwrap();
    let next = next.unwrap();
    assert!(
        next.token > held.token,
        "{} then {}",
        held.token,
        next.token
    );
    // A released lease cannot be renewed or released again.
    assert_eq!(
        b.renew(&held, Millis(1_000)).await,
        Err(BackendError::Expired)
    );
    c.release(next).await.unwrap();
    // Semaphores work through the client protocol too.
    let three = Permits::new(3).unwrap();
    let pool = || AcquireRequest {
        resource: Resource::new("api-slots").unwrap(),
        ttl: Millis(5_000),
        permits: three,
        // Two attempts at once may collide on a ballot; the loser retries.
        wait: Millis(2_000),
    };
    let (one, two) = (b.acquire_with(pool()), c.acquire_with(pool()));
    let (one, two) = tokio::join!(one, two);
    assert_ne!(one.unwrap().token, two.unwrap().token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_can_touch_only_its_own_leases() {
    let (_dir, peer, [b, c]) = start();
    b.acquire(printer(), Millis(5_000), Millis(0))
        .await
        .unwrap();
    let handle = {
        let grants = b.grants();
        grants.held.values().next().unwrap().1
    };
    // c names b's lease at the lease peer: refused, and b still holds it.
    let target = (peer.peer_id(), c.members[0].1.clone());
    let answer = c
        .local
        .call_lease_peer(
            target.0,
            target.1.clone(),
            ClientCall::Release {
                handle,
                handoff: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        answer,
        ClientAnswer::Failed(super::super::client::ClientFailure::Expired)
    );
    let answer = c
        .local
        .call_lease_peer(
            target.0,
            target.1,
            ClientCall::Renew {
                handle,
                ttl: Millis(1_000),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        answer,
        ClientAnswer::Failed(super::super::client::ClientFailure::Expired)
    );
    assert_eq!(
        c.acquire(printer(), Millis(5_000), Millis(0)).await,
        Err(BackendError::Busy)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_quorum_is_an_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = QuorumConfig::loopback(1, dir.path()).unwrap().remove(0);
    let local = Arc::new(QuorumLeaseBackend::start(config).unwrap());
    let nobody = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    let closed: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
    let remote = RemoteLeaseBackend::new(local, vec![(nobody, vec![closed])]).unwrap();
    match remote.acquire(printer(), Millis(1_000), Millis(0)).await {
        Err(BackendError::Unavailable(why)) => {
            assert!(why.contains("no lease peer of the quorum"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(RemoteLeaseBackend::new(remote.local.clone(), Vec::new()).is_err());
}
