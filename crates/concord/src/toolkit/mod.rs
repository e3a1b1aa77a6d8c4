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
//!
//! This module owns these conventions on top of the space's channels and
//! locks. It must never bypass the space's lease quorum for exclusion.

pub mod coordinate;
pub mod events;
pub mod retry;
pub mod when;

pub use coordinate::{Coordinate, StepContext, StepError};
pub(crate) use events::check_name;
pub use events::{AgentEvent, EVENTS};
pub use retry::RetryPolicy;
pub use when::{HANDLED, HandlerContext, When, WhenHandle};
