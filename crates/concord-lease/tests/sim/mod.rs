//! A tiny deterministic simulator for the lease machines, and the checker.
//!
//! Owns: virtual real time (microseconds), one drifting clock per node, a
//! lossy, duplicating, reordering network with partitions, acceptor and
//! proposer crashes with restart from the last durable state, a scripted
//! application per proposer, and a model external system that fences
//! writes by token. Must never: read the real clock or use unseeded
//! randomness (one seed gives one run, byte for byte), or let the machines
//! see real time (each node only sees its own clock).
//!
//! The checker looks at *real* time: every grant is recorded from the
//! moment its holder learns of it until the real moment its holder's clock
//! reaches `valid_until` (or it releases, or crashes).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use concord_lease::{
    Acceptor, AcceptorConfig, AcceptorInput, AcceptorState, DriftBound, Event, Input, LeaseId,
    Message, Millis, NodeId, Permits, Proposer, ProposerConfig, Quorum, Resource,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Microseconds per millisecond.
pub const MS: u64 = 1_000;

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub acceptors: usize,
    pub proposers: usize,
    /// (name, permits)
    pub resources: Vec<(&'static str, u32)>,
    pub duration_ms: u64,
    pub loss: f64,
    pub duplicate: f64,
    /// Message delay range; see `fast_delay_us`.
    pub delay_us: (u64, u64),
    /// If set, messages take this (fast) range of delay, except with
    /// probability `slow_prob`, when they take `delay_us`.
    pub fast_delay_us: Option<(u64, u64)>,
    pub slow_prob: f64,
    pub partitions: bool,
    /// Proposer 0 and a minority of acceptors are cut off from the rest for
    /// the whole run.
    pub isolate_minority: bool,
    pub acceptor_crashes: bool,
    pub proposer_crashes: bool,
    /// Bound every node's clock rate error actually stays within (ppm).
    pub drift_actual_ppm: u32,
    /// Bound the proposers are configured with (ppm).
    pub drift_assumed_ppm: u32,
    /// Acceptors run fast and proposers slow, both at `drift_actual_ppm`
    /// (the worst case for safety), instead of random rates.
    pub adversarial_drift: bool,
    pub ttl_ms: (u64, u64),
    pub hold_ms: (u64, u64),
    pub idle_ms: (u64, u64),
    pub renew_prob: f64,
    /// Probability that a write is delayed by a long pause after its
    /// validity check (a GC pause, a slow network).
    pub pause_prob: f64,
    pub pause_max_ms: u64,
    pub max_ttl_ms: u64,
    pub round_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    /// Ttl asked for by renewals.
    pub renew_ttl_ms: (u64, u64),
    /// A holder renews when this much of its validity is left.
    pub renew_lead_ms: (u64, u64),
    /// How long an fsync takes (range).
    pub fsync_us: (u64, u64),
    /// Time between crashes, and downtime.
    pub crash_every_ms: (u64, u64),
    pub down_ms: (u64, u64),
}

impl Scenario {
    /// Two mutexes, 3 acceptors, 4 proposers, every fault on, drift up to
    /// the configured bound.
    pub fn mutex(seed: u64) -> Scenario {
        Scenario {
            seed,
            acceptors: 3,
            proposers: 4,
            resources: vec![("deploy", 1), ("db", 1)],
            duration_ms: 8_000,
            loss: 0.05,
            duplicate: 0.05,
            delay_us: (200, 15 * MS),
            fast_delay_us: None,
            slow_prob: 0.0,
            partitions: true,
            isolate_minority: false,
            acceptor_crashes: true,
            proposer_crashes: true,
            drift_actual_ppm: 10_000,
            drift_assumed_ppm: 10_000,
            adversarial_drift: false,
            ttl_ms: (150, 600),
            hold_ms: (20, 1_200),
            idle_ms: (0, 200),
            renew_prob: 0.7,
            pause_prob: 0.05,
            pause_max_ms: 1_500,
            max_ttl_ms: 600,
            round_timeout_ms: 60,
            retry_backoff_ms: 20,
            renew_ttl_ms: (150, 600),
            renew_lead_ms: (50, 200),
            fsync_us: (0, MS),
            crash_every_ms: (1_000, 3_000),
            down_ms: (50, 1_500),
        }
    }

