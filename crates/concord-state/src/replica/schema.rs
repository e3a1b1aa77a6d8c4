//! The replica's side of schema versions (see [`crate::schema`]):
//! registering migrations, and upgrading a stored write to its channel's
//! version on every read. It never writes the document: a migration
//! changes what is read, never what is stored.

use std::sync::Arc;

use serde_json::Value;

use super::Replica;
use crate::path::IntoChannelPath;
use crate::schema::MigrationFn;
use crate::{ChannelPath, StateError};

impl Replica {
    /// Registers the migration of `path`'s values from schema version
    /// `from` to `from + 1` (replacing one registered before). Every
    /// replica of the space must register the same deterministic function
    /// (as with [`Replica::register_merge`]); values stay as stored, and
    /// every read upgrades them step by step to the channel's version.
    ///
    /// # Errors
    /// [`StateError::SchemaVersion`] if `from` is not 1 to
    /// [`crate::MAX_SCHEMA_VERSION`] - 1; [`StateError::TooManyMigrations`]
    /// past [`crate::MAX_MIGRATIONS`].
    pub fn register_migration<E: std::fmt::Display>(
        &mut self,
        path: impl IntoChannelPath,
        from: u32,
        f: impl Fn(Value) -> Result<Value, E> + Send + Sync + 'static,
    ) -> Result<(), StateError> {
        let path = path.into_path()?;
        let _span =
            tracing::debug_span!("register_migration", space = %self.space, %path, from).entered();
        let step: MigrationFn = Arc::new(move |v| f(v).map_err(|e| e.to_string()));
        self.migrations.register(&path, from, step)
    }

    /// `value`, which its writer stamped with version `stamped`, at the
    /// channel's version `current`.
    pub(crate) fn upgrade(
        &self,
        path: &ChannelPath,
        stamped: u32,
        current: u32,
        value: Value,
    ) -> Result<Value, StateError> {
        self.migrations.upgrade(path, stamped, current, value)
    }

    /// Checks that this replica can read `path`'s values at `to` once it
    /// is at `from`: the migrations of every step in between are registered.
    pub(crate) fn check_migrations(
        &self,
        path: &ChannelPath,
        from: u32,
        to: u32,
    ) -> Result<(), StateError> {
        self.migrations.check_chain(path, from, to)
    }
}
