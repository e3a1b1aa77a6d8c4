//! The backup file of one space: a small versioned header with a SHA-256
//! checksum, then the payload (metadata and the space's snapshot).
//!
//! ```text
//! backup  = header ++ payload                        (integers little-endian)
//! header  = magic "CCBK" (4 bytes) ++ version (u32, BACKUP_VERSION = 1)
//!           ++ payload length (u64) ++ SHA-256 of the payload (32 bytes)
//! payload = metadata length (u32) ++ metadata (JSON, a `Meta`)
//!           ++ snapshot (the rest: `Replica::durable_snapshot` bytes, i.e.
//!              the space's current automerge document and its retained
//!              epochs, exactly what concord-storage keeps as a snapshot)
//! ```
//!
//! Every way a file can be damaged is told apart and refused with a
//! [`BackupError`] naming it: a wrong magic ([`BackupError::NotABackup`]),
//! an unknown version, a file shorter than its header promises
//! ([`BackupError::Truncated`]) or longer ([`BackupError::TrailingBytes`]),
//! a payload whose SHA-256 differs ([`BackupError::Checksum`]), lengths over
//! [`MAX_PAYLOAD_BYTES`] or [`MAX_META_BYTES`] (checked before anything is
//! allocated), unreadable metadata. A payload that passes the checksum but
//! is not a space is caught when it is recovered (`cmd_backup`).
//!
//! This module owns the format, its checks and the errors of `concord
//! backup` and `concord restore`: pure bytes in and out (and reading one
//! file). It never writes a file, never talks to a node and never
//! interprets the snapshot.
//!
//! The unit tests (`backup/tests.rs`) show every case.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// First bytes of a backup file.
pub const BACKUP_MAGIC: [u8; 4] = *b"CCBK";

/// Version of the format this build writes and reads.
pub const BACKUP_VERSION: u32 = 1;

/// Bytes of the header: magic, version, payload length, SHA-256.
pub const HEADER_BYTES: usize = 4 + 4 + 8 + 32;

/// Largest metadata block (a few short fields; the bound only stops a
/// damaged length from allocating).
pub const MAX_META_BYTES: usize = 64 * 1024;

/// Largest snapshot in a backup: what concord-storage accepts as a snapshot,
/// so that every backup restores.
pub const MAX_SNAPSHOT_BYTES: usize = concord_storage::MAX_SNAPSHOT_BYTES;

/// Largest payload: the metadata length field, the metadata and the snapshot.
pub const MAX_PAYLOAD_BYTES: u64 = (4 + MAX_META_BYTES + MAX_SNAPSHOT_BYTES) as u64;

/// What is wrong with a backup, or with backing up or restoring one.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not start with [`BACKUP_MAGIC`].
    #[error("not a concord backup (it does not start with the magic \"CCBK\")")]
    NotABackup,
    /// A format version this build does not read.
    #[error(
        "backup format version {found} is not supported (this concord reads version {BACKUP_VERSION})"
    )]
    UnsupportedVersion {
        /// The version in the header.
        found: u32,
    },
    /// The file ends before its header or payload does.
    #[error("backup truncated: expected {expected} bytes, the file has {found}")]
    Truncated {
        /// Bytes the header promises (header included).
        expected: u64,
        /// Bytes there are.
        found: u64,
    },
    /// Bytes follow the payload the header announces.
    #[error("backup corrupt: {extra} unexpected bytes after the payload (damaged length?)")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// The payload's SHA-256 is not the header's.
    #[error(
        "backup corrupt: checksum mismatch (the header says SHA-256 {expected}, the payload has {actual})"
    )]
    Checksum {
        /// The header's checksum (hex).
        expected: String,
        /// The payload's (hex).
        actual: String,
    },
    /// A length over its limit.
    #[error("backup {what} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Which part.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The metadata block is not valid.
    #[error("backup metadata unreadable: {0}")]
    Metadata(String),
    /// The checksum holds but the snapshot is not a concord space.
    #[error("the backup's snapshot is not a concord space: {0}")]
    NotASpace(#[source] concord_state::StateError),
    /// A space name that is not one (see `concord::valid_space_name`).
    #[error(
        "invalid space name {0:?} (1 to 64 ASCII letters, digits, '.', '_', '-'; not starting with '.')"
    )]
    SpaceName(String),
    /// The data directory holds no such space.
    #[error("no space {space:?} in {} (no directory {})", data.display(), data.join("spaces").join(space).display())]
    NoSuchSpace {
        /// The space asked for.
        space: String,
        /// The data directory.
        data: PathBuf,
    },
    /// No node answers on the control socket, yet the space's storage is
    /// locked: a node is starting (or a tool holds it).
    #[error("space {space:?} is locked by another process (a node starting?); try again")]
    SpaceInUse {
        /// The space.
        space: String,
    },
    /// The storage of the space could not be read or written.
    #[error(transparent)]
    Storage(#[from] concord_storage::StorageError),
    /// Restore only writes a new data directory.
    #[error("{} exists and is not an empty directory; restore into a new data directory", .0.display())]
    TargetNotEmpty(PathBuf),
}

