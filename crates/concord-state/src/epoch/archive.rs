//! The snapshot of a replica that retains earlier epochs: its current
//! document followed by the retained ones, newest first, in one byte string
//! (so that dropping an old epoch is the same atomic snapshot replacement as
//! any compaction). A replica without retained epochs writes a plain saved
//! document, which is also what this format reads back when the bytes start
//! with automerge's magic rather than [`ARCHIVE_MAGIC`].
//!
//! ```text
//! archive = magic "CCEA" count:u32 (len:u64 document)*count      (little-endian)
//! ```
//!
//! Pure bytes in and out; never touches a document.

use crate::StateError;

/// First bytes of an archive.
pub(crate) const ARCHIVE_MAGIC: [u8; 4] = *b"CCEA";

/// Most documents in one archive (the current one plus retained epochs).
pub(crate) const MAX_ARCHIVED_DOCUMENTS: usize = 65;

/// Packs saved documents, current first.
pub(crate) fn pack(documents: &[Vec<u8>]) -> Vec<u8> {
    debug_assert!(!documents.is_empty() && documents.len() <= MAX_ARCHIVED_DOCUMENTS);
    if let [only] = documents {
        return only.clone();
    }
    let total: usize = documents.iter().map(|d| d.len() + 8).sum();
    let mut out = Vec::with_capacity(8 + total);
    out.extend_from_slice(&ARCHIVE_MAGIC);
    out.extend_from_slice(&(documents.len() as u32).to_le_bytes());
    for d in documents {
        out.extend_from_slice(&(d.len() as u64).to_le_bytes());
        out.extend_from_slice(d);
    }
    out
}

/// Splits a snapshot into saved documents, current first.
pub(crate) fn unpack(bytes: &[u8]) -> Result<Vec<&[u8]>, StateError> {
    let Some(rest) = bytes.strip_prefix(&ARCHIVE_MAGIC) else {
        return Ok(vec![bytes]);
    };
    let bad = |why: &str| StateError::NotASpace(format!("epoch archive: {why}"));
    let (count, mut rest) = rest.split_at_checked(4).ok_or_else(|| bad("no count"))?;
    let count = u32::from_le_bytes(count.try_into().map_err(|_| bad("no count"))?) as usize;
    if count == 0 || count > MAX_ARCHIVED_DOCUMENTS {
        return Err(bad("document count out of range"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, tail) = rest.split_at_checked(8).ok_or_else(|| bad("cut short"))?;
        let len = u64::from_le_bytes(len.try_into().map_err(|_| bad("cut short"))?);
        let len = usize::try_from(len).map_err(|_| bad("length too large"))?;
        let (doc, tail) = tail.split_at_checked(len).ok_or_else(|| bad("cut short"))?;
        out.push(doc);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the last document"));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn archives_round_trip_and_plain_documents_pass_through() {
        let docs = vec![b"current".to_vec(), b"older".to_vec(), Vec::new()];
        let packed = pack(&docs);
        let back: Vec<Vec<u8>> = unpack(&packed)
            .unwrap()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(back, docs);
        let plain = vec![b"\x85\x6f\x4a\x83 a document".to_vec()];
        assert_eq!(pack(&plain), plain[0]);
        assert_eq!(unpack(&plain[0]).unwrap(), vec![&plain[0][..]]);
    }

    #[test]
    fn malformed_archives_are_errors() {
        let packed = pack(&[b"a".to_vec(), b"b".to_vec()]);
        for cut in 4..packed.len() {
            assert!(unpack(&packed[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = packed.clone();
        extra.push(0);
        assert!(unpack(&extra).is_err());
        let mut zero = ARCHIVE_MAGIC.to_vec();
        zero.extend_from_slice(&0u32.to_le_bytes());
        assert!(unpack(&zero).is_err());
    }
}
