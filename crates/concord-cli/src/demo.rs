//! `concord demo`: four real nodes on loopback (libp2p over TCP, each with
//! its own data directory) coordinate a small release. They publish
//! heartbeats on ephemeral channels (`demo/heartbeats.rs`), write
//! concurrently under every conflict policy, one node leaves and comes back,
//! and the demo prints the timeline one node observed, the converged state
//! and every node's vector clock. It checks convergence before saying so.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use concord::{ChannelKind, ChannelSpec, Delivery, Node, Origin, Policy, Space};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::table::Table;

mod heartbeats;

const SPACE: &str = "release";
const AGENTS: [&str; 4] = ["planner", "builder", "reviewer", "deployer"];

/// Runs the demo on a fresh tokio runtime.
pub fn run(as_json: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(scenario(as_json))
}

struct Agent {
    name: &'static str,
    node: Node,
    space: Space,
}

async fn start(
    name: &'static str,
    dir: &std::path::Path,
    boot: Option<&concord::Multiaddr>,
) -> Result<Agent> {
    let mut b = Node::builder()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0".parse()?);
    if let Some(addr) = boot {
        b = b.bootstrap(addr.clone());
    }
    let node = b.build().await?;
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
    Ok(Agent { name, node, space })
}

/// Waits until every agent holds the same vector clock (or fails after 15 s).
async fn converge(agents: &[Agent]) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let mut clocks = Vec::new();
        for a in agents {
            clocks.push(a.space.vector_clock().await?);
        }
        if clocks.windows(2).all(|w| w[0] == w[1]) {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("agents did not converge within 15 s")
}

struct Log {
    start: Instant,
    lines: Vec<String>,
}

impl Log {
    fn say(&mut self, who: &str, what: impl Into<String>) {
        let what = what.into();
        self.lines.push(format!(
            "{:>6} ms  {who:<9} {what}",
            self.start.elapsed().as_millis()
        ));
    }
}

