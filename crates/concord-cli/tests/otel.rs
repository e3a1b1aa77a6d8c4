//! With the `otel` feature, a real `concord node` started with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a loopback HTTP server sends
//! its spans there (OTLP over HTTP/protobuf) by the time it stops.
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// One request the collector stand-in received: path and body.
type Request = (String, Vec<u8>);

/// Answers every HTTP request on `listener` with 200 and passes it on.
fn collector(listener: TcpListener, requests: mpsc::Sender<Request>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(n) = header.strip_prefix("content-length:") {
                length = n.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        if requests.send((path, body)).is_err() {
            return;
        }
    }
}

#[test]
fn a_node_exports_its_spans_over_otlp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tx, requests) = mpsc::channel();
    std::thread::spawn(move || collector(listener, tx));
    let dir = tempfile::tempdir().unwrap();
    let mut node = Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(["node", "--data"])
        .arg(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(node.stdout.take().unwrap());
    let started = stdout
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("listen="));
    assert!(started, "the node did not start");
    let stopped = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(node.wait().unwrap().success());
    let (path, body) = requests.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(path, "/v1/traces");
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"\x07concord"), "the service name");
    // Span names are field 5 of an OTLP span: tag 0x2a, then the length.
    assert!(has(b"\x2a\x04node"), "the network driver's span");
    assert!(has(b"\x2a\x05lease"), "the lease node's span");
}
