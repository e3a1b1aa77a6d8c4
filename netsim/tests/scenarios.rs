//! Every named scenario passes on a few seeds (small sizes, so that debug
//! builds stay fast; the binary runs the full sizes).

use netsim::{Scenario, ScenarioConfig};

fn check(scenario: Scenario, peers: usize, duration_s: u64, seeds: &[u64]) {
    for &seed in seeds {
        let mut cfg = ScenarioConfig::new(scenario, peers, seed);
        cfg.duration_s = Some(duration_s);
        let report = netsim::run(&cfg);
        assert!(
            report.passed(),
            "{}\nreplay: {}",
            report.summary(),
            cfg.replay_command()
        );
        assert!(report.counters.writes > 0, "{}", report.summary());
    }
}

#[test]
fn steady() {
    check(Scenario::Steady, 8, 5, &[1, 2, 3]);
}

#[test]
fn partition_heal() {
    check(Scenario::PartitionHeal, 8, 5, &[1, 2, 3]);
}

#[test]
fn flaky_links() {
    check(Scenario::FlakyLinks, 8, 5, &[1, 2, 3]);
}

#[test]
fn crash_restart() {
    check(Scenario::CrashRestart, 8, 6, &[1, 2, 3]);
}

#[test]
fn clock_skew() {
    check(Scenario::ClockSkew, 8, 5, &[1, 2, 3]);
}

#[test]
fn offline_edge() {
    check(Scenario::OfflineEdge, 6, 6, &[1, 2]);
}

#[test]
fn chaos() {
    check(Scenario::Chaos, 8, 6, &[1, 2]);
}

#[test]
fn scale_200_peers() {
    check(Scenario::Scale, 200, 1, &[1]);
}

#[test]
fn partitions_and_crashes_really_happen() {
    let mut cfg = ScenarioConfig::new(Scenario::PartitionHeal, 8, 1);
    cfg.duration_s = Some(5);
    assert!(netsim::run(&cfg).counters.dropped_partition > 0);
    let mut cfg = ScenarioConfig::new(Scenario::CrashRestart, 8, 1);
    cfg.duration_s = Some(6);
    let report = netsim::run(&cfg);
    assert!(report.counters.dropped_down > 0, "{}", report.summary());
    assert!(report.counters.acked_writes > 0);
    let mut cfg = ScenarioConfig::new(Scenario::FlakyLinks, 8, 1);
    cfg.duration_s = Some(5);
    let c = netsim::run(&cfg).counters;
    assert!(c.dropped_loss > 0 && c.duplicated > 0);
}

#[test]
fn links_can_turn_bad_and_recover_mid_run() {
    let mut cfg = ScenarioConfig::new(Scenario::Steady, 6, 4);
    cfg.duration_s = Some(4);
    let mut plan = cfg.plan();
    let healthy = plan.links;
    let bad = netsim::LinkParams {
        loss_ppm: 500_000,
        jitter_ms: 300,
        ..healthy
    };
    plan.faults.push(netsim::FaultAt {
        at_ms: 1_000,
        fault: netsim::Fault::Links(bad),
    });
    plan.faults.push(netsim::FaultAt {
        at_ms: 3_000,
        fault: netsim::Fault::Links(healthy),
    });
    let report = netsim::run_plan(plan);
    assert!(report.passed(), "{}", report.summary());
    assert!(report.counters.dropped_loss > 0);
}

#[test]
fn epochs() {
    check(Scenario::Epochs, 8, 6, &[1, 2]);
}

#[test]
fn epochs_offline() {
    check(Scenario::EpochsOffline, 6, 8, &[2, 3]);
}

#[test]
fn epoch_scenarios_really_cut_and_carry() {
    // every node switches several times; the offline node's peers cut at
    // least three times while it is away
    let mut cfg = ScenarioConfig::new(Scenario::Epochs, 8, 1);
    cfg.duration_s = Some(10);
    let report = netsim::run(&cfg);
    assert!(report.passed(), "{}", report.summary());
    assert!(
        report.counters.epoch_switches >= 3 * 8,
        "{}",
        report.summary()
    );
    let mut cfg = ScenarioConfig::new(Scenario::EpochsOffline, 6, 1);
    cfg.duration_s = Some(12);
    let report = netsim::run(&cfg);
    assert!(report.passed(), "{}", report.summary());
    assert!(
        report.counters.epochs_missed_offline >= 3,
        "{}",
        report.summary()
    );
}
