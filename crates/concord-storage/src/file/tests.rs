use super::*;
use crate::{FORMAT_VERSION, RECORD_HEADER_BYTES, V1_FILE_HEADER_BYTES};

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = (i * 37) % 300;
            (0..len).map(|j| (i * 7 + j) as u8).collect()
        })
        .collect()
}

fn open(dir: &Path) -> FileStorage {
    FileStorage::open(dir).unwrap()
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(FileStorage::LOG_FILE)
}

/// Writes `recs` to a fresh log in `dir`, synced, and returns the log's
/// bytes and the offset of each record.
fn write_log(dir: &Path, recs: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
    let mut s = open(dir);
    s.load().unwrap();
    let mut offsets = Vec::new();
    for r in recs {
        offsets.push(s.bytes_on_disk());
        s.append(r).unwrap();
    }
    s.sync().unwrap();
    drop(s);
    (fs::read(log_path(dir)).unwrap(), offsets)
}

fn files_len(dir: &Path) -> u64 {
    [FileStorage::LOG_FILE, FileStorage::SNAPSHOT_FILE]
        .iter()
        .map(|f| fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn round_trip_append_sync_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = records(100);
    // One record larger than the write buffer takes the direct path.
    recs.insert(50, vec![0xab; WRITE_BUFFER_BYTES + 10]);
    let mut s = open(dir.path());
    let first = s.load().unwrap();
    assert_eq!(first, Recovered::default());
    for r in &recs {
        s.append(r).unwrap();
    }
    s.sync().unwrap();
    assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
    drop(s);
    let mut s = open(dir.path());
    let got = s.load().unwrap();
    assert_eq!(got.records, recs);
    assert_eq!(got.snapshot, None);
    assert_eq!(got.torn_tail, None);
    assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
}

#[test]
fn load_sees_appended_records_before_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.append(b"one").unwrap();
    s.append(b"two").unwrap();
    assert_eq!(
        s.load().unwrap().records,
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    s.append(b"three").unwrap();
    assert_eq!(s.load().unwrap().records.len(), 3);
}

#[test]
fn torn_tail_at_every_offset_of_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = records(5);
    recs.push(b"the last record, cut everywhere".to_vec());
    let (log, offsets) = write_log(dir.path(), &recs);
    let last = offsets[5];
    assert_eq!(
        last + (RECORD_HEADER_BYTES + recs[5].len()) as u64,
        log.len() as u64
    );
    for cut in last..log.len() as u64 {
        fs::write(log_path(dir.path()), &log[..cut as usize]).unwrap();
        let mut s = open(dir.path());
        let got = s.load().unwrap();
        assert_eq!(got.records, recs[..5], "cut at {cut}");
        let expected = (cut > last).then_some(TornTail {
            offset: last,
            dropped_bytes: cut - last,
        });
        assert_eq!(got.torn_tail, expected, "cut at {cut}");
        // The torn bytes are gone from disk.
        assert_eq!(fs::metadata(log_path(dir.path())).unwrap().len(), last);
        assert_eq!(s.bytes_on_disk(), last);
        // Appending after recovery works, and survives a reopen.
        s.append(b"after").unwrap();
        s.sync().unwrap();
        drop(s);
        let got = open(dir.path()).load().unwrap();
        assert_eq!(got.records.len(), 6, "cut at {cut}");
        assert_eq!(got.records[..5], recs[..5]);
        assert_eq!(got.records[5], b"after");
        assert_eq!(got.torn_tail, None);
    }
}

#[test]
fn every_prefix_of_the_log_recovers_the_whole_records_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(6);
    let (log, offsets) = write_log(dir.path(), &recs);
    for cut in 0..=log.len() {
        fs::write(log_path(dir.path()), &log[..cut]).unwrap();
        let whole = offsets
            .iter()
            .zip(&recs)
            .filter(|(off, r)| **off + (RECORD_HEADER_BYTES + r.len()) as u64 <= cut as u64)
            .count();
        let mut s = open(dir.path());
        let got = s.load().unwrap();
        assert_eq!(got.records, recs[..whole], "cut at {cut}");
        // Loading again finds a clean log.
        assert_eq!(s.load().unwrap().torn_tail, None, "cut at {cut}");
    }
}

