//! How long a proposer waits for a majority, and between attempts: the
//! round timeout and retry backoff, learned from how long the acceptors
//! take to answer (`Pace`).
//!
//! This module owns that arithmetic. It must never read a clock (every
//! time is handed in), never let the round timeout grow past
//! [`MAX_ROUND_TIMEOUT_FACTOR`] times the configured one, and never
//! remember more than [`MAX_ABANDONED_PHASES`] abandoned phases.
//!
//! A fixed timeout livelocks on acceptors whose fsync outlasts it: every
//! retry carries a higher ballot, every higher ballot needs another durable
//! promise, and every promise arrives after its attempt was abandoned. So
//! the proposer keeps a typical phase time:
//!
//! * a phase that reaches its majority is a sample of it (smoothed);
//! * a phase abandoned for want of a majority is remembered, and the first
//!   answer that still arrives for it raises the typical time to at least
//!   that answer's delay, at once.
//!
//! The round timeout is twice the typical time, never below the configured
//! round timeout; the retry backoff starts at the typical time, so that a
//! retry does not preempt another proposer's attempt that is merely slow.
//! Lost messages and partitions leave nothing to learn from (no answer
//! ever arrives), so unlike a blind exponential backoff they do not slow
//! down the attempts that follow a heal.

use std::collections::VecDeque;

use crate::ballot::Ballot;
use crate::time::Millis;

/// Ceiling of the learned round timeout, as a multiple of the configured
/// one: 8 s with the default `round_timeout` of 500 ms. Acceptors slower
/// than that are treated as unavailable.
pub const MAX_ROUND_TIMEOUT_FACTOR: u64 = 16;

/// How many abandoned phases are remembered for their late answers; beyond
/// it the oldest is forgotten.
pub const MAX_ABANDONED_PHASES: usize = 16;

/// Weight of a new sample in the smoothed phase time, as `1 / SMOOTHING`.
const SMOOTHING: u64 = 4;

/// A proposer's learned phase timing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pace {
    /// Typical time from sending a phase's messages to its majority.
    typical: Option<Millis>,
    /// Phases abandoned without a majority: their ballot and when their
    /// messages went out, oldest first.
    abandoned: VecDeque<(Ballot, Millis)>,
}

impl Pace {
    /// How long a phase waits for its majority, given the configured
    /// round timeout `base`.
    pub(crate) fn round_timeout(&self, base: Millis) -> Millis {
        let learned = self.typical.map_or(base, |t| t.saturating_add(t)).max(base);
        learned.min(Millis(base.0.saturating_mul(MAX_ROUND_TIMEOUT_FACTOR)))
    }

    /// The base of the randomized wait before a retry, given the
    /// configured `retry_backoff`.
    pub(crate) fn retry_backoff(&self, base: Millis) -> Millis {
        self.typical.map_or(base, |t| t.max(base))
    }

    /// A phase reached its majority `took` after its messages went out.
    pub(crate) fn answered(&mut self, took: Millis) {
        self.typical = Some(match self.typical {
            None => took,
            Some(t) => Millis((t.0.saturating_mul(SMOOTHING - 1) + took.0) / SMOOTHING),
        });
    }

    /// The phase of `ballot`, sent at `sent`, was abandoned.
    pub(crate) fn abandoned(&mut self, ballot: Ballot, sent: Millis) {
        if self.abandoned.len() >= MAX_ABANDONED_PHASES {
            self.abandoned.pop_front();
        }
        self.abandoned.push_back((ballot, sent));
    }

    /// An answer for `ballot` arrived at `now`, after its attempt was over.
    /// Only the first answer for an abandoned phase counts.
    pub(crate) fn late_answer(&mut self, ballot: Ballot, now: Millis) {
        let Some(at) = self.abandoned.iter().position(|(b, _)| *b == ballot) else {
            return;
        };
        if let Some((_, sent)) = self.abandoned.remove(at) {
            let took = now.saturating_sub(sent);
            self.typical = Some(self.typical.map_or(took, |t| t.max(took)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    const BASE: Millis = Millis(500);

    fn ballot(round: u64) -> Ballot {
        Ballot::new(round, NodeId(1)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn starts_at_the_configured_values_and_fast_answers_keep_them() {
        let mut pace = Pace::default();
        for fast in [None, Some(Millis(3))] {
            if let Some(took) = fast {
                pace.answered(took);
            }
            assert_eq!(pace.round_timeout(BASE), BASE);
            assert_eq!(pace.retry_backoff(Millis(50)), Millis(50));
        }
    }

    #[test]
    fn slow_answers_set_twice_their_smoothed_time() {
        let mut pace = Pace::default();
        pace.answered(Millis(400));
        assert_eq!(pace.round_timeout(BASE), Millis(800));
        assert_eq!(pace.retry_backoff(Millis(50)), Millis(400));
        pace.answered(Millis(800));
        // (3 × 400 + 800) / 4 = 500
        assert_eq!(pace.round_timeout(BASE), Millis(1_000));
    }

    #[test]
    fn the_first_late_answer_of_an_abandoned_phase_raises_the_timeout_at_once() {
        let mut pace = Pace::default();
        pace.answered(Millis(10));
        pace.abandoned(ballot(1), Millis(1_000));
        // An answer for a ballot that was not abandoned teaches nothing.
        pace.late_answer(ballot(2), Millis(5_000));
        assert_eq!(pace.round_timeout(BASE), BASE);
        pace.late_answer(ballot(1), Millis(1_700));
        assert_eq!(pace.round_timeout(BASE), Millis(1_400));
        // Later answers for the same phase do not count again.
        pace.late_answer(ballot(1), Millis(4_000));
        assert_eq!(pace.round_timeout(BASE), Millis(1_400));
    }

    #[test]
    fn the_learned_timeout_has_a_ceiling() {
        let mut pace = Pace::default();
        pace.answered(Millis(60_000));
        assert_eq!(pace.round_timeout(BASE), Millis(8_000));
    }

    #[test]
    fn only_the_newest_abandoned_phases_are_remembered() {
        let mut pace = Pace::default();
        let phases = u64::try_from(MAX_ABANDONED_PHASES).unwrap_or(u64::MAX);
        for round in 1..=phases + 1 {
            pace.abandoned(ballot(round), Millis(0));
        }
        assert_eq!(pace.abandoned.len(), MAX_ABANDONED_PHASES);
        pace.late_answer(ballot(1), Millis(2_000));
        assert_eq!(pace.round_timeout(BASE), BASE, "the oldest was forgotten");
        pace.late_answer(ballot(2), Millis(2_000));
        assert_eq!(pace.round_timeout(BASE), Millis(4_000));
    }
}
