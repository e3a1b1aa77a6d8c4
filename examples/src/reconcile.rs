//! `reconcile`: a reconciliation loop over real child processes, carried
//! on by another node when the executing one dies.
//!
//! Three nodes of one space (each a lease peer, so locks survive losing
//! one) run the same agent, a [`Runner`]:
//! - an [`concord::Observer`] counts the live worker processes (real
//!   `sleep` children) into `observation/workers.running`;
//! - a decision compares it with `intent/workers.desired` and proposes one
//!   `reconcile` operation per (intent write, observation write) pair, so
//!   the three nodes propose the same id and it runs once (an observation
//!   written while it runs makes another, which finds the count matching
//!   and does nothing: the executor is level-based);
//! - the executor, under the lock on `workers` and its fencing token,
//!   starts or stops processes one at a time until the count matches.
//!
//! The scenario asks for 4 workers, kills the node whose executor is
//! starting them (its runner and node stop mid-operation), and watches a
//! surviving node take the operation over with a higher token and finish
//! it; then it asks for 1.
//!
//! This module owns the scenario and its report; it prints nothing (the
//! example's `main` does).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use concord::coordinator::{Coordinator, Operation};
use concord::toolkit::{Observation, Runner};
use concord::{FencingToken, Node, Space};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The space, and the resource the executor locks.
const SPACE: &str = "fleet";
const DESIRED: &str = "intent/workers.desired";
const RUNNING: &str = "observation/workers.running";

/// How long a worker is told to live: well past the scenario.
const WORKER_SECS: &str = "120";
/// The executor's pace: one process started or stopped per step.
const STEP: Duration = Duration::from_millis(300);
/// The lock's ttl: how long a dead executor holds the others up, at most.
const LOCK_TTL: Duration = Duration::from_secs(2);
/// How often each node's runner ticks.
const TICK: Duration = Duration::from_millis(100);
/// Longest wait for any one stage of the scenario.
const STAGE: Duration = Duration::from_secs(30);

/// The machine's worker processes, shared by the nodes of this process as
/// a process table is by the agents of one host.
#[derive(Debug, Default)]
pub struct Fleet {
    children: Vec<Child>,
}

impl Fleet {
    /// Pids of the workers still alive (reaping the dead).
    fn alive(&mut self) -> Vec<u32> {
        self.children
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        self.children.iter().filter_map(Child::id).collect()
    }

    fn start(&mut self) -> Result<u32> {
        let child = Command::new("sleep")
            .arg(WORKER_SECS)
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker (`sleep`)")?;
        let pid = child.id().context("a worker exited at once")?;
        self.children.push(child);
        Ok(pid)
    }

    fn stop_one(&mut self) -> Result<Option<u32>> {
        let Some(mut child) = self.children.pop() else {
            return Ok(None);
        };
        let pid = child.id();
        child.start_kill().context("stopping a worker")?;
        Ok(pid)
    }
}

/// One execution of a `reconcile` operation, as recorded in the space.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// The node that ran it (1-based).
    pub node: usize,
    /// Its fencing token.
    pub token: u64,
    /// Whether it completed (`false`: its node died first).
    pub completed: bool,
    /// Workers it started.
    pub started: u64,
    /// Workers it stopped.
    pub stopped: u64,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct Report {
    /// Workers alive at the start.
    pub initial: usize,
    /// The node killed while executing (1-based).
    pub killed: usize,
    /// Workers alive when it was killed.
    pub alive_at_kill: usize,
    /// Executions of the scale-up, in token order.
    pub scale_up: Vec<Execution>,
    /// Pids alive after the scale-up, and the observation of them.
    pub after_up: (Vec<u32>, Option<Value>),
    /// Pids alive after the scale-down, and the observation of them.
    pub after_down: (Vec<u32>, Option<Value>),
    /// How long the takeover took, from the kill to the operation's
    /// completion elsewhere.
    pub takeover: Duration,
}

/// Runs the scenario in `root` (the nodes' data directories).
///
/// # Errors
/// A node, a lock or a worker process failed, or a stage did not finish
/// within its time.
pub async fn run(root: &std::path::Path) -> Result<Report> {
    let fleet = Arc::new(Mutex::new(Fleet::default()));
    lock(&fleet).start()?;
    let initial = lock(&fleet).alive().len();
    let mut nodes = concord::testing::quorum_in(root, 3).await?;
    let mut runners = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        runners.push(Some(agent(node, i + 1, &fleet).await?.spawn(TICK)));
    }
    let peers: Vec<String> = nodes.iter().map(|n| n.peer_id().to_string()).collect();
    let space = nodes[0].space(SPACE).await?;

    space.put(DESIRED, json!(4)).await?;
    // The executor is starting workers: once it has started two, kill its
    // node (its runner stops mid-operation, then the node shuts down).
    let killed = wait_for(STAGE, || async {
        let started = space.events("reconcile_started").await?;
        let alive = lock(&fleet).alive().len();
        Ok(started
            .first()
            .filter(|_| alive >= 2)
            .map(|(_, e)| node_of(&e.by, &peers)))
    })
    .await?;
    if let Some(handle) = runners[killed - 1].take() {
        handle.stop();
    }
    let alive_at_kill = lock(&fleet).alive().len();
    let killed_at = Instant::now();
    let dead = nodes.remove(killed - 1);
    Arc::into_inner(dead)
        .context("the killed node is shared")?
        .shutdown()
        .await?;

    let space = nodes[0].space(SPACE).await?;
    wait_for(STAGE, || async {
        let done = space.events("reconcile_complete").await?;
        Ok((!done.is_empty()).then_some(()))
    })
    .await?;
    let takeover = killed_at.elapsed();
    let after_up = settle(&space, &fleet, 4).await?;
    let scale_up = executions(&space, &peers).await?;

    space.put(DESIRED, json!(1)).await?;
    let after_down = settle(&space, &fleet, 1).await?;

    for handle in runners.iter_mut().filter_map(Option::take) {
        handle.stop();
    }
    for node in nodes.into_iter().filter_map(Arc::into_inner) {
        node.shutdown().await?;
    }
    lock(&fleet).children.clear(); // kill_on_drop stops the rest
    Ok(Report {
        initial,
        killed,
        alive_at_kill,
        scale_up,
        after_up,
        after_down,
        takeover,
    })
}

