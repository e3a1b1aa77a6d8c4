//! Shared steps of the convergence property tests: delivering the same
//! changes to a replica in another order, and a full exchange between
//! writers.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part

use concord_state::{Millis, Replica};

/// Applies `all` to `observer` in the order `order` draws (a permutation
/// keyed by `order[j] ^ j`), `batch` changes per call.
pub fn deliver_shuffled(observer: &mut Replica, all: &[Vec<u8>], order: &[u32], batch: usize) {
    let mut shuffled: Vec<(u32, &Vec<u8>)> = all
        .iter()
        .enumerate()
        .map(|(j, c)| (order[j % order.len()] ^ j as u32, c))
        .collect();
    shuffled.sort_by_key(|(k, _)| *k);
    for chunk in shuffled.chunks(batch) {
        let changes = chunk.iter().map(|(_, c)| (*c).clone());
        observer.apply_changes(Millis(100), changes).unwrap();
    }
}

/// Every writer sends every other what it lacks.
pub fn exchange_all(writers: &mut [Replica]) {
    for i in 0..writers.len() {
        for j in 0..writers.len() {
            if i != j {
                let delta = writers[i].changes_since(writers[j].vector_clock());
                writers[j].apply_changes(Millis(100), delta).unwrap();
            }
        }
    }
}
