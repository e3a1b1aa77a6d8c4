//! `concord demo`: three agent replicas of one space coordinate a small
//! release, write concurrently under every conflict policy, gossip their
//! changes in memory until they converge, and print what happened.

use anyhow::{Context, Result, ensure};
use concord_state::{ActorId, ChannelSpec, Delivery, Millis, Policy, Replica, SubscribeOptions};
use serde_json::{Value, json};

use crate::table::Table;

const SPACE: &str = "release";
const AGENTS: [&str; 3] = ["planner", "builder", "reviewer"];

struct Agent {
    name: &'static str,
    replica: Replica,
}

fn actor_for(name: &str) -> ActorId {
    let mut bytes = [0u8; 16];
    for (b, c) in bytes.iter_mut().zip(name.bytes()) {
        *b = c;
    }
    ActorId::from(&bytes[..])
}

fn short(actor: &ActorId) -> String {
    let bytes = actor.to_bytes();
    let text: String = bytes
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    if text.chars().all(|c| c.is_ascii_graphic()) && !text.is_empty() {
        text
    } else {
        actor.to_hex_string().chars().take(8).collect()
    }
}

/// Gossips until nobody learns anything new; returns the number of rounds.
fn gossip(agents: &mut [Agent], now: Millis) -> Result<usize> {
    let mut rounds = 0;
    loop {
        let mut moved = 0;
        for i in 0..agents.len() {
            for j in 0..agents.len() {
                if i == j {
                    continue;
                }
                let delta = agents[i]
                    .replica
                    .changes_since(agents[j].replica.vector_clock());
                moved += delta.len();
                agents[j].replica.apply_changes(now, delta)?;
            }
        }
        if moved == 0 {
            return Ok(rounds);
        }
        rounds += 1;
    }
}

fn say(timeline: &mut Vec<(Millis, String)>, now: Millis, who: &str, what: String) {
    timeline.push((now, format!("t={:>5}ms  {who:<9} {what}", now.0)));
}

