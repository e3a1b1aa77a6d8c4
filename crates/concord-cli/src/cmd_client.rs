//! The client commands `put`, `get`, `watch`, `inspect` and `export`: check
//! their arguments, ask the node over the control socket, print the answer
//! (aligned tables and plain text by default, JSON with `--json`).
//!
//! This module owns validation of user input and every byte these commands
//! print; it never opens a data directory's files itself (the running node
//! owns them) and never changes what the node answers.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use concord_state::ChannelPath;
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, call};
use crate::control::{
    EphemeralPutResult, ExportFormat, ExportResult, GetResult, InspectReport, PutResult, Request,
    SpaceReport, WatchItem,
};
use crate::table::Table;

/// Widest value shown in an `inspect` table cell.
const MAX_CELL_CHARS: usize = 60;

/// Writes `text` and a newline to stdout.
fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()?;
    Ok(())
}

/// Compact JSON of a value.
fn compact(value: &impl Serialize) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

/// Validates a channel path before bothering the node.
fn check_path(path: &str) -> Result<()> {
    path.parse::<ChannelPath>()
        .map(drop)
        .map_err(|e| anyhow!("{e}"))
}

/// `concord put`: writes a JSON value (an ephemeral one with `ttl_ms`).
pub fn put(
    data: &Path,
    space: String,
    path: String,
    json_text: &str,
    ttl_ms: Option<u64>,
    json: bool,
) -> Result<()> {
    let value: Value = serde_json::from_str(json_text).map_err(|e| {
        anyhow!(
            "invalid JSON value {json_text:?}: {e} (a string needs JSON quotes, e.g. '\"green\"')"
        )
    })?;
    check_path(&path)?;
    let request = Request::Put {
        space,
        path,
        value,
        ttl_ms,
    };
    if ttl_ms.is_some() {
        let result: EphemeralPutResult = call(data, &request)?;
        if json {
            return out(&compact(&result)?);
        }
        return out(&format!(
            "wrote an ephemeral value on {} in space {} (hlc {}, lives {} ms, not stored)",
            result.path, result.space, result.hlc, result.ttl_ms
        ));
    }
    let result: PutResult = call(data, &request)?;
    if json {
        return out(&compact(&result)?);
    }
    out(&format!(
        "wrote {} in space {} (seq {}, hlc {}, {})",
        result.path,
        result.space,
        result.seq,
        result.hlc,
        if result.durable {
            "durable"
        } else {
            "not yet durable"
        }
    ))
}

/// `concord get`: prints a channel's visible value.
pub fn get(data: &Path, space: String, path: String, json: bool) -> Result<()> {
    check_path(&path)?;
    let result: GetResult = call(data, &Request::Get { space, path })?;
    if json {
        out(&compact(&result.value)?)
    } else {
        out(&serde_json::to_string_pretty(&result.value)?)
    }
}

/// `concord watch`: prints one JSON line per event until interrupted.
pub fn watch(data: &Path, space: String, pattern: String) -> Result<()> {
    let mut client = Client::send(data, &Request::Watch { space, pattern })?;
    match client.expect()? {
        WatchItem::Watching { space, pattern } => {
            eprintln!("watching {pattern} in space {space}; Ctrl-C to stop");
        }
        other => bail!("the node answered the watch with {other:?}"),
    }
    while let Some(value) = client.next()? {
        // Decoded first so every line has the documented field order.
        let item: WatchItem =
            serde_json::from_value(value).context("the node sent a malformed watch event")?;
        out(&compact(&item)?)?;
    }
    bail!("the node closed the watch (did it stop?)")
}

/// `concord inspect`: peers, vector clocks, channels and queue sizes.
pub fn inspect(data: &Path, space: Option<String>, json: bool) -> Result<()> {
    let report: InspectReport = call(
        data,
        &Request::Inspect {
            space,
            writers: false,
        },
    )?;
    if json {
        return out(&compact(&report)?);
    }
    out(&render_inspect(&report))
}

fn render_inspect(report: &InspectReport) -> String {
    let mut text = format!("node     {}\n", report.peer_id);
    text.push_str(&format!("actor    {}\n", report.actor));
    for addr in &report.listen {
        text.push_str(&format!("listen   {addr}\n"));
    }
    text.push_str(&format!("\npeers ({})\n", report.peers.len()));
    let mut peers = Table::new(["peer_id", "address"]);
    for p in &report.peers {
        peers.row(vec![
            p.peer_id.clone(),
            p.address.clone().unwrap_or_default(),
        ]);
    }
    text.push_str(&peers.render());
    if report.spaces.is_empty() {
        text.push_str("\n\nno open spaces (name one: concord inspect --data DIR SPACE)");
    }
    for space in &report.spaces {
        text.push_str("\n\n");
        text.push_str(&render_space(space, &report.actor));
    }
    text
}

