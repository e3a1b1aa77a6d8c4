//! The `reconcile` example's claims: the executing node dies mid-operation,
//! another node takes the operation over under a higher token and finishes
//! it, and the real processes match each desired count.
#![allow(clippy::unwrap_used)]

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_is_taken_over_and_the_fleet_matches_the_intent() {
    let dir = tempfile::tempdir().unwrap();
    let r = concord_examples::reconcile::run(dir.path()).await.unwrap();
    assert_eq!(r.initial, 1);
    assert!(r.alive_at_kill >= 2 && r.alive_at_kill < 4, "{r:?}");

    let [first, ..] = r.scale_up.as_slice() else {
        panic!("expected a killed and a finishing execution: {r:?}");
    };
    assert_eq!((first.node, first.completed), (r.killed, false), "{r:?}");
    let completed: Vec<_> = r.scale_up.iter().filter(|e| e.completed).collect();
    let [takeover, later @ ..] = completed.as_slice() else {
        panic!("nobody finished the scale-up: {r:?}");
    };
    assert!(takeover.node != r.killed, "{r:?}");
    assert!(takeover.token > first.token, "{r:?}");
    // The survivor finished what the dead executor began, no more. An
    // observation written mid-way makes another operation (ids follow the
    // observation), which finds the count matching and does nothing.
    assert_eq!(
        u64::try_from(r.alive_at_kill).unwrap() + takeover.started,
        4,
        "{r:?}"
    );
    assert!(
        later.iter().all(|e| (e.started, e.stopped) == (0, 0)),
        "{r:?}"
    );

    assert_eq!(r.after_up.0.len(), 4);
    assert_eq!(r.after_up.1, Some(json!(4)));
    assert_eq!(r.after_down.0.len(), 1);
    assert_eq!(r.after_down.1, Some(json!(1)));
    assert!(r.after_up.0.contains(&r.after_down.0[0]));
}
