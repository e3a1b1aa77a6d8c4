//! Deterministic simulation of the lease machines under faults, checked in
//! simulated real time (see `sim/mod.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod sim;

use std::time::Instant;

use sim::{Report, Scenario, run};

const SEEDS: u64 = 200;

fn summarize(name: &str, reports: &[Report], started: Instant, sim_ms: u64) {
    let grants: usize = reports.iter().map(|r| r.grants.len()).sum();
    let writes: u64 = reports.iter().map(|r| r.stats.writes_accepted).sum();
    let stale: u64 = reports.iter().map(|r| r.stats.stale_writes_rejected).sum();
    let renewals: u64 = reports.iter().map(|r| r.stats.renewals).sum();
    let restarts: u64 = reports
        .iter()
        .map(|r| r.stats.acceptor_restarts + r.stats.proposer_restarts)
        .sum();
    let sent: u64 = reports.iter().map(|r| r.stats.messages_sent).sum();
    let dropped: u64 = reports.iter().map(|r| r.stats.messages_dropped).sum();
    let violations: usize = reports.iter().map(|r| r.violations.len()).sum();
    println!(
        "{name}: {} seeds x {sim_ms} ms simulated in {:.2?}; grants {grants}, renewals {renewals}, \
         writes accepted {writes}, stale writes rejected {stale}, restarts {restarts}, \
         messages {sent} ({dropped} dropped), violations {violations}",
        reports.len(),
        started.elapsed()
    );
}

fn run_seeds(name: &str, scenario: fn(u64) -> Scenario) -> Vec<Report> {
    let started = Instant::now();
    let mut reports = Vec::new();
    for seed in 0..SEEDS {
        let report = run(&scenario(seed));
        assert!(
            report.violations.is_empty(),
            "{name} seed {seed}: {:#?}",
            &report.violations[..report.violations.len().min(10)]
        );
        reports.push(report);
    }
    summarize(name, &reports, started, scenario(0).duration_ms);
    reports
}

#[test]
fn mutex_safety_under_faults_200_seeds() {
    let reports = run_seeds("mutex", Scenario::mutex);
    // The runs did something: leases were granted, renewed, and fencing
    // turned away stale writers.
    assert!(reports.iter().all(|r| !r.grants.is_empty()));
    assert!(reports.iter().map(|r| r.stats.renewals).sum::<u64>() > 0);
    assert!(
        reports
            .iter()
            .map(|r| r.stats.stale_writes_rejected)
            .sum::<u64>()
            > 0
    );
    assert!(
        reports
            .iter()
            .map(|r| r.stats.acceptor_restarts)
            .sum::<u64>()
            > 0
    );
}

#[test]
fn semaphore_safety_under_faults_200_seeds() {
    let reports = run_seeds("semaphore", Scenario::semaphore);
    // Some seed had the semaphore actually shared by several holders at once.
    let shared = reports.iter().any(|r| {
        let api: Vec<_> = r.grants.iter().filter(|g| g.resource == 0).collect();
        api.iter().any(|a| {
            api.iter()
                .filter(|b| b.start_us < a.end_us && a.start_us < b.end_us)
                .count()
                >= 3
        })
    });
    assert!(shared, "no run had 3 concurrent holders of the semaphore");
}

#[test]
fn expiry_race_200_seeds() {
    let reports = run_seeds("expiry-race", Scenario::expiry_race);
    assert!(reports.iter().map(|r| r.stats.lost).sum::<u64>() > 0);
}

#[test]
fn acceptor_crashes_with_slow_fsync_200_seeds() {
    let reports = run_seeds("crashy", Scenario::crashy);
    assert!(
        reports
            .iter()
            .map(|r| r.stats.acceptor_restarts)
            .sum::<u64>()
            > 1_000
    );
}

#[test]
fn acceptors_slower_than_the_round_timeout_200_seeds() {
    let reports = run_seeds("slow-disk", Scenario::slow_disk);
    let idle: Vec<u64> = (0..SEEDS)
        .zip(&reports)
        .filter(|(_, r)| r.grants.is_empty())
        .map(|(seed, _)| seed)
        .collect();
    assert!(idle.is_empty(), "no lease granted for seeds {idle:?}");
}

#[test]
fn minority_side_never_acquires() {
    let started = Instant::now();
    let mut reports = Vec::new();
    for seed in 0..50 {
        let report = run(&Scenario::minority(seed));
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:?}",
            report.violations
        );
        assert!(
            report.grants.iter().all(|g| g.proposer != 0),
            "seed {seed}: the isolated proposer acquired"
        );
        assert!(
            report.grants.iter().any(|g| g.proposer != 0),
            "seed {seed}: the majority side made no progress"
        );
        reports.push(report);
    }
    summarize(
        "minority",
        &reports,
        started,
        Scenario::minority(0).duration_ms,
    );
}

#[test]
fn same_seed_same_run() {
    let a = run(&Scenario::semaphore(7));
    let b = run(&Scenario::semaphore(7));
    assert_eq!(a, b);
    let c = run(&Scenario::semaphore(8));
    assert_ne!(a.grants, c.grants);
}

/// Beyond the drift bound (proposers configured for 1%, clocks off by 30%
/// in the worst directions) the checker must catch overlapping holders.
#[test]
fn checker_catches_overlap_beyond_the_drift_bound() {
    let started = Instant::now();
    let mut caught = 0;
    let seeds = 50;
    for seed in 0..seeds {
        let report = run(&Scenario::beyond_drift_bound(seed));
        if report.overlaps() > 0 {
            caught += 1;
        }
    }
    println!(
        "beyond-bound: overlap caught in {caught} of {seeds} seeds ({:.2?})",
        started.elapsed()
    );
    assert!(caught > 0, "the checker never caught an overlap");
    // Control: the same scenario with drift inside the bound is clean.
    for seed in 0..seeds {
        let within = Scenario {
            drift_actual_ppm: 10_000,
            ..Scenario::beyond_drift_bound(seed)
        };
        let report = run(&within);
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:?}",
            report.violations
        );
    }
}

mod random_parameters {
    use proptest::prelude::*;

    use super::sim::{MS, Scenario, run};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any mix of faults, sizes and drift within the configured bound
        /// keeps every safety property.
        #[test]
        fn safety_holds_for_random_parameters(
            seed in any::<u64>(),
            acceptors in prop::sample::select(vec![1usize, 3, 5]),
            proposers in 1usize..6,
            permits in 1u32..4,
            loss in 0.0f64..0.3,
            duplicate in 0.0f64..0.3,
            max_delay_ms in 1u64..30,
            drift_ppm in 0u32..50_000,
            partitions in any::<bool>(),
            crashes in any::<bool>(),
            adversarial_drift in any::<bool>(),
        ) {
            let scenario = Scenario {
                acceptors,
                proposers,
                resources: vec![("a", permits), ("b", 1)],
                duration_ms: 3_000,
                loss,
                duplicate,
                delay_us: (50, max_delay_ms * MS),
                partitions,
                acceptor_crashes: crashes,
                proposer_crashes: crashes,
                drift_actual_ppm: drift_ppm,
                drift_assumed_ppm: drift_ppm,
                adversarial_drift,
                ..Scenario::mutex(seed)
            };
            let report = run(&scenario);
            prop_assert!(report.violations.is_empty(), "{:?}", report.violations);
        }
    }
}
