//! What the demo prints at the end, as text or JSON: the timeline, the
//! events the reviewer's subscription delivered, the state after the
//! writes at once and what each policy made of them, the conflict the
//! partition produced, the final converged state and every node's vector
//! clock.
//!
//! This module owns reading a space into printable rows and the layout of
//! the output. It never writes to a space and never decides what happened:
//! the scenario hands it facts it read from the replicas.

use anyhow::{Context, Result, bail};
use concord::{ChannelKind, Space};
use concord_state::Conflict;
use serde_json::{Value, json};

use super::SPACE;
use super::agents::{Agent, Names};
use super::heartbeats::Heartbeats;
use super::policies::Outcome;
use crate::table::Table;

/// A space's channels as `(channel, kind, value)` rows.
pub(super) type Rows = Vec<(String, String, String)>;

/// Everything the demo prints.
pub(super) struct Report {
    pub nodes: usize,
    pub timeline: Vec<String>,
    /// The reviewer's non-ephemeral events, one line each.
    pub seen: Vec<String>,
    pub ephemeral_events: usize,
    /// The state after the writes at once.
    pub mid_state: Rows,
    pub outcomes: Vec<Outcome>,
    /// The conflict every node listed once the partition healed.
    pub conflict: Conflict,
    pub final_state: Rows,
    /// Each node's vector clock as `who:seq` cells.
    pub clocks: Vec<(&'static str, Vec<String>)>,
    pub beats: Heartbeats,
}

/// The rows of `space`'s channels (heartbeats left out) and, if any, its
/// unresolved conflicts.
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

/// The state every agent shows, which must be the same on all of them.
pub(super) async fn same_state(agents: &[Agent]) -> Result<Rows> {
    let mut first: Option<Rows> = None;
    for a in agents {
        let rows = state_rows(&a.space).await?;
        match &first {
            Some(want) if *want != rows => bail!("{} shows a different state", a.name),
            Some(_) => {}
            None => first = Some(rows),
        }
    }
    first.context("no agents")
}

/// `space`'s vector clock as `who:seq` cells.
pub(super) async fn clock_cells(space: &Space, names: &Names) -> Result<Vec<String>> {
    Ok(space
        .vector_clock()
        .await?
        .iter()
        .map(|(actor, seq)| format!("{}:{seq}", names.of(&actor.to_hex_string())))
        .collect())
}

impl Report {
    pub fn print(&self, as_json: bool, names: &Names) -> Result<()> {
        if as_json {
            println!("{}", serde_json::to_string_pretty(&self.json()?)?);
        } else {
            println!("{}", self.text(names));
        }
        Ok(())
    }

    fn json(&self) -> Result<Value> {
        Ok(json!({
            "space": SPACE,
            "timeline": self.timeline,
            "reviewer_saw": self.seen,
            "state_after_writes_at_once": rows_json(&self.mid_state),
            "policy_outcomes": self.outcomes.iter().map(|o| json!({
                "channel": o.path, "policy": o.rule, "outcome": o.what,
            })).collect::<Vec<_>>(),
            "conflict": serde_json::to_value(&self.conflict)?,
            "final_state": rows_json(&self.final_state),
            "vector_clocks": self.clocks.iter().map(|(n, c)| (n.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "heartbeats": {
                "published": self.beats.published,
                "seen_by_reviewer": self.beats.seen,
                "document_changes": self.beats.changes,
                "reviewer_events": self.ephemeral_events,
            },
            "converged": true,
        }))
    }

    fn text(&self, names: &Names) -> String {
        let mut out = format!(
            "Concord demo — {} real nodes on loopback, space {SPACE:?}\n\nTimeline\n",
            self.nodes
        );
        for line in &self.timeline {
            out += &format!("  {line}\n");
        }
        out += &format!(
            "\nEvents the reviewer's subscription delivered ({})\n",
            self.seen.len()
        );
        for line in &self.seen {
            out += &format!("  {line}\n");
        }
        out += &format!(
            "  (and {} heartbeat events from ephemeral channels, not listed)\n",
            self.ephemeral_events
        );
        out += "\nState after the writes at once (identical on every node)\n";
        out += &indent(&render_rows(&self.mid_state));
        out += "\n\nWhat each policy made of the writes at once\n";
        let mut t = Table::new(["channel", "policy", "outcome"]);
        for o in &self.outcomes {
            t.row(vec![o.path.clone(), o.rule.clone(), o.what.clone()]);
        }
        out += &indent(&t.render());
        out += &format!(
            "\n\nConflicting proposals kept out of {} (policy: reject)\n",
            self.conflict.path
        );
        let mut t = Table::new(["candidate", "hlc", "actor"]);
        for c in &self.conflict.candidates {
            t.row(vec![
                c.value.to_string(),
                c.hlc.to_string(),
                names.of(&c.actor),
            ]);
        }
        out += &indent(&t.render());
        out += &format!(
            "\n  value meanwhile: {} (what both writers replaced)\n",
            self.conflict
                .agreed
                .as_ref()
                .map_or("nothing".to_string(), Value::to_string)
        );
        out += "\nFinal converged state\n";
        out += &indent(&render_rows(&self.final_state));
        out += "\n\nVector clocks (actor: highest change seq)\n";
        let mut t = Table::new(["node", "clock"]);
        for (name, cells) in &self.clocks {
            t.row(vec![name.to_string(), cells.join("  ")]);
        }
        out += &indent(&t.render());
        out += &format!(
            "\n\nconverged: yes — {} nodes hold identical clocks and state",
            self.nodes
        );
        out
    }
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
