//! `concord top` without a terminal: the state's transitions and bounds,
//! and the screen drawn on ratatui's `TestBackend`.

use std::collections::BTreeMap;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::mpsc::TrySendError;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};

use super::state::{Link, MAX_TIMELINE_EVENTS, MAX_VALUE_CHARS, TopState, UNLISTED, summary};
use super::{apply, draw, feed::Input};
use crate::control::{
    ChannelRow, EpochRow, InspectReport, PeerRow, QueueStats, SpaceReport, WatchItem, WriterRow,
};

const ACTOR: &str = "aa11bb22cc33dd44";
const OTHER: &str = "ee55ff66aa77bb88";

fn channel(path: &str, kind: &str, value: Value, writer: Option<WriterRow>) -> ChannelRow {
    ChannelRow {
        path: path.to_owned(),
        kind: kind.to_owned(),
        policy: "lww".to_owned(),
        value,
        ttl_ms: None,
        version: 1,
        unreadable: None,
        live: None,
        writer,
    }
}

fn report(channels: Vec<ChannelRow>) -> InspectReport {
    InspectReport {
        peer_id: "12D3KooWNodeAAAAAAAAAAAAself".to_owned(),
        actor: ACTOR.to_owned(),
        listen: vec!["/ip4/127.0.0.1/tcp/4001".to_owned()],
        peers: vec![PeerRow {
            peer_id: "12D3KooWPeerBBBBBBBBBBBother".to_owned(),
            address: Some("/ip4/127.0.0.1/tcp/4002".to_owned()),
            rtt_ms: Some(1.25),
            sent_bytes: 2048,
            received_bytes: 300,
        }],
        spaces: vec![SpaceReport {
            name: "team".to_owned(),
            vector_clock: BTreeMap::from([(ACTOR.to_owned(), 3), (OTHER.to_owned(), 7)]),
            queue: QueueStats {
                pending: 2,
                subscribers: 1,
                conflicts: 0,
                changes: 10,
                bytes_on_disk: 4096,
                channels: channels.len(),
                actors: 2,
                ephemeral_values: 0,
                ephemeral_dropped: 0,
            },
            channels,
            epoch: EpochRow {
                id: "e0".to_owned(),
                number: 0,
                cut_changes: 0,
                changes: 10,
                bytes: 100,
                ops: 20,
                retained: Vec::new(),
            },
        }],
    }
}

fn event(path: &str, new: Value, actor: &str, seq: u64) -> WatchItem {
    WatchItem::Event {
        path: path.to_owned(),
        key: None,
        old: None,
        new: Some(new),
        origin: "remote".to_owned(),
        actor: actor.to_owned(),
        seq,
        hlc: Some("3723004.0".to_owned()), // 01:02:03.004 on 1 Jan 1970
        ephemeral: false,
    }
}

fn sample_state() -> TopState {
    let holders =
        json!([{"resource": "github.main", "token": 42, "holder": "12D3KooWHolderCCCCCCCCholder"}]);
    let mut state = TopState::new("team");
    state.apply_event(WatchItem::Watching {
        space: "team".into(),
        pattern: "**".into(),
    });
    state.apply_snapshot(report(vec![
        channel(
            "observation/ci.status",
            "last_value",
            json!("red"),
            Some(WriterRow {
                actor: ACTOR.to_owned(),
                seq: 3,
                hlc: None,
            }),
        ),
        channel("coordination/lock_holders", "set", holders, None),
    ]));
    state
}

