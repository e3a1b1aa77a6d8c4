//! An edge node cut off from the hub keeps working, rejoins and converges.
//!
//! The cut is real, as in the CLI demo: the edge node shuts down and
//! restarts from its data directory with no peer to dial (it listens on a
//! new port nobody knows), so it is connected to nobody. Meanwhile the hub
//! sets the deploy target; offline, the edge appends readings (each write
//! durable on its disk) and sets a different target without having seen
//! the hub's. The edge then dials the hub ([`concord::Node::connect`]),
//! both converge ([`concord::Space::converge`]), and the channel's
//! `last_write_wins` policy picks one of the two writes on both nodes.
//!
//! ```no_run
//! # async fn run() -> Result<(), concord_examples::ExampleError> {
//! let report = concord_examples::edge_offline::run().await?;
//! assert!(report.converged_by_policy());
//! print!("{report}");
//! # Ok(()) }
//! ```
//!
//! This module owns the scenario. It must never let the edge reach the
//! hub before the heal, and never report a value it did not read back.

use std::fmt;
use std::time::Duration;

use concord::{ChannelSpec, Policy, Space};
use concord_state::Hlc;
use serde_json::{Value, json};

use crate::ExampleError;
use crate::cluster::{self, DEADLINE, Member};

/// The channel both sides write while apart.
pub const PATH: &str = "intent/deploy.target";

/// The topic of the edge's readings.
pub const READINGS: &str = "observation/edge.readings";

/// Readings the edge appends while offline.
pub const OFFLINE_WRITES: usize = 5;

const SPACE: &str = "fleet";

/// One write to [`PATH`], read back from the history after the heal.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The node that wrote it.
    pub node: String,
    /// Its hex actor id.
    pub actor: String,
    /// The write's hybrid logical clock.
    pub hlc: Option<Hlc>,
    /// What it wrote.
    pub value: Value,
}

/// What one node read.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The node.
    pub node: String,
    /// [`PATH`]'s value.
    pub target: Option<Value>,
    /// Entries in [`READINGS`].
    pub readings: usize,
}

/// What the scenario saw.
#[derive(Debug, Clone)]
pub struct EdgeReport {
    /// The channel's declared policy, read back.
    pub policy: String,
    /// Peers the edge had after its restart (none: cut off).
    pub offline_peers: usize,
    /// Sequence numbers of the edge's offline writes, each acknowledged
    /// durable by its node.
    pub offline_seqs: Vec<u64>,
    /// Both nodes' reads while apart.
    pub apart: Vec<Reading>,
    /// How long the edge took to reach the hub, and both to converge.
    pub heal: Duration,
    /// How long the two replicas took to converge.
    pub converge: Duration,
    /// The writes to [`PATH`] in the history after the heal.
    pub candidates: Vec<Candidate>,
    /// Both nodes' reads after converging.
    pub after: Vec<Reading>,
}

impl EdgeReport {
    /// Two candidates from two nodes; after the heal both nodes read the
    /// one `last_write_wins` picks (highest clock, then actor) and all of
    /// the edge's offline readings.
    pub fn converged_by_policy(&self) -> bool {
        let winner = self
            .candidates
            .iter()
            .max_by(|a, b| (a.hlc, &a.actor).cmp(&(b.hlc, &b.actor)));
        let two_sides =
            self.candidates.len() == 2 && self.candidates[0].node != self.candidates[1].node;
        two_sides
            && self.offline_peers == 0
            && winner.is_some_and(|w| {
                self.after
                    .iter()
                    .all(|r| r.target.as_ref() == Some(&w.value) && r.readings == OFFLINE_WRITES)
            })
    }
}

async fn read(m: &Member) -> Result<Reading, ExampleError> {
    Ok(Reading {
        node: m.name.clone(),
        target: m.space.get(PATH).await?,
        readings: m.space.topic::<Value>(READINGS)?.entries().await?.len(),
    })
}

