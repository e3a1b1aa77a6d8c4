//! Each example's scenario, run for real (nodes on loopback, a real git
//! repository, a real SQLite file, a real HTTP server), with its key claim
//! asserted: a stale holder's git swap is refused; no SQLite update is
//! lost and a stale token is refused; an edge node cut off converges with
//! the policy's outcome; every pipeline stage runs exactly once. Plus the
//! fake model's size limits.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use concord_examples::{
    ExampleError, agent_pipeline, edge_offline, git_cas, llm, sqlite_optimistic,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn git_refuses_the_swap_of_a_holder_whose_lease_expired() {
    let report = git_cas::run(Duration::from_millis(1_000)).await.unwrap();
    assert!(report.stale_refused(), "{report}");
    assert!(report.tokens_increase(), "{report}");
    let stale = &report.stale;
    let why = stale.refused.as_deref().unwrap();
    assert!(why.contains("refs/heads/main"), "{why}");
    // Refused because a later holder moved the branch: its token is newer.
    let (_, head_token) = report.head_at_refusal.clone().unwrap();
    assert!(head_token.unwrap() > stale.token, "{report}");
    assert_eq!(report.left_on_wake, Duration::ZERO, "{report}");
    // Three accepted swaps, one refused.
    assert_eq!(report.history.len(), 3, "{report}");
    assert!(report.turns.iter().all(|a| a.refused.is_none()), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_loses_no_update_and_refuses_a_stale_token() {
    let config = sqlite_optimistic::Config {
        nodes: 3,
        agents_per_node: 2,
        updates_per_agent: 4,
        stale_ttl: Duration::from_millis(1_000),
    };
    let report = sqlite_optimistic::run(config).await.unwrap();
    assert!(report.no_update_lost(), "{report}");
    // 3 nodes x 2 agents x 4 updates, and the overtaker's one.
    assert_eq!(report.made(), 3 * 2 * 4 + 1, "{report}");
    let stale = &report.stale;
    assert!(stale.refused && stale.version_matched, "{report}");
    assert!(stale.row_token > stale.token, "{report}");
    assert_eq!(stale.left_on_try, Duration::ZERO, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_cut_off_keeps_writing_and_converges_by_policy() {
    let report = edge_offline::run().await.unwrap();
    assert!(report.converged_by_policy(), "{report}");
    assert_eq!(report.policy, "last_write_wins");
    // Apart, each side read its own write, and the hub none of the edge's.
    let apart: Vec<_> = report
        .apart
        .iter()
        .map(|r| (r.target.clone(), r.readings))
        .collect();
    assert_eq!(
        apart,
        [
            (Some(json!("central-region")), 0),
            (Some(json!("edge-cache")), edge_offline::OFFLINE_WRITES)
        ],
        "{report}"
    );
    assert_eq!(report.offline_seqs.len(), edge_offline::OFFLINE_WRITES + 1);
    assert!(
        report.offline_seqs.windows(2).all(|w| w[0] < w[1]),
        "{report}"
    );
    let mut values: Vec<_> = report.candidates.iter().map(|c| c.value.clone()).collect();
    values.sort_by_key(|v| v.to_string());
    assert_eq!(values, [json!("central-region"), json!("edge-cache")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_pipeline_stage_runs_exactly_once() {
    let topic = "leases with fencing tokens";
    let report = agent_pipeline::run(topic).await.unwrap();
    assert!(report.every_stage_once(), "{report}");
    // Each stage worked on the previous one's result.
    let mut prompt = topic.to_owned();
    for stage in &report.stages {
        let want = llm::answer(&stage.agent, &prompt);
        assert_eq!(stage.results, std::slice::from_ref(&want), "{report}");
        // The model was called under the step's lock, with its token.
        assert_eq!(stage.model_tokens, stage.tokens, "{report}");
        prompt = want;
    }
}

#[tokio::test]
async fn the_fake_model_refuses_a_prompt_over_its_limit() {
    let model = llm::FakeModel::start().await.unwrap();
    let fits = "x".repeat(llm::MAX_PROMPT_BYTES - 64);
    let text = llm::complete_at(model.addr(), "analyzer", &fits, Some(7))
        .await
        .unwrap();
    assert_eq!(text, llm::answer("analyzer", &fits));
    let too_long = "x".repeat(llm::MAX_PROMPT_BYTES + 1);
    match llm::complete_at(model.addr(), "analyzer", &too_long, None).await {
        Err(ExampleError::Model(why)) => assert!(why.contains("413"), "{why}"),
        other => panic!("{other:?}"),
    }
    let seen = model.seen();
    assert_eq!(
        (seen["analyzer"].calls, seen["analyzer"].tokens.clone()),
        (1, vec![7])
    );
}

#[tokio::test]
async fn the_client_stops_reading_a_reply_over_its_limit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let huge = format!("{{\"text\": \"{}\"}}", "y".repeat(llm::MAX_REPLY_BYTES));
    let app = axum::Router::new().route(
        "/v1/complete",
        axum::routing::post(move || std::future::ready(huge.clone())),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    match llm::complete_at(addr, "researcher", "anything", None).await {
        Err(ExampleError::ReplyTooLarge { max }) => assert_eq!(max, llm::MAX_REPLY_BYTES),
        other => panic!("{other:?}"),
    }
}
