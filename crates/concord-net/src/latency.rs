//! Latency histograms the driver fills as it works, for operators' metrics
//! ([`NetHandle::latency`](crate::NetHandle::latency)): how long handing a
//! received frame to the sync hub took (decoding it and applying its
//! changes to the replica) and how long each space's fsync took.
//!
//! The driver measures around the calls it makes (the sans-IO hub and
//! replicas never read a clock); this module only counts, in fixed buckets
//! ([`LATENCY_BUCKETS`]) of shared atomic counters, so reading them never
//! waits for the driver. It never decides anything and holds no clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (inclusive) of the histogram buckets, from 50 µs to 10 s;
/// a last, unbounded bucket takes anything slower.
pub const LATENCY_BUCKETS: [Duration; 17] = [
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// A snapshot of one histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative): `buckets[i]` counts those
    /// above `LATENCY_BUCKETS[i - 1]` and at most `LATENCY_BUCKETS[i]`; the
    /// last entry (one more than [`LATENCY_BUCKETS`]) those above every bound.
    pub buckets: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Their total duration.
    pub sum: Duration,
}

impl Default for Histogram {
    /// No observation: every bucket empty.
    fn default() -> Self {
        Histogram {
            buckets: vec![0; LATENCY_BUCKETS.len() + 1],
            count: 0,
            sum: Duration::ZERO,
        }
    }
}

/// A snapshot of the driver's latency histograms since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latency {
    /// Handing one received frame to the hub: decoding it and applying its
    /// changes (gossip and directed frames alike).
    pub apply: Histogram,
    /// One fsync of one space's storage (those that had records to sync).
    pub fsync: Histogram,
}

/// The live counters of one histogram.
#[derive(Debug, Default)]
pub(crate) struct HistogramCounters {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl HistogramCounters {
    /// Counts one observation.
    pub(crate) fn record(&self, took: Duration) {
        let bucket = LATENCY_BUCKETS.partition_point(|bound| *bound < took);
        debug_assert!(bucket <= LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn read(&self) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// Every live histogram, shared by the driver and its handles.
#[derive(Debug, Default)]
pub(crate) struct LatencyCounters {
    pub(crate) apply: HistogramCounters,
    pub(crate) fsync: HistogramCounters,
}

impl LatencyCounters {
    pub(crate) fn read(&self) -> Latency {
        Latency {
            apply: self.apply.read(),
            fsync: self.fsync.read(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = HistogramCounters::default();
        h.record(Duration::ZERO);
        h.record(Duration::from_micros(50));
        h.record(Duration::from_micros(51));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60));
        let read = h.read();
        assert_eq!(read.count, 5);
        assert_eq!(read.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(read.buckets[0], 2, "0 and 50 µs (bounds are inclusive)");
        assert_eq!(read.buckets[1], 1, "51 µs");
        assert_eq!(read.buckets[6], 1, "3 ms: above 2.5 ms, at most 5 ms");
        assert_eq!(read.buckets[LATENCY_BUCKETS.len()], 1, "beyond 10 s");
        assert_eq!(read.buckets.iter().sum::<u64>(), read.count);
        let sum = Duration::from_micros(101) + Duration::from_millis(3) + Duration::from_secs(60);
        assert_eq!(read.sum, sum);
        let none = Histogram::default();
        assert_eq!(none.buckets.len(), read.buckets.len());
        assert_eq!(HistogramCounters::default().read(), none);
    }
}
