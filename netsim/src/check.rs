//! Checkers: causal order of subscriber events (per step), the registry of
//! acknowledged writes and the lost-write check, the final convergence
//! check (heads, vector clocks, every channel's value but ephemeral ones,
//! conflicts), lease safety with its model of fenced external systems
//! ([`LeaseCheck`]), and handoffs between lease holders ([`HandoffCheck`]).
//! Each checker lives in its own submodule; this one holds the violation
//! counts ([`Violations`], [`Kind`]) and re-exports the checkers.
//!
//! It owns the definition of each violation and only *reads* replicas. It
//! must never modify a replica or an engine, and never decide what the
//! simulation does next.

use serde::Serialize;

mod causal;
mod convergence;
mod handoff;
mod lease;
mod writes;

pub use causal::CausalOrder;
pub use convergence::divergent;
pub use handoff::{HandoffCheck, HandoffFloor};
pub use lease::{GrantId, LeaseCheck, WriteOutcome};
pub use writes::{LostWrite, WriteLog};

/// Violation counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Violations {
    /// Live nodes whose final state differs from the first live node's.
    pub convergence: u64,
    /// Subscriber events delivered after an event that depends on them.
    pub causality: u64,
    /// Acknowledged writes missing on some live replica at the end.
    pub lost_writes: u64,
    /// Counters and topics that do not show each write a live replica holds
    /// exactly once (a write carried into a new epoch twice, or lost there).
    pub not_once: u64,
    /// Bounded queues over their bound (engine transmits, pending changes)
    /// and lagged subscribers.
    pub bounds: u64,
    /// Protocol errors between honest nodes (always a bug).
    pub protocol: u64,
    /// Storage failures (start, stop, flush) and an exhausted event budget.
    pub errors: u64,
    /// Lease safety: overlapping holders, fencing tokens out of order, and
    /// fenced writes wrongly accepted or refused (see [`LeaseCheck`]).
    pub lease: u64,
}

/// A violation found during the run (convergence and lost writes are only
/// judged at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// See [`Violations::causality`].
    Causality,
    /// See [`Violations::bounds`].
    Bounds,
    /// See [`Violations::protocol`].
    Protocol,
    /// See [`Violations::errors`].
    Errors,
    /// See [`Violations::lease`].
    Lease,
}

impl std::fmt::Display for Violations {
    /// `convergence=0 causality=0 …`, every count by name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "convergence={} causality={} lost_writes={} not_once={} bounds={} protocol={} errors={} lease={}",
            self.convergence,
            self.causality,
            self.lost_writes,
            self.not_once,
            self.bounds,
            self.protocol,
            self.errors,
            self.lease
        )
    }
}

impl Violations {
    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.convergence
            + self.causality
            + self.lost_writes
            + self.not_once
            + self.bounds
            + self.protocol
            + self.errors
            + self.lease
    }

    /// Counts one violation of `kind`.
    pub fn count(&mut self, kind: Kind) {
        let slot = match kind {
            Kind::Causality => &mut self.causality,
            Kind::Bounds => &mut self.bounds,
            Kind::Protocol => &mut self.protocol,
            Kind::Errors => &mut self.errors,
            Kind::Lease => &mut self.lease,
        };
        *slot += 1;
    }
}

#[cfg(test)]
mod tests;
