//! Engines when frames go missing: `Input::Differs` starts anti-entropy
//! with one peer at once (what a sync hub does for a space its summaries
//! found different), and a snapshot download whose pieces were lost starts
//! again once it stalled and the peer announces its epoch anew.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Engine, connect, engine, engine_with, pump, pump_with};
use concord_state::{EpochConfig, Millis, ReplicaConfig};
use concord_sync::engine::SNAPSHOT_STALL_MS;
use concord_sync::wire::FrameKind;
use concord_sync::{Input, SyncConfig};

fn kind(bytes: &[u8]) -> Option<FrameKind> {
    bytes.get(1).copied().and_then(FrameKind::from_code)
}

fn put(e: &mut Engine, now: u64, value: u64) {
    e.replica_mut()
        .put(Millis(now), "observation/x", &value)
        .unwrap();
    e.handle_input(Millis(now), Input::LocalCommit);
}

#[test]
fn differs_starts_anti_entropy_without_a_heartbeat() {
    let mut e: Vec<Engine> = (0..2).map(engine).collect();
    connect(&mut e, Millis(0));
    pump(&mut e, Millis(0), &mut |_| false);
    put(&mut e[0], 1, 7);
    put(&mut e[1], 1, 8);
    pump(&mut e, Millis(1), &mut |_| true);
    assert_ne!(e[0].replica().heads(), e[1].replica().heads());
    // Well before any heartbeat: one side is told the space differs.
    e[1].handle_input(Millis(2), Input::Differs(0));
    let frames = pump(&mut e, Millis(2), &mut |_| false);
    assert_eq!(e[0].replica().heads(), e[1].replica().heads());
    assert!(
        frames <= 4,
        "digest, delta and digest back, delta: {frames}"
    );
}

#[test]
fn a_stalled_snapshot_download_starts_again() {
    let cutter = SyncConfig {
        cut_jitter_ms: 0,
        ..SyncConfig::default()
    };
    let epochs = ReplicaConfig {
        epochs: EpochConfig {
            max_changes: 10,
            ..EpochConfig::default()
        },
        ..ReplicaConfig::default()
    };
    let mut e = vec![engine_with(0, cutter, epochs), engine(1)];
    connect(&mut e, Millis(0));
    pump(&mut e, Millis(0), &mut |_| false);
    // Engine 1 hears nothing while engine 0 writes past its threshold and
    // cuts: it lacks changes of the cut and must fetch the first document.
    for i in 0..12 {
        put(&mut e[0], 10 + i, i);
        pump(&mut e, Millis(10 + i), &mut |_| true);
    }
    assert!(e[0].replica().epoch().number >= 1);
    let mut requests = 0;
    let mut round = |e: &mut Vec<Engine>, now: u64, lose_pieces: bool| {
        for x in e.iter_mut() {
            x.handle_input(Millis(now), Input::Tick);
        }
        pump_with(e, Millis(now), &mut |_, bytes| {
            requests += usize::from(kind(bytes) == Some(FrameKind::SnapshotRequest));
            lose_pieces && kind(bytes) == Some(FrameKind::Snapshot)
        });
        std::mem::take(&mut requests)
    };
    assert_eq!(
        round(&mut e, 5_000, true),
        1,
        "requested; the pieces are lost"
    );
    assert_eq!(
        round(&mut e, 6_300, true),
        0,
        "not stalled yet: no new request"
    );
    let later = 5_000 + SNAPSHOT_STALL_MS + 1_000;
    assert_eq!(round(&mut e, later, false), 1, "stalled: requested again");
    assert_eq!(e[1].replica().epoch().id, e[0].replica().epoch().id);
    // The changes since the cut follow on the next heartbeat.
    round(&mut e, later + 1_500, false);
    assert_eq!(e[1].replica().heads(), e[0].replica().heads());
}
