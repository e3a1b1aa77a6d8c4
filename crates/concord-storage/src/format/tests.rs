use super::*;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = record_header(payload).to_vec();
    v.extend_from_slice(payload);
    v
}

fn log_with_header(header: &[u8], records: &[&[u8]]) -> Vec<u8> {
    let mut v = header.to_vec();
    for r in records {
        v.extend(frame(r));
    }
    v
}

fn log_of(records: &[&[u8]]) -> Vec<u8> {
    log_with_header(&log_header(0), records)
}

/// The header of a version-1 file (no generation).
fn v1_header(magic: [u8; 4]) -> Vec<u8> {
    let mut h = magic.to_vec();
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// Scans `bytes` as the log of a snapshot of `generation`.
fn scan_at(bytes: &[u8], generation: u64) -> Result<(Vec<Vec<u8>>, LogScan), StorageError> {
    let mut out = Vec::new();
    let s = scan_log(bytes, bytes.len() as u64, "test", generation, &mut |r| {
        out.push(r);
    })?;
    Ok((out, s))
}

fn scan(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, LogScan), StorageError> {
    scan_at(bytes, 0)
}

#[test]
fn framing_round_trip() {
    let log = log_of(&[b"a", b"", b"hello world"]);
    let (recs, s) = scan(&log).unwrap();
    assert_eq!(recs, vec![b"a".to_vec(), vec![], b"hello world".to_vec()]);
    assert_eq!(s.valid_len, log.len() as u64);
    assert_eq!(s.torn_tail, None);
}

#[test]
fn zero_record_header_never_checks_out() {
    // An all-zero header (len 0, crc 0) must not be a valid empty record.
    assert_ne!(record_header(b""), [0u8; RECORD_HEADER_BYTES]);
}

#[test]
fn zero_filled_tail_is_torn() {
    let mut log = log_of(&[b"one", b"two"]);
    let good = log.len() as u64;
    log.extend(std::iter::repeat_n(0u8, 100));
    let (recs, s) = scan(&log).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        s.torn_tail,
        Some(TornTail {
            offset: good,
            dropped_bytes: 100
        })
    );
    // ...but zeros followed by anything else are corruption.
    log.push(1);
    assert!(matches!(scan(&log), Err(StorageError::Corrupt { offset, .. }) if offset == good));
}

#[test]
fn length_over_limit() {
    let mut log = log_of(&[b"one"]);
    let at = log.len() as u64;
    let huge = (MAX_RECORD_BYTES as u32 + 1).to_le_bytes();
    log.extend_from_slice(&huge);
    log.extend_from_slice(&[1, 2, 3, 4]);
    // At the end (runs past EOF): torn tail, nothing allocated.
    let (recs, s) = scan(&log).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(s.torn_tail.map(|t| t.offset), Some(at));
    // Followed by more data than it claims: corruption. The bytes after
    // it come from a lazy reader, so the test allocates nothing big.
    let extra = MAX_RECORD_BYTES as u64 + 100;
    let total = log.len() as u64 + extra;
    let reader = (&log[..]).chain(std::io::repeat(7).take(extra));
    let res = scan_log(reader, total, "test", 0, &mut |_| {});
    assert!(
        matches!(res, Err(StorageError::Corrupt { offset, .. }) if offset == at),
        "{res:?}"
    );
}