#[test]
fn bad_checksum_of_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(5);
    let (mut log, offsets) = write_log(dir.path(), &recs);
    let last = offsets[4];
    log[last as usize + 5] ^= 0x40; // a byte of the crc
    fs::write(log_path(dir.path()), &log).unwrap();
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.records, recs[..4]);
    assert_eq!(
        got.torn_tail,
        Some(TornTail {
            offset: last,
            dropped_bytes: log.len() as u64 - last
        })
    );
    assert_eq!(fs::metadata(log_path(dir.path())).unwrap().len(), last);
}

#[test]
fn bad_record_in_the_middle_is_corrupt_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(5);
    let (log, offsets) = write_log(dir.path(), &recs);
    // A byte of the crc, then a byte of the payload, of record 2.
    for at in [offsets[2] as usize + 6, offsets[2] as usize + 9] {
        let mut bad = log.clone();
        bad[at] ^= 0x01;
        fs::write(log_path(dir.path()), &bad).unwrap();
        let mut s = open(dir.path());
        match s.load() {
            Err(StorageError::Corrupt { offset, file, .. }) => {
                assert_eq!(offset, offsets[2]);
                assert!(file.ends_with(FileStorage::LOG_FILE), "{file}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Appending refuses too, and writes nothing.
        assert!(matches!(s.append(b"x"), Err(StorageError::Corrupt { .. })));
        s.sync().unwrap();
        drop(s);
        assert_eq!(fs::read(log_path(dir.path())).unwrap(), bad);
    }
}

#[test]
fn oversized_length_at_the_end_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(3);
    let (mut log, _) = write_log(dir.path(), &recs);
    let good = log.len() as u64;
    log.extend_from_slice(&u32::MAX.to_le_bytes());
    log.extend_from_slice(&[9; 20]);
    fs::write(log_path(dir.path()), &log).unwrap();
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.records, recs);
    assert_eq!(got.torn_tail.map(|t| t.offset), Some(good));
}

#[test]
fn zero_filled_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(3);
    let (mut log, _) = write_log(dir.path(), &recs);
    let good = log.len() as u64;
    log.resize(log.len() + 4096, 0);
    fs::write(log_path(dir.path()), &log).unwrap();
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.records, recs);
    assert_eq!(
        got.torn_tail,
        Some(TornTail {
            offset: good,
            dropped_bytes: 4096
        })
    );
}

#[test]
fn torn_log_header_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(log_path(dir.path()), &log_header(0)[..3]).unwrap();
    let mut s = open(dir.path());
    let got = s.load().unwrap();
    assert_eq!(
        got.torn_tail,
        Some(TornTail {
            offset: 0,
            dropped_bytes: 3
        })
    );
    assert_eq!(fs::read(log_path(dir.path())).unwrap(), log_header(0));
    s.append(b"r").unwrap();
    s.sync().unwrap();
    drop(s);
    assert_eq!(
        open(dir.path()).load().unwrap().records,
        vec![b"r".to_vec()]
    );
}

#[test]
fn foreign_or_newer_log_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut newer = log_header(0).to_vec();
    newer[4] = 9;
    for (bytes, want_version) in [(newer, true), (b"not a concord log".to_vec(), false)] {
        fs::write(log_path(dir.path()), &bytes).unwrap();
        let err = open(dir.path()).load().unwrap_err();
        if want_version {
            assert!(
                matches!(err, StorageError::UnsupportedVersion { found: 9, .. }),
                "{err:?}"
            );
        } else {
            assert!(
                matches!(err, StorageError::Corrupt { offset: 0, .. }),
                "{err:?}"
            );
        }
        assert_eq!(fs::read(log_path(dir.path())).unwrap(), bytes);
    }
}

