//! Scenarios and plans: what a run simulates.
//!
//! A [`ScenarioConfig`] (scenario name, peers, seed, optional duration) expands
//! into a [`Plan`]: network parameters, clock spread, workload and a concrete,
//! time-ordered list of faults, all drawn from the seed. Tests may edit a plan
//! before running it (e.g. drop the heal to prove the convergence checker
//! fails).
//!
//! This module owns the scenario catalogue. It must never run anything or
//! touch a replica: it only describes.

use std::fmt;
use std::str::FromStr;

use concord_state::EpochConfig;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

mod lease;

pub use lease::{DEFAULT_DRIFT_BOUND_PPM, LeasePlan, LeaseResource};

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

/// Link behaviour, the same for every link (each link draws its own base
/// latency in `[latency_min_ms, latency_max_ms]` from the seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LinkParams {
    /// Lowest base latency of a link.
    pub latency_min_ms: u64,
    /// Highest base latency of a link.
    pub latency_max_ms: u64,
    /// Extra uniform delay per message, in `[0, jitter_ms]`: reorders messages.
    pub jitter_ms: u64,
    /// Probability (parts per million) that a message is lost.
    pub loss_ppm: u32,
    /// Probability (parts per million) that a message is delivered twice.
    pub dup_ppm: u32,
}

/// How far node clocks stray from virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockSpread {
    /// Each node's offset is uniform in `[-max_skew_ms, max_skew_ms]`.
    pub max_skew_ms: u64,
    /// Each node's rate error is uniform in `[-max_drift_ppm, max_drift_ppm]`.
    pub max_drift_ppm: u32,
    /// Rate errors sit at the edges instead: `+max_drift_ppm` or
    /// `-max_drift_ppm`, each with probability one half (the worst case for
    /// leases: fast acceptors, slow holders).
    pub extreme: bool,
}

/// Who writes, how often, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// The first `writers` nodes (by index) write.
    pub writers: usize,
    /// Mean interval between two writes of one writer (uniform in [0.5, 1.5] of it).
    pub interval_ms: u64,
    /// Writes start at this virtual time.
    pub start_ms: u64,
    /// No write starts at or after this virtual time.
    pub end_ms: u64,
    /// A node writing at its own (faster) interval, e.g. the offline edge.
    pub hot: Option<(u32, u64)>,
    /// Every running node publishes a heartbeat on the ephemeral channel
    /// [`crate::workload::PRESENCE_CHANNEL`] this often during the write
    /// phase (virtual ms; off when `None`, the default but for `steady`).
    pub heartbeat_ms: Option<u64>,
}

/// A fault injected at a virtual time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultAt {
    /// When.
    pub at_ms: u64,
    /// What.
    pub fault: Fault,
}

/// Something done to the network or to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Split the nodes into groups; messages between groups are lost
    /// (connections stay up, so no peer-down events).
    Partition(Vec<Vec<u32>>),
    /// Remove every partition.
    Heal,
    /// Stop a node. Clean: flush, keep the actor id. Unclean: power loss,
    /// unsynced disk data lost (partly, with a torn tail), next incarnation.
    Crash {
        /// The node.
        node: u32,
        /// Whether the shutdown is clean.
        clean: bool,
    },
    /// Start a crashed node again from its disk.
    Restart(u32),
    /// Freeze a node: it processes nothing, its timers wait, frames queue up.
    Pause(u32),
    /// Unfreeze a node: queued frames are processed, due timers fire.
    Resume(u32),
    /// Take a node off the network: its connections go down (peer-down on
    /// both sides) and every message to or from it is lost. It keeps writing.
    Disconnect(u32),
    /// Bring a disconnected node back: peer-up on both sides.
    Reconnect(u32),
    /// Change the link parameters from now on.
    Links(LinkParams),
}

