//! The demo's heartbeat step: every agent publishes its heartbeat on an
//! ephemeral channel (`observation/<agent>.heartbeat`) until the reviewer
//! sees every other agent's, and the step checks that no heartbeat added a
//! change to the document. It prints only what it observed.
//!
//! This module owns that step; it never touches the other steps' channels.

use std::time::Duration;

use anyhow::{Result, bail};
use concord::Space;
use serde_json::{Value, json};

use super::agents::{Agent, Log, converge};

/// How long a heartbeat stays visible after it was published.
const TTL: Duration = Duration::from_secs(30);

/// Rounds of heartbeats before the demo gives up on the reviewer seeing them.
const MAX_ROUNDS: u64 = 150;

/// What the heartbeat step observed.
pub(super) struct Heartbeats {
    /// Heartbeats published, all agents together.
    pub published: u64,
    /// Changes in the document (every node) before and after them.
    pub changes: u64,
    /// The agents whose heartbeat the reviewer saw.
    pub seen: Vec<&'static str>,
}

fn channel(space: &Space, agent: &str) -> Result<concord::Ephemeral<Value>> {
    Ok(space.ephemeral(&format!("observation/{agent}.heartbeat"), TTL)?)
}

/// Runs the step; `observer` is the agent whose view is checked.
pub(super) async fn run(agents: &[Agent], observer: usize, log: &mut Log) -> Result<Heartbeats> {
    // The first heartbeat declares each agent's channel: one change each.
    for a in agents {
        channel(&a.space, a.name)?.set(&json!({"beat": 0})).await?;
    }
    converge(agents).await?;
    let changes = agents[0].space.vector_clock().await?.total();
    log.say(
        "all",
        format!(
            "publish heartbeats on ephemeral channels observation/<agent>.heartbeat (ttl {} s)",
            TTL.as_secs()
        ),
    );
    let watcher = &agents[observer];
    let others: Vec<&Agent> = agents.iter().filter(|a| a.name != watcher.name).collect();
    let mut published = agents.len() as u64;
    let mut seen = Vec::new();
    for beat in 1..=MAX_ROUNDS {
        for a in agents {
            channel(&a.space, a.name)?
                .set(&json!({ "beat": beat }))
                .await?;
            published += 1;
        }
        seen.clear();
        for a in &others {
            let values = channel(&watcher.space, a.name)?.get().await?;
            if values.iter().any(|(writer, _)| writer == a.node.actor()) {
                seen.push(a.name);
            }
        }
        if seen.len() == others.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if seen.len() != others.len() {
        bail!("{} saw heartbeats of {seen:?} only", watcher.name);
    }
    for a in agents {
        let now = a.space.vector_clock().await?.total();
        if now != changes {
            bail!("{}'s document went from {changes} to {now} changes", a.name);
        }
    }
    log.say(
        watcher.name,
        format!(
            "sees the heartbeats of {} ({published} published); the document stayed at {changes} changes on every node",
            seen.join(", ")
        ),
    );
    Ok(Heartbeats {
        published,
        changes,
        seen,
    })
}
