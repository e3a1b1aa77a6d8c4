//! The coordinator on a real node (single-member lease quorum): internal
//! operations apply at once and only once, external ones execute at most
//! once however often they are submitted and however many coordinators
//! run them, every attempt runs under a higher fencing token, and an
//! operation that keeps failing is recorded in `execution/errors` and never
//! retried again.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord::coordinator::{
    COMPLETED, Coordinator, ERRORS, EXECUTION_QUEUE, INTENT_OPS, Operation, Outcome, RetryPolicy,
    Submitted,
};
use concord::{Node, Space};
use serde_json::{Value, json};

async fn node(dir: &std::path::Path) -> Node {
    Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .build()
        .await
        .unwrap()
}

fn op(id: &str, kind: &str, resource: Option<&str>) -> Operation {
    Operation {
        id: id.to_owned(),
        kind: kind.to_owned(),
        resource: resource.map(str::to_owned),
        payload: json!({"n": 1}),
    }
}

/// Releases `held`, which may have lapsed already: on a slow disk the
/// writes around a half-second lease take a good part of it.
async fn release_or_lapsed(held: concord::HeldLock) {
    match held.release().await {
        Ok(()) => {}
        Err(concord::Error::Lease {
            source: concord::BackendError::Expired,
            ..
        }) => {}
        Err(e) => panic!("release failed: {e}"),
    }
}

