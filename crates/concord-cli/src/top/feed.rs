//! The inputs of `concord top`, each on its own thread, all into one
//! channel of [`Input`]s: snapshots of the node (an `inspect` of the space
//! every [`TICK`], and at once when an event arrives), the node's watch
//! stream on every channel of the space, and the terminal's keys.
//!
//! This module owns talking to the node for `top` and reconnecting when it
//! comes back; it never touches the state or the screen, and a failure is
//! never fatal here: it becomes an [`Input::Lost`] for the screen to show.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyEvent, KeyEventKind};

use crate::client::{Client, call};
use crate::control::{InspectReport, Request, WatchItem};

/// How often peers, round trips and queues are refreshed without events.
pub const TICK: Duration = Duration::from_secs(1);

/// Most inputs waiting for the screen; past it the input threads wait (and
/// the node, whose watch stream then backs up, drops events for this
/// watcher and says how many: a `lagged` line on the timeline).
pub const MAX_PENDING_INPUTS: usize = 1_024;

/// Most wake-ups waiting for the snapshot thread (one would do: more
/// events than that between two snapshots are answered by one anyway).
pub const MAX_PENDING_WAKES: usize = 16;

/// Shortest time between two snapshots, so that a burst of events costs
/// the node a few `inspect`s rather than one per event.
pub const SNAPSHOT_GAP: Duration = Duration::from_millis(100);

/// Something for the screen.
#[derive(Debug)]
pub enum Input {
    /// A fresh snapshot of the node.
    Snapshot(Box<InspectReport>),
    /// One item of the watch stream.
    Watch(WatchItem),
    /// The node stopped answering: why.
    Lost(String),
    /// The watch stream ended or could not start: why.
    EventsLost(String),
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal was resized (or needs a redraw).
    Redraw,
}

/// Why the snapshot thread is woken before its [`TICK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// An event arrived: values changed.
    Event,
    /// The watch stream (re)subscribed: from now on events name every
    /// writer, so one snapshot with the writers closes the gap before it.
    Subscribed,
}

/// Asks the node for a snapshot of `space` every [`TICK`] and whenever
/// `wake` fires (at most one per [`SNAPSHOT_GAP`]), until the screen goes
/// away; with the channels' last writers after each [`Wake::Subscribed`].
pub fn snapshots(data: PathBuf, space: String, wake: Receiver<Wake>, out: SyncSender<Input>) {
    loop {
        let mut writers = match wake.recv_timeout(TICK) {
            Ok(first) => first == Wake::Subscribed,
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // One snapshot answers a burst of events.
        writers |= wake.try_iter().any(|w| w == Wake::Subscribed);
        let input = match snapshot(&data, &space, writers) {
            Ok(report) => Input::Snapshot(Box::new(report)),
            Err(e) => Input::Lost(format!("{e:#}")),
        };
        if out.send(input).is_err() {
            return;
        }
        std::thread::sleep(SNAPSHOT_GAP);
    }
}

/// One `inspect` of `space`, with each channel's last writer if `writers`.
pub fn snapshot(data: &Path, space: &str, writers: bool) -> anyhow::Result<InspectReport> {
    let _span = tracing::debug_span!("top_snapshot", space, writers).entered();
    call(
        data,
        &Request::Inspect {
            space: Some(space.to_owned()),
            writers,
        },
    )
}

/// Follows the watch stream of every channel in `space`, reconnecting
/// every [`TICK`] while the node is away; each event also wakes the
/// snapshot thread.
pub fn events(data: PathBuf, space: String, wake: SyncSender<Wake>, out: SyncSender<Input>) {
    loop {
        let reason = match follow(&data, &space, &wake, &out) {
            Ok(Closed::Node) => "the node closed the event stream".to_owned(),
            Ok(Closed::Screen) => return,
            Err(e) => format!("{e:#}"),
        };
        if out.send(Input::EventsLost(reason)).is_err() {
            return;
        }
        std::thread::sleep(TICK);
    }
}

/// Who ended a watch.
enum Closed {
    Node,
    Screen,
}

fn follow(
    data: &Path,
    space: &str,
    wake: &SyncSender<Wake>,
    out: &SyncSender<Input>,
) -> anyhow::Result<Closed> {
    let _span = tracing::debug_span!("top_watch", space).entered();
    let request = Request::Watch {
        space: space.to_owned(),
        pattern: "**".to_owned(),
    };
    let mut client = Client::send(data, &request)?;
    while let Some(value) = client.next()? {
        let item: WatchItem = serde_json::from_value(value)?;
        if let WatchItem::Watching { .. } = item {
            // Must not be lost: the writers depend on it.
            let _ = wake.send(Wake::Subscribed);
        } else {
            // A full queue already holds a wake-up.
            let _ = wake.try_send(Wake::Event);
        }
        if out.send(Input::Watch(item)).is_err() {
            return Ok(Closed::Screen);
        }
    }
    Ok(Closed::Node)
}

/// Passes the terminal's key presses and resizes on until the screen goes
/// away or the terminal fails.
pub fn keys(out: SyncSender<Input>) {
    loop {
        let input = match event::read() {
            Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => Input::Key(key),
            Ok(Event::Resize(..)) => Input::Redraw,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the terminal failed");
                return;
            }
        };
        if out.send(input).is_err() {
            return;
        }
    }
}
