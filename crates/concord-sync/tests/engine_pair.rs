//! Two and three engines wired back to back in memory: fast path, anti-entropy
//! after loss, the sync-protocol fallback, refusal of garbage, and
//! ephemeral values (fast path, hand-over to a peer that comes up, timers).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Engine, connect, engine, pump};
use concord_state::{ActorId, ChannelSpec, EphemeralUpdate, Hlc, Millis};
use concord_sync::wire::{EphemeralEntry, Frame, FrameKind};
use concord_sync::{Destination, Input, SyncEvent, Transmit};
use serde_json::json;

#[test]
fn fast_path_and_heartbeat_repair_loss() {
    let mut e: Vec<Engine> = (0..3).map(engine).collect();
    connect(&mut e, Millis(0));
    pump(&mut e, Millis(0), &mut |_| false);
    // Lose every broadcast of 20 writes.
    for i in 0..20 {
        e[0].replica_mut()
            .put(Millis(10 + i), "observation/x", &json!(i))
            .unwrap();
        e[0].handle_input(Millis(10 + i), Input::LocalCommit);
        pump(&mut e, Millis(10 + i), &mut |_| true);
    }
    assert_ne!(e[0].replica().heads(), e[1].replica().heads());
    // One heartbeat later, anti-entropy repairs everything.
    let later = Millis(5_000);
    for x in e.iter_mut() {
        x.handle_input(later, Input::Tick);
    }
    pump(&mut e, later, &mut |_| false);
    for x in &e[1..] {
        assert_eq!(x.replica().heads(), e[0].replica().heads());
        assert_eq!(x.replica().get("observation/x").unwrap(), Some(json!(19)));
    }
}

#[test]
fn fast_path_delivers_without_heartbeat() {
    let mut e: Vec<Engine> = (0..2).map(engine).collect();
    connect(&mut e, Millis(0));
    pump(&mut e, Millis(0), &mut |_| false);
    e[1].replica_mut()
        .append(Millis(1), "intent/ops", &json!("go"))
        .unwrap();
    e[1].handle_input(Millis(1), Input::LocalCommit);
    pump(&mut e, Millis(1), &mut |_| false);
    assert_eq!(e[0].replica().heads(), e[1].replica().heads());
}

#[test]
fn garbage_is_refused_and_replica_untouched() {
    let mut e = engine(0);
    e.handle_input(Millis(0), Input::PeerUp(9));
    e.replica_mut().put(Millis(1), "observation/x", &1).unwrap();
    let heads = e.replica().heads();
    e.handle_input(
        Millis(2),
        Input::Frame {
            from: 9,
            bytes: vec![0xff, 0x00, 0x13],
        },
    );
    let mut saw_error = false;
    let mut saw_disconnect = false;
    while let Some(ev) = e.poll_event() {
        match ev {
            SyncEvent::ProtocolError { peer: 9, .. } => saw_error = true,
            SyncEvent::Disconnect(9) => saw_disconnect = true,
            _ => {}
        }
    }
    assert!(saw_error && saw_disconnect);
    assert_eq!(e.replica().heads(), heads);
    // A valid frame of the replica's epoch holding an invalid change is
    // refused too.
    let bad = concord_sync::wire::Frame::Changes {
        space: "space".into(),
        epoch: e.replica().epoch().id.0.0,
        changes: vec![b"nope".to_vec()],
    };
    e.handle_input(
        Millis(3),
        Input::Frame {
            from: 8,
            bytes: bad.encode().unwrap(),
        },
    );
    assert!(std::iter::from_fn(|| e.poll_event()).any(|ev| matches!(ev, SyncEvent::Disconnect(8))));
    assert_eq!(e.replica().heads(), heads);
}

const BEAT: &str = "observation/agent.heartbeat";

/// Declares `BEAT` ephemeral (1 s) on `e` and tells the engine.
fn declare_beat(e: &mut Engine, now: Millis) {
    e.replica_mut()
        .declare(now, BEAT, ChannelSpec::ephemeral(1_000))
        .unwrap();
    e.handle_input(now, Input::LocalCommit);
}

