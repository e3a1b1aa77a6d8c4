//! Agents on three nodes update rows of one SQLite database with
//! optimistic concurrency and fencing: each reads a row (value, version)
//! without a lock, takes the space's lock on the row, and writes
//! `UPDATE ... WHERE version = ? AND fencing_token <= ?`; a write that
//! finds the version moved is retried from a fresh read. At the end the
//! rows' values add up to the updates that succeeded (none was lost), and
//! a holder whose lease expired is refused by its stale token even with
//! the row's current version in hand.
//!
//! ```no_run
//! # async fn run() -> Result<(), concord_examples::ExampleError> {
//! use concord_examples::sqlite_optimistic::{Config, run};
//! let report = run(Config::default()).await?;
//! assert!(report.no_update_lost() && report.stale.refused);
//! print!("{report}");
//! # Ok(()) }
//! ```
//!
//! This module owns the scenario and its table. It must never write a row
//! but through the version-and-token-checked `UPDATE`, and never count an
//! update SQLite did not report as made.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use concord::{HeldLock, Space};
use rusqlite::{Connection, params};

use crate::ExampleError;
use crate::cluster::{self, Member};

/// Rows of the table.
pub const ROWS: i64 = 3;

/// Most tries of one update before the scenario gives up (each try that
/// finds the version moved is retried).
pub const TRIES_PER_UPDATE: u32 = 100;

/// The lease ttl of an agent's lock on a row.
const TTL: Duration = Duration::from_secs(5);

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Config {
    /// Nodes (at least 2).
    pub nodes: usize,
    /// Agents on each node.
    pub agents_per_node: usize,
    /// Updates each agent makes.
    pub updates_per_agent: usize,
    /// The ttl of the lock the stale agent stalls past.
    pub stale_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodes: 3,
            agents_per_node: 2,
            updates_per_agent: 5,
            stale_ttl: Duration::from_millis(1_500),
        }
    }
}

/// One row as read back at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Its id.
    pub id: i64,
    /// The counter.
    pub value: i64,
    /// Bumped by every update.
    pub version: i64,
    /// The token of the last update's lock.
    pub fencing_token: i64,
}

/// What one agent did.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Its name.
    pub agent: String,
    /// Its node.
    pub node: String,
    /// Updates SQLite reported as made (one row changed).
    pub made: u64,
    /// Updates that found the version moved and were retried.
    pub retried: u64,
}

/// The stale holder's last try.
#[derive(Debug, Clone)]
pub struct StaleProbe {
    /// Its token.
    pub token: i64,
    /// How long it stalled.
    pub pause: Duration,
    /// How much of its lease its node saw left when it tried (none: the
    /// overtaker was granted the lock only after it ran out).
    pub left_on_try: Duration,
    /// The token the row carried when it tried.
    pub row_token: i64,
    /// The version it sent was still the row's (read again after the try):
    /// only the token could refuse it.
    pub version_matched: bool,
    /// SQLite changed no row.
    pub refused: bool,
}

/// What the scenario saw.
#[derive(Debug, Clone)]
pub struct SqliteReport {
    /// `sqlite_version()` of the bundled library.
    pub sqlite: String,
    /// Each agent's tally (the agent that overtook the stale one last).
    pub tallies: Vec<Tally>,
    /// The rows read back at the end.
    pub rows: Vec<Row>,
    /// The stale holder's try.
    pub stale: StaleProbe,
    /// How long the concurrent phase took.
    pub took: Duration,
    /// The stale lock's ttl.
    pub stale_ttl: Duration,
}

impl SqliteReport {
    /// Updates reported as made, all agents together.
    pub fn made(&self) -> u64 {
        self.tallies.iter().map(|t| t.made).sum()
    }

    /// The rows' values add up to the updates made, and every row's value
    /// equals its version (each update bumped both once).
    pub fn no_update_lost(&self) -> bool {
        let total: i64 = self.rows.iter().map(|r| r.value).sum();
        u64::try_from(total).is_ok_and(|t| t == self.made())
            && self.rows.iter().all(|r| r.value == r.version)
    }
}

