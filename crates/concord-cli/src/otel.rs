//! Optional OpenTelemetry export of the `tracing` spans (cargo feature
//! `otel`): when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, every span the
//! `RUST_LOG` filter lets through is also sent over OTLP (HTTP/protobuf,
//! e.g. `http://127.0.0.1:4318`) as service `concord`.
//!
//! This module owns the tracer provider and its export thread (the SDK's
//! batch processor, with a blocking HTTP client: no async runtime is
//! involved). It never creates spans of its own and never fails the
//! program: an exporter that cannot be built is reported and left out.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter, Tracer};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// The environment variable that turns the export on (and says where to).
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Keeps the export running; dropping it flushes what is queued and stops
/// the export thread.
#[derive(Debug)]
pub struct Otel {
    provider: SdkTracerProvider,
}

impl Drop for Otel {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("warning: flushing OpenTelemetry spans: {error}");
        }
    }
}

/// A layer exporting spans over OTLP if [`ENDPOINT_VAR`] is set, with the
/// guard that flushes it.
pub fn from_env<S>() -> Option<(OpenTelemetryLayer<S, Tracer>, Otel)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    std::env::var_os(ENDPOINT_VAR)?;
    // The endpoint (and headers, timeout, ...) come from the standard
    // OTEL_EXPORTER_OTLP_* variables.
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => Some(layer(exporter)),
        Err(error) => {
            eprintln!("warning: not exporting spans over OTLP: {error}");
            None
        }
    }
}

/// A layer exporting spans to `exporter` in batches.
fn layer<S, E>(exporter: E) -> (OpenTelemetryLayer<S, Tracer>, Otel)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    E: SpanExporter + 'static,
{
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("concord").build())
        .build();
    let tracer = provider.tracer("concord");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    (layer, Otel { provider })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::SpanData;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Keeps what it is handed.
    #[derive(Debug, Clone, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    #[test]
    fn spans_are_exported_with_their_parents_once_flushed() {
        let kept = Kept::default();
        let (layer, otel) = layer(kept.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("scrape", space = "team");
            let _outer = outer.enter();
            tracing::info_span!("lease_stats").in_scope(|| {});
        });
        drop(otel);
        let spans = kept.0.lock().unwrap();
        let named = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
        let (outer, inner) = (named("scrape"), named("lease_stats"));
        assert_eq!(inner.parent_span_id, outer.span_context.span_id());
        assert_eq!(inner.span_context.trace_id(), outer.span_context.trace_id());
        assert_eq!(spans.len(), 2);
    }
}
