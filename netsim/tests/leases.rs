//! Lease safety under the lease scenarios: every one passes on a few seeds
//! and really exercises the machines (each count asserted here is one a
//! broken run would miss); runs are deterministic; random mixes of faults,
//! sizes and drift within the bound keep every safety property; and with
//! clocks drifting beyond the configured bound the checker catches
//! overlapping holders (it can fail). These are the only simulations of
//! the lease machines: `netsim --sweep` runs the same scenarios on many
//! seeds.

use netsim::trace::TraceEvent;
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

/// Sum of `f` over `reports`.
fn total(reports: &[Report], f: fn(&Report) -> u64) -> u64 {
    reports.iter().map(f).sum()
}

#[test]
fn lease_contention() {
    let reports = check(Scenario::LeaseContention, &[1, 2, 3]);
    assert!(total(&reports, |r| r.counters.lease.renewals) > 0);
    assert!(total(&reports, |r| r.counters.lease.released) > 0);
    assert!(total(&reports, |r| r.counters.lease.expired) > 0);
    assert!(total(&reports, |r| r.counters.dropped_loss) > 0);
}

#[test]
fn the_semaphore_is_shared_by_all_its_permits() {
    // Seven contenders: the 3-permit semaphore is really held by three at
    // once (more would be a violation).
    let peak = (1..=3)
        .map(|seed| {
            let mut cfg = ScenarioConfig::new(Scenario::LeaseContention, 7, seed);
            cfg.duration_s = Some(6);
            let report = netsim::run(&cfg);
            assert!(report.passed(), "{}", report.summary());
            report.counters.lease.peak_semaphore_holders
        })
        .max();
    assert_eq!(peak, Some(3));
}

#[test]
fn lease_chaos() {
    let reports = check(Scenario::LeaseChaos, &[1, 2, 3]);
    for r in &reports {
        let c = &r.counters;
        let faults = [
            c.dropped_partition,
            c.dropped_loss,
            c.duplicated,
            c.dropped_down,
        ];
        assert!(faults.iter().all(|&n| n > 0), "{}", r.summary());
    }
    assert!(total(&reports, |r| r.counters.lease.renewals) > 0);
    assert!(total(&reports, |r| r.counters.lease.acceptor_restarts) > 0);
    assert!(total(&reports, |r| r.counters.lease.peak_semaphore_holders) > 0);
}

#[test]
fn lease_expiry_race() {
    let reports = check(Scenario::LeaseExpiryRace, &[1, 2, 3]);
    for r in &reports {
        // Holders let their leases run out while others wait, and renew.
        let l = &r.counters.lease;
        assert!(l.expired > 0 && l.renewals > 0, "{}", r.summary());
    }
}

#[test]
fn lease_acceptor_crashes() {
    let reports = check(Scenario::LeaseAcceptorCrashes, &[1, 2, 3]);
    for r in &reports {
        // Five acceptors, each crashing every 0.5-2 s for 6 s.
        assert!(r.counters.lease.acceptor_restarts >= 10, "{}", r.summary());
    }
}

#[test]
fn lease_slow_disk_grants_on_every_seed() {
    // `check` asserts grants on each seed: proposers with a fixed round
    // timeout would never see a promise in time here.
    let reports = check(Scenario::LeaseSlowDisk, &[1, 2, 3, 4]);
    assert!(total(&reports, |r| r.counters.lease.renewals) > 0);
}

#[test]
fn lease_minority_never_acquires() {
    for seed in 1..=3 {
        let mut cfg = ScenarioConfig::new(Scenario::LeaseMinority, 5, seed);
        cfg.duration_s = Some(6);
        cfg.record = true;
        let report = netsim::run(&cfg);
        assert!(report.passed(), "{}", report.summary());
        // Nodes 0 (one acceptor of three) and 3 are the minority.
        let acquired_by = |minority: bool| {
            report.records.iter().any(|r| {
                matches!(&r.e, TraceEvent::Lease { node, what: "acquired", .. }
                    if [0, 3].contains(node) == minority)
            })
        };
        assert!(!acquired_by(true), "seed {seed}: the minority acquired");
        assert!(acquired_by(false), "seed {seed}: the majority did not");
    }
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
    for scenario in [Scenario::LeaseContention, Scenario::LeaseAcceptorCrashes] {
        let (_, a) = run(scenario, 11, 4);
        let (_, b) = run(scenario, 11, 4);
        assert_eq!(a.trace_hash, b.trace_hash, "{scenario}");
        assert_eq!(a.counters.lease, b.counters.lease, "{scenario}");
        let (_, c) = run(scenario, 12, 4);
        assert_ne!(a.trace_hash, c.trace_hash, "{scenario}");
    }
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
    assert!(Scenario::ALL.iter().filter(|s| s.has_leases()).count() == 9);
    assert!(!Scenario::ALL.contains(&Scenario::LeaseSkewBeyond));
}

mod random_parameters {
    use netsim::{DEFAULT_DRIFT_BOUND_PPM, LinkParams, Scenario, ScenarioConfig};
    use proptest::prelude::*;

    /// The lease scenarios whose runs must pass, for their faults.
    fn lease_scenarios() -> Vec<Scenario> {
        Scenario::ALL
            .into_iter()
            .filter(|s| s.has_leases())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Any lease scenario's faults with any sizes, permits, link
        /// quality and drift within the configured bound keep every safety
        /// property.
        #[test]
        fn safety_holds_for_random_parameters(
            scenario in prop::sample::select(lease_scenarios()),
            seed in any::<u64>(),
            peers in 3usize..=6,
            acceptors in prop::sample::select(vec![1usize, 3, 5]),
            proposers in 1usize..=6,
            permits in 1u32..4,
            loss_ppm in 0u32..300_000,
            dup_ppm in 0u32..300_000,
            latency_max_ms in 1u64..30,
            drift_ppm in 0u32..=5 * DEFAULT_DRIFT_BOUND_PPM,
            extreme in any::<bool>(),
            adversarial in any::<bool>(),
        ) {
            let mut cfg = ScenarioConfig::new(scenario, peers, seed);
            cfg.duration_s = Some(3);
            let mut plan = cfg.plan();
            plan.links = LinkParams {
                latency_min_ms: 0,
                latency_max_ms,
                loss_ppm,
                dup_ppm,
                ..plan.links
            };
            plan.clocks.max_drift_ppm = drift_ppm;
            plan.clocks.extreme = extreme;
            if let Some(lease) = plan.lease.as_mut() {
                lease.acceptors = acceptors.min(peers);
                lease.first_proposer = lease.first_proposer.min(peers - 1);
                lease.proposers = proposers;
                lease.drift_bound_ppm = drift_ppm;
                lease.adversarial_clocks = adversarial;
                for r in lease.resources.iter_mut().filter(|r| r.permits > 1) {
                    r.permits = permits;
                }
            }
            let report = netsim::run_plan(plan);
            prop_assert!(report.passed(), "{}\nreplay: {}", report.summary(), cfg.replay_command());
        }
    }
}
