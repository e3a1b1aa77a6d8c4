//! An agent tested on a virtual clock: one in-process node under tokio's
//! paused clock runs an hour of an agent's life (a tick a minute, an
//! executor that takes 30 s) in a fraction of a second, deterministically.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use concord::coordinator::{COMPLETED, Coordinator, Operation, Outcome};
use concord::testing::Cluster;
use concord::toolkit::{Observation, Runner};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn an_hour_of_agent_ticks_in_virtual_time() {
    let wall = Instant::now();
    let cluster = Cluster::solo().await.unwrap();
    let node = cluster.node(0);
    let space = node.space("fleet").await.unwrap();
    let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await.unwrap());
    coordinator
        .register("scale", |op, token| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(json!({"to": op.payload["to"], "token": token.get()}))
        })
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut agent = Runner::new(coordinator)
        .observe("clock", move || {
            let minutes = started.elapsed().as_secs() / 60;
            async move {
                Ok(vec![Observation::new(
                    "observation/minutes",
                    json!(minutes),
                )])
            }
        })
        .decide("scale", |space| async move {
            let m = space
                .get("observation/minutes")
                .await
                .map_err(|e| e.to_string())?;
            let m = m.and_then(|v| v.as_u64()).unwrap_or(0);
            Ok(if m > 0 && m % 10 == 0 {
                vec![Operation {
                    id: format!("scale-{m}"),
                    kind: "scale".into(),
                    resource: Some("fleet".into()),
                    payload: json!({"to": m}),
                }]
            } else {
                vec![]
            })
        });
    let mut executed = 0;
    for _ in 0..60 {
        executed += agent.tick().await.unwrap().executed;
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    // An hour and the executions' half minutes passed on the virtual clock
    // (each tick observes the minute, so a 30 s execution shifts the next).
    assert_eq!(started.elapsed().as_secs(), 60 * 60 + 6 * 30);
    let done = space
        .topic::<Outcome>(COMPLETED)
        .unwrap()
        .entries()
        .await
        .unwrap();
    let ids: Vec<&str> = done.iter().map(|(_, o)| o.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "scale-10", "scale-20", "scale-30", "scale-40", "scale-50", "scale-60"
        ]
    );
    assert_eq!(executed, 6);
    assert!(
        wall.elapsed() < Duration::from_secs(30),
        "{:?}",
        wall.elapsed()
    );
    cluster.shutdown().await.unwrap();
}
