//! A researcher, an analyzer and a summarizer chained across three
//! in-process nodes. The researcher runs on the first node as a
//! coordinated step (`space.coordinate("researcher").lock("model")`); its
//! `researcher_complete` event triggers the analyzer and the analyzer's
//! `analyzer_complete` the summarizer, each a `space.when(..)` handler
//! registered on two of the three nodes (the analyzer not on the first, the
//! summarizer not on the second, so the chain crosses nodes) and run once
//! across the space, itself a coordinated step under the same lock. Every "model call" goes to a fake
//! model this example starts on loopback ([`crate::llm`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), concord_examples::ExampleError> {
//! let report = concord_examples::agent_pipeline::run("fencing tokens").await?;
//! assert!(report.every_stage_once());
//! print!("{report}");
//! # Ok(()) }
//! ```
//!
//! This module owns the pipeline. It must never call the model outside a
//! coordinated step, and never report a stage from anything but the
//! events read back from the space and what the model saw.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord::{AgentEvent, HandlerContext, Space, toolkit::WhenHandle};

use crate::ExampleError;
use crate::cluster::{self, DEADLINE, Member};
use crate::llm::{self, FakeModel};

/// The stages, in order; each after the first is triggered by the previous
/// one's `<agent>_complete`.
pub const STAGES: [&str; 3] = ["researcher", "analyzer", "summarizer"];

/// The lock every stage's model call runs under.
pub const LOCK: &str = "model";

/// How long to keep watching after the last stage, for a handler wrongly
/// run twice (several of `when`'s rescans).
const SETTLE: Duration = Duration::from_millis(1_000);

/// One handler run, as the handler itself recorded it.
#[derive(Debug, Clone)]
struct Run {
    agent: &'static str,
    node: String,
    trigger: String,
}

/// One stage as read back.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The agent.
    pub agent: String,
    /// What started it: `<event> <id>`, or the first node's call.
    pub trigger: String,
    /// The nodes it ran on (from the `<agent>_complete` events).
    pub nodes: Vec<String>,
    /// Its results (from the same events).
    pub results: Vec<String>,
    /// The fencing tokens of its lock (from the same events).
    pub tokens: Vec<u64>,
    /// How long the step took, per the event.
    pub duration_ms: Vec<u64>,
    /// Handler runs (0 for the researcher, run directly).
    pub handler_runs: usize,
    /// Calls the model saw from this role.
    pub model_calls: u64,
    /// The fencing tokens the model was sent by this role.
    pub model_tokens: Vec<u64>,
}

/// What the pipeline did.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    /// Where the fake model listened.
    pub model: SocketAddr,
    /// Each stage, in order.
    pub stages: Vec<Stage>,
    /// From the researcher's call to the summarizer's event, on node-1.
    pub took: Duration,
}

impl PipelineReport {
    /// Each stage completed once, on one node, with one model call; the
    /// handlers ran once each.
    pub fn every_stage_once(&self) -> bool {
        self.stages.len() == STAGES.len()
            && self.stages.iter().enumerate().all(|(i, s)| {
                s.nodes.len() == 1 && s.model_calls == 1 && s.handler_runs == usize::from(i > 0)
            })
    }
}

type Runs = Arc<Mutex<Vec<Run>>>;

/// A step of `agent` under [`LOCK`] that asks the model about `prompt`.
async fn step(
    space: &Space,
    model: SocketAddr,
    agent: &'static str,
    prompt: String,
) -> Result<String, ExampleError> {
    space
        .coordinate(agent)
        .lock(LOCK)
        .run(|ctx| async move {
            llm::complete_at(model, agent, &prompt, ctx.token().map(|t| t.get())).await
        })
        .await
        .map_err(|e| ExampleError::Step(e.to_string()))
}

