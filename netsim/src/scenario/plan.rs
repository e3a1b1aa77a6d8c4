//! What a run does, fully concrete ([`Plan`]): link parameters, clock
//! spread, workload, the time-ordered faults ([`FaultAt`], [`Fault`]), and
//! the plan every scenario starts from before its faults are drawn.
//!
//! It owns the shape of a plan and its defaults. Like the rest of
//! [`crate::scenario`], it must never run anything: it only describes.

use concord_state::EpochConfig;
use serde::Serialize;

use super::{LeasePlan, Scenario, ScenarioConfig};

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
    pub(super) fn base(cfg: &ScenarioConfig, duration_ms: u64) -> Plan {
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

    /// Time of the last fault (0 if none).
    pub fn last_fault_ms(&self) -> u64 {
        self.faults.iter().map(|f| f.at_ms).max().unwrap_or(0)
    }
}
