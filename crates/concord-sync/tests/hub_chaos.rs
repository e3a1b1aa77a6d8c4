//! Sync hubs over a hostile in-memory network: three nodes holding
//! overlapping sets of spaces, writes to random spaces (some cutting
//! epochs), frames lost, duplicated and reordered, a node disconnecting and
//! coming back, a space opened late. Once the network heals, every space
//! two nodes share converges, and then they exchange only summaries.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use concord_state::{ActorId, EpochConfig, Millis, Replica, ReplicaConfig};
use concord_sync::wire::FrameKind;
use concord_sync::{Destination, HubInput, SyncConfig, SyncHub};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Hub = SyncHub<u8>;

/// Spaces 0..40: node 0 holds 0..30, node 1 holds 10..40, node 2 every
/// fourth one; a space with an index divisible by 5 cuts an epoch every 8
/// changes.
fn holds(node: u8, space: usize) -> bool {
    match node {
        0 => space < 30,
        1 => space >= 10,
        _ => space.is_multiple_of(4),
    }
}

fn replica(node: u8, space: usize) -> Replica {
    let config = ReplicaConfig {
        epochs: EpochConfig {
            max_changes: if space.is_multiple_of(5) { 8 } else { u64::MAX },
            ..EpochConfig::default()
        },
        ..ReplicaConfig::default()
    };
    Replica::with_config(
        &format!("s{space}"),
        ActorId::from(&[node + 1; 16][..]),
        config,
    )
}

/// A frame on its way: when it arrives, from whom, to whom.
struct InFlight {
    at: u64,
    from: u8,
    to: u8,
    bytes: Vec<u8>,
}

struct World {
    hubs: Vec<Hub>,
    now: u64,
    rng: ChaCha8Rng,
    flight: Vec<InFlight>,
    /// Loss and duplication, in percent.
    loss: u32,
    dup: u32,
    /// Frames sent since the last look, by kind.
    kinds: BTreeMap<Option<u8>, usize>,
    up: [bool; 3],
}

impl World {
    fn new(seed: u64) -> World {
        let config = SyncConfig {
            cut_jitter_ms: 50,
            ..SyncConfig::default()
        };
        let hubs = (0..3u8)
            .map(|node| {
                let mut hub = SyncHub::new(config.clone(), seed + u64::from(node));
                for space in (0..40).filter(|s| holds(node, *s) && *s != 39) {
                    hub.open_space(Millis(0), replica(node, space), None)
                        .unwrap();
                }
                hub
            })
            .collect();
        World {
            hubs,
            now: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            flight: Vec::new(),
            loss: 0,
            dup: 0,
            kinds: BTreeMap::new(),
            up: [true; 3],
        }
    }

    fn link(&mut self, a: u8, b: u8, up: bool) {
        for (x, y) in [(a, b), (b, a)] {
            let input = if up {
                HubInput::PeerUp(y)
            } else {
                HubInput::PeerDown(y)
            };
            self.hubs[usize::from(x)].handle_input(Millis(self.now), input);
        }
    }

    fn connected(&self, a: u8, b: u8) -> bool {
        self.up[usize::from(a)] && self.up[usize::from(b)]
    }

    /// Takes every hub's transmits into the air, with loss, duplication
    /// and a random delay (so reordering).
    fn send(&mut self) {
        for from in 0..3u8 {
            while let Some(t) = self.hubs[usize::from(from)].poll_transmit() {
                *self.kinds.entry(t.bytes.get(1).copied()).or_default() += 1;
                let to: Vec<u8> = match t.to {
                    Destination::Peer(p) => vec![p],
                    Destination::Broadcast => (0..3).filter(|p| *p != from).collect(),
                };
                let to: Vec<u8> = to
                    .into_iter()
                    .filter(|to| self.connected(from, *to))
                    .collect();
                for to in to {
                    if self.rng.random_range(0..100) < self.loss {
                        continue;
                    }
                    let copies = if self.rng.random_range(0..100) < self.dup {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let at = self.now + self.rng.random_range(1..30);
                        let bytes = t.bytes.clone();
                        self.flight.push(InFlight {
                            at,
                            from,
                            to,
                            bytes,
                        });
                    }
                }
            }
        }
    }

