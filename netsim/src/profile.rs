//! Where a run's wall time goes: inside the machines under test (the
//! replica, the sync engine, the lease acceptor and proposer) or in the
//! simulator itself (event queue, network and disk models, trace, checkers).
//!
//! Off unless the plan asks (`Plan::profile`): it reads the wall clock,
//! which must never influence a run, so it only accumulates durations that
//! go into the report, never into the trace.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Wall time of a run, and the part spent inside the machines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Profile {
    /// The whole run.
    pub wall: Duration,
    /// Inside the state, sync and lease machines.
    pub machines: Duration,
}

impl Profile {
    /// The simulator's own share of the wall time, in `[0, 1]`.
    pub fn simulator_share(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        (1.0 - self.machines.as_secs_f64() / wall).clamp(0.0, 1.0)
    }
}

/// Accumulates machine time while on.
#[derive(Debug, Default)]
pub(crate) struct Stopwatch {
    on: bool,
    machines: Duration,
    started: Option<Instant>,
}

impl Stopwatch {
    pub(crate) fn new(on: bool) -> Stopwatch {
        Stopwatch {
            on,
            machines: Duration::ZERO,
            started: on.then(Instant::now),
        }
    }

    /// Runs `f`, counting its time as machine time.
    pub(crate) fn machine<R>(&mut self, f: impl FnOnce() -> R) -> R {
        if !self.on {
            return f();
        }
        let start = Instant::now();
        let out = f();
        self.machines += start.elapsed();
        out
    }

    /// The profile so far, if on.
    pub(crate) fn finish(&self) -> Option<Profile> {
        Some(Profile {
            wall: self.started?.elapsed(),
            machines: self.machines,
        })
    }
}