    /// Holders run to the end of their validity while others wait with a
    /// tiny backoff, messages are sometimes fast and sometimes slow, clocks
    /// sit at the worst edge of the bound, and renewals sometimes ask for
    /// less than what is left: the race at expiry, as tight as it gets.
    pub fn expiry_race(seed: u64) -> Scenario {
        Scenario {
            proposers: 3,
            resources: vec![("deploy", 1)],
            loss: 0.0,
            duplicate: 0.0,
            delay_us: (10, 10 * MS),
            fast_delay_us: Some((10, 200)),
            slow_prob: 0.1,
            partitions: false,
            acceptor_crashes: false,
            proposer_crashes: false,
            adversarial_drift: true,
            ttl_ms: (100, 400),
            hold_ms: (400, 900),
            idle_ms: (0, 5),
            renew_prob: 0.5,
            renew_ttl_ms: (50, 400),
            renew_lead_ms: (10, 150),
            max_ttl_ms: 400,
            round_timeout_ms: 30,
            retry_backoff_ms: 4,
            duration_ms: 3_000,
            ..Scenario::mutex(seed)
        }
    }

    /// Acceptors crash every few hundred milliseconds, fsyncs are slow, and
    /// leases are short: promises that were not yet durable get lost.
    pub fn crashy(seed: u64) -> Scenario {
        Scenario {
            ttl_ms: (30, 150),
            renew_ttl_ms: (30, 150),
            hold_ms: (10, 300),
            idle_ms: (0, 20),
            max_ttl_ms: 150,
            delay_us: (100, 5 * MS),
            round_timeout_ms: 20,
            retry_backoff_ms: 5,
            fsync_us: (0, 20 * MS),
            crash_every_ms: (50, 400),
            down_ms: (5, 100),
            partitions: false,
            duration_ms: 4_000,
            ..Scenario::mutex(seed)
        }
    }

    /// Every acceptor fsync takes two to four round timeouts; no crashes or
    /// partitions. A proposer with a fixed round timeout never sees a
    /// promise in time here.
    pub fn slow_disk(seed: u64) -> Scenario {
        Scenario {
            partitions: false,
            acceptor_crashes: false,
            proposer_crashes: false,
            loss: 0.02,
            duplicate: 0.02,
            ttl_ms: (800, 1_500),
            renew_ttl_ms: (800, 1_500),
            renew_lead_ms: (400, 600),
            max_ttl_ms: 1_500,
            fsync_us: (120 * MS, 240 * MS),
            duration_ms: 10_000,
            ..Scenario::mutex(seed)
        }
    }

    /// A 3-permit semaphore and a mutex, 5 acceptors, 6 proposers.
    pub fn semaphore(seed: u64) -> Scenario {
        Scenario {
            acceptors: 5,
            proposers: 6,
            resources: vec![("api", 3), ("deploy", 1)],
            duration_ms: 5_000,
            ..Scenario::mutex(seed)
        }
    }

    /// Proposer 0 with one acceptor of three, for the whole run.
    pub fn minority(seed: u64) -> Scenario {
        Scenario {
            partitions: false,
            isolate_minority: true,
            acceptor_crashes: false,
            proposer_crashes: false,
            ..Scenario::mutex(seed)
        }
    }

