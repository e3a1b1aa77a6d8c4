//! The lease side of the scenario catalogue: what lease peers and their
//! applications do ([`LeasePlan`]), and the faults of the `lease-*`
//! scenarios.
//!
//! This module owns the lease scenarios' parameters. Like the rest of
//! [`crate::scenario`], it must never run anything: it only describes.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Fault, FaultAt, LinkParams, Plan, Scenario};

/// The drift bound lease proposers are configured with (concord-lease's
/// default, 10,000 ppm = 1 %).
pub const DEFAULT_DRIFT_BOUND_PPM: u32 = concord_lease::DriftBound::DEFAULT.ppm();

/// One leased resource: its name and its number of permits (1: a mutex,
/// guarding a fenced external system; more: a semaphore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseResource {
    /// The resource name.
    pub name: String,
    /// Holders allowed at once.
    pub permits: u32,
}

/// Lease peers and what their applications do (DESIGN §4): the first
/// `acceptors` nodes run an acceptor, `proposers` nodes from
/// `first_proposer` on a proposer driven by a random workload. Ranges are
/// inclusive, in ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeasePlan {
    /// Nodes `0..acceptors` are the configured lease peers (acceptors).
    pub acceptors: usize,
    /// Nodes `first_proposer..first_proposer + proposers` run a proposer
    /// and an application.
    pub proposers: usize,
    /// The first node that runs a proposer.
    pub first_proposer: usize,
    /// With clock drift at the edges ([`ClockSpread::extreme`]): every
    /// acceptor's clock runs fast and every other node's slow, the worst
    /// case for safety (acceptors let grants go early, holders believe in
    /// them late), instead of a random edge per node.
    pub adversarial_clocks: bool,
    /// The resources applications race for.
    pub resources: Vec<LeaseResource>,
    /// The drift bound proposers assume, in ppm.
    pub drift_bound_ppm: u32,
    /// Longest ttl (acceptors' `max_ttl`, hence their quiet period).
    pub max_ttl_ms: u64,
    /// Ttl of an acquisition or renewal.
    pub ttl_ms: (u64, u64),
    /// How long an application keeps trying to acquire.
    pub wait_ms: (u64, u64),
    /// How long an application wants to hold a lease (renewing meanwhile).
    pub hold_ms: (u64, u64),
    /// Pause between two requests of one application.
    pub idle_ms: (u64, u64),
    /// Probability (ppm) that a holder renews while it holds.
    pub renew_ppm: u32,
    /// Probability (ppm) that a holder walks away at the end of its hold
    /// without releasing: the lease expires.
    pub abandon_ppm: u32,
    /// A holder renews when this much of its validity is left.
    pub renew_lead_ms: (u64, u64),
    /// Work between checking the lease and the write it guards landing at
    /// the external system (the write is not checked again).
    pub work_ms: (u64, u64),
    /// Gap between two writes of one holder.
    pub write_gap_ms: (u64, u64),
    /// How long an acceptor's fsync takes.
    pub fsync_ms: (u64, u64),
    /// Proposers' round timeout.
    pub round_timeout_ms: u64,
    /// Proposers' retry backoff base.
    pub retry_backoff_ms: u64,
    /// Applications start requesting leases at this virtual time.
    pub start_ms: u64,
    /// And make no new request from this virtual time on.
    pub end_ms: u64,
}

impl LeasePlan {
    /// Five acceptors (all nodes if fewer), up to 16 proposers, two mutexes
    /// and a 3-permit semaphore; short leases, so holders change often.
    pub fn contention(peers: usize) -> LeasePlan {
        let resource = |name: &str, permits| LeaseResource {
            name: name.to_owned(),
            permits,
        };
        LeasePlan {
            acceptors: peers.min(5),
            proposers: peers.min(16),
            first_proposer: 0,
            adversarial_clocks: false,
            resources: vec![
                resource("deploy", 1),
                resource("db.migrate", 1),
                resource("api.quota", 3),
            ],
            drift_bound_ppm: DEFAULT_DRIFT_BOUND_PPM,
            max_ttl_ms: 1_000,
            ttl_ms: (150, 1_000),
            wait_ms: (0, 2_000),
            hold_ms: (20, 1_500),
            idle_ms: (0, 300),
            renew_ppm: 600_000,
            abandon_ppm: 200_000,
            renew_lead_ms: (20, 200),
            work_ms: (0, 100),
            write_gap_ms: (5, 100),
            fsync_ms: (0, 3),
            round_timeout_ms: 150,
            retry_backoff_ms: 30,
            start_ms: 0,
            end_ms: 0,
        }
    }

