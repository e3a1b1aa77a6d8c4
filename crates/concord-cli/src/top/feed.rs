//! The inputs of `concord top`, each on its own thread, all into one
//! channel of [`Input`]s: snapshots of the node (an `inspect` of the space
//! every [`TICK`], and at once when an event arrives), the node's watch
//! stream on every channel of the space, and the terminal's keys.
//!
//! This module owns talking to the node for `top` and reconnecting when it
//! comes back; it never touches the state or the screen, and a failure is
//! never fatal here: it becomes an [`Input::Lost`] for the screen to show.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyEvent, KeyEventKind};

use crate::client::{Client, call};
use crate::control::{InspectReport, Request, WatchItem};

/// How often peers, round trips and queues are refreshed without events.
pub const TICK: Duration = Duration::from_secs(1);

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
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal was resized (or needs a redraw).
    Redraw,
}

/// Asks the node for a snapshot of `space` every [`TICK`] and whenever
/// `wake` fires (at most one per [`SNAPSHOT_GAP`]), until the screen goes
/// away. After the node was lost it
/// asks for the writers again (events may have been missed meanwhile).
pub fn snapshots(data: PathBuf, space: String, wake: Receiver<()>, out: Sender<Input>) {
    let mut writers = false;
    loop {
        match wake.recv_timeout(TICK) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while wake.try_recv().is_ok() {} // one snapshot answers a burst of events
        let input = match snapshot(&data, &space, writers) {
            Ok(report) => {
                writers = false;
                Input::Snapshot(Box::new(report))
            }
            Err(e) => {
                writers = true;
                Input::Lost(format!("{e:#}"))
            }
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
pub fn events(data: PathBuf, space: String, wake: Sender<()>, out: Sender<Input>) {
    loop {
        let reason = match follow(&data, &space, &wake, &out) {
            Ok(Closed::Node) => "the node closed the event stream".to_owned(),
            Ok(Closed::Screen) => return,
            Err(e) => format!("{e:#}"),
        };
        if out.send(Input::Lost(reason)).is_err() {
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
    wake: &Sender<()>,
    out: &Sender<Input>,
) -> anyhow::Result<Closed> {
    let _span = tracing::debug_span!("top_watch", space).entered();
    let request = Request::Watch {
        space: space.to_owned(),
        pattern: "**".to_owned(),
    };
    let mut client = Client::send(data, &request)?;
    while let Some(value) = client.next()? {
        let item: WatchItem = serde_json::from_value(value)?;
        let _ = wake.send(());
        if out.send(Input::Watch(item)).is_err() {
            return Ok(Closed::Screen);
        }
    }
    Ok(Closed::Node)
}

/// Passes the terminal's key presses and resizes on until the screen goes
/// away or the terminal fails.
pub fn keys(out: Sender<Input>) {
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
