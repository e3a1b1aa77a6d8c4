//! `concord node --metrics ADDR`: serves the node's counters over HTTP at
//! `/metrics` in the OpenMetrics text format (which Prometheus scrapes),
//! encoded by the `prometheus-client` crate.
//!
//! Each scrape takes one [`Snapshot`] of the node through
//! [`concord::NodeStats`] (traffic and latency histograms read from shared
//! counters; per-space and lease counters asked of the driver and the lease
//! node) and encodes it through a registry made for that scrape, whose one
//! collector is the snapshot. Every metric is prefixed `concord_`; the
//! README lists them.
//!
//! This module owns the metric names, the registry and the HTTP endpoint.
//! It must never change the node (it only reads) and never measure anything
//! itself: the numbers come from the layers that count them.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use concord::{
    Flow, Histogram, LATENCY_BUCKETS, Latency, NodeStats, ProposerStats, SpaceStats, Traffic,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Most spaces exported per scrape (a label value each); the others, past
/// this many in name order, are only counted (`concord_spaces_omitted`).
pub const MAX_SPACES_EXPORTED: usize = 1_000;

/// Most scrapes answered at once; more get 503 (each asks the driver).
pub const MAX_CONCURRENT_SCRAPES: usize = 4;

/// The OpenMetrics text format's content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The endpoint's address, bound and not yet served (binding comes before
/// the node starts, so that an address in use fails the start).
#[derive(Debug)]
pub struct Bound {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

/// The running endpoint; dropping it leaves it running, [`Self::stop`]
/// stops it.
#[derive(Debug)]
pub struct MetricsServer {
    task: tokio::task::JoinHandle<()>,
}

/// What every scrape shares.
#[derive(Clone)]
struct Endpoint {
    stats: NodeStats,
    scrapes: Arc<Semaphore>,
}

impl Bound {
    /// Binds `addr` (port 0: any free port, logged when served).
    ///
    /// # Errors
    /// The address could not be bound.
    pub async fn bind(addr: SocketAddr) -> Result<Bound> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        let addr = listener
            .local_addr()
            .context("reading the metrics address")?;
        Ok(Bound { listener, addr })
    }

    /// Serves `/metrics` from `stats` on the current tokio runtime.
    pub fn serve(self, stats: NodeStats) -> MetricsServer {
        self.serve_endpoint(Endpoint {
            stats,
            scrapes: Arc::new(Semaphore::new(MAX_CONCURRENT_SCRAPES)),
        })
    }

    fn serve_endpoint(self, endpoint: Endpoint) -> MetricsServer {
        let Bound { listener, addr } = self;
        debug_assert!(endpoint.scrapes.available_permits() <= MAX_CONCURRENT_SCRAPES);
        let app = Router::new()
            .route("/metrics", get(scrape))
            .with_state(endpoint);
        let task = tokio::spawn(
            async move {
                if let Err(error) = axum::serve(listener, app).await {
                    tracing::warn!(%error, "the metrics endpoint stopped");
                }
            }
            .instrument(tracing::info_span!("metrics", %addr)),
        );
        tracing::info!(%addr, "serving metrics at /metrics");
        MetricsServer { task }
    }
}

impl MetricsServer {
    /// Stops listening.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn scrape(State(endpoint): State<Endpoint>) -> Response {
    let Ok(_permit) = endpoint.scrapes.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes at once\n",
        )
            .into_response();
    };
    let rendered = async {
        let snapshot = Snapshot::take(&endpoint.stats).await?;
        render(snapshot).context("encoding the metrics")
    }
    .instrument(tracing::debug_span!("scrape"))
    .await;
    match rendered {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "scrape failed");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}\n")).into_response()
        }
    }
}

/// Everything one scrape reports.
#[derive(Debug, Clone)]
pub struct Snapshot {
    traffic: Traffic,
    latency: Latency,
    /// Open spaces, by name.
    spaces: Vec<SpaceStats>,
    peers: usize,
    lease: ProposerStats,
}

impl Snapshot {
    /// Reads `stats`.
    ///
    /// # Errors
    /// The node stopped.
    pub async fn take(stats: &NodeStats) -> Result<Snapshot> {
        Ok(Snapshot {
            traffic: stats.traffic(),
            latency: stats.latency(),
            spaces: stats.spaces().await?,
            peers: stats.peers().await?,
            lease: stats.lease().await?,
        })
    }
}

