//! The control-socket protocol between `concord node` and the client
//! commands (`put`, `get`, `watch`, `lock`, `inspect`, `export`, `top`).
//!
//! A Unix socket `DIR/control.sock` inside the node's data directory; one
//! connection per command. The client writes one JSON [`Request`] line; the
//! node answers with one [`Reply`] line, except `watch`, which answers with a
//! [`Reply`] acknowledging the subscription and then streams one [`Reply`]
//! per [`WatchItem`] until either side hangs up; and `lock`, which answers
//! with a [`LockGranted`] once the lease is held, keeps it (renewing it
//! whenever half of its remaining validity has passed) until the client
//! shuts down its writing side, then releases it and answers with a
//! [`LockReleased`]. If the lease is lost meanwhile, the node sends a
//! [`Reply::Error`] instead and closes. A client that disappears releases
//! its lock the same way. `backup` answers with a [`BackupReady`] line
//! followed by the snapshot's raw bytes.
//!
//! This module owns the wire format and the socket's location only; it never
//! touches a node, a replica or the terminal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// File name of the control socket inside a node's data directory.
pub const SOCKET_FILE: &str = "control.sock";

/// Longest request line the node reads (values are capped far below this).
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// The control socket of the node whose data directory is `data`.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET_FILE)
}

/// A command sent to the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Write a JSON value to a `LastValue` channel, or with `ttl_ms` an
    /// ephemeral value (answered with an [`EphemeralPutResult`]).
    Put {
        /// The space (opened on demand).
        space: String,
        /// The channel path, `family/name`.
        path: String,
        /// The value.
        value: Value,
        /// Write an ephemeral value living this long (the TTL of a new
        /// channel; one declared already keeps its own).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    /// Read a channel's visible value.
    Get {
        /// The space (opened on demand).
        space: String,
        /// The channel path.
        path: String,
    },
    /// Stream events on channels matching a glob.
    Watch {
        /// The space (opened on demand).
        space: String,
        /// A glob on channel paths, e.g. `intent/*`.
        pattern: String,
    },
    /// Hold the lease on a resource for as long as the connection stays open.
    Lock {
        /// The space whose `coordination/lock_holders` mirrors the holder.
        space: String,
        /// The resource name.
        resource: String,
        /// The lease's time to live in milliseconds (renewed whenever half
        /// of its remaining validity has passed).
        ttl_ms: u64,
    },
    /// Describe the node and one or all of its open spaces.
    Inspect {
        /// Only this space (opened on demand); every open space when absent.
        space: Option<String>,
        /// Also name each channel's last writer ([`ChannelRow::writer`]);
        /// this reads the space's history, so `top` asks once and then
        /// follows the watch stream.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        writers: bool,
    },
    /// Send a consistent snapshot of a space for `concord backup`: answered
    /// with a [`BackupReady`] line followed by exactly its `bytes` raw bytes
    /// (`Replica::durable_snapshot`), then the node closes.
    Backup {
        /// The space (the client checks that it exists on disk first).
        space: String,
    },
    /// Dump a space.
    Export {
        /// The space (opened on demand).
        space: String,
        /// What to dump.
        format: ExportFormat,
    },
}

/// The formats of `concord export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Every channel's visible value, as one JSON object keyed by path.
    Json,
    /// The space's automerge document (`Automerge::save` bytes).
    Automerge,
}

/// One line from the node: a result or an error message for the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Success; the payload's shape depends on the request.
    Ok(Value),
    /// Failure, phrased for the user.
    Error(String),
}

/// The result of a `put`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutResult {
    /// The space written.
    pub space: String,
    /// The channel written.
    pub path: String,
    /// The new change's sequence number for this node's actor.
    pub seq: u64,
    /// The new change's hash (hex).
    pub change: String,
    /// Its hybrid logical clock, `wall.logical`.
    pub hlc: String,
    /// Whether the change was on durable storage when the node answered.
    pub durable: bool,
}

