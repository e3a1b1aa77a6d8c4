//! The facade's error type: everything a node operation can fail with.

/// Errors of the Concord facade.
///
/// Match on the variants a caller can act on; the enum is
/// `#[non_exhaustive]`, so keep a catch-all arm.
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # let node = concord::Node::builder().data_dir(dir.path()).build().await?;
/// use concord::Error;
///
/// let space = match node.space("team/alpha").await {
///     Ok(space) => space,
///     Err(Error::SpaceName(name)) => node.space(&name.replace('/', "-")).await?,
///     Err(other) => return Err(other.into()),
/// };
/// assert_eq!(space.name(), "team-alpha");
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file in the data directory could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The identity file is not a valid keypair.
    #[error("identity file {0} is corrupt")]
    Identity(String),
    /// A space name that cannot be used (letters, digits, `. _ -`, at most 64 bytes).
    #[error("invalid space name {0:?}")]
    SpaceName(String),
    /// The builder is missing a data directory.
    #[error("no data directory configured")]
    NoDataDir,
    /// The network layer failed.
    #[error(transparent)]
    Net(#[from] concord_net::NetError),
    /// The lease backend could not start.
    #[error(transparent)]
    LeaseStart(#[from] concord_net::lease::LeaseNetError),
    /// A lease could not be acquired, renewed or released.
    #[error("lock on {resource}: {source}")]
    Lease {
        /// The resource.
        resource: String,
        /// The backend's answer.
        source: concord_lease::BackendError,
    },
    /// A space has no usable lease quorum; the text says why and how to
    /// configure one.
    #[error("space {space}: {reason}")]
    LeaseQuorum {
        /// The space.
        space: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A lock was granted, but the writes its previous holder made before
    /// releasing it did not reach this node in time; the lock was given
    /// back (acting without them could redo what the previous holder did).
    #[error(
        "lock on {resource}: the previous holder's writes (actor {actor} up to seq {seq}) \
         have not arrived (this node has up to {have}); the lock was given back, try again"
    )]
    Handoff {
        /// The resource.
        resource: String,
        /// The previous holder's actor (hex).
        actor: String,
        /// Its last write before the release.
        seq: u64,
        /// How far this node's replica has that actor's writes.
        have: u64,
    },
    /// An event or handler name that cannot be used (1 to 64 ASCII
    /// letters, digits, `_`, `-`, `.`).
    #[error("invalid event name {0:?}")]
    EventName(String),
    /// An observer reported what cannot be written (see
    /// [`crate::toolkit::Observer`]).
    #[error("observer: {0}")]
    Observation(String),
    /// A resource name the lease service cannot use.
    #[error(transparent)]
    Resource(#[from] concord_lease::LeaseError),
    /// The replica refused an operation.
    #[error(transparent)]
    State(concord_state::StateError),
    /// A channel holds a value this node cannot read at its schema
    /// version: [`crate::StateError::NoMigration`] (register the missing
    /// migration with [`crate::Space::migration`]; the value is kept and
    /// reads once it is), [`crate::StateError::NewerSchema`] or
    /// [`crate::StateError::MigrationFailed`].
    #[error(transparent)]
    Schema(concord_state::StateError),
    /// A space's storage could not be opened or read, or holds corrupt data.
    #[error("space storage: {0}")]
    Storage(#[from] concord_storage::StorageError),
    /// A bounded wait ran out (see [`crate::Node::connect`] and
    /// [`crate::Space::converge`]).
    #[error("{what} after {waited_ms} ms")]
    Timeout {
        /// What was still not the case.
        what: String,
        /// How long it waited.
        waited_ms: u64,
    },
}

impl From<concord_state::StateError> for Error {
    /// Values unreadable at their schema version get a variant of their
    /// own ([`Error::Schema`]); every other refusal is [`Error::State`].
    fn from(e: concord_state::StateError) -> Self {
        if e.is_unreadable_value() {
            Error::Schema(e)
        } else {
            Error::State(e)
        }
    }
}

impl Error {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}