impl BackupError {
    /// An I/O error on `path` while doing `op`.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> BackupError {
        BackupError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The space backed up (restored under the same name).
    pub space: String,
    /// When the snapshot was taken, in ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Logical changes the snapshot holds (its vector clock's total).
    pub changes: u64,
    /// The `concord` version that wrote it.
    pub concord_version: String,
}

impl Meta {
    /// Metadata for a snapshot of `space` holding `changes`, taken now.
    pub fn now(space: &str, changes: u64) -> Meta {
        let created_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Meta {
            space: space.to_owned(),
            created_unix_ms,
            changes,
            concord_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// A decoded (and verified) backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Its metadata.
    pub meta: Meta,
    /// The space's snapshot.
    pub snapshot: Vec<u8>,
}

/// The fields of a header, checked for magic, version and payload limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    payload_len: u64,
    sha256: [u8; 32],
}

impl Header {
    fn parse(bytes: &[u8]) -> Result<Header, BackupError> {
        if bytes.len() < BACKUP_MAGIC.len() || bytes[..4] != BACKUP_MAGIC {
            // A prefix of the magic is a file cut short, not a stranger.
            return Err(if BACKUP_MAGIC.starts_with(bytes) {
                truncated(HEADER_BYTES as u64, bytes.len())
            } else {
                BackupError::NotABackup
            });
        }
        if bytes.len() < 8 {
            return Err(truncated(HEADER_BYTES as u64, bytes.len()));
        }
        let found = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if found != BACKUP_VERSION {
            return Err(BackupError::UnsupportedVersion { found });
        }
        let Some(header) = bytes.get(..HEADER_BYTES) else {
            return Err(truncated(HEADER_BYTES as u64, bytes.len()));
        };
        let mut len = [0u8; 8];
        len.copy_from_slice(&header[8..16]);
        let payload_len = u64::from_le_bytes(len);
        if payload_len > MAX_PAYLOAD_BYTES {
            return Err(BackupError::TooLarge {
                what: "payload",
                len: payload_len,
                max: MAX_PAYLOAD_BYTES,
            });
        }
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&header[16..HEADER_BYTES]);
        Ok(Header {
            payload_len,
            sha256,
        })
    }

    /// The whole file's length this header announces.
    fn file_len(&self) -> u64 {
        HEADER_BYTES as u64 + self.payload_len
    }

    /// Truncated or trailing bytes, if a file of `found` bytes is not `file_len`.
    fn check_len(&self, found: u64) -> Result<(), BackupError> {
        let expected = self.file_len();
        if found < expected {
            return Err(BackupError::Truncated { expected, found });
        }
        if found > expected {
            return Err(BackupError::TrailingBytes {
                extra: found - expected,
            });
        }
        Ok(())
    }
}

fn truncated(expected: u64, found: usize) -> BackupError {
    BackupError::Truncated {
        expected,
        found: found as u64,
    }
}