fn render_space(space: &SpaceReport, own_actor: &str) -> String {
    let mut clock = Table::new(["actor", "seq"]);
    for (actor, seq) in &space.vector_clock {
        let who = if actor == own_actor {
            format!("{actor} (this node)")
        } else {
            actor.clone()
        };
        clock.row(vec![who, seq.to_string()]);
    }
    let mut channels = Table::new(["path", "kind", "policy", "version", "value"]);
    for c in &space.channels {
        let policy = match (c.kind.as_str(), c.ttl_ms) {
            ("last_value", _) => c.policy.clone(),
            ("ephemeral", Some(ttl)) => format!("ttl {ttl} ms"),
            _ => "-".to_owned(),
        };
        let value = match (&c.unreadable, c.live) {
            (Some(why), _) => format!("unreadable: {why}"),
            (None, Some(live)) => format!("{live} live: {}", c.value),
            (None, None) => c.value.to_string(),
        };
        channels.row(vec![
            c.path.clone(),
            c.kind.clone(),
            policy,
            c.version.to_string(),
            truncate(&value),
        ]);
    }
    let q = &space.queue;
    let mut queue = Table::new([
        "pending",
        "subscribers",
        "conflicts",
        "changes",
        "actors",
        "channels",
        "bytes_on_disk",
    ]);
    queue.row(
        [
            q.pending as u64,
            q.subscribers as u64,
            q.conflicts as u64,
            q.changes,
            q.actors as u64,
            q.channels as u64,
            q.bytes_on_disk,
        ]
        .iter()
        .map(u64::to_string)
        .collect(),
    );
    let e = &space.epoch;
    let mut epoch = Table::new([
        "epoch",
        "switches",
        "cut_changes",
        "since_cut",
        "bytes_since_cut",
        "ops_held",
        "retained",
    ]);
    epoch.row(vec![
        e.id.clone(),
        e.number.to_string(),
        e.cut_changes.to_string(),
        e.changes.to_string(),
        e.bytes.to_string(),
        e.ops.to_string(),
        if e.retained.is_empty() {
            "-".to_owned()
        } else {
            e.retained.join(" ")
        },
    ]);
    format!(
        "space {}\n\nvector clock\n{}\n\nchannels ({})\n{}\n\nqueue\n{}\n\nepoch\n{}",
        space.name,
        clock.render(),
        space.channels.len(),
        channels.render(),
        queue.render(),
        epoch.render()
    )
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_CELL_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_CELL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// What `export --out` reports.
#[derive(Serialize)]
struct Exported<'a> {
    out: &'a Path,
    format: ExportFormat,
    bytes: usize,
}

/// `concord export`: a space as JSON or as an automerge document.
pub fn export(
    data: &Path,
    space: String,
    format: ExportFormat,
    out_file: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let result: ExportResult = call(data, &Request::Export { space, format })?;
    let bytes = match result {
        ExportResult::Json(values) => {
            let mut text = if json || out_file.is_some() {
                serde_json::to_vec(&values)?
            } else {
                serde_json::to_vec_pretty(&values)?
            };
            text.push(b'\n');
            text
        }
        ExportResult::Automerge(hex_doc) => {
            hex::decode(hex_doc).context("the node sent a malformed automerge export")?
        }
    };
    let Some(path) = out_file else {
        let mut stdout = std::io::stdout().lock();
        if format == ExportFormat::Automerge && stdout.is_terminal() {
            bail!("refusing to write a binary document to a terminal; use --out FILE or redirect");
        }
        stdout.write_all(&bytes)?;
        return Ok(stdout.flush()?);
    };
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    let done = Exported {
        out: &path,
        format,
        bytes: bytes.len(),
    };
    if json {
        out(&compact(&done)?)
    } else {
        out(&format!("wrote {} bytes to {}", done.bytes, path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inspect_shows_each_channel_s_schema_version() {
        let space: SpaceReport = serde_json::from_value(json!({
            "name": "team",
            "vector_clock": {"aa": 3},
            "channels": [
                {"path": "intent/plan", "kind": "last_value", "policy": "reject",
                 "version": 2, "value": {"task": "build"}},
                // a row from a node that predates versions
                {"path": "intent/log", "kind": "topic", "policy": "last_write_wins",
                 "value": []},
                {"path": "intent/old", "kind": "last_value", "policy": "last_write_wins",
                 "version": 2, "value": null,
                 "unreadable": "channel intent/old: no migration from version 1"}
            ],
            "queue": {"pending": 0, "subscribers": 0, "conflicts": 0, "changes": 3,
                      "bytes_on_disk": 0, "channels": 2, "actors": 1},
            "epoch": {"id": "ab", "number": 0, "cut_changes": 0, "changes": 3, "bytes": 0,
                      "ops": 0, "retained": []}
        }))
        .unwrap();
        assert_eq!(space.channels[1].version, 1);
        let text = render_space(&space, "aa");
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("path")).unwrap();
        let columns: Vec<&str> = lines[header].split_whitespace().collect();
        assert_eq!(columns, ["path", "kind", "policy", "version", "value"]);
        let row = |path: &str| -> Vec<String> {
            let line = lines.iter().find(|l| l.starts_with(path)).unwrap();
            line.split_whitespace().map(str::to_owned).collect()
        };
        assert_eq!(row("intent/plan")[3], "2");
        assert_eq!(row("intent/log")[3], "1");
        // A value that cannot be read says why instead of showing null.
        assert_eq!(row("intent/old")[4..6], ["unreadable:", "channel"]);
    }
}
