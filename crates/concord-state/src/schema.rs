//! Schema versions and migrations: how a channel's values change shape over
//! a deployment's life without any two replicas disagreeing about them.
//!
//! This module owns the migration registry and the upgrade of one stored
//! value from the version its writer stamped on it to the channel's
//! version. It never reads or writes the document, and a migration never
//! rewrites history: it runs on every read.
//!
//! # Design
//!
//! - **The version is part of the declaration.** [`ChannelSpec::version`]
//!   (absent from the stored JSON at 1, so every declaration made before
//!   versions existed reads as version 1, byte for byte as it was stored)
//!   is replicated like the rest of the declaration. Raising it is a
//!   declaration: `declare(now, path, spec.with_version(2))`. Concurrent
//!   declarations resolve to the greatest by (kind, version, policy), a
//!   function of the set of live declarations alone, so two nodes raising
//!   concurrently (to 2 and 3, or both to 2 with other policies) end on the
//!   same version everywhere, whatever the order the declarations arrive
//!   in. A replica refuses to raise a version without the migrations from
//!   the old version to the new one registered on itself
//!   ([`StateError::NoMigration`]), and never lowers one.
//! - **Each node reads and writes at its code's version.** Declaring a
//!   channel also pins the replica to the declared version (what its code
//!   knows); a declaration below the channel's version writes nothing and
//!   only pins. A replica that never declared the channel follows the
//!   channel's version ([`crate::Replica::schema_version`]). So code still
//!   on version 1 that declares its channels at startup, as code does,
//!   keeps writing version 1 after another node raised the version, and
//!   its writes are stamped 1, not 2.
//! - **Values are stamped, not rewritten.** A `LastValue` or `Topic` write
//!   carries its writer's version in its envelope (`s`, absent at 1:
//!   values written before versions existed, and by writers that never
//!   raised a version, are stored exactly as before). Counters, sets and
//!   ephemeral channels stay at version 1: a counter holds integers, a
//!   set's members are their own keys.
//! - **Migrations are pure code, registered on every node**
//!   ([`crate::Replica::register_migration`]): one function per step
//!   `n → n + 1` of a channel, composed as needed. Every read (values,
//!   topic entries, events, conflicts, the `previous` value a `reject`
//!   write kept) upgrades each stored write from its stamp to the version
//!   the replica reads at *before* the conflict policy sees it, so a merge function
//!   always merges values of one shape. Since the stored writes are the
//!   same on every replica that holds the same changes, and the migrations
//!   are the same deterministic functions, every replica reads the same
//!   values; a write from a node still on the old version is upgraded on
//!   receipt, by every reader, the same way.
//! - **No silent wrong value.** A write whose stamp has no path of
//!   registered migrations to the version the replica reads at
//!   ([`StateError::NoMigration`]), is newer than that version
//!   ([`StateError::NewerSchema`]: the replica's code is on an older
//!   version than the writer's), or whose migration fails
//!   ([`StateError::MigrationFailed`]) is kept in the document but never
//!   shown: reading the channel returns that error, naming the channel and
//!   the versions. Subscribers get no event carrying such a value (the
//!   event of the next readable value shows `old: None`), and a `warn!`
//!   says which channel holds one. A node registering the missing
//!   migration later reads the value; nothing was lost.
//! - **Bounded.** Versions go up to [`MAX_SCHEMA_VERSION`], so an upgrade
//!   runs at most that many steps; a replica holds at most
//!   [`MAX_MIGRATIONS`] migrations and [`MAX_PINNED_CHANNELS`] pins.
//!
//! Replicas with the same migrations registered and the same pins (the
//! same code) read identical values from the same writes.
//!
//! `history` shows values as they were written, with no upgrade.
//!
//! ```
//! use concord_state::{ActorId, ChannelSpec, Millis, Policy, Replica, StateError};
//! use serde_json::{Value, json};
//!
//! let mut old = Replica::new("team", ActorId::from(&[1u8; 16][..]));
//! let mut new = Replica::new("team", ActorId::from(&[2u8; 16][..]));
//! old.put(Millis(1), "intent/plan", &json!({"step": "build"}))?;
//! new.apply_changes(Millis(2), old.changes_since(new.vector_clock()))?;
//!
//! // Version 2 renames `step` to `task`: register the migration, then raise.
//! new.register_migration("intent/plan", 1, |mut v: Value| {
//!     let step = v.as_object_mut().and_then(|o| o.remove("step")).ok_or("no step")?;
//!     v["task"] = step;
//!     Ok::<_, &str>(v)
//! })?;
//! let v2 = ChannelSpec::last_value(Policy::LastWriteWins).with_version(2);
//! new.declare(Millis(3), "intent/plan", v2)?;
//! assert_eq!(new.get("intent/plan")?, Some(json!({"task": "build"})));
//!
//! // A replica that gets the raise without the migration refuses to guess.
//! old.apply_changes(Millis(4), new.changes_since(old.vector_clock()))?;
//! assert!(matches!(
//!     old.get("intent/plan"),
//!     Err(StateError::NoMigration { from: 1, to: 2, .. })
//! ));
//! # Ok::<(), StateError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::{ChannelKind, ChannelPath, ChannelSpec, StateError};

/// The version of every channel until it is raised, and of every value
/// written without a stamp.
pub const FIRST_VERSION: u32 = 1;

/// Highest schema version a channel can be declared with (and so the most
/// steps one upgrade runs).
pub const MAX_SCHEMA_VERSION: u32 = 1024;

/// Most migrations one replica holds (over all its channels).
pub const MAX_MIGRATIONS: usize = 4096;

/// Most channels one replica pins to a version of its own (see
/// [`crate::Replica::declare`]).
pub const MAX_PINNED_CHANNELS: usize = 4096;

