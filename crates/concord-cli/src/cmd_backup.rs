//! `concord backup` and `concord restore`: a consistent, checksummed backup
//! of one space (format in [`crate::backup`]), and a new data directory
//! restored from one.
//!
//! **Consistency.** When a node runs on the data directory, the backup asks
//! it over the control socket ([`Request::Backup`]) and the node takes the
//! snapshot in one call on the space's replica (`Space::with`, between two
//! steps of its driver): a state the replica really held, every change with
//! its dependencies, plus the space's retained epochs
//! (`Replica::durable_snapshot`, the bytes a compaction would store). The
//! channel declarations and the lease quorum declaration are part of that
//! document. Reading the node's files instead would not do: the node holds
//! the log locked, appends to it and compacts it at any time, and holds
//! changes it has not written yet. When no node answers, the backup opens
//! the space's storage itself, under the storage's own lock (so a node
//! starting meanwhile cannot write under it, and a node holding it makes
//! the backup fail with [`BackupError::SpaceInUse`]), recovers it with the
//! rules a node start applies (including dropping a torn tail) and takes
//! the same snapshot. Either way the snapshot is recovered as a replica
//! before anything is written: a backup that would not restore is never
//! written.
//!
//! **Nothing half-written.** The backup goes to a temporary file beside
//! FILE (`.FILE.*.partial`), is fsynced, renamed over FILE, and the
//! directory fsynced: killed at any point, FILE is the earlier backup or
//! the new one, never a mix. Restore checks the whole file (checksum, then
//! that it recovers as a space) before touching anything, builds the new
//! data directory beside it (`.NEWDIR.restoring-*`, removed on failure),
//! fsyncs it and renames it into place: NEWDIR does not exist or is
//! complete.
//!
//! **A new identity.** A restored data directory gets a new node identity
//! (keypair, hence peer id and automerge actor ids). The actor id is the
//! peer id's hash plus an incarnation: a restored node keeping the original
//! identity would write as the original's actor with sequence numbers the
//! original, which may well still run (the backup was taken while it ran),
//! uses too: two different changes under one (actor, seq), which replicas
//! cannot tell apart. Two nodes under one peer id would also fight over it
//! on the network. With a new identity the restored node is one more
//! replica of the space holding every change of the backup, and syncs with
//! the others as any replica does. What changes is its peer id: `--allow`
//! and `--lease-peer` lists naming the old one must name the new one (it is
//! printed by `concord restore`); the space's lease quorum, declared in the
//! document, stays the original's. (Copying the old `identity.key` into a
//! restored directory would bring the collision back: don't.)
//!
//! **Test hook.** With [`PAUSE_ENV`]`=N` in its environment, `concord
//! backup` stops for [`PAUSE`] after writing and fsyncing the first N bytes
//! of the temporary file and says so on stderr, so that a test can kill it
//! mid-write deterministically. Nothing else reads it.
//!
//! This module owns both commands and the node's side of `backup`. It never
//! writes into an existing data directory or over a backup except by
//! rename, and never restores a file that fails a check.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use concord::Space;
use concord_state::{ActorId, Durable, Replica, ReplicaConfig};
use concord_storage::{FileStorage, Storage, StorageError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use crate::backup::{Backup, BackupError, MAX_SNAPSHOT_BYTES, Meta};
use crate::client::Client;
use crate::control::{BackupReady, Reply, Request};

/// Environment variable of the test hook (see the module doc).
pub const PAUSE_ENV: &str = "CONCORD_TEST_BACKUP_PAUSE_AFTER_BYTES";

/// How long the test hook pauses before the backup goes on.
pub const PAUSE: Duration = Duration::from_secs(30);

/// The actor of the replicas that only check a snapshot: they never write.
const CHECK_ACTOR: &[u8; 16] = b"concord-backup\0\0";

/// What `concord backup` reports.
#[derive(Debug, Serialize)]
struct BackedUp {
    space: String,
    out: PathBuf,
    /// `node` (asked the running node) or `files` (read the storage).
    from: &'static str,
    changes: u64,
    bytes: usize,
    sha256: String,
}

/// What `concord restore` reports.
#[derive(Debug, Serialize)]
struct Restored {
    space: String,
    data: PathBuf,
    changes: u64,
    /// The restored node's new peer id.
    peer_id: String,
}

/// `concord backup --data DIR SPACE --out FILE`.
pub fn backup(data: &Path, space: &str, out: &Path, json: bool) -> Result<()> {
    let span = tracing::info_span!("backup", space, data = %data.display());
    let _entered = span.enter();
    if !concord::valid_space_name(space) {
        return Err(BackupError::SpaceName(space.to_owned()).into());
    }
    let dir = data.join("spaces").join(space);
    if !dir.is_dir() {
        return Err(BackupError::NoSuchSpace {
            space: space.to_owned(),
            data: data.to_owned(),
        }
        .into());
    }
    let request = Request::Backup {
        space: space.to_owned(),
    };
    let (snapshot, from) = match Client::send_if_running(data, &request)? {
        Some(client) => (from_node(client, space)?, "node"),
        None => (from_files(&dir, space)?, "files"),
    };
    let changes = check_space(space, &snapshot)?;
    let bytes = Backup::new(Meta::now(space, changes), snapshot).encode()?;
    write_atomically(out, &bytes)?;
    let done = BackedUp {
        space: space.to_owned(),
        out: out.to_owned(),
        from,
        changes,
        bytes: bytes.len(),
        sha256: hex::encode(Sha256::digest(&bytes[crate::backup::HEADER_BYTES..])),
    };
    tracing::info!(changes, bytes = done.bytes, from, "backup written");
    if json {
        println!("{}", serde_json::to_string(&done)?);
    } else {
        println!(
            "backed up space {} ({} changes, {} bytes, from the {}) to {}",
            done.space,
            done.changes,
            done.bytes,
            done.from,
            out.display()
        );
    }
    Ok(())
}

/// The snapshot of `space` the running node sends.
fn from_node(mut client: Client, space: &str) -> Result<Vec<u8>> {
    let ready: BackupReady = client.expect()?;
    anyhow::ensure!(
        ready.space == space,
        "the node sent a snapshot of space {:?}, not {space:?}",
        ready.space
    );
    client.read_bytes(snapshot_len(ready.bytes)?)
}

/// The length the node announces, if it is within [`MAX_SNAPSHOT_BYTES`].
fn snapshot_len(announced: u64) -> Result<usize, BackupError> {
    usize::try_from(announced)
        .ok()
        .filter(|len| *len <= MAX_SNAPSHOT_BYTES)
        .ok_or(BackupError::TooLarge {
            what: "snapshot",
            len: announced,
            max: MAX_SNAPSHOT_BYTES as u64,
        })
}

/// The snapshot of the space stored in `dir`, read under its lock.
fn from_files(dir: &Path, space: &str) -> Result<Vec<u8>, BackupError> {
    let mut storage = FileStorage::open(dir).map_err(|e| match e {
        StorageError::Locked { .. } => BackupError::SpaceInUse {
            space: space.to_owned(),
        },
        e => BackupError::Storage(e),
    })?;
    let recovered = storage.load()?;
    if let Some(torn) = recovered.torn_tail {
        tracing::warn!(bytes = torn.dropped_bytes, "dropped a torn log tail");
    }
    let durable = Durable {
        snapshot: recovered.snapshot,
        records: recovered.records,
    };
    let replica = Replica::recover(space, check_actor(), durable, ReplicaConfig::default())
        .map_err(BackupError::NotASpace)?;
    Ok(replica.durable_snapshot())
}

fn check_actor() -> ActorId {
    ActorId::from(&CHECK_ACTOR[..])
}

/// Recovers `snapshot` as a replica of `space`; its logical change count.
fn check_space(space: &str, snapshot: &[u8]) -> Result<u64, BackupError> {
    let durable = Durable {
        snapshot: Some(snapshot.to_vec()),
        records: Vec::new(),
    };
    let replica = Replica::recover(space, check_actor(), durable, ReplicaConfig::default())
        .map_err(BackupError::NotASpace)?;
    debug_assert_eq!(
        replica.unpersisted(),
        0,
        "a recovered snapshot queues nothing"
    );
    Ok(replica.vector_clock().total())
}

/// Writes `bytes` to `out` by temporary file, fsync, rename and directory
/// fsync (with the test hook's pause, see the module doc).
fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let dir = parent_dir(out);
    let name = out
        .file_name()
        .ok_or_else(|| BackupError::io("write", out, std::io::ErrorKind::InvalidInput.into()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| BackupError::io("create a temporary file in", dir, e))?;
    let tmp_path = tmp.path().to_owned();
    let tmp_path = &tmp_path;
    let io = |op: &'static str| move |e| BackupError::io(op, tmp_path, e);
    let mut written = 0;
    if let Some(at) = pause_at(bytes.len()) {
        tmp.write_all(&bytes[..at]).map_err(io("write"))?;
        tmp.as_file().sync_data().map_err(io("fsync"))?;
        eprintln!(
            "backup paused after {at} of {} bytes ({PAUSE_ENV})",
            bytes.len()
        );
        std::thread::sleep(PAUSE);
        written = at;
    }
    tmp.write_all(&bytes[written..]).map_err(io("write"))?;
    tmp.as_file().sync_all().map_err(io("fsync"))?;
    tmp.persist(out)
        .map_err(|e| BackupError::io("rename to", out, e.error))?;
    sync_dir(dir)
}

/// Where the test hook pauses, if it is set.
fn pause_at(len: usize) -> Option<usize> {
    let at = std::env::var(PAUSE_ENV).ok()?.parse::<usize>().ok()?;
    Some(at.min(len))
}

/// The directory holding `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io("fsync directory", dir, e))
}

