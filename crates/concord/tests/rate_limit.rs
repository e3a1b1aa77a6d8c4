//! Rate limits counted across the cluster, proven against a real HTTP
//! server on loopback that answers 429 once its own limits are passed (at
//! most 2 requests in flight, at most 6 requests started within any
//! 450 ms): three nodes with three agents each call it as fast as they
//! can, with `coordinate(..).limit(..)` (2 in flight, 6 per 600 ms), and
//! get no 429; the same agents without the limit get many.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use common::joined;
use concord::Space;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

const IN_FLIGHT: usize = 2;
const PER_WINDOW: usize = 6;
/// The limit's window.
const LIMIT_WINDOW: Duration = Duration::from_millis(600);
/// The server's window, shorter than the limit's by the time a request may
/// take from its start permit to the server (on a loaded machine, a step
/// can be scheduled 100 ms after its permit was granted).
const SERVER_WINDOW: Duration = Duration::from_millis(450);

/// The model API's own limits.
#[derive(Default)]
struct Api {
    in_flight: AtomicUsize,
    starts: Mutex<VecDeque<Instant>>,
}

async fn call(State(api): State<Arc<Api>>) -> StatusCode {
    let now = Instant::now();
    let too_many_starts = {
        let mut starts = api.starts.lock().await;
        while starts.front().is_some_and(|t| now - *t > SERVER_WINDOW) {
            starts.pop_front();
        }
        starts.push_back(now);
        starts.len() > PER_WINDOW
    };
    let busy = api.in_flight.fetch_add(1, Ordering::SeqCst) >= IN_FLIGHT;
    tokio::time::sleep(Duration::from_millis(20)).await; // the model thinks
    api.in_flight.fetch_sub(1, Ordering::SeqCst);
    if too_many_starts || busy {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    }
}

/// Starts the API on a free loopback port; returns its address.
async fn serve() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/complete", get(call))
        .with_state(Arc::new(Api::default()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One GET over a fresh HTTP/1.1 connection; returns the status.
async fn get_status(addr: std::net::SocketAddr) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{addr}/v1/complete"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Three agents on each space handle make `calls` calls each; returns the
/// statuses.
async fn agents(
    spaces: &[Space],
    addr: std::net::SocketAddr,
    limited: bool,
    calls: usize,
) -> Vec<u16> {
    let mut tasks = Vec::new();
    for space in spaces {
        for _ in 0..3 {
            let space = space.clone();
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..calls {
                    let status = if limited {
                        space
                            .coordinate("caller")
                            .limit(
                                "model_api",
                                IN_FLIGHT as u32,
                                (PER_WINDOW as u32, LIMIT_WINDOW),
                            )
                            .run(|_| async move { Ok::<_, String>(get_status(addr).await) })
                            .await
                            .unwrap()
                    } else {
                        get_status(addr).await
                    };
                    statuses.push(status);
                }
                statuses
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_across_three_nodes_keeps_a_real_api_from_answering_429() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 3).await;
    let mut spaces = Vec::new();
    for node in &nodes {
        spaces.push(node.space("agents").await.unwrap());
    }
    let addr = serve().await;

    let without = agents(&spaces, addr, false, 4).await;
    let refused = without.iter().filter(|s| **s == 429).count();
    assert!(
        refused >= 10,
        "without a limit only {refused} of {} were 429",
        without.len()
    );

    // Let the server's window forget the unlimited calls.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let with = agents(&spaces, addr, true, 3).await;
    let refused = with.iter().filter(|s| **s == 429).count();
    assert_eq!((refused, with.len()), (0, 27), "{with:?}");
    // 27 calls at 6 per 600 ms take at least 2 s: the limit did the pacing.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(spaces);
    for node in nodes {
        Arc::into_inner(node).unwrap().shutdown().await.unwrap();
    }
}
