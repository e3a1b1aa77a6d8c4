//! The agent runner (observe, decide, execute) on in-process nodes:
//! observations are written only when they change and only to
//! `observation/`, and a reconciliation decided on two nodes executes once
//! across the space, under a lock, announced as a coordinated step.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord::coordinator::{Coordinator, Operation};
use concord::testing::Cluster;
use concord::toolkit::{MAX_OBSERVATIONS, Observation, Runner};
use concord::{Node, Space};
use serde_json::{Value, json};

async fn coordinator(node: &Node, space: &Space) -> Coordinator {
    Coordinator::new(space.clone(), node.space_lease(space).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observation_is_written_only_when_it_changes() {
    let cluster = Cluster::solo().await.unwrap();
    let node = cluster.node(0);
    let space = node.space("fleet").await.unwrap();
    let disk = Arc::new(AtomicU64::new(40));
    let seen = Arc::clone(&disk);
    let mut agent = Runner::new(coordinator(node, &space).await).observe("disk", move || {
        let used = seen.load(Ordering::SeqCst);
        async move { Ok(vec![Observation::new("observation/disk", json!(used))]) }
    });
    assert_eq!(agent.tick().await.unwrap().observed, 1);
    let clock = space.vector_clock().await.unwrap();
    for _ in 0..5 {
        assert_eq!(agent.tick().await.unwrap().observed, 0);
    }
    assert_eq!(
        space.vector_clock().await.unwrap(),
        clock,
        "unchanged: no write"
    );
    disk.store(93, Ordering::SeqCst);
    assert_eq!(agent.tick().await.unwrap().observed, 1);
    assert_eq!(
        space.get("observation/disk").await.unwrap(),
        Some(json!(93))
    );
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_outside_their_family_or_past_the_limit_fail_the_observer_only() {
    let cluster = Cluster::solo().await.unwrap();
    let node = cluster.node(0);
    let space = node.space("fleet").await.unwrap();
    let mut agent = Runner::new(coordinator(node, &space).await)
        .observe("sneaky", || async {
            Ok(vec![
                Observation::new("observation/ok", json!(1)),
                Observation::new("intent/replicas", json!(9)),
            ])
        })
        .observe("flood", || async {
            let many = (0..=MAX_OBSERVATIONS)
                .map(|i| Observation::new(&format!("observation/n{i}"), json!(i)))
                .collect();
            Ok(many)
        })
        .observe("down", || async { Err("api unreachable".to_owned()) })
        .observe("fine", || async {
            Ok(vec![Observation::new("observation/fine", json!(true))])
        });
    let tick = agent.tick().await.unwrap();
    assert_eq!(tick.observed, 1);
    let failed: Vec<&str> = tick.failed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(failed, ["sneaky", "flood", "down"]);
    assert!(
        tick.failed[0].1.contains("intent/replicas"),
        "{:?}",
        tick.failed
    );
    assert!(tick.failed[2].1.contains("api unreachable"));
    for nothing in ["observation/ok", "intent/replicas", "observation/n0"] {
        assert_eq!(space.get(nothing).await.unwrap(), None, "{nothing}");
    }
    assert_eq!(
        space.get("observation/fine").await.unwrap(),
        Some(json!(true))
    );
    cluster.shutdown().await.unwrap();
}

/// A runner that scales the shared `fleet` (the external system) to the
/// desired count, recording the fencing token of every change it makes.
async fn scaler(node: &Node, fleet: &Arc<Mutex<(u64, Vec<u64>)>>) -> Runner {
    let space = node.space("fleet").await.unwrap();
    let mut coordinator = coordinator(node, &space).await;
    let world = Arc::clone(fleet);
    coordinator
        .register("scale", move |op, token| {
            let world = Arc::clone(&world);
            async move {
                let mut fleet = world.lock().unwrap();
                fleet.0 = op.payload["to"].as_u64().unwrap();
                fleet.1.push(token.get());
                Ok(json!({"running": fleet.0}))
            }
        })
        .unwrap();
    let world = Arc::clone(fleet);
    Runner::new(coordinator)
        .observe("fleet", move || {
            let running = world.lock().unwrap().0;
            async move {
                Ok(vec![Observation::new(
                    "observation/running",
                    json!(running),
                )])
            }
        })
        .decide("scale", |space| async move {
            let want = space
                .get("intent/replicas")
                .await
                .map_err(|e| e.to_string())?;
            let have = space
                .get("observation/running")
                .await
                .map_err(|e| e.to_string())?;
            Ok(match want {
                Some(want) if Some(&want) != have.as_ref() => vec![Operation {
                    id: format!("scale-to-{want}"),
                    kind: "scale".into(),
                    resource: Some("fleet".into()),
                    payload: json!({"to": want}),
                }],
                _ => vec![],
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_decided_on_two_nodes_executes_once() {
    let cluster = Cluster::joined(2).await.unwrap();
    let fleet = Arc::new(Mutex::new((1, Vec::new())));
    let [node_a, node_b] = cluster.nodes() else {
        panic!("two nodes");
    };
    let mut a = scaler(node_a, &fleet).await;
    let mut b = scaler(node_b, &fleet).await;
    a.tick().await.unwrap();
    cluster
        .converged("fleet", Duration::from_secs(10))
        .await
        .unwrap();

    let spaces = cluster.space("fleet").await.unwrap();
    spaces[1].put("intent/replicas", json!(3)).await.unwrap();
    cluster
        .converged("fleet", Duration::from_secs(10))
        .await
        .unwrap();
    // Both decide "scale to 3" and both submit it; the lock and the
    // operation id let exactly one execution through.
    let (ta, tb) = tokio::join!(a.tick(), b.tick());
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert_eq!(ta.executed + tb.executed, 1, "{ta:?} {tb:?}");
    assert_eq!(fleet.lock().unwrap().0, 3);
    assert_eq!(fleet.lock().unwrap().1.len(), 1);

    // Settled everywhere: further ticks observe 3 and do nothing.
    cluster
        .converged("fleet", Duration::from_secs(10))
        .await
        .unwrap();
    for runner in [&mut a, &mut b] {
        let tick = runner.tick().await.unwrap();
        assert_eq!((tick.submitted, tick.executed), (0, 0), "{tick:?}");
    }
    cluster
        .converged("fleet", Duration::from_secs(10))
        .await
        .unwrap();
    let complete = spaces[0].events("scale_complete").await.unwrap();
    assert_eq!(complete.len(), 1);
    let token: Value = fleet.lock().unwrap().1[0].into();
    assert_eq!(complete[0].1.payload["token"], token);
    assert_eq!(
        spaces[0].get("observation/running").await.unwrap(),
        Some(json!(3))
    );
    cluster.shutdown().await.unwrap();
}