/// The screen as text, one string per row.
fn screen(state: &TopState, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw::draw(frame, state)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

fn shows(rows: &[String], text: &str) -> bool {
    rows.iter().any(|row| row.contains(text))
}

#[test]
fn the_screen_shows_every_section() {
    let mut state = sample_state();
    state.apply_event(event("observation/ci.status", json!("green"), OTHER, 8));
    let rows = screen(&state, 160, 40);
    let all = rows.join("\n");
    for text in [
        "concord top",
        "space team",
        "live",
        "peers (1)",
        "12D3KooWPeerBBBBBBBBBBBother",
        "1.2 ms",
        "2.0 KiB",
        "300 B",
        "vector clock",
        "aa11bb22 (this node)",
        "ee55ff66",
        "channels (2)",
        "observation/ci.status",
        "\"green\"",
        "ee55ff66#8",
        "locks held (1)",
        "github.main",
        "42",
        "queues",
        "pending 2",
        "on disk 4.0 KiB",
        "events (1)",
        "01:02:03.004 remote ee55ff66#8   observation/ci.status = \"green\"",
    ] {
        assert!(shows(&rows, text), "{text:?} missing from\n{all}");
    }
    assert!(!shows(&rows, "\"red\""), "{all}");
}

#[test]
fn a_lost_node_is_shown_and_a_snapshot_brings_it_back() {
    let mut state = sample_state();
    assert!(apply(
        &mut state,
        Input::Lost("no node is running in /tmp/x".into())
    ));
    let rows = screen(&state, 160, 40);
    assert!(shows(
        &rows,
        "NODE GONE: no node is running in /tmp/x (retrying)"
    ));
    assert!(!shows(&rows, " live"));
    // What was known stays on screen meanwhile.
    assert!(shows(&rows, "observation/ci.status"));
    assert!(apply(
        &mut state,
        Input::Snapshot(Box::new(report(Vec::new())))
    ));
    assert_eq!(state.link, Link::Live);
    assert!(shows(&screen(&state, 160, 40), "live"));
}

#[test]
fn a_lost_event_stream_shows_until_the_watch_is_back() {
    let mut state = sample_state();
    assert!(apply(
        &mut state,
        Input::EventsLost("the node closed the event stream".into())
    ));
    assert!(shows(
        &screen(&state, 160, 40),
        "NODE GONE: the node closed the event stream"
    ));
    // Snapshots alone: connected, but events are not followed yet.
    assert!(apply(
        &mut state,
        Input::Snapshot(Box::new(report(Vec::new())))
    ));
    let rows = screen(&state, 160, 40);
    assert!(shows(&rows, "connected, waiting for the event stream"));
    assert!(!shows(&rows, " live"));
    let watching = WatchItem::Watching {
        space: "team".into(),
        pattern: "**".into(),
    };
    assert!(apply(&mut state, Input::Watch(watching)));
    assert!(shows(&screen(&state, 160, 40), " live"));
}

#[test]
fn snapshots_keep_writers_learned_from_events() {
    let mut state = sample_state();
    state.apply_event(event("observation/ci.status", json!("green"), OTHER, 8));
    // The periodic snapshot does not ask for writers.
    state.apply_snapshot(report(vec![channel(
        "observation/ci.status",
        "last_value",
        json!("green"),
        None,
    )]));
    let line = &state.channels[0];
    assert_eq!(line.value, "\"green\"");
    assert_eq!(
        line.writer.as_ref().map(|w| (w.actor.as_str(), w.seq)),
        Some((OTHER, 8))
    );
    assert!(state.locks.is_empty());
}

#[test]
fn an_event_before_its_channel_is_listed_keeps_its_writer() {
    let mut state = sample_state();
    state.apply_event(event("observation/new", json!(1), OTHER, 9));
    // A snapshot taken before that write does not list the channel yet.
    state.apply_snapshot(report(Vec::new()));
    let line = state
        .channels
        .iter()
        .find(|c| c.path == "observation/new")
        .unwrap();
    assert_eq!((line.kind.as_str(), line.value.as_str()), (UNLISTED, "1"));
    // The next one does; the writer learned from the event stays.
    state.apply_snapshot(report(vec![channel(
        "observation/new",
        "last_value",
        json!(1),
        None,
    )]));
    assert_eq!(state.channels.len(), 1);
    let line = &state.channels[0];
    assert_eq!(line.kind, "last_value");
    assert_eq!(line.writer.as_ref().map(|w| w.seq), Some(9));
}

#[test]
fn set_and_topic_events_read_as_one_phrase() {
    let mut state = sample_state();
    let member = json!({"resource": "db", "token": 1, "holder": "me"});
    let keyed = |key: &str, new: Option<Value>| {
        let WatchItem::Event {
            path,
            old,
            origin,
            actor,
            seq,
            hlc,
            ephemeral,
            ..
        } = event("coordination/lock_holders", Value::Null, OTHER, 1)
        else {
            unreachable!()
        };
        WatchItem::Event {
            path,
            key: Some(key.to_owned()),
            old,
            new,
            origin,
            actor,
            seq,
            hlc,
            ephemeral,
        }
    };
    state.apply_event(keyed(&member.to_string(), Some(member.clone())));
    state.apply_event(keyed(&member.to_string(), None));
    state.apply_event(keyed("e1", Some(json!("hi"))));
    let texts: Vec<&str> = state.timeline.iter().map(|e| e.text.as_str()).collect();
    let set = format!("coordination/lock_holders + {member}");
    assert!(texts[0].contains(&set), "{texts:?}");
    assert!(
        texts[1].contains("coordination/lock_holders - {"),
        "{texts:?}"
    );
    assert!(
        texts[2].contains("coordination/lock_holders[e1] = \"hi\""),
        "{texts:?}"
    );
    // A keyed event leaves the channel's shown value to the next snapshot.
    let holders = state
        .channels
        .iter()
        .find(|c| c.path == "coordination/lock_holders");
    assert!(holders.unwrap().value.contains("github.main"));
}

#[test]
fn the_timeline_keeps_at_most_max_timeline_events_and_scrolls() {
    let mut state = sample_state();
    for seq in 1..=MAX_TIMELINE_EVENTS as u64 + 5 {
        state.apply_event(event("observation/n", json!(seq), OTHER, seq));
    }
    assert_eq!(state.timeline.len(), MAX_TIMELINE_EVENTS);
    assert!(
        state.timeline[0].text.ends_with("= 6"),
        "{:?}",
        state.timeline[0]
    );
    let bottom = screen(&state, 120, 30);
    assert!(shows(&bottom, "= 1005 "));
    state.scroll_by(3);
    let scrolled = screen(&state, 120, 30);
    assert!(shows(&scrolled, "= 1002 ") && !shows(&scrolled, "= 1005 "));
    assert!(shows(&scrolled, "3 newer below"));
    state.scroll_by(isize::MAX);
    assert_eq!(state.scroll, MAX_TIMELINE_EVENTS - 1);
    state.scroll_by(isize::MIN);
    assert_eq!(state.scroll, 0);
}

#[test]
fn long_values_are_cut_at_max_value_chars() {
    let long = json!("x".repeat(MAX_VALUE_CHARS * 2));
    let cut = summary(&long);
    assert_eq!(cut.chars().count(), MAX_VALUE_CHARS);
    assert!(cut.ends_with('…'));
    assert_eq!(summary(&json!("ok")), "\"ok\"");
}

#[test]
fn q_esc_and_ctrl_c_quit_other_keys_do_not() {
    let mut state = sample_state();
    let key = |code, modifiers| Input::Key(KeyEvent::new(code, modifiers));
    assert!(!apply(
        &mut state,
        key(KeyCode::Char('q'), KeyModifiers::NONE)
    ));
    assert!(!apply(&mut state, key(KeyCode::Esc, KeyModifiers::NONE)));
    assert!(!apply(
        &mut state,
        key(KeyCode::Char('c'), KeyModifiers::CONTROL)
    ));
    assert!(apply(
        &mut state,
        key(KeyCode::Char('c'), KeyModifiers::NONE)
    ));
    assert!(apply(&mut state, key(KeyCode::Up, KeyModifiers::NONE)));
}

#[test]
fn a_tiny_terminal_is_drawn_without_panicking() {
    let state = sample_state();
    for (w, h) in [(1, 1), (10, 3), (40, 8)] {
        let rows = screen(&state, w, h);
        assert_eq!(rows.len(), usize::from(h));
    }
}

/// A fake node on the control socket in a temporary directory: answers
/// one watch with the `Watching` line and `events` events, then hangs up;
/// gives back the request line.
fn fake_watch_node(events: usize) -> (tempfile::TempDir, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let listener =
        std::os::unix::net::UnixListener::bind(crate::control::socket_path(dir.path())).unwrap();
    let node = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut request)
            .unwrap();
        let watching = WatchItem::Watching {
            space: "team".into(),
            pattern: "**".into(),
        };
        let items = std::iter::once(watching)
            .chain((1..=events as u64).map(|seq| event("observation/n", json!(seq), OTHER, seq)));
        for item in items {
            let reply = crate::control::Reply::Ok(serde_json::to_value(item).unwrap());
            let mut line = serde_json::to_vec(&reply).unwrap();
            line.push(b'\n');
            stream.write_all(&line).unwrap();
        }
        request // and hangs up: the client reads what is left, then the end
    });
    (dir, node)
}

