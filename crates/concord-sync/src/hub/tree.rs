//! The summary tree of the spaces a hub shares with one peer: space keys,
//! leaf hashes, and the buckets (hex-digit prefixes of keys) between them.
//!
//! A space's **key** is the first 8 bytes of the SHA-256 of its name; its
//! **leaf** is a 16-byte hash of its key, its epoch and its heads, so two
//! replicas of a space have equal leaves exactly when they are in sync. A
//! bucket's hash is the XOR of the leaves under it, so the root's hash
//! summarises every shared space in 16 bytes and moves by one XOR when one
//! space changes. XOR of cryptographic leaves is a set hash that a peer
//! could steer on purpose only to hide its own differences from itself.
//!
//! This module owns those computations. It never sends anything and never
//! touches a replica beyond reading its epoch and heads.

use std::collections::BTreeSet;

use concord_state::Replica;
use sha2::{Digest, Sha256};

use crate::wire::{Child, Prefix, TREE_FANOUT, TreeHash};

/// A space's key in node-level frames (see [`space_key`]).
pub type SpaceKey = u64;

/// The key of the space named `name`: the first 8 bytes of its SHA-256,
/// big-endian. Node-level frames name spaces by their keys.
pub fn space_key(name: &str) -> SpaceKey {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// The leaf of a space: 16 bytes of the SHA-256 of its key, its epoch id
/// and its heads (sorted, as automerge gives them).
pub(super) fn leaf(key: SpaceKey, replica: &Replica) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(key.to_be_bytes());
    hasher.update(replica.epoch().id.0.0);
    for head in replica.heads() {
        hasher.update(head.0);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// A hash as it travels.
pub(super) fn wire_hash(hash: u128) -> TreeHash {
    hash.to_be_bytes()
}

/// A hash as it is combined.
pub(super) fn from_wire(hash: TreeHash) -> u128 {
    u128::from_be_bytes(hash)
}

/// Each child of a bucket as (hash, spaces); an empty child is (0, 0).
pub(super) type Children = [(u128, u64); TREE_FANOUT];

/// The shared spaces under `prefix`, in key order.
pub(super) fn keys_under(
    shared: &BTreeSet<SpaceKey>,
    prefix: Prefix,
) -> impl Iterator<Item = SpaceKey> + '_ {
    shared.range(prefix.first()..=prefix.last()).copied()
}

/// The children of `prefix` (above the leaves' depth) over the shared spaces,
/// whose leaves `leaf_of` gives.
pub(super) fn children(
    shared: &BTreeSet<SpaceKey>,
    prefix: Prefix,
    leaf_of: impl Fn(SpaceKey) -> u128,
) -> Children {
    let mut out = [(0u128, 0u64); TREE_FANOUT];
    for key in keys_under(shared, prefix) {
        if let Some(slot) = prefix
            .child_index(key)
            .and_then(|i| out.get_mut(usize::from(i)))
        {
            slot.0 ^= leaf_of(key);
            slot.1 += 1;
        }
    }
    out
}

/// The children as a bucket node carries them: the non-empty ones.
pub(super) fn to_wire(children: &Children) -> Vec<Child> {
    (0u8..)
        .zip(children.iter())
        .filter(|(_, (_, spaces))| *spaces > 0)
        .map(|(index, (hash, spaces))| Child {
            index,
            spaces: *spaces,
            hash: wire_hash(*hash),
        })
        .collect()
}

/// A bucket node's children, back in the shape [`children`] gives.
pub(super) fn from_wire_children(children: &[Child]) -> Children {
    let mut out = [(0u128, 0u64); TREE_FANOUT];
    for c in children {
        if let Some(slot) = out.get_mut(usize::from(c.index)) {
            *slot = (from_wire(c.hash), c.spaces);
        }
    }
    out
}

/// The XOR of the leaves of `keys`.
pub(super) fn fold(
    keys: impl Iterator<Item = SpaceKey>,
    leaf_of: impl Fn(SpaceKey) -> u128,
) -> u128 {
    keys.fold(0, |acc, key| acc ^ leaf_of(key))
}