/// Runs the scenario.
///
/// # Errors
/// A node failed, the edge came back connected, or the two did not meet
/// or converge within 15 s.
#[tracing::instrument(level = "info")]
pub async fn run() -> Result<EdgeReport, ExampleError> {
    let dir = tempfile::tempdir().map_err(ExampleError::io("making a temp dir"))?;
    let mut members = cluster::joined(dir.path(), 2, SPACE).await?;
    members[0]
        .space
        .declare(PATH, ChannelSpec::last_value(Policy::LastWriteWins))
        .await?;
    converge(&members).await?;

    // The cut: the edge leaves, the hub writes, the edge comes back alone.
    let edge = members
        .pop()
        .ok_or_else(|| ExampleError::Step("no edge node".into()))?;
    let edge_name = edge.name.clone();
    drop(edge.space);
    edge.node.shutdown().await?;
    let hub = &members[0];
    hub.space.put(PATH, json!("central-region")).await?;
    let edge = cluster::start(&edge_name, &dir.path().join(&edge_name), SPACE).await?;
    let offline_peers = edge.node.peers().await?.len();
    if offline_peers != 0 {
        return Err(ExampleError::Step(format!(
            "{edge_name} came back connected to {offline_peers} peer(s)"
        )));
    }
    let readings = edge.space.topic::<Value>(READINGS)?;
    let mut offline_seqs = Vec::with_capacity(OFFLINE_WRITES + 1);
    for i in 0..OFFLINE_WRITES {
        readings.append(&json!({"sensor": "door", "n": i})).await?;
        offline_seqs.push(edge.space.vector_clock().await?.get(edge.node.actor()));
    }
    let receipt = edge.space.put(PATH, json!("edge-cache")).await?;
    offline_seqs.push(receipt.seq);
    let apart = vec![read(hub).await?, read(&edge).await?];

    // The heal.
    let heal = edge
        .node
        .connect(&[(hub.node.peer_id(), hub.addr.clone())], DEADLINE)
        .await?;
    members.push(edge);
    let converge = converge(&members).await?;
    let policy = members[0]
        .space
        .with(|r| r.spec(PATH))
        .await?
        .map_err(concord::Error::from)?
        .map_or_else(|| "undeclared".to_owned(), |s| s.policy.to_string());
    let history = members[0]
        .space
        .with(|r| r.history(PATH))
        .await?
        .map_err(concord::Error::from)?;
    let candidates = history
        .into_iter()
        .filter_map(|h| {
            let value = h.value?;
            let node = members
                .iter()
                .find(|m| m.node.actor().to_hex_string() == h.actor)
                .map_or_else(|| "unknown".to_owned(), |m| m.name.clone());
            Some(Candidate {
                node,
                actor: h.actor,
                hlc: h.hlc,
                value,
            })
        })
        .collect();
    let mut after = Vec::with_capacity(members.len());
    for m in &members {
        after.push(read(m).await?);
    }
    cluster::shutdown(members).await?;
    Ok(EdgeReport {
        policy,
        offline_peers,
        offline_seqs,
        apart,
        heal,
        converge,
        candidates,
        after,
    })
}

async fn converge(members: &[Member]) -> Result<Duration, ExampleError> {
    let spaces: Vec<Space> = members.iter().map(|m| m.space.clone()).collect();
    Ok(Space::converge(&spaces, DEADLINE).await?)
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "nothing".to_owned(), Value::to_string)
}

impl fmt::Display for EdgeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "edge restarted from its data directory: connected to {} peer(s)",
            self.offline_peers
        )?;
        writeln!(
            f,
            "offline, the edge wrote {} change(s), each durable on its disk (seqs {:?})",
            self.offline_seqs.len(),
            self.offline_seqs
        )?;
        for r in &self.apart {
            writeln!(
                f,
                "apart: {} reads {PATH} = {}, {} edge reading(s)",
                r.node,
                shown(r.target.as_ref()),
                r.readings
            )?;
        }
        writeln!(
            f,
            "the edge dialed the hub: connected in {} ms, converged in {} ms",
            self.heal.as_millis(),
            self.converge.as_millis()
        )?;
        for c in &self.candidates {
            let hlc = c.hlc.map_or_else(|| "none".to_owned(), |h| h.to_string());
            writeln!(f, "candidate: {} by {} (hlc {hlc})", c.value, c.node)?;
        }
        writeln!(f, "policy of {PATH}: {}", self.policy)?;
        for r in &self.after {
            writeln!(
                f,
                "after: {} reads {PATH} = {}, {} edge reading(s)",
                r.node,
                shown(r.target.as_ref()),
                r.readings
            )?;
        }
        writeln!(f, "converged by the policy: {}", self.converged_by_policy())
    }
}