fn transmits(e: &mut Engine) -> Vec<Transmit<u8>> {
    std::iter::from_fn(|| e.poll_transmit()).collect()
}

fn is_ephemeral(t: &Transmit<u8>) -> bool {
    t.bytes.get(1) == Some(&FrameKind::Ephemeral.code())
}

fn writer_hex(id: u8) -> String {
    ActorId::from(&[id; 16][..]).to_hex_string()
}

#[test]
fn ephemeral_writes_go_out_on_the_fast_path() {
    let mut e: Vec<Engine> = (0..2).map(engine).collect();
    connect(&mut e, Millis(0));
    declare_beat(&mut e[0], Millis(1));
    pump(&mut e, Millis(1), &mut |_| false);
    let clock = e[1].replica().vector_clock().clone();
    for beat in 0..5 {
        e[0].replica_mut()
            .put_ephemeral(Millis(10 + beat), BEAT, &json!({"beat": beat}))
            .unwrap();
    }
    e[0].handle_input(Millis(15), Input::LocalCommit);
    // One broadcast carrying the latest value only, nothing else.
    let out = transmits(&mut e[0]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Destination::Broadcast);
    let Ok(Frame::Ephemeral { entries, .. }) = Frame::decode(&out[0].bytes) else {
        panic!("not an ephemeral frame");
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].value, br#"{"beat":4}"#);
    e[1].handle_input(
        Millis(16),
        Input::Frame {
            from: 0,
            bytes: out[0].bytes.clone(),
        },
    );
    assert_eq!(
        e[1].replica().get(BEAT).unwrap(),
        Some(json!({ writer_hex(0): {"beat": 4} }))
    );
    assert_eq!(e[1].replica().vector_clock(), &clock);
    // Nothing new: nothing sent again.
    e[0].handle_input(Millis(17), Input::LocalCommit);
    assert!(transmits(&mut e[0]).is_empty());
}

#[test]
fn a_peer_that_comes_up_gets_every_live_value() {
    let mut e: Vec<Engine> = (0..3).map(engine).collect();
    declare_beat(&mut e[0], Millis(1));
    transmits(&mut e[0]);
    e[0].replica_mut()
        .put_ephemeral(Millis(10), BEAT, &"zero")
        .unwrap();
    // A value engine 0 got from writer 9 is handed over too.
    let theirs = EphemeralUpdate {
        path: BEAT.parse().unwrap(),
        writer: ActorId::from(&[9; 16][..]),
        hlc: Hlc {
            wall: 10,
            logical: 0,
        },
        ttl_ms: 1_000,
        value: b"\"nine\"".to_vec(),
    };
    e[0].replica_mut()
        .apply_ephemeral(Millis(10), vec![theirs])
        .unwrap();
    // Engine 2 comes up later (the outbox was never broadcast to it). The
    // values go to it once it is heard from: its session for the space runs.
    e[0].handle_input(Millis(20), Input::PeerUp(2));
    let hello = transmits(&mut e[0]);
    assert!(!hello.iter().any(is_ephemeral));
    e[2].handle_input(Millis(20), Input::PeerUp(0));
    let mut handed = Vec::new();
    for t in transmits(&mut e[2]) {
        e[0].handle_input(
            Millis(21),
            Input::Frame {
                from: 2,
                bytes: t.bytes,
            },
        );
        handed.extend(transmits(&mut e[0]).into_iter().filter(is_ephemeral));
    }
    assert_eq!(handed.len(), 1, "handed once, however many frames came");
    assert_eq!(handed[0].to, Destination::Peer(2));
    for t in hello.iter().chain(&handed) {
        e[2].handle_input(
            Millis(22),
            Input::Frame {
                from: 0,
                bytes: t.bytes.clone(),
            },
        );
    }
    assert_eq!(
        e[2].replica().get(BEAT).unwrap(),
        Some(json!({ writer_hex(0): "zero", writer_hex(9): "nine" }))
    );
    // Reconnecting hands them over again.
    e[0].handle_input(Millis(30), Input::PeerDown(2));
    e[0].handle_input(Millis(31), Input::PeerUp(2));
    let epoch = e[0].replica().epoch().id.0.0;
    let digest = Frame::digest("space", epoch, Vec::new(), [0; 8], true).unwrap();
    let from_2 = |e: &mut Engine, at| {
        let bytes = digest.encode().unwrap();
        e.handle_input(Millis(at), Input::Frame { from: 2, bytes });
    };
    from_2(&mut e[0], 32);
    assert!(transmits(&mut e[0]).iter().any(is_ephemeral));
    // Once they expired, a peer gets none.
    e[0].handle_input(Millis(1_010), Input::PeerDown(2));
    e[0].handle_input(Millis(1_011), Input::PeerUp(2));
    from_2(&mut e[0], 1_012);
    assert!(!transmits(&mut e[0]).iter().any(is_ephemeral));
}

