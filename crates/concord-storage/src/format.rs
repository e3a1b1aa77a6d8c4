//! The on-disk format shared by both backends: file headers, record
//! framing, and the parsers that apply the recovery rules of the
//! [crate documentation](crate). Owns no file and no state: everything here
//! is a pure function of the bytes it is given, and must never allocate for
//! a length read from disk before checking it against the limits and the
//! bytes actually there.

use std::io::{self, Read};

use crate::{
    FILE_HEADER_BYTES, FORMAT_VERSION, LOG_MAGIC, MAX_RECORD_BYTES, MAX_SNAPSHOT_BYTES,
    RECORD_HEADER_BYTES, SNAPSHOT_MAGIC, SNAPSHOT_OVERHEAD_BYTES, StorageError, TornTail,
    V1_FILE_HEADER_BYTES,
};

/// The header a log of `generation` starts with.
pub(crate) fn log_header(generation: u64) -> [u8; FILE_HEADER_BYTES] {
    file_header(LOG_MAGIC, generation)
}

fn file_header(magic: [u8; 4], generation: u64) -> [u8; FILE_HEADER_BYTES] {
    let mut h = [0u8; FILE_HEADER_BYTES];
    h[..4].copy_from_slice(&magic);
    h[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn record_crc(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// The header written in front of `payload` in the log. The caller must have
/// checked `payload.len()` against a limit that fits in a u32.
pub(crate) fn record_header(payload: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    // Both limits are far below u32::MAX; saturate rather than wrap if a
    // caller ever forgets (the record would then fail its checksum).
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let mut h = [0u8; RECORD_HEADER_BYTES];
    h[..4].copy_from_slice(&len);
    h[4..].copy_from_slice(&record_crc(len, payload).to_le_bytes());
    h
}

/// Size of `payload` once framed as a log record.
pub(crate) fn framed_len(payload: &[u8]) -> u64 {
    (RECORD_HEADER_BYTES + payload.len()) as u64
}

/// Everything a snapshot file of `generation` holds before its payload.
pub(crate) fn snapshot_prefix(payload: &[u8], generation: u64) -> [u8; SNAPSHOT_OVERHEAD_BYTES] {
    let mut p = [0u8; SNAPSHOT_OVERHEAD_BYTES];
    p[..FILE_HEADER_BYTES].copy_from_slice(&file_header(SNAPSHOT_MAGIC, generation));
    p[FILE_HEADER_BYTES..].copy_from_slice(&record_header(payload));
    p
}

/// Checks a record length against a limit (the one in force for appends).
pub(crate) fn check_record_len(len: usize, max: usize) -> Result<(), StorageError> {
    if len > max {
        Err(StorageError::RecordTooLarge { len, max })
    } else {
        Ok(())
    }
}

/// Checks a snapshot length against a limit (the one in force for compaction).
pub(crate) fn check_snapshot_len(len: usize, max: usize) -> Result<(), StorageError> {
    if len > max {
        Err(StorageError::SnapshotTooLarge { len, max })
    } else {
        Ok(())
    }
}

/// A file header as read from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Its length in the file: [`V1_FILE_HEADER_BYTES`] for a version-1
    /// file, [`FILE_HEADER_BYTES`] since.
    pub len: u64,
    /// The file's generation (0 for a version-1 file).
    pub generation: u64,
}

/// Reads the header of a file of `total_len` bytes that should start with
/// `magic`. `Ok(None)` when it is torn: cut short, or zero bytes with nothing
/// but zeros after them (both what a crash while the file was created
/// leaves), or a bad header checksum with nothing but zeros after the
/// header. A bad magic, or a bad checksum followed by data, is corrupt.
fn read_header<R: Read>(
    reader: &mut R,
    total_len: u64,
    magic: [u8; 4],
    file: &str,
) -> Result<Option<Header>, StorageError> {
    let read_err = |e| StorageError::io("read", file, e);
    let corrupt = |reason: &'static str| StorageError::Corrupt {
        file: file.to_owned(),
        offset: 0,
        reason,
    };
    let mut h = [0u8; FILE_HEADER_BYTES];
    let first = total_len.min(V1_FILE_HEADER_BYTES as u64) as usize;
    reader.read_exact(&mut h[..first]).map_err(read_err)?;
    let zeros = h[..first].iter().all(|&b| b == 0);
    if first < V1_FILE_HEADER_BYTES {
        let prefix_of = |version: u32| {
            let mut v = [0u8; V1_FILE_HEADER_BYTES];
            v[..4].copy_from_slice(&magic);
            v[4..].copy_from_slice(&version.to_le_bytes());
            h[..first] == v[..first]
        };
        return if zeros || prefix_of(FORMAT_VERSION) || prefix_of(1) {
            Ok(None)
        } else {
            Err(corrupt("bad magic"))
        };
    }
    if h[..4] != magic {
        return if zeros && rest_is_zero(reader, file)? {
            Ok(None)
        } else {
            Err(corrupt("bad magic"))
        };
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&h[4..8]);
    match u32::from_le_bytes(v) {
        1 => {
            return Ok(Some(Header {
                len: V1_FILE_HEADER_BYTES as u64,
                generation: 0,
            }));
        }
        FORMAT_VERSION => {}
        found => {
            return Err(StorageError::UnsupportedVersion {
                file: file.to_owned(),
                found,
                supported: FORMAT_VERSION,
            });
        }
    }
    if total_len < FILE_HEADER_BYTES as u64 {
        return Ok(None);
    }
    reader
        .read_exact(&mut h[V1_FILE_HEADER_BYTES..])
        .map_err(read_err)?;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&h[16..]);
    if crc32fast::hash(&h[..16]) != u32::from_le_bytes(crc) {
        let zero_filled = h[V1_FILE_HEADER_BYTES..].iter().all(|&b| b == 0);
        return if total_len == FILE_HEADER_BYTES as u64
            || (zero_filled && rest_is_zero(reader, file)?)
        {
            Ok(None)
        } else {
            Err(corrupt("header checksum mismatch"))
        };
    }
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&h[8..16]);
    Ok(Some(Header {
        len: FILE_HEADER_BYTES as u64,
        generation: u64::from_le_bytes(generation),
    }))
}

