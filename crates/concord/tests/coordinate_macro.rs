//! `#[concord::coordinate]` on async fns: the generated step takes the
//! lock across nodes, announces itself, and reports the fn's error as
//! `<agent>_failed`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use concord::testing::Cluster;
use concord::{StepContext, StepError};

/// How many run at once, across every node.
static INSIDE: AtomicU32 = AtomicU32::new(0);

#[concord::coordinate(agent = "writer", lock = "report", ttl_ms = 5000)]
async fn write_report(ctx: StepContext, part: u32, most: Arc<AtomicU32>) -> Result<u64, String> {
    let now = INSIDE.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    INSIDE.fetch_sub(1, Ordering::SeqCst);
    if part == 0 {
        return Err("part 0 is missing".to_owned());
    }
    Ok(ctx.token().unwrap().get())
}

/// No context, no lock: the fn's name is the agent.
#[concord::coordinate]
async fn tally(words: Vec<&str>) -> Result<usize, std::convert::Infallible> {
    Ok(words.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_macro_step_excludes_other_nodes_and_announces_itself() {
    let cluster = Cluster::joined(3).await.unwrap();
    let spaces = cluster.space("reports").await.unwrap();
    let most = Arc::new(AtomicU32::new(0));
    let runs = spaces
        .iter()
        .enumerate()
        .map(|(i, space)| write_report(space, u32::try_from(i).unwrap() + 1, Arc::clone(&most)));
    let tokens: Vec<u64> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(most.load(Ordering::SeqCst), 1, "steps overlapped");
    let mut sorted = tokens.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "each holder has its own token: {tokens:?}");

    let failed = write_report(&spaces[0], 0, Arc::clone(&most)).await;
    assert!(matches!(&failed, Err(StepError::Failed(e)) if e == "part 0 is missing"));
    cluster
        .converged("reports", Duration::from_secs(10))
        .await
        .unwrap();
    let space = &spaces[2];
    assert_eq!(space.events("writer_started").await.unwrap().len(), 4);
    assert_eq!(space.events("writer_complete").await.unwrap().len(), 3);
    let why = space.events("writer_failed").await.unwrap();
    assert_eq!(why[0].1.payload["error"], "part 0 is missing");

    assert_eq!(tally(&spaces[1], vec!["a", "b"]).await.unwrap(), 2);
    assert_eq!(spaces[1].events("tally_complete").await.unwrap().len(), 1);
    cluster.shutdown().await.unwrap();
}
