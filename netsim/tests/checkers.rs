//! The checkers can fail: a partition that never heals must be reported as
//! a convergence violation (and acknowledged writes missing on the other
//! side as lost).

use netsim::{Fault, Scenario, ScenarioConfig};

#[test]
fn permanent_partition_is_a_convergence_violation() {
    let mut cfg = ScenarioConfig::new(Scenario::PartitionHeal, 8, 3);
    cfg.duration_s = Some(4);
    let mut plan = cfg.plan();
    // Keep the first partition, drop everything after it.
    let first = plan
        .faults
        .iter()
        .position(|f| matches!(f.fault, Fault::Partition(_)))
        .expect("the scenario partitions");
    plan.faults.truncate(first + 1);
    plan.quiet_max_ms = 5_000;
    let report = netsim::run_plan(plan);
    assert!(!report.converged, "{}", report.summary());
    assert!(report.convergence_ms.is_none());
    assert!(report.violations.convergence > 0);
    assert!(report.violations.lost_writes > 0);
    assert!(!report.passed());
    assert!(!report.failures.is_empty());
}

#[test]
fn healed_partition_converges() {
    let mut cfg = ScenarioConfig::new(Scenario::PartitionHeal, 8, 3);
    cfg.duration_s = Some(4);
    let report = netsim::run(&cfg);
    assert!(report.passed(), "{}", report.summary());
    assert!(report.convergence_ms.is_some());
}
