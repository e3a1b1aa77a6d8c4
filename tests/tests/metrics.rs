//! `concord node --metrics ADDR`: two real nodes on loopback sharing a
//! space; the first serves `/metrics`, which is scraped over HTTP and
//! parsed with a real Prometheus parser (`prometheus-parse`) after writes
//! on both nodes and one `concord lock`: the space's changes and peers, the
//! sync traffic, the apply and fsync histograms and the lease grant show.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use concord_tests::{Binary, Cluster, eventually, free_port, spaces};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

/// The CLI under test, built by cargo before these tests run.
const CONCORD: Binary = Binary(env!("CARGO_BIN_EXE_concord-under-test"));

const SPACE: &str = "team";

/// `GET /metrics` over HTTP/1.1; asserts a 200 in OpenMetrics text and
/// parses the body.
fn scrape(port: u16) -> Scrape {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The sample of `metric` whose labels include `labels`.
fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// The value of a counter, gauge or untyped sample (OpenMetrics counters
/// end in `_total`, which the parser leaves untyped).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels).map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("no {metric}{labels:?} in the scrape: {other:?}"),
    }
}

#[test]
fn a_node_serves_its_metrics_for_prometheus() {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let cluster = Cluster::start(CONCORD, 2, |i| {
        let mut args = spaces(&[SPACE]);
        if i == 0 {
            args.extend(["--metrics".to_owned(), metrics.clone()]);
        }
        args
    });
    let [a, b] = &cluster.nodes[..] else {
        unreachable!()
    };
    for i in 0..5 {
        a.put(SPACE, &format!("observation/a{i}"), &i.to_string());
    }
    b.put(SPACE, "observation/from_b", r#""hello""#);
    cluster.converge_on(SPACE, "observation/from_b", &json!("hello"));
    cluster.converge_on(SPACE, "observation/a4", &json!(4));
    let dir = a.dir().to_str().unwrap();
    let locked = CONCORD.run(&["lock", "--data", dir, SPACE, "db", "--", "true"]);
    assert!(locked.status.success(), "{locked:?}");

    let team = [("space", SPACE)];
    // Peers and counters settle shortly after the writes.
    eventually("the scrape shows the peer and both nodes' changes", || {
        let s = scrape(port);
        value(&s, "concord_space_peers", &team) >= 1.0
            && value(&s, "concord_space_changes", &team) >= 6.0
    });
    let s = scrape(port);
    assert!(value(&s, "concord_peers", &[]) >= 1.0);
    assert!(value(&s, "concord_space_disk_bytes", &team) > 0.0);
    assert!(value(&s, "concord_space_epoch_ops", &team) > 0.0);
    assert!(value(&s, "concord_space_epoch_changes", &team) >= 1.0);
    assert_eq!(value(&s, "concord_space_epoch_switches", &team), 0.0);
    assert_eq!(value(&s, "concord_space_pending_changes", &team), 0.0);
    let sync = [("protocol", "sync")];
    assert!(value(&s, "concord_network_sent_bytes_total", &sync) > 0.0);
    assert!(value(&s, "concord_network_received_bytes_total", &sync) > 0.0);
    assert!(value(&s, "concord_network_sent_messages_total", &sync) > 0.0);
    // Every put was fsynced before it was acknowledged; b's change was
    // received and applied.
    assert!(value(&s, "concord_fsync_latency_seconds_count", &[]) >= 5.0);
    assert!(value(&s, "concord_fsync_latency_seconds_sum", &[]) > 0.0);
    assert!(value(&s, "concord_apply_latency_seconds_count", &[]) >= 1.0);
    let Some(Value::Histogram(buckets)) =
        find(&s, "concord_fsync_latency_seconds", &[]).map(|s| &s.value)
    else {
        panic!("no fsync histogram: {:?}", s.samples);
    };
    let last = buckets.last().unwrap();
    assert!(last.less_than.is_infinite(), "{buckets:?}");
    assert_eq!(
        last.count,
        value(&s, "concord_fsync_latency_seconds_count", &[])
    );
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "cumulative: {buckets:?}"
    );
    assert_eq!(value(&s, "concord_lease_grants_total", &[]), 1.0);
    assert_eq!(value(&s, "concord_lease_denials_total", &[]), 0.0);
    assert_eq!(value(&s, "concord_spaces_omitted", &[]), 0.0);
    assert!(s.docs.contains_key("concord_space_changes"), "{:?}", s.docs);
}

#[test]
fn a_metrics_address_in_use_fails_the_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = CONCORD.run(&["node", "--data", data, "--metrics", &addr]);
    let err = out.err();
    assert!(err.contains("binding the metrics address"), "{err}");
}
