//! [`TaskHandle`]: what a background part of the toolkit (a `when`
//! handler, a runner) hands back; stopping or dropping it stops the task.
//!
//! This module owns that ownership rule only; it never runs anything.

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A task of the toolkit's, stopped by [`TaskHandle::stop`] or when the
/// handle is dropped (a run under way is dropped with it).
#[derive(Debug)]
pub struct TaskHandle {
    /// `None` once stopped gracefully: the task ends by itself.
    task: Option<JoinHandle<()>>,
    /// Asks the task to wind down (`None`: it has no such path).
    wind_down: Option<oneshot::Sender<()>>,
}

impl TaskHandle {
    /// A task that stop and drop both abort.
    pub(crate) fn new(task: JoinHandle<()>) -> TaskHandle {
        TaskHandle {
            task: Some(task),
            wind_down: None,
        }
    }

    /// A task that [`TaskHandle::stop`] asks to wind down (it ends by
    /// itself, shortly); dropping the handle still aborts it.
    pub(crate) fn winding_down(task: JoinHandle<()>, wind_down: oneshot::Sender<()>) -> TaskHandle {
        TaskHandle {
            task: Some(task),
            wind_down: Some(wind_down),
        }
    }

    /// Stops the task. A `when` handler first stops its runs and gives
    /// back the partitions it holds, so that other nodes take them at once
    /// (in the background: this returns at once); a runner stops where it
    /// is.
    pub fn stop(mut self) {
        if let Some(wind_down) = self.wind_down.take()
            && wind_down.send(()).is_ok()
        {
            self.task = None;
        }
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
