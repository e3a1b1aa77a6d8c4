//! Time as a value: the [`Millis`] newtype and the clock-drift bound
//! [`DriftBound`] that turns a lease's time-to-live into the (shorter) time
//! its holder may rely on it.
//!
//! This module owns the one piece of arithmetic the safety of leases rests
//! on, [`DriftBound::local_validity`], and the argument for it (below). It
//! must never read a clock: every instant is a [`Millis`] handed in by the
//! driver (tokio's monotonic clock in production, virtual time in a
//! simulator).
//!
//! # Clock model
//!
//! Every node reads its own monotonic clock, in whole milliseconds, and
//! passes the reading as `now`. Clocks are not synchronized: their readings
//! may differ by any offset, and a restarted node may start from any value.
//! The only assumption is a bound `ρ` on the *rate* of every clock against
//! real time: while real time advances by `Δ`, a clock advances by between
//! `Δ(1-ρ)` and `Δ(1+ρ)`. `ρ` is given in parts per million
//! ([`DriftBound::from_ppm`]); the default is 10,000 ppm (1%), far above the
//! 10-100 ppm of ordinary quartz clocks, so that an NTP slew or a slow VM
//! host stays inside it.
//!
//! # Why a holder may use a lease for `local_validity(ttl)`
//!
//! A proposer asks for a lease of `ttl` milliseconds. Let `s` be its clock
//! reading when it first sends the accept request (`Propose`) for the winning
//! ballot, taken *before* the send. Every acceptor that accepts starts timing
//! `ttl` on its own clock when the request *arrives*, which in real time is
//! no earlier than the send.
//!
//! * The holder trusts the lease while its clock reads less than
//!   `s + V`, with `V = local_validity(ttl)`. Its clock read `s` at a real
//!   time `t_s` (or later: readings are floored to whole milliseconds); it
//!   reads `s + V` no later than real time `t_s + (V + 1) / (1-ρ)`.
//! * An acceptor that received the request at real time `t_r >= t_s`
//!   regards the entry as expired once its clock has advanced by `ttl` from
//!   its (floored) reading at receipt, that is after more than `ttl - 1`
//!   clock milliseconds, which takes real time more than
//!   `(ttl - 1) / (1+ρ)`.
//!
//! With `V = floor(ttl (1-ρ)/(1+ρ)) - 2` we get
//! `(V + 1)/(1-ρ) <= ttl/(1+ρ) - 1/(1-ρ) <= (ttl - 1)/(1+ρ)`, so every
//! accepting acceptor still holds the entry, in real time, when the holder
//! stops trusting the lease. A competing proposer needs a majority of
//! acceptors reporting the resource free; any majority includes one that
//! accepted the holder's request, so the competitor cannot succeed before
//! the holder's validity has ended. The two milliseconds of
//! [`GRANULARITY_MARGIN`] pay for flooring on both sides.
//!
//! The same inequality, with `ttl` replaced by the longest ttl an acceptor
//! may have granted, gives the quiet period of a restarted acceptor (see
//! [`crate::acceptor`]): it forgot its entries, so it refuses to take part
//! until every lease it may have granted has ended at its holder.
//!
//! If a clock drifts faster or slower than `ρ`, this argument fails and two
//! holders can overlap; netsim's `lease-skew-beyond` scenario shows its
//! lease checker catching exactly that.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::LeaseError;

