//! The server side of the control protocol: one task per connection on
//! the node's control socket, answering each [`Request`] through the
//! `concord` facade (see [`crate::control`] for the wire format).
//!
//! This module owns the answers: what `get`, `put`, `watch`, `lock`,
//! `inspect`, `export` and `backup` do on the node. It never touches the
//! node's lifecycle (the parent module starts and stops it) and never
//! implements replication.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use concord::{ChannelKind, Delivery, Node, Origin, Space};
use concord_state::Replica;
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::control::{
    self, ChannelRow, EphemeralPutResult, EpochRow, ExportFormat, ExportResult, GetResult,
    InspectReport, LockGranted, LockReleased, PeerRow, PutResult, QueueStats, Reply, Request,
    SpaceReport, WatchItem, WriterRow,
};

/// The channel that lists unresolved conflicts; it is never declared, so it
/// reads as an empty list rather than as an unknown channel.
const CONFLICTS_PATH: &str = "coordination/conflicts";

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The node plus the spaces the control server opened on it.
pub(super) struct Server {
    pub(super) node: Node,
    /// Opening goes through this lock so two requests never race to open one space.
    spaces: tokio::sync::Mutex<BTreeMap<String, Space>>,
}

impl Server {
    /// A server of `node` with no space opened yet.
    pub(super) fn new(node: Node) -> Server {
        Server {
            node,
            spaces: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The space `name`, opened on first use.
    pub(super) async fn space(&self, name: &str) -> Result<Space> {
        let mut spaces = self.spaces.lock().await;
        if let Some(space) = spaces.get(name) {
            return Ok(space.clone());
        }
        let space = self
            .node
            .space(name)
            .await
            .with_context(|| format!("opening space {name:?}"))?;
        spaces.insert(name.to_owned(), space.clone());
        Ok(space)
    }

    /// Answers every request but `watch`.
    async fn answer(&self, request: Request) -> Result<Value> {
        Ok(match request {
            Request::Put {
                space,
                path,
                value,
                ttl_ms: Some(ttl_ms),
            } => {
                let handle = self
                    .space(&space)
                    .await?
                    .ephemeral::<Value>(&path, Duration::from_millis(ttl_ms))?;
                let receipt = handle.set(&value).await?;
                serde_json::to_value(EphemeralPutResult {
                    space,
                    path,
                    hlc: receipt.hlc.to_string(),
                    ttl_ms: receipt.expires_at.0.saturating_sub(receipt.hlc.wall),
                    ephemeral: true,
                })?
            }
            Request::Put {
                space,
                path,
                value,
                ttl_ms: None,
            } => {
                let handle = self.space(&space).await?;
                let receipt = handle.put(&path, value).await?;
                let seq = receipt.seq;
                let durable = handle.with(move |r| r.durable_seq() >= seq).await?;
                serde_json::to_value(PutResult {
                    space,
                    path,
                    seq: receipt.seq,
                    change: receipt.change.to_string(),
                    hlc: receipt.hlc.to_string(),
                    durable,
                })?
            }
            Request::Get { space, path } => {
                let found = {
                    let path = path.clone();
                    self.space(&space)
                        .await?
                        .with(move |r| visible_value(r, &path))
                        .await??
                };
                let value = match found {
                    Some(value) => value,
                    None if path == CONFLICTS_PATH => Value::Array(Vec::new()),
                    None => bail!(
                        "no channel {path} in space {space:?} (nothing was ever written there)"
                    ),
                };
                serde_json::to_value(GetResult { value })?
            }
            Request::Inspect { space, writers } => {
                serde_json::to_value(self.inspect(space, writers).await?)?
            }
            Request::Export { space, format } => {
                let space = self.space(&space).await?;
                let result = match format {
                    ExportFormat::Json => ExportResult::Json(space.with(visible_values).await?),
                    ExportFormat::Automerge => {
                        ExportResult::Automerge(space.with(|r| hex::encode(r.doc().save())).await?)
                    }
                };
                serde_json::to_value(result)?
            }
            Request::Watch { .. } | Request::Lock { .. } | Request::Backup { .. } => {
                bail!("watch, lock and backup are served by their own loops")
            }
        })
    }

    async fn inspect(&self, space: Option<String>, writers: bool) -> Result<InspectReport> {
        let spaces = match space {
            Some(name) => vec![self.space(&name).await?],
            None => self.spaces.lock().await.values().cloned().collect(),
        };
        let mut reports = Vec::with_capacity(spaces.len());
        for space in spaces {
            let bytes_on_disk = space.bytes_on_disk().await?;
            let report = space.with(move |r| space_report(r, bytes_on_disk, writers));
            reports.push(report.await?);
        }
        Ok(InspectReport {
            peer_id: self.node.peer_id().to_string(),
            actor: self.node.actor().to_hex_string(),
            listen: self
                .node
                .listen_addrs()
                .await?
                .iter()
                .map(ToString::to_string)
                .collect(),
            peers: self
                .node
                .peers()
                .await?
                .into_iter()
                .map(|p| PeerRow {
                    peer_id: p.peer_id.to_string(),
                    address: p.address.map(|a| a.to_string()),
                    rtt_ms: p.rtt.map(|rtt| rtt.as_secs_f64() * 1e3),
                    sent_bytes: p.sent_bytes,
                    received_bytes: p.received_bytes,
                })
                .collect(),
            spaces: reports,
        })
    }
}

/// A channel's visible value: `Some(null)` for a declared channel holding
/// nothing, `None` for a channel that was never declared or written.
fn visible_value(r: &mut Replica, path: &str) -> Result<Option<Value>, concord_state::StateError> {
    let value = r.get(path)?;
    Ok(match value {
        Some(v) => Some(v),
        None => r.spec(path)?.map(|_| Value::Null),
    })
}

/// Every declared channel's visible value, keyed by path.
fn visible_values(r: &mut Replica) -> BTreeMap<String, Value> {
    r.channels()
        .into_iter()
        .map(|(path, _)| {
            let value = r.get(&path).ok().flatten().unwrap_or(Value::Null);
            (path.to_string(), value)
        })
        .collect()
}

/// What `inspect` shows of a space; `bytes_on_disk` comes from its storage,
/// which the driver keeps; `writers` adds each channel's last writer.
fn space_report(r: &mut Replica, bytes_on_disk: u64, writers: bool) -> SpaceReport {
    let stats = r.stats();
    SpaceReport {
        name: r.space().to_owned(),
        vector_clock: r
            .vector_clock()
            .iter()
            .map(|(actor, seq)| (actor.to_hex_string(), seq))
            .collect(),
        channels: r
            .channels()
            .into_iter()
            .map(|(path, spec)| {
                let (value, unreadable) = match r.get(&path) {
                    Ok(value) => (value.unwrap_or(Value::Null), None),
                    Err(e) => (Value::Null, Some(e.to_string())),
                };
                ChannelRow {
                    value,
                    unreadable,
                    live: (spec.kind == ChannelKind::Ephemeral)
                        .then(|| r.ephemeral_values(&path).map_or(0, |v| v.len())),
                    ttl_ms: spec.ttl_ms,
                    writer: writers.then(|| last_writer(r, &path)).flatten(),
                    path: path.to_string(),
                    kind: spec.kind.to_string(),
                    policy: spec.policy.to_string(),
                    version: spec.version,
                }
            })
            .collect(),
        queue: QueueStats {
            pending: stats.pending,
            subscribers: stats.subscribers,
            conflicts: stats.conflicts,
            changes: stats.changes,
            bytes_on_disk,
            channels: stats.channels,
            actors: stats.actors,
            ephemeral_values: stats.ephemeral_values as u64,
            ephemeral_dropped: stats.ephemeral_dropped,
        },
        epoch: {
            let e = r.epoch();
            EpochRow {
                id: e.id.to_string(),
                number: e.number,
                cut_changes: e.cut.total(),
                changes: e.changes,
                bytes: e.bytes,
                ops: e.ops,
                retained: e.retained.iter().map(ToString::to_string).collect(),
            }
        },
    }
}

/// The causally last write to a channel in the space's history.
fn last_writer(r: &Replica, path: &concord_state::ChannelPath) -> Option<WriterRow> {
    let last = r.history(path).ok()?.pop()?;
    Some(WriterRow {
        actor: last.actor,
        seq: last.seq,
        hlc: last.hlc.map(|h| h.to_string()),
    })
}

fn watch_item(delivery: Delivery) -> WatchItem {
    match delivery {
        Delivery::Event(e) => WatchItem::Event {
            path: e.path.to_string(),
            key: e.key,
            old: e.old,
            new: e.new,
            origin: match e.origin {
                Origin::Local => "local",
                Origin::Remote => "remote",
            }
            .to_owned(),
            actor: e.position.actor.to_hex_string(),
            seq: e.position.seq,
            hlc: e.position.hlc.map(|h| h.to_string()),
            ephemeral: e.ephemeral,
        },
        Delivery::Lagged { missed } => WatchItem::Lagged { missed },
    }
}

/// Serves one control connection: one request, one reply (or a stream).
pub(super) async fn connection(server: Arc<Server>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let request = match read_request(&mut read).await {
        Ok(request) => request,
        Err(e) => {
            let _ = send(&mut write, &Reply::Error(format!("{e:#}"))).await;
            return;
        }
    };
    let request = match request {
        Request::Watch { space, pattern } => {
            watch(&server, space, pattern, read, write).await;
            return;
        }
        Request::Lock {
            space,
            resource,
            ttl_ms,
        } => {
            lock(&server, &space, resource, ttl_ms, read, write).await;
            return;
        }
        Request::Backup { space } => {
            crate::cmd_backup::serve(server.space(&space).await, &mut write).await;
            return;
        }
        other => other,
    };
    let reply = match server.answer(request).await {
        Ok(value) => Reply::Ok(value),
        Err(e) => Reply::Error(format!("{e:#}")),
    };
    let _ = send(&mut write, &reply).await;
}

async fn read_request(read: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Result<Request> {
    let mut line = String::new();
    let n = tokio::time::timeout(
        REQUEST_TIMEOUT,
        (&mut *read)
            .take(control::MAX_REQUEST_BYTES)
            .read_line(&mut line),
    )
    .await
    .context("no request within the timeout")?
    .context("reading the request")?;
    if n == 0 {
        bail!("empty request");
    }
    if !line.ends_with('\n') {
        bail!("request longer than {} bytes", control::MAX_REQUEST_BYTES);
    }
    serde_json::from_str(&line).context("malformed request")
}

/// Streams events until the client hangs up or the node stops.
async fn watch(
    server: &Server,
    space: String,
    pattern: String,
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) {
    let subscribed = async {
        let subscription = server.space(&space).await?.subscribe(&pattern).await?;
        anyhow::Ok(subscription)
    }
    .await;
    let mut events = match subscribed {
        Ok(events) => events,
        Err(e) => {
            let _ = send(&mut write, &Reply::Error(format!("{e:#}"))).await;
            return;
        }
    };
    let ack = WatchItem::Watching { space, pattern };
    if send_item(&mut write, &ack).await.is_err() {
        return;
    }
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            delivery = events.next() => {
                let Some(delivery) = delivery else {
                    let _ = send(&mut write, &Reply::Error("the node stopped".into())).await;
                    return;
                };
                if send_item(&mut write, &watch_item(delivery)).await.is_err() {
                    return;
                }
            }
            n = read.read(&mut scratch) => {
                if !matches!(n, Ok(k) if k > 0) {
                    return; // the client hung up
                }
            }
        }
    }
}

/// Holds a lease for a `lock` client until it hangs up (see
/// [`control`]): takes it (giving up if the client leaves while waiting),
/// renews it each time half of its remaining validity has passed, releases
/// it.
async fn lock(
    server: &Server,
    space: &str,
    resource: String,
    ttl_ms: u64,
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) {
    let ttl = Duration::from_millis(ttl_ms);
    let taken = async {
        let space = server.space(space).await?;
        anyhow::Ok(server.node.lock(&space, &resource, ttl).await?)
    };
    // The client sends nothing until it is done: any read that completes
    // (bytes or end of stream) means it is done or gone.
    let mut scratch = [0u8; 256];
    let held = tokio::select! {
        held = taken => held,
        _ = read.read(&mut scratch) => return,
    };
    let mut held = match held {
        Ok(held) => held,
        Err(e) => {
            let _ = send(&mut write, &Reply::Error(format!("{e:#}"))).await;
            return;
        }
    };
    let token = held.token().get();
    let granted = serde_json::to_value(LockGranted {
        resource: resource.clone(),
        token,
    });
    let announced = match granted {
        Ok(granted) => send(&mut write, &Reply::Ok(granted)).await,
        Err(e) => Err(e.into()),
    };
    if announced.is_ok() {
        loop {
            // Half of what is left, not half the ttl: taking or renewing
            // the lease may have used up a good part of the ttl already.
            let period = (held.valid_for() / 2).max(Duration::from_millis(1));
            tokio::select! {
                () = tokio::time::sleep(period) => {
                    if let Err(e) = held.renew().await {
                        let lost = Reply::Error(format!("lease lost: {e:#}"));
                        let _ = send(&mut write, &lost).await;
                        break;
                    }
                }
                _ = read.read(&mut scratch) => break,
            }
        }
    }
    let reply = match held.release().await {
        Ok(()) => serde_json::to_value(LockReleased { resource, token })
            .map_or_else(|e| Reply::Error(e.to_string()), Reply::Ok),
        Err(e) => Reply::Error(format!("{e:#}")),
    };
    let _ = send(&mut write, &reply).await;
}

async fn send_item(write: &mut (impl AsyncWrite + Unpin), item: &WatchItem) -> Result<()> {
    send(write, &Reply::Ok(serde_json::to_value(item)?)).await
}

async fn send(write: &mut (impl AsyncWrite + Unpin), reply: &Reply) -> Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await?;
    Ok(())
}