/// `snapshot` in the OpenMetrics text format.
///
/// # Errors
/// Only if encoding fails (it writes to a `String`).
pub fn render(snapshot: Snapshot) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("concord");
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// The first [`MAX_SPACES_EXPORTED`] of `items`, and how many were left out.
fn exported<T>(items: &[T]) -> (&[T], usize) {
    let kept = items.len().min(MAX_SPACES_EXPORTED);
    (&items[..kept], items.len() - kept)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (spaces, omitted) = exported(&self.spaces);
        gauge(&mut e, "peers", "Connected peers.", self.peers as u64)?;
        gauge(&mut e, "spaces", "Open spaces.", self.spaces.len() as u64)?;
        let help = "Open spaces left out of the per-space metrics (past the first 1000 by name).";
        gauge(&mut e, "spaces_omitted", help, omitted as u64)?;
        for (name, help, unit, value) in SPACE_GAUGES {
            let mut family = e.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for space in spaces {
                let labels = [("space", space.space.as_str())];
                ConstGauge::new(value(space)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, unit, value) in TRAFFIC_COUNTERS {
            let mut family = e.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
            for (protocol, flow) in [
                ("sync", &self.traffic.sync),
                ("gossip", &self.traffic.gossip),
            ] {
                let labels = [("protocol", protocol)];
                ConstCounter::new(value(flow)).encode(family.encode_family(&labels)?)?;
            }
        }
        let lease = &self.lease;
        for (name, help, value) in [
            (
                "lease_grants",
                "Leases this node's lease service granted.",
                lease.grants,
            ),
            ("lease_denials", "Acquisitions that gave up.", lease.denials),
            ("lease_renewals", "Renewals that succeeded.", lease.renewals),
            (
                "lease_renewal_failures",
                "Renewals that gave up.",
                lease.renewal_failures,
            ),
            (
                "lease_losses",
                "Leases whose validity ended unrenewed.",
                lease.losses,
            ),
        ] {
            let family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(family)?;
        }
        for (name, help, histogram) in [
            (
                "apply_latency",
                "Time to decode a received frame and apply its changes.",
                &self.latency.apply,
            ),
            (
                "fsync_latency",
                "Time to fsync one space's storage.",
                &self.latency.fsync,
            ),
        ] {
            let family =
                e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
            Seconds(histogram).encode(family)?;
        }
        Ok(())
    }
}

/// One node-wide gauge.
fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(family)
}

/// A per-space gauge: name, help, unit and how to read it.
type SpaceGauge = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(&SpaceStats) -> u64,
);

/// The per-space gauges (label `space`).
const SPACE_GAUGES: [SpaceGauge; 9] = [
    ("space_changes", "Changes the space holds.", None, |s| {
        s.replica.changes
    }),
    (
        "space_pending_changes",
        "Changes waiting for their dependencies.",
        None,
        |s| s.replica.pending as u64,
    ),
    (
        "space_unsynced_records",
        "Records written to storage and waiting for their fsync.",
        None,
        |s| s.unsynced,
    ),
    (
        "space_peers",
        "Connected peers that share the space.",
        None,
        |s| s.peers as u64,
    ),
    (
        "space_disk",
        "Bytes of snapshot plus log on disk.",
        Some(Unit::Bytes),
        |s| s.bytes_on_disk,
    ),
    (
        "space_epoch_switches",
        "Epoch switches this replica made since it was created.",
        None,
        |s| s.epoch.number,
    ),
    (
        "space_epoch_changes",
        "Changes since the current epoch's cut.",
        None,
        |s| s.epoch.changes,
    ),
    (
        "space_epoch",
        "Bytes of the changes since the current epoch's cut.",
        Some(Unit::Bytes),
        |s| s.epoch.bytes,
    ),
    (
        "space_epoch_ops",
        "Operations held in memory (current and retained epochs).",
        None,
        |s| s.epoch.ops,
    ),
];

/// A per-protocol traffic counter (label `protocol`): name, help, unit,
/// reading.
type TrafficCounter = (&'static str, &'static str, Option<Unit>, fn(&Flow) -> u64);

/// The traffic counters.
const TRAFFIC_COUNTERS: [TrafficCounter; 4] = [
    (
        "network_sent",
        "Frame bytes sent, per protocol.",
        Some(Unit::Bytes),
        |f| f.sent_bytes,
    ),
    (
        "network_received",
        "Frame bytes received, per protocol.",
        Some(Unit::Bytes),
        |f| f.received_bytes,
    ),
    (
        "network_sent_messages",
        "Frames sent, per protocol.",
        None,
        |f| f.sent_messages,
    ),
    (
        "network_received_messages",
        "Frames received, per protocol.",
        None,
        |f| f.received_messages,
    ),
];

/// A latency histogram in seconds, buckets bounded by [`LATENCY_BUCKETS`].
struct Seconds<'a>(&'a Histogram);

impl EncodeMetric for Seconds<'_> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> std::fmt::Result {
        let bounds = LATENCY_BUCKETS
            .iter()
            .map(|b| b.as_secs_f64())
            .chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.buckets.iter().copied()).collect();
        debug_assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        let sum = self.0.sum.as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, self.0.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests;
