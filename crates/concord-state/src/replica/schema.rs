//! The replica's side of schema versions (see [`crate::schema`]):
//! registering migrations, and upgrading a stored write to its channel's
//! version on every read. It never writes the document: a migration
//! changes what is read, never what is stored.

use std::sync::Arc;

use serde_json::Value;

use super::Replica;
use crate::path::IntoChannelPath;
use crate::schema::MigrationFn;
use crate::{ChannelPath, ChannelSpec, StateError};

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

    /// The schema version this replica reads and writes `path` at: the one
    /// its code declared (see [`Replica::declare`]), else the channel's.
    pub fn schema_version(&self, path: impl IntoChannelPath) -> Result<u32, StateError> {
        Ok(self.version_of(&path.into_path()?))
    }

    /// [`Replica::schema_version`] of a parsed path.
    pub(crate) fn version_of(&self, path: &ChannelPath) -> u32 {
        match self.spec_of(path) {
            Some(spec) => self.version_for(path, &spec),
            None => self
                .migrations
                .pinned(path)
                .unwrap_or(crate::schema::FIRST_VERSION),
        }
    }

    /// The version this replica reads and writes `path`, declared `spec`, at.
    pub(crate) fn version_for(&self, path: &ChannelPath, spec: &ChannelSpec) -> u32 {
        self.migrations.pinned(path).unwrap_or(spec.version)
    }

    /// Checks the schema version of a declaration of `path` as `spec`
    /// (declared `existing` so far) and returns whether it changes the
    /// document. One that does not (the same declaration, or an older
    /// version than the channel's) pins this replica at once; one that
    /// does is pinned by [`Replica::pin_declared`] once committed.
    pub(crate) fn check_declared_version(
        &mut self,
        path: &ChannelPath,
        spec: &ChannelSpec,
        existing: Option<&ChannelSpec>,
    ) -> Result<bool, StateError> {
        crate::schema::check_declaration(path, spec)?;
        if crate::schema::versioned(spec.kind) {
            self.migrations.check_pin(path)?;
        }
        let current = existing.map(|e| e.version);
        if existing == Some(spec) || current.is_some_and(|c| spec.version < c) {
            self.pin_declared(path, spec);
            return Ok(false);
        }
        if let Some(current) = current {
            self.check_migrations(path, current, spec.version)?;
        }
        Ok(true)
    }

    /// Pins `path` to the version of `spec`, declared by this replica's
    /// code, if the kind has versioned values.
    pub(crate) fn pin_declared(&mut self, path: &ChannelPath, spec: &ChannelSpec) {
        if !crate::schema::versioned(spec.kind)
            || self.migrations.pinned(path) == Some(spec.version)
        {
            return;
        }
        // the write path's last value was read at the old version
        self.cache.remove(path);
        self.migrations.pin(path, spec.version);
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
    fn check_migrations(&self, path: &ChannelPath, from: u32, to: u32) -> Result<(), StateError> {
        self.migrations.check_chain(path, from, to)
    }
}