    /// Clocks drift far beyond the configured bound: the checker must
    /// catch overlapping holders.
    pub fn beyond_drift_bound(seed: u64) -> Scenario {
        Scenario {
            resources: vec![("deploy", 1)],
            partitions: false,
            acceptor_crashes: false,
            proposer_crashes: false,
            loss: 0.0,
            duplicate: 0.0,
            drift_actual_ppm: 300_000,
            drift_assumed_ppm: 10_000,
            adversarial_drift: true,
            renew_prob: 0.0,
            hold_ms: (2_000, 3_000),
            ..Scenario::mutex(seed)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub resource: usize,
    pub permits: u32,
    pub token: u64,
    pub proposer: usize,
    pub incarnation: u32,
    pub lease: u64,
    pub requested_us: u64,
    pub start_us: u64,
    pub end_us: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub resource: usize,
    pub token: u64,
    pub grant: usize,
    pub issued_us: u64,
    pub arrived_us: u64,
    pub accepted: bool,
    pub stale: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub acceptor_restarts: u64,
    pub proposer_restarts: u64,
    pub partitions: u64,
    pub renewals: u64,
    pub lost: u64,
    pub denied: u64,
    pub released: u64,
    pub writes_accepted: u64,
    pub stale_writes_rejected: u64,
    pub steps: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub grants: Vec<Grant>,
    pub writes: Vec<Write>,
    pub violations: Vec<String>,
    pub stats: Stats,
}

impl Report {
    /// Violations about overlapping holders only.
    pub fn overlaps(&self) -> usize {
        self.violations
            .iter()
            .filter(|v| v.starts_with("overlap"))
            .count()
    }
}

/// A node's clock: `offset + t * (1 + rate)`, floored to milliseconds.
#[derive(Clone, Copy, Debug)]
struct Clock {
    offset_ms: u64,
    rate_ppm: i64,
}

impl Clock {
    fn local(&self, t_us: u64) -> Millis {
        let per = u128::try_from(1_000_000 + self.rate_ppm).unwrap();
        let scaled = u128::from(t_us) * per / 1_000_000_000;
        Millis(self.offset_ms + u64::try_from(scaled).unwrap())
    }

    /// First real time `>= now_us` at which this clock reads at least `l`.
    fn real_at(&self, l: Millis, now_us: u64) -> u64 {
        if self.local(now_us) >= l {
            return now_us;
        }
        let k = u128::from(l.0 - self.offset_ms) * 1_000_000_000;
        let per = u128::try_from(1_000_000 + self.rate_ppm).unwrap();
        let t = u64::try_from(k.div_ceil(per)).unwrap();
        debug_assert!(self.local(t) >= l && (t == 0 || self.local(t - 1) < l));
        t.max(now_us)
    }
}

#[derive(Clone, Debug)]
enum Agent {
    Down,
    Idle,
    Acquiring {
        lease: u64,
        resource: usize,
        requested_us: u64,
    },
    Holding {
        lease: u64,
        grant: usize,
        hold_until: u64,
        renews: bool,
        ttl: Millis,
    },
}

struct AcceptorNode {
    clock: Clock,
    machine: Option<Acceptor>,
    disk: AcceptorState,
    incarnation: u32,
}

struct ProposerNode {
    clock: Clock,
    machine: Option<Proposer>,
    incarnation: u32,
    agent: Agent,
    next_lease: u64,
    wake_epoch: u64,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        to: NodeId,
        from: NodeId,
        message: Message,
    },
    Durable {
        acceptor: usize,
        incarnation: u32,
        version: u64,
        state: AcceptorState,
    },
    Wake {
        proposer: usize,
        epoch: u64,
    },
    IssueWrite {
        proposer: usize,
        incarnation: u32,
        lease: u64,
        grant: usize,
    },
    WriteArrives {
        grant: usize,
        issued_us: u64,
    },
    CrashAcceptor,
    RestartAcceptor(usize),
    CrashProposer,
    RestartProposer(usize),
    PartitionStart,
    PartitionEnd,
}

fn acceptor_id(i: usize) -> NodeId {
    NodeId(u16::try_from(i + 1).unwrap())
}

fn proposer_id(i: usize) -> NodeId {
    NodeId(u16::try_from(i + 100).unwrap())
}

struct Sim {
    sc: Scenario,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    acceptors: Vec<AcceptorNode>,
    proposers: Vec<ProposerNode>,
    resources: Vec<(Resource, Permits)>,
    /// Partition side per node id while a partition is on.
    sides: Option<BTreeMap<NodeId, bool>>,
    grants: Vec<Grant>,
    writes: Vec<Write>,
    /// Per resource: highest token the external system has seen, and the
    /// latest grant start among accepted writes.
    external: Vec<(u64, u64)>,
    violations: Vec<String>,
    stats: Stats,
}

pub fn run(sc: &Scenario) -> Report {
    let mut sim = Sim::new(sc.clone());
    sim.run();
    sim.check();
    Report {
        grants: sim.grants,
        writes: sim.writes,
        violations: sim.violations,
        stats: sim.stats,
    }
}

impl Sim {
    fn new(sc: Scenario) -> Sim {
        let rng = ChaCha8Rng::seed_from_u64(sc.seed);
        let resources = sc
            .resources
            .iter()
            .map(|(name, permits)| {
                (
                    Resource::new(*name).unwrap(),
                    Permits::new(*permits).unwrap(),
                )
            })
            .collect::<Vec<_>>();
        let mut sim = Sim {
            external: vec![(0, 0); resources.len()],
            resources,
            acceptors: Vec::new(),
            proposers: Vec::new(),
            sides: None,
            grants: Vec::new(),
            writes: Vec::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            rng,
            sc,
        };
        for _ in 0..sim.sc.acceptors {
            let clock = sim.new_clock(true);
            sim.acceptors.push(AcceptorNode {
                machine: Some(Acceptor::new(sim.acceptor_config(0)).unwrap()),
                clock,
                disk: AcceptorState::default(),
                incarnation: 0,
            });
        }
        for i in 0..sim.sc.proposers {
            let clock = sim.new_clock(false);
            let seed = sim.rng.random();
            sim.proposers.push(ProposerNode {
                machine: Some(Proposer::new(sim.proposer_config(i), seed).unwrap()),
                clock,
                incarnation: 0,
                agent: Agent::Idle,
                next_lease: 0,
                wake_epoch: 0,
            });
        }
        for p in 0..sim.sc.proposers {
            let at = sim.rng.random_range(0..200 * MS);
            sim.schedule_wake(p, at);
        }
        if sim.sc.isolate_minority {
            let mut sides = BTreeMap::new();
            let minority = (sim.sc.acceptors - 1) / 2;
            for a in 0..sim.sc.acceptors {
                sides.insert(acceptor_id(a), a < minority);
            }
            for p in 0..sim.sc.proposers {
                sides.insert(proposer_id(p), p == 0);
            }
            sim.sides = Some(sides);
        }
        if sim.sc.partitions {
            let at = sim.rng.random_range(500 * MS..3_000 * MS);
            sim.push(at, Ev::PartitionStart);
        }
        if sim.sc.acceptor_crashes {
            let at = sim.rng.random_range(500 * MS..3_000 * MS);
            sim.push(at, Ev::CrashAcceptor);
        }
        if sim.sc.proposer_crashes {
            let at = sim.rng.random_range(500 * MS..3_000 * MS);
            sim.push(at, Ev::CrashProposer);
        }
        sim
    }

