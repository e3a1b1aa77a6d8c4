//! Hybrid logical clocks (Kulkarni et al.): a physical part in milliseconds
//! that follows the caller's `now`, and a logical counter that keeps events
//! ordered when physical time stalls or runs behind a peer. This module owns
//! the clock arithmetic only; it never reads the system clock.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// A hybrid logical timestamp. Ordered by `(wall, logical)`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Physical component, milliseconds.
    pub wall: u64,
    /// Logical component: events within the same `wall` millisecond.
    pub logical: u32,
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall, self.logical)
    }
}

impl Hlc {
    /// Parses the `wall.logical` form written by [`fmt::Display`].
    pub fn parse(s: &str) -> Option<Hlc> {
        let (w, l) = s.split_once('.')?;
        Some(Hlc {
            wall: w.parse().ok()?,
            logical: l.parse().ok()?,
        })
    }
}

/// The clock of one replica. Every call returns or absorbs a timestamp; the
/// clock never goes backwards, whatever `now` the caller passes.
#[derive(Debug, Clone, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A clock that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest timestamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Issues a timestamp for a local event at physical time `now`; strictly
    /// greater than anything issued or observed before.
    pub fn tick(&mut self, now: Millis) -> Hlc {
        self.last = if now.0 > self.last.wall {
            Hlc {
                wall: now.0,
                logical: 0,
            }
        } else {
            bump(self.last)
        };
        self.last
    }

    /// Absorbs a timestamp received from a peer so that later local events
    /// order after it.
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
    }
}

fn bump(h: Hlc) -> Hlc {
    match h.logical.checked_add(1) {
        Some(logical) => Hlc {
            wall: h.wall,
            logical,
        },
        None => Hlc {
            wall: h.wall + 1,
            logical: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_under_stalled_and_backwards_time() {
        let mut c = HlcClock::new();
        let a = c.tick(Millis(10));
        let b = c.tick(Millis(10));
        let d = c.tick(Millis(5));
        assert!(a < b && b < d);
        assert_eq!(d.wall, 10);
    }

    #[test]
    fn observe_orders_later_events_after_remote() {
        let mut c = HlcClock::new();
        c.tick(Millis(10));
        let remote = Hlc {
            wall: 1_000,
            logical: 7,
        };
        c.observe(remote);
        assert!(c.tick(Millis(11)) > remote);
    }

    #[test]
    fn logical_overflow_carries_into_wall() {
        let mut c = HlcClock::new();
        c.observe(Hlc {
            wall: 3,
            logical: u32::MAX,
        });
        assert_eq!(
            c.tick(Millis(0)),
            Hlc {
                wall: 4,
                logical: 0
            }
        );
    }

    #[test]
    fn display_round_trips() {
        let h = Hlc {
            wall: 123,
            logical: 4,
        };
        assert_eq!(Hlc::parse(&h.to_string()), Some(h));
        assert_eq!(Hlc::parse("x.1"), None);
    }
}