#[test]
fn the_event_thread_waits_once_max_pending_inputs_are_queued() {
    use super::feed::{self, MAX_PENDING_INPUTS, MAX_PENDING_WAKES, Wake};
    let total = MAX_PENDING_INPUTS + 50;
    let (dir, node) = fake_watch_node(total);
    let (tx, rx) = std::sync::mpsc::sync_channel(MAX_PENDING_INPUTS);
    let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel(MAX_PENDING_WAKES);
    let (probe, wake_probe) = (tx.clone(), wake_tx.clone());
    let data = dir.path().to_owned();
    let events = std::thread::spawn(move || feed::events(data, "team".into(), wake_tx, tx));
    // The screen takes nothing: the queues fill up to their bounds and stay
    // there (the thread waits, and further wake-ups are dropped). The probe
    // adds redraws until it finds the input queue full.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !matches!(probe.try_send(Input::Redraw), Err(TrySendError::Full(_))) {
        assert!(
            std::time::Instant::now() < deadline,
            "the input queue never filled"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let wake = wake_probe.try_send(Wake::Event);
    assert!(matches!(wake, Err(TrySendError::Full(_))), "{wake:?}");
    assert_eq!(wake_rx.try_recv().ok(), Some(Wake::Subscribed));
    // Taking the inputs lets the rest through, in order, none lost (the
    // probe's own redraws aside).
    let all: Vec<Input> = rx
        .iter()
        .filter(|input| !matches!(input, Input::Redraw))
        .take(total + 1)
        .collect();
    assert!(matches!(all[0], Input::Watch(WatchItem::Watching { .. })));
    let seqs: Vec<u64> = all[1..]
        .iter()
        .filter_map(|input| match input {
            Input::Watch(WatchItem::Event { seq, .. }) => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
    drop(probe);
    drop(rx); // the screen goes: the thread's next input finds no one
    events.join().unwrap();
    let request = node.join().unwrap();
    assert!(request.contains(r#""cmd":"watch""#) && request.contains(r#""pattern":"**""#));
}