    fn acceptor_config(&self, i: usize) -> AcceptorConfig {
        AcceptorConfig {
            max_ttl: Millis(self.sc.max_ttl_ms),
            ..AcceptorConfig::new(acceptor_id(i))
        }
    }

    fn proposer_config(&self, i: usize) -> ProposerConfig {
        let quorum = Quorum::new((0..self.sc.acceptors).map(acceptor_id)).unwrap();
        ProposerConfig {
            drift: DriftBound::from_ppm(self.sc.drift_assumed_ppm).unwrap(),
            max_ttl: Millis(self.sc.max_ttl_ms),
            round_timeout: Millis(self.sc.round_timeout_ms),
            retry_backoff: Millis(self.sc.retry_backoff_ms),
            ..ProposerConfig::new(proposer_id(i), quorum)
        }
    }

    fn new_clock(&mut self, acceptor: bool) -> Clock {
        let max = i64::from(self.sc.drift_actual_ppm);
        let rate_ppm = if self.sc.adversarial_drift || self.rng.random_bool(0.3) {
            // The worst case for safety: acceptors fast, holders slow.
            if acceptor { max } else { -max }
        } else {
            self.rng.random_range(-max..=max)
        };
        Clock {
            offset_ms: self.rng.random_range(0..1_000_000),
            rate_ppm,
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn schedule_wake(&mut self, p: usize, at: u64) {
        let node = &mut self.proposers[p];
        node.wake_epoch += 1;
        let epoch = node.wake_epoch;
        self.push(at, Ev::Wake { proposer: p, epoch });
    }

    fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        self.rng.random_range(lo..=hi)
    }

    fn run(&mut self) {
        let end = self.sc.duration_ms * MS;
        loop {
            self.stats.steps += 1;
            let next_event = self.queue.first_key_value().map(|((t, _), _)| *t);
            let next_timer = self
                .proposers
                .iter()
                .enumerate()
                .filter_map(|(p, n)| {
                    let wake = n.machine.as_ref()?.poll_timeout()?;
                    Some((n.clock.real_at(wake, self.now), p))
                })
                .min();
            let timer_first = match (next_event, next_timer) {
                (None, None) => break,
                (Some(e), Some((t, _))) => t <= e,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if timer_first {
                let Some((t, p)) = next_timer else { break };
                if t > end {
                    break;
                }
                self.now = t;
                let local = self.proposers[p].clock.local(t);
                let machine = self.proposers[p].machine.as_mut().unwrap();
                machine.handle_input(local, Input::Timeout).unwrap();
                if machine.poll_timeout().is_some_and(|w| w <= local) {
                    self.violations
                        .push(format!("proposer {p}: timer did not advance at {local}"));
                    return;
                }
                self.drain_proposer(p);
            } else {
                let Some(((t, _), ev)) = self.queue.pop_first() else {
                    break;
                };
                if t > end {
                    break;
                }
                self.now = t;
                self.process(ev);
            }
        }
    }

    fn crosses_partition(&self, a: NodeId, b: NodeId) -> bool {
        self.sides.as_ref().is_some_and(|s| s.get(&a) != s.get(&b))
    }

    fn send(&mut self, from: NodeId, to: NodeId, message: Message) {
        self.stats.messages_sent += 1;
        if self.crosses_partition(from, to) || self.rng.random_bool(self.sc.loss) {
            self.stats.messages_dropped += 1;
            return;
        }
        let copies = if self.rng.random_bool(self.sc.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = match self.sc.fast_delay_us {
                Some(fast) if !self.rng.random_bool(self.sc.slow_prob) => self.range(fast),
                _ => self.range(self.sc.delay_us),
            };
            let at = self.now + delay;
            self.push(
                at,
                Ev::Deliver {
                    to,
                    from,
                    message: message.clone(),
                },
            );
        }
    }

    fn process(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, from, message } => {
                if self.crosses_partition(from, to) {
                    self.stats.messages_dropped += 1;
                    return;
                }
                if to.0 >= 100 {
                    let p = usize::from(to.0 - 100);
                    let local = self.proposers[p].clock.local(self.now);
                    let Some(machine) = self.proposers[p].machine.as_mut() else {
                        return;
                    };
                    if let Err(e) = machine.handle_input(local, Input::Message { from, message }) {
                        self.violations.push(format!("proposer {p} refused: {e}"));
                    }
                    self.drain_proposer(p);
                } else {
                    let a = usize::from(to.0 - 1);
                    let local = self.acceptors[a].clock.local(self.now);
                    let Some(machine) = self.acceptors[a].machine.as_mut() else {
                        return;
                    };
                    let input = AcceptorInput::Message { from, message };
                    if let Err(e) = machine.handle_input(local, input) {
                        self.violations.push(format!("acceptor {a} refused: {e}"));
                    }
                    self.drain_acceptor(a);
                }
            }
            Ev::Durable {
                acceptor,
                incarnation,
                version,
                state,
            } => {
                let node = &mut self.acceptors[acceptor];
                if node.incarnation != incarnation {
                    return; // crashed before the fsync completed
                }
                node.disk = state;
                let local = node.clock.local(self.now);
                if let Some(machine) = node.machine.as_mut() {
                    machine
                        .handle_input(local, AcceptorInput::Persisted { version })
                        .unwrap();
                }
                self.drain_acceptor(acceptor);
            }
            Ev::Wake { proposer, epoch } => {
                if self.proposers[proposer].wake_epoch == epoch {
                    self.wake(proposer);
                }
            }
            Ev::IssueWrite {
                proposer,
                incarnation,
                lease,
                grant,
            } => self.issue_write(proposer, incarnation, lease, grant),
            Ev::WriteArrives { grant, issued_us } => self.write_arrives(grant, issued_us),
            Ev::CrashAcceptor => {
                let up: Vec<usize> = (0..self.acceptors.len())
                    .filter(|a| self.acceptors[*a].machine.is_some())
                    .collect();
                if !up.is_empty() {
                    let a = up[self.rng.random_range(0..up.len())];
                    let node = &mut self.acceptors[a];
                    node.machine = None;
                    node.incarnation += 1;
                    let at = self.now + self.range(self.sc.down_ms) * MS;
                    self.push(at, Ev::RestartAcceptor(a));
                }
                let at = self.now + self.range(self.sc.crash_every_ms) * MS;
                self.push(at, Ev::CrashAcceptor);
            }
            Ev::RestartAcceptor(a) => {
                self.stats.acceptor_restarts += 1;
                let clock = self.new_clock(true);
                let config = self.acceptor_config(a);
                let node = &mut self.acceptors[a];
                node.clock = clock;
                let local = clock.local(self.now);
                node.machine = Some(Acceptor::restore(config, node.disk.clone(), local).unwrap());
            }
            Ev::CrashProposer => {
                let up: Vec<usize> = (0..self.proposers.len())
                    .filter(|p| self.proposers[*p].machine.is_some())
                    .collect();
                if !up.is_empty() {
                    let p = up[self.rng.random_range(0..up.len())];
                    if let Agent::Holding { grant, .. } = self.proposers[p].agent {
                        let g = &mut self.grants[grant];
                        g.end_us = g.end_us.min(self.now);
                    }
                    let node = &mut self.proposers[p];
                    node.machine = None;
                    node.incarnation += 1;
                    node.agent = Agent::Down;
                    node.wake_epoch += 1;
                    let at = self.now + self.range(self.sc.down_ms) * MS;
                    self.push(at, Ev::RestartProposer(p));
                }
                let at = self.now + self.range(self.sc.crash_every_ms) * MS;
                self.push(at, Ev::CrashProposer);
            }
            Ev::RestartProposer(p) => {
                self.stats.proposer_restarts += 1;
                let clock = self.new_clock(false);
                let seed = self.rng.random();
                let config = self.proposer_config(p);
                let node = &mut self.proposers[p];
                node.clock = clock;
                node.machine = Some(Proposer::new(config, seed).unwrap());
                node.agent = Agent::Idle;
                // Lease ids are reused across incarnations on purpose.
                node.next_lease = 0;
                let at = self.now + self.rng.random_range(0..100 * MS);
                self.schedule_wake(p, at);
            }
            Ev::PartitionStart => {
                self.stats.partitions += 1;
                let mut sides = BTreeMap::new();
                let ids = (0..self.sc.acceptors)
                    .map(acceptor_id)
                    .chain((0..self.sc.proposers).map(proposer_id))
                    .collect::<Vec<_>>();
                for id in &ids {
                    sides.insert(*id, self.rng.random_bool(0.5));
                }
                // Make sure both sides are non-empty.
                sides.insert(ids[0], true);
                sides.insert(ids[1], false);
                self.sides = Some(sides);
                let at = self.now + self.rng.random_range(200 * MS..2_000 * MS);
                self.push(at, Ev::PartitionEnd);
            }
            Ev::PartitionEnd => {
                self.sides = None;
                let at = self.now + self.rng.random_range(1_000 * MS..4_000 * MS);
                self.push(at, Ev::PartitionStart);
            }
        }
    }

