//! [`Runner`]: the External State Coordination loop of one agent process.
//!
//! Each [`Runner::tick`], in this order:
//! 1. every [`Observer`] reads its external system, and what changed is
//!    written to its `observation/` channels;
//! 2. every decision function reads the space (observations, intents) and
//!    proposes [`Operation`]s, which are submitted (a duplicate id is
//!    ignored, so a decision may propose the same operation every tick);
//! 3. the [`Coordinator`] executes what is queued, each operation under
//!    the lease on its resource with the fencing token handed to its
//!    [`crate::coordinator::Executor`]: a coordinated step, the same path as
//!    [`Space::coordinate`].
//!
//! [`Runner::spawn`] ticks on an interval; tests call [`Runner::tick`]
//! themselves, so an agent is tested step by step with no sleeps.
//!
//! This module owns that order. It never writes an observation outside
//! `observation/`, never rewrites an unchanged one (an observer polled
//! every second would otherwise grow the space's history), and never
//! executes anything itself.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use tracing::Instrument;

use super::observe::{Observation, Observer, check};
use super::task::TaskHandle;
use crate::coordinator::{Coordinator, Operation, Submitted};
use crate::{Error, Space};

/// Proposes operations from what the space holds.
type Decide = Box<dyn FnMut(Space) -> BoxFuture<'static, Result<Vec<Operation>, String>> + Send>;

/// Observers, decisions and a coordinator, run together (see the module
/// docs).
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # let node = concord::Node::builder()
/// #     .data_dir(dir.path())
/// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
/// #     .build()
/// #     .await?;
/// use concord::coordinator::{Coordinator, Operation};
/// use concord::toolkit::{Observation, Runner};
/// use serde_json::json;
/// use std::sync::{Arc, Mutex};
///
/// let space = node.space("fleet").await?;
/// let running = Arc::new(Mutex::new(1_u64)); // the "external system"
/// let mut coordinator = Coordinator::new(space.clone(), node.space_lease(&space).await?);
/// let world = running.clone();
/// coordinator.register("scale", move |op, _token| {
///     let world = world.clone();
///     async move {
///         *world.lock().unwrap() = op.payload["to"].as_u64().unwrap_or(0);
///         Ok(json!("scaled"))
///     }
/// })?;
/// let world = running.clone();
/// let mut agent = Runner::new(coordinator)
///     .observe("processes", move || {
///         let now = *world.lock().unwrap();
///         async move { Ok(vec![Observation::new("observation/running", now.into())]) }
///     })
///     .decide("scale", |space| async move {
///         let want = space.get("intent/replicas").await.map_err(|e| e.to_string())?;
///         let have = space.get("observation/running").await.map_err(|e| e.to_string())?;
///         Ok(match want {
///             Some(want) if Some(&want) != have.as_ref() => vec![Operation {
///                 id: format!("scale-to-{want}"),
///                 kind: "scale".into(),
///                 resource: Some("fleet".into()),
///                 payload: json!({"to": want}),
///             }],
///             _ => vec![],
///         })
///     });
///
/// space.put("intent/replicas", json!(3)).await?;
/// agent.tick().await?; // observes 1, decides "scale to 3", executes it
/// assert_eq!(*running.lock().unwrap(), 3);
/// agent.tick().await?; // observes 3: nothing to do
/// assert_eq!(space.get("observation/running").await?, Some(json!(3)));
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub struct Runner {
    space: Space,
    coordinator: Coordinator,
    observers: Vec<(String, Box<dyn Observer>)>,
    decisions: Vec<(String, Decide)>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("space", &self.space.name())
            .field("coordinator", &self.coordinator)
            .field(
                "observers",
                &self.observers.iter().map(|o| &o.0).collect::<Vec<_>>(),
            )
            .field(
                "decisions",
                &self.decisions.iter().map(|d| &d.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What one [`Runner::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Observations written because they changed.
    pub observed: usize,
    /// Operations newly submitted by the decisions.
    pub submitted: usize,
    /// Operations the coordinator settled.
    pub executed: usize,
    /// Observers and decisions that failed this tick, with their error:
    /// the others still ran.
    pub failed: Vec<(String, String)>,
}

/// Stops a runner started with [`Runner::spawn`] when stopped or dropped.
pub type RunnerHandle = TaskHandle;

impl Runner {
    /// A runner of `coordinator`'s space, with no observer or decision yet.
    pub fn new(coordinator: Coordinator) -> Runner {
        Runner {
            space: coordinator.space().clone(),
            coordinator,
            observers: Vec::new(),
            decisions: Vec::new(),
        }
    }

    /// Adds an observer, `name` being how failures are reported.
    pub fn observe(mut self, name: &str, observer: impl Observer) -> Runner {
        self.observers.push((name.to_owned(), Box::new(observer)));
        self
    }

    /// Adds a decision: reads the space, proposes operations.
    pub fn decide<F, Fut>(mut self, name: &str, mut decide: F) -> Runner
    where
        F: FnMut(Space) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Operation>, String>> + Send + 'static,
    {
        let decide: Decide = Box::new(move |space| Box::pin(decide(space)));
        self.decisions.push((name.to_owned(), decide));
        self
    }

    /// Observes, decides and executes once (see the module docs).
    ///
    /// # Errors
    /// A failure of the space or its leases. An observer or decision that
    /// fails, or an observer that reports what cannot be written, is
    /// reported in [`Tick::failed`] instead.
    pub async fn tick(&mut self) -> Result<Tick, Error> {
        let span = tracing::debug_span!("tick", space = %self.space.name());
        async {
            let mut tick = Tick::default();
            for (name, observer) in &mut self.observers {
                let seen = observer.observe().await;
                match seen
                    .map_err(Error::Observation)
                    .and_then(|s| check(&s).map(|()| s))
                {
                    Ok(seen) => tick.observed += write_changed(&self.space, seen).await?,
                    Err(e) => tick.failed.push((name.clone(), e.to_string())),
                }
            }
            for (name, decide) in &mut self.decisions {
                match decide(self.space.clone()).await {
                    Ok(ops) => {
                        for op in ops {
                            let submitted = self.coordinator.submit(op).await?;
                            tick.submitted += usize::from(submitted != Submitted::Duplicate);
                        }
                    }
                    Err(e) => tick.failed.push((name.clone(), e)),
                }
            }
            tick.executed = self.coordinator.run_once().await?;
            for (name, error) in &tick.failed {
                tracing::warn!(%name, %error, "failed this tick");
            }
            Ok(tick)
        }
        .instrument(span)
        .await
    }

    /// Ticks every `every` in a task of its own until the handle is dropped
    /// or a tick fails (the failure is logged).
    pub fn spawn(mut self, every: Duration) -> RunnerHandle {
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = self.tick().await {
                    tracing::error!(error = %e, "runner stopped");
                    return;
                }
                tokio::time::sleep(every).await;
            }
        });
        TaskHandle::new(task)
    }
}

/// Writes each observation whose channel does not hold its value already,
/// in one step on the replica; how many it wrote.
async fn write_changed(space: &Space, seen: Vec<Observation>) -> Result<usize, Error> {
    space
        .run(move |r| {
            let mut written = 0;
            for o in seen {
                if r.get(&o.channel)?.as_ref() != Some(&o.value) {
                    r.put(concord_net::wall_clock(), o.channel.as_str(), &o.value)?;
                    written += 1;
                }
            }
            Ok(written)
        })
        .await
}
