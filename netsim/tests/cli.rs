//! The `netsim` binary: the JSON summary, the report directory and the sweep.

use std::process::Command;

fn netsim(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netsim"))
        .args(args)
        .output()
        .expect("run netsim");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn json_summary_has_the_documented_fields() {
    let (ok, out) = netsim(&[
        "--peers",
        "5",
        "--seed",
        "9",
        "--scenario",
        "steady",
        "--duration",
        "2",
        "--json",
    ]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for key in [
        "scenario",
        "peers",
        "seed",
        "converged",
        "convergence_ms",
        "rounds",
        "messages",
        "bytes",
        "trace_hash",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {out}");
    }
    for key in ["convergence", "causality", "lost_writes", "lease"] {
        assert_eq!(v["violations"][key], 0, "{out}");
    }
    assert_eq!(v["scenario"], "steady");
    assert_eq!(v["trace_hash"].as_str().map(str::len), Some(64));
}

#[test]
fn report_directory_has_trace_and_html() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out");
    let path_str = path.to_str().expect("utf-8 path");
    let (ok, out) = netsim(&[
        "--peers",
        "5",
        "--scenario",
        "crash-restart",
        "--duration",
        "3",
        "--report",
        path_str,
    ]);
    assert!(ok, "{out}");
    let html = std::fs::read_to_string(path.join("report.html")).expect("html");
    assert!(html.contains("<svg") && html.contains("polyline"));
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("trace.json")).expect("trace"))
            .expect("json");
    assert!(trace["records"].as_array().is_some_and(|r| !r.is_empty()));
}

#[test]
fn sweep_counts_passes() {
    let (ok, out) = netsim(&[
        "--sweep",
        "--seeds",
        "1..2",
        "--scenario",
        "steady",
        "--peers",
        "4",
        "--duration",
        "2",
    ]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().last(), Some("2 passed, 0 failed"));
}

#[test]
fn lease_scenario_json_has_lease_counters() {
    let (ok, out) = netsim(&[
        "--peers",
        "5",
        "--seed",
        "2",
        "--scenario",
        "lease-contention",
        "--duration",
        "3",
        "--json",
    ]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["violations"]["lease"], 0, "{out}");
    let lease = &v["counters"]["lease"];
    for key in [
        "grants",
        "renewals",
        "writes_accepted",
        "stale_writes_rejected",
    ] {
        assert!(lease[key].is_u64(), "missing lease.{key} in {out}");
    }
    assert!(lease["grants"].as_u64() > Some(0), "{out}");
}

#[test]
fn sweep_of_the_beyond_bound_scenario_fails() {
    let (ok, out) = netsim(&[
        "--sweep",
        "--seeds",
        "1..3",
        "--scenario",
        "lease-skew-beyond",
        "--peers",
        "5",
        "--duration",
        "6",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("lease="), "{out}");
    assert!(out.contains("runs with lease violations"), "{out}");
}

#[test]
fn unknown_scenario_is_an_error() {
    let (ok, _) = netsim(&["--scenario", "nope"]);
    assert!(!ok);
}

#[test]
fn same_arguments_same_hash_across_processes() {
    for scenario in ["chaos", "lease-pause"] {
        let args = [
            "--peers",
            "6",
            "--seed",
            "3",
            "--scenario",
            scenario,
            "--duration",
            "3",
            "--json",
        ];
        let hash = |out: String| {
            let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
            v["trace_hash"].as_str().map(str::to_owned)
        };
        let (_, a) = netsim(&args);
        let (_, b) = netsim(&args);
        assert!(hash(a.clone()).is_some(), "{scenario}");
        assert_eq!(hash(a), hash(b), "{scenario}");
    }
}