#[test]
fn append_before_load_repairs_a_torn_tail_first() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(3);
    let (log, _) = write_log(dir.path(), &recs);
    fs::write(log_path(dir.path()), &log[..log.len() - 2]).unwrap();
    let mut s = open(dir.path());
    s.append(b"new").unwrap();
    s.sync().unwrap();
    drop(s);
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.records[..2], recs[..2]);
    assert_eq!(got.records[2], b"new");
    assert_eq!(got.records.len(), 3);
    assert_eq!(got.torn_tail, None);
}

#[test]
fn compact_replaces_snapshot_and_empties_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    // Compacting before any load is fine.
    s.compact(b"snap 1").unwrap();
    s.append(b"a").unwrap();
    s.append(b"b").unwrap();
    s.sync().unwrap();
    s.compact(b"snap 2").unwrap();
    assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
    assert_eq!(
        s.bytes_on_disk(),
        (SNAPSHOT_OVERHEAD_BYTES + 6 + FILE_HEADER_BYTES) as u64
    );
    s.append(b"c").unwrap();
    s.sync().unwrap();
    drop(s);
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.snapshot.as_deref(), Some(&b"snap 2"[..]));
    assert_eq!(got.records, vec![b"c".to_vec()]);
    assert!(!dir.path().join(FileStorage::SNAPSHOT_TMP_FILE).exists());
}

#[test]
fn crash_before_snapshot_rename_keeps_old_snapshot_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.load().unwrap();
    s.compact(b"old snapshot").unwrap();
    s.append(b"r1").unwrap();
    s.append(b"r2").unwrap();
    s.sync().unwrap();
    drop(s);
    let tmp = dir.path().join(FileStorage::SNAPSHOT_TMP_FILE);
    // A complete new snapshot that never got renamed, then a torn one.
    let complete = snapshot_file(b"new snapshot", 2);
    for content in [
        complete.clone(),
        complete[..10].to_vec(),
        b"garbage".to_vec(),
    ] {
        fs::write(&tmp, &content).unwrap();
        let mut s = open(dir.path());
        assert!(!tmp.exists(), "leftover snapshot.tmp not removed");
        let got = s.load().unwrap();
        assert_eq!(got.snapshot.as_deref(), Some(&b"old snapshot"[..]));
        assert_eq!(got.records, vec![b"r1".to_vec(), b"r2".to_vec()]);
        assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
    }
}

/// A snapshot file of `generation` holding `payload`.
fn snapshot_file(payload: &[u8], generation: u64) -> Vec<u8> {
    let mut file = snapshot_prefix(payload, generation).to_vec();
    file.extend_from_slice(payload);
    file
}

/// A space compacted once (generation 1) with `r1` appended and synced,
/// then a compaction that crashed after renaming its snapshot (generation
/// 2) into place, before it reset the log.
fn crashed_in_compaction(dir: &Path) {
    let mut s = open(dir);
    s.load().unwrap();
    s.compact(b"old snapshot").unwrap();
    s.append(b"r1").unwrap();
    s.sync().unwrap();
    drop(s);
    fs::write(
        dir.join(FileStorage::SNAPSHOT_FILE),
        snapshot_file(b"new snapshot", 2),
    )
    .unwrap();
}

#[test]
fn crash_after_rename_before_log_reset_leaves_a_stale_log_that_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    crashed_in_compaction(dir.path());
    let mut s = open(dir.path());
    let got = s.load().unwrap();
    assert_eq!(got.snapshot.as_deref(), Some(&b"new snapshot"[..]));
    assert!(got.records.is_empty(), "stale records replayed");
    assert_eq!(got.torn_tail, None);
    // The stale log is gone from disk: a bare header of the new generation.
    assert_eq!(fs::read(log_path(dir.path())).unwrap(), log_header(2));
    assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
    s.append(b"r2").unwrap();
    s.sync().unwrap();
    drop(s);
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.records, vec![b"r2".to_vec()]);
}

