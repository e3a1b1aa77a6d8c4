//! The hub's side of one peer: the peer's list of spaces, the spaces the
//! two share and their summary, and the node-level frames that keep both
//! views equal (lists, summaries) and find the spaces that differ (buckets,
//! leaves). See the [parent module](super) for the protocol.
//!
//! This module owns the per-peer state and the handling of node-level
//! frames. It never reads a replica beyond its leaf and never decides
//! anything about a single space: a space found different is handed to its
//! engine.

use std::collections::BTreeSet;
use std::fmt::Debug;

use concord_state::Millis;
use tracing::trace;

use super::tree::{self, SpaceKey};
use super::{LEAF_SPACES, SyncHub};
use crate::engine::{Input, ProtocolError, SyncEvent};
use crate::wire::{BucketNode, NodeFrame, Prefix, Summary, TREE_DEPTH, TreeHash};

/// What the hub knows of one peer.
pub(super) struct Peer {
    /// The peer's latest list of spaces: its version and its keys (sorted).
    listed: Option<(u64, Vec<SpaceKey>)>,
    /// Spaces open here, allowed to the peer and in its list.
    pub(super) shared: BTreeSet<SpaceKey>,
    /// XOR of the leaves of `shared`.
    root: u128,
    /// When this node sends its next summary to the peer.
    pub(super) next_summary: Millis,
    /// The version of this node's list last sent to the peer, and when.
    sent: Option<(u64, Millis)>,
}

impl Peer {
    pub(super) fn new(next_summary: Millis) -> Peer {
        Peer {
            listed: None,
            shared: BTreeSet::new(),
            root: 0,
            next_summary,
            sent: None,
        }
    }

    /// The version of the peer's list held here (0: none).
    pub(super) fn listed_version(&self) -> u64 {
        self.listed.as_ref().map_or(0, |(v, _)| *v)
    }

    fn lists(&self, key: SpaceKey) -> bool {
        self.listed
            .as_ref()
            .is_some_and(|(_, keys)| keys.binary_search(&key).is_ok())
    }
}

/// What answering one frame of a descent produced.
#[derive(Default)]
struct Descent {
    /// Spaces to hand to their engines.
    probes: Vec<SpaceKey>,
    /// Buckets to answer with their children.
    nodes: Vec<BucketNode>,
    /// Leaves of small buckets.
    leaves: Vec<(SpaceKey, TreeHash)>,
}

impl<P: Clone + Ord + Debug> SyncHub<P> {
    /// Sends `peer` this node's list of the spaces it may see.
    pub(super) fn send_list(&mut self, peer: &P) {
        let keys: Vec<SpaceKey> = self
            .spaces
            .iter()
            .filter(|(_, s)| s.allows(peer))
            .map(|(key, _)| *key)
            .collect();
        if let Some(p) = self.peers.get_mut(peer) {
            p.sent = Some((self.version, self.now));
        }
        self.stats.lists_sent += 1;
        let frame = NodeFrame::Spaces {
            version: self.version,
            keys,
        };
        self.send_node(peer, &frame);
    }