    /// Contention on two mutexes with long work between the lease check
    /// and the write, so that a pause often catches a holder mid-write.
    pub fn pause(peers: usize) -> LeasePlan {
        LeasePlan {
            resources: LeasePlan::contention(peers)
                .resources
                .into_iter()
                .filter(|r| r.permits == 1)
                .collect(),
            hold_ms: (200, 2_000),
            work_ms: (20, 200),
            write_gap_ms: (0, 20),
            ..LeasePlan::contention(peers)
        }
    }

    /// Three acceptors (all nodes if fewer) and a proposer on every other
    /// node, racing for one mutex: short leases, a tiny backoff and round
    /// timeout, holders that write every few ms and hold past their ttl
    /// (so half of the leases run out while others wait), renewals that
    /// sometimes ask for less than what is left, adversarial clocks.
    pub fn expiry_race(peers: usize) -> LeasePlan {
        let acceptors = peers.min(3);
        let first_proposer = if peers > acceptors { acceptors } else { 0 };
        LeasePlan {
            acceptors,
            proposers: peers - first_proposer,
            first_proposer,
            adversarial_clocks: true,
            resources: vec![LeaseResource {
                name: "deploy".to_owned(),
                permits: 1,
            }],
            max_ttl_ms: 400,
            ttl_ms: (50, 400),
            wait_ms: (0, 1_200),
            hold_ms: (400, 900),
            idle_ms: (0, 5),
            renew_ppm: 500_000,
            abandon_ppm: 0,
            renew_lead_ms: (10, 150),
            work_ms: (0, 5),
            write_gap_ms: (1, 10),
            fsync_ms: (0, 1),
            round_timeout_ms: 30,
            retry_backoff_ms: 4,
            ..LeasePlan::contention(peers)
        }
    }

    /// Contention with short leases and slow fsyncs (0–20 ms, up to the
    /// round timeout), for acceptors that crash often.
    pub fn acceptor_crashes(peers: usize) -> LeasePlan {
        LeasePlan {
            max_ttl_ms: 150,
            ttl_ms: (30, 150),
            wait_ms: (0, 500),
            hold_ms: (10, 300),
            idle_ms: (0, 20),
            renew_lead_ms: (10, 60),
            work_ms: (0, 20),
            write_gap_ms: (2, 20),
            fsync_ms: (0, 20),
            round_timeout_ms: 20,
            retry_backoff_ms: 5,
            ..LeasePlan::contention(peers)
        }
    }

    /// Contention where every acceptor fsync takes 120–240 ms, two to four
    /// round timeouts (60 ms); leases long enough for a renewal's writes.
    pub fn slow_disk(peers: usize) -> LeasePlan {
        LeasePlan {
            max_ttl_ms: 1_500,
            ttl_ms: (800, 1_500),
            wait_ms: (0, 4_500),
            renew_lead_ms: (400, 600),
            fsync_ms: (120, 240),
            round_timeout_ms: 60,
            retry_backoff_ms: 20,
            ..LeasePlan::contention(peers)
        }
    }

    /// Contention among three acceptors (all nodes if fewer) and a
    /// proposer on every node, for [`Scenario::LeaseMinority`].
    pub fn minority(peers: usize) -> LeasePlan {
        LeasePlan {
            acceptors: peers.min(3),
            ..LeasePlan::contention(peers)
        }
    }

    /// Whether node `i` runs an acceptor.
    pub fn is_acceptor(&self, i: usize) -> bool {
        i < self.acceptors
    }

    /// Whether node `i` runs a proposer.
    pub fn is_proposer(&self, i: usize) -> bool {
        (self.first_proposer..self.first_proposer.saturating_add(self.proposers)).contains(&i)
    }
}

