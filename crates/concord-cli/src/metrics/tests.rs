#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn quiet() -> Snapshot {
    Snapshot {
        traffic: Traffic::default(),
        latency: Latency::default(),
        spaces: Vec::new(),
        peers: 0,
        lease: ProposerStats::default(),
    }
}

/// The value of the sample line that starts with `series ` in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn spaces_past_the_limit_are_counted_not_exported() {
    let many: Vec<usize> = (0..=MAX_SPACES_EXPORTED).collect();
    let (kept, omitted) = exported(&many);
    assert_eq!(kept.len(), MAX_SPACES_EXPORTED);
    assert_eq!(omitted, 1);
    assert_eq!(
        kept.last(),
        Some(&(MAX_SPACES_EXPORTED - 1)),
        "the first ones by name"
    );
    assert_eq!(exported(&many[..3]), (&many[..3], 0));
}

#[test]
fn a_quiet_node_renders_every_metric_with_zeroes() {
    let text = render(quiet()).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(sample(&text, "concord_peers"), Some(0.0));
    assert_eq!(sample(&text, "concord_lease_grants_total"), Some(0.0));
    assert_eq!(
        sample(&text, "concord_network_sent_bytes_total{protocol=\"sync\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "concord_fsync_latency_seconds_count"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "concord_apply_latency_seconds_bucket{le=\"+Inf\"}"),
        Some(0.0)
    );
    assert!(
        text.contains("# TYPE concord_space_changes gauge"),
        "{text}"
    );
}

#[test]
fn histograms_are_cumulative_and_in_seconds() {
    let mut snapshot = quiet();
    let mut buckets = vec![0; LATENCY_BUCKETS.len() + 1];
    buckets[0] = 2; // ≤ 50 µs
    buckets[4] = 1; // ≤ 1 ms
    buckets[LATENCY_BUCKETS.len()] = 1; // beyond 10 s
    snapshot.latency.fsync = Histogram {
        buckets,
        count: 4,
        sum: Duration::from_millis(20_001),
    };
    snapshot.lease.grants = 3;
    snapshot.traffic.gossip.received_bytes = 1234;
    let text = render(snapshot).unwrap();
    let bucket = |le: &str| {
        sample(
            &text,
            &format!("concord_fsync_latency_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket("0.00005"), Some(2.0), "{text}");
    assert_eq!(bucket("0.001"), Some(3.0));
    assert_eq!(bucket("10.0"), Some(3.0));
    assert_eq!(bucket("+Inf"), Some(4.0));
    assert_eq!(
        sample(&text, "concord_fsync_latency_seconds_count"),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "concord_fsync_latency_seconds_sum"),
        Some(20.001)
    );
    assert_eq!(sample(&text, "concord_lease_grants_total"), Some(3.0));
    assert_eq!(
        sample(
            &text,
            "concord_network_received_bytes_total{protocol=\"gossip\"}"
        ),
        Some(1234.0)
    );
}

/// `GET /metrics` over HTTP/1.1: the whole response.
async fn get_metrics(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "GET /metrics HTTP/1.1\r\nHost: concord\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread")]
async fn scrapes_past_the_limit_are_refused_until_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    let node = concord::Node::builder()
        .data_dir(dir.path())
        .build()
        .await
        .unwrap();
    let bound = Bound::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = bound.addr;
    let scrapes = Arc::new(Semaphore::new(MAX_CONCURRENT_SCRAPES));
    let server = bound.serve_endpoint(Endpoint {
        stats: node.stats(),
        scrapes: Arc::clone(&scrapes),
    });
    let under_way = u32::try_from(MAX_CONCURRENT_SCRAPES).unwrap();
    let busy = scrapes.acquire_many(under_way).await.unwrap();
    let refused = get_metrics(addr).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    drop(busy);
    let answered = get_metrics(addr).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(answered.contains("\nconcord_peers 0\n"), "{answered}");
    server.stop().await;
    node.shutdown().await.unwrap();
}
