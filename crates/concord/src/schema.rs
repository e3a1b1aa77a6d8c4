//! Schema versions and migrations on a [`Space`]: registering on this node
//! the code that upgrades a channel's values from one version to the next,
//! and reading a channel's version. The design (versions in the replicated
//! declaration, values stamped by their writer, migrations run on every
//! read so every replica agrees) is `concord_state::schema`'s; this module
//! only carries registrations to the replica in the network driver. It
//! never stores a migration: they are code, registered again by the
//! application every time it opens the space, on every node.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Error, Space};

impl Space {
    /// Registers on this node the migration of `path`'s values from schema
    /// version `from` to `from + 1`: a pure, deterministic function, the
    /// same on every node of the space. Values stay as their writers
    /// stored them; every read upgrades them step by step to the channel's
    /// version, so a write from a node still on an older version is
    /// upgraded on receipt. Raise the version with
    /// [`Space::declare`]`(path, spec.with_version(n))` once the steps to
    /// `n` are registered (the replica refuses a raise without them).
    ///
    /// A value with no registered path to the channel's version reads as
    /// [`Error::Schema`]`(`[`crate::StateError::NoMigration`]`)` (one newer
    /// than it as [`crate::StateError::NewerSchema`]),
    /// naming the channel and the versions, never as a wrong value; a
    /// subscription gets no event for it.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder().data_dir(dir.path()).build().await?;
    /// # let space = node.space("team").await?;
    /// use concord::{ChannelSpec, Policy};
    /// use serde_json::{Value, json};
    ///
    /// space.put("intent/plan", json!({"step": "build"})).await?;
    /// // Version 2 renames `step` to `task`.
    /// space
    ///     .migration("intent/plan", 1, |mut v: Value| {
    ///         let step = v.as_object_mut().and_then(|o| o.remove("step")).ok_or("no step")?;
    ///         v["task"] = step;
    ///         Ok::<_, &str>(v)
    ///     })
    ///     .await?;
    /// let v2 = ChannelSpec::last_value(Policy::LastWriteWins).with_version(2);
    /// space.declare("intent/plan", v2).await?;
    /// assert_eq!(space.schema_version("intent/plan").await?, 2);
    /// assert_eq!(space.get("intent/plan").await?, Some(json!({"task": "build"})));
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::State`] with `SchemaVersion` if `from` is out of range, or
    /// `TooManyMigrations` past `concord_state::MAX_MIGRATIONS`.
    pub async fn migration<E: std::fmt::Display + 'static>(
        &self,
        path: &str,
        from: u32,
        f: impl Fn(Value) -> Result<Value, E> + Send + Sync + 'static,
    ) -> Result<(), Error> {
        let path = path.to_owned();
        self.run(move |r| r.register_migration(path.as_str(), from, f))
            .await
    }

    /// [`Space::migration`] with typed shapes: `f` takes a value of version
    /// `from` as `A` and returns it at `from + 1` as `B`. A value that does
    /// not fit `A` fails its read with a `MigrationFailed` error.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder().data_dir(dir.path()).build().await?;
    /// # let space = node.space("team").await?;
    /// use concord::ChannelSpec;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct V1 { step: String }
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// struct V2 { task: String, attempts: u32 }
    ///
    /// let log = space.topic::<V1>("intent/log")?;
    /// log.append(&V1 { step: "build".into() }).await?;
    /// space.migration_as("intent/log", 1, |old: V1| V2 { task: old.step, attempts: 0 }).await?;
    /// space.declare("intent/log", ChannelSpec::topic().with_version(2)).await?;
    /// let upgraded = space.topic::<V2>("intent/log")?.entries().await?;
    /// assert_eq!(upgraded[0].1, V2 { task: "build".into(), attempts: 0 });
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Space::migration`].
    pub async fn migration_as<A, B>(
        &self,
        path: &str,
        from: u32,
        f: impl Fn(A) -> B + Send + Sync + 'static,
    ) -> Result<(), Error>
    where
        A: DeserializeOwned + 'static,
        B: Serialize + 'static,
    {
        self.migration(path, from, move |v: Value| {
            let old: A = serde_json::from_value(v)?;
            serde_json::to_value(f(old))
        })
        .await
    }

    /// The schema version this node reads and writes `path`'s values at:
    /// the one its code declared, else the channel's (1 until raised).
    ///
    /// # Errors
    /// [`Error::State`] for a malformed path.
    pub async fn schema_version(&self, path: &str) -> Result<u32, Error> {
        let path = path.to_owned();
        self.run(move |r| r.schema_version(path.as_str())).await
    }
}
