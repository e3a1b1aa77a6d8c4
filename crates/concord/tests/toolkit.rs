//! The agent toolkit on several in-process nodes of one space: `when` runs
//! a handler once per event across three nodes, which share the events out
//! by partition (events in partitions a member never takes are taken by
//! another after a grace) and run several at once on a node, holding
//! claims only while events come, and handing them over when stopped; a
//! handler whose node dies mid-run is taken over by another node and runs
//! to completion once; a failing (or
//! panicking) handler emits `<handler>_failed` and is retried up to its
//! policy; broadcast handlers run on every node; `coordinate` steps on
//! three nodes run one after another under their lock and announce
//! themselves as events.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{joined, quorum, shutdown};
use concord::{AgentEvent, Error, HandlerContext, RetryPolicy, StepError};
use serde_json::json;

/// Polls `check` every 20 ms until it holds; fails after 20 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Emits `name` once for each of `range` (the number as its payload), then
/// waits until `runs` reaches `total`.
async fn emit_then_await(
    space: &concord::Space,
    name: &str,
    range: std::ops::Range<usize>,
    runs: &AtomicUsize,
    total: usize,
) {
    for i in range {
        space.emit(name, json!(i)).await.unwrap();
    }
    eventually("every run done", || async {
        runs.load(Ordering::SeqCst) >= total
    })
    .await;
}