/// `concord restore --data NEWDIR FILE`.
pub fn restore(data: &Path, file: &Path, json: bool) -> Result<()> {
    let span = tracing::info_span!("restore", data = %data.display(), file = %file.display());
    let _entered = span.enter();
    let backup =
        Backup::read_file(file).with_context(|| format!("restoring {}", file.display()))?;
    let space = backup.meta.space.clone();
    if !concord::valid_space_name(&space) {
        return Err(BackupError::SpaceName(space).into());
    }
    let changes = check_space(&space, &backup.snapshot)?;
    check_target(data)?;
    let peer_id = stage_and_rename(data, &space, &backup.snapshot)?;
    tracing::info!(space, changes, %peer_id, "restored");
    let done = Restored {
        space,
        data: data.to_owned(),
        changes,
        peer_id,
    };
    if json {
        println!("{}", serde_json::to_string(&done)?);
    } else {
        println!(
            "restored space {} ({} changes) into {} as a new node, peer_id={}",
            done.space,
            done.changes,
            data.display(),
            done.peer_id
        );
    }
    Ok(())
}

/// [`BackupError::TargetNotEmpty`] unless `data` is absent or an empty directory.
fn check_target(data: &Path) -> Result<(), BackupError> {
    match fs::read_dir(data).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(BackupError::TargetNotEmpty(data.to_owned())),
    }
}

