//! What `concord top` shows, as plain data: the last snapshot of the node
//! (an `inspect` report), the event timeline and the link's health, and
//! the transitions that the snapshots, watch events and keys make.
//!
//! This module owns that state and its bounds; it never talks to the node
//! and never draws (see `feed` and `draw`).

use std::collections::{BTreeMap, VecDeque};

use concord::{LOCK_HOLDERS, LockHolder};
use serde_json::Value;

use crate::control::{InspectReport, PeerRow, QueueStats, WatchItem, WriterRow};

/// Most events the timeline keeps (the oldest go first).
pub const MAX_TIMELINE_EVENTS: usize = 1_000;

/// Longest summary of a value kept for display, in characters.
pub const MAX_VALUE_CHARS: usize = 200;

/// The kind shown for a channel seen in an event before any snapshot
/// listed it.
pub const UNLISTED: &str = "?";

/// Whether the node answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Snapshots arrive.
    Live,
    /// The node stopped answering; why, as the last error said.
    Lost(String),
}

/// One channel as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelLine {
    /// `family/name`.
    pub path: String,
    /// The channel kind (`last_value`, `topic`, ...); [`UNLISTED`] for a
    /// channel known from an event only, until a snapshot lists it.
    pub kind: String,
    /// The visible value, summarised (at most [`MAX_VALUE_CHARS`]).
    pub value: String,
    /// The last write seen, from the node's history or the event stream.
    pub writer: Option<WriterRow>,
}

/// One line of the event timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    /// Wall-clock time of the write (its clock) in ms since the Unix epoch,
    /// if it carries one.
    pub at_ms: Option<u64>,
    /// What happened, e.g. `remote ab12cd34#3   observation/ci = "green"`.
    pub text: String,
}

/// Everything the screen shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TopState {
    /// The space watched.
    pub space: String,
    /// The node's peer id.
    pub peer_id: String,
    /// The node's actor id (hex).
    pub actor: String,
    /// Whether the node answers.
    pub link: Link,
    /// Whether the watch stream is subscribed (events arrive).
    pub events: bool,
    /// Connected peers.
    pub peers: Vec<PeerRow>,
    /// Highest sequence number held per actor.
    pub clock: BTreeMap<String, u64>,
    /// Every declared channel.
    pub channels: Vec<ChannelLine>,
    /// The space's lock holders (the `coordination/lock_holders` mirror).
    pub locks: Vec<LockHolder>,
    /// The replica's queues and counters.
    pub queue: Option<QueueStats>,
    /// The latest events last (at most [`MAX_TIMELINE_EVENTS`]).
    pub timeline: VecDeque<TimelineEntry>,
    /// How many lines the timeline is scrolled back from its newest.
    pub scroll: usize,
}

impl TopState {
    /// An empty screen for `space`, waiting for the first snapshot.
    pub fn new(space: &str) -> TopState {
        TopState {
            space: space.to_owned(),
            peer_id: String::new(),
            actor: String::new(),
            link: Link::Live,
            events: false,
            peers: Vec::new(),
            clock: BTreeMap::new(),
            channels: Vec::new(),
            locks: Vec::new(),
            queue: None,
            timeline: VecDeque::new(),
            scroll: 0,
        }
    }

    /// Takes in a snapshot; channels the report names no writer for keep
    /// the one already known, and channels known from events only stay
    /// (the snapshot may predate their first write).
    pub fn apply_snapshot(&mut self, report: InspectReport) {
        self.link = Link::Live;
        self.peer_id = report.peer_id;
        self.actor = report.actor;
        self.peers = report.peers;
        let Some(space) = report.spaces.into_iter().find(|s| s.name == self.space) else {
            return;
        };
        self.clock = space.vector_clock;
        self.queue = Some(space.queue);
        self.locks = space
            .channels
            .iter()
            .find(|c| c.path == LOCK_HOLDERS)
            .and_then(|c| serde_json::from_value(c.value.clone()).ok())
            .unwrap_or_default();
        let mut before: BTreeMap<String, ChannelLine> = std::mem::take(&mut self.channels)
            .into_iter()
            .map(|c| (c.path.clone(), c))
            .collect();
        self.channels = space
            .channels
            .into_iter()
            .map(|c| ChannelLine {
                writer: c
                    .writer
                    .or_else(|| before.remove(&c.path).and_then(|old| old.writer)),
                value: summary(&c.value),
                path: c.path,
                kind: c.kind,
            })
            .collect();
        let unlisted = before.into_values().filter(|c| c.kind == UNLISTED);
        self.channels.extend(unlisted);
    }

