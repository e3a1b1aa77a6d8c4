//! [`Observer`]: what reads the outside world into the space's
//! `observation/` channels.
//!
//! This module owns the trait and the check that observations land in the
//! observation family; it never schedules an observer (the
//! [`super::Runner`] does) and never writes outside `observation/`.

use std::future::Future;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::Error;

/// Most observations one observer may report in one tick: an observer
/// reporting more fails that tick (nothing of it is written).
pub const MAX_OBSERVATIONS: usize = 256;

/// One fact about the outside world: `value` for the `LastValue` channel
/// `channel` (in the `observation/` family).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The channel, `observation/...`.
    pub channel: String,
    /// What was observed.
    pub value: Value,
}

impl Observation {
    /// `value` observed for `channel`.
    pub fn new(channel: &str, value: Value) -> Observation {
        Observation {
            channel: channel.to_owned(),
            value,
        }
    }
}

/// Reads an external system (a process table, a git ref, a queue's depth)
/// and reports what it saw; the runner writes each [`Observation`] that
/// changed.
///
/// An async closure `FnMut() -> Result<Vec<Observation>, String>` is one; a
/// struct implements it for state of its own:
///
/// ```
/// use concord::toolkit::{Observation, Observer};
/// use futures::FutureExt;
/// use futures::future::BoxFuture;
///
/// struct QueueDepth {
///     depth: u64,
/// }
///
/// impl Observer for QueueDepth {
///     fn observe(&mut self) -> BoxFuture<'_, Result<Vec<Observation>, String>> {
///         self.depth += 1;
///         let seen = Observation::new("observation/queue.depth", self.depth.into());
///         async move { Ok(vec![seen]) }.boxed()
///     }
/// }
///
/// let mut queue = QueueDepth { depth: 0 };
/// let seen = futures::executor::block_on(queue.observe()).unwrap();
/// assert_eq!(seen[0].value, 1);
/// ```
pub trait Observer: Send + 'static {
    /// What the outside world looks like now, or why it could not be read.
    fn observe(&mut self) -> BoxFuture<'_, Result<Vec<Observation>, String>>;
}

impl<F, Fut> Observer for F
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<Observation>, String>> + Send + 'static,
{
    fn observe(&mut self) -> BoxFuture<'_, Result<Vec<Observation>, String>> {
        Box::pin(self())
    }
}

/// Checks that `seen` may be written: at most [`MAX_OBSERVATIONS`], all in
/// the `observation/` family.
pub(crate) fn check(seen: &[Observation]) -> Result<(), Error> {
    if seen.len() > MAX_OBSERVATIONS {
        return Err(Error::Observation(format!(
            "{} observations in one tick (at most {MAX_OBSERVATIONS})",
            seen.len()
        )));
    }
    match seen.iter().find(|o| !o.channel.starts_with("observation/")) {
        Some(o) => Err(Error::Observation(format!(
            "{:?} is not an observation channel (observation/...)",
            o.channel
        ))),
        None => Ok(()),
    }
}