#[test]
fn bad_checksum_in_middle_is_corrupt() {
    let mut log = log_of(&[b"one", b"two", b"three"]);
    let second = (FILE_HEADER_BYTES + RECORD_HEADER_BYTES + 3) as u64;
    log[second as usize + 4] ^= 0xff;
    match scan(&log) {
        Err(StorageError::Corrupt { offset, .. }) => assert_eq!(offset, second),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn flipped_length_bit_is_caught_by_checksum() {
    let mut log = log_of(&[b"one", b"two"]);
    let second = FILE_HEADER_BYTES + RECORD_HEADER_BYTES + 3;
    log[second] ^= 0x01; // len 3 -> 2: record now ends before EOF
    // The record is complete (len 2) but its checksum covers the length,
    // so it fails; one stray byte follows it, so it is not last -> corrupt.
    assert!(matches!(scan(&log), Err(StorageError::Corrupt { .. })));
}

#[test]
fn header_rules() {
    assert_eq!(scan(&[]).unwrap().1.valid_len, 0);
    for n in 1..FILE_HEADER_BYTES {
        let (_, s) = scan(&log_header(0)[..n]).unwrap();
        assert_eq!(
            s.torn_tail,
            Some(TornTail {
                offset: 0,
                dropped_bytes: n as u64
            })
        );
    }
    assert!(matches!(
        scan(b"XXXX\x01\0\0\0"),
        Err(StorageError::Corrupt { offset: 0, .. })
    ));
    assert!(scan(b"CC").is_ok());
    assert!(matches!(scan(b"XY"), Err(StorageError::Corrupt { .. })));
    let mut v3 = log_header(0);
    v3[4] = 3;
    assert!(matches!(
        scan(&v3),
        Err(StorageError::UnsupportedVersion { found: 3, .. })
    ));
    let (_, s) = scan(&[0u8; 20]).unwrap();
    assert_eq!(s.valid_len, 0);
    assert!(s.torn_tail.is_some());
}

#[test]
fn snapshot_rules() {
    let payload = b"snapshot payload".to_vec();
    let mut file = snapshot_prefix(&payload, 7).to_vec();
    file.extend_from_slice(&payload);
    assert_eq!(
        read_snapshot(&file[..], file.len() as u64, "s").unwrap(),
        (7, payload)
    );
    // Every single-byte flip is detected, the generation's too.
    for i in 0..file.len() {
        let mut bad = file.clone();
        bad[i] ^= 0x10;
        assert!(
            read_snapshot(&bad[..], bad.len() as u64, "s").is_err(),
            "flip at {i} undetected"
        );
    }
    // Every truncation is detected, and trailing bytes too.
    for n in 0..file.len() {
        assert!(matches!(
            read_snapshot(&file[..n], n as u64, "s"),
            Err(StorageError::Corrupt { .. })
        ));
    }
    let mut long = file.clone();
    long.push(0);
    assert!(matches!(
        read_snapshot(&long[..], long.len() as u64, "s"),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn the_header_checksum_guards_the_generation() {
    let log = log_of(&[b"one"]);
    // A flipped generation bit with records after it: corrupt, not stale.
    for at in 8..FILE_HEADER_BYTES {
        let mut bad = log.clone();
        bad[at] ^= 0x01;
        assert!(
            matches!(
                scan_at(&bad, 1),
                Err(StorageError::Corrupt { offset: 0, .. })
            ),
            "flip at {at}"
        );
    }
    // A bad header with nothing after it is a torn creation of the log.
    let mut alone = log_header(0);
    alone[10] ^= 0x01;
    assert_eq!(scan(&alone).unwrap().1.torn_tail.map(|t| t.offset), Some(0));
    // So is a header whose generation and checksum never made it to disk,
    // followed by zeros only.
    let mut zero_filled = log_header(0)[..V1_FILE_HEADER_BYTES].to_vec();
    zero_filled.resize(100, 0);
    let (_, s) = scan(&zero_filled).unwrap();
    assert_eq!(
        (s.valid_len, s.torn_tail.map(|t| t.dropped_bytes)),
        (0, Some(100))
    );
    zero_filled.push(1);
    assert!(matches!(
        scan(&zero_filled),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn a_log_is_read_only_with_its_snapshot_generation() {
    let log = log_with_header(&log_header(3), &[b"one", b"two"]);
    let (recs, s) = scan_at(&log, 3).unwrap();
    assert_eq!(recs, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!((s.valid_len, s.stale), (log.len() as u64, None));
    // Older than the snapshot: stale, and not one record is read.
    let (recs, s) = scan_at(&log, 4).unwrap();
    assert!(recs.is_empty());
    assert_eq!((s.valid_len, s.torn_tail, s.stale), (0, None, Some(3)));
    // Newer than the snapshot: no crash leaves that.
    assert!(matches!(
        scan_at(&log, 2),
        Err(StorageError::Corrupt { offset: 0, .. })
    ));
}

#[test]
fn version_1_files_read_as_generation_0() {
    let log = log_with_header(&v1_header(LOG_MAGIC), &[b"old", b"records"]);
    let (recs, s) = scan(&log).unwrap();
    assert_eq!(recs, vec![b"old".to_vec(), b"records".to_vec()]);
    assert_eq!((s.valid_len, s.torn_tail), (log.len() as u64, None));
    assert_eq!(scan_at(&log, 1).unwrap().1.stale, Some(0));
    // A torn tail of a version-1 log is found as before.
    let (recs, s) = scan(&log[..log.len() - 2]).unwrap();
    assert_eq!(recs, vec![b"old".to_vec()]);
    assert_eq!(
        s.torn_tail.map(|t| t.offset),
        Some((V1_FILE_HEADER_BYTES + RECORD_HEADER_BYTES + 3) as u64)
    );
    let mut snapshot = v1_header(SNAPSHOT_MAGIC);
    snapshot.extend(frame(b"v1 snapshot"));
    assert_eq!(
        read_snapshot(&snapshot[..], snapshot.len() as u64, "s").unwrap(),
        (0, b"v1 snapshot".to_vec())
    );
    assert_eq!(peek_generation(&snapshot, SNAPSHOT_MAGIC), 0);
}

#[test]
fn peeking_a_generation() {
    let mut snapshot = snapshot_prefix(b"x", 5).to_vec();
    snapshot.extend_from_slice(b"x");
    assert_eq!(peek_generation(&snapshot, SNAPSHOT_MAGIC), 5);
    assert_eq!(peek_generation(&log_header(9), LOG_MAGIC), 9);
    // Only the header is needed; anything unreadable counts as 0.
    assert_eq!(
        peek_generation(&snapshot[..FILE_HEADER_BYTES], SNAPSHOT_MAGIC),
        5
    );
    assert_eq!(peek_generation(&log_header(9), SNAPSHOT_MAGIC), 0);
    assert_eq!(peek_generation(b"", LOG_MAGIC), 0);
}
