//! Schema versions across two real nodes on loopback inside one process:
//! one node's code stays on version 1 of a channel, the other registers a
//! migration renaming a field and raises the channel to version 2. The new
//! node reads the old writes upgraded, before and after the raise reached
//! the old node; the old node keeps reading its version and refuses a
//! version-2 value with a clear error; a channel raised without the old
//! node having the migration reads as `StateError::NoMigration` until it
//! registers it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{eventually, joined, shutdown};
use concord::{ChannelSpec, Delivery, Error, Policy, Space, StateError};
use futures::StreamExt;
use serde_json::{Value, json};

const PLAN: &str = "intent/plan";
const OTHER: &str = "intent/other";

/// Version 1 → 2: `step` is renamed `task`.
fn rename_step(mut v: Value) -> Result<Value, String> {
    let step = v
        .as_object_mut()
        .and_then(|o| o.remove("step"))
        .ok_or_else(|| format!("no step in {v}"))?;
    v["task"] = step;
    Ok(v)
}

fn lww() -> ChannelSpec {
    ChannelSpec::last_value(Policy::LastWriteWins)
}

/// The channel's replicated version as `space` holds it.
async fn declared_version(space: &Space, path: &'static str) -> u32 {
    space
        .with(move |r| r.spec(path).unwrap().map_or(0, |s| s.version))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_writes_are_upgraded_on_receipt_and_missing_migrations_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = joined(dir.path(), 2).await;
    let old = nodes[0].space("team").await.unwrap();
    let new = nodes[1].space("team").await.unwrap();

    // The old code declares its channel at startup (version 1) and writes.
    old.declare(PLAN, lww()).await.unwrap();
    old.put(PLAN, json!({"step": "build"})).await.unwrap();
    eventually(|| async { new.get(PLAN).await.unwrap() == Some(json!({"step": "build"})) }).await;

    // The new code registers the migration and raises the channel.
    new.migration(PLAN, 1, rename_step).await.unwrap();
    let mut events = new.subscribe("intent/*").await.unwrap();
    new.declare(PLAN, lww().with_version(2)).await.unwrap();
    assert_eq!(new.schema_version(PLAN).await.unwrap(), 2);
    assert_eq!(new.get(PLAN).await.unwrap(), Some(json!({"task": "build"})));

    // The raise reaches the old node, whose code stays on version 1.
    eventually(|| async { declared_version(&old, PLAN).await == 2 }).await;
    assert_eq!(old.schema_version(PLAN).await.unwrap(), 1);

    // A version-1 write after the upgrade is upgraded on receipt, for
    // readers and subscribers alike; its writer reads it as it wrote it.
    old.put(PLAN, json!({"step": "test"})).await.unwrap();
    eventually(|| async { new.get(PLAN).await.unwrap() == Some(json!({"task": "test"})) }).await;
    let upgraded = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(delivery) = events.next().await {
            if let Delivery::Event(e) = delivery
                && e.path.as_str() == PLAN
                && e.new == Some(json!({"task": "test"}))
            {
                return e.old;
            }
        }
        panic!("the subscription ended")
    })
    .await
    .expect("no event for the upgraded write");
    assert_eq!(upgraded, Some(json!({"task": "build"})));
    let typed = new.last_value::<Value>(PLAN).unwrap();
    assert_eq!(typed.get().await.unwrap(), Some(json!({"task": "test"})));
    assert_eq!(old.get(PLAN).await.unwrap(), Some(json!({"step": "test"})));

    // A version-2 value is newer than the old code knows: a clear error.
    new.put(PLAN, json!({"task": "ship"})).await.unwrap();
    eventually(|| async { old.get(PLAN).await.is_err() }).await;
    let err = old.get(PLAN).await.unwrap_err();
    assert!(
        matches!(&err, Error::Schema(StateError::NewerSchema { path, version: 2, current: 1 }) if path == PLAN),
        "{err}"
    );

    // A channel the old node follows without declaring it, raised by the
    // new node: the old node has no migration for its own write.
    old.put(OTHER, json!({"step": "x"})).await.unwrap();
    eventually(|| async { new.get(OTHER).await.unwrap().is_some() }).await;
    new.migration(OTHER, 1, rename_step).await.unwrap();
    new.declare(OTHER, lww().with_version(2)).await.unwrap();
    eventually(|| async { old.get(OTHER).await.is_err() }).await;
    let err = old.get(OTHER).await.unwrap_err();
    assert!(
        matches!(&err, Error::Schema(StateError::NoMigration { path, from: 1, to: 2, missing: 1 }) if path == OTHER),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(OTHER) && text.contains("version 1") && text.contains("version 2"),
        "{text}"
    );
    let typed = old.last_value::<Value>(OTHER).unwrap();
    assert!(matches!(
        typed.get().await,
        Err(Error::Schema(StateError::NoMigration { .. }))
    ));
    // Registering the migration makes the held value readable: nothing was lost.
    old.migration(OTHER, 1, rename_step).await.unwrap();
    assert_eq!(old.get(OTHER).await.unwrap(), Some(json!({"task": "x"})));
    assert_eq!(old.get(OTHER).await.unwrap(), new.get(OTHER).await.unwrap());

    drop((old, new, typed, events));
    shutdown(nodes).await;
}
