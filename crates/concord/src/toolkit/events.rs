//! Agent events: named, JSON-carrying, replicated records of what agents
//! did (`researcher_started`, `researcher_complete`, custom ones), kept in
//! the space's [`EVENTS`] topic for [`EVENT_RETENTION`].
//!
//! This module owns the event's shape, its name rules and `Space::emit`.
//! It must never run a handler (see `when.rs`) and never accept a name a
//! handler could not be registered for.

use std::time::Duration;

use concord_net::wall_clock;
use concord_state::{Replica, StateError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Space};

/// The topic holding a space's agent events (one entry per event, its id
/// the entry id).
pub const EVENTS: &str = "coordination/events";

/// How long an event stays in [`EVENTS`]; handlers registered later than
/// that after it was emitted never see it.
pub const EVENT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME: usize = 64;

/// One agent event, as stored in [`EVENTS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// The event's name, e.g. `researcher_complete`.
    pub name: String,
    /// What it carries.
    pub payload: Value,
    /// The peer id of the node that emitted it.
    pub by: String,
    /// Wall-clock milliseconds since the Unix epoch when it was emitted.
    pub at_ms: u64,
}

/// Checks an event (or handler) name: 1 to [`MAX_EVENT_NAME`] ASCII
/// letters, digits, `_`, `-` or `.`.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_EVENT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::EventName(name.to_owned()))
    }
}

/// Appends the event `name` carrying `payload`, emitted by `by`, to the
/// replica's [`EVENTS`] (the name checked already); returns its id.
pub(crate) fn append_event(
    r: &mut Replica,
    by: &str,
    name: &str,
    payload: Value,
) -> Result<String, StateError> {
    let event = AgentEvent {
        name: name.to_owned(),
        payload,
        by: by.to_owned(),
        at_ms: wall_clock().0,
    };
    let ttl = u64::try_from(EVENT_RETENTION.as_millis()).unwrap_or(u64::MAX);
    r.append_with_ttl(wall_clock(), EVENTS, &event, ttl)
        .map(|(id, _)| id)
}

impl Space {
    /// Emits the event `name` carrying `payload`; returns its id, the same
    /// on every node (so handlers can be idempotent).
    ///
    /// # Errors
    /// [`Error::EventName`] for a name outside the rules above; otherwise
    /// the write failed.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use serde_json::json;
    ///
    /// let id = space.emit("report_ready", json!({"pages": 3})).await?;
    /// let events = space.events("report_ready").await?;
    /// assert_eq!(events[0].0, id);
    /// assert_eq!(events[0].1.payload, json!({"pages": 3}));
    /// assert!(space.emit("no spaces", json!(null)).await.is_err());
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn emit(&self, name: &str, payload: Value) -> Result<String, Error> {
        check_name(name)?;
        let (name, by) = (name.to_owned(), self.holder_name());
        let (id, durable) = self
            .commit(move |r| append_event(r, &by, &name, payload))
            .await?;
        durable.wait().await?;
        Ok(id?)
    }

    /// The retained events named `name`, as `(id, event)` in id order.
    ///
    /// # Errors
    /// The replica could not be read.
    pub async fn events(&self, name: &str) -> Result<Vec<(String, AgentEvent)>, Error> {
        let raw = self.read(|r| r.topic_entries(EVENTS)).await??;
        Ok(raw
            .into_iter()
            .filter_map(
                |(id, value)| match serde_json::from_value::<AgentEvent>(value) {
                    Ok(event) => Some((id, event)),
                    Err(e) => {
                        // A peer's garbage holds up no handler.
                        tracing::warn!(%id, error = %e, "skipping a malformed agent event");
                        None
                    }
                },
            )
            .filter(|(_, e)| e.name == name)
            .collect())
    }
}
