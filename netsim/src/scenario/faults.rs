//! The fault schedules scenarios draw into a plan: partitions and heals,
//! flaky links, crashes and restarts, clock skew, an offline edge, pauses
//! and resumes.
//!
//! It owns how each kind of fault is drawn from the plan's stream. Like the
//! rest of [`crate::scenario`], it must never run anything: it only
//! describes.

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use super::{ClockSpread, Fault, FaultAt, LinkParams, Plan};

impl Plan {
    /// Two partitions into 2–3 random groups during the write phase, each
    /// healed later (at 20–50 % and 60–90 % of it).
    pub(super) fn add_partitions(&mut self, rng: &mut ChaCha8Rng) {
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
    pub(super) fn add_flaky_links(&mut self, loss_ppm: u32, dup_ppm: u32, jitter_ms: u64) {
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
    pub(super) fn add_crashes(&mut self, rng: &mut ChaCha8Rng) {
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
    pub(super) fn add_crash(&mut self, node: u32, at_ms: u64, clean: bool, down_ms: u64) {
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
    pub(super) fn add_skew(&mut self, max_skew_ms: u64, max_drift_ppm: u32) {
        self.clocks = ClockSpread {
            max_skew_ms,
            max_drift_ppm,
            extreme: false,
        };
    }

    /// Clock offsets up to `max_skew_ms` and every rate error at
    /// `+max_drift_ppm` or `-max_drift_ppm`.
    pub(super) fn add_extreme_skew(&mut self, max_skew_ms: u64, max_drift_ppm: u32) {
        self.clocks = ClockSpread {
            max_skew_ms,
            max_drift_ppm,
            extreme: true,
        };
    }

    /// One random node disconnected from 1 s into the write phase until 2 s
    /// before its end, writing every 50 ms meanwhile.
    pub(super) fn add_offline_edge(&mut self, rng: &mut ChaCha8Rng) {
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
    pub(super) fn add_pauses(&mut self, rng: &mut ChaCha8Rng, count: usize) {
        let (start, end) = (self.workload.start_ms, self.workload.end_ms);
        for node in pick_nodes(rng, self.peers, count) {
            let at_ms = rng.random_range(start..end.max(start + 1));
            let len = rng.random_range(1_000..=4_000);
            self.add_pause(node, at_ms, len);
        }
    }

    /// `node` pauses at `at_ms` and resumes `len` ms later.
    pub(super) fn add_pause(&mut self, node: u32, at_ms: u64, len: u64) {
        self.faults.push(FaultAt {
            at_ms,
            fault: Fault::Pause(node),
        });
        self.faults.push(FaultAt {
            at_ms: at_ms + len,
            fault: Fault::Resume(node),
        });
    }

    pub(super) fn write_span(&self) -> u64 {
        self.workload.end_ms - self.workload.start_ms
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
