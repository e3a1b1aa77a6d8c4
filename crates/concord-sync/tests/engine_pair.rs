//! Two and three engines wired back to back in memory: fast path, anti-entropy
//! after loss, the sync-protocol fallback, and refusal of garbage.

mod common;

use common::{Engine, connect, engine, pump};
use concord_state::Millis;
use concord_sync::{Input, SyncEvent};
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