    fn drain_acceptor(&mut self, a: usize) {
        let id = acceptor_id(a);
        let incarnation = self.acceptors[a].incarnation;
        let mut persists = Vec::new();
        let mut transmits = Vec::new();
        if let Some(machine) = self.acceptors[a].machine.as_mut() {
            while let Some(p) = machine.poll_persist() {
                persists.push(p);
            }
            while let Some(t) = machine.poll_transmit() {
                transmits.push(t);
            }
        }
        for p in persists {
            let (fastest, slowest) = self.sc.fsync_us;
            let at = self.now + self.rng.random_range(fastest..=slowest);
            self.push(
                at,
                Ev::Durable {
                    acceptor: a,
                    incarnation,
                    version: p.version,
                    state: p.state,
                },
            );
        }
        for t in transmits {
            self.send(id, t.to, t.message);
        }
    }

    fn drain_proposer(&mut self, p: usize) {
        let id = proposer_id(p);
        loop {
            let mut transmits = Vec::new();
            let mut events = Vec::new();
            if let Some(machine) = self.proposers[p].machine.as_mut() {
                while let Some(t) = machine.poll_transmit() {
                    transmits.push(t);
                }
                while let Some(e) = machine.poll_event() {
                    events.push(e);
                }
            }
            if transmits.is_empty() && events.is_empty() {
                return;
            }
            for t in transmits {
                self.send(id, t.to, t.message);
            }
            for e in events {
                self.on_event(p, e);
            }
        }
    }

