//! # netsim — Concord's deterministic network simulator
//!
//! Runs N nodes, each a real [`concord_sync::SyncEngine`] over a real durable
//! [`concord_state::Replica`] on a simulated disk
//! ([`concord_storage::MemDisk`]), over a virtual network, from one
//! `u64` seed (DESIGN §8). Virtual time is in milliseconds; events are
//! processed in (time, sequence) order; there is no wall clock, no thread and
//! no hash-map iteration in anything that reaches the output, so the same
//! seed and arguments give the same trace, byte for byte (`trace_hash`).
//!
//! * **Network** ([`network`]): per-link latency with jitter (hence
//!   reordering), loss, duplication, partitions into arbitrary groups,
//!   disconnected nodes. The production fast path (gossipsub) is modelled as
//!   a flood over a random connected mesh of about D peers per node
//!   (default 6): a node relays a broadcast frame it sees for the first time
//!   to its mesh peers except the sender, de-duplicating by a hash of the
//!   bytes in a bounded cache. Engines only know their mesh neighbours, so
//!   digests and anti-entropy run between neighbours. `rounds` is, over all
//!   broadcast messages, the most relay hops by which a message reached the
//!   last node it reached (the mesh diameter is the lossless lower bound).
//! * **Nodes** ([`node`]): crash (clean, or power loss dropping unsynced
//!   disk data, possibly leaving a torn record) and restart from disk with a
//!   new actor id (node + incarnation) after an unclean stop. A node carries
//!   out what its replica hands out to persist as the network driver does:
//!   written at once, durable at the simulated fsync after a write or at
//!   the periodic flush. Pause (nothing
//!   processed, timers deferred, incoming frames queued in a bounded inbox
//!   and processed on resume; frames to a crashed node are lost); clock skew
//!   and drift (each node's `now` is an affine function of virtual time).
//! * **Workload** ([`workload`]): random writes to `LastValue` (LWW and
//!   `reject`), `Topic`, `Counter` and `Set` channels; in `steady` (or any
//!   plan with [`Workload::heartbeat_ms`]) also a heartbeat per node and
//!   interval on an ephemeral channel (gossiped, never in the document, so
//!   left out of the convergence and causal-order checks).
//! * **Leases** ([`lease`], for the `lease-*` scenarios, see [`LeasePlan`]):
//!   the first nodes also run the real concord-lease acceptor (the lease
//!   peers) and proposer, on their own skewed, drifting clock, exchanging
//!   lease messages point-to-point over the same faulty network. An
//!   acceptor's state goes to the node's simulated disk and is durable only
//!   after a simulated fsync (a power loss drops it); a restarted acceptor
//!   recovers it and sits out its quiet period. Each proposer's application
//!   races for a few resources, holds for a while (renewing), writes to a
//!   fenced external system with its token, then releases (and, as
//!   concord-net's release call does, waits until the proposer reports the
//!   release done before its next request) or lets the lease expire. The
//!   driver makes no protocol decision of its own: retries, release
//!   confirmations and their deadlines are the proposer's, exactly as in
//!   production. This is the one simulator of the lease machines: every
//!   rule about them is checked here.
//! * **Checkers** ([`check`]): convergence (heads, clocks, values,
//!   conflicts), causal order of every node's `*` subscriber (per step),
//!   lost acknowledged writes, bounded queues (engine transmits, pending
//!   changes, subscriber lag; per step), protocol errors, storage errors,
//!   and lease safety ([`check::LeaseCheck`]): no more holders than permits
//!   with overlapping validity in virtual time, fencing tokens increasing in
//!   grant order, and fenced external systems refusing every stale holder.
//!   A panic is caught by the binary's `--sweep` and reported as a failure.
//! * **Scenarios** ([`scenario`]): `steady`, `partition-heal`,
//!   `flaky-links`, `crash-restart`, `clock-skew`, `offline-edge`, `scale`,
//!   `chaos` (all faults at once), and with leases `lease-contention`,
//!   `lease-partition`, `lease-pause`, `lease-skew` (drift at the
//!   configured bound), `lease-chaos` (every fault at once),
//!   `lease-expiry-race` (holders run to the end of their validity while
//!   others wait, clocks at the worst edge of the bound),
//!   `lease-acceptor-crashes` (acceptors crash again and again with slow
//!   fsyncs), `lease-slow-disk` (fsyncs slower than the round timeout:
//!   every run must grant) and `lease-minority` (a minority cut off for the
//!   whole run never acquires); `lease-skew-beyond` drifts past the bound
//!   and is expected to fail. A [`Plan`] is fully concrete and can be
//!   edited before [`run_plan`].
//! * **Output** ([`report`], [`html`], [`trace`]): a summary (human or one
//!   JSON object), `trace_hash` (SHA-256 of every trace line), and on request
//!   `trace.json` plus `report.html` (SVG timeline and convergence curve).
//!
//! Binary (`src/main.rs`):
//!
//! ```text
//! netsim --peers N --seed S --scenario NAME [--duration SECS] [--write-interval MS]
//!        [--degree D] [--json] [--report DIR]
//! netsim --sweep --seeds A..B --scenario NAME [--peers N]     # seeds inclusive
//! ```
//!
//! Library:
//!
//! ```
//! use netsim::{Scenario, ScenarioConfig};
//!
//! let report = netsim::run(&ScenarioConfig::new(Scenario::Steady, 4, 7));
//! assert!(report.passed(), "{}", report.summary());
//! ```

pub mod check;
pub mod html;
pub mod ids;
pub mod lease;
pub mod network;
pub mod node;
pub mod profile;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod trace;
pub mod workload;

pub use check::Violations;
pub use profile::Profile;
pub use report::{Counters, LeaseCounters, Report};
pub use scenario::{
    ClockSpread, DEFAULT_DRIFT_BOUND_PPM, DEFAULT_MESH_DEGREE, Fault, FaultAt, LeasePlan,
    LeaseResource, LinkParams, Plan, Scenario, ScenarioConfig, Workload,
};

/// Runs a scenario and reports.
pub fn run(config: &ScenarioConfig) -> Report {
    run_plan(config.plan())
}

/// Runs an explicit plan (e.g. a scenario's plan edited by a test).
pub fn run_plan(plan: Plan) -> Report {
    sim::Sim::new(plan).run()
}