/// Opens the database with a wait on SQLite's own file lock.
fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let db = Connection::open(path)?;
    db.busy_timeout(Duration::from_secs(5))?;
    Ok(db)
}

/// Runs `f` on a connection to `path`, off the async threads.
async fn with_db<R: Send + 'static>(
    path: &Path,
    f: impl FnOnce(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
) -> Result<R, ExampleError> {
    let path = path.to_path_buf();
    Ok(tokio::task::spawn_blocking(move || f(&open(&path)?)).await??)
}

fn create(path: &Path) -> Result<String, rusqlite::Error> {
    let db = open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.execute_batch(
        "CREATE TABLE counters (
             id INTEGER PRIMARY KEY,
             value INTEGER NOT NULL,
             version INTEGER NOT NULL,
             fencing_token INTEGER NOT NULL
         );",
    )?;
    for id in 0..ROWS {
        db.execute("INSERT INTO counters VALUES (?1, 0, 0, 0)", params![id])?;
    }
    db.query_row("SELECT sqlite_version()", [], |r| r.get(0))
}

fn read(db: &Connection, id: i64) -> Result<Row, rusqlite::Error> {
    db.query_row(
        "SELECT id, value, version, fencing_token FROM counters WHERE id = ?1",
        params![id],
        |r| {
            Ok(Row {
                id: r.get(0)?,
                value: r.get(1)?,
                version: r.get(2)?,
                fencing_token: r.get(3)?,
            })
        },
    )
}

/// The only write: `value` on top of `seen`, under `token`. Returns the
/// rows changed (0 or 1).
fn update(db: &Connection, seen: &Row, value: i64, token: i64) -> Result<usize, rusqlite::Error> {
    let changed = db.execute(
        "UPDATE counters SET value = ?1, version = version + 1, fencing_token = ?2
         WHERE id = ?3 AND version = ?4 AND fencing_token <= ?2",
        params![value, token, seen.id, seen.version],
    )?;
    debug_assert!(changed <= 1, "one row per id");
    Ok(changed)
}

/// The lock on `row`.
fn resource(row: i64) -> String {
    format!("sqlite.row-{row}")
}

fn token_of(lock: &HeldLock) -> Result<i64, ExampleError> {
    i64::try_from(lock.token().get())
        .map_err(|_| ExampleError::Step("a fencing token beyond SQLite's integers".into()))
}

/// One update of `row` by `agent`: read, lock, checked write, release;
/// again from a fresh read while the version moved. Returns the retries.
async fn increment(space: &Space, db: &Path, row: i64, agent: &str) -> Result<u64, ExampleError> {
    for tried in 0..TRIES_PER_UPDATE {
        let seen = with_db(db, move |db| read(db, row)).await?;
        let held = cluster::lock(space, &resource(row), TTL, agent).await?;
        let token = token_of(&held)?;
        let changed = with_db(db, move |db| update(db, &seen, seen.value + 1, token)).await?;
        held.release().await?;
        if changed == 1 {
            return Ok(u64::from(tried));
        }
    }
    Err(ExampleError::Timeout(format!(
        "{agent} could not update row {row} in {TRIES_PER_UPDATE} tries"
    )))
}

/// An agent's updates, spread over the rows from `first_row` on.
async fn agent(
    space: Space,
    db: PathBuf,
    agent: String,
    node: String,
    first_row: i64,
    updates: usize,
) -> Result<Tally, ExampleError> {
    let mut tally = Tally {
        agent,
        node,
        made: 0,
        retried: 0,
    };
    for (k, row) in (first_row..).take(updates).enumerate() {
        debug_assert!(k < updates);
        tally.retried += increment(&space, &db, row % ROWS, &tally.agent).await?;
        tally.made += 1;
    }
    Ok(tally)
}

