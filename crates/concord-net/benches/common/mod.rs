//! What the concord-net benches share: a node's space as `concord::Node`
//! keeps it (a durable replica on `FileStorage`, handed to the driver), a
//! node's first listen address, and percentiles.
#![allow(dead_code)] // each bench uses a part

use std::path::Path;
use std::time::Duration;

use concord_net::{Multiaddr, NetHandle, SpaceOptions};
use concord_state::{ActorId, Durable, Replica, ReplicaConfig};
use concord_storage::{FileStorage, Storage};

/// Opens `space` on `node`, recovered from (and persisted to) `dir`, with
/// actor id `[actor; 16]`.
pub async fn open_durable(node: &NetHandle, dir: &Path, space: &str, actor: u8) {
    let mut storage = FileStorage::open(dir).expect("storage");
    let recovered = storage.load().expect("load");
    let durable = Durable {
        snapshot: recovered.snapshot,
        records: recovered.records,
    };
    let actor = ActorId::from(&[actor; 16][..]);
    let replica =
        Replica::recover(space, actor, durable, ReplicaConfig::default()).expect("replica");
    node.open_space(replica, Box::new(storage), SpaceOptions::default())
        .await
        .expect("open");
}

/// The node's first listen address, once it has one.
pub async fn listen_addr(node: &NetHandle) -> Multiaddr {
    loop {
        if let Some(a) = node.listen_addrs().await.expect("addrs").into_iter().next() {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `p` quantile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