    fn local(&self, p: usize) -> Millis {
        self.proposers[p].clock.local(self.now)
    }

    fn wake(&mut self, p: usize) {
        let local = self.local(p);
        match self.proposers[p].agent.clone() {
            Agent::Idle => {
                let resource = self.rng.random_range(0..self.resources.len());
                let ttl = Millis(self.range(self.sc.ttl_ms));
                let wait = Millis(self.rng.random_range(0..=3 * ttl.0));
                let node = &mut self.proposers[p];
                let lease = node.next_lease;
                node.next_lease += 1;
                let (name, permits) = self.resources[resource].clone();
                let input = Input::Acquire {
                    lease: LeaseId(lease),
                    resource: name,
                    ttl,
                    permits,
                    wait,
                };
                let machine = self.proposers[p].machine.as_mut().unwrap();
                machine.handle_input(local, input).unwrap();
                self.proposers[p].agent = Agent::Acquiring {
                    lease,
                    resource,
                    requested_us: self.now,
                };
                self.drain_proposer(p);
            }
            Agent::Holding {
                lease,
                grant,
                hold_until,
                renews,
                ttl,
            } => {
                let release = self.now >= hold_until || !renews;
                if release {
                    // The lease ends as the holder releases it.
                    let g = &mut self.grants[grant];
                    g.end_us = g.end_us.min(self.now);
                }
                let machine = self.proposers[p].machine.as_mut().unwrap();
                let input = if release {
                    Input::Release {
                        lease: LeaseId(lease),
                    }
                } else {
                    Input::Renew {
                        lease: LeaseId(lease),
                        ttl,
                    }
                };
                match machine.handle_input(local, input) {
                    Ok(()) | Err(concord_lease::LeaseError::RenewInProgress(_)) => {}
                    Err(e) => self.violations.push(format!("proposer {p}: {e}")),
                }
                self.drain_proposer(p);
            }
            Agent::Acquiring { .. } | Agent::Down => {}
        }
    }