#[test]
fn appending_or_compacting_before_load_never_writes_into_a_stale_log() {
    let dir = tempfile::tempdir().unwrap();
    crashed_in_compaction(dir.path());
    let mut s = open(dir.path());
    s.append(b"r2").unwrap();
    s.sync().unwrap();
    drop(s);
    assert_eq!(
        open(dir.path()).load().unwrap().records,
        vec![b"r2".to_vec()]
    );

    let dir = tempfile::tempdir().unwrap();
    crashed_in_compaction(dir.path());
    let mut s = open(dir.path());
    s.compact(b"newest snapshot").unwrap();
    // Past the generation of both files.
    assert_eq!(fs::read(log_path(dir.path())).unwrap(), log_header(3));
    s.append(b"r3").unwrap();
    s.sync().unwrap();
    drop(s);
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.snapshot.as_deref(), Some(&b"newest snapshot"[..]));
    assert_eq!(got.records, vec![b"r3".to_vec()]);
}

#[test]
fn each_compaction_starts_the_next_generation() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.load().unwrap();
    for generation in 1..=3 {
        s.append(b"r").unwrap();
        s.compact(b"snap").unwrap();
        assert_eq!(
            fs::read(dir.path().join(FileStorage::SNAPSHOT_FILE)).unwrap(),
            snapshot_file(b"snap", generation)
        );
        assert_eq!(
            fs::read(log_path(dir.path())).unwrap(),
            log_header(generation)
        );
    }
}

#[test]
fn a_log_newer_than_its_snapshot_is_corrupt_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_header(5).to_vec();
    log.extend_from_slice(&record_header(b"r"));
    log.extend_from_slice(b"r");
    fs::write(log_path(dir.path()), &log).unwrap();
    assert!(matches!(
        open(dir.path()).load(),
        Err(StorageError::Corrupt { offset: 0, .. })
    ));
    assert_eq!(fs::read(log_path(dir.path())).unwrap(), log);
}

#[test]
fn version_1_files_still_load_and_take_appends() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = |magic: [u8; 4]| {
        let mut h = magic.to_vec();
        h.extend_from_slice(&1u32.to_le_bytes());
        h
    };
    let mut snapshot = v1(crate::SNAPSHOT_MAGIC);
    snapshot.extend_from_slice(&record_header(b"v1 snapshot"));
    snapshot.extend_from_slice(b"v1 snapshot");
    let mut log = v1(crate::LOG_MAGIC);
    log.extend_from_slice(&record_header(b"v1 record"));
    log.extend_from_slice(b"v1 record");
    fs::write(dir.path().join(FileStorage::SNAPSHOT_FILE), &snapshot).unwrap();
    fs::write(log_path(dir.path()), &log).unwrap();
    let mut s = open(dir.path());
    let got = s.load().unwrap();
    assert_eq!(got.snapshot.as_deref(), Some(&b"v1 snapshot"[..]));
    assert_eq!(got.records, vec![b"v1 record".to_vec()]);
    assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
    s.append(b"new record").unwrap();
    s.sync().unwrap();
    drop(s);
    let mut s = open(dir.path());
    let got = s.load().unwrap();
    assert_eq!(
        got.records,
        vec![b"v1 record".to_vec(), b"new record".to_vec()]
    );
    // The log kept its version-1 header; compaction writes version 2.
    let on_disk = fs::read(log_path(dir.path())).unwrap();
    assert_eq!(on_disk[..V1_FILE_HEADER_BYTES], log[..V1_FILE_HEADER_BYTES]);
    s.compact(b"v2 snapshot").unwrap();
    assert_eq!(fs::read(log_path(dir.path())).unwrap(), log_header(1));
    let snapshot = fs::read(dir.path().join(FileStorage::SNAPSHOT_FILE)).unwrap();
    assert_eq!(snapshot[4..8], FORMAT_VERSION.to_le_bytes());
}

