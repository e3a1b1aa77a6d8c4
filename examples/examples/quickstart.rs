//! Quickstart: two durable replicas of one space, a write on each, an exact
//! delta exchange, a simulated restart, and a subscription.
//!
//! Run with `cargo run -p concord-examples --example quickstart`.

use anyhow::Result;
use concord_state::storage::FileStorage;
use concord_state::{
    ActorId, ChannelSpec, Delivery, Millis, Policy, Replica, ReplicaConfig, SubscribeOptions,
};
use serde_json::json;

fn open(dir: &std::path::Path, who: u8) -> Result<Replica> {
    let storage = FileStorage::open(dir.join(format!("agent-{who}")))?;
    Ok(Replica::open(
        "quickstart",
        ActorId::from(&[who; 16][..]),
        Box::new(storage),
        ReplicaConfig::default(),
    )?)
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = open(dir.path(), 1)?;
    let mut b = open(dir.path(), 2)?;
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
    println!(
        "agent-1 claimed the deploy (change seq {}, durable: {})",
        claim.seq, claim.durable
    );

    let delta = a.changes_since(b.vector_clock());
    println!(
        "agent-2 is missing {} change(s); sending exactly those",
        delta.len()
    );
    b.apply_changes(Millis(4), delta)?;
    while let Some(Delivery::Event(e)) = b.poll_event(events)? {
        println!("agent-2 saw {} -> {}", e.path, e.new.unwrap_or_default());
    }

    drop(b);
    let b = open(dir.path(), 2)?;
    println!(
        "after restart agent-2 still reads ci.status = {} and owner = {}",
        b.get("observation/ci.status")?.unwrap_or_default(),
        b.get("coordination/deploy.owner")?.unwrap_or_default()
    );
    assert_eq!(a.heads(), b.heads());
    println!("converged: heads identical, clock {}", b.vector_clock());
    Ok(())
}
