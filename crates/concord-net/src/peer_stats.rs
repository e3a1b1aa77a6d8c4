//! Per-peer figures of the driver, for operators ([`crate::PeerInfo`]):
//! bytes of frames exchanged with each connected peer and a smoothed round
//! trip time of directed frames (a request-response frame sent until the
//! peer's acknowledgement arrives; the sync heartbeat sends one to every
//! peer about once a second, so the estimate stays fresh).
//!
//! This module owns that bookkeeping only, generic over the peer and
//! request ids so that it is tested without a swarm. It never decides
//! anything and never touches the network; it forgets a peer when its last
//! connection closes.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Most directed frames timed at once; frames sent while this many wait for
/// their acknowledgement are not timed (the estimate just skips them).
pub const MAX_TIMED_REQUESTS: usize = 1024;

/// What is known about one connected peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PeerFigures {
    /// Bytes of directed frames sent to it.
    pub sent_bytes: u64,
    /// Bytes of directed frames and gossip messages received from it.
    pub received_bytes: u64,
    /// Smoothed round trip of directed frames (like TCP's SRTT: each sample
    /// counts for an eighth), once one was acknowledged.
    pub rtt: Option<Duration>,
}

/// The figures of every connected peer and the frames being timed.
#[derive(Debug)]
pub(crate) struct PeerTable<P, R> {
    peers: BTreeMap<P, PeerFigures>,
    timed: HashMap<R, (P, Instant)>,
}

impl<P, R> Default for PeerTable<P, R> {
    fn default() -> Self {
        PeerTable {
            peers: BTreeMap::new(),
            timed: HashMap::new(),
        }
    }
}

impl<P: Ord + Copy, R: Hash + Eq> PeerTable<P, R> {
    /// A peer's first connection is up: start counting.
    pub fn up(&mut self, peer: P) {
        self.peers.entry(peer).or_default();
    }

    /// A peer's last connection closed: forget it and its timed frames.
    pub fn down(&mut self, peer: &P) {
        self.peers.remove(peer);
        self.timed.retain(|_, (p, _)| p != peer);
    }

    /// A directed frame of `bytes` went to `peer` as `request` at `now`.
    pub fn sent(&mut self, peer: &P, bytes: usize, request: R, now: Instant) {
        let Some(figures) = self.peers.get_mut(peer) else {
            return;
        };
        figures.sent_bytes = figures.sent_bytes.saturating_add(bytes as u64);
        if self.timed.len() < MAX_TIMED_REQUESTS {
            self.timed.insert(request, (*peer, now));
        }
        debug_assert!(self.timed.len() <= MAX_TIMED_REQUESTS);
    }

    /// `bytes` arrived from `peer` (a directed frame or relayed gossip).
    pub fn received(&mut self, peer: &P, bytes: usize) {
        if let Some(figures) = self.peers.get_mut(peer) {
            figures.received_bytes = figures.received_bytes.saturating_add(bytes as u64);
        }
    }

    /// The peer acknowledged `request` at `now`: one round-trip sample.
    pub fn answered(&mut self, request: &R, now: Instant) {
        let Some((peer, sent_at)) = self.timed.remove(request) else {
            return;
        };
        let Some(figures) = self.peers.get_mut(&peer) else {
            return;
        };
        let sample = now.saturating_duration_since(sent_at);
        figures.rtt = Some(match figures.rtt {
            None => sample,
            Some(old) => (old * 7 + sample) / 8,
        });
    }

    /// `request` failed (timeout, closed stream): no sample.
    pub fn failed(&mut self, request: &R) {
        self.timed.remove(request);
    }

    /// The figures of `peer` (zero for a peer not counted).
    pub fn figures(&self, peer: &P) -> PeerFigures {
        self.peers.get(peer).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_smooths_round_trips() {
        let mut table = PeerTable::<u8, u32>::default();
        let t0 = Instant::now();
        table.up(1);
        table.sent(&1, 100, 10, t0);
        table.received(&1, 40);
        table.received(&2, 999); // not connected: not counted
        assert_eq!(table.figures(&1).rtt, None);
        table.answered(&10, t0 + Duration::from_millis(8));
        assert_eq!(table.figures(&1).rtt, Some(Duration::from_millis(8)));
        table.sent(&1, 50, 11, t0);
        table.answered(&11, t0 + Duration::from_millis(16));
        let figures = table.figures(&1);
        assert_eq!(figures.rtt, Some(Duration::from_millis(9))); // (7*8 + 16) / 8
        assert_eq!((figures.sent_bytes, figures.received_bytes), (150, 40));
        table.sent(&1, 1, 12, t0);
        table.failed(&12);
        table.answered(&12, t0 + Duration::from_secs(60));
        assert_eq!(table.figures(&1).rtt, Some(Duration::from_millis(9)));
        table.down(&1);
        assert_eq!(table.figures(&1), PeerFigures::default());
        assert!(table.timed.is_empty());
    }

    #[test]
    fn times_at_most_max_timed_requests() {
        let mut table = PeerTable::<u8, usize>::default();
        let t0 = Instant::now();
        table.up(1);
        for request in 0..MAX_TIMED_REQUESTS + 10 {
            table.sent(&1, 1, request, t0);
        }
        assert_eq!(table.timed.len(), MAX_TIMED_REQUESTS);
        assert_eq!(table.figures(&1).sent_bytes, MAX_TIMED_REQUESTS as u64 + 10);
        // A frame past the bound was never timed: its answer is no sample.
        table.answered(&(MAX_TIMED_REQUESTS + 5), t0 + Duration::from_secs(1));
        assert_eq!(table.figures(&1).rtt, None);
        table.answered(&0, t0 + Duration::from_millis(3));
        assert_eq!(table.figures(&1).rtt, Some(Duration::from_millis(3)));
        table.sent(&1, 1, MAX_TIMED_REQUESTS + 20, t0);
        assert!(table.timed.contains_key(&(MAX_TIMED_REQUESTS + 20)));
    }
}
