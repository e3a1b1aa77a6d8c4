//! The virtual network: the gossip mesh, per-link latency, loss, duplication,
//! partitions and disconnected nodes, and the gossip de-duplication cache.
//!
//! It owns the decision of *whether and when* a message arrives; it draws
//! every random number from the RNG it is handed. It must never touch a node
//! or an engine, and never read a clock.

use std::collections::{BTreeSet, VecDeque};

use rand::Rng;
use rand::seq::IndexedRandom;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ids::IdSet;
use crate::node::NodeId;
use crate::scenario::LinkParams;

/// The gossip mesh: an undirected, connected graph where each node has about
/// D neighbours. Engines only ever see their mesh neighbours as peers.
#[derive(Debug, Clone)]
pub struct Mesh {
    adjacency: Vec<Vec<NodeId>>,
}

impl Mesh {
    /// A random connected graph on `n` nodes with degree close to `d`: a
    /// shuffled ring (for connectivity) plus random chords until every node
    /// has `d` neighbours or no eligible partner is left. With `n <= d + 1`
    /// it is the complete graph.
    pub fn build(n: usize, d: usize, rng: &mut ChaCha8Rng) -> Mesh {
        let mut adj: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); n];
        let link = |adj: &mut Vec<BTreeSet<u32>>, a: u32, b: u32| {
            if a != b {
                adj[a as usize].insert(b);
                adj[b as usize].insert(a);
            }
        };
        if n <= d + 1 {
            for a in 0..n as u32 {
                for b in a + 1..n as u32 {
                    link(&mut adj, a, b);
                }
            }
        } else {
            let mut ring: Vec<u32> = (0..n as u32).collect();
            ring.shuffle(rng);
            for i in 0..n {
                link(&mut adj, ring[i], ring[(i + 1) % n]);
            }
            for a in 0..n as u32 {
                while adj[a as usize].len() < d {
                    let eligible: Vec<u32> = (0..n as u32)
                        .filter(|&b| {
                            b != a && adj[b as usize].len() < d && !adj[a as usize].contains(&b)
                        })
                        .collect();
                    match eligible.choose(rng) {
                        Some(&b) => link(&mut adj, a, b),
                        None => break,
                    }
                }
            }
        }
        Mesh {
            adjacency: adj
                .into_iter()
                .map(|s| s.into_iter().map(NodeId).collect())
                .collect(),
        }
    }

    /// A node's neighbours, in id order.
    pub fn neighbours(&self, node: NodeId) -> &[NodeId] {
        self.adjacency
            .get(node.index())
            .map_or(&[][..], Vec::as_slice)
    }

    /// Longest shortest path (in hops) between two nodes: the gossip rounds
    /// needed to reach everyone from the worst origin without loss. `None`
    /// if the graph is not connected.
    pub fn diameter(&self) -> Option<u32> {
        let n = self.adjacency.len();
        let mut worst = 0;
        let mut dist = vec![u32::MAX; n];
        let mut queue = VecDeque::new();
        for source in 0..n {
            dist.fill(u32::MAX);
            dist[source] = 0;
            queue.push_back(source);
            while let Some(a) = queue.pop_front() {
                for b in &self.adjacency[a] {
                    if dist[b.index()] == u32::MAX {
                        dist[b.index()] = dist[a] + 1;
                        worst = worst.max(dist[b.index()]);
                        queue.push_back(b.index());
                    }
                }
            }
            if dist.contains(&u32::MAX) {
                return None;
            }
        }
        Some(worst)
    }
}

/// Why a message did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// Random loss.
    Loss,
    /// Sender and receiver are in different partition groups.
    Partition,
    /// Sender or receiver is disconnected.
    Offline,
    /// The receiver is crashed.
    Down,
    /// The receiver is paused and its inbox is full.
    InboxFull,
}

/// Partitions, disconnections and link parameters.
#[derive(Debug)]
pub struct Network {
    params: LinkParams,
    latency_seed: u64,
    groups: Vec<u32>,
    offline: Vec<bool>,
    /// The gossip mesh.
    pub mesh: Mesh,
}

impl Network {
    /// A healed network of `n` nodes over `mesh`.
    pub fn new(params: LinkParams, latency_seed: u64, mesh: Mesh, n: usize) -> Network {
        Network {
            params,
            latency_seed,
            groups: vec![0; n],
            offline: vec![false; n],
            mesh,
        }
    }

    /// Replaces the link parameters.
    pub fn set_params(&mut self, params: LinkParams) {
        self.params = params;
    }

