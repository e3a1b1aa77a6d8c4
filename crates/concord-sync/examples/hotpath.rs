//! scratch: time the hot path stages
use std::time::{Duration, Instant};
use concord_state::{ActorId, Millis, Replica, SubscribeOptions};
use concord_sync::{Input, SyncConfig, SyncEngine};

fn main() {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1000);
    let keys: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(1);
    let rounds: usize = std::env::args().nth(3).map(|s| s.parse().unwrap()).unwrap_or(1);
    let mut t = [Duration::ZERO; 4];
    for _ in 0..rounds {
    let mut a = SyncEngine::new(SyncConfig::default(), Replica::new("bench", ActorId::from(&[1u8;16][..])), 1);
    let mut b = SyncEngine::new(SyncConfig::default(), Replica::new("bench", ActorId::from(&[2u8;16][..])), 2);
    let sub = b.replica_mut().subscribe("observation/*", SubscribeOptions::default()).unwrap();
    a.handle_input(Millis(0), Input::PeerUp(2u32));
    b.handle_input(Millis(0), Input::PeerUp(1u32));
    while a.poll_transmit().is_some() {}
    while b.poll_transmit().is_some() {}
    for i in 0..n {
        let now = Millis(1000 + i as u64);
        let key = format!("observation/lat{}", i % keys);
        let t0 = Instant::now();
        a.replica_mut().put(now, key.as_str(), &(i as u64)).unwrap();
        let t1 = Instant::now();
        a.handle_input(now, Input::LocalCommit);
        let mut frames = Vec::new();
        while let Some(tx) = a.poll_transmit() { frames.push(tx.bytes); }
        let t2 = Instant::now();
        for f in frames { b.handle_input(now, Input::Frame { from: 1u32, bytes: f }); }
        let t3 = Instant::now();
        while let Ok(Some(_)) = b.replica_mut().poll_event(sub) {}
        while b.poll_transmit().is_some() {}
        let t4 = Instant::now();
        t[0] += t1 - t0; t[1] += t2 - t1; t[2] += t3 - t2; t[3] += t4 - t3;
    }
    }
    let d = (n * rounds) as u32;
    println!("per op (mean of {n} writes x {rounds}, {keys} keys): put {:?} commit+encode {:?} receive+apply {:?} events {:?}", t[0]/d, t[1]/d, t[2]/d, t[3]/d);
}