/// The result of a `put --ttl`: an ephemeral value, in no change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EphemeralPutResult {
    /// The space written.
    pub space: String,
    /// The channel written.
    pub path: String,
    /// The write's hybrid logical clock, `wall.logical`.
    pub hlc: String,
    /// How long the value lives, in ms (the channel's declared TTL).
    pub ttl_ms: u64,
    /// Always true: the value is not in the document nor on disk.
    pub ephemeral: bool,
}

/// The result of a `get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetResult {
    /// The visible value (`null` for a declared channel holding nothing).
    pub value: Value,
}

/// The first reply to a `lock`: the lease is held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockGranted {
    /// The resource.
    pub resource: String,
    /// The fencing token.
    pub token: u64,
}

/// The last reply to a `lock`: the lease was released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockReleased {
    /// The resource.
    pub resource: String,
    /// The token of the lease given up.
    pub token: u64,
}

/// One item of a `watch` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchItem {
    /// The node has subscribed; events follow.
    Watching {
        /// The space.
        space: String,
        /// The glob.
        pattern: String,
    },
    /// A visible change to a channel.
    Event {
        /// The channel.
        path: String,
        /// Topic entry id or set member, for those kinds.
        key: Option<String>,
        /// The value before.
        old: Option<Value>,
        /// The value after.
        new: Option<Value>,
        /// `local` or `remote`.
        origin: String,
        /// The writer's actor id (hex).
        actor: String,
        /// The change's sequence number for that actor.
        seq: u64,
        /// The change's hybrid logical clock, if it carries one.
        hlc: Option<String>,
        /// An ephemeral value's write or expiry (`seq` is 0 then: no change
        /// made it); absent for document events.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ephemeral: bool,
    },
    /// The node dropped `missed` older events for this watcher.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

/// What `inspect` reports about a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectReport {
    /// The node's peer id.
    pub peer_id: String,
    /// The automerge actor id the node writes as (hex; changes with each incarnation).
    pub actor: String,
    /// The node's listen addresses.
    pub listen: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerRow>,
    /// The spaces inspected.
    pub spaces: Vec<SpaceReport>,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRow {
    /// Its peer id.
    pub peer_id: String,
    /// Address of one of its connections, if known.
    pub address: Option<String>,
    /// Smoothed round trip of directed sync frames, in ms, once measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Bytes of directed sync frames sent to it since it connected.
    #[serde(default)]
    pub sent_bytes: u64,
    /// Bytes of directed frames and gossip received from it since it connected.
    #[serde(default)]
    pub received_bytes: u64,
}

/// What `inspect` reports about one space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceReport {
    /// The space's name.
    pub name: String,
    /// Highest change sequence number held per actor (hex actor id).
    pub vector_clock: BTreeMap<String, u64>,
    /// Every declared channel.
    pub channels: Vec<ChannelRow>,
    /// Queue sizes and counters of the replica.
    pub queue: QueueStats,
    /// Where the space's epoch stands.
    pub epoch: EpochRow,
}

/// A space's epoch (see `concord_state::epoch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// The epoch's id (short hex).
    pub id: String,
    /// Switches this node made since the space opened here.
    pub number: u64,
    /// Changes the epoch's cut holds.
    pub cut_changes: u64,
    /// Changes added since the cut.
    pub changes: u64,
    /// Bytes of those changes.
    pub bytes: u64,
    /// Operations held in memory (this epoch's document and retained ones).
    pub ops: u64,
    /// Earlier epochs retained (short hex ids, oldest first).
    pub retained: Vec<String>,
}

/// One declared channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelRow {
    /// `family/name`.
    pub path: String,
    /// `last_value`, `topic`, `counter`, `set` or `ephemeral`.
    pub kind: String,
    /// The conflict policy (meaningful for `last_value` only).
    pub policy: String,
    /// The channel's schema version (see `concord_state::schema`); 1 from
    /// a node that predates versions.
    #[serde(default = "concord_state::schema::first_version")]
    pub version: u32,
    /// The visible value (`null` if it cannot be read: see `unreadable`).
    pub value: Value,
    /// Why the channel's value cannot be read here, e.g. a value of a
    /// schema version this node has no migration from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// For an ephemeral channel: its TTL in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// For an ephemeral channel: how many live values it holds (one per writer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<usize>,
    /// The causally last write to the channel, when asked for
    /// (`Request::Inspect { writers: true, .. }`) and there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<WriterRow>,
}

