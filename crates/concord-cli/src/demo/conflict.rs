//! The demo's conflict step, made concurrent by a partition: the deployer
//! leaves; the builder proposes a release version and the nodes still up
//! get it; the deployer comes back from its data directory with no peer
//! (nobody knows its new address, so it is cut off) and proposes another
//! version without having seen the builder's; it dials the planner, the
//! partition heals, and every node lists the same conflict, which the
//! `reject` policy keeps out of the value until the planner resolves it.
//!
//! This module owns that step. It writes only `intent/release.version` and
//! the planner's tag in `intent/ops`, and it logs nothing it has not read
//! from the replicas (or the network) first: it fails rather than tell a
//! story that did not happen.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use concord::Node;
use concord_state::{Conflict, Replica, StateError};
use serde_json::{Value, json};

use super::agents::{Agent, Log, Names, converge, start};

/// The `reject` channel the two proposals conflict on.
pub(super) const PATH: &str = "intent/release.version";

/// The builder's proposal (and the planner's resolution).
const BUILDER_PROPOSES: &str = "1.4.1";

/// The deployer's proposal, written while it is cut off.
const DEPLOYER_PROPOSES: &str = "2.0.0";

/// Runs the step on `agents` (planner, builder, reviewer, deployer, the
/// deployer's data directory in `deployer_dir`). Returns the conflict every
/// node listed once the partition healed.
pub(super) async fn run(
    agents: &mut Vec<Agent>,
    deployer_dir: &Path,
    names: &mut Names,
    log: &mut Log,
) -> Result<Conflict> {
    let deployer = agents.pop().context("no deployer")?;
    let name = deployer.name;
    deployer.node.shutdown().await?;
    log.say(name, "leaves (clean shutdown)");

    let builder = &agents[1];
    builder.space.put(PATH, json!(BUILDER_PROPOSES)).await?;
    log.say(builder.name, format!("proposes release {BUILDER_PROPOSES}"));
    let took = converge(agents).await?;
    let (value, _) = everywhere(agents, read).await?;
    log.say(
        "others",
        format!(
            "{} converged in {} ms: all read {PATH} = {}",
            list(agents),
            took.as_millis(),
            shown(&value)
        ),
    );

    let back = start(name, deployer_dir, None).await?;
    names.learn(&back);
    let peers = back.node.peers().await?;
    if !peers.is_empty() {
        bail!("{name} came back connected to {} peer(s)", peers.len());
    }
    let before = back.space.get(PATH).await?;
    log.say(
        name,
        format!(
            "restarts from its data directory with no peer: peer {} on {}, connected to nobody; reads {PATH} = {}",
            back.short_peer(),
            back.addr,
            shown(&before)
        ),
    );
    back.space.put(PATH, json!(DEPLOYER_PROPOSES)).await?;
    log.say(
        name,
        format!(
            "proposes release {DEPLOYER_PROPOSES} while cut off (it has not seen {BUILDER_PROPOSES})"
        ),
    );
    heal(&back.node, agents).await?;
    log.say(
        name,
        format!(
            "dials {} at their addresses: the partition heals",
            list(agents)
        ),
    );
    agents.push(back);
    let took = converge(agents).await?;
    let (value, conflicts) = everywhere(agents, read).await?;
    let conflict = conflicts
        .into_iter()
        .find(|c| c.path == PATH)
        .with_context(|| format!("no conflict on {PATH} after the heal"))?;
    log.say(
        "all",
        format!(
            "converged in {} ms; every node lists a conflict on {PATH}: {}",
            took.as_millis(),
            conflict
                .candidates
                .iter()
                .map(|c| format!("{} by {} (hlc {})", c.value, names.of(&c.actor), c.hlc))
                .collect::<Vec<_>>()
                .join(" vs ")
        ),
    );
    if value != conflict.agreed {
        bail!(
            "{PATH} reads {value:?}, not the agreed {:?}",
            conflict.agreed
        );
    }
    log.say(
        "all",
        format!(
            "policy reject: neither proposal is the value; every node reads {PATH} = {} (the value both writers replaced) and lists the conflict in coordination/conflicts",
            shown(&value)
        ),
    );

    let planner = &agents[0];
    planner.space.put(PATH, json!(BUILDER_PROPOSES)).await?;
    planner
        .space
        .topic::<Value>("intent/ops")?
        .append(&json!({"agent": planner.name, "op": format!("tag {BUILDER_PROPOSES}")}))
        .await?;
    log.say(
        planner.name,
        format!(
            "resolves the conflict: writes release {BUILDER_PROPOSES} over both proposals; appends 'tag {BUILDER_PROPOSES}' to intent/ops"
        ),
    );
    let took = converge(agents).await?;
    let (value, conflicts) = everywhere(agents, read).await?;
    log.say(
        "all",
        format!(
            "converged in {} ms: every node reads {PATH} = {}, {} conflict(s) left",
            took.as_millis(),
            shown(&value),
            conflicts.len()
        ),
    );
    Ok(conflict)
}

/// Connects `node` to every agent in `to` and waits until they are all
/// its peers (each then exchanges summaries with it at once).
async fn heal(node: &Node, to: &[Agent]) -> Result<()> {
    let peers: Vec<_> = to
        .iter()
        .map(|a| (a.node.peer_id(), a.addr.clone()))
        .collect();
    node.connect(&peers, Duration::from_secs(15))
        .await
        .with_context(|| format!("could not reach {}", list(to)))?;
    Ok(())
}

/// What this step reads: the channel's value and the space's conflicts.
fn read(r: &mut Replica) -> Result<(Option<Value>, Vec<Conflict>), StateError> {
    Ok((r.get(PATH)?, r.conflicts()))
}

/// `f` of every agent's replica, which must be the same on all of them.
async fn everywhere<R: PartialEq + std::fmt::Debug + Send + 'static>(
    agents: &[Agent],
    f: fn(&mut Replica) -> Result<R, StateError>,
) -> Result<R> {
    let mut first: Option<R> = None;
    for a in agents {
        let got = a.space.with(f).await??;
        match &first {
            Some(want) if *want != got => {
                bail!("{} reads {got:?}, another node {want:?}", a.name)
            }
            Some(_) => {}
            None => first = Some(got),
        }
    }
    first.context("no agents")
}

fn shown(value: &Option<Value>) -> String {
    value
        .as_ref()
        .map_or("nothing".to_string(), Value::to_string)
}

fn list(agents: &[Agent]) -> String {
    agents.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}