/// The agent of node `n`: observes the fleet, decides, executes.
async fn agent(node: &Node, n: usize, fleet: &Arc<Mutex<Fleet>>) -> Result<Runner> {
    let space = node.space(SPACE).await?;
    let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?)
        .with_name(&format!("node-{n}"))
        .with_ttl(LOCK_TTL);
    let world = Arc::clone(fleet);
    coordinator.register("reconcile", move |op, token| {
        let world = Arc::clone(&world);
        async move {
            execute(&world, &op, token, n)
                .await
                .map_err(|e| format!("{e:#}"))
        }
    })?;
    let world = Arc::clone(fleet);
    Ok(Runner::new(coordinator)
        .observe("workers", move || {
            let alive = lock(&world).alive().len();
            async move { Ok(vec![Observation::new(RUNNING, json!(alive))]) }
        })
        .decide("reconcile", |space| async move {
            decide(&space).await.map_err(|e| format!("{e:#}"))
        }))
}

/// One `reconcile` operation if the observed count differs from the
/// desired one, named after the two writes it reconciles.
async fn decide(space: &Space) -> Result<Vec<Operation>> {
    let (want, have) = space
        .with(|r| -> Result<_, concord_state::StateError> {
            let last = |path| -> Result<_, concord_state::StateError> {
                Ok(r.history(path)?.pop().map(|h| (h.actor, h.seq, h.value)))
            };
            Ok((last(DESIRED)?, last(RUNNING)?))
        })
        .await??;
    let (Some((wa, ws, Some(want))), Some((ha, hs, have))) = (want, have) else {
        return Ok(Vec::new());
    };
    if have.as_ref() == Some(&want) {
        return Ok(Vec::new());
    }
    Ok(vec![Operation {
        id: format!("reconcile-{}.{ws}-{}.{hs}", &wa[..8], &ha[..8]),
        kind: "reconcile".into(),
        resource: Some("workers".into()),
        payload: json!({"desired": want}),
    }])
}

/// Starts or stops workers, one per [`STEP`], until `op`'s desired count
/// runs; level-based, so a takeover finishes what a dead executor began.
async fn execute(
    fleet: &Mutex<Fleet>,
    op: &Operation,
    token: FencingToken,
    node: usize,
) -> Result<Value> {
    let desired = op.payload["desired"].as_u64().context("desired count")?;
    let desired = usize::try_from(desired)?;
    let (mut started, mut stopped) = (0_u64, 0_u64);
    loop {
        let alive = lock(fleet).alive().len();
        if alive == desired {
            break;
        }
        tokio::time::sleep(STEP).await;
        if alive < desired {
            lock(fleet).start()?;
            started += 1;
        } else if lock(fleet).stop_one()?.is_some() {
            stopped += 1;
        }
    }
    Ok(json!({"node": node, "token": token.get(), "started": started, "stopped": stopped}))
}

/// Waits until `fleet` runs `n` workers and the space observed it.
async fn settle(
    space: &Space,
    fleet: &Mutex<Fleet>,
    n: usize,
) -> Result<(Vec<u32>, Option<Value>)> {
    wait_for(STAGE, || async {
        let pids = lock(fleet).alive();
        let seen = space.get(RUNNING).await?;
        Ok((pids.len() == n && seen == Some(json!(n))).then_some((pids, seen)))
    })
    .await
}

/// The scale-up's executions, in start order: each start's node and
/// token, and whether it completed.
async fn executions(space: &Space, peers: &[String]) -> Result<Vec<Execution>> {
    let done = space.events("reconcile_complete").await?;
    let mut runs = Vec::new();
    for (_, started) in space.events("reconcile_started").await? {
        let token = started.payload["token"].as_u64().unwrap_or(0);
        let finished = done
            .iter()
            .find(|(_, d)| d.payload["token"] == json!(token));
        let result = finished.map(|(_, d)| &d.payload["result"]);
        let count = |k: &str| result.and_then(|r| r[k].as_u64()).unwrap_or(0);
        runs.push(Execution {
            node: node_of(&started.by, peers),
            token,
            completed: finished.is_some(),
            started: count("started"),
            stopped: count("stopped"),
        });
    }
    runs.sort_by_key(|r| r.token);
    Ok(runs)
}

/// The node (1-based) of peer id `by`; 0 if none of ours.
fn node_of(by: &str, peers: &[String]) -> usize {
    peers.iter().position(|p| p == by).map_or(0, |i| i + 1)
}

fn lock(fleet: &Mutex<Fleet>) -> std::sync::MutexGuard<'_, Fleet> {
    fleet
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls `check` until it yields, for at most `within`.
async fn wait_for<T, F, Fut>(within: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("not done within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