    /// Sends the current list to every peer that lacks it.
    pub(super) fn announce(&mut self) {
        let version = self.version;
        let stale: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, p)| p.sent.is_none_or(|(v, _)| v != version))
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in stale {
            self.send_list(&peer);
        }
    }

    /// Sends `peer` a summary of the spaces the two share.
    pub(super) fn send_summary(&mut self, peer: &P, reply: bool) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        let frame = NodeFrame::Summary(Summary {
            version: self.version,
            known: p.listed_version(),
            spaces: p.shared.len() as u64,
            root: tree::wire_hash(p.root),
            reply,
        });
        self.stats.summaries_sent += 1;
        self.send_node(peer, &frame);
    }

    /// A space just opened: shares it with the peers whose lists hold it.
    pub(super) fn share(&mut self, key: SpaceKey) {
        let Some(space) = self.spaces.get(&key) else {
            return;
        };
        let leaf = space.leaf;
        let mut joined = Vec::new();
        for (peer, p) in &mut self.peers {
            if p.lists(key) && space.allows(peer) && p.shared.insert(key) {
                p.root ^= leaf;
                joined.push(peer.clone());
            }
        }
        for peer in joined {
            self.feed(key, Input::PeerUp(peer));
        }
    }

    /// A space just closed: no peer shares it any more.
    pub(super) fn unshare(&mut self, key: SpaceKey, leaf: u128) {
        for p in self.peers.values_mut() {
            if p.shared.remove(&key) {
                p.root ^= leaf;
            }
        }
    }

    /// A space's leaf moved by `delta`: so do the summaries sharing it.
    pub(super) fn leaf_changed(&mut self, key: SpaceKey, delta: u128) {
        for p in self.peers.values_mut() {
            if p.shared.contains(&key) {
                p.root ^= delta;
            }
        }
    }

    pub(super) fn on_node_frame(&mut self, from: P, frame: NodeFrame) {
        trace!(?from, kind = ?frame.kind(), "node-level frame");
        match frame {
            NodeFrame::Spaces { version, keys } => self.on_spaces(from, version, keys),
            NodeFrame::Summary(summary) => self.on_summary(from, summary),
            NodeFrame::Buckets { nodes } => self.on_buckets(from, &nodes),
            NodeFrame::Leaves { leaves } => self.on_leaves(from, &leaves),
        }
    }

    /// The peer's list: the spaces shared with it are recomputed (engines
    /// see the peer come and go) and a summary goes out at once, so that a
    /// difference is found without waiting for the heartbeat.
    fn on_spaces(&mut self, from: P, version: u64, keys: Vec<SpaceKey>) {
        let spaces = &self.spaces;
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        let shared: BTreeSet<SpaceKey> = keys
            .iter()
            .copied()
            .filter(|key| spaces.get(key).is_some_and(|s| s.allows(&from)))
            .collect();
        p.listed = Some((version, keys));
        let joined: Vec<SpaceKey> = shared.difference(&p.shared).copied().collect();
        let left: Vec<SpaceKey> = p.shared.difference(&shared).copied().collect();
        p.root = tree::fold(shared.iter().copied(), |k| {
            spaces.get(&k).map_or(0, |s| s.leaf)
        });
        p.shared = shared;
        for key in joined {
            self.feed(key, Input::PeerUp(from.clone()));
        }
        for key in left {
            self.feed(key, Input::PeerDown(from.clone()));
        }
        self.send_summary(&from, false);
    }

    /// A peer's summary.
    fn on_summary(&mut self, from: P, summary: Summary) {
        let Summary {
            version: theirs,
            known,
            spaces,
            root,
            reply,
        } = summary;
        let (now, version) = (self.now, self.version);
        let heartbeat = self.config.heartbeat_ms;
        let Some(p) = self.peers.get(&from) else {
            return;
        };
        // The peer lacks this node's current list: send it, at once if it
        // never went out, else at most once per heartbeat (it was lost).
        let resend = match p.sent {
            Some((v, at)) if v == version => at.plus(heartbeat) <= now,
            _ => true,
        };
        let held = p.listed_version() == theirs;
        if known != version && resend {
            self.send_list(&from);
        }
        if !held {
            // Tell the peer which of its lists this node holds, so that it
            // sends the current one.
            if !reply {
                self.send_summary(&from, true);
            }
            return;
        }
        if known != version {
            return;
        }
        let next = self.next_heartbeat();
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        let listed = p.listed.as_ref().map_or(0, |(_, keys)| keys.len());
        if spaces > listed as u64 {
            let error = ProtocolError::Node("summary counts more spaces than the peer listed");
            return self.refuse(from, error);
        }
        // The peer's summary stands for this node's own this round.
        p.next_summary = next;
        if spaces == p.shared.len() as u64 && tree::from_wire(root) == p.root {
            self.stats.summaries_matched += 1;
            return self.push_event(None, SyncEvent::InSync(from));
        }
        self.stats.descents += 1;
        let mut out = Descent::default();
        self.differing(&from, Prefix::ROOT, &mut out);
        self.send_descent(&from, out);
    }

    /// The peer's view of buckets that differed: the children that differ
    /// from this node's are answered.
    fn on_buckets(&mut self, from: P, nodes: &[BucketNode]) {
        let mut out = Descent::default();
        for node in nodes {
            let theirs = tree::from_wire_children(&node.children);
            let mine = self.children(&from, node.prefix);
            for ((index, mine), theirs) in (0u8..).zip(mine).zip(theirs) {
                if mine != theirs
                    && let Some(child) = node.prefix.child(index)
                {
                    self.differing(&from, child, &mut out);
                }
            }
        }
        self.send_descent(&from, out);
    }

    /// The peer's leaves of small differing buckets: shared spaces whose
    /// leaves differ go to their engines.
    fn on_leaves(&mut self, from: P, leaves: &[(SpaceKey, TreeHash)]) {
        let Some(p) = self.peers.get(&from) else {
            return;
        };
        let probes = leaves
            .iter()
            .filter(|(key, hash)| {
                p.shared.contains(key)
                    && self
                        .spaces
                        .get(key)
                        .is_some_and(|s| s.leaf != tree::from_wire(*hash))
            })
            .map(|(key, _)| *key)
            .collect();
        self.send_descent(
            &from,
            Descent {
                probes,
                ..Descent::default()
            },
        );
    }

    /// This node's answer for a bucket known to differ: nothing if it
    /// shares no space there, the space itself if one, its leaves if few,
    /// else its children.
    fn differing(&self, peer: &P, prefix: Prefix, out: &mut Descent) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        let keys: Vec<SpaceKey> = tree::keys_under(&p.shared, prefix).collect();
        match keys.as_slice() {
            [] => {}
            [one] => out.probes.push(*one),
            _ if keys.len() <= LEAF_SPACES || prefix.depth() >= TREE_DEPTH => {
                out.leaves.extend(
                    keys.iter()
                        .map(|key| (*key, tree::wire_hash(self.leaf_of(*key)))),
                );
            }
            _ => out.nodes.push(BucketNode {
                prefix,
                children: tree::to_wire(&self.children(peer, prefix)),
            }),
        }
    }

    fn children(&self, peer: &P, prefix: Prefix) -> tree::Children {
        let empty = BTreeSet::new();
        let shared = self.peers.get(peer).map_or(&empty, |p| &p.shared);
        tree::children(shared, prefix, |key| self.leaf_of(key))
    }

    fn leaf_of(&self, key: SpaceKey) -> u128 {
        self.spaces.get(&key).map_or(0, |s| s.leaf)
    }

    fn send_descent(&mut self, to: &P, mut out: Descent) {
        self.stats.probes += out.probes.len() as u64;
        for key in out.probes {
            self.feed(key, Input::Differs(to.clone()));
        }
        out.nodes.sort_by_key(|n| n.prefix);
        out.leaves.sort_by_key(|(key, _)| *key);
        out.leaves.dedup_by_key(|(key, _)| *key);
        let frames = crate::wire::chunk_buckets(out.nodes)
            .into_iter()
            .chain(crate::wire::chunk_leaves(out.leaves));
        for frame in frames {
            self.send_node(to, &frame);
        }
    }
}
