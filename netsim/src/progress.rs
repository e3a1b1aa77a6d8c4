//! Convergence progress over virtual time: how many live nodes hold every
//! change that exists on any live node, and since when all of them do.
//!
//! A node's vector clock names exactly the changes it holds, and it is below
//! the union of all live clocks, so a node is complete when its clock's total
//! equals the union's. This module owns that bookkeeping and the convergence
//! curve. It must never read or change a replica itself: the simulator hands
//! it clocks.

use concord_state::VectorClock;
use serde::Serialize;

/// One point of the convergence curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CurvePoint {
    /// Virtual time.
    pub t: u64,
    /// Live nodes holding every change.
    pub complete: u32,
    /// Live nodes.
    pub live: u32,
}

/// The tracker.
#[derive(Debug)]
pub struct Progress {
    union: VectorClock,
    union_total: u64,
    totals: Vec<Option<u64>>,
    complete: u32,
    live: u32,
    complete_since: Option<u64>,
    curve: Vec<CurvePoint>,
}

impl Progress {
    /// A tracker for `n` nodes, all down.
    pub fn new(n: usize) -> Progress {
        Progress {
            union: VectorClock::new(),
            union_total: 0,
            totals: vec![None; n],
            complete: 0,
            live: 0,
            complete_since: None,
            curve: Vec::new(),
        }
    }

    /// Node `i` is live with `clock` (after a start or any change).
    pub fn update(&mut self, t: u64, i: usize, clock: &VectorClock) {
        let total = clock.total();
        if self.totals[i] == Some(total) {
            return;
        }
        self.totals[i] = Some(total);
        self.union.merge(clock);
        self.union_total = self.union.total();
        self.recount(t);
    }

    /// Node `i` went down; `live` are the clocks of the nodes still live.
    pub fn down<'a>(&mut self, t: u64, i: usize, live: impl Iterator<Item = &'a VectorClock>) {
        self.totals[i] = None;
        self.union = VectorClock::new();
        for clock in live {
            self.union.merge(clock);
        }
        self.union_total = self.union.total();
        self.recount(t);
    }

    fn recount(&mut self, t: u64) {
        let live = self.totals.iter().flatten().count() as u32;
        let complete = self
            .totals
            .iter()
            .flatten()
            .filter(|&&total| total == self.union_total)
            .count() as u32;
        if (complete, live) == (self.complete, self.live) {
            return;
        }
        let was_done = self.all_complete();
        self.complete = complete;
        self.live = live;
        match (was_done, self.all_complete()) {
            (false, true) => self.complete_since = Some(t),
            (true, false) => self.complete_since = None,
            _ => {}
        }
        if self.curve.last().is_some_and(|p| p.t == t) {
            self.curve.pop();
        }
        self.curve.push(CurvePoint { t, complete, live });
    }

    /// Whether every live node holds every change.
    pub fn all_complete(&self) -> bool {
        self.live > 0 && self.complete == self.live
    }

    /// Since when every live node holds every change, if they do.
    pub fn complete_since(&self) -> Option<u64> {
        self.complete_since
    }

    /// The convergence curve (a point whenever the counts change).
    pub fn into_curve(self) -> Vec<CurvePoint> {
        self.curve
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_state::ActorId;

    fn clock(entries: &[(u8, u64)]) -> VectorClock {
        entries
            .iter()
            .map(|&(a, s)| (ActorId::from(&[a][..]), s))
            .collect()
    }

    #[test]
    fn tracks_completeness() {
        let mut p = Progress::new(2);
        p.update(0, 0, &clock(&[(1, 1)]));
        p.update(0, 1, &clock(&[(1, 1)]));
        assert_eq!(p.complete_since(), Some(0));
        p.update(5, 0, &clock(&[(1, 2)]));
        assert!(!p.all_complete());
        p.update(9, 1, &clock(&[(1, 2)]));
        assert_eq!(p.complete_since(), Some(9));
        p.update(12, 1, &clock(&[(1, 2), (2, 1)]));
        let only = clock(&[(1, 2)]);
        p.down(20, 1, [&only].into_iter());
        assert_eq!(p.complete_since(), Some(20));
        assert_eq!(
            p.into_curve().last(),
            Some(&CurvePoint {
                t: 20,
                complete: 1,
                live: 1
            })
        );
    }
}
