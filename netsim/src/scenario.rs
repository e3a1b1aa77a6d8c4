//! Scenarios and plans: what a run simulates.
//!
//! A [`ScenarioConfig`] (scenario name, peers, seed, optional duration) expands
//! into a [`Plan`]: network parameters, clock spread, workload and a concrete,
//! time-ordered list of faults, all drawn from the seed. Tests may edit a plan
//! before running it (e.g. drop the heal to prove the convergence checker
//! fails).
//!
//! The plan's shape and defaults are in `scenario/plan.rs`, the fault
//! schedules drawn into it in `scenario/faults.rs`, the lease scenarios in
//! `scenario/lease.rs`.
//!
//! This module owns the scenario catalogue. It must never run anything or
//! touch a replica: it only describes.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

mod faults;
mod lease;
mod plan;

pub use lease::{DEFAULT_DRIFT_BOUND_PPM, LeasePlan, LeaseResource};
pub use plan::{ClockSpread, Fault, FaultAt, LinkParams, Plan, Workload};

/// RNG stream used to draw the plan (see [`stream_rng`]).
pub(crate) const PLAN_STREAM: u64 = 0;

/// A ChaCha8 generator for `seed`, on an independent `stream`, so that the
/// plan, the network and the workload draw from separate sequences.
pub(crate) fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Changes after which a replica of the epoch scenarios cuts its epoch.
pub const EPOCH_SCENARIO_CHANGES: u64 = 25;

/// The named scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Healthy network, everyone writes, and every node publishes a
    /// heartbeat (ephemeral value) each second.
    Steady,
    /// Two partitions into random groups, each healed later.
    PartitionHeal,
    /// 20 % loss, 5 % duplication, heavy jitter (reordering), all run long.
    FlakyLinks,
    /// Nodes crash (mostly uncleanly, losing unsynced writes) and restart.
    CrashRestart,
    /// Skewed and drifting clocks, plus paused processes.
    ClockSkew,
    /// One node disconnected for most of the run, writing fast, then rejoining.
    OfflineEdge,
    /// Many peers, few writes: measures gossip rounds.
    Scale,
    /// Everything at once: partitions, lossy links, crashes, skew, pauses.
    Chaos,
    /// Lease peers race for two mutexes and a semaphore, hold for a random
    /// while, write to fenced external systems, release or let expire; lossy
    /// links and a crash.
    LeaseContention,
    /// Lease contention while partitions split the peers, then heal.
    LeasePartition,
    /// Lease holders are paused past their lease mid-write, then resume and
    /// write with their stale token.
    LeasePause,
    /// Lease contention with every clock skewed and drifting at the edge of
    /// the configured drift bound.
    LeaseSkew,
    /// Like `lease-skew`, but clocks drift 30 times beyond the configured
    /// bound: built to fail, the lease checker must catch overlaps.
    LeaseSkewBeyond,
    /// Lease contention under every fault at once: partitions, lossy and
    /// duplicating links, crashes, clocks at the edge of the drift bound,
    /// paused processes.
    LeaseChaos,
    /// Three acceptors and separate proposers racing for one mutex with
    /// short leases, fast links, a tiny backoff and clocks at the worst edge
    /// of the drift bound (acceptors fast, holders slow); holders write up
    /// to the end of their validity and often let it run out: the race at
    /// expiry, as tight as it gets.
    LeaseExpiryRace,
    /// Every acceptor crashes (mostly without a clean shutdown) and
    /// restarts again and again while its fsyncs are slow and leases short:
    /// promises not yet durable are lost, restarted acceptors sit out their
    /// quiet period.
    LeaseAcceptorCrashes,
    /// Every acceptor fsync takes two to four round timeouts: proposers
    /// must learn to wait longer, and every run must grant.
    LeaseSlowDisk,
    /// One acceptor of three and a proposer are cut off from the rest for
    /// the whole run: that minority never acquires, the majority does.
    LeaseMinority,
    /// Epochs cut every few dozen changes while everyone writes, during
    /// partitions (whose sides cut on their own and join on heal) and
    /// crashes.
    Epochs,
    /// Epochs cut every few dozen changes while one node is disconnected
    /// across several of them, writing fast (and cutting on its own), then
    /// rejoins.
    EpochsOffline,
}