/// Builds the data directory beside `data` and renames it into place;
/// returns the new identity's peer id.
fn stage_and_rename(data: &Path, space: &str, snapshot: &[u8]) -> Result<String> {
    let parent = parent_dir(data);
    fs::create_dir_all(parent).map_err(|e| BackupError::io("create", parent, e))?;
    let name = data
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.restoring-"))
        .tempdir_in(parent)
        .map_err(|e| BackupError::io("create a staging directory in", parent, e))?;
    let spaces = staging.path().join("spaces");
    {
        let mut storage = FileStorage::open(spaces.join(space))?;
        // Writes the snapshot (temp file, fsync, rename, directory fsync)
        // and an empty log after it.
        storage.compact(snapshot)?;
    }
    let peer_id = concord::Node::peer_id_in(staging.path())
        .context("creating the restored node's identity")?;
    sync_dir(&spaces)?;
    sync_dir(staging.path())?;
    // From here the staging directory is complete; dropping it (on an
    // error below) would remove it, keeping it hands it to the rename.
    let staged = staging.keep();
    if let Err(e) = fs::rename(&staged, data) {
        let _ = fs::remove_dir_all(&staged);
        let e = match e.kind() {
            std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists => {
                BackupError::TargetNotEmpty(data.to_owned())
            }
            _ => BackupError::io("rename into", data, e),
        };
        return Err(e.into());
    }
    sync_dir(parent)?;
    Ok(peer_id.to_string())
}

/// The node's side of `backup`: the space's snapshot, taken in one call on
/// its replica, as a [`BackupReady`] line and the raw bytes.
pub async fn serve(space: Result<Space>, write: &mut (impl AsyncWrite + Unpin)) {
    let span = tracing::info_span!("backup_serve");
    let taken = async {
        let space = space?;
        let snapshot = space.with(|r| r.durable_snapshot()).await?;
        anyhow::Ok((space.name().to_owned(), snapshot))
    }
    .instrument(span.clone())
    .await;
    let sent = async {
        let (reply, snapshot) = match taken {
            Ok((space, snapshot)) => {
                let ready = BackupReady {
                    space,
                    bytes: snapshot.len() as u64,
                };
                (Reply::Ok(serde_json::to_value(ready)?), snapshot)
            }
            Err(e) => (Reply::Error(format!("{e:#}")), Vec::new()),
        };
        let mut line = serde_json::to_vec(&reply)?;
        line.push(b'\n');
        write.write_all(&line).await?;
        write.write_all(&snapshot).await?;
        write.flush().await?;
        anyhow::Ok(snapshot.len())
    }
    .instrument(span)
    .await;
    match sent {
        Ok(bytes) => tracing::info!(bytes, "backup snapshot sent"),
        Err(e) => tracing::warn!(error = %e, "backup snapshot not sent"),
    }
}

#[cfg(test)]
mod tests;
