//! Quickstart: two durable replicas of one space, a write on each, an exact
//! delta exchange, a simulated restart, and a subscription. The replicas
//! never touch their files: each hands out what to persist, and this program
//! (as the network driver does in a node) writes, fsyncs and confirms it.
//!
//! Run with `cargo run -p concord-examples --example quickstart`.

use anyhow::Result;
use concord_state::{
    ActorId, ChannelSpec, Delivery, Durable, Millis, Persist, Policy, Replica, ReplicaConfig,
    SubscribeOptions,
};
use concord_storage::{FileStorage, Storage};
use serde_json::json;

/// Opens agent `who`'s replica from its files.
fn open(dir: &std::path::Path, who: u8) -> Result<(Replica, FileStorage)> {
    let mut storage = FileStorage::open(dir.join(format!("agent-{who}")))?;
    let recovered = storage.load()?;
    let durable = Durable {
        snapshot: recovered.snapshot,
        records: recovered.records,
    };
    let actor = ActorId::from(&[who; 16][..]);
    let replica = Replica::recover("quickstart", actor, durable, ReplicaConfig::default())?;
    Ok((replica, storage))
}

/// Writes what the replica hands out to persist, fsyncs, and confirms it.
fn persist(replica: &mut Replica, storage: &mut FileStorage) -> Result<()> {
    let mut written = None;
    while let Some(op) = replica.poll_persist() {
        match &op.op {
            Persist::Append(record) => storage.append(record)?,
            Persist::Snapshot(doc) => storage.compact(doc)?,
        }
        written = Some(op.version);
    }
    if let Some(version) = written {
        storage.sync()?;
        replica.persisted(version);
    }
    Ok(())
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut a, mut a_disk) = open(dir.path(), 1)?;
    let (mut b, mut b_disk) = open(dir.path(), 2)?;
    let events = b.subscribe("intent/*", SubscribeOptions::default())?;

    a.declare(
        Millis(0),
        "coordination/deploy.owner",
        ChannelSpec::last_value(Policy::FirstWriteWins),
    )?;
    a.put(Millis(1), "observation/ci.status", &json!("green"))?;
    a.append(
        Millis(2),
        "intent/ops",
        &json!({"op": "deploy", "ref": "v1.4.0"}),
    )?;
    let claim = a.put(Millis(3), "coordination/deploy.owner", &"agent-1")?;
    persist(&mut a, &mut a_disk)?;
    println!(
        "agent-1 claimed the deploy (change seq {}, durable: {})",
        claim.seq,
        a.durable_seq() >= claim.seq
    );

    let delta = a.changes_since(b.vector_clock());
    println!(
        "agent-2 is missing {} change(s); sending exactly those",
        delta.len()
    );
    b.apply_changes(Millis(4), delta)?;
    persist(&mut b, &mut b_disk)?;
    while let Some(Delivery::Event(e)) = b.poll_event(events)? {
        println!("agent-2 saw {} -> {}", e.path, e.new.unwrap_or_default());
    }

    drop((b, b_disk));
    let (b, _b_disk) = open(dir.path(), 2)?;
    println!(
        "after restart agent-2 still reads ci.status = {} and owner = {}",
        b.get("observation/ci.status")?.unwrap_or_default(),
        b.get("coordination/deploy.owner")?.unwrap_or_default()
    );
    assert_eq!(a.heads(), b.heads());
    println!("converged: heads identical, clock {}", b.vector_clock());
    Ok(())
}
