//! The outcome of a run: the summary (human and JSON), the counters, and the
//! report directory (`trace.json` plus `report.html`).
//!
//! It owns the output formats. It must never run or change a simulation; it
//! only presents what [`crate::run`] measured.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufWriter, Write as _};
use std::path::Path;

use serde::Serialize;

use crate::check::Violations;
use crate::network::DropReason;
use crate::progress::CurvePoint;
use crate::scenario::Plan;
use crate::trace::TraceRecord;

/// What the network and the nodes did, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Events dispatched by the loop.
    pub events: u64,
    /// Messages put on links (gossip relays included, network duplicates not).
    pub messages: u64,
    /// Bytes of those messages.
    pub bytes: u64,
    /// Message copies that reached a running or paused node.
    pub delivered: u64,
    /// Lost at random.
    pub dropped_loss: u64,
    /// Lost to a partition.
    pub dropped_partition: u64,
    /// Lost because an end was disconnected.
    pub dropped_offline: u64,
    /// Lost because the receiver was down.
    pub dropped_down: u64,
    /// Lost because a paused receiver's inbox was full.
    pub dropped_inbox: u64,
    /// Messages the network delivered twice.
    pub duplicated: u64,
    /// Gossip copies ignored as already seen.
    pub suppressed: u64,
    /// Lines in the trace.
    pub trace_lines: u64,
    /// Writes that produced a change.
    pub writes: u64,
    /// Writes acknowledged durable.
    pub acked_writes: u64,
    /// Epoch switches, over all nodes (own cuts and adopted ones).
    pub epoch_switches: u64,
    /// Most epoch switches the other nodes made (each, on average) while
    /// one node was disconnected.
    pub epochs_missed_offline: u64,
    /// Diameter of the gossip mesh (`None` if disconnected).
    pub mesh_diameter: Option<u32>,
    /// What the lease machines and their applications did.
    pub lease: LeaseCounters,
}

/// What the lease machines and their applications did, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeaseCounters {
    /// Leases acquired.
    pub grants: u64,
    /// Successful renewals.
    pub renewals: u64,
    /// Releases done (the proposer reported the holder's release over).
    pub released: u64,
    /// Of those, releases some acceptor did not confirm before their
    /// deadline.
    pub unconfirmed_releases: u64,
    /// Leases that ran out (not renewed, or abandoned).
    pub expired: u64,
    /// Acquisitions given up.
    pub denied: u64,
    /// Writes the fenced external systems accepted.
    pub writes_accepted: u64,
    /// Writes of stale holders (superseded by a newer grant) they refused.
    pub stale_writes_rejected: u64,
    /// Accepted writes that landed after their holder's lease ended but
    /// before anyone else acquired the resource (harmless; see
    /// [`crate::check::LeaseCheck`]).
    pub late_writes_accepted: u64,
    /// Lease messages put on links (also counted in `messages`).
    pub messages: u64,
    /// Acceptor states made durable (simulated fsyncs completed).
    pub persisted: u64,
    /// Most grants of one semaphore (more than one permit) valid at once.
    pub peak_semaphore_holders: u64,
    /// Acceptors restarted from their disk.
    pub acceptor_restarts: u64,
}

impl Counters {
    /// Counts one dropped message.
    pub fn count_drop(&mut self, reason: DropReason) {
        let slot = match reason {
            DropReason::Loss => &mut self.dropped_loss,
            DropReason::Partition => &mut self.dropped_partition,
            DropReason::Offline => &mut self.dropped_offline,
            DropReason::Down => &mut self.dropped_down,
            DropReason::InboxFull => &mut self.dropped_inbox,
        };
        *slot += 1;
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Number of nodes.
    pub peers: usize,
    /// The seed.
    pub seed: u64,
    /// Whether every live replica ended identical (heads, values, conflicts).
    pub converged: bool,
    /// Virtual ms from the last write or fault until every live node held
    /// every change (`None` if it never happened).
    pub convergence_ms: Option<u64>,
    /// Gossip rounds: over all broadcast messages, the most relay hops by
    /// which a message reached the last node it reached.
    pub rounds: u32,
    /// Messages sent.
    pub messages: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// SHA-256 (hex) of the full trace.
    pub trace_hash: String,
    /// Violation counts.
    pub violations: Violations,
    /// Virtual time at the end of the run.
    pub virtual_ms: u64,
    /// Detailed counters.
    pub counters: Counters,
    /// Descriptions of the first violations and failures.
    pub failures: Vec<String>,
    /// Convergence curve.
    #[serde(skip)]
    pub curve: Vec<CurvePoint>,
    /// Trace records (only when the plan asked to keep them).
    #[serde(skip)]
    pub records: Vec<TraceRecord>,
    /// The plan that ran.
    #[serde(skip)]
    pub plan: Plan,
    /// Where the wall time went, when the plan asked (never part of the
    /// trace: it differs between runs of one seed).
    #[serde(skip)]
    pub profile: Option<crate::Profile>,
}

#[derive(Serialize)]
struct TraceFile<'a> {
    summary: &'a Report,
    plan: &'a Plan,
    curve: &'a [CurvePoint],
    records: &'a [TraceRecord],
}