/// Agent `stale` on the first node locks row 0 and reads it, then stalls
/// past the lock's ttl while an agent on the second node takes the lock
/// and updates the row; then it tries with the row's current version and
/// its old token.
async fn stale_holder(
    members: &[Member],
    db: &Path,
    ttl: Duration,
) -> Result<(StaleProbe, Tally), ExampleError> {
    let (one, two) = (&members[0], &members[1]);
    let held = cluster::lock(&one.space, &resource(0), ttl, "stale").await?;
    let token = token_of(&held)?;
    let stalled = Instant::now();
    let retried = increment(&two.space, db, 0, "overtaker").await?;
    let overtaker = Tally {
        agent: "overtaker".into(),
        node: two.name.clone(),
        made: 1,
        retried,
    };
    let pause = stalled.elapsed();
    let left_on_try = held.valid_for();
    let current = with_db(db, |db| read(db, 0)).await?;
    let changed = with_db(db, move |db| update(db, &current, current.value + 1, token)).await?;
    drop(held); // its lease is over
    let after = with_db(db, |db| read(db, 0)).await?;
    let probe = StaleProbe {
        token,
        pause,
        left_on_try,
        row_token: after.fencing_token,
        version_matched: after.version == current.version,
        refused: changed == 0,
    };
    Ok((probe, overtaker))
}

/// Runs the scenario.
///
/// # Errors
/// A node, lock or SQLite call failed, or an update kept finding its row
/// moved ([`TRIES_PER_UPDATE`]).
#[tracing::instrument(level = "info")]
pub async fn run(config: Config) -> Result<SqliteReport, ExampleError> {
    let dir = tempfile::tempdir().map_err(ExampleError::io("making a temp dir"))?;
    let db = dir.path().join("counters.sqlite");
    let sqlite = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || create(&db)).await??
    };
    let members = cluster::joined(dir.path(), config.nodes.max(2), "sqlite").await?;
    let started = Instant::now();
    let mut agents = Vec::new();
    for (n, m) in members.iter().enumerate() {
        for a in 0..config.agents_per_node {
            let index = n * config.agents_per_node + a;
            let name = format!("agent-{}", index + 1);
            let first_row = i64::try_from(index).unwrap_or(0) % ROWS;
            agents.push(tokio::spawn(agent(
                m.space.clone(),
                db.clone(),
                name,
                m.name.clone(),
                first_row,
                config.updates_per_agent,
            )));
        }
    }
    let mut tallies = Vec::with_capacity(agents.len());
    for a in agents {
        tallies.push(a.await??);
    }
    let took = started.elapsed();
    let (stale, overtaker) = stale_holder(&members, &db, config.stale_ttl).await?;
    tallies.push(overtaker);
    let rows = with_db(&db, |db| {
        let mut rows = Vec::new();
        for id in 0..ROWS {
            rows.push(read(db, id)?);
        }
        Ok(rows)
    })
    .await?;
    cluster::shutdown(members).await?;
    Ok(SqliteReport {
        sqlite,
        tallies,
        rows,
        stale,
        took,
        stale_ttl: config.stale_ttl,
    })
}

impl fmt::Display for SqliteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "SQLite {} (bundled), a table of {} rows",
            self.sqlite,
            self.rows.len()
        )?;
        for t in &self.tallies {
            writeln!(
                f,
                "{} on {}: {} update(s) made, {} retried after finding the version moved",
                t.agent, t.node, t.made, t.retried
            )?;
        }
        let s = &self.stale;
        writeln!(
            f,
            "stale on node-1: lock on row 0 with token {}, stalled {} ms (ttl {} ms) while overtaker took the lock and updated the row; its node then saw {} ms of lease left",
            s.token,
            s.pause.as_millis(),
            self.stale_ttl.as_millis(),
            s.left_on_try.as_millis()
        )?;
        writeln!(
            f,
            "stale tries UPDATE ... WHERE version = <current> AND fencing_token <= {}: {} (row 0 carries token {}; the version it sent still current: {})",
            s.token,
            if s.refused {
                "REFUSED, 0 rows changed"
            } else {
                "accepted"
            },
            s.row_token,
            s.version_matched
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "row {}: value {}, version {}, fencing_token {}",
                r.id, r.value, r.version, r.fencing_token
            )?;
        }
        let total: i64 = self.rows.iter().map(|r| r.value).sum();
        writeln!(
            f,
            "updates made {} in {} ms (plus the stale try); sum of values {}; no update lost: {}",
            self.made(),
            self.took.as_millis(),
            total,
            self.no_update_lost()
        )
    }
}
