//! Epochs between sync engines in memory: a cut reaches peers at once, a
//! peer that lacks the cut's changes fetches the first document, a writer
//! cut off across cuts rejoins with its writes carried over once,
//! concurrent cuts join, and a peer whose epoch contradicts what a replica
//! holds is refused.

mod common;

use common::{Engine, connect, engine_with, pump};
use concord_state::{EpochConfig, Millis, ReplicaConfig};
use concord_sync::wire::{Frame, MAX_SNAPSHOT_CHUNK_BYTES};
use concord_sync::{Input, SyncConfig, SyncEvent};
use serde_json::json;

/// Engines that cut every `max_changes` changes, at once.
fn engines(n: u8, max_changes: u64) -> Vec<Engine> {
    let sync = SyncConfig {
        cut_jitter_ms: 0,
        ..SyncConfig::default()
    };
    let replica = ReplicaConfig {
        epochs: EpochConfig {
            max_changes,
            ..EpochConfig::default()
        },
        ..ReplicaConfig::default()
    };
    (0..n)
        .map(|i| engine_with(i, sync.clone(), replica.clone()))
        .collect()
}

fn write(e: &mut Engine, now: u64, path: &str, value: i64) {
    e.replica_mut()
        .increment(Millis(now), path, value)
        .expect("increment");
    e.handle_input(Millis(now), Input::LocalCommit);
}

fn switches(e: &mut Engine) -> usize {
    std::iter::from_fn(|| e.poll_event())
        .filter(|ev| matches!(ev, SyncEvent::EpochSwitched { .. }))
        .count()
}

fn heartbeat(e: &mut [Engine], now: u64) {
    for x in e.iter_mut() {
        x.handle_input(Millis(now), Input::Tick);
    }
    pump(e, Millis(now), &mut |_| false);
}

fn assert_converged(e: &[Engine]) {
    for x in &e[1..] {
        assert_eq!(x.replica().epoch().id, e[0].replica().epoch().id);
        assert_eq!(x.replica().heads(), e[0].replica().heads());
        assert_eq!(x.replica().vector_clock(), e[0].replica().vector_clock());
    }
}

#[test]
fn a_cut_reaches_connected_peers_at_once() {
    let mut e = engines(3, 20);
    connect(&mut e, Millis(0));
    pump(&mut e, Millis(0), &mut |_| false);
    for i in 0..25 {
        write(&mut e[0], 10 + i, "observation/n", 1);
        pump(&mut e, Millis(10 + i), &mut |_| false);
    }
    for x in e.iter_mut() {
        assert_eq!(switches(x), 1, "one epoch switch each, no snapshot needed");
        assert_eq!(x.replica().counter("observation/n").unwrap(), 25);
        assert!(x.replica().epoch().changes < 20);
    }
    assert_converged(&e);
}

#[test]
fn a_writer_cut_off_across_cuts_rejoins_and_its_writes_count_once() {
    let mut e = engines(2, 10);
    connect(&mut e, Millis(0));
    pump(&mut e, Millis(0), &mut |_| false);
    // engine 1 hears nothing for a while: engine 0 cuts three times
    let mut now = 10;
    for round in 0..3 {
        for _ in 0..12 {
            write(&mut e[0], now, "observation/n", 10);
            write(&mut e[1], now, "observation/n", 1);
            e[1].replica_mut()
                .append(Millis(now), "intent/offline", &json!(round))
                .unwrap();
            pump(&mut e, Millis(now), &mut |_| true);
            now += 1;
        }
    }
    assert!(e[0].replica().epoch().number >= 3);
    heartbeat(&mut e, now + 5_000);
    heartbeat(&mut e, now + 10_000);
    assert_converged(&e);
    for x in &e {
        assert_eq!(x.replica().counter("observation/n").unwrap(), 36 * 10 + 36);
        let log = x.replica().topic_entries("intent/offline").unwrap();
        assert_eq!(log.len(), 36, "every offline append exactly once");
    }
}

#[test]
fn concurrent_cuts_join() {
    let mut e = engines(2, 5);
    connect(&mut e, Millis(0));
    pump(&mut e, Millis(0), &mut |_| false);
    for i in 0..6 {
        write(&mut e[0], 10 + i, "observation/a", 1);
        write(&mut e[1], 10 + i, "observation/b", 1);
        pump(&mut e, Millis(10 + i), &mut |_| true);
    }
    assert_ne!(e[0].replica().epoch().id, e[1].replica().epoch().id);
    heartbeat(&mut e, 5_000);
    heartbeat(&mut e, 10_000);
    assert_converged(&e);
    for x in &e {
        assert_eq!(x.replica().counter("observation/a").unwrap(), 6);
        assert_eq!(x.replica().counter("observation/b").unwrap(), 6);
    }
}

#[test]
fn a_large_first_document_travels_in_pieces() {
    let mut e = engines(2, 0);
    connect(&mut e, Millis(0));
    pump(&mut e, Millis(0), &mut |_| false);
    // incompressible values: the document is well over one piece
    let mut seed = 7u64;
    for i in 0..80 {
        let noise: String = (0..40_000)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                char::from(b'a' + (seed >> 59) as u8)
            })
            .collect();
        let path = format!("observation/blob{i}");
        e[0].replica_mut()
            .put(Millis(1), path.as_str(), &noise)
            .unwrap();
    }
    e[0].replica_mut().cut_epoch(Millis(2)).unwrap();
    let snapshot = e[0].replica().epoch_snapshot().unwrap();
    assert!(
        snapshot.len() > MAX_SNAPSHOT_CHUNK_BYTES,
        "{}",
        snapshot.len()
    );
    heartbeat(&mut e, 5_000);
    heartbeat(&mut e, 10_000);
    assert_converged(&e);
}

#[test]
fn a_forged_snapshot_is_refused_and_changes_nothing() {
    let mut e = engines(2, 0);
    e[0].replica_mut()
        .put(Millis(1), "observation/x", &1)
        .unwrap();
    e[0].replica_mut().cut_epoch(Millis(2)).unwrap();
    let theirs = e[0].replica().epoch_announce();
    let before = (e[1].replica().epoch().id, e[1].replica().heads());
    let space = "space".to_owned();
    let epoch = theirs.id.0.0;
    let announce = Frame::Epoch {
        space: space.clone(),
        epoch,
        cut: theirs
            .cut
            .iter()
            .map(|(a, s)| (a.to_bytes().to_vec(), s))
            .collect(),
    };
    e[1].handle_input(Millis(3), Input::PeerUp(0));
    let input = |frame: &Frame| Input::Frame {
        from: 0,
        bytes: frame.encode().unwrap(),
    };
    e[1].handle_input(Millis(3), input(&announce));
    // asked for the snapshot; send another document's instead
    let mut other = engines(1, 0).remove(0);
    other
        .replica_mut()
        .put(Millis(1), "observation/y", &2)
        .unwrap();
    other.replica_mut().cut_epoch(Millis(2)).unwrap();
    let forged = other.replica().epoch_snapshot().unwrap();
    let piece = Frame::Snapshot {
        space,
        epoch,
        total: forged.len() as u64,
        offset: 0,
        chunk: forged,
    };
    e[1].handle_input(Millis(4), input(&piece));
    let events: Vec<_> = std::iter::from_fn(|| e[1].poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, SyncEvent::ProtocolError { peer: 0, .. }))
    );
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, SyncEvent::Disconnect(0)))
    );
    assert_eq!((e[1].replica().epoch().id, e[1].replica().heads()), before);
}