    /// Wakes the holder at the end of its hold, or earlier to renew.
    fn schedule_holding_wake(&mut self, p: usize) {
        let Agent::Holding {
            lease,
            hold_until,
            renews,
            ttl,
            ..
        } = self.proposers[p].agent
        else {
            return;
        };
        let _ = ttl;
        let lead = self.range(self.sc.renew_lead_ms);
        let node = &self.proposers[p];
        let mut at = hold_until;
        if renews
            && let Some((_, valid_until)) =
                node.machine.as_ref().and_then(|m| m.held(LeaseId(lease)))
        {
            let renew_local = valid_until.saturating_sub(Millis(lead));
            at = at.min(node.clock.real_at(renew_local, self.now));
        }
        // Not more often than every 5ms, even if the lead exceeds the ttl.
        self.schedule_wake(p, at.max(self.now + 5 * MS));
    }

    fn on_event(&mut self, p: usize, event: Event) {
        let incarnation = self.proposers[p].incarnation;
        match event {
            Event::Acquired {
                lease,
                resource: _,
                token,
                valid_until,
            } => {
                let Agent::Acquiring {
                    lease: expected,
                    resource,
                    requested_us,
                } = self.proposers[p].agent
                else {
                    self.violations
                        .push(format!("proposer {p}: Acquired while not acquiring"));
                    return;
                };
                assert_eq!(lease.0, expected);
                let end_us = self.proposers[p].clock.real_at(valid_until, self.now);
                let grant = self.grants.len();
                self.grants.push(Grant {
                    resource,
                    permits: self.resources[resource].1.get(),
                    token: token.get(),
                    proposer: p,
                    incarnation,
                    lease: lease.0,
                    requested_us,
                    start_us: self.now,
                    end_us,
                });
                let hold = self.range(self.sc.hold_ms) * MS;
                let renews = self.rng.random_bool(self.sc.renew_prob);
                let ttl = Millis(self.range(self.sc.renew_ttl_ms));
                self.proposers[p].agent = Agent::Holding {
                    lease: lease.0,
                    grant,
                    hold_until: self.now + hold,
                    renews,
                    ttl,
                };
                self.schedule_holding_wake(p);
                if self.resources[resource].1 == Permits::MUTEX {
                    for _ in 0..self.rng.random_range(1..=3) {
                        let at = self.now + self.rng.random_range(0..=hold);
                        self.push(
                            at,
                            Ev::IssueWrite {
                                proposer: p,
                                incarnation,
                                lease: lease.0,
                                grant,
                            },
                        );
                    }
                }
            }
            Event::Renewed { valid_until, .. } => {
                self.stats.renewals += 1;
                if let Agent::Holding { grant, .. } = self.proposers[p].agent {
                    let end = self.proposers[p].clock.real_at(valid_until, self.now);
                    let g = &mut self.grants[grant];
                    g.end_us = g.end_us.max(end);
                }
                self.schedule_holding_wake(p);
            }
            Event::RenewFailed { .. } => {
                if let Agent::Holding { renews, .. } = &mut self.proposers[p].agent {
                    *renews = false;
                }
                self.schedule_holding_wake(p);
            }
            Event::Lost { .. } | Event::Denied { .. } | Event::Released { .. } => {
                match event {
                    Event::Lost { .. } => self.stats.lost += 1,
                    Event::Denied { .. } => self.stats.denied += 1,
                    _ => self.stats.released += 1,
                }
                if let (Event::Released { .. }, Agent::Holding { grant, .. }) =
                    (&event, &self.proposers[p].agent)
                {
                    let g = &mut self.grants[*grant];
                    g.end_us = g.end_us.min(self.now);
                }
                self.proposers[p].agent = Agent::Idle;
                let idle = self.range(self.sc.idle_ms) * MS;
                self.schedule_wake(p, self.now + idle);
            }
        }
    }

