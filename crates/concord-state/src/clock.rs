//! Vector clocks: actor -> highest change sequence number held.
//!
//! Because a replica applies a change only after its dependencies and each
//! actor's changes form a chain, a vector clock names exactly the set of
//! changes a replica holds. It is the summary peers exchange, the cursor for
//! "changes since", and the happened-before test between two events. This
//! module owns the clock arithmetic only; it never touches a document.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use automerge::ActorId;

/// How two vector clocks (or the events they describe) relate causally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// Identical clocks.
    Equal,
    /// `self` happened before `other` (`other` has seen everything `self` has, and more).
    Before,
    /// `self` happened after `other`.
    After,
    /// Neither has seen all of the other.
    Concurrent,
}

/// A vector clock. Actors absent from the map count as sequence 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VectorClock {
    entries: BTreeMap<ActorId, u64>,
}

impl VectorClock {
    /// The empty clock (has seen nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Highest sequence number of `actor` covered by this clock (0 if none).
    pub fn get(&self, actor: &ActorId) -> u64 {
        self.entries.get(actor).copied().unwrap_or(0)
    }

    /// Raises `actor`'s entry to `seq` if it is higher.
    pub fn observe(&mut self, actor: &ActorId, seq: u64) {
        if seq == 0 {
            return;
        }
        match self.entries.get_mut(actor) {
            Some(s) => *s = (*s).max(seq),
            None => {
                self.entries.insert(actor.clone(), seq);
            }
        }
    }

    /// Whether the change `(actor, seq)` is covered by this clock.
    pub fn contains(&self, actor: &ActorId, seq: u64) -> bool {
        self.get(actor) >= seq
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VectorClock) {
        for (actor, seq) in &other.entries {
            self.observe(actor, *seq);
        }
    }

    /// Number of actors with a non-zero entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the clock has seen nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (&ActorId, u64)> {
        self.entries.iter().map(|(a, s)| (a, *s))
    }

    /// Sum of all entries: the number of changes this clock covers.
    pub fn total(&self) -> u64 {
        self.entries.values().sum()
    }

    /// The causal relation between `self` and `other`.
    pub fn compare(&self, other: &VectorClock) -> Causality {
        let mut less = false;
        let mut greater = false;
        for (actor, &mine) in &self.entries {
            match mine.cmp(&other.get(actor)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
        }
        for (actor, &theirs) in &other.entries {
            if !self.entries.contains_key(actor) && theirs > 0 {
                less = true;
            }
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }
}

impl FromIterator<(ActorId, u64)> for VectorClock {
    fn from_iter<T: IntoIterator<Item = (ActorId, u64)>>(iter: T) -> Self {
        let mut clock = VectorClock::new();
        for (actor, seq) in iter {
            clock.observe(&actor, seq);
        }
        clock
    }
}

impl fmt::Display for VectorClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (actor, seq)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let hex = actor.to_hex_string();
            write!(f, "{}:{seq}", &hex[..hex.len().min(8)])?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn actor(n: u8) -> ActorId {
        ActorId::from(&[n][..])
    }

    fn clock(entries: &[(u8, u64)]) -> VectorClock {
        entries.iter().map(|&(a, s)| (actor(a), s)).collect()
    }

    #[test]
    fn compare_cases() {
        assert_eq!(
            clock(&[(1, 2)]).compare(&clock(&[(1, 2)])),
            Causality::Equal
        );
        assert_eq!(
            clock(&[(1, 1)]).compare(&clock(&[(1, 2)])),
            Causality::Before
        );
        assert_eq!(
            clock(&[(1, 2), (2, 1)]).compare(&clock(&[(1, 2)])),
            Causality::After
        );
        assert_eq!(
            clock(&[(1, 2)]).compare(&clock(&[(2, 1)])),
            Causality::Concurrent
        );
        assert_eq!(
            VectorClock::new().compare(&clock(&[(1, 0)])),
            Causality::Equal
        );
    }

    proptest! {
        #[test]
        fn merge_is_an_upper_bound(a in proptest::collection::vec((0u8..5, 0u64..10), 0..6),
                                   b in proptest::collection::vec((0u8..5, 0u64..10), 0..6)) {
            let (a, b) = (clock(&a), clock(&b));
            let mut m = a.clone();
            m.merge(&b);
            prop_assert!(matches!(a.compare(&m), Causality::Before | Causality::Equal));
            prop_assert!(matches!(b.compare(&m), Causality::Before | Causality::Equal));
            let flipped = match b.compare(&a) {
                Causality::Before => Causality::After,
                Causality::After => Causality::Before,
                c => c,
            };
            prop_assert_eq!(a.compare(&b), flipped);
        }
    }
}