/// Everything a run does, fully concrete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Scenario name (for the report).
    pub scenario: Scenario,
    /// Number of nodes.
    pub peers: usize,
    /// The seed.
    pub seed: u64,
    /// Gossip mesh degree.
    pub mesh_degree: usize,
    /// Link behaviour at the start.
    pub links: LinkParams,
    /// Mean heartbeat of the sync engines (local clock).
    pub heartbeat_ms: u64,
    /// Heartbeat jitter of the sync engines.
    pub heartbeat_jitter_ms: u64,
    /// Whether a node fsyncs right after each write, before acknowledging
    /// it (the network driver after a write command, with a disk that takes
    /// no time); otherwise writes wait for the periodic flush, as writes
    /// made while an fsync is on its way wait for the next one.
    pub sync_writes: bool,
    /// Periodic fsync of every node's replica (the driver's tick, which
    /// also makes received changes durable; group commit for unsynced
    /// writes), if any.
    pub flush_interval_ms: Option<u64>,
    /// Clock skew and drift.
    pub clocks: ClockSpread,
    /// Writes.
    pub workload: Workload,
    /// Faults, ordered by time.
    pub faults: Vec<FaultAt>,
    /// After the write phase, give up waiting for convergence after this long.
    pub quiet_max_ms: u64,
    /// Once converged (and past the write phase and every fault), run this
    /// much longer before stopping.
    pub settle_ms: u64,
    /// Buffer of each node's `*` subscriber (large, so no lag in practice).
    pub subscriber_capacity: usize,
    /// Frames a paused node keeps queued; more are lost.
    pub inbox_capacity: usize,
    /// Gossip message ids each node remembers for de-duplication.
    pub seen_capacity: usize,
    /// Keep every trace record (for reports).
    pub record: bool,
    /// Lease acceptors, proposers and their workload, if the scenario has
    /// leases.
    pub lease: Option<LeasePlan>,
    /// When replicas cut their epoch (the product's defaults but for the
    /// epoch scenarios, which cut every few dozen changes).
    pub epochs: EpochConfig,
    /// Measure where the wall time goes (see `Report::profile`); off by
    /// default, it reads the wall clock (never into the trace).
    pub profile: bool,
}

impl Plan {
    fn base(cfg: &ScenarioConfig, duration_ms: u64) -> Plan {
        let start_ms = 500;
        Plan {
            scenario: cfg.scenario,
            peers: cfg.peers,
            seed: cfg.seed,
            mesh_degree: cfg.mesh_degree,
            links: LinkParams {
                latency_min_ms: 2,
                latency_max_ms: 40,
                jitter_ms: 5,
                loss_ppm: 0,
                dup_ppm: 0,
            },
            heartbeat_ms: 1_000,
            heartbeat_jitter_ms: 250,
            sync_writes: true,
            flush_interval_ms: None,
            clocks: ClockSpread {
                max_skew_ms: 0,
                max_drift_ppm: 0,
                extreme: false,
            },
            workload: Workload {
                writers: cfg.peers,
                interval_ms: cfg.write_interval_ms.unwrap_or(500),
                start_ms,
                end_ms: start_ms + duration_ms,
                hot: None,
                heartbeat_ms: None,
            },
            faults: Vec::new(),
            quiet_max_ms: 60_000,
            settle_ms: 1_000,
            subscriber_capacity: 1 << 16,
            inbox_capacity: 10_000,
            seen_capacity: 4_096,
            record: cfg.record,
            lease: None,
            epochs: EpochConfig::default(),
            profile: false,
        }
    }

    /// Two partitions into 2–3 random groups during the write phase, each
    /// healed later (at 20–50 % and 60–90 % of it).
    fn add_partitions(&mut self, rng: &mut ChaCha8Rng) {
        let (start, span) = (self.workload.start_ms, self.write_span());
        for (from, to) in [(2, 5), (6, 9)] {
            let groups = rng.random_range(2..=3usize);
            self.faults.push(FaultAt {
                at_ms: start + span * from / 10,
                fault: Fault::Partition(random_groups(rng, self.peers, groups)),
            });
            self.faults.push(FaultAt {
                at_ms: start + span * to / 10,
                fault: Fault::Heal,
            });
        }
    }

    /// Lossy, duplicating, reordering links for the whole run.
    fn add_flaky_links(&mut self, loss_ppm: u32, dup_ppm: u32, jitter_ms: u64) {
        self.links = LinkParams {
            jitter_ms,
            loss_ppm,
            dup_ppm,
            ..self.links
        };
    }

    /// Writes fsynced by a 100 ms group commit, and a fifth of the nodes
    /// (at least one) crashing once, two in three uncleanly, each restarting
    /// 0.5–3 s later.
    fn add_crashes(&mut self, rng: &mut ChaCha8Rng) {
        self.sync_writes = false;
        self.flush_interval_ms = Some(100);
        let (start, end) = (self.workload.start_ms, self.workload.end_ms);
        for node in pick_nodes(rng, self.peers, (self.peers / 5).max(1)) {
            let at_ms = rng.random_range(start..end.saturating_sub(3_000).max(start + 1));
            let clean = rng.random_range(0..3) == 0;
            let down_ms = rng.random_range(500..=3_000);
            self.add_crash(node, at_ms, clean, down_ms);
        }
    }

