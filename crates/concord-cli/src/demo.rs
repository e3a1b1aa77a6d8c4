//! `concord demo`: four real nodes on loopback (libp2p over TCP, each with
//! its own data directory and listen address) coordinate a small release.
//! They publish heartbeats on ephemeral channels (`demo/heartbeats.rs`),
//! write at once under every conflict policy (`demo/policies.rs` says what
//! each policy made of the writes), and two of them propose release versions
//! across a partition (`demo/conflict.rs`). The demo prints the timeline,
//! the events one node's subscription delivered, the states and every
//! node's vector clock (`demo/report.rs`).
//!
//! This module owns the order of the steps. It must never print a fact it
//! did not read from the replicas: it checks convergence before saying so,
//! and fails rather than tell a story that did not happen.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use concord::{ChannelSpec, Delivery, Origin, Policy};
use futures::StreamExt;
use serde_json::{Value, json};

use self::agents::{Agent, Log, Names, converge, start};

mod agents;
mod conflict;
mod heartbeats;
mod policies;
mod report;

const SPACE: &str = "release";
const AGENTS: [&str; 4] = ["planner", "builder", "reviewer", "deployer"];

/// The channels every agent writes at once, one per policy or kind.
const WRITTEN_AT_ONCE: [&str; 6] = [
    "observation/ci.status",
    "coordination/deploy.owner",
    "observation/load.peak",
    "intent/ops",
    "coordination/api.calls",
    "coordination/workers",
];

/// Runs the demo on a fresh tokio runtime.
pub fn run(as_json: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(scenario(as_json))
}

/// The channels the planner declares.
fn channels() -> [(&'static str, ChannelSpec); 7] {
    [
        (
            "observation/ci.status",
            ChannelSpec::last_value(Policy::LastWriteWins),
        ),
        (
            "coordination/deploy.owner",
            ChannelSpec::last_value(Policy::FirstWriteWins),
        ),
        (conflict::PATH, ChannelSpec::last_value(Policy::Reject)),
        (
            "observation/load.peak",
            ChannelSpec::last_value(Policy::Merge("max".into())),
        ),
        ("intent/ops", ChannelSpec::topic()),
        ("coordination/api.calls", ChannelSpec::counter()),
        ("coordination/workers", ChannelSpec::set()),
    ]
}

async fn scenario(as_json: bool) -> Result<()> {
    let dirs: Vec<tempfile::TempDir> = AGENTS
        .iter()
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut log = Log::new();
    let mut names = Names::default();
    let mut agents: Vec<Agent> = Vec::new();
    for (name, dir) in AGENTS.iter().zip(&dirs) {
        let boot = agents.first().map(|first| first.addr.clone());
        let agent = start(name, dir.path(), boot.as_ref()).await?;
        let joins = match agents.first() {
            Some(first) => format!("joins through the {}", first.name),
            None => "first node".to_string(),
        };
        log.say(
            name,
            format!(
                "node up: peer {} listening on {} ({joins})",
                agent.short_peer(),
                agent.addr
            ),
        );
        names.learn(&agent);
        agents.push(agent);
    }
    let mut watch = agents[2].space.subscribe("*").await?;

    // 1. The planner declares the channels and proposes a version.
    let planner = &agents[0].space;
    let declared = channels();
    for (path, spec) in declared.clone() {
        planner.declare(path, spec).await?;
    }
    planner.put(conflict::PATH, json!("1.4.0")).await?;
    log.say(
        "planner",
        format!(
            "declares {} channels, proposes release 1.4.0",
            declared.len()
        ),
    );
    let took = converge(&agents).await?;
    log.say("all", format!("converged in {} ms", took.as_millis()));

    // 1b. Heartbeats on ephemeral channels: seen by the others, not stored.
    let beats = heartbeats::run(&agents, 2, &mut log).await?;

    // 2. Everyone writes at once.
    let claims = write_at_once(&agents).await?;
    let stored = claims.iter().filter(|c| **c).count();
    log.say(
        "all",
        format!(
            "write at once to {} channels; deploy.owner claims: {stored} stored, {} refused (already set when written)",
            WRITTEN_AT_ONCE.len(),
            claims.len() - stored
        ),
    );
    let took = converge(&agents).await?;
    log.say("all", format!("converged in {} ms", took.as_millis()));
    let outcomes = policies::outcomes(&agents[0].space, &WRITTEN_AT_ONCE, &names).await?;
    let mid_state = report::same_state(&agents).await?;

    // 3. Two proposals across a partition: a conflict, then its resolution.
    let conflict = conflict::run(&mut agents, dirs[3].path(), &mut names, &mut log).await?;

    // What the reviewer saw, as it happened.
    let mut seen = Vec::new();
    let mut ephemeral_events = 0;
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(50), watch.next()).await {
        if let Delivery::Event(e) = d {
            if e.ephemeral {
                ephemeral_events += 1;
                continue;
            }
            let origin = if e.origin == Origin::Local {
                "local"
            } else {
                "remote"
            };
            seen.push(format!(
                "{:<28} {:<34} from {:<8} ({origin})",
                e.path.to_string(),
                e.new.map_or("(cleared)".to_string(), |v| v.to_string()),
                names.of(&e.position.actor.to_hex_string())
            ));
        }
    }

    let final_state = report::same_state(&agents).await?;
    let mut clocks = Vec::new();
    for a in &agents {
        clocks.push((a.name, report::clock_cells(&a.space, &names).await?));
    }
    if clocks.windows(2).any(|w| w[0].1 != w[1].1) {
        bail!("the nodes' vector clocks differ: {clocks:?}");
    }
    let report = report::Report {
        nodes: agents.len(),
        timeline: log.lines,
        seen,
        ephemeral_events,
        mid_state,
        outcomes,
        conflict,
        final_state,
        clocks,
        beats,
    };
    report.print(as_json, &names)?;
    for a in agents {
        a.node.shutdown().await?;
    }
    Ok(())
}

/// Every agent writes each of [`WRITTEN_AT_ONCE`], all agents at once.
/// Returns, per agent, whether its deploy.owner claim was stored (a
/// first-write-wins register refuses a write once it holds a value).
async fn write_at_once(agents: &[Agent]) -> Result<Vec<bool>> {
    let status = ["running", "failed", "green", "queued"];
    let peaks = [0.42, 0.91, 0.67, 0.15];
    let writes = agents.iter().enumerate().map(|(i, a)| {
        let space = a.space.clone();
        let name = a.name;
        async move {
            space.put("observation/ci.status", json!(status[i])).await?;
            let claimed = match space.put("coordination/deploy.owner", json!(name)).await {
                Ok(_) => true,
                Err(concord::Error::State(concord_state::StateError::AlreadySet { .. })) => false,
                Err(e) => return Err(e.into()),
            };
            space.put("observation/load.peak", json!(peaks[i])).await?;
            space
                .topic::<Value>("intent/ops")?
                .append(&json!({"agent": name, "op": format!("step-{i}")}))
                .await?;
            space
                .counter("coordination/api.calls")?
                .add(i as i64 + 1)
                .await?;
            space
                .set::<String>("coordination/workers")?
                .insert(&name.to_string())
                .await?;
            anyhow::Ok(claimed)
        }
    });
    futures::future::try_join_all(writes).await
}
