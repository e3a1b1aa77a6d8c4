//! [`TaskHandle`]: what a background part of the toolkit (a `when`
//! handler, a runner) hands back; stopping or dropping it stops the task.
//!
//! This module owns that ownership rule only; it never runs anything.

use tokio::task::JoinHandle;

/// A task of the toolkit's, stopped by [`TaskHandle::stop`] or when the
/// handle is dropped (a run under way is dropped with it).
#[derive(Debug)]
pub struct TaskHandle {
    task: JoinHandle<()>,
}

impl TaskHandle {
    pub(crate) fn new(task: JoinHandle<()>) -> TaskHandle {
        TaskHandle { task }
    }

    /// Stops the task.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
