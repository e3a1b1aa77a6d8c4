//! The examples' error type: everything a scenario can fail with.
//!
//! This module owns the error type only; it must never hide a failure of
//! the systems an example drives (their own words are kept).

/// Why a scenario could not run to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExampleError {
    /// Concord failed (a node, a space, a lock); boxed, being large.
    #[error(transparent)]
    Concord(Box<concord::Error>),
    /// A coordinated step failed around or inside its work.
    #[error("step: {0}")]
    Step(String),
    /// A `git` command could not be run or failed unexpectedly.
    #[error("git {args}: {detail}")]
    Git {
        /// The command's arguments.
        args: String,
        /// Its error output, or why it could not start.
        detail: String,
    },
    /// A `git` command wrote more than the limit on its output (64 KiB).
    #[error("git wrote more than {max} bytes")]
    GitOutputTooLarge {
        /// The limit.
        max: usize,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// A local file or socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The model endpoint failed or answered something unreadable.
    #[error("model endpoint: {0}")]
    Model(String),
    /// The model's reply was longer than [`crate::llm::MAX_REPLY_BYTES`].
    #[error("model reply longer than {max} bytes")]
    ReplyTooLarge {
        /// The limit.
        max: usize,
    },
    /// A task of the scenario panicked or was cancelled.
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Something the scenario waits for did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl From<concord::Error> for ExampleError {
    fn from(e: concord::Error) -> Self {
        ExampleError::Concord(Box::new(e))
    }
}

impl ExampleError {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ExampleError {
        move |source| ExampleError::Io { what, source }
    }
}
