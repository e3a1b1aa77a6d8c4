//! The demo's cast: one real node per agent (its own data directory, its
//! own loopback listen address), the wait for convergence, the names that
//! stand for actor ids, and the timeline the steps write to.
//!
//! This module owns starting nodes and reading whether they agree; it never
//! writes to a space and never prints.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use concord::{Multiaddr, Node, Space};
use serde_json::{Value, json};

use super::SPACE;

/// How long a node may take to listen, and nodes to converge.
const DEADLINE: Duration = Duration::from_secs(15);

/// One agent: its node, the demo's space on it, and where it listens.
pub(super) struct Agent {
    pub name: &'static str,
    pub node: Node,
    pub space: Space,
    /// The node's own listen address.
    pub addr: Multiaddr,
}

impl Agent {
    /// The last 8 characters of the node's peer id.
    pub fn short_peer(&self) -> String {
        let id = self.node.peer_id().to_string();
        id[id.len().saturating_sub(8)..].to_string()
    }
}

/// Starts `name`'s node in `dir`, joining through `boot` (alone if `None`),
/// and opens the demo's space with the `max` merge function registered.
pub(super) async fn start(
    name: &'static str,
    dir: &Path,
    boot: Option<&Multiaddr>,
) -> Result<Agent> {
    let mut b = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0".parse()?);
    if let Some(addr) = boot {
        b = b.bootstrap(addr.clone());
    }
    let node = b.build().await?;
    let addr = node
        .wait_listening(DEADLINE)
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("{name} is not listening"))?;
    let space = node.space(SPACE).await?;
    space
        .with(|r| {
            r.register_merge("max", |values| {
                values
                    .iter()
                    .filter_map(Value::as_f64)
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                    .map_or(Value::Null, |m| json!(m))
            })
        })
        .await?;
    Ok(Agent {
        name,
        node,
        space,
        addr,
    })
}

/// Waits until every agent holds the same vector clock (or fails after 15 s).
pub(super) async fn converge(agents: &[Agent]) -> Result<Duration> {
    let spaces: Vec<Space> = agents.iter().map(|a| a.space.clone()).collect();
    Ok(Space::converge(&spaces, DEADLINE).await?)
}

/// The agents' names by the hex of their actor ids.
#[derive(Default)]
pub(super) struct Names(BTreeMap<String, &'static str>);

impl Names {
    /// Names `agent`'s actor (again after a restart: a new incarnation has a new id).
    pub fn learn(&mut self, agent: &Agent) {
        self.0
            .insert(agent.node.actor().to_hex_string(), agent.name);
    }

    /// The agent that writes as `actor_hex`; `genesis` for the fixed actors
    /// of an epoch's first document, else the id's first 8 digits.
    pub fn of(&self, actor_hex: &str) -> String {
        match self.0.get(actor_hex) {
            Some(name) => (*name).to_string(),
            None if actor_hex.starts_with("636f6e636f7264") => "genesis".to_string(),
            None => actor_hex.chars().take(8).collect(),
        }
    }
}

/// The timeline: what happened, when, and who did it.
pub(super) struct Log {
    start: Instant,
    pub lines: Vec<String>,
}

impl Log {
    pub fn new() -> Log {
        Log {
            start: Instant::now(),
            lines: Vec::new(),
        }
    }

    pub fn say(&mut self, who: &str, what: impl Into<String>) {
        let what = what.into();
        self.lines.push(format!(
            "{:>6} ms  {who:<9} {what}",
            self.start.elapsed().as_millis()
        ));
    }
}