impl Report {
    /// Whether the run converged with no violation.
    pub fn passed(&self) -> bool {
        self.converged && self.violations.total() == 0
    }

    /// The one-object JSON summary.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let c = &self.counters;
        let v = &self.violations;
        let mut s = String::new();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let conv = self.convergence_ms.map_or("never".to_owned(), |ms| {
            format!("{ms} ms after the last write/fault")
        });
        let diameter = c
            .mesh_diameter
            .map_or("disconnected".to_owned(), |d| d.to_string());
        let _ = writeln!(
            s,
            "{verdict}  scenario={} peers={} seed={}",
            self.scenario, self.peers, self.seed
        );
        let _ = writeln!(
            s,
            "  converged:    {} (all replicas complete {conv})",
            self.converged
        );
        let _ = writeln!(
            s,
            "  gossip:       {} rounds (mesh D={}, diameter {diameter})",
            self.rounds, self.plan.mesh_degree
        );
        let _ = writeln!(
            s,
            "  virtual time: {} ms, {} events, {} trace lines",
            self.virtual_ms, c.events, c.trace_lines
        );
        let _ = writeln!(
            s,
            "  writes:       {} ({} acknowledged durable)",
            c.writes, c.acked_writes
        );
        let _ = writeln!(
            s,
            "  messages:     {} ({} bytes), {} delivered, {} duplicated, {} gossip duplicates ignored",
            self.messages, self.bytes, c.delivered, c.duplicated, c.suppressed
        );
        if c.epoch_switches > 0 {
            let _ = writeln!(
                s,
                "  epochs:       {} switches over all nodes, {} missed by a disconnected node",
                c.epoch_switches, c.epochs_missed_offline
            );
        }
        let _ = writeln!(
            s,
            "  dropped:      loss {}, partition {}, offline {}, down {}, inbox {}",
            c.dropped_loss, c.dropped_partition, c.dropped_offline, c.dropped_down, c.dropped_inbox
        );
        if self.plan.lease.is_some() {
            let l = &c.lease;
            let _ = writeln!(
                s,
                "  leases:       {} grants, {} renewals, {} released ({} unconfirmed), {} expired, {} denied, {} messages, {} persisted, {} acceptor restarts",
                l.grants,
                l.renewals,
                l.released,
                l.unconfirmed_releases,
                l.expired,
                l.denied,
                l.messages,
                l.persisted,
                l.acceptor_restarts
            );
            if l.peak_semaphore_holders > 0 {
                let _ = writeln!(
                    s,
                    "  semaphores:   at most {} holders of one at once",
                    l.peak_semaphore_holders
                );
            }
            let _ = writeln!(
                s,
                "  fencing:      {} writes accepted, {} stale writes rejected, {} late writes accepted",
                l.writes_accepted, l.stale_writes_rejected, l.late_writes_accepted
            );
        }
        let _ = writeln!(s, "  violations:   {v}");
        for f in &self.failures {
            let _ = writeln!(s, "    - {f}");
        }
        let _ = write!(s, "  trace_hash:   {}", self.trace_hash);
        s
    }

    /// Writes `trace.json` and `report.html` into `dir` (created if needed).
    pub fn write_dir(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut out = BufWriter::new(fs::File::create(dir.join("trace.json"))?);
        let file = TraceFile {
            summary: self,
            plan: &self.plan,
            curve: &self.curve,
            records: &self.records,
        };
        serde_json::to_writer(&mut out, &file).map_err(io::Error::other)?;
        out.flush()?;
        fs::write(dir.join("report.html"), crate::html::render(self))
    }
}