/// Reads and checks only the header of a snapshot file of `total_len`
/// bytes: its generation. Anything torn is corrupt (snapshots are written
/// atomically).
pub(crate) fn read_snapshot_header<R: Read>(
    reader: &mut R,
    total_len: u64,
    file: &str,
) -> Result<Header, StorageError> {
    read_header(reader, total_len, SNAPSHOT_MAGIC, file)?.ok_or_else(|| StorageError::Corrupt {
        file: file.to_owned(),
        offset: 0,
        reason: "snapshot header cut short",
    })
}

/// Reads and verifies a whole snapshot file of `total_len` bytes from
/// `reader`, returning its generation and payload. Allocates only after the
/// length field agreed with `total_len` and [`MAX_SNAPSHOT_BYTES`].
pub(crate) fn read_snapshot<R: Read>(
    mut reader: R,
    total_len: u64,
    file: &str,
) -> Result<(u64, Vec<u8>), StorageError> {
    let header = read_snapshot_header(&mut reader, total_len, file)?;
    let corrupt = |reason: &'static str| StorageError::Corrupt {
        file: file.to_owned(),
        offset: header.len,
        reason,
    };
    let overhead = header.len + RECORD_HEADER_BYTES as u64;
    if total_len < overhead {
        return Err(corrupt("snapshot shorter than its header"));
    }
    let mut rh = [0u8; RECORD_HEADER_BYTES];
    reader
        .read_exact(&mut rh)
        .map_err(|e| StorageError::io("read", file, e))?;
    let (len, crc) = split_record_header(&rh);
    if len as usize > MAX_SNAPSHOT_BYTES {
        return Err(corrupt("snapshot length exceeds MAX_SNAPSHOT_BYTES"));
    }
    if overhead + u64::from(len) != total_len {
        return Err(corrupt("snapshot length does not match the file size"));
    }
    let mut payload = vec![0u8; len as usize];
    reader
        .read_exact(&mut payload)
        .map_err(|e| StorageError::io("read", file, e))?;
    if record_crc(len.to_le_bytes(), &payload) != crc {
        return Err(corrupt("snapshot checksum mismatch"));
    }
    Ok((header.generation, payload))
}

/// The generation in the header of `bytes` (a whole log or snapshot file),
/// 0 when there is no readable header. For choosing the next generation
/// when the files were not loaded: a crash must never leave a log whose
/// generation equals a newer snapshot's.
pub(crate) fn peek_generation(bytes: &[u8], magic: [u8; 4]) -> u64 {
    let mut reader = bytes;
    read_header(&mut reader, bytes.len() as u64, magic, "")
        .ok()
        .flatten()
        .map_or(0, |h| h.generation)
}

