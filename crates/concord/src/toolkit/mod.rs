//! The agent toolkit: what an agent developer writes, across processes and
//! hosts.
//!
//! - `space.emit(name, json)`: a replicated, durable agent event with an id
//!   ([`events`]).
//! - `space.coordinate(agent).lock(resource).run(|ctx| ...)`: a step under a
//!   lock that spans the space, announced as `<agent>_started`,
//!   `<agent>_complete` or `<agent>_failed` ([`coordinate`]).
//! - `space.when(event, handler).start()`: a handler run once per event
//!   across the whole space, taken over if its node dies, retried on
//!   failure; or once on every node ([`when`]).
//! - [`Runner`]: [`Observer`]s write what the outside world looks like to
//!   `observation/`, decisions turn it and the intents into operations, and
//!   the [`crate::coordinator::Coordinator`]'s executors carry them out
//!   under a lock, each as a coordinated step ([`runner`]).
//!
//! This module owns these conventions on top of the space's channels and
//! locks. It must never bypass the space's lease quorum for exclusion.

pub mod coordinate;
pub mod events;
pub mod observe;
pub mod retry;
pub mod runner;
mod task;
pub mod when;

pub use coordinate::{Coordinate, StepContext, StepError};
pub(crate) use events::check_name;
pub use events::{AgentEvent, EVENTS};
pub use observe::{MAX_OBSERVATIONS, Observation, Observer};
pub use retry::RetryPolicy;
pub use runner::{Runner, RunnerHandle, Tick};
pub use task::TaskHandle;
pub use when::{HANDLED, HandlerContext, When, WhenHandle};