    /// Runs until `end`: frames arrive, timers fire, and every 40 ms a
    /// random node writes to a random space it holds while `writing`.
    fn run(&mut self, end: u64, writing: bool) {
        while self.now < end {
            self.send();
            let timers = self
                .hubs
                .iter()
                .filter_map(|h| h.poll_timeout().map(|t| t.0));
            let arrivals = self.flight.iter().map(|f| f.at);
            let next_write = writing.then_some((self.now / 40 + 1) * 40);
            let next = timers
                .chain(arrivals)
                .chain(next_write)
                .min()
                .unwrap_or(end);
            self.now = self.now.max(next).min(end);
            let now = Millis(self.now);
            let (due, later): (Vec<InFlight>, Vec<InFlight>) =
                self.flight.drain(..).partition(|f| f.at <= self.now);
            self.flight = later;
            let up = self.up;
            for f in due
                .into_iter()
                .filter(|f| up[usize::from(f.from)] && up[usize::from(f.to)])
            {
                let input = HubInput::Frame {
                    from: f.from,
                    bytes: f.bytes,
                };
                self.hubs[usize::from(f.to)].handle_input(now, input);
            }
            for hub in &mut self.hubs {
                if hub.poll_timeout().is_some_and(|t| t <= now) {
                    hub.handle_input(now, HubInput::Tick);
                }
            }
            if writing && self.now.is_multiple_of(40) {
                self.write();
            }
        }
    }

    fn write(&mut self) {
        let node = self.rng.random_range(0..3usize);
        let spaces: Vec<String> = self.hubs[node].spaces().map(str::to_owned).collect();
        let space = spaces[self.rng.random_range(0..spaces.len())].clone();
        let now = Millis(self.now);
        let value = self.rng.random_range(0..1_000u64);
        let path = format!("observation/k{}", value % 7);
        let replica = self.hubs[node].replica_mut(&space).unwrap();
        replica.put(now, path.as_str(), &value).unwrap();
        self.hubs[node].handle_input(now, HubInput::LocalCommit { space });
    }

    /// Spaces two running nodes share whose replicas differ.
    fn diverged(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (a, b) in [(0u8, 1u8), (0, 2), (1, 2)] {
            if !self.connected(a, b) {
                continue;
            }
            let (ha, hb) = (&self.hubs[usize::from(a)], &self.hubs[usize::from(b)]);
            for space in ha.spaces() {
                if let (Some(x), Some(y)) = (ha.replica(space), hb.replica(space))
                    && (x.epoch().id != y.epoch().id || x.heads() != y.heads())
                {
                    out.push(format!("{space} on {a} and {b}"));
                }
            }
        }
        out
    }
}

#[test]
fn shared_spaces_converge_over_a_hostile_network() {
    for seed in 1..=5 {
        let mut w = World::new(seed);
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            w.link(a, b, true);
        }
        (w.loss, w.dup) = (25, 10);
        w.run(4_000, true);
        // Node 2 drops off for a while; everyone keeps writing.
        w.link(2, 0, false);
        w.link(2, 1, false);
        w.up[2] = false;
        w.run(7_000, true);
        w.up[2] = true;
        w.link(2, 0, true);
        w.link(2, 1, true);
        // A space opened late by node 1 (node 0 never holds it).
        let late = replica(1, 39);
        w.hubs[1].open_space(Millis(w.now), late, None).unwrap();
        w.run(10_000, true);
        // Heal: no more loss, no more writes; summaries find what is left.
        (w.loss, w.dup) = (0, 0);
        w.run(16_000, false);
        assert_eq!(w.diverged(), Vec::<String>::new(), "seed {seed}");
        let switched = (0..40)
            .filter(|s: &usize| s.is_multiple_of(5))
            .filter_map(|s| w.hubs[0].replica(&format!("s{s}")))
            .filter(|r| r.epoch().number > 0)
            .count();
        assert!(switched > 0, "some spaces cut epochs");
        assert_eq!(w.hubs[0].shared_with(&1), 20);
        assert_eq!(w.hubs[1].shared_with(&2), 7);
        // Converged: from now on only summaries travel.
        w.kinds.clear();
        w.run(26_000, false);
        let kinds: Vec<_> = w.kinds.keys().copied().collect();
        assert_eq!(kinds, vec![Some(FrameKind::Summary.code())], "seed {seed}");
    }
}
