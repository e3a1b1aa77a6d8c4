//! [`RetryPolicy`]: how often, and how far apart, a failed step is tried
//! again. One policy for every retrying part of the toolkit: `when`
//! handlers and the coordinator's executors.
//!
//! This module owns the backoff arithmetic only; it never sleeps or runs
//! anything.

use std::time::Duration;

/// How failed attempts are retried: `base_backoff`, doubled after each
/// failure up to `max_backoff`, at most `max_attempts` attempts in all.
///
/// ```
/// use concord::RetryPolicy;
/// use std::time::Duration;
///
/// let default = RetryPolicy::default();
/// assert_eq!(default.max_attempts, 3);
/// // Five attempts, waiting 1 s, 2 s, 4 s, then 5 s between them.
/// let patient = RetryPolicy {
///     max_attempts: 5,
///     base_backoff: Duration::from_secs(1),
///     max_backoff: Duration::from_secs(5),
/// };
/// assert_eq!(patient.backoff(3), Duration::from_secs(4));
/// assert_eq!(patient.backoff(4), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all before the failure is final (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failure.
    pub base_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.base_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }

    /// Whether failed attempt number `attempt` (1-based) was the last.
    pub fn is_last(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }
}
