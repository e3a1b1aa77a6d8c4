//! Same seed and arguments, same trace byte for byte; another seed, another trace.

use netsim::{Scenario, ScenarioConfig};

fn cfg(scenario: Scenario, seed: u64) -> ScenarioConfig {
    let mut cfg = ScenarioConfig::new(scenario, 6, seed);
    cfg.duration_s = Some(3);
    cfg
}

/// The JSON summary without byte counts: the encoded size of anti-entropy
/// deltas (automerge bundles) is not deterministic (see `netsim::trace`).
fn without_bytes(r: &netsim::Report) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
    v["bytes"] = serde_json::Value::Null;
    v["counters"]["bytes"] = serde_json::Value::Null;
    v
}

#[test]
fn same_seed_same_trace() {
    for scenario in [
        Scenario::Steady,
        Scenario::CrashRestart,
        Scenario::FlakyLinks,
    ] {
        let a = netsim::run(&cfg(scenario, 42));
        let b = netsim::run(&cfg(scenario, 42));
        assert_eq!(a.trace_hash, b.trace_hash, "{scenario}");
        assert_eq!(without_bytes(&a), without_bytes(&b), "{scenario}");
        assert_eq!(a.curve, b.curve, "{scenario}");
    }
}

#[test]
fn keeping_records_does_not_change_the_trace() {
    let plain = netsim::run(&cfg(Scenario::ClockSkew, 5));
    let mut recorded = cfg(Scenario::ClockSkew, 5);
    recorded.record = true;
    let recorded = netsim::run(&recorded);
    assert_eq!(plain.trace_hash, recorded.trace_hash);
    assert_eq!(recorded.records.len() as u64, recorded.counters.trace_lines);
}

#[test]
fn different_seeds_different_traces() {
    let hashes: std::collections::BTreeSet<String> = (1..=4)
        .map(|seed| netsim::run(&cfg(Scenario::Steady, seed)).trace_hash)
        .collect();
    assert_eq!(hashes.len(), 4);
}