/// A migration step: takes a value of version `n`, returns it at `n + 1`,
/// or says why it cannot. It must be deterministic (the same on every
/// node, with no clock, randomness or outside state).
pub type MigrationFn = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// [`FIRST_VERSION`], as a serde default of a version field (that of
/// [`ChannelSpec::version`], or of a report listing versions).
pub fn first_version() -> u32 {
    FIRST_VERSION
}

/// Serde skip test of [`ChannelSpec::version`] (and of a value's stamp).
pub(crate) fn is_first_version(version: &u32) -> bool {
    *version == FIRST_VERSION
}

/// Whether a channel of `kind` stamps and upgrades its values.
pub(crate) fn versioned(kind: ChannelKind) -> bool {
    matches!(kind, ChannelKind::LastValue | ChannelKind::Topic)
}

/// Whether a stored declaration's version is one a replica accepts; others
/// are left out when declarations resolve (as unreadable ones are).
pub(crate) fn valid_version(version: u32) -> bool {
    (FIRST_VERSION..=MAX_SCHEMA_VERSION).contains(&version)
}

/// Checks a declaration's version against its range and kind.
pub(crate) fn check_declaration(path: &ChannelPath, spec: &ChannelSpec) -> Result<(), StateError> {
    let refuse = |reason| {
        Err(StateError::SchemaVersion {
            path: path.to_string(),
            version: spec.version,
            reason,
        })
    };
    if !valid_version(spec.version) {
        return refuse("versions run from 1 to MAX_SCHEMA_VERSION");
    }
    if spec.version > FIRST_VERSION && !versioned(spec.kind) {
        return refuse("only last_value and topic channels have versioned values");
    }
    Ok(())
}

/// The migrations registered on one replica, per channel and step, and
/// the versions its code pinned channels to.
#[derive(Default, Clone)]
pub(crate) struct Migrations {
    steps: HashMap<ChannelPath, BTreeMap<u32, MigrationFn>>,
    count: usize,
    pins: HashMap<ChannelPath, u32>,
}

impl std::fmt::Debug for Migrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrations")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Migrations {
    /// Registers (or replaces) the step from `from` to `from + 1` of `path`.
    pub(crate) fn register(
        &mut self,
        path: &ChannelPath,
        from: u32,
        step: MigrationFn,
    ) -> Result<(), StateError> {
        if !(FIRST_VERSION..MAX_SCHEMA_VERSION).contains(&from) {
            return Err(StateError::SchemaVersion {
                path: path.to_string(),
                version: from,
                reason: "a migration starts from 1 to MAX_SCHEMA_VERSION - 1",
            });
        }
        let exists = self
            .steps
            .get(path)
            .is_some_and(|steps| steps.contains_key(&from));
        if !exists && self.count >= MAX_MIGRATIONS {
            return Err(StateError::TooManyMigrations {
                path: path.to_string(),
                max: MAX_MIGRATIONS,
            });
        }
        self.steps
            .entry(path.clone())
            .or_default()
            .insert(from, step);
        if !exists {
            self.count += 1;
        }
        debug_assert_eq!(
            self.count,
            self.steps.values().map(BTreeMap::len).sum::<usize>()
        );
        Ok(())
    }

    /// The version this replica's code pinned `path` to, if any.
    pub(crate) fn pinned(&self, path: &ChannelPath) -> Option<u32> {
        self.pins.get(path).copied()
    }

    /// Checks that `path` can be pinned (it is, or there is room).
    pub(crate) fn check_pin(&self, path: &ChannelPath) -> Result<(), StateError> {
        if self.pins.len() >= MAX_PINNED_CHANNELS && !self.pins.contains_key(path) {
            return Err(StateError::TooManyPins {
                path: path.to_string(),
                max: MAX_PINNED_CHANNELS,
            });
        }
        Ok(())
    }

    /// Pins `path` to `version` (after [`Migrations::check_pin`]).
    pub(crate) fn pin(&mut self, path: &ChannelPath, version: u32) {
        debug_assert!(valid_version(version));
        debug_assert!(self.check_pin(path).is_ok());
        self.pins.insert(path.clone(), version);
    }

    /// Checks that every step from `from` to `to` is registered.
    pub(crate) fn check_chain(
        &self,
        path: &ChannelPath,
        from: u32,
        to: u32,
    ) -> Result<(), StateError> {
        let steps = self.steps.get(path);
        match (from..to).find(|n| !steps.is_some_and(|s| s.contains_key(n))) {
            Some(missing) => Err(StateError::NoMigration {
                path: path.to_string(),
                from,
                to,
                missing,
            }),
            None => Ok(()),
        }
    }

    /// `value`, stamped `stamped` by its writer, at the channel's version `current`.
    pub(crate) fn upgrade(
        &self,
        path: &ChannelPath,
        stamped: u32,
        current: u32,
        value: Value,
    ) -> Result<Value, StateError> {
        if stamped == current {
            return Ok(value);
        }
        if stamped > current {
            return Err(StateError::NewerSchema {
                path: path.to_string(),
                version: stamped,
                current,
            });
        }
        let _span = tracing::trace_span!("migrate", %path, stamped, current).entered();
        let steps = self.steps.get(path);
        let mut value = value;
        for n in stamped..current {
            let step = steps
                .and_then(|s| s.get(&n))
                .ok_or_else(|| StateError::NoMigration {
                    path: path.to_string(),
                    from: stamped,
                    to: current,
                    missing: n,
                })?;
            value = step(value).map_err(|reason| StateError::MigrationFailed {
                path: path.to_string(),
                from: n,
                reason,
            })?;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests;
