//! `concord top`: a live terminal view of one space on the node running in
//! a data directory — peers with their round trip and bytes, the vector
//! clock, channels with their values and last writers, locks held, queue
//! sizes and a scrolling timeline of events.
//!
//! It is an `inspect` snapshot (every second, and at once on each event)
//! plus the `watch` stream of every channel, over the control socket
//! (`feed`), folded into a [`state::TopState`] and drawn by the pure
//! [`draw::draw`]. This module owns the terminal: it takes it over only
//! once the node has answered, hands it back on every way out (quit,
//! error, panic), and never lets a lost node end the view (the screen says
//! so and keeps retrying). It never writes to the node.

mod draw;
mod feed;
mod state;
#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::mpsc;

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use feed::Input;
use state::TopState;

/// Why `concord top` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// `top` draws a screen: stdout must be a terminal.
    #[error(
        "concord top needs a terminal on stdout (use `concord inspect` or `concord watch` in scripts)"
    )]
    NotATerminal,
    /// Taking over, drawing on or handing back the terminal failed.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Lines one PgUp/PgDn scrolls the timeline.
const PAGE: isize = 10;

/// Runs `concord top --data DATA SPACE` until `q` or Ctrl-C.
pub fn run(data: &Path, space: String) -> anyhow::Result<()> {
    let _span = tracing::info_span!("top", space).entered();
    if !std::io::stdout().is_terminal() {
        return Err(TopError::NotATerminal.into());
    }
    // Before taking the terminal: no node, or a bad space, is a plain error.
    // (The writers come once the watch stream is up: see `feed::Wake`.)
    let first = feed::snapshot(data, &space, false)?;
    let mut state = TopState::new(&space);
    state.apply_snapshot(first);

    let (tx, rx) = mpsc::sync_channel(feed::MAX_PENDING_INPUTS);
    let (wake_tx, wake_rx) = mpsc::sync_channel(feed::MAX_PENDING_WAKES);
    spawn("top-snapshots", {
        let (data, space, tx) = (data.to_owned(), space.clone(), tx.clone());
        move || feed::snapshots(data, space, wake_rx, tx)
    })?;
    spawn("top-events", {
        let (data, tx) = (data.to_owned(), tx.clone());
        move || feed::events(data, space, wake_tx, tx)
    })?;
    spawn("top-keys", move || feed::keys(tx))?;

    let terminal = ratatui::try_init().map_err(|e| {
        ratatui::restore(); // undo whatever part of the takeover happened
        TopError::Terminal(e)
    })?;
    Screen(terminal).show(&rx, &mut state)?;
    Ok(())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), TopError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(drop)
        .map_err(TopError::Terminal)
}

/// The terminal while `top` owns it; dropping it hands the terminal back.
struct Screen(DefaultTerminal);

impl Screen {
    /// Draws, then folds inputs into `state` and redraws after each batch,
    /// until the user quits.
    fn show(
        &mut self,
        inputs: &mpsc::Receiver<Input>,
        state: &mut TopState,
    ) -> Result<(), TopError> {
        loop {
            self.0.draw(|frame| draw::draw(frame, state))?;
            let Ok(first) = inputs.recv() else {
                return Ok(()); // every input thread ended: nothing more to show
            };
            for input in std::iter::once(first).chain(inputs.try_iter()) {
                if !apply(state, input) {
                    return Ok(());
                }
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Folds one input into the state; false when it asks to quit.
fn apply(state: &mut TopState, input: Input) -> bool {
    match input {
        Input::Snapshot(report) => state.apply_snapshot(*report),
        Input::Watch(item) => state.apply_event(item),
        Input::Lost(reason) => state.lost(reason),
        Input::EventsLost(reason) => state.events_lost(reason),
        Input::Redraw => {}
        Input::Key(key) => return on_key(state, key),
    }
    true
}

/// Handles a key; false for `q`, Esc or Ctrl-C.
fn on_key(state: &mut TopState, key: KeyEvent) -> bool {
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return false,
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return false,
        KeyCode::Up => state.scroll_by(1),
        KeyCode::Down => state.scroll_by(-1),
        KeyCode::PageUp => state.scroll_by(PAGE),
        KeyCode::PageDown => state.scroll_by(-PAGE),
        KeyCode::End => state.scroll = 0,
        _ => {}
    }
    true
}
