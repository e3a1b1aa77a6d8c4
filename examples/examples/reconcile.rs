//! A reconciliation loop over real child processes: three nodes, one
//! desired count, an executor that starts and stops `sleep` workers under
//! a lock; the executing node is killed mid-operation and another carries
//! on.
//!
//! Run with `cargo run -p concord-examples --example reconcile`.

use anyhow::Result;
use concord_examples::reconcile;

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let r = reconcile::run(dir.path()).await?;
    println!(
        "3 nodes, {} worker process(es) running; intent/workers.desired = 4",
        r.initial
    );
    println!(
        "node-{} was executing (its workers alive: {}) and was killed",
        r.killed, r.alive_at_kill
    );
    for e in &r.scale_up {
        let outcome = if e.completed {
            format!("completed: started {}, stopped {}", e.started, e.stopped)
        } else {
            "never completed (its node died)".to_owned()
        };
        println!(
            "  execution on node-{} with token {}: {outcome}",
            e.node, e.token
        );
    }
    println!(
        "taken over and finished {} ms after the kill",
        r.takeover.as_millis()
    );
    println!(
        "running: pids {:?}; observation/workers.running = {}",
        r.after_up.0,
        r.after_up
            .1
            .as_ref()
            .map_or("-".into(), ToString::to_string)
    );
    println!(
        "intent/workers.desired = 1 -> running: pids {:?}; observed {}",
        r.after_down.0,
        r.after_down
            .1
            .as_ref()
            .map_or("-".into(), ToString::to_string)
    );
    Ok(())
}
