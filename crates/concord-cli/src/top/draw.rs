//! The screen of `concord top`, drawn from a [`TopState`] alone: a header
//! (node, space, link), peers across the screen, vector clock, locks and
//! queues on the left, channels on the right, the event timeline along the
//! bottom.
//!
//! This module owns layout and formatting; it never changes the state and
//! never does IO, so a `TestBackend` shows exactly what a terminal would.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::state::{Link, TopState, writer_label};

/// Widest the channels' path column gets (longer paths are cut).
const PATH_COLUMN_CHARS: usize = 40;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, state: &TopState) {
    let [header, peers, body, timeline] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(rows_height(state.peers.len())),
        Constraint::Fill(3),
        Constraint::Fill(2),
    ])
    .areas(frame.area());
    draw_header(frame, header, state);
    draw_peers(frame, peers, state);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(body);
    let [clock, locks, queue] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(rows_height(state.locks.len())),
        Constraint::Length(4),
    ])
    .areas(left);
    draw_clock(frame, clock, state);
    draw_locks(frame, locks, state);
    draw_queue(frame, queue, state);
    draw_channels(frame, right, state);
    draw_timeline(frame, timeline, state);
}

/// A bordered table's height for `rows` rows (at least one, for "none").
fn rows_height(rows: usize) -> u16 {
    u16::try_from(rows.max(1))
        .unwrap_or(u16::MAX)
        .saturating_add(3)
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, state: &TopState) {
    let link = match &state.link {
        Link::Live if state.events => Span::styled("live", Style::default().fg(Color::Green)),
        Link::Live => Span::styled(
            "connected, waiting for the event stream",
            Style::default().fg(Color::Yellow),
        ),
        Link::Lost(reason) => Span::styled(
            format!("NODE GONE: {reason} (retrying)"),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
    };
    let lines = vec![
        Line::from(vec![
            Span::styled("concord top", bold()),
            Span::raw(format!("  space {}  node {}  ", state.space, state.peer_id)),
            link,
        ]),
        Line::from(format!(
            "actor {}   q quits, ↑/↓ PgUp/PgDn scroll the timeline, End follows it",
            state.actor
        )),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

/// A table with a title and a header row; an empty one says "none".
fn table<'a>(
    frame: &mut Frame<'_>,
    area: Rect,
    title: String,
    header: &[&'a str],
    widths: &[Constraint],
    rows: Vec<Row<'a>>,
) {
    let rows = if rows.is_empty() {
        vec![Row::new(["(none)"])]
    } else {
        rows
    };
    let widget = Table::new(rows, widths.to_vec())
        .header(Row::new(header.to_vec()).style(bold()))
        .block(Block::bordered().title(title));
    frame.render_widget(widget, area);
}

fn draw_peers(frame: &mut Frame<'_>, area: Rect, state: &TopState) {
    let rows = state
        .peers
        .iter()
        .map(|p| {
            Row::new([
                p.peer_id.clone(),
                p.rtt_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms")),
                bytes(p.sent_bytes),
                bytes(p.received_bytes),
                p.address.clone().unwrap_or_default(),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(52), // an ed25519 peer id
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Fill(1),
    ];
    let title = format!("peers ({})", state.peers.len());
    let header = ["peer", "rtt", "sent", "received", "address"];
    table(frame, area, title, &header, &widths, rows);
}

fn draw_clock(frame: &mut Frame<'_>, area: Rect, state: &TopState) {
    let rows = state
        .clock
        .iter()
        .map(|(actor, seq)| Row::new([writer_label(actor, 0, &state.actor), seq.to_string()]))
        .collect();
    let widths = [Constraint::Fill(1), Constraint::Length(10)];
    let title = "vector clock".to_owned();
    table(frame, area, title, &["actor", "seq"], &widths, rows);
}

fn draw_locks(frame: &mut Frame<'_>, area: Rect, state: &TopState) {
    let rows = state
        .locks
        .iter()
        .map(|l| {
            Row::new([
                l.resource.clone(),
                l.token.to_string(),
                short_peer(&l.holder),
            ])
        })
        .collect();
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(14),
    ];
    let title = format!("locks held ({})", state.locks.len());
    let header = ["resource", "token", "holder"];
    table(frame, area, title, &header, &widths, rows);
}

fn draw_queue(frame: &mut Frame<'_>, area: Rect, state: &TopState) {
    let lines = match &state.queue {
        None => vec![Line::from("(no snapshot yet)")],
        Some(q) => vec![
            Line::from(format!(
                "pending {}  subscribers {}  conflicts {}",
                q.pending, q.subscribers, q.conflicts
            )),
            Line::from(format!(
                "changes {}  actors {}  channels {}  on disk {}",
                q.changes,
                q.actors,
                q.channels,
                bytes(q.bytes_on_disk)
            )),
        ],
    };
    let widget = Paragraph::new(lines).block(Block::bordered().title("queues"));
    frame.render_widget(widget, area);
}

fn draw_channels(frame: &mut Frame<'_>, area: Rect, state: &TopState) {
    let rows = state
        .channels
        .iter()
        .map(|c| {
            let writer = c
                .writer
                .as_ref()
                .map_or_else(String::new, |w| writer_label(&w.actor, w.seq, &state.actor));
            Row::new([c.path.clone(), c.kind.clone(), c.value.clone(), writer])
        })
        .collect();
    let longest = state.channels.iter().map(|c| c.path.chars().count()).max();
    let path_width = longest.unwrap_or(0).clamp(4, PATH_COLUMN_CHARS);
    let widths = [
        Constraint::Length(u16::try_from(path_width).unwrap_or(u16::MAX)),
        Constraint::Length(10),
        Constraint::Fill(1),
        Constraint::Length(22),
    ];
    let title = format!("channels ({})", state.channels.len());
    let header = ["path", "kind", "value", "last writer"];
    table(frame, area, title, &header, &widths, rows);
}

fn draw_timeline(frame: &mut Frame<'_>, area: Rect, state: &TopState) {
    let visible = usize::from(area.height.saturating_sub(2));
    let end = state.timeline.len().saturating_sub(state.scroll);
    let start = end.saturating_sub(visible);
    let lines: Vec<Line<'_>> = state
        .timeline
        .range(start..end)
        .map(|e| {
            let at = e
                .at_ms
                .map_or_else(|| "--:--:--.---".to_owned(), clock_time);
            Line::from(vec![
                Span::styled(at, Style::default().fg(Color::DarkGray)),
                Span::raw(" "),
                Span::raw(e.text.as_str()),
            ])
        })
        .collect();
    let title = if state.scroll == 0 {
        format!("events ({})", state.timeline.len())
    } else {
        format!(
            "events ({}, {} newer below)",
            state.timeline.len(),
            state.scroll
        )
    };
    let widget = Paragraph::new(lines).block(Block::bordered().title(title));
    frame.render_widget(widget, area);
}

/// `HH:MM:SS.mmm` (UTC) of a wall-clock time in ms since the Unix epoch.
fn clock_time(ms: u64) -> String {
    let secs = ms / 1_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3_600 % 24,
        secs / 60 % 60,
        secs % 60,
        ms % 1_000
    )
}

/// The distinctive tail of a peer id (they all start alike).
fn short_peer(peer: &str) -> String {
    let chars: Vec<char> = peer.chars().collect();
    if chars.len() <= 12 {
        return peer.to_owned();
    }
    let tail: String = chars[chars.len() - 12..].iter().collect();
    format!("…{tail}")
}

/// A byte count in B, KiB, MiB or GiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
