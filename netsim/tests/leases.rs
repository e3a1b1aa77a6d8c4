//! Lease safety under the lease scenarios: every one passes on a few seeds
//! and really exercises the machines; runs are deterministic; and with
//! clocks drifting beyond the configured bound the checker catches
//! overlapping holders (it can fail).

use netsim::{Report, Scenario, ScenarioConfig};

fn run(scenario: Scenario, seed: u64, duration_s: u64) -> (ScenarioConfig, Report) {
    let mut cfg = ScenarioConfig::new(scenario, 5, seed);
    cfg.duration_s = Some(duration_s);
    let report = netsim::run(&cfg);
    (cfg, report)
}

/// Runs `scenario` on `seeds`; every run passes; returns the reports.
fn check(scenario: Scenario, seeds: &[u64]) -> Vec<Report> {
    seeds
        .iter()
        .map(|&seed| {
            let (cfg, report) = run(scenario, seed, 6);
            assert!(
                report.passed(),
                "{}\nreplay: {}",
                report.summary(),
                cfg.replay_command()
            );
            let l = &report.counters.lease;
            assert!(
                l.grants > 0 && l.writes_accepted > 0,
                "{}",
                report.summary()
            );
            assert!(l.messages > 0 && l.persisted > 0, "{}", report.summary());
            report
        })
        .collect()
}

#[test]
fn lease_contention() {
    let reports = check(Scenario::LeaseContention, &[1, 2, 3]);
    let total = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    assert!(total(|r| r.counters.lease.renewals) > 0);
    assert!(total(|r| r.counters.lease.released) > 0);
    assert!(total(|r| r.counters.lease.expired) > 0);
    assert!(total(|r| r.counters.dropped_loss) > 0);
}

#[test]
fn lease_partition() {
    let reports = check(Scenario::LeasePartition, &[1, 2, 3]);
    assert!(reports.iter().all(|r| r.counters.dropped_partition > 0));
}

#[test]
fn lease_pause() {
    let reports = check(Scenario::LeasePause, &[1, 2, 3, 4]);
    // Paused holders came back and wrote with stale tokens: refused.
    let stale: u64 = reports
        .iter()
        .map(|r| r.counters.lease.stale_writes_rejected)
        .sum();
    assert!(stale > 0, "no stale write was refused");
}

#[test]
fn lease_skew() {
    check(Scenario::LeaseSkew, &[1, 2, 3]);
}

#[test]
fn acceptors_restart_from_their_disk() {
    // Crash every acceptor once, uncleanly, while leases are contended.
    let mut cfg = ScenarioConfig::new(Scenario::LeaseContention, 5, 4);
    cfg.duration_s = Some(6);
    let mut plan = cfg.plan();
    plan.faults.retain(|f| {
        !matches!(
            f.fault,
            netsim::Fault::Crash { .. } | netsim::Fault::Restart(_)
        )
    });
    for node in 0..5u32 {
        let at_ms = 1_000 + 900 * u64::from(node);
        plan.faults.push(netsim::FaultAt {
            at_ms,
            fault: netsim::Fault::Crash { node, clean: false },
        });
        plan.faults.push(netsim::FaultAt {
            at_ms: at_ms + 400,
            fault: netsim::Fault::Restart(node),
        });
    }
    plan.faults.sort_by_key(|f| f.at_ms);
    let report = netsim::run_plan(plan);
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(report.counters.lease.acceptor_restarts, 5);
    assert!(report.counters.lease.grants > 0);
}

#[test]
fn lease_runs_are_deterministic() {
    let (_, a) = run(Scenario::LeaseContention, 11, 4);
    let (_, b) = run(Scenario::LeaseContention, 11, 4);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.counters.lease, b.counters.lease);
    let (_, c) = run(Scenario::LeaseContention, 12, 4);
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn checker_catches_overlaps_beyond_the_drift_bound() {
    let seeds = 1..=6;
    let caught = seeds
        .clone()
        .filter(|&seed| {
            let (_, report) = run(Scenario::LeaseSkewBeyond, seed, 6);
            assert!(!report.failures.is_empty() || report.violations.lease == 0);
            report.violations.lease > 0
        })
        .count();
    assert!(caught > 0, "no overlap caught in {seeds:?}");
    // Control: the same runs within the bound are clean.
    for seed in seeds {
        let mut cfg = ScenarioConfig::new(Scenario::LeaseSkewBeyond, 5, seed);
        cfg.duration_s = Some(6);
        let mut plan = cfg.plan();
        plan.clocks.max_drift_ppm = netsim::DEFAULT_DRIFT_BOUND_PPM;
        let report = netsim::run_plan(plan);
        assert!(report.passed(), "{}", report.summary());
    }
}

#[test]
fn every_named_scenario_parses() {
    for s in Scenario::ALL.into_iter().chain(Scenario::BROKEN) {
        assert_eq!(s.name().parse::<Scenario>(), Ok(s));
    }
    assert!(Scenario::ALL.iter().filter(|s| s.has_leases()).count() == 4);
    assert!(!Scenario::ALL.contains(&Scenario::LeaseSkewBeyond));
}
