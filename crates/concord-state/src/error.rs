//! Typed errors of the replica. Every failure a caller or a peer can cause is
//! one of these; the replica never panics on bad input.

/// What went wrong in a replica operation. Local state is unchanged whenever
/// one of these is returned, unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The channel path is not `family/name` with a known family and a valid name.
    #[error("malformed channel path {path:?}: {reason}")]
    MalformedPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The operation does not fit the channel's declared kind.
    #[error("channel {path} is a {actual} channel, not a {expected} channel")]
    WrongKind {
        /// The channel.
        path: String,
        /// The kind the operation needs.
        expected: &'static str,
        /// The kind the channel was declared with.
        actual: &'static str,
    },
    /// The encoded value is larger than [`crate::MAX_VALUE_BYTES`].
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value could not be converted to or from JSON for a typed access.
    #[error("value does not fit the requested type: {0}")]
    Serde(#[from] serde_json::Error),
    /// A `first_write_wins` channel already holds a value.
    #[error("channel {path} already holds a value (first_write_wins)")]
    AlreadySet {
        /// The channel.
        path: String,
    },
    /// A `merge` policy names a function that was never registered on this replica.
    #[error("merge function {name:?} for channel {path} is not registered")]
    UnknownMergeFn {
        /// The channel.
        path: String,
        /// The missing function's name.
        name: String,
    },
    /// Bytes received from a peer (or recovered from storage) are not a valid automerge change.
    #[error("invalid change from peer: {0}")]
    InvalidChange(String),
    /// automerge refused an operation (a bug or a corrupt document).
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// Records handed out to persist and not yet confirmed durable reached
    /// [`crate::ReplicaConfig::max_unpersisted_bytes`]: the owner must carry
    /// out [`crate::Replica::poll_persist`]'s ops and confirm them before
    /// the replica takes another write. Nothing changed.
    #[error("{unpersisted_bytes} bytes wait to be persisted (bound {max}); write refused")]
    PersistBacklog {
        /// Bytes of the ops not yet confirmed.
        unpersisted_bytes: usize,
        /// The bound.
        max: usize,
    },
    /// A glob pattern for a subscription is invalid.
    #[error("invalid subscription pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it was refused.
        reason: String,
    },
    /// The subscription id is not (or no longer) registered.
    #[error("unknown subscription {0}")]
    UnknownSubscription(u64),
    /// An epoch announcement or snapshot is malformed or contradicts what
    /// the replica holds; nothing changed.
    #[error("invalid epoch: {0}")]
    InvalidEpoch(String),
    /// A replay from a vector clock older than the oldest retained epoch's
    /// cut: the changes in between are gone (see `EpochConfig::retain`).
    #[error("replay from before the oldest retained epoch (its cut holds {oldest} changes)")]
    ReplayTooOld {
        /// Changes in the oldest retained epoch's cut.
        oldest: u64,
    },
    /// The stored document is not a Concord space (missing channel families).
    #[error("document is not a concord space: {0}")]
    NotASpace(String),
    /// An ephemeral channel has no TTL, or one out of range: declare it with
    /// [`crate::ChannelSpec::ephemeral`] and 1 to
    /// [`crate::MAX_EPHEMERAL_TTL_MS`] ms.
    #[error(
        "ephemeral channel {path} needs a TTL of 1 to {max} ms (got {ttl_ms:?}); \
         declare it with ChannelSpec::ephemeral(ttl_ms)"
    )]
    EphemeralTtl {
        /// The channel.
        path: String,
        /// The TTL given, if any.
        ttl_ms: Option<u64>,
        /// The longest TTL accepted.
        max: u64,
    },
    /// The space holds [`crate::MAX_EPHEMERAL_VALUES`] live ephemeral values
    /// already, none of them this writer's on this channel.
    #[error("space holds {max} live ephemeral values already; no room for one on {path}")]
    EphemeralFull {
        /// The channel written.
        path: String,
        /// The bound.
        max: usize,
    },
    /// Ephemeral values received from a peer are malformed (nothing of the
    /// batch was applied).
    #[error("invalid ephemeral value from peer: {0}")]
    InvalidEphemeral(String),
    /// A value stamped with schema version `from` cannot be read at the
    /// channel's version `to`: no migration from `missing` to `missing + 1`
    /// is registered on this replica (see [`crate::schema`]). The value is
    /// kept in the document; it reads once the migration is registered.
    #[error(
        "channel {path}: a value of schema version {from} cannot be read at version {to}: \
         no migration from version {missing} to {} is registered on this node",
        missing.saturating_add(1)
    )]
    NoMigration {
        /// The channel.
        path: String,
        /// The version its writer stamped on the value.
        from: u32,
        /// The channel's version.
        to: u32,
        /// The first step without a migration.
        missing: u32,
    },
    /// A value stamped with a schema version newer than the one this
    /// replica reads the channel at (its code pinned an older version, see
    /// [`crate::Replica::declare`]): it cannot be read here.
    #[error(
        "channel {path}: a value of schema version {version} is newer than version {current}, \
         the one this node reads the channel at"
    )]
    NewerSchema {
        /// The channel.
        path: String,
        /// The version its writer stamped on the value.
        version: u32,
        /// The version this replica reads the channel at.
        current: u32,
    },
    /// A registered migration refused a value.
    #[error("channel {path}: the migration from schema version {from} failed: {reason}")]
    MigrationFailed {
        /// The channel.
        path: String,
        /// The version the failed step starts from.
        from: u32,
        /// What the migration said.
        reason: String,
    },
    /// A schema version out of range for a declaration or a migration:
    /// 0, past [`crate::MAX_SCHEMA_VERSION`], or on a kind whose values
    /// carry no version. Nothing changed.
    #[error("channel {path}: schema version {version} refused: {reason}")]
    SchemaVersion {
        /// The channel.
        path: String,
        /// The version given.
        version: u32,
        /// Why it was refused.
        reason: &'static str,
    },
    /// [`crate::schema::MAX_PINNED_CHANNELS`] channels are pinned to a
    /// version already (see [`crate::Replica::declare`]).
    #[error("{max} channels are pinned to a schema version already; no room for {path}")]
    TooManyPins {
        /// The channel.
        path: String,
        /// The bound.
        max: usize,
    },
    /// [`crate::MAX_MIGRATIONS`] migrations are registered already.
    #[error("{max} migrations are registered already; no room for one on {path}")]
    TooManyMigrations {
        /// The channel.
        path: String,
        /// The bound.
        max: usize,
    },
}

impl StateError {
    /// Whether this is a value that cannot be read at its channel's schema
    /// version ([`StateError::NoMigration`], [`StateError::NewerSchema`],
    /// [`StateError::MigrationFailed`]): the replica holds it, but shows it
    /// to no one.
    pub fn is_unreadable_value(&self) -> bool {
        matches!(
            self,
            StateError::NoMigration { .. }
                | StateError::NewerSchema { .. }
                | StateError::MigrationFailed { .. }
        )
    }
}