/// A handler that counts its runs in `runs` and succeeds.
fn counting(
    runs: &Arc<AtomicUsize>,
) -> impl Fn(AgentEvent, HandlerContext) -> std::future::Ready<Result<(), Error>> + Send + Sync + 'static
{
    let runs = Arc::clone(runs);
    move |_, _| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_runs_each_event_once_across_three_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 3).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut spaces = Vec::new();
    let mut handles = Vec::new();
    for node in &nodes {
        let space = node.space("agents").await.unwrap();
        let handle = space
            .when("researcher_complete", counting(&runs))
            .start()
            .unwrap();
        spaces.push(space);
        handles.push(handle);
    }
    const EVENTS: usize = 10;
    for i in 0..EVENTS {
        spaces[i % 3]
            .emit("researcher_complete", json!({ "n": i }))
            .await
            .unwrap();
    }
    let handled = || async {
        let records = spaces[0]
            .topic::<concord::toolkit::when::Handled>(concord::toolkit::HANDLED)
            .unwrap()
            .entries()
            .await
            .unwrap();
        records.iter().filter(|(_, h)| h.done).count() == EVENTS
    };
    eventually("every event recorded as handled", handled).await;
    // Give the other nodes time to (wrongly) run them again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(runs.load(Ordering::SeqCst), EVENTS);
    drop(handles);
    drop(spaces);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handlers_on_three_nodes_share_the_events_out_by_partition() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 3).await;
    let runs: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut handles = Vec::new();
    for (node, runs) in nodes.iter().zip(&runs) {
        let space = node.space("agents").await.unwrap();
        handles.push(space.when("work", counting(runs)).start().unwrap());
    }
    // Every node sees the others announce the handler.
    let space = nodes[0].space("agents").await.unwrap();
    let presence = space
        .ephemeral::<String>("coordination/when.work", Duration::from_secs(5))
        .unwrap();
    eventually("three nodes announce the handler", || async {
        presence.get().await.is_ok_and(|nodes| nodes.len() == 3)
    })
    .await;
    const EVENTS: usize = 48;
    for i in 0..EVENTS {
        space.emit("work", json!({ "n": i })).await.unwrap();
    }
    let total = || runs.iter().map(|r| r.load(Ordering::SeqCst)).sum::<usize>();
    eventually("every event run", || async { total() >= EVENTS }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_node: Vec<usize> = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    assert_eq!(total(), EVENTS, "{per_node:?}");
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() > 1,
        "{per_node:?}"
    );
    drop(handles);
    drop(space);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_a_member_never_takes_are_taken_by_another_after_a_grace() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 2).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let space = nodes[0].space("agents").await.unwrap();
    let ttl = Duration::from_millis(500);
    let _handle = space
        .when("work", counting(&runs))
        .claim_ttl(ttl)
        .start()
        .unwrap();
    // The other node announces the handler but never runs it: the
    // partitions it ranks first for stay unheld.
    let ghost = nodes[1].space("agents").await.unwrap();
    let presence = ghost
        .ephemeral::<String>("coordination/when.work", ttl)
        .unwrap();
    let announcing = tokio::spawn(async move {
        loop {
            presence.set(&"ghost".to_owned()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    const EVENTS: usize = 32;
    emit_then_await(&space, "work", 0..EVENTS, &runs, EVENTS).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), EVENTS);
    announcing.abort();
    drop((space, ghost, _handle));
    shutdown(nodes).await;
}

/// Runs a handler that takes 200 ms on each of 8 events, on one node with
/// at most `concurrency` runs at once; returns the most runs seen at once.
async fn most_at_once(concurrency: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 1).await;
    let space = nodes[0].space("agents").await.unwrap();
    let (now, most, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (n, m, d) = (now.clone(), most.clone(), done.clone());
    let handle = space
        .when("slow", move |_, _| {
            let (now, most, done) = (n.clone(), m.clone(), d.clone());
            async move {
                most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(())
            }
        })
        .concurrency(concurrency)
        .start()
        .unwrap();
    emit_then_await(&space, "slow", 0..8, &done, 8).await;
    drop((handle, space));
    shutdown(nodes).await;
    most.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_runs_events_of_different_partitions_at_once_up_to_its_concurrency() {
    assert!(most_at_once(16).await > 1);
    assert_eq!(most_at_once(1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_handler_gives_its_claims_back_and_takes_them_again_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 1).await;
    let space = nodes[0].space("agents").await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let handle = space
        .when("rare", counting(&runs))
        .claim_ttl(Duration::from_millis(200))
        .start()
        .unwrap();
    let mirror = space
        .set::<concord::LockHolder>(concord::LOCK_HOLDERS)
        .unwrap();
    let claims = || async {
        let held = mirror.members().await.unwrap();
        held.iter()
            .filter(|h| h.resource.starts_with("when.rare."))
            .count()
    };
    // Nothing held before an event: an idle handler costs no lease.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(claims().await, 0);
    space.emit("rare", json!(1)).await.unwrap();
    eventually("the first run", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(claims().await, 1, "the event's partition is held");
    let ran = Instant::now();
    eventually("the idle claim given back", || async {
        claims().await == 0
    })
    .await;
    // After six claim ttls without events, not before.
    assert!(
        ran.elapsed() >= Duration::from_millis(1_000),
        "{:?}",
        ran.elapsed()
    );
    space.emit("rare", json!(2)).await.unwrap();
    eventually("the second run", || async {
        runs.load(Ordering::SeqCst) == 2
    })
    .await;
    drop((handle, space));
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_handler_hands_its_partitions_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 2).await;
    let (a, b) = (
        nodes[0].space("agents").await.unwrap(),
        nodes[1].space("agents").await.unwrap(),
    );
    let (ran_a, ran_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // A long claim ttl: only a handover, not an expiry, is fast enough.
    let ttl = Duration::from_secs(10);
    let on_a = a
        .when("job", counting(&ran_a))
        .claim_ttl(ttl)
        .start()
        .unwrap();
    emit_then_await(&a, "job", 0..16, &ran_a, 16).await;
    on_a.stop();
    let mirror = a.set::<concord::LockHolder>(concord::LOCK_HOLDERS).unwrap();
    eventually("a gave its partitions back", || async {
        let held = mirror.members().await.unwrap();
        !held.iter().any(|h| h.resource.starts_with("when.job."))
    })
    .await;
    let on_b = b
        .when("job", counting(&ran_b))
        .claim_ttl(ttl)
        .start()
        .unwrap();
    let handed = Instant::now();
    emit_then_await(&b, "job", 16..32, &ran_b, 16).await;
    assert!(handed.elapsed() < ttl / 2, "{:?}", handed.elapsed());
    assert_eq!(ran_a.load(Ordering::SeqCst), 16);
    drop((on_b, a, b));
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_whose_node_dies_mid_run_is_finished_once_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    // Lease peers on all three: the quorum survives losing any one.
    let mut nodes = quorum(dir.path(), 3).await;
    let (starts, completions) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stuck = Arc::new(std::sync::Mutex::new(None::<usize>));
    let mut handles = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let space = node.space("agents").await.unwrap();
        let (starts, completions, stuck) = (starts.clone(), completions.clone(), stuck.clone());
        let handle = space
            .when("build", move |_, _| {
                let (starts, completions, stuck) =
                    (starts.clone(), completions.clone(), stuck.clone());
                async move {
                    starts.fetch_add(1, Ordering::SeqCst);
                    // The first run hangs, as on a node about to die.
                    let first = stuck.lock().unwrap().get_or_insert(i) == &i
                        && starts.load(Ordering::SeqCst) == 1;
                    if first {
                        std::future::pending::<()>().await;
                    }
                    completions.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>(())
                }
            })
            .claim_ttl(Duration::from_secs(1))
            .start()
            .unwrap();
        handles.push(handle);
    }
    let emitter = nodes[0].space("agents").await.unwrap();
    emitter
        .emit("build", json!({"commit": "abc"}))
        .await
        .unwrap();
    eventually("a node started the handler", || async {
        starts.load(Ordering::SeqCst) == 1
    })
    .await;
    let dead = stuck.lock().unwrap().unwrap();
    drop(handles.remove(dead));
    drop(emitter);
    let started = Instant::now();
    Arc::into_inner(nodes.remove(dead))
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    eventually("another node finished it", || async {
        completions.load(Ordering::SeqCst) == 1
    })
    .await;
    // After the claim expired, not before.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        (
            starts.load(Ordering::SeqCst),
            completions.load(Ordering::SeqCst)
        ),
        (2, 1)
    );
    drop(handles);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_handler_emits_failed_and_is_retried_up_to_its_policy() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 2).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for node in &nodes {
        let space = node.space("agents").await.unwrap();
        let runs = Arc::clone(&runs);
        let handle = space
            .when("deploy", move |_, ctx| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Err(format!("attempt {} failed", ctx.attempt))
                }
            })
            .retry(RetryPolicy {
                max_attempts: 3,
                base_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(50),
            })
            .start()
            .unwrap();
        handles.push(handle);
    }
    let space = nodes[1].space("agents").await.unwrap();
    space.emit("deploy", json!({})).await.unwrap();
    eventually("three failures", || async {
        space.events("deploy_failed").await.unwrap().len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failures = space.events("deploy_failed").await.unwrap();
    assert_eq!((failures.len(), runs.load(Ordering::SeqCst)), (3, 3));
    let attempts: Vec<_> = failures
        .iter()
        .map(|(_, e)| e.payload["attempt"].clone())
        .collect();
    assert_eq!(attempts, [json!(1), json!(2), json!(3)]);
    assert_eq!(failures[2].1.payload["error"], "attempt 3 failed");
    drop(handles);
    drop(space);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_handler_counts_as_a_failed_run_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 1).await;
    let space = nodes[0].space("agents").await.unwrap();
    let handle = space
        .when("flaky", |_, ctx| async move {
            assert!(ctx.attempt > 1, "first attempt blows up");
            Ok::<_, Error>(())
        })
        .retry(RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(50),
        })
        .start()
        .unwrap();
    space.emit("flaky", json!({})).await.unwrap();
    let records = space
        .topic::<concord::toolkit::when::Handled>(concord::toolkit::HANDLED)
        .unwrap();
    eventually("done on the second run", || async {
        let done = records.entries().await.unwrap();
        done.iter().any(|(_, h)| h.done && h.ok && h.attempt == 2)
    })
    .await;
    let failures = space.events("flaky_failed").await.unwrap();
    assert_eq!(failures.len(), 1);
    let error = failures[0].1.payload["error"].as_str().unwrap();
    assert!(error.contains("panicked"), "{error}");
    drop((handle, space));
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcast_handlers_run_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 3).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for node in &nodes {
        let space = node.space("agents").await.unwrap();
        let handle = space
            .when("config_changed", counting(&runs))
            .on_every_node()
            .start()
            .unwrap();
        handles.push(handle);
    }
    // Let every handler subscribe before the events.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let space = nodes[2].space("agents").await.unwrap();
    for _ in 0..2 {
        space.emit("config_changed", json!({})).await.unwrap();
    }
    eventually("6 runs", || async { runs.load(Ordering::SeqCst) == 6 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 6);
    drop(handles);
    drop(space);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinated_steps_take_turns_and_announce_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 3).await;
    nodes[0].space("agents").await.unwrap();
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let space = node.space("agents").await.unwrap();
        tasks.push(tokio::spawn(async move {
            space
                .coordinate("researcher")
                .lock("openai_api")
                .run(|ctx| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, String>(json!({"node": i, "token": ctx.token().unwrap().get()}))
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let space = nodes[0].space("agents").await.unwrap();
    eventually("three completions", || async {
        space.events("researcher_complete").await.unwrap().len() == 3
    })
    .await;
    // Each ran under its own, increasing token, for its whole duration.
    let mut done: Vec<_> = space.events("researcher_complete").await.unwrap();
    done.sort_by_key(|(_, e)| e.payload["token"].as_u64());
    let tokens: Vec<u64> = done
        .iter()
        .map(|(_, e)| e.payload["token"].as_u64().unwrap())
        .collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    for (_, e) in &done {
        assert_eq!(e.payload["result"]["token"], e.payload["token"]);
        assert!(e.payload["duration_ms"].as_u64().unwrap() >= 100);
    }
    assert_eq!(space.events("researcher_started").await.unwrap().len(), 3);
    // A failing step says so, and its error reaches the caller.
    let failed = space
        .coordinate("researcher")
        .run(|_| async { Err::<(), _>("model timed out") })
        .await;
    assert!(matches!(failed, Err(StepError::Failed("model timed out"))));
    eventually("the failure event", || async {
        space.events("researcher_failed").await.unwrap().len() == 1
    })
    .await;
    let bad = space
        .coordinate("no spaces allowed")
        .run(|_| async { Ok::<_, String>(()) });
    assert!(matches!(
        bad.await,
        Err(StepError::Concord(Error::EventName(_)))
    ));
    drop(space);
    shutdown(nodes).await;
}