#[test]
fn a_bad_ephemeral_frame_disconnects_and_changes_nothing() {
    let mut e = engine(0);
    declare_beat(&mut e, Millis(1));
    e.replica_mut().put_ephemeral(Millis(2), BEAT, &1).unwrap();
    let before = e.replica().get(BEAT).unwrap();
    let good = EphemeralEntry {
        path: BEAT.into(),
        writer: vec![5; 16],
        wall: 3,
        logical: 0,
        ttl_ms: 1_000,
        value: b"2".to_vec(),
    };
    let bad_path = EphemeralEntry {
        path: "nowhere/x".into(),
        ..good.clone()
    };
    let bad_json = EphemeralEntry {
        value: b"{".to_vec(),
        ..good.clone()
    };
    let frame = |entries| Frame::Ephemeral {
        space: "space".into(),
        entries,
    };
    let mut truncated = frame(vec![good.clone()]).encode().unwrap();
    truncated.pop();
    let inputs = [
        frame(vec![good.clone(), bad_path]).encode().unwrap(),
        frame(vec![good.clone(), bad_json]).encode().unwrap(),
        truncated,
    ];
    for (peer, bytes) in (10u8..).zip(inputs) {
        e.handle_input(Millis(3), Input::PeerUp(peer));
        e.handle_input(Millis(3), Input::Frame { from: peer, bytes });
        let events: Vec<SyncEvent<u8>> = std::iter::from_fn(|| e.poll_event()).collect();
        assert!(
            events
                .iter()
                .any(|ev| matches!(ev, SyncEvent::ProtocolError { peer: p, .. } if *p == peer))
        );
        assert!(
            events
                .iter()
                .any(|ev| matches!(ev, SyncEvent::Disconnect(p) if *p == peer))
        );
        assert!(e.peers().all(|p| *p != peer));
        assert_eq!(e.replica().get(BEAT).unwrap(), before);
    }
}

#[test]
fn ephemeral_values_ask_for_a_tick_at_their_expiry_only_while_held() {
    let mut e = engine(0);
    declare_beat(&mut e, Millis(1));
    assert_eq!(e.poll_timeout(), None, "an idle engine holds no timer");
    let receipt = e.replica_mut().put_ephemeral(Millis(5), BEAT, &1).unwrap();
    e.handle_input(Millis(5), Input::LocalCommit);
    assert_eq!(e.poll_timeout(), Some(receipt.expires_at));
    e.handle_input(receipt.expires_at, Input::Tick);
    assert_eq!(e.replica().get(BEAT).unwrap(), Some(json!({})));
    assert_eq!(e.poll_timeout(), None);
    // With a peer, the earlier of its digest and the next expiry.
    e.handle_input(Millis(2_000), Input::PeerUp(1));
    let digest = e.poll_timeout().unwrap();
    e.replica_mut()
        .put_ephemeral(Millis(2_000), BEAT, &2)
        .unwrap();
    assert_eq!(e.poll_timeout(), Some(digest.min(Millis(3_000))));
}
