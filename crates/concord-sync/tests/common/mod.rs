//! The in-memory network of the engine tests: engines wired back to back,
//! every transmit delivered (or dropped on request) until all are quiet.
#![allow(dead_code)] // each test binary uses a part

use concord_state::{ActorId, Millis, Replica, ReplicaConfig};
use concord_sync::{Destination, Input, SyncConfig, SyncEngine};

pub type Engine = SyncEngine<u8>;

pub fn engine(id: u8) -> Engine {
    engine_with(id, SyncConfig::default(), ReplicaConfig::default())
}

pub fn engine_with(id: u8, sync: SyncConfig, replica: ReplicaConfig) -> Engine {
    SyncEngine::new(
        sync,
        Replica::with_config("space", ActorId::from(&[id; 16][..]), replica),
        u64::from(id),
    )
}

/// Delivers every queued transmit (broadcasts to all others) until quiet,
/// dropping a transmit when `drop` says so. Returns frames delivered.
pub fn pump(engines: &mut [Engine], now: Millis, drop: &mut dyn FnMut(usize) -> bool) -> usize {
    pump_with(engines, now, &mut |n, _| drop(n))
}

/// Like [`pump`], dropping by the frame's bytes: `lose(n, bytes)` for the
/// `n`-th transmit.
pub fn pump_with(
    engines: &mut [Engine],
    now: Millis,
    lose: &mut dyn FnMut(usize, &[u8]) -> bool,
) -> usize {
    let mut delivered = 0;
    let mut n = 0;
    loop {
        let mut moved = false;
        for i in 0..engines.len() {
            while let Some(t) = engines[i].poll_transmit() {
                moved = true;
                n += 1;
                let targets: Vec<usize> = match t.to {
                    Destination::Peer(p) => vec![p as usize],
                    Destination::Broadcast => (0..engines.len()).filter(|j| *j != i).collect(),
                };
                for j in targets {
                    if lose(n, &t.bytes) {
                        continue;
                    }
                    delivered += 1;
                    engines[j].handle_input(
                        now,
                        Input::Frame {
                            from: i as u8,
                            bytes: t.bytes.clone(),
                        },
                    );
                }
            }
        }
        if !moved {
            return delivered;
        }
    }
}

pub fn connect(engines: &mut [Engine], now: Millis) {
    for i in 0..engines.len() {
        for j in 0..engines.len() {
            if i != j {
                engines[i].handle_input(now, Input::PeerUp(j as u8));
            }
        }
    }
}
