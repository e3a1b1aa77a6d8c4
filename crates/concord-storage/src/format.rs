//! The on-disk format shared by both backends: file headers, record
//! framing, and the parsers that apply the recovery rules of the
//! [crate documentation](crate). Owns no file and no state: everything here
//! is a pure function of the bytes it is given.

use std::io::{self, Read};

use crate::{
    FILE_HEADER_BYTES, FORMAT_VERSION, LOG_MAGIC, MAX_RECORD_BYTES, MAX_SNAPSHOT_BYTES,
    RECORD_HEADER_BYTES, SNAPSHOT_MAGIC, SNAPSHOT_OVERHEAD_BYTES, StorageError, TornTail,
};

/// The header a log file starts with.
pub(crate) fn log_header() -> [u8; FILE_HEADER_BYTES] {
    file_header(LOG_MAGIC)
}

fn file_header(magic: [u8; 4]) -> [u8; FILE_HEADER_BYTES] {
    let mut h = [0u8; FILE_HEADER_BYTES];
    h[..4].copy_from_slice(&magic);
    h[4..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
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

/// Everything a snapshot file holds before its payload.
pub(crate) fn snapshot_prefix(payload: &[u8]) -> [u8; SNAPSHOT_OVERHEAD_BYTES] {
    let mut p = [0u8; SNAPSHOT_OVERHEAD_BYTES];
    p[..FILE_HEADER_BYTES].copy_from_slice(&file_header(SNAPSHOT_MAGIC));
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

/// Reads and verifies a whole snapshot file of `total_len` bytes from
/// `reader`, returning its payload. Allocates only after the length field
/// agreed with `total_len` and [`MAX_SNAPSHOT_BYTES`].
pub(crate) fn read_snapshot<R: Read>(
    mut reader: R,
    total_len: u64,
    file: &str,
) -> Result<Vec<u8>, StorageError> {
    let corrupt = |offset: u64, reason: &'static str| StorageError::Corrupt {
        file: file.to_owned(),
        offset,
        reason,
    };
    if total_len < SNAPSHOT_OVERHEAD_BYTES as u64 {
        return Err(corrupt(0, "snapshot shorter than its header"));
    }
    let mut prefix = [0u8; SNAPSHOT_OVERHEAD_BYTES];
    reader
        .read_exact(&mut prefix)
        .map_err(|e| StorageError::io("read", file, e))?;
    check_file_header(&prefix, SNAPSHOT_MAGIC, file, "snapshot has bad magic")?;
    let (len, crc) = split_record_header(&prefix[FILE_HEADER_BYTES..]);
    let len_field = len as u64;
    if len as usize > MAX_SNAPSHOT_BYTES {
        return Err(corrupt(
            FILE_HEADER_BYTES as u64,
            "snapshot length exceeds MAX_SNAPSHOT_BYTES",
        ));
    }
    if SNAPSHOT_OVERHEAD_BYTES as u64 + len_field != total_len {
        return Err(corrupt(
            FILE_HEADER_BYTES as u64,
            "snapshot length does not match the file size",
        ));
    }
    let mut payload = vec![0u8; len as usize];
    reader
        .read_exact(&mut payload)
        .map_err(|e| StorageError::io("read", file, e))?;
    if record_crc(len.to_le_bytes(), &payload) != crc {
        return Err(corrupt(
            FILE_HEADER_BYTES as u64,
            "snapshot checksum mismatch",
        ));
    }
    Ok(payload)
}

fn split_record_header(h: &[u8]) -> (u32, u32) {
    let mut len = [0u8; 4];
    let mut crc = [0u8; 4];
    len.copy_from_slice(&h[..4]);
    crc.copy_from_slice(&h[4..8]);
    (u32::from_le_bytes(len), u32::from_le_bytes(crc))
}

fn check_file_header(
    h: &[u8],
    magic: [u8; 4],
    file: &str,
    bad_magic: &'static str,
) -> Result<(), StorageError> {
    if h[..4] != magic {
        return Err(StorageError::Corrupt {
            file: file.to_owned(),
            offset: 0,
            reason: bad_magic,
        });
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&h[4..FILE_HEADER_BYTES]);
    let found = u32::from_le_bytes(v);
    if found != FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            file: file.to_owned(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Result of [`scan_log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogScan {
    /// Length of the intact prefix (header + whole good records). Zero when
    /// the log holds not even an intact header: it must be (re)written.
    pub valid_len: u64,
    /// What lies past `valid_len`, if anything.
    pub torn_tail: Option<TornTail>,
}

/// Parses a log of `total_len` bytes from `reader` by the recovery rules of
/// the module documentation, handing each intact record to `on_record` in
/// order. Never allocates more than [`MAX_RECORD_BYTES`] (and never more than
/// the bytes actually left) for one record. Changes nothing; the caller
/// truncates to `valid_len` when a torn tail is reported.
pub(crate) fn scan_log<R: Read>(
    mut reader: R,
    total_len: u64,
    file: &str,
    on_record: &mut dyn FnMut(Vec<u8>),
) -> Result<LogScan, StorageError> {
    let read_err = |e| StorageError::io("read", file, e);
    let torn = |offset: u64| LogScan {
        valid_len: offset,
        torn_tail: Some(TornTail {
            offset,
            dropped_bytes: total_len - offset,
        }),
    };
    if total_len == 0 {
        return Ok(LogScan {
            valid_len: 0,
            torn_tail: None,
        });
    }

    // File header.
    let header_len = total_len.min(FILE_HEADER_BYTES as u64) as usize;
    let mut header = [0u8; FILE_HEADER_BYTES];
    reader
        .read_exact(&mut header[..header_len])
        .map_err(read_err)?;
    let expected = log_header();
    if header_len < FILE_HEADER_BYTES {
        // Crash while the log was being created.
        let h = &header[..header_len];
        if h == &expected[..header_len] || h.iter().all(|&b| b == 0) {
            return Ok(torn(0));
        }
        return Err(StorageError::Corrupt {
            file: file.to_owned(),
            offset: 0,
            reason: "log has bad magic",
        });
    }
    if header[..4] != LOG_MAGIC
        && header.iter().all(|&b| b == 0)
        && rest_is_zero(&mut reader, file)?
    {
        // A log whose size reached the disk but whose header did not.
        return Ok(torn(0));
    }
    check_file_header(&header, LOG_MAGIC, file, "log has bad magic")?;

    // Records.
    let mut offset = FILE_HEADER_BYTES as u64;
    loop {
        let remaining = total_len - offset;
        if remaining == 0 {
            return Ok(LogScan {
                valid_len: offset,
                torn_tail: None,
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
