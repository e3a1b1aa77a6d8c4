//! Channel kinds and conflict policies: what a channel is, declared once per
//! path and stored in the document so every replica reads it the same way
//! (an ephemeral channel's declaration too, though its values never enter
//! the document). This module owns the declaration format; it never reads
//! or writes values.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a channel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A register holding one JSON value, resolved by the channel's [`Policy`].
    LastValue,
    /// An append-only log of entries keyed by unique ids: concurrent appends never clash.
    Topic,
    /// A counter: concurrent increments add up.
    Counter,
    /// An add-wins set of JSON values: an add concurrent with a remove wins.
    Set,
    /// Heartbeats, presence, progress: each writer's last value (by HLC),
    /// living [`ChannelSpec::ttl_ms`] after its write, kept in memory and
    /// gossiped, never written to the document nor persisted.
    Ephemeral,
}

impl ChannelKind {
    /// The kind's name as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::LastValue => "last_value",
            ChannelKind::Topic => "topic",
            ChannelKind::Counter => "counter",
            ChannelKind::Set => "set",
            ChannelKind::Ephemeral => "ephemeral",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a `LastValue` channel chooses among concurrent writes. Every policy is
/// a deterministic function of the set of writes, never of arrival order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Highest hybrid logical clock wins; ties broken by the higher actor id.
    LastWriteWins,
    /// Lowest hybrid logical clock wins; a replica refuses to overwrite a set value.
    FirstWriteWins,
    /// Concurrent writes are kept out of the value and reported as a [`crate::Conflict`]
    /// (also readable at `coordination/conflicts`) until a later write resolves them.
    Reject,
    /// Concurrent values are combined by the merge function registered under this name
    /// (see [`crate::Replica::register_merge`]).
    Merge(String),
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::LastWriteWins => f.write_str("last_write_wins"),
            Policy::FirstWriteWins => f.write_str("first_write_wins"),
            Policy::Reject => f.write_str("reject"),
            Policy::Merge(name) => write!(f, "merge({name})"),
        }
    }
}

/// The declaration of a channel: its kind, for `LastValue` its policy, for
/// `Ephemeral` its TTL, and the schema version of its values (see
/// [`crate::schema`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelSpec {
    /// What the channel holds.
    pub kind: ChannelKind,
    /// How concurrent writes resolve (only meaningful for `LastValue`).
    pub policy: Policy,
    /// How long an `Ephemeral` value lives after its write, in ms: required
    /// for that kind (1 to [`crate::MAX_EPHEMERAL_TTL_MS`]), `None` for the
    /// others (and then absent from the stored declaration, which keeps the
    /// declarations of the other kinds byte for byte what they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// The schema version of the channel's values, 1 to
    /// [`crate::MAX_SCHEMA_VERSION`] (only `LastValue` and `Topic` channels
    /// go past 1). Absent from the stored declaration at 1, so declarations
    /// made before versions existed read as version 1 and new version-1
    /// declarations are byte for byte what they were.
    #[serde(
        default = "crate::schema::first_version",
        skip_serializing_if = "crate::schema::is_first_version"
    )]
    pub version: u32,
}

impl ChannelSpec {
    /// A `LastValue` channel with the given policy.
    pub fn last_value(policy: Policy) -> Self {
        ChannelSpec {
            kind: ChannelKind::LastValue,
            policy,
            ttl_ms: None,
            version: crate::schema::FIRST_VERSION,
        }
    }

    /// A `Topic` channel.
    pub fn topic() -> Self {
        Self::of_kind(ChannelKind::Topic)
    }

    /// A `Counter` channel.
    pub fn counter() -> Self {
        Self::of_kind(ChannelKind::Counter)
    }

    /// A `Set` channel.
    pub fn set() -> Self {
        Self::of_kind(ChannelKind::Set)
    }

    /// An `Ephemeral` channel whose values live `ttl_ms` after their write
    /// (see [`crate::Replica::put_ephemeral`]).
    pub fn ephemeral(ttl_ms: u64) -> Self {
        ChannelSpec {
            ttl_ms: Some(ttl_ms),
            ..Self::of_kind(ChannelKind::Ephemeral)
        }
    }

    /// A channel of `kind` with the default policy (last write wins) and no
    /// TTL (an `Ephemeral` channel needs one: see [`ChannelSpec::ephemeral`]).
    pub fn of_kind(kind: ChannelKind) -> Self {
        ChannelSpec {
            kind,
            policy: Policy::LastWriteWins,
            ttl_ms: None,
            version: crate::schema::FIRST_VERSION,
        }
    }

    /// The same declaration at schema `version` (see [`crate::schema`]):
    /// declaring it raises the channel's version, and every replica then
    /// reads the channel's values upgraded to it.
    pub fn with_version(self, version: u32) -> Self {
        ChannelSpec { version, ..self }
    }
}

impl fmt::Display for ChannelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ChannelKind::LastValue => write!(f, "last_value/{}", self.policy),
            ChannelKind::Ephemeral => match self.ttl_ms {
                Some(ttl) => write!(f, "ephemeral/{ttl}ms"),
                None => f.write_str("ephemeral"),
            },
            kind => f.write_str(kind.as_str()),
        }?;
        if self.version > crate::schema::FIRST_VERSION {
            write!(f, " v{}", self.version)?;
        }
        Ok(())
    }
}