fn split_record_header(h: &[u8]) -> (u32, u32) {
    let mut len = [0u8; 4];
    let mut crc = [0u8; 4];
    len.copy_from_slice(&h[..4]);
    crc.copy_from_slice(&h[4..8]);
    (u32::from_le_bytes(len), u32::from_le_bytes(crc))
}

/// Result of [`scan_log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogScan {
    /// Length of the intact prefix (header + whole good records). Zero when
    /// the log holds not even an intact header, or is stale: it must be
    /// (re)written.
    pub valid_len: u64,
    /// What lies past `valid_len`, if anything.
    pub torn_tail: Option<TornTail>,
    /// The generation of a stale log (older than the snapshot), whose
    /// records were not read.
    pub stale: Option<u64>,
}

/// Parses a log of `total_len` bytes from `reader` by the recovery rules of
/// the crate documentation, handing each intact record to `on_record` in
/// order, if the log's generation is `generation` (the snapshot's). An older
/// log is stale and none of its records is read; a newer one is corrupt.
/// Never allocates more than [`MAX_RECORD_BYTES`] (and never more than the
/// bytes actually left) for one record. Changes nothing; the caller
/// truncates to `valid_len` when a torn tail is reported, and rewrites the
/// log when `valid_len` is zero.
pub(crate) fn scan_log<R: Read>(
    mut reader: R,
    total_len: u64,
    file: &str,
    generation: u64,
    on_record: &mut dyn FnMut(Vec<u8>),
) -> Result<LogScan, StorageError> {
    let read_err = |e| StorageError::io("read", file, e);
    let torn = |offset: u64| LogScan {
        valid_len: offset,
        torn_tail: Some(TornTail {
            offset,
            dropped_bytes: total_len - offset,
        }),
        stale: None,
    };
    if total_len == 0 {
        return Ok(LogScan {
            valid_len: 0,
            torn_tail: None,
            stale: None,
        });
    }
    let Some(header) = read_header(&mut reader, total_len, LOG_MAGIC, file)? else {
        // Crash while the log was being created.
        return Ok(torn(0));
    };
    if header.generation < generation {
        // A compaction renamed its snapshot into place, then crashed before
        // it reset the log: every record is in the snapshot already.
        return Ok(LogScan {
            valid_len: 0,
            torn_tail: None,
            stale: Some(header.generation),
        });
    }
    if header.generation > generation {
        return Err(StorageError::Corrupt {
            file: file.to_owned(),
            offset: 0,
            reason: "log generation is newer than the snapshot's",
        });
    }

    // Records.
    let mut offset = header.len;
    loop {
        let remaining = total_len - offset;
        if remaining == 0 {
            return Ok(LogScan {
                valid_len: offset,
                torn_tail: None,
                stale: None,
            });
        }
        if remaining < RECORD_HEADER_BYTES as u64 {
            return Ok(torn(offset));
        }
        let mut rh = [0u8; RECORD_HEADER_BYTES];
        reader.read_exact(&mut rh).map_err(read_err)?;
        let (len, crc) = split_record_header(&rh);
        let end = offset + RECORD_HEADER_BYTES as u64 + u64::from(len);
        if len as usize > MAX_RECORD_BYTES {
            if end >= total_len {
                return Ok(torn(offset));
            }
            return Err(StorageError::Corrupt {
                file: file.to_owned(),
                offset,
                reason: "record length exceeds MAX_RECORD_BYTES",
            });
        }
        if end > total_len {
            return Ok(torn(offset));
        }
        // `len` is within the limit and within the bytes that are there.
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload).map_err(read_err)?;
        if record_crc(len.to_le_bytes(), &payload) != crc {
            if end == total_len {
                return Ok(torn(offset));
            }
            let all_zero = rh.iter().chain(payload.iter()).all(|&b| b == 0);
            if all_zero && rest_is_zero(&mut reader, file)? {
                return Ok(torn(offset));
            }
            return Err(StorageError::Corrupt {
                file: file.to_owned(),
                offset,
                reason: "record checksum mismatch",
            });
        }
        on_record(payload);
        offset = end;
    }
}

/// Whether everything `reader` has left is zero bytes (consumes it).
fn rest_is_zero<R: Read>(reader: &mut R, file: &str) -> Result<bool, StorageError> {
    let mut buf = [0u8; 8192];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StorageError::io("read", file, e)),
        };
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests;