impl Scenario {
    /// Every scenario whose runs must pass, in a fixed order.
    pub const ALL: [Scenario; 19] = [
        Scenario::Steady,
        Scenario::PartitionHeal,
        Scenario::FlakyLinks,
        Scenario::CrashRestart,
        Scenario::ClockSkew,
        Scenario::OfflineEdge,
        Scenario::Scale,
        Scenario::Chaos,
        Scenario::LeaseContention,
        Scenario::LeasePartition,
        Scenario::LeasePause,
        Scenario::LeaseSkew,
        Scenario::LeaseChaos,
        Scenario::LeaseExpiryRace,
        Scenario::LeaseAcceptorCrashes,
        Scenario::LeaseSlowDisk,
        Scenario::LeaseMinority,
        Scenario::Epochs,
        Scenario::EpochsOffline,
    ];

    /// Scenarios that break an assumption on purpose: their runs are
    /// expected to fail, showing that a checker catches the breakage.
    pub const BROKEN: [Scenario; 1] = [Scenario::LeaseSkewBeyond];

    /// The scenario's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::PartitionHeal => "partition-heal",
            Scenario::FlakyLinks => "flaky-links",
            Scenario::CrashRestart => "crash-restart",
            Scenario::ClockSkew => "clock-skew",
            Scenario::OfflineEdge => "offline-edge",
            Scenario::Scale => "scale",
            Scenario::Chaos => "chaos",
            Scenario::LeaseContention => "lease-contention",
            Scenario::LeasePartition => "lease-partition",
            Scenario::LeasePause => "lease-pause",
            Scenario::LeaseSkew => "lease-skew",
            Scenario::LeaseSkewBeyond => "lease-skew-beyond",
            Scenario::LeaseChaos => "lease-chaos",
            Scenario::LeaseExpiryRace => "lease-expiry-race",
            Scenario::LeaseAcceptorCrashes => "lease-acceptor-crashes",
            Scenario::LeaseSlowDisk => "lease-slow-disk",
            Scenario::LeaseMinority => "lease-minority",
            Scenario::Epochs => "epochs",
            Scenario::EpochsOffline => "epochs-offline",
        }
    }

    /// Whether the scenario runs lease acceptors and proposers.
    pub fn has_leases(self) -> bool {
        matches!(
            self,
            Scenario::LeaseContention
                | Scenario::LeasePartition
                | Scenario::LeasePause
                | Scenario::LeaseSkew
                | Scenario::LeaseSkewBeyond
                | Scenario::LeaseChaos
                | Scenario::LeaseExpiryRace
                | Scenario::LeaseAcceptorCrashes
                | Scenario::LeaseSlowDisk
                | Scenario::LeaseMinority
        )
    }

    /// Peers used when the caller does not say.
    pub fn default_peers(self) -> usize {
        match self {
            Scenario::Scale => 1000,
            s if s.has_leases() => 7,
            _ => 20,
        }
    }

    /// Length of the write phase, in virtual seconds, when not overridden.
    pub fn default_duration_s(self) -> u64 {
        match self {
            Scenario::Steady | Scenario::FlakyLinks | Scenario::ClockSkew => 10,
            Scenario::PartitionHeal | Scenario::CrashRestart | Scenario::Chaos => 20,
            Scenario::Epochs => 20,
            Scenario::OfflineEdge | Scenario::EpochsOffline => 30,
            Scenario::Scale => 2,
            Scenario::LeaseExpiryRace => 10,
            // the other lease scenarios
            _ => 20,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown scenario name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownScenario(pub String);

impl fmt::Display for UnknownScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Scenario::ALL
            .iter()
            .chain(&Scenario::BROKEN)
            .map(|s| s.name())
            .collect();
        write!(
            f,
            "unknown scenario {:?} (one of: {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownScenario {}

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .chain(Scenario::BROKEN)
            .find(|sc| sc.name() == s)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}

/// What the caller asks for: a scenario, a size and a seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioConfig {
    /// Which scenario.
    pub scenario: Scenario,
    /// Number of nodes.
    pub peers: usize,
    /// The one seed everything is drawn from.
    pub seed: u64,
    /// Write phase length in virtual seconds (scenario default if `None`).
    pub duration_s: Option<u64>,
    /// Mean interval between two writes of one writer, in virtual ms
    /// (scenario default if `None`; 500 ms, i.e. 2 ops/s per node, for most).
    pub write_interval_ms: Option<u64>,
    /// Gossip mesh degree D.
    pub mesh_degree: usize,
    /// Keep every trace record (for `--report`); the hash is computed either way.
    pub record: bool,
}

/// Default gossip mesh degree (gossipsub's D).
pub const DEFAULT_MESH_DEGREE: usize = 6;

impl ScenarioConfig {
    /// A config with the scenario's defaults.
    pub fn new(scenario: Scenario, peers: usize, seed: u64) -> Self {
        ScenarioConfig {
            scenario,
            peers,
            seed,
            duration_s: None,
            write_interval_ms: None,
            mesh_degree: DEFAULT_MESH_DEGREE,
            record: false,
        }
    }

    /// The command line that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "netsim --peers {} --seed {} --scenario {}",
            self.peers, self.seed, self.scenario
        );
        if let Some(d) = self.duration_s {
            cmd.push_str(&format!(" --duration {d}"));
        }
        if let Some(ms) = self.write_interval_ms {
            cmd.push_str(&format!(" --write-interval {ms}"));
        }
        if self.mesh_degree != DEFAULT_MESH_DEGREE {
            cmd.push_str(&format!(" --degree {}", self.mesh_degree));
        }
        cmd
    }

    /// Expands the scenario into a concrete plan, drawn from the seed.
    pub fn plan(&self) -> Plan {
        let mut rng = stream_rng(self.seed, PLAN_STREAM);
        let duration_ms = self
            .duration_s
            .unwrap_or(self.scenario.default_duration_s())
            * 1_000;
        let mut plan = Plan::base(self, duration_ms);
        let n = self.peers;
        match self.scenario {
            Scenario::Steady => plan.workload.heartbeat_ms = Some(1_000),
            Scenario::PartitionHeal => plan.add_partitions(&mut rng),
            Scenario::FlakyLinks => plan.add_flaky_links(200_000, 50_000, 200),
            Scenario::CrashRestart => {
                plan.add_crashes(&mut rng);
                plan.add_pauses(&mut rng, 1);
            }
            Scenario::ClockSkew => {
                plan.add_skew(30_000, 50_000);
                plan.add_pauses(&mut rng, (n / 10).max(1));
            }
            Scenario::OfflineEdge => plan.add_offline_edge(&mut rng),
            Scenario::Scale => plan.workload.writers = n.min(8),
            Scenario::Chaos => {
                plan.add_partitions(&mut rng);
                plan.add_flaky_links(100_000, 20_000, 100);
                plan.add_crashes(&mut rng);
                plan.add_skew(10_000, 20_000);
                plan.add_pauses(&mut rng, (n / 10).max(1));
            }
            Scenario::Epochs => {
                plan.epochs.max_changes = EPOCH_SCENARIO_CHANGES;
                plan.add_partitions(&mut rng);
                plan.add_crashes(&mut rng);
            }
            Scenario::EpochsOffline => {
                plan.epochs.max_changes = EPOCH_SCENARIO_CHANGES;
                plan.add_offline_edge(&mut rng);
            }
            lease => plan.add_lease_scenario(lease, &mut rng),
        }
        plan.faults.sort_by_key(|f| f.at_ms);
        plan
    }
}
