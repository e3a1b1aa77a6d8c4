//! The `netsim` binary: one run (human summary, `--json`, `--report DIR`)
//! or a `--sweep` over many seeds that prints the replay command of every
//! failure.
//!
//! It owns the command line and the wall-clock speed measurement (the only
//! place a real clock is read; it never feeds the simulation).

use std::ops::RangeInclusive;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use netsim::{DEFAULT_MESH_DEGREE, LeaseCounters, Report, Scenario, ScenarioConfig};

/// Deterministic simulator of Concord peers on a virtual network.
#[derive(Debug, Parser)]
#[command(name = "netsim", version)]
struct Args {
    /// Number of peers (default: 20, 1000 for `scale`, 7 for `lease-*`).
    #[arg(long)]
    peers: Option<usize>,
    /// The seed of the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Scenario: steady, partition-heal, flaky-links, crash-restart,
    /// clock-skew, offline-edge, scale, chaos, lease-contention,
    /// lease-partition, lease-pause, lease-skew, lease-chaos,
    /// lease-expiry-race, lease-acceptor-crashes, lease-slow-disk,
    /// lease-minority, epochs, epochs-offline, or lease-skew-beyond (built to
    /// fail: clocks drift beyond the lease drift bound).
    #[arg(long, default_value = "steady")]
    scenario: Scenario,
    /// Length of the write phase in virtual seconds (scenario default if absent).
    #[arg(long)]
    duration: Option<u64>,
    /// Mean virtual ms between two writes of one node (default 500 = 2 ops/s).
    #[arg(long)]
    write_interval: Option<u64>,
    /// Gossip mesh degree D.
    #[arg(long, default_value_t = DEFAULT_MESH_DEGREE)]
    degree: usize,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Write `trace.json` and `report.html` into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Run every seed of `--seeds` and report failures.
    #[arg(long)]
    sweep: bool,
    /// Seeds for `--sweep`, inclusive: `A..B` or `A..=B`.
    #[arg(long, value_parser = parse_seeds)]
    seeds: Option<RangeInclusive<u64>>,
}

fn parse_seeds(s: &str) -> anyhow::Result<RangeInclusive<u64>> {
    let (a, b) = s.split_once("..").context("expected A..B")?;
    let b = b.strip_prefix('=').unwrap_or(b);
    let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
    if a > b {
        bail!("empty seed range {a}..{b}");
    }
    Ok(a..=b)
}

impl Args {
    fn config(&self, seed: u64) -> ScenarioConfig {
        let mut cfg = ScenarioConfig::new(
            self.scenario,
            self.peers.unwrap_or(self.scenario.default_peers()),
            seed,
        );
        cfg.duration_s = self.duration;
        cfg.write_interval_ms = self.write_interval;
        cfg.mesh_degree = self.degree;
        cfg.record = self.report.is_some();
        cfg
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.sweep {
        sweep(&args)
    } else {
        single(&args)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("netsim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn single(args: &Args) -> anyhow::Result<bool> {
    let cfg = args.config(args.seed);
    if cfg.peers == 0 {
        bail!("--peers must be at least 1");
    }
    let started = Instant::now();
    let report = netsim::run(&cfg);
    let wall = started.elapsed();
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary());
        let wall_s = wall.as_secs_f64();
        let speed = report.virtual_ms as f64 / 1000.0 / wall_s.max(1e-9);
        println!(
            "  speed:        {:.1} virtual s in {:.3} wall s = {speed:.0}x real time",
            report.virtual_ms as f64 / 1000.0,
            wall_s
        );
    }
    if let Some(dir) = &args.report {
        report
            .write_dir(dir)
            .with_context(|| format!("writing the report into {}", dir.display()))?;
        if !args.json {
            println!("  report:       {}/report.html", dir.display());
        }
    }
    Ok(report.passed())
}

/// Runs one seed, turning a panic into a failure.
fn run_caught(cfg: &ScenarioConfig) -> Result<Report, String> {
    panic::catch_unwind(AssertUnwindSafe(|| netsim::run(cfg))).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned())
    })
}

fn sweep(args: &Args) -> anyhow::Result<bool> {
    let seeds = args.seeds.clone().context("--sweep needs --seeds A..B")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut lease = LeaseCounters::default();
    let mut lease_failures = 0u64;
    let started = Instant::now();
    for seed in seeds {
        let cfg = args.config(seed);
        let outcome = run_caught(&cfg);
        if let Ok(report) = &outcome {
            add_lease(&mut lease, &report.counters.lease);
            lease_failures += u64::from(report.violations.lease > 0);
        }
        match outcome {
            Ok(report) if report.passed() => passed += 1,
            Ok(report) => {
                failed += 1;
                println!(
                    "FAIL seed={seed} converged={} {}",
                    report.converged, report.violations
                );
                for f in report.failures.iter().take(5) {
                    println!("    {f}");
                }
                println!("  replay: {}", cfg.replay_command());
            }
            Err(panic) => {
                failed += 1;
                println!("FAIL seed={seed} panicked: {panic}");
                println!("  replay: {}", cfg.replay_command());
            }
        }
    }
    eprintln!("sweep took {:.1} s", started.elapsed().as_secs_f64());
    if args.scenario.has_leases() {
        println!(
            "leases: {} grants, {} renewals, {} released ({} unconfirmed), {} expired, {} denied, {} writes accepted, {} stale writes rejected, {} late writes accepted, {} acceptor restarts; {lease_failures} runs with lease violations",
            lease.grants,
            lease.renewals,
            lease.released,
            lease.unconfirmed_releases,
            lease.expired,
            lease.denied,
            lease.writes_accepted,
            lease.stale_writes_rejected,
            lease.late_writes_accepted,
            lease.acceptor_restarts
        );
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// Adds the lease counters of one run to a sweep's totals.
fn add_lease(total: &mut LeaseCounters, run: &LeaseCounters) {
    total.grants += run.grants;
    total.renewals += run.renewals;
    total.released += run.released;
    total.unconfirmed_releases += run.unconfirmed_releases;
    total.expired += run.expired;
    total.denied += run.denied;
    total.acceptor_restarts += run.acceptor_restarts;
    total.writes_accepted += run.writes_accepted;
    total.stale_writes_rejected += run.stale_writes_rejected;
    total.late_writes_accepted += run.late_writes_accepted;
}