    /// Takes in one item of the watch stream: a timeline line, and the
    /// channel's writer (and value, for a `last_value` channel) at once,
    /// before the next snapshot.
    pub fn apply_event(&mut self, item: WatchItem) {
        match item {
            WatchItem::Watching { .. } => self.events = true,
            WatchItem::Lagged { missed } => self.push(TimelineEntry {
                at_ms: None,
                text: format!("(missed {missed} events: the view fell behind)"),
            }),
            WatchItem::Event {
                path,
                key,
                new,
                origin,
                actor,
                seq,
                hlc,
                ephemeral,
                ..
            } => {
                let at_ms = hlc.as_deref().and_then(hlc_wall_ms);
                let writer = WriterRow {
                    actor: actor.clone(),
                    seq,
                    hlc,
                };
                let what = change_text(&path, key.as_deref(), new.as_ref());
                let value = key
                    .is_none()
                    .then(|| summary(new.as_ref().unwrap_or(&Value::Null)));
                match self.channels.iter_mut().find(|c| c.path == path) {
                    Some(line) => {
                        if let (true, Some(value)) =
                            (matches!(line.kind.as_str(), "last_value" | UNLISTED), value)
                        {
                            line.value = value;
                        }
                        line.writer = Some(writer);
                    }
                    None => self.channels.push(ChannelLine {
                        path,
                        kind: UNLISTED.to_owned(),
                        value: value.unwrap_or_default(),
                        writer: Some(writer),
                    }),
                }
                let kind = if ephemeral { " ephemeral" } else { "" };
                self.push(TimelineEntry {
                    at_ms,
                    text: format!(
                        "{origin:<6}{kind} {:<12} {what}",
                        writer_label(&actor, seq, &self.actor)
                    ),
                });
            }
        }
    }

    /// The node stopped answering.
    pub fn lost(&mut self, reason: String) {
        self.link = Link::Lost(reason);
    }

    /// The watch stream ended: the node is likely gone too (a snapshot
    /// says otherwise soon if not).
    pub fn events_lost(&mut self, reason: String) {
        self.events = false;
        self.lost(reason);
    }

    /// Scrolls the timeline `lines` back (positive) or forward (negative),
    /// within what it holds.
    pub fn scroll_by(&mut self, lines: isize) {
        let max = self.timeline.len().saturating_sub(1);
        self.scroll = self.scroll.saturating_add_signed(lines).min(max);
    }

    fn push(&mut self, entry: TimelineEntry) {
        if self.timeline.len() == MAX_TIMELINE_EVENTS {
            self.timeline.pop_front();
        }
        self.timeline.push_back(entry);
        if self.scroll > 0 {
            // Keep the lines the reader scrolled to in place.
            self.scroll = (self.scroll + 1).min(self.timeline.len().saturating_sub(1));
        }
        debug_assert!(self.timeline.len() <= MAX_TIMELINE_EVENTS);
    }
}

/// `ab12cd34#3`, with ` (this node)` for the node's own actor.
pub fn writer_label(actor: &str, seq: u64, own_actor: &str) -> String {
    let short: String = actor.chars().take(8).collect();
    let label = if seq == 0 {
        short
    } else {
        format!("{short}#{seq}")
    };
    if !own_actor.is_empty() && actor == own_actor {
        format!("{label} (this node)")
    } else {
        label
    }
}

/// A change as one phrase: `path = value` for a register, `path + member`
/// and `path - member` for a set, `path[entry] = value` for a topic.
fn change_text(path: &str, key: Option<&str>, new: Option<&Value>) -> String {
    match (key, new) {
        (None, Some(value)) => format!("{path} = {}", summary(value)),
        (None, None) => format!("{path} cleared"),
        (Some(key), None) => format!("{path} - {}", cut(key)),
        (Some(key), Some(value))
            if serde_json::from_str::<Value>(key).ok().as_ref() == Some(value) =>
        {
            format!("{path} + {}", cut(key))
        }
        (Some(key), Some(value)) => format!("{path}[{}] = {}", cut(key), summary(value)),
    }
}

/// Compact JSON of a value, cut at [`MAX_VALUE_CHARS`] characters.
pub fn summary(value: &Value) -> String {
    cut(&value.to_string())
}

/// `text` cut at [`MAX_VALUE_CHARS`] characters.
fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_VALUE_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_VALUE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The wall-clock part of an hlc written `wall.logical`.
fn hlc_wall_ms(hlc: &str) -> Option<u64> {
    hlc.split('.').next()?.parse().ok()
}