    /// Splits the nodes into `groups` (nodes not listed join group 0).
    pub fn partition(&mut self, groups: &[Vec<u32>]) {
        self.groups.fill(0);
        for (g, members) in groups.iter().enumerate() {
            for &m in members {
                if let Some(slot) = self.groups.get_mut(m as usize) {
                    *slot = g as u32;
                }
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.groups.fill(0);
    }

    /// Marks a node disconnected (or back).
    pub fn set_offline(&mut self, node: NodeId, offline: bool) {
        if let Some(slot) = self.offline.get_mut(node.index()) {
            *slot = offline;
        }
    }

    /// Whether `node` is disconnected.
    pub fn is_offline(&self, node: NodeId) -> bool {
        self.offline.get(node.index()).copied().unwrap_or(false)
    }

    /// Whether a message from `a` can reach `b` right now.
    pub fn blocked(&self, a: NodeId, b: NodeId) -> Option<DropReason> {
        if self.is_offline(a) || self.is_offline(b) {
            Some(DropReason::Offline)
        } else if self.groups.get(a.index()) != self.groups.get(b.index()) {
            Some(DropReason::Partition)
        } else {
            None
        }
    }

    /// Decides the fate of one message from `a` to `b`: dropped, or the
    /// delays (one, or two when duplicated) after which copies arrive.
    pub fn transmit(
        &self,
        rng: &mut ChaCha8Rng,
        a: NodeId,
        b: NodeId,
    ) -> Result<Vec<u64>, DropReason> {
        if let Some(reason) = self.blocked(a, b) {
            return Err(reason);
        }
        let p = &self.params;
        if p.loss_ppm > 0 && rng.random_range(0..1_000_000) < p.loss_ppm {
            return Err(DropReason::Loss);
        }
        let copies = if p.dup_ppm > 0 && rng.random_range(0..1_000_000) < p.dup_ppm {
            2
        } else {
            1
        };
        let base = self.base_latency(a, b);
        Ok((0..copies)
            .map(|_| base + rng.random_range(0..=p.jitter_ms))
            .collect())
    }

    /// The fixed base latency of the (undirected) link between `a` and `b`.
    fn base_latency(&self, a: NodeId, b: NodeId) -> u64 {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let key = self.latency_seed ^ (u64::from(lo.0) << 32 | u64::from(hi.0));
        let span = self
            .params
            .latency_max_ms
            .saturating_sub(self.params.latency_min_ms)
            + 1;
        self.params.latency_min_ms + splitmix64(key) % span
    }
}

/// SplitMix64: a cheap, good 64-bit mixer.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_4765_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Identifies a gossip message: the first 128 bits of the SHA-256 of its bytes.
pub fn message_id(bytes: &[u8]) -> u128 {
    let digest = Sha256::digest(bytes);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(id)
}

/// A bounded set of recently seen gossip message ids (oldest forgotten first).
#[derive(Debug)]
pub struct SeenCache {
    capacity: usize,
    order: VecDeque<u128>,
    set: IdSet<u128>,
}

impl SeenCache {
    /// An empty cache holding at most `capacity` ids.
    pub fn new(capacity: usize) -> SeenCache {
        SeenCache {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            set: IdSet::default(),
        }
    }

    /// Records `id`; returns whether it was new.
    pub fn insert(&mut self, id: u128) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    /// Forgets everything (a restarted process).
    pub fn clear(&mut self) {
        self.order.clear();
        self.set.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::stream_rng;

    #[test]
    fn mesh_is_connected_and_near_regular() {
        for n in [1, 2, 5, 7, 50, 300] {
            let mesh = Mesh::build(n, 6, &mut stream_rng(9, 1));
            for a in 0..n as u32 {
                let deg = mesh.neighbours(NodeId(a)).len();
                assert!(deg <= 6 || n <= 7, "n={n} deg={deg}");
                assert!(deg >= (n - 1).min(2), "n={n} deg={deg}");
            }
            let diameter = mesh.diameter().expect("connected");
            assert!(diameter < n.max(1) as u32);
        }
    }

    #[test]
    fn seen_cache_is_bounded() {
        let mut c = SeenCache::new(3);
        assert!(c.insert(1) && c.insert(2) && c.insert(3));
        assert!(!c.insert(1));
        assert!(c.insert(4));
        assert!(c.insert(1), "oldest was forgotten");
        assert_eq!(c.order.len(), 3);
    }
}