async fn entries(space: &Space, path: &str) -> Vec<Value> {
    space
        .topic::<Value>(path)
        .unwrap()
        .entries()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// A coordinator whose `deploy` executor records every token it runs with,
/// failing the first `failures` attempts.
async fn recording(
    space: &Space,
    node: &Node,
    name: &str,
    tokens: &Arc<Mutex<Vec<u64>>>,
    failures: usize,
) -> Coordinator {
    let mut c = Coordinator::new(space.clone(), node.space_lease(space).await.unwrap())
        .with_name(name)
        .with_retry(RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        });
    let tokens = Arc::clone(tokens);
    c.register("deploy", move |op, token| {
        let tokens = Arc::clone(&tokens);
        async move {
            let attempt = {
                let mut t = tokens.lock().unwrap();
                t.push(token.get());
                t.len()
            };
            // Long enough for a rival coordinator to queue up on the lease.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if attempt <= failures {
                Err(format!("attempt {attempt} failed"))
            } else {
                Ok(json!({"deployed": op.id, "token": token.get()}))
            }
        }
    })
    .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_operations_apply_at_once_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let space = node.space("ops").await.unwrap();
    let c = Coordinator::new(space.clone(), node.space_lease(&space).await.unwrap());
    let note = op("note-1", "note", None);
    assert_eq!(c.submit(note.clone()).await.unwrap(), Submitted::Applied);
    assert_eq!(c.submit(note).await.unwrap(), Submitted::Duplicate);
    assert_eq!(entries(&space, INTENT_OPS).await.len(), 1);
    let done = entries(&space, COMPLETED).await;
    assert_eq!(done.len(), 1);
    let outcome: Outcome = serde_json::from_value(done[0].clone()).unwrap();
    assert_eq!((outcome.id.as_str(), outcome.token), ("note-1", None));
    assert!(entries(&space, EXECUTION_QUEUE).await.is_empty());
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_operation_runs_at_most_once_across_duplicates_and_coordinators() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let space = node.space("ops").await.unwrap();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let a = recording(&space, &node, "a", &tokens, 0).await;
    let b = recording(&space, &node, "b", &tokens, 0).await;
    let deploy = op("deploy-1", "deploy", Some("github.main"));
    assert_eq!(a.submit(deploy.clone()).await.unwrap(), Submitted::Queued);
    assert_eq!(
        a.submit(deploy.clone()).await.unwrap(),
        Submitted::Duplicate
    );
    assert_eq!(
        b.submit(deploy.clone()).await.unwrap(),
        Submitted::Duplicate
    );

    let (ran_a, ran_b) = tokio::join!(a.run_once(), b.run_once());
    assert_eq!(ran_a.unwrap() + ran_b.unwrap(), 1);
    assert_eq!(tokens.lock().unwrap().len(), 1);
    let done = entries(&space, COMPLETED).await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["result"]["deployed"], "deploy-1");
    // An execution is a coordinated step: announced once, with its token;
    // the coordinator that found it settled under the lock announced nothing.
    let started = space.events("deploy_started").await.unwrap();
    let complete = space.events("deploy_complete").await.unwrap();
    assert_eq!((started.len(), complete.len()), (1, 1));
    assert_eq!(complete[0].1.payload["token"], done[0]["token"]);

    // Settled: never again, whether rerun or resubmitted.
    assert_eq!(a.run_once().await.unwrap(), 0);
    assert_eq!(b.submit(deploy).await.unwrap(), Submitted::Duplicate);
    assert_eq!(tokens.lock().unwrap().len(), 1);
    // The lock mirror is empty once the lease is released.
    assert_eq!(
        space.get(concord::LOCK_HOLDERS).await.unwrap(),
        Some(json!([]))
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_that_cannot_name_its_events_is_refused_at_registration() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let space = node.space("ops").await.unwrap();
    let mut c = Coordinator::new(space.clone(), node.space_lease(&space).await.unwrap());
    let never = |_: Operation, _: concord::FencingToken| async { Ok(Value::Null) };
    let refused = c.register("deploy prod", never);
    assert!(
        matches!(refused, Err(concord::Error::EventName(_))),
        "{refused:?}"
    );
    assert!(c.register(&"x".repeat(56), never).is_err());
    c.register("deploy.prod", never).unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_under_increasing_tokens_and_a_final_failure_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let space = node.space("ops").await.unwrap();

    // Fails twice, succeeds on the third and last attempt.
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let c = recording(&space, &node, "c", &tokens, 2).await;
    c.submit(op("flaky", "deploy", Some("api.x")))
        .await
        .unwrap();
    assert_eq!(c.run_once().await.unwrap(), 1);
    let seen = tokens.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let done = entries(&space, COMPLETED).await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["token"], json!(seen[2]));

    // Always fails: three attempts, then one entry in execution/errors.
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let d = recording(&space, &node, "d", &tokens, usize::MAX).await;
    d.submit(op("doomed", "deploy", Some("api.x")))
        .await
        .unwrap();
    assert_eq!(d.run_once().await.unwrap(), 1);
    assert_eq!(d.run_once().await.unwrap(), 0);
    assert_eq!(tokens.lock().unwrap().len(), 3);
    let errors = entries(&space, ERRORS).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["attempts"], 3);
    assert_eq!(errors[0]["error"], "attempt 3 failed");
    assert_eq!(entries(&space, COMPLETED).await.len(), 1);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_loop_executes_what_is_submitted_later() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let space = node.space("ops").await.unwrap();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let c = Arc::new(recording(&space, &node, "e", &tokens, 0).await);
    let looping = Arc::clone(&c);
    let background = tokio::spawn(async move { looping.run(Duration::from_millis(20)).await });
    c.submit(op("later", "deploy", Some("github.main")))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while entries(&space, COMPLETED).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never executed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    background.abort();
    assert_eq!(tokens.lock().unwrap().len(), 1);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_locks_again_after_its_quiet_period_with_a_higher_token() {
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        Node::builder()
            .data_dir(dir.path())
            .lease_max_ttl(Duration::from_secs(1))
            .build()
            .await
            .unwrap()
    };
    let node = start().await;
    let space = node.space("ops").await.unwrap();
    let held = node
        .lock(&space, "github.main", Duration::from_millis(500))
        .await
        .unwrap();
    let before = held.token();
    release_or_lapsed(held).await;
    node.shutdown().await.unwrap();

    let node = start().await;
    let space = node.space("ops").await.unwrap();
    let began = std::time::Instant::now();
    let held = node
        .lock(&space, "github.main", Duration::from_millis(500))
        .await
        .unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "no quiet period"
    );
    assert!(held.token() > before);
    release_or_lapsed(held).await;
    node.shutdown().await.unwrap();
}