/// A reading of a node's local monotonic clock, or a span of time, in whole
/// milliseconds.
///
/// Instants from different nodes are not comparable: each node has its own
/// clock with its own origin. Arithmetic saturates instead of overflowing.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// Zero milliseconds (the origin of a clock, or an empty span).
    pub const ZERO: Millis = Millis(0);
    /// The largest representable value.
    pub const MAX: Millis = Millis(u64::MAX);

    /// The number of milliseconds.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + other`, or [`Millis::MAX`] on overflow.
    #[must_use]
    pub const fn saturating_add(self, other: Millis) -> Millis {
        Millis(self.0.saturating_add(other.0))
    }

    /// `self - other`, or [`Millis::ZERO`] if `other` is larger.
    #[must_use]
    pub const fn saturating_sub(self, other: Millis) -> Millis {
        Millis(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// One million: drift rates are expressed in parts per million.
pub const PPM: u32 = 1_000_000;

/// Largest drift bound accepted by [`DriftBound::from_ppm`]: 50%.
///
/// Beyond it a lease would be valid locally for less than a third of its
/// ttl, which is a sign of a configuration error rather than of bad clocks.
pub const MAX_DRIFT_PPM: u32 = 500_000;

/// Milliseconds subtracted from every local validity to pay for reading
/// clocks in whole milliseconds (one on the holder, one on the acceptor).
pub const GRANULARITY_MARGIN: Millis = Millis(2);

/// The assumed bound `ρ` on every clock's rate error, in parts per million.
///
/// See the [module documentation](self) for the model and the argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DriftBound {
    ppm: u32,
}

impl DriftBound {
    /// The default bound: 10,000 ppm, i.e. clocks run at between 99% and
    /// 101% of real time.
    pub const DEFAULT: DriftBound = DriftBound { ppm: 10_000 };

    /// A bound of `ppm` parts per million.
    ///
    /// # Errors
    /// [`LeaseError::InvalidDrift`] if `ppm` exceeds [`MAX_DRIFT_PPM`].
    pub const fn from_ppm(ppm: u32) -> Result<DriftBound, LeaseError> {
        if ppm > MAX_DRIFT_PPM {
            return Err(LeaseError::InvalidDrift { ppm });
        }
        Ok(DriftBound { ppm })
    }

    /// The bound in parts per million.
    pub const fn ppm(self) -> u32 {
        self.ppm
    }

    /// How long, on the holder's clock and counted from the moment before it
    /// sent the accept request, a lease granted for `ttl` may be relied on:
    /// `floor(ttl * (1-ρ) / (1+ρ)) - 2ms`, saturating at zero.
    pub fn local_validity(self, ttl: Millis) -> Millis {
        let num = u128::from(ttl.0) * u128::from(PPM - self.ppm);
        let den = u128::from(PPM + self.ppm);
        let scaled = u64::try_from(num / den).unwrap_or(u64::MAX);
        Millis(scaled).saturating_sub(GRANULARITY_MARGIN)
    }
}

impl Default for DriftBound {
    fn default() -> Self {
        DriftBound::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_saturates() {
        assert_eq!(Millis::MAX.saturating_add(Millis(1)), Millis::MAX);
        assert_eq!(Millis(1).saturating_sub(Millis(5)), Millis::ZERO);
        assert_eq!(Millis(7).to_string(), "7ms");
    }

    #[test]
    fn drift_bound_is_validated() {
        assert!(DriftBound::from_ppm(MAX_DRIFT_PPM).is_ok());
        assert_eq!(
            DriftBound::from_ppm(MAX_DRIFT_PPM + 1),
            Err(LeaseError::InvalidDrift {
                ppm: MAX_DRIFT_PPM + 1
            })
        );
    }

    #[test]
    fn local_validity_examples() {
        let zero = DriftBound::from_ppm(0).unwrap();
        assert_eq!(zero.local_validity(Millis(1000)), Millis(998));
        // 1%: 10_000 * 0.99 / 1.01 = 9801.98 -> 9801 - 2
        assert_eq!(
            DriftBound::DEFAULT.local_validity(Millis(10_000)),
            Millis(9799)
        );
        assert_eq!(DriftBound::DEFAULT.local_validity(Millis(2)), Millis::ZERO);
        // No overflow on huge ttls.
        let huge = DriftBound::DEFAULT.local_validity(Millis::MAX);
        assert!(huge < Millis::MAX && huge > Millis(u64::MAX / 2));
    }

    /// Checks the inequality of the module documentation numerically: the
    /// holder's worst-case real end is never after the acceptor's
    /// worst-case real expiry.
    #[test]
    fn local_validity_is_safe_for_all_small_ttls_and_drifts() {
        for ppm in [0u32, 1, 100, 10_000, 100_000, MAX_DRIFT_PPM] {
            let bound = DriftBound::from_ppm(ppm).unwrap();
            let rho = f64::from(ppm) / f64::from(PPM);
            for ttl in (1u64..2000).chain([10_000, 60_000, 3_600_000]) {
                let v = bound.local_validity(Millis(ttl)).0 as f64;
                let holder_end = (v + 1.0) / (1.0 - rho);
                let acceptor_end = (ttl as f64 - 1.0) / (1.0 + rho);
                assert!(
                    v == 0.0 || holder_end <= acceptor_end + 1e-9,
                    "ppm {ppm} ttl {ttl}: holder {holder_end} > acceptor {acceptor_end}"
                );
            }
        }
    }
}
