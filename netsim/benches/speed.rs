//! How fast netsim runs and how gossip scales (issue 4's report): virtual
//! seconds per wall second for 20 peers in `steady` at several write rates
//! (the default is 2 writes/s per node), the simulator's own share of the
//! wall time (outside the replica, sync engine and lease machines, measured
//! by the run's profile), and gossip rounds to reach every node for N = 10,
//! 100 and 1000 (`scale`). Last line:
//! `netsim_speed <virtual s per wall s, 20 peers, steady, default rate>`.
//!
//! Every node runs the real replica (automerge) and sync engine, so the
//! speed is bounded by automerge applying each write on each node: the
//! table shows how it moves with the write rate.

use std::time::Instant;

use netsim::{Scenario, ScenarioConfig};

/// Virtual seconds per wall second of one `steady` run, the simulator's
/// own share of its wall time, and whether it passed.
fn speed(peers: usize, duration_s: u64, write_interval_ms: Option<u64>) -> (f64, f64, bool) {
    let mut config = ScenarioConfig::new(Scenario::Steady, peers, 1);
    config.duration_s = Some(duration_s);
    config.write_interval_ms = write_interval_ms;
    let mut plan = config.plan();
    plan.profile = true;
    let started = Instant::now();
    let report = netsim::run_plan(plan);
    let wall = started.elapsed().as_secs_f64();
    let share = report.profile.map_or(0.0, |p| p.simulator_share());
    (
        report.virtual_ms as f64 / 1000.0 / wall,
        share,
        report.passed(),
    )
}

fn main() {
    println!("netsim speed, 20 peers, steady (virtual s per wall s):");
    let mut default_speed = 0.0;
    let mut default_share = 0.0;
    for (label, interval, duration) in [
        ("2 writes/s per node (default)", None, 60),
        ("1 write/2 s per node", Some(2_000), 120),
        ("1 write/10 s per node", Some(10_000), 600),
        ("1 write/min per node", Some(60_000), 1_800),
    ] {
        let (x, share, passed) = speed(20, duration, interval);
        if interval.is_none() {
            default_speed = x;
            default_share = share;
        }
        println!(
            "  {label:32} {x:>8.0}x   simulator's own share {:>4.1} %   ({duration} virtual s, passed: {passed})",
            share * 100.0
        );
    }
    println!(
        "simulator_share {:.1} %  (wall time outside the replica, sync and lease machines, default rate)",
        default_share * 100.0
    );
    println!("gossip rounds to reach every node (scale, D=6, seeds 1-3):");
    for peers in [10, 100, 1000] {
        let rounds: Vec<u32> = (1..=3)
            .map(|seed| netsim::run(&ScenarioConfig::new(Scenario::Scale, peers, seed)).rounds)
            .collect();
        println!(
            "  N = {peers:>4}: rounds {rounds:?}   (log2 N = {:.1})",
            (peers as f64).log2()
        );
    }
    println!("netsim_speed {default_speed:.0}");
}