async fn scenario(as_json: bool) -> Result<()> {
    let dirs: Vec<tempfile::TempDir> = AGENTS
        .iter()
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut log = Log {
        start: Instant::now(),
        lines: Vec::new(),
    };
    let first = start(AGENTS[0], dirs[0].path(), None).await?;
    let boot = first
        .node
        .wait_listening(Duration::from_secs(5))
        .await?
        .into_iter()
        .next()
        .context("planner is not listening")?;
    let mut agents = vec![first];
    for (name, dir) in AGENTS.iter().zip(&dirs).skip(1) {
        agents.push(start(name, dir.path(), Some(&boot)).await?);
    }
    for a in &agents {
        log.say(
            a.name,
            format!(
                "node up: peer {} on {boot}",
                short_peer(&a.node.peer_id().to_string())
            ),
        );
    }
    let names: BTreeMap<String, &'static str> = agents
        .iter()
        .map(|a| (a.node.actor().to_hex_string(), a.name))
        .collect();
    let mut watch = agents[2].space.subscribe("*").await?;

    // 1. The planner declares the channels and proposes a version.
    let planner = &agents[0].space;
    for (path, spec) in [
        (
            "observation/ci.status",
            ChannelSpec::last_value(Policy::LastWriteWins),
        ),
        (
            "coordination/deploy.owner",
            ChannelSpec::last_value(Policy::FirstWriteWins),
        ),
        (
            "intent/release.version",
            ChannelSpec::last_value(Policy::Reject),
        ),
        (
            "observation/load.peak",
            ChannelSpec::last_value(Policy::Merge("max".into())),
        ),
        ("intent/ops", ChannelSpec::topic()),
        ("coordination/api.calls", ChannelSpec::counter()),
        ("coordination/workers", ChannelSpec::set()),
    ] {
        planner.declare(path, spec).await?;
    }
    planner
        .put("intent/release.version", json!("1.4.0"))
        .await?;
    log.say("planner", "declares 7 channels, proposes release 1.4.0");
    let took = converge(&agents).await?;
    log.say("all", format!("converged in {} ms", took.as_millis()));

    // 1b. Heartbeats on ephemeral channels: seen by the others, not stored.
    let beats = heartbeats::run(&agents, 2, &mut log).await?;

    // 2. Everyone writes at once.
    let status = ["running", "failed", "green", "queued"];
    let peaks = [0.42, 0.91, 0.67, 0.15];
    let writes = agents.iter().enumerate().map(|(i, a)| {
        let space = a.space.clone();
        let name = a.name;
        async move {
            space.put("observation/ci.status", json!(status[i])).await?;
            let claimed = space
                .put("coordination/deploy.owner", json!(name))
                .await
                .is_ok();
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
    let claims = futures::future::try_join_all(writes).await?;
    log.say(
        "all",
        format!(
            "concurrent writes: ci.status (last_write_wins), deploy.owner claims by {} (first_write_wins), load.peak (merge max), ops (topic), api.calls (counter), workers (set)",
            agents.iter().zip(&claims).filter(|(_, c)| **c).count()
        ),
    );
    agents[1]
        .space
        .put("intent/release.version", json!("1.4.1"))
        .await?;
    agents[2]
        .space
        .put("intent/release.version", json!("2.0.0"))
        .await?;
    log.say(
        "builder",
        "proposes 1.4.1 while reviewer proposes 2.0.0 (policy: reject)",
    );
    let took = converge(&agents).await?;
    log.say("all", format!("converged in {} ms", took.as_millis()));
    let conflicts = planner.conflicts().await?;
    log.say(
        "all",
        format!(
            "{} conflict(s) kept out of the value, listed in coordination/conflicts",
            conflicts.len()
        ),
    );
    let mid_state = state_rows(planner).await?;

    // 3. The deployer leaves; the others keep working; it comes back.
    let leaving = agents.pop().context("deployer")?;
    leaving.node.shutdown().await?;
    log.say("deployer", "leaves (clean shutdown)");
    agents[0]
        .space
        .put("intent/release.version", json!("1.4.1"))
        .await?;
    agents[0]
        .space
        .topic::<Value>("intent/ops")?
        .append(&json!({"agent": "planner", "op": "tag 1.4.1"}))
        .await?;
    log.say(
        "planner",
        "resolves the conflict: release 1.4.1; appends 'tag 1.4.1'",
    );
    let back = start("deployer", dirs[3].path(), Some(&boot)).await?;
    log.say(
        "deployer",
        "comes back with the same data directory and identity",
    );
    agents.push(back);
    let took = converge(&agents).await?;
    log.say(
        "all",
        format!("deployer caught up; converged in {} ms", took.as_millis()),
    );

    // What the reviewer saw, as it happened.
    let mut seen = Vec::new();
    let mut ephemeral_events = 0;
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(50), watch.next()).await {
        if let Delivery::Event(e) = d {
            if e.ephemeral {
                ephemeral_events += 1;
                continue;
            }
            let who = names
                .get(&e.position.actor.to_hex_string())
                .copied()
                .unwrap_or("?");
            let origin = if e.origin == Origin::Local {
                "local"
            } else {
                "remote"
            };
            seen.push(format!(
                "{:<28} {:<34} from {who:<8} ({origin})",
                e.path.to_string(),
                e.new.map_or("(cleared)".to_string(), |v| v.to_string())
            ));
        }
    }

    let final_state = state_rows(&agents[0].space).await?;
    for a in &agents[1..] {
        if state_rows(&a.space).await? != final_state {
            bail!("{} shows a different state", a.name);
        }
    }
    let mut clocks = Vec::new();
    for a in &agents {
        let clock = a.space.vector_clock().await?;
        let cells: Vec<String> = clock
            .iter()
            .map(|(actor, seq)| {
                let hex = actor.to_hex_string();
                let who = names.get(&hex).copied().map_or_else(
                    || {
                        if hex.starts_with("636f6e636f7264") {
                            "genesis".to_string()
                        } else {
                            hex[..8].to_string()
                        }
                    },
                    str::to_string,
                );
                format!("{who}:{seq}")
            })
            .collect();
        clocks.push((a.name, cells));
    }

    if as_json {
        let out = json!({
            "space": SPACE,
            "timeline": log.lines,
            "reviewer_saw": seen,
            "state_after_partition": rows_json(&mid_state),
            "conflicts": serde_json::to_value(&conflicts)?,
            "final_state": rows_json(&final_state),
            "vector_clocks": clocks.iter().map(|(n, c)| (n.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "heartbeats": {
                "published": beats.published,
                "seen_by_reviewer": beats.seen,
                "document_changes": beats.changes,
                "reviewer_events": ephemeral_events,
            },
            "converged": true,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "Concord demo — {} real nodes on loopback, space {SPACE:?}\n",
            agents.len()
        );
        println!("Timeline");
        for line in &log.lines {
            println!("  {line}");
        }
        println!(
            "\nEvents the reviewer's subscription delivered ({})",
            seen.len()
        );
        for line in &seen {
            println!("  {line}");
        }
        println!("  (and {ephemeral_events} heartbeat events from ephemeral channels, not listed)");
        println!("\nState after the concurrent writes (identical on every node)");
        println!("{}", indent(&render_rows(&mid_state)));
        println!("\nConflicting proposals kept out of intent/release.version (policy: reject)");
        let mut t = Table::new(["candidate", "hlc", "actor"]);
        for c in conflicts.iter().flat_map(|c| c.candidates.iter()) {
            let who = names.get(&c.actor).copied().unwrap_or("?");
            t.row(vec![
                c.value.to_string(),
                c.hlc.to_string(),
                who.to_string(),
            ]);
        }
        println!("{}", indent(&t.render()));
        println!("\nFinal converged state");
        println!("{}", indent(&render_rows(&final_state)));
        println!("\nVector clocks (actor: highest change seq)");
        let mut t = Table::new(["node", "clock"]);
        for (name, cells) in &clocks {
            t.row(vec![name.to_string(), cells.join("  ")]);
        }
        println!("{}", indent(&t.render()));
        println!(
            "\nconverged: yes — {} nodes hold identical clocks and state",
            agents.len()
        );
    }
    for a in agents {
        a.node.shutdown().await?;
    }
    Ok(())
}

fn short_peer(id: &str) -> String {
    id.chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

type Rows = Vec<(String, String, String)>;

async fn state_rows(space: &Space) -> Result<Rows> {
    Ok(space
        .with(|r| {
            let mut rows: Rows = r
                .channels()
                .into_iter()
                // Heartbeats are no part of the converged state.
                .filter(|(_, spec)| spec.kind != ChannelKind::Ephemeral)
                .map(|(path, spec)| {
                    let value = r
                        .get(&path)
                        .ok()
                        .flatten()
                        .map_or("—".to_string(), |v| v.to_string());
                    (path.to_string(), spec.to_string(), value)
                })
                .collect();
            let n = r.conflicts().len();
            if n > 0 {
                rows.push((
                    "coordination/conflicts".into(),
                    "derived".into(),
                    format!("{n} unresolved"),
                ));
            }
            rows
        })
        .await?)
}

fn render_rows(rows: &Rows) -> String {
    let mut t = Table::new(["channel", "kind", "value"]);
    for (p, k, v) in rows {
        t.row(vec![p.clone(), k.clone(), v.clone()]);
    }
    t.render()
}

fn rows_json(rows: &Rows) -> Value {
    rows.iter()
        .map(|(p, k, v)| json!({"channel": p, "kind": k, "value": v}))
        .collect()
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