/// Runs the scenario and prints it.
pub fn run(as_json: bool) -> Result<()> {
    let mut agents: Vec<Agent> = AGENTS
        .iter()
        .map(|name| Agent {
            name,
            replica: Replica::new(SPACE, actor_for(name)),
        })
        .collect();
    let mut timeline = Vec::new();
    let mut now = Millis(1_000);

    // Everyone agrees on the channel declarations (they are ordinary writes).
    let declarations = [
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
    ];
    for agent in &mut agents {
        agent.replica.register_merge("max", |values| {
            values
                .iter()
                .filter_map(Value::as_f64)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                .map_or(Value::Null, |m| json!(m))
        });
    }
    for (path, spec) in &declarations {
        agents[0].replica.declare(now, *path, spec.clone())?;
    }
    say(
        &mut timeline,
        now,
        "planner",
        format!("declares {} channels", declarations.len()),
    );
    agents[0]
        .replica
        .put(now, "intent/release.version", &"1.4.0")?;
    say(
        &mut timeline,
        now,
        "planner",
        "proposes intent/release.version = \"1.4.0\"".into(),
    );
    let rounds = gossip(&mut agents, now)?;
    say(
        &mut timeline,
        now,
        "all",
        format!("gossip: converged in {rounds} round(s)"),
    );
    let watch = agents[2]
        .replica
        .subscribe("intent/*", SubscribeOptions::default())?;

    // Partitioned: each agent writes without hearing from the others.
    now = Millis(2_000);
    let status = ["running", "failed", "green"];
    let owners = ["planner", "builder", "reviewer"];
    let peaks = [0.42, 0.91, 0.67];
    for (i, agent) in agents.iter_mut().enumerate() {
        let t = now.plus(i as u64 * 10);
        let r = &mut agent.replica;
        r.put(t, "observation/ci.status", &status[i])?;
        say(
            &mut timeline,
            t,
            agent.name,
            format!(
                "observation/ci.status = {:?}   (last_write_wins)",
                status[i]
            ),
        );
        match r.put(t, "coordination/deploy.owner", &owners[i]) {
            Ok(_) => say(
                &mut timeline,
                t,
                agent.name,
                "claims coordination/deploy.owner   (first_write_wins)".to_string(),
            ),
            Err(e) => say(&mut timeline, t, agent.name, format!("claim refused: {e}")),
        }
        r.put(t, "observation/load.peak", &peaks[i])?;
        say(
            &mut timeline,
            t,
            agent.name,
            format!("observation/load.peak = {}   (merge: max)", peaks[i]),
        );
        r.append(
            t,
            "intent/ops",
            &json!({"agent": agent.name, "op": format!("step-{i}")}),
        )?;
        say(
            &mut timeline,
            t,
            agent.name,
            format!("appends step-{i} to intent/ops   (topic)"),
        );
        r.increment(t, "coordination/api.calls", (i + 1) as i64)?;
        r.set_add(t, "coordination/workers", &agent.name)?;
        say(
            &mut timeline,
            t,
            agent.name,
            format!("api.calls += {}, joins coordination/workers", i + 1),
        );
    }
    agents[1]
        .replica
        .put(now.plus(15), "intent/release.version", &"1.4.1")?;
    say(
        &mut timeline,
        now.plus(15),
        "builder",
        "proposes intent/release.version = \"1.4.1\"   (reject)".into(),
    );
    agents[2]
        .replica
        .put(now.plus(25), "intent/release.version", &"2.0.0")?;
    say(
        &mut timeline,
        now.plus(25),
        "reviewer",
        "proposes intent/release.version = \"2.0.0\"   (reject)".into(),
    );
    agents[0]
        .replica
        .put_with_ttl(now, "observation/heartbeat.planner", &"alive", 5_000)?;
    say(
        &mut timeline,
        now,
        "planner",
        "observation/heartbeat.planner = \"alive\" with a 5 s TTL".into(),
    );

    now = Millis(3_000);
    let rounds = gossip(&mut agents, now)?;
    say(
        &mut timeline,
        now,
        "all",
        format!("partition heals; gossip converges in {rounds} round(s)"),
    );
    let mut seen = 0;
    while let Some(d) = agents[2].replica.poll_event(watch)? {
        if let Delivery::Event(e) = d {
            seen += 1;
            tracing::debug!(path = %e.path, "reviewer saw event");
        }
    }
    say(
        &mut timeline,
        now,
        "reviewer",
        format!("its intent/* subscription delivered {seen} event(s)"),
    );
    let conflicts = agents[0].replica.conflicts();
    say(
        &mut timeline,
        now,
        "all",
        format!(
            "{} conflict(s) recorded in coordination/conflicts",
            conflicts.len()
        ),
    );

    let mid_state = state_rows(&agents[0].replica)?;

    now = Millis(8_000);
    for agent in &mut agents {
        agent.replica.tick(now);
    }
    say(
        &mut timeline,
        now,
        "all",
        "5 s later: the heartbeat has expired everywhere".into(),
    );
    agents[0]
        .replica
        .put(now, "intent/release.version", &"1.4.1")?;
    say(
        &mut timeline,
        now,
        "planner",
        "resolves the conflict: intent/release.version = \"1.4.1\"".into(),
    );
    let report = agents[0].replica.compact(now)?;
    say(
        &mut timeline,
        now,
        "planner",
        format!(
            "compaction removed {} expired entries",
            report.expired_removed
        ),
    );
    let rounds = gossip(&mut agents, now)?;
    say(
        &mut timeline,
        now,
        "all",
        format!("gossip converges in {rounds} round(s)"),
    );

    timeline.sort_by_key(|(t, _)| *t);
    let timeline: Vec<String> = timeline.into_iter().map(|(_, line)| line).collect();

    // Check convergence for real before printing it.
    let heads = agents[0].replica.heads();
    let final_state = state_rows(&agents[0].replica)?;
    for agent in &agents[1..] {
        ensure!(
            agent.replica.heads() == heads,
            "{} did not converge",
            agent.name
        );
        ensure!(
            state_rows(&agent.replica)? == final_state,
            "{} shows another state",
            agent.name
        );
    }
    let clocks: Vec<(String, Vec<(String, u64)>)> = agents
        .iter()
        .map(|a| {
            (
                a.name.to_string(),
                a.replica
                    .vector_clock()
                    .iter()
                    .map(|(act, s)| (short(act), s))
                    .collect(),
            )
        })
        .collect();

    if as_json {
        let out = json!({
            "space": SPACE,
            "timeline": timeline,
            "state_after_heal": rows_json(&mid_state),
            "conflicts_after_heal": serde_json::to_value(&conflicts).context("conflicts")?,
            "final_state": rows_json(&final_state),
            "vector_clocks": clocks.iter().map(|(n, c)| (n.clone(), json!(c.iter().cloned().collect::<std::collections::BTreeMap<_,_>>()))).collect::<serde_json::Map<_,_>>(),
            "converged": true,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "Concord demo — space {SPACE:?}, agents: {}\n",
        AGENTS.join(", ")
    );
    println!("Timeline");
    for line in &timeline {
        println!("  {line}");
    }
    println!("\nState after the partition healed (identical on every replica)");
    println!("{}", indent(&render_rows(&mid_state)));
    println!("\nConflicts kept out of intent/release.version (policy: reject)");
    let mut t = Table::new(["candidate", "hlc", "actor"]);
    for c in conflicts.iter().flat_map(|c| c.candidates.iter()) {
        t.row(vec![
            c.value.to_string(),
            c.hlc.to_string(),
            short(&ActorId::from(hex_bytes(&c.actor))),
        ]);
    }
    println!("{}", indent(&t.render()));
    println!("\nFinal converged state");
    println!("{}", indent(&render_rows(&final_state)));
    println!("\nVector clocks (actor: highest change seq)");
    let actors: Vec<String> = clocks[0].1.iter().map(|(a, _)| a.clone()).collect();
    let mut t = Table::new(["replica", "clock"]);
    for (name, clock) in &clocks {
        let cells: Vec<String> = clock.iter().map(|(a, s)| format!("{a}:{s}")).collect();
        t.row(vec![name.clone(), cells.join("  ")]);
    }
    println!("{}", indent(&t.render()));
    println!(
        "\nconverged: yes — {} replicas, identical heads, {} actors in every clock",
        agents.len(),
        actors.len()
    );
    Ok(())
}

type Rows = Vec<(String, String, String)>;

fn state_rows(r: &Replica) -> Result<Rows> {
    let mut rows = Vec::new();
    for (path, spec) in r.channels() {
        let value = r.get(&path)?.map_or("—".to_string(), |v| v.to_string());
        rows.push((path.to_string(), spec.to_string(), value));
    }
    if let Some(v) = r.get("coordination/conflicts")? {
        let n = v.as_array().map_or(0, Vec::len);
        rows.push((
            "coordination/conflicts".into(),
            "derived".into(),
            format!("{n} unresolved"),
        ));
    }
    Ok(rows)
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

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}
