//! Hash sets of ids that are already cryptographic hashes (gossip message
//! ids, automerge change hashes). They are hashed by folding their bits
//! rather than by SipHash, which would only spend time: the ids are
//! uniformly distributed, and nobody picks them to collide. The sets'
//! iteration order never reaches the output.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// A set of hash-like ids.
pub type IdSet<T> = HashSet<T, BuildHasherDefault<FoldHasher>>;

/// Folds the bytes it is fed into one word, eight at a time.
#[derive(Debug, Default)]
pub struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_of_ids_work_as_sets() {
        let mut set = IdSet::default();
        assert!(set.insert(7u128 << 100 | 3));
        assert!(set.insert(3));
        assert!(!set.insert(3));
        assert!(set.contains(&(7u128 << 100 | 3)));
        assert!(!set.contains(&7));
    }
}