/// Registers `agent` on `m`: on the previous stage's `_complete`, a step
/// on its result.
fn register(
    m: &Member,
    agent: &'static str,
    after: &'static str,
    model: SocketAddr,
    runs: &Runs,
) -> Result<WhenHandle, ExampleError> {
    let (node, runs) = (m.name.clone(), Arc::clone(runs));
    let event = format!("{after}_complete");
    let handler = move |event: AgentEvent, ctx: HandlerContext| {
        let (node, runs) = (node.clone(), Arc::clone(&runs));
        async move {
            if let Ok(mut runs) = runs.lock() {
                runs.push(Run {
                    agent,
                    node,
                    trigger: format!("{} {}", event.name, ctx.event_id),
                });
            }
            let prompt = event.payload["result"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            step(&ctx.space, model, agent, prompt).await.map(drop)
        }
    };
    Ok(m.space.when(&event, handler).named(agent).start()?)
}

/// Runs the pipeline on `topic`.
///
/// # Errors
/// A node or the model failed, or the summarizer did not complete within
/// 15 s.
#[tracing::instrument(level = "info")]
pub async fn run(topic: &str) -> Result<PipelineReport, ExampleError> {
    let dir = tempfile::tempdir().map_err(ExampleError::io("making a temp dir"))?;
    let model = FakeModel::start().await?;
    let members = cluster::joined(dir.path(), 3, "pipeline").await?;
    let runs = Runs::default();
    let mut handles = Vec::new();
    // Stage k's handler on every node but node k, so that the chain
    // crosses nodes; of the two that have it, one claims each event.
    for (k, pair) in STAGES.windows(2).enumerate() {
        for m in members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != k)
            .map(|(_, m)| m)
        {
            handles.push(register(m, pair[1], pair[0], model.addr(), &runs)?);
        }
    }
    let first = &members[0].space;
    let started = Instant::now();
    step(first, model.addr(), STAGES[0], topic.to_owned()).await?;
    let last = format!("{}_complete", STAGES[STAGES.len() - 1]);
    while first.events(&last).await?.is_empty() {
        if started.elapsed() > DEADLINE {
            return Err(ExampleError::Timeout(format!("no {last} within 15 s")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    drop(handles);

    let runs = runs.lock().map(|r| r.clone()).unwrap_or_default();
    let seen = model.seen();
    let mut stages = Vec::with_capacity(STAGES.len());
    for agent in STAGES {
        let done = first.events(&format!("{agent}_complete")).await?;
        let mine: Vec<&Run> = runs.iter().filter(|r| r.agent == agent).collect();
        let trigger = mine.first().map_or_else(
            || format!("called by {}", members[0].name),
            |r| format!("{} (claimed by {})", r.trigger, r.node),
        );
        let field =
            |e: &AgentEvent, key: &str| e.payload.get(key).and_then(serde_json::Value::as_u64);
        stages.push(Stage {
            agent: agent.to_owned(),
            trigger,
            nodes: done
                .iter()
                .map(|(_, e)| cluster::name_of(&members, &e.by))
                .collect(),
            results: done
                .iter()
                .map(|(_, e)| e.payload["result"].as_str().unwrap_or_default().to_owned())
                .collect(),
            tokens: done.iter().filter_map(|(_, e)| field(e, "token")).collect(),
            duration_ms: done
                .iter()
                .filter_map(|(_, e)| field(e, "duration_ms"))
                .collect(),
            handler_runs: mine.len(),
            model_calls: seen.get(agent).map_or(0, |s| s.calls),
            model_tokens: seen.get(agent).map_or_else(Vec::new, |s| s.tokens.clone()),
        });
    }
    cluster::shutdown(members).await?;
    Ok(PipelineReport {
        model: model.addr(),
        stages,
        took,
    })
}

/// `1, 2, 3` (each of a stage's events has one).
fn joined(values: &[u64]) -> String {
    let shown: Vec<String> = values.iter().map(u64::to_string).collect();
    shown.join(", ")
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fake model listening on http://{}", self.model)?;
        for s in &self.stages {
            writeln!(
                f,
                "{}: {}; ran on {} under lock {LOCK} (token {}) in {} ms; handler runs {}, model calls {} (token sent {})",
                s.agent,
                s.trigger,
                s.nodes.join(", "),
                joined(&s.tokens),
                joined(&s.duration_ms),
                s.handler_runs,
                s.model_calls,
                joined(&s.model_tokens)
            )?;
            for r in &s.results {
                writeln!(f, "  result: {r}")?;
            }
        }
        writeln!(
            f,
            "researcher call to summarizer_complete: {} ms; every stage ran exactly once: {}",
            self.took.as_millis(),
            self.every_stage_once()
        )
    }
}
