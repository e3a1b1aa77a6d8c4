//! Heartbeats on an ephemeral channel: `steady` publishes one per node and
//! second; they travel as ephemeral frames, make no change but their
//! channel's declaration, and every checker still passes. Other plans
//! publish none.

use netsim::trace::TraceEvent;
use netsim::workload::PRESENCE_CHANNEL;
use netsim::{Report, Scenario, ScenarioConfig};

fn run(scenario: Scenario, heartbeat_ms: Option<Option<u64>>) -> Report {
    let mut cfg = ScenarioConfig::new(scenario, 6, 11);
    cfg.duration_s = Some(3);
    cfg.record = true;
    let mut plan = cfg.plan();
    if let Some(every) = heartbeat_ms {
        plan.workload.heartbeat_ms = every;
    }
    let report = netsim::run_plan(plan);
    assert!(report.passed(), "{}", report.summary());
    report
}

/// Heartbeat writes as (made a change, durable), and ephemeral frames delivered.
fn heartbeats(report: &Report) -> (Vec<bool>, usize) {
    let writes = report
        .records
        .iter()
        .filter_map(|r| match &r.e {
            TraceEvent::Write { path, seq, .. } if path == PRESENCE_CHANNEL => Some(*seq > 0),
            _ => None,
        })
        .collect();
    let delivered = report
        .records
        .iter()
        .filter(|r| {
            matches!(
                r.e,
                TraceEvent::Deliver {
                    frame: "ephemeral",
                    ..
                }
            )
        })
        .count();
    (writes, delivered)
}

#[test]
fn steady_nodes_publish_heartbeats_that_reach_their_peers() {
    let report = run(Scenario::Steady, None);
    let (writes, delivered) = heartbeats(&report);
    // Six nodes, one a second for three seconds.
    assert!(writes.len() >= 6 * 2, "{} heartbeats", writes.len());
    // Only declaring the channel made changes (each node declares it at most
    // once, when it has not seen a declaration yet).
    let changes = writes.iter().filter(|changed| **changed).count();
    assert!(
        (1..=6).contains(&changes),
        "{changes} heartbeats made a change"
    );
    // Each heartbeat reached the other nodes (gossip relays it further).
    assert!(
        delivered >= writes.len() * 5,
        "{delivered} ephemeral frames delivered"
    );
}

#[test]
fn heartbeats_are_off_unless_the_plan_asks() {
    for report in [
        run(Scenario::Steady, Some(None)),
        run(Scenario::PartitionHeal, None),
    ] {
        assert_eq!(heartbeats(&report), (Vec::new(), 0), "{}", report.summary());
    }
}