impl Backup {
    /// The backup of `snapshot` described by `meta`.
    pub fn new(meta: Meta, snapshot: Vec<u8>) -> Backup {
        Backup { meta, snapshot }
    }

    /// The file's bytes: header, then payload.
    ///
    /// # Errors
    /// [`BackupError::TooLarge`] for a snapshot over [`MAX_SNAPSHOT_BYTES`]
    /// or metadata over [`MAX_META_BYTES`]: a file that could not be restored
    /// is never written.
    pub fn encode(&self) -> Result<Vec<u8>, BackupError> {
        let meta = serde_json::to_vec(&self.meta)
            .map_err(|e| BackupError::Metadata(format!("not encodable: {e}")))?;
        check_limit("metadata", meta.len(), MAX_META_BYTES)?;
        check_limit("snapshot", self.snapshot.len(), MAX_SNAPSHOT_BYTES)?;
        let payload_len = 4 + meta.len() + self.snapshot.len();
        let mut out = Vec::with_capacity(HEADER_BYTES + payload_len);
        out.extend_from_slice(&BACKUP_MAGIC);
        out.extend_from_slice(&BACKUP_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload_len as u64).to_le_bytes());
        out.extend_from_slice(&[0u8; 32]); // the checksum, once the payload is there
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.snapshot);
        let sha256 = Sha256::digest(&out[HEADER_BYTES..]);
        out[16..HEADER_BYTES].copy_from_slice(&sha256);
        debug_assert_eq!(out.len(), HEADER_BYTES + payload_len);
        Ok(out)
    }

    /// Decodes and verifies a whole backup file's bytes.
    ///
    /// # Errors
    /// Every [`BackupError`] of the format (see the module doc).
    pub fn decode(bytes: &[u8]) -> Result<Backup, BackupError> {
        let header = Header::parse(bytes)?;
        header.check_len(bytes.len() as u64)?;
        let payload = &bytes[HEADER_BYTES..];
        let actual: [u8; 32] = Sha256::digest(payload).into();
        if actual != header.sha256 {
            return Err(BackupError::Checksum {
                expected: hex::encode(header.sha256),
                actual: hex::encode(actual),
            });
        }
        let (len, rest) = payload
            .split_first_chunk::<4>()
            .ok_or_else(|| BackupError::Metadata("no metadata length".into()))?;
        let len = u32::from_le_bytes(*len) as usize;
        check_limit("metadata", len, MAX_META_BYTES)?;
        let (meta, snapshot) = rest
            .split_at_checked(len)
            .ok_or_else(|| BackupError::Metadata("metadata longer than the payload".into()))?;
        let meta: Meta =
            serde_json::from_slice(meta).map_err(|e| BackupError::Metadata(e.to_string()))?;
        check_limit("snapshot", snapshot.len(), MAX_SNAPSHOT_BYTES)?;
        Ok(Backup {
            meta,
            snapshot: snapshot.to_vec(),
        })
    }

    /// Reads and verifies the backup in `path`. The header and the file's
    /// size are checked before the payload is read, so a damaged length
    /// never makes it allocate more than the file holds.
    ///
    /// # Errors
    /// [`BackupError::Io`] if the file cannot be read, otherwise as
    /// [`Backup::decode`].
    pub fn read_file(path: &Path) -> Result<Backup, BackupError> {
        let _span = tracing::info_span!("backup_read", path = %path.display()).entered();
        let mut file = std::fs::File::open(path).map_err(|e| BackupError::io("open", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| BackupError::io("stat", path, e))?
            .len();
        let mut head = Vec::with_capacity(HEADER_BYTES);
        (&mut file)
            .take(HEADER_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(|e| BackupError::io("read", path, e))?;
        Header::parse(&head)?.check_len(size)?;
        let mut bytes = head;
        file.read_to_end(&mut bytes)
            .map_err(|e| BackupError::io("read", path, e))?;
        Backup::decode(&bytes)
    }
}

fn check_limit(what: &'static str, len: usize, max: usize) -> Result<(), BackupError> {
    if len > max {
        return Err(BackupError::TooLarge {
            what,
            len: len as u64,
            max: max as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
