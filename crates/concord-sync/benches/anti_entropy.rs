//! Anti-entropy cost: bytes on the wire to repair k missed changes.
//!
//! Two replicas share 10,000 changes; one then makes k more (k = 1, 100,
//! 1000) that the other missed. We count every byte both sides send until
//! they are quiet, for concord-sync (vector-clock digests + exact deltas) and
//! for the raw automerge sync protocol from a fresh sync state on the same
//! documents, in the same run. Last line: `bytes_ratio <worst concord/raw>`.

use std::time::Instant;

use automerge::sync::{self, SyncDoc};
use concord_state::{ActorId, Millis, Replica, VectorClock};
use concord_sync::{Destination, Input, SyncConfig, SyncEngine};

const SHARED: u64 = 10_000;
const KEYS: u64 = 1_000;

fn write(r: &mut Replica, i: u64) {
    r.put(
        Millis(i),
        format!("observation/k{}", i * 7_919 % KEYS).as_str(),
        &serde_json::json!({ "v": i }),
    )
    .expect("put");
}

/// Bytes concord-sync sends (both directions) until quiet.
fn concord_bytes(a: Replica, b: Replica) -> (usize, Replica, Replica) {
    let mut engines = [
        SyncEngine::new(SyncConfig::default(), a, 1),
        SyncEngine::new(SyncConfig::default(), b, 2),
    ];
    let now = Millis(1_000_000);
    engines[0].handle_input(now, Input::PeerUp(1u8));
    engines[1].handle_input(now, Input::PeerUp(0u8));
    let mut bytes = 0;
    loop {
        let mut moved = false;
        for i in 0..2 {
            while let Some(t) = engines[i].poll_transmit() {
                moved = true;
                bytes += t.bytes.len();
                let to = match t.to {
                    Destination::Peer(p) => p as usize,
                    Destination::Broadcast => 1 - i,
                };
                engines[to].handle_input(
                    now,
                    Input::Frame {
                        from: i as u8,
                        bytes: t.bytes,
                    },
                );
            }
        }
        if !moved {
            break;
        }
    }
    let [a, b] = engines;
    (bytes, a.into_replica(), b.into_replica())
}

/// Bytes automerge's sync protocol sends (both directions) from fresh states.
fn raw_bytes(a: &automerge::Automerge, b: &automerge::Automerge) -> (usize, bool) {
    let (mut a, mut b) = (a.fork(), b.fork());
    let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
    let mut bytes = 0;
    loop {
        let mut moved = false;
        if let Some(m) = a.generate_sync_message(&mut sa) {
            let enc = m.encode();
            bytes += enc.len();
            b.receive_sync_message(&mut sb, sync::Message::decode(&enc).expect("decode"))
                .expect("receive");
            moved = true;
        }
        if let Some(m) = b.generate_sync_message(&mut sb) {
            let enc = m.encode();
            bytes += enc.len();
            a.receive_sync_message(&mut sa, sync::Message::decode(&enc).expect("decode"))
                .expect("receive");
            moved = true;
        }
        if !moved {
            return (bytes, a.get_heads() == b.get_heads());
        }
    }
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--test");
    let shared = if quick { 200 } else { SHARED };
    let ks: &[u64] = if quick { &[1, 10] } else { &[1, 100, 1_000] };

    let start = Instant::now();
    let mut base = Replica::new("bench", ActorId::from(&[1u8; 16][..]));
    for i in 0..shared {
        write(&mut base, i);
    }
    let shared_changes = base.changes_since(&VectorClock::new());
    let saved = base.doc().save().len();
    println!(
        "setup: {shared} shared changes, saved document {saved} bytes ({:.1}s)",
        start.elapsed().as_secs_f64()
    );

    let mut worst: f64 = 0.0;
    println!(
        "{:>6}  {:>14}  {:>14}  {:>8}",
        "k", "concord bytes", "automerge bytes", "ratio"
    );
    for &k in ks {
        let mut a = Replica::new("bench", ActorId::from(&[1u8; 16][..]));
        let mut b = Replica::new("bench", ActorId::from(&[2u8; 16][..]));
        a.apply_changes(Millis(0), shared_changes.clone())
            .expect("apply");
        b.apply_changes(Millis(0), shared_changes.clone())
            .expect("apply");
        for i in 0..k {
            write(&mut a, shared + i);
        }
        let (raw, raw_converged) = raw_bytes(a.doc(), b.doc());
        let (ours, a, b) = concord_bytes(a, b);
        assert!(raw_converged, "raw sync must converge");
        assert_eq!(a.heads(), b.heads(), "concord-sync must converge");
        let ratio = ours as f64 / raw as f64;
        worst = worst.max(ratio);
        println!("{k:>6}  {ours:>14}  {raw:>14}  {ratio:>8.3}");
    }
    println!("bytes_ratio {worst:.3}");
}