    /// `node` crashes at `at_ms` (cleanly or not) and restarts `down_ms`
    /// later.
    fn add_crash(&mut self, node: u32, at_ms: u64, clean: bool, down_ms: u64) {
        self.faults.push(FaultAt {
            at_ms,
            fault: Fault::Crash { node, clean },
        });
        self.faults.push(FaultAt {
            at_ms: at_ms + down_ms,
            fault: Fault::Restart(node),
        });
    }

    /// Clock offsets up to `max_skew_ms` and rate errors up to `max_drift_ppm`.
    fn add_skew(&mut self, max_skew_ms: u64, max_drift_ppm: u32) {
        self.clocks = ClockSpread {
            max_skew_ms,
            max_drift_ppm,
            extreme: false,
        };
    }

    /// Clock offsets up to `max_skew_ms` and every rate error at
    /// `+max_drift_ppm` or `-max_drift_ppm`.
    fn add_extreme_skew(&mut self, max_skew_ms: u64, max_drift_ppm: u32) {
        self.clocks = ClockSpread {
            max_skew_ms,
            max_drift_ppm,
            extreme: true,
        };
    }

    /// One random node disconnected from 1 s into the write phase until 2 s
    /// before its end, writing every 50 ms meanwhile.
    fn add_offline_edge(&mut self, rng: &mut ChaCha8Rng) {
        let (start, end) = (self.workload.start_ms, self.workload.end_ms);
        let edge = rng.random_range(0..self.peers as u32);
        self.workload.hot = Some((edge, 50));
        self.faults.push(FaultAt {
            at_ms: start + 1_000,
            fault: Fault::Disconnect(edge),
        });
        self.faults.push(FaultAt {
            at_ms: end.saturating_sub(2_000).max(start + 1_001),
            fault: Fault::Reconnect(edge),
        });
    }

    /// `count` pauses (1–4 s) of distinct random nodes during the write phase.
    fn add_pauses(&mut self, rng: &mut ChaCha8Rng, count: usize) {
        let (start, end) = (self.workload.start_ms, self.workload.end_ms);
        for node in pick_nodes(rng, self.peers, count) {
            let at_ms = rng.random_range(start..end.max(start + 1));
            let len = rng.random_range(1_000..=4_000);
            self.add_pause(node, at_ms, len);
        }
    }

    /// `node` pauses at `at_ms` and resumes `len` ms later.
    fn add_pause(&mut self, node: u32, at_ms: u64, len: u64) {
        self.faults.push(FaultAt {
            at_ms,
            fault: Fault::Pause(node),
        });
        self.faults.push(FaultAt {
            at_ms: at_ms + len,
            fault: Fault::Resume(node),
        });
    }

    fn write_span(&self) -> u64 {
        self.workload.end_ms - self.workload.start_ms
    }

    /// Time of the last fault (0 if none).
    pub fn last_fault_ms(&self) -> u64 {
        self.faults.iter().map(|f| f.at_ms).max().unwrap_or(0)
    }
}

/// `count` distinct nodes out of `n`, in random order.
fn pick_nodes(rng: &mut ChaCha8Rng, n: usize, count: usize) -> Vec<u32> {
    let mut all: Vec<u32> = (0..n as u32).collect();
    all.shuffle(rng);
    all.truncate(count.min(n));
    all
}

/// A random split of `n` nodes into `groups` non-empty groups (when n allows).
fn random_groups(rng: &mut ChaCha8Rng, n: usize, groups: usize) -> Vec<Vec<u32>> {
    let mut all: Vec<u32> = (0..n as u32).collect();
    all.shuffle(rng);
    let groups = groups.clamp(1, n.max(1));
    let mut out = vec![Vec::new(); groups];
    for (i, node) in all.into_iter().enumerate() {
        // The first `groups` nodes seed one group each; the rest land anywhere.
        let g = if i < groups {
            i
        } else {
            (rng.next_u32() as usize) % groups
        };
        out[g].push(node);
    }
    for g in &mut out {
        g.sort_unstable();
    }
    out
}
