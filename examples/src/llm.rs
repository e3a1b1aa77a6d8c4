//! A fake language model on loopback, and the client the agents call it
//! with. The server answers `POST /v1/complete` (`{"role", "prompt"}`) with
//! `{"text"}`, text that depends only on the role and the prompt, and
//! counts the calls per role and the fencing tokens it was sent
//! (`fencing-token` header), so a scenario can read back what the model
//! saw.
//!
//! This module owns the fake endpoint and the HTTP client. It must never
//! bind anything but loopback, never accept a prompt over
//! [`MAX_PROMPT_BYTES`] (413), and never read a reply over
//! [`MAX_REPLY_BYTES`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::ExampleError;

/// Longest prompt the fake model accepts, in bytes (the request body).
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;

/// Longest reply the client reads, in bytes.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The header carrying the caller's fencing token.
pub const TOKEN_HEADER: &str = "fencing-token";

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    role: String,
    prompt: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    text: String,
}

/// What the fake model saw from one role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Calls made.
    pub calls: u64,
    /// The fencing tokens sent, in order.
    pub tokens: Vec<u64>,
}

type Log = Arc<Mutex<BTreeMap<String, Seen>>>;

/// The running fake model; stops when dropped.
#[derive(Debug)]
pub struct FakeModel {
    addr: SocketAddr,
    log: Log,
    task: JoinHandle<()>,
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The model's answer: a function of the role and the prompt only.
pub fn answer(role: &str, prompt: &str) -> String {
    let words = prompt.split_whitespace().count();
    let digest = prompt
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 10_000;
    let gist: String = prompt.chars().take(48).collect();
    match role {
        "researcher" => format!("3 sources on \"{gist}\" (digest {digest:04})"),
        "analyzer" => format!("{words} words of findings, 2 claims hold (digest {digest:04})"),
        "summarizer" => format!("in short: {gist} (digest {digest:04})"),
        _ => format!("{role}: {words} words (digest {digest:04})"),
    }
}

async fn complete(
    State(log): State<Log>,
    headers: HeaderMap,
    body: String,
) -> Result<String, (StatusCode, String)> {
    let request: Request = serde_json::from_str(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad request: {e}")))?;
    let token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Ok(mut log) = log.lock() {
        let seen = log.entry(request.role.clone()).or_default();
        seen.calls += 1;
        seen.tokens.extend(token);
    }
    let reply = Reply {
        text: answer(&request.role, &request.prompt),
    };
    serde_json::to_string(&reply).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

impl FakeModel {
    /// Starts the model on a free loopback port.
    ///
    /// # Errors
    /// The port could not be bound.
    pub async fn start() -> Result<FakeModel, ExampleError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(ExampleError::io("binding the fake model"))?;
        let addr = listener
            .local_addr()
            .map_err(ExampleError::io("the fake model's address"))?;
        let log = Log::default();
        let app = Router::new()
            .route("/v1/complete", post(complete))
            .layer(DefaultBodyLimit::max(MAX_PROMPT_BYTES))
            .with_state(Arc::clone(&log));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the fake model stopped");
            }
        });
        Ok(FakeModel { addr, log, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw, per role.
    pub fn seen(&self) -> BTreeMap<String, Seen> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

/// Calls the model at `addr` as `role` with `prompt`, sending `token`
/// along; returns its text.
///
/// # Errors
/// [`ExampleError::Model`] if it could not be reached or answered other
/// than 200 with a reply, [`ExampleError::ReplyTooLarge`] past
/// [`MAX_REPLY_BYTES`].
#[tracing::instrument(level = "debug", skip(prompt))]
pub async fn complete_at(
    addr: SocketAddr,
    role: &str,
    prompt: &str,
    token: Option<u64>,
) -> Result<String, ExampleError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| ExampleError::Model(format!("{what}: {e}"));
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| failed("connecting", &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed("handshake", &e))?;
    tokio::spawn(connection);
    let body = serde_json::to_vec(&Request {
        role: role.to_owned(),
        prompt: prompt.to_owned(),
    })
    .map_err(|e| failed("encoding", &e))?;
    let mut request = hyper::Request::post(format!("http://{addr}/v1/complete"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header(TOKEN_HEADER, token);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| failed("request", &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed("sending", &e))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_REPLY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ExampleError::ReplyTooLarge {
                    max: MAX_REPLY_BYTES,
                }
            } else {
                failed("reading the reply", &e)
            }
        })?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(ExampleError::Model(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let reply: Reply = serde_json::from_slice(&bytes).map_err(|e| failed("the reply", &e))?;
    Ok(reply.text)
}