    fn issue_write(&mut self, p: usize, incarnation: u32, lease: u64, grant: usize) {
        let local = self.local(p);
        let node = &self.proposers[p];
        let holding = matches!(node.agent, Agent::Holding { lease: l, .. } if l == lease);
        let valid = node
            .machine
            .as_ref()
            .is_some_and(|m| m.is_valid(LeaseId(lease), local));
        if node.incarnation != incarnation || !holding || !valid {
            return;
        }
        let delay = if self.rng.random_bool(self.sc.pause_prob) {
            self.rng.random_range(MS..=self.sc.pause_max_ms * MS)
        } else {
            self.rng.random_range(100..=2 * MS)
        };
        let issued_us = self.now;
        self.push(self.now + delay, Ev::WriteArrives { grant, issued_us });
    }

    /// The model external system: accepts a write iff its token is at least
    /// the highest it has seen. The checker knows which writes are stale: a
    /// holder that started later already wrote.
    fn write_arrives(&mut self, grant: usize, issued_us: u64) {
        let g = self.grants[grant].clone();
        let (highest, latest_start) = &mut self.external[g.resource];
        let accepted = g.token >= *highest;
        let stale = *latest_start > g.start_us;
        if accepted {
            *highest = g.token;
            *latest_start = (*latest_start).max(g.start_us);
            self.stats.writes_accepted += 1;
        } else if stale {
            self.stats.stale_writes_rejected += 1;
        }
        if accepted && stale {
            self.violations.push(format!(
                "fencing: stale write of token {} (grant started {}us) accepted after a later holder wrote",
                g.token, g.start_us
            ));
        }
        if !accepted && !stale {
            self.violations.push(format!(
                "fencing: write of token {} (grant started {}us) rejected though no later holder wrote (highest {})",
                g.token, g.start_us, highest
            ));
        }
        self.writes.push(Write {
            resource: g.resource,
            token: g.token,
            grant,
            issued_us,
            arrived_us: self.now,
            accepted,
            stale,
        });
    }

    fn check(&mut self) {
        for r in 0..self.resources.len() {
            let permits = self.resources[r].1.get();
            let grants: Vec<&Grant> = self.grants.iter().filter(|g| g.resource == r).collect();
            // Overlap in real time: sweep over [start, end).
            let mut edges: Vec<(u64, i32, u64)> = Vec::new();
            for g in &grants {
                if g.end_us > g.start_us {
                    edges.push((g.start_us, 1, g.token));
                    edges.push((g.end_us, -1, g.token));
                }
            }
            edges.sort_by_key(|&(t, d, _)| (t, d)); // ends before starts
            let mut live = 0i32;
            for (t, d, token) in edges {
                live += d;
                if live > i32::try_from(permits).unwrap() {
                    self.violations.push(format!(
                        "overlap: resource {r} has {live} holders (permits {permits}) at {t}us (token {token})"
                    ));
                }
            }
            // Tokens unique per resource.
            let mut tokens: Vec<u64> = grants.iter().map(|g| g.token).collect();
            tokens.sort_unstable();
            if tokens.windows(2).any(|w| w[0] == w[1]) {
                self.violations
                    .push(format!("tokens: resource {r} handed out a token twice"));
            }
            // A grant requested after another was granted has a higher token.
            for a in &grants {
                for b in &grants {
                    if a.start_us < b.requested_us && b.token <= a.token {
                        self.violations.push(format!(
                            "tokens: resource {r}: token {} requested after token {} was granted",
                            b.token, a.token
                        ));
                    }
                }
            }
            // Mutex: tokens increase in the order of holding.
            if permits == 1 {
                let mut by_start = grants.clone();
                by_start.sort_by_key(|g| (g.start_us, g.token));
                if by_start.windows(2).any(|w| w[1].token <= w[0].token) {
                    self.violations.push(format!(
                        "tokens: mutex {r}: tokens do not increase in holding order"
                    ));
                }
            }
        }
    }
}