impl Plan {
    /// The leases and faults of the lease scenario `scenario` (nothing for
    /// any other).
    pub(super) fn add_lease_scenario(&mut self, scenario: Scenario, rng: &mut ChaCha8Rng) {
        let n = self.peers;
        match scenario {
            Scenario::LeaseContention => {
                self.add_leases(LeasePlan::contention(n));
                self.add_flaky_links(20_000, 20_000, 20);
                self.add_crashes(rng);
            }
            Scenario::LeasePartition => {
                self.add_leases(LeasePlan::contention(n));
                self.add_partitions(rng);
            }
            Scenario::LeasePause => {
                self.add_leases(LeasePlan::pause(n));
                self.add_lease_pauses(rng);
            }
            Scenario::LeaseSkew => {
                self.add_leases(LeasePlan::contention(n));
                self.add_flaky_links(10_000, 10_000, 10);
                self.add_extreme_skew(30_000, DEFAULT_DRIFT_BOUND_PPM);
            }
            Scenario::LeaseSkewBeyond => {
                self.add_leases(LeasePlan::contention(n));
                self.add_extreme_skew(30_000, 30 * DEFAULT_DRIFT_BOUND_PPM);
            }
            Scenario::LeaseChaos => {
                self.add_leases(LeasePlan::contention(n));
                self.add_partitions(rng);
                self.add_flaky_links(50_000, 50_000, 15);
                self.add_crashes(rng);
                self.add_extreme_skew(30_000, DEFAULT_DRIFT_BOUND_PPM);
                self.add_pauses(rng, (n / 5).max(1));
            }
            Scenario::LeaseExpiryRace => {
                self.add_leases(LeasePlan::expiry_race(n));
                self.links = LinkParams {
                    latency_min_ms: 0,
                    latency_max_ms: 2,
                    jitter_ms: 10,
                    ..self.links
                };
                self.add_extreme_skew(30_000, DEFAULT_DRIFT_BOUND_PPM);
            }
            Scenario::LeaseAcceptorCrashes => {
                self.add_leases(LeasePlan::acceptor_crashes(n));
                self.add_flaky_links(50_000, 50_000, 5);
                self.add_acceptor_crashes(rng);
            }
            Scenario::LeaseSlowDisk => {
                self.add_leases(LeasePlan::slow_disk(n));
                self.add_flaky_links(20_000, 20_000, 5);
            }
            Scenario::LeaseMinority => {
                let lease = LeasePlan::minority(n);
                self.add_minority_partition(&lease);
                self.add_leases(lease);
            }
            _ => {}
        }
    }

    /// Lease machines and their workload, active during the write phase.
    fn add_leases(&mut self, mut lease: LeasePlan) {
        lease.start_ms = self.workload.start_ms;
        lease.end_ms = self.workload.end_ms;
        self.lease = Some(lease);
    }

    /// Two pauses of every lease proposer, 1–4 s each (several times the
    /// longest ttl), starting at a random time in each half of the write
    /// phase (a pause that outlasts the next start absorbs it).
    fn add_lease_pauses(&mut self, rng: &mut ChaCha8Rng) {
        let Some(lease) = self.lease.clone() else {
            return;
        };
        let (start, span) = (self.workload.start_ms, self.write_span());
        let half = (span / 2).max(1);
        for node in (0..self.peers as u32).filter(|&i| lease.is_proposer(i as usize)) {
            for first in [start, start + half] {
                let at_ms = first + rng.random_range(0..half);
                let len = rng.random_range(1_000..=4_000);
                self.add_pause(node, at_ms, len);
            }
        }
    }

    /// Every lease acceptor crashes again and again during the write
    /// phase: after 0.5–2 s up, down for 5–100 ms, two in three times
    /// uncleanly (losing what its disk had not synced). Writes are fsynced
    /// by a 100 ms group commit, as with `add_crashes`.
    fn add_acceptor_crashes(&mut self, rng: &mut ChaCha8Rng) {
        let Some(lease) = self.lease.clone() else {
            return;
        };
        self.sync_writes = false;
        self.flush_interval_ms = Some(100);
        let (start, end) = (self.workload.start_ms, self.workload.end_ms);
        for node in (0..self.peers as u32).filter(|&i| lease.is_acceptor(i as usize)) {
            let mut at_ms = start + rng.random_range(0..2_000);
            while at_ms < end {
                let clean = rng.random_range(0..3) == 0;
                let down_ms = rng.random_range(5..=100);
                self.add_crash(node, at_ms, clean, down_ms);
                at_ms += down_ms + rng.random_range(500..=2_000);
            }
        }
    }

    /// The lease plan's minority (its first acceptor, and the first
    /// proposer that is no acceptor, if any) cut off from every other node
    /// from the start until well after the last request can have ended
    /// (the write phase plus the longest wait and ttl), then healed.
    fn add_minority_partition(&mut self, lease: &LeasePlan) {
        let outsider = lease.acceptors;
        let minority: Vec<u32> = (0..self.peers as u32)
            .filter(|&i| i == 0 || (i as usize == outsider && lease.is_proposer(outsider)))
            .collect();
        let rest: Vec<u32> = (0..self.peers as u32)
            .filter(|i| !minority.contains(i))
            .collect();
        if rest.is_empty() {
            return;
        }
        self.faults.push(FaultAt {
            at_ms: 0,
            fault: Fault::Partition(vec![minority, rest]),
        });
        self.faults.push(FaultAt {
            at_ms: self.workload.end_ms + lease.wait_ms.1 + lease.ttl_ms.1,
            fault: Fault::Heal,
        });
    }
}