/// Who made a write: its change's actor, sequence number and clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriterRow {
    /// The writer's actor id (hex).
    pub actor: String,
    /// The change's sequence number for that actor.
    pub seq: u64,
    /// The change's hybrid logical clock, `wall.logical`, if it carries one.
    pub hlc: Option<String>,
}

/// Queue sizes and counters of a replica (`Replica::stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Changes waiting for their dependencies.
    pub pending: usize,
    /// Active subscriptions.
    pub subscribers: usize,
    /// Unresolved conflicts on `reject` channels.
    pub conflicts: usize,
    /// Changes held.
    pub changes: u64,
    /// Bytes of snapshot plus log on disk.
    pub bytes_on_disk: u64,
    /// Declared channels.
    pub channels: usize,
    /// Actors in the vector clock.
    pub actors: usize,
    /// Live ephemeral values (in memory only; absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ephemeral_values: u64,
    /// Ephemeral values from peers dropped because the space was full
    /// (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ephemeral_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The first reply to a `backup`: the snapshot's raw bytes follow the line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReady {
    /// The space.
    pub space: String,
    /// Bytes of the snapshot that follow.
    pub bytes: u64,
}

/// The result of an `export`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportResult {
    /// Every channel's visible value keyed by path.
    Json(BTreeMap<String, Value>),
    /// The automerge document, hex-encoded for the JSON line.
    Automerge(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shapes_are_stable() {
        let req = Request::Get {
            space: "team".into(),
            path: "observation/ci".into(),
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"cmd": "get", "space": "team", "path": "observation/ci"})
        );
        assert_eq!(
            serde_json::to_value(Reply::Error("boom".into())).unwrap(),
            json!({"error": "boom"})
        );
        let lock = Request::Lock {
            space: "team".into(),
            resource: "github.main".into(),
            ttl_ms: 30_000,
        };
        assert_eq!(
            serde_json::to_value(&lock).unwrap(),
            json!({"cmd": "lock", "space": "team", "resource": "github.main", "ttl_ms": 30000})
        );
        assert_eq!(
            serde_json::to_value(WatchItem::Lagged { missed: 3 }).unwrap(),
            json!({"type": "lagged", "missed": 3})
        );
        // Ephemeral additions leave the other shapes as they were.
        let put = Request::Put {
            space: "team".into(),
            path: "observation/ci".into(),
            value: json!(1),
            ttl_ms: None,
        };
        assert_eq!(
            serde_json::to_value(&put).unwrap(),
            json!({"cmd": "put", "space": "team", "path": "observation/ci", "value": 1})
        );
        let event = |ephemeral| WatchItem::Event {
            path: "observation/ci".into(),
            key: None,
            old: None,
            new: Some(json!(1)),
            origin: "local".into(),
            actor: "ab".into(),
            seq: 0,
            hlc: None,
            ephemeral,
        };
        let document = serde_json::to_value(event(false)).unwrap();
        assert!(document.get("ephemeral").is_none(), "{document}");
        assert_eq!(
            serde_json::to_value(event(true)).unwrap()["ephemeral"],
            true
        );
        // `top`'s additions leave `inspect` as it was on the wire.
        let inspect = |writers| Request::Inspect {
            space: Some("team".into()),
            writers,
        };
        assert_eq!(
            serde_json::to_value(inspect(false)).unwrap(),
            json!({"cmd": "inspect", "space": "team"})
        );
        assert_eq!(
            serde_json::from_value::<Request>(json!({"cmd": "inspect", "space": "team"})).unwrap(),
            inspect(false)
        );
        assert_eq!(
            serde_json::to_value(inspect(true)).unwrap()["writers"],
            true
        );
        let peer: PeerRow =
            serde_json::from_value(json!({"peer_id": "p", "address": null})).unwrap();
        assert_eq!(
            (peer.rtt_ms, peer.sent_bytes, peer.received_bytes),
            (None, 0, 0)
        );
    }
}