#[test]
fn corrupt_snapshot_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.compact(b"a perfectly good snapshot").unwrap();
    s.append(b"r").unwrap();
    s.sync().unwrap();
    drop(s);
    let path = dir.path().join(FileStorage::SNAPSHOT_FILE);
    let good = fs::read(&path).unwrap();
    let log = fs::read(log_path(dir.path())).unwrap();
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let mut bad_magic = good.clone();
    bad_magic[..4].copy_from_slice(b"XXXX");
    let mut longer = good.clone();
    longer.push(0);
    let cases: Vec<Vec<u8>> = vec![
        flipped,
        good[..good.len() - 1].to_vec(),
        good[..5].to_vec(),
        Vec::new(),
        bad_magic,
        longer,
    ];
    for bad in cases {
        fs::write(&path, &bad).unwrap();
        match open(dir.path()).load() {
            Err(StorageError::Corrupt { file, .. }) => {
                assert!(file.ends_with(FileStorage::SNAPSHOT_FILE), "{file}");
            }
            other => panic!("expected Corrupt for {bad:?}, got {other:?}"),
        }
        assert_eq!(fs::read(&path).unwrap(), bad);
        assert_eq!(fs::read(log_path(dir.path())).unwrap(), log);
    }
}

#[test]
fn record_too_large_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path()).with_max_record_bytes(16);
    s.load().unwrap();
    s.append(b"ok").unwrap();
    let before = s.bytes_on_disk();
    match s.append(&[7; 17]) {
        Err(StorageError::RecordTooLarge { len: 17, max: 16 }) => {}
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert_eq!(s.bytes_on_disk(), before);
    s.append(&[7; 16]).unwrap();
    s.sync().unwrap();
    drop(s);
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.records, vec![b"ok".to_vec(), vec![7; 16]]);
    // The limit can be lowered, never raised.
    let s = open(dir.path()).with_max_record_bytes(usize::MAX);
    assert_eq!(s.max_record_bytes, MAX_RECORD_BYTES);
}

#[test]
fn snapshot_too_large_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path()).with_max_snapshot_bytes(8);
    s.compact(b"small").unwrap();
    assert!(matches!(
        s.compact(b"far too large"),
        Err(StorageError::SnapshotTooLarge { len: 13, max: 8 })
    ));
    drop(s);
    let got = open(dir.path()).load().unwrap();
    assert_eq!(got.snapshot.as_deref(), Some(&b"small"[..]));
}

#[test]
fn second_open_of_a_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    assert!(matches!(
        FileStorage::open(dir.path()),
        Err(StorageError::Locked { .. })
    ));
    drop(a);
    open(dir.path());
}

#[test]
fn bytes_on_disk_tracks_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.load().unwrap();
    assert_eq!(s.bytes_on_disk(), FILE_HEADER_BYTES as u64);
    for r in records(20) {
        let before = s.bytes_on_disk();
        s.append(&r).unwrap();
        assert_eq!(s.bytes_on_disk(), before + framed_len(&r));
    }
    s.sync().unwrap();
    assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
    s.compact(&[1; 1000]).unwrap();
    assert_eq!(s.bytes_on_disk(), files_len(dir.path()));
    drop(s);
    // Right after open, before load, too.
    assert_eq!(open(dir.path()).bytes_on_disk(), files_len(dir.path()));
}

#[test]
fn a_failed_detached_fsync_poisons_the_storage() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path());
    storage.load().unwrap();
    storage.append(b"one").unwrap();
    let job = storage.start_sync().unwrap();
    assert!(job.is_some(), "files fsync off the caller's thread");
    let failed = Err(StorageError::Io {
        op: "fsync",
        file: "log".into(),
        source: io::Error::other("EIO"),
    });
    assert!(storage.finish_sync(failed).is_err());
    assert!(matches!(
        storage.append(b"two"),
        Err(StorageError::Poisoned { .. })
    ));
    // a reload trusts only the disk again
    let recovered = storage.load().unwrap();
    assert_eq!(recovered.records, vec![b"one".to_vec()]);
    storage.append(b"two").unwrap();
}
