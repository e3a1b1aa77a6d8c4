//! Nodes configured as one three-member lease quorum on loopback, and
//! nodes of one space configured with no lease peers at all (the space's
//! declared quorum is the node the others joined): locks taken
//! concurrently from different nodes never overlap and get strictly
//! increasing fencing tokens; a space with no usable quorum is a clear
//! error, never a local lock; and each holder is mirrored into the shared
//! space's `coordination/lock_holders` where the other nodes see it; two
//! nodes' coordinators execute an operation queued on both only once.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord::{LOCK_HOLDERS, LockHolder, Node};

mod common;

use common::{joined, quorum};

/// Every node takes the lock on one resource twice, all at once: the runs
/// never overlap and the tokens increase in run order. Shuts the nodes down.
async fn assert_locks_exclude_each_other(nodes: Vec<Arc<Node>>) {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for node in &nodes {
        let node = Arc::clone(node);
        let runs = Arc::clone(&runs);
        tasks.push(tokio::spawn(async move {
            let space = node.space("ops").await.unwrap();
            for _ in 0..2 {
                let held = node
                    .lock(&space, "github.main", Duration::from_secs(5))
                    .await
                    .unwrap();
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(50)).await;
                runs.lock()
                    .unwrap()
                    .push((start, Instant::now(), held.token()));
                held.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut runs = runs.lock().unwrap().clone();
    runs.sort_unstable();
    assert_eq!(runs.len(), 2 * nodes.len());
    for pair in runs.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlap: {runs:?}");
        assert!(pair[0].2 < pair[1].2, "tokens not increasing: {runs:?}");
    }
    for node in nodes {
        Arc::into_inner(node).unwrap().shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_from_different_nodes_exclude_each_other_with_increasing_tokens() {
    let dir = tempfile::tempdir().unwrap();
    assert_locks_exclude_each_other(quorum(dir.path(), 3).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_span_a_space_whose_nodes_configured_no_lease_peers() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 3).await;
    // The first node opens the space first, as a deployment's first node
    // does; the declaration reaches the others as they sync.
    nodes[0].space("ops").await.unwrap();
    assert_locks_exclude_each_other(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_in_a_space_without_a_quorum_fails_and_says_how_to_declare_one() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 2).await;
    // Only the joiner holds the space: nobody declared its quorum.
    let space = nodes[1].space("orphan").await.unwrap();
    let started = Instant::now();
    match nodes[1]
        .lock(&space, "printer", Duration::from_secs(5))
        .await
    {
        Err(concord::Error::LeaseQuorum { space, reason }) => {
            assert_eq!(space, "orphan");
            assert!(reason.contains("--lease-peer"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= concord::QUORUM_WAIT);
    // A malformed declaration is refused the same way, at once.
    let space = nodes[1].space("garbled").await.unwrap();
    space
        .put(concord::LEASE_QUORUM, serde_json::json!({"members": []}))
        .await
        .unwrap();
    match nodes[1]
        .lock(&space, "printer", Duration::from_secs(5))
        .await
    {
        Err(concord::Error::LeaseQuorum { reason, .. }) => {
            assert!(reason.contains("malformed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    for node in nodes {
        Arc::into_inner(node).unwrap().shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_is_mirrored_to_the_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = quorum(dir.path(), 3).await;
    let spaces = [
        nodes[0].space("ops").await.unwrap(),
        nodes[2].space("ops").await.unwrap(),
    ];
    let held = nodes[0]
        .lock(&spaces[0], "api.openai", Duration::from_secs(5))
        .await
        .unwrap();
    let want = LockHolder {
        resource: "api.openai".into(),
        token: held.token().get(),
        holder: nodes[0].peer_id().to_string(),
    };
    let seen = spaces[1].set::<LockHolder>(LOCK_HOLDERS).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.members().await.unwrap() != [want.clone()] {
        assert!(Instant::now() < deadline, "the holder never showed up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.release().await.unwrap();
    while !seen.members().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the holder never went away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(spaces);
    for node in nodes {
        Arc::into_inner(node).unwrap().shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinators_on_two_nodes_execute_a_shared_operation_once() {
    use concord::coordinator::{COMPLETED, Coordinator, EXECUTION_QUEUE, Operation, Submitted};
    use serde_json::{Value, json};

    let dir = tempfile::tempdir().unwrap();
    let nodes = quorum(dir.path(), 3).await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut coordinators = Vec::new();
    for node in &nodes[..2] {
        let space = node.space("ops").await.unwrap();
        let mut c = Coordinator::new(space.clone(), node.space_lease(&space).await.unwrap())
            .with_name(&node.peer_id().to_string());
        let calls = Arc::clone(&calls);
        c.register("deploy", move |_op, token| {
            let calls = Arc::clone(&calls);
            async move {
                calls.lock().unwrap().push(token.get());
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(json!("deployed"))
            }
        })
        .unwrap();
        coordinators.push((space, c));
    }
    let deploy = Operation {
        id: "deploy-7".into(),
        kind: "deploy".into(),
        resource: Some("github.main".into()),
        payload: Value::Null,
    };
    let [(space_a, a), (space_b, b)] = &coordinators[..] else {
        unreachable!()
    };
    assert_eq!(a.submit(deploy).await.unwrap(), Submitted::Queued);
    let queued = space_b.topic::<Operation>(EXECUTION_QUEUE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued.entries().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the queue never replicated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ran_a, ran_b) = tokio::join!(a.run_once(), b.run_once());
    assert_eq!(ran_a.unwrap() + ran_b.unwrap(), 1);
    assert_eq!(calls.lock().unwrap().len(), 1);
    let completed = space_a.topic::<Value>(COMPLETED).unwrap();
    assert_eq!(completed.entries().await.unwrap().len(), 1);
    drop(coordinators);
    for node in nodes {
        Arc::into_inner(node).unwrap().shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_holder_sees_what_the_last_one_wrote_so_no_update_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 3).await;
    nodes[0].space("ops").await.unwrap();
    const ROUNDS: u64 = 8;
    let mut tasks = Vec::new();
    for node in &nodes {
        let node = Arc::clone(node);
        tasks.push(tokio::spawn(async move {
            let space = node.space("ops").await.unwrap();
            let done = space.last_value::<u64>("execution/deploys").unwrap();
            for _ in 0..ROUNDS {
                // Read, then write the next value, under the lock: a holder
                // that acted before the last one's write arrived would
                // write a value already written, and an update would be
                // lost.
                let held = node
                    .lock(&space, "deploy", Duration::from_secs(5))
                    .await
                    .unwrap();
                let seen = done.get().await.unwrap().unwrap_or(0);
                done.set(&(seen + 1)).await.unwrap();
                held.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let space = nodes[0].space("ops").await.unwrap();
    let done = space.last_value::<u64>("execution/deploys").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while done.get().await.unwrap() != Some(3 * ROUNDS) {
        assert!(
            Instant::now() < deadline,
            "{:?} after {} increments",
            done.get().await.unwrap(),
            3 * ROUNDS
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for node in nodes {
        Arc::into_inner(node).unwrap().shutdown().await.unwrap();
    }
}
