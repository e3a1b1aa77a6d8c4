use super::*;
use crate::{FILE_HEADER_BYTES, RECORD_HEADER_BYTES, SNAPSHOT_OVERHEAD_BYTES};

fn rec(i: usize) -> Vec<u8> {
    format!("record number {i}").into_bytes()
}

/// Runs `f` on the raw files of `space`.
fn with_files<R>(disk: &MemDisk, space: &str, f: impl FnOnce(&mut SpaceFiles) -> R) -> R {
    f(disk.lock().spaces.get_mut(space).unwrap())
}

#[test]
fn round_trip_through_a_new_storage() {
    let disk = MemDisk::new();
    let mut s = MemStorage::new(disk.clone(), "space");
    assert_eq!(s.load().unwrap(), Recovered::default());
    let recs: Vec<_> = (0..50).map(rec).collect();
    for r in &recs {
        s.append(r).unwrap();
    }
    s.sync().unwrap();
    drop(s);
    let got = MemStorage::new(disk.clone(), "space").load().unwrap();
    assert_eq!(got.records, recs);
    assert_eq!(got.torn_tail, None);
    assert_eq!(disk.spaces(), vec!["space".to_owned()]);
}

#[test]
fn crash_loses_unsynced_records_and_keeps_synced_ones() {
    let disk = MemDisk::new();
    let mut a = MemStorage::new(disk.clone(), "a");
    let mut b = MemStorage::new(disk.clone(), "b");
    a.load().unwrap();
    b.load().unwrap();
    a.append(&rec(1)).unwrap();
    a.append(&rec(2)).unwrap();
    a.sync().unwrap();
    a.append(&rec(3)).unwrap();
    b.append(&rec(10)).unwrap();
    assert!(disk.unsynced_bytes("a") > 0);
    // Unsynced records are visible until the crash (page cache).
    assert_eq!(
        MemStorage::new(disk.clone(), "a")
            .load()
            .unwrap()
            .records
            .len(),
        3
    );
    disk.crash();
    assert_eq!(disk.unsynced_bytes("a"), 0);
    let mut a = MemStorage::new(disk.clone(), "a");
    let got = a.load().unwrap();
    assert_eq!(got.records, vec![rec(1), rec(2)]);
    assert_eq!(got.torn_tail, None);
    // The crash hit every space on the disk.
    assert!(
        MemStorage::new(disk.clone(), "b")
            .load()
            .unwrap()
            .records
            .is_empty()
    );
    // And the recovered storage works on.
    a.append(&rec(4)).unwrap();
    a.sync().unwrap();
    disk.crash();
    let got = MemStorage::new(disk, "a").load().unwrap();
    assert_eq!(got.records, vec![rec(1), rec(2), rec(4)]);
}

#[test]
fn partial_crash_leaves_a_torn_tail_that_recovery_drops() {
    let first = rec(0);
    let unsynced = [rec(1), rec(2)];
    let framed1 = RECORD_HEADER_BYTES + unsynced[0].len();
    let total = framed1 + RECORD_HEADER_BYTES + unsynced[1].len();
    for keep in 0..=total + 3 {
        let disk = MemDisk::new();
        let mut s = MemStorage::new(disk.clone(), "s");
        s.load().unwrap();
        s.append(&first).unwrap();
        s.sync().unwrap();
        let synced_len = s.bytes_on_disk();
        for r in &unsynced {
            s.append(r).unwrap();
        }
        disk.crash_with(|space, n| {
            assert_eq!(space, "s");
            assert_eq!(n, total as u64);
            keep as u64
        });
        let got = MemStorage::new(disk.clone(), "s").load().unwrap();
        let kept = keep.min(total);
        let whole = if kept >= total {
            2
        } else if kept >= framed1 {
            1
        } else {
            0
        };
        let mut want = vec![first.clone()];
        want.extend(unsynced[..whole].iter().cloned());
        assert_eq!(got.records, want, "keep {keep}");
        let whole_len = [0, framed1, total][whole];
        let expect_torn = (kept > whole_len).then_some(TornTail {
            offset: synced_len + whole_len as u64,
            dropped_bytes: (kept - whole_len) as u64,
        });
        assert_eq!(got.torn_tail, expect_torn, "keep {keep}");
        // The old storage lived through the crash: it is dead until loaded.
        assert!(matches!(s.append(b"x"), Err(StorageError::Poisoned { .. })));
        assert!(matches!(s.sync(), Err(StorageError::Poisoned { .. })));
        assert_eq!(s.load().unwrap().records, want);
        s.append(b"x").unwrap();
    }
}

#[test]
fn torn_tail_at_every_offset_of_last_record() {
    let disk = MemDisk::new();
    let mut s = MemStorage::new(disk.clone(), "s");
    s.load().unwrap();
    let recs: Vec<_> = (0..4).map(rec).collect();
    for r in &recs {
        s.append(r).unwrap();
    }
    s.sync().unwrap();
    let log = with_files(&disk, "s", |f| f.log.clone());
    let last = log.len() - RECORD_HEADER_BYTES - recs[3].len();
    for cut in last + 1..log.len() {
        with_files(&disk, "s", |f| {
            f.log = log[..cut].to_vec();
            f.synced = cut;
        });
        let mut s = MemStorage::new(disk.clone(), "s");
        let got = s.load().unwrap();
        assert_eq!(got.records, recs[..3]);
        assert_eq!(
            got.torn_tail,
            Some(TornTail {
                offset: last as u64,
                dropped_bytes: (cut - last) as u64
            })
        );
        s.append(b"after").unwrap();
        s.sync().unwrap();
        disk.crash();
        let got = MemStorage::new(disk.clone(), "s").load().unwrap();
        assert_eq!(got.records.len(), 4);
        assert_eq!(got.records[3], b"after");
    }
}

#[test]
fn corrupt_middle_record_is_an_error_and_changes_nothing() {
    let disk = MemDisk::new();
    let mut s = MemStorage::new(disk.clone(), "s");
    for i in 0..3 {
        s.append(&rec(i)).unwrap();
    }
    s.sync().unwrap();
    let second = FILE_HEADER_BYTES + RECORD_HEADER_BYTES + rec(0).len();
    let bad = with_files(&disk, "s", |f| {
        f.log[second + 4] ^= 1;
        f.log.clone()
    });
    let mut s = MemStorage::new(disk.clone(), "s");
    match s.load() {
        Err(StorageError::Corrupt { offset, file, .. }) => {
            assert_eq!(offset, second as u64);
            assert_eq!(file, "mem:s/log");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(s.append(b"x"), Err(StorageError::Corrupt { .. })));
    assert_eq!(with_files(&disk, "s", |f| f.log.clone()), bad);
}

#[test]
fn corrupt_snapshot_is_a_typed_error() {
    let disk = MemDisk::new();
    let mut s = MemStorage::new(disk.clone(), "s");
    s.compact(b"snapshot").unwrap();
    with_files(&disk, "s", |f| {
        if let Some(snap) = &mut f.snapshot {
            snap[SNAPSHOT_OVERHEAD_BYTES] ^= 1;
        }
    });
    assert!(matches!(
        MemStorage::new(disk, "s").load(),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn compaction_is_atomic_and_durable() {
    let disk = MemDisk::new();
    let mut s = MemStorage::new(disk.clone(), "s");
    s.load().unwrap();
    s.append(&rec(1)).unwrap();
    s.sync().unwrap();
    s.append(&rec(2)).unwrap();
    s.compact(b"state with 1 and 2").unwrap();
    assert_eq!(disk.unsynced_bytes("s"), 0);
    disk.crash();
    let mut s = MemStorage::new(disk.clone(), "s");
    let got = s.load().unwrap();
    assert_eq!(got.snapshot.as_deref(), Some(&b"state with 1 and 2"[..]));
    assert!(got.records.is_empty());
    assert_eq!(
        s.bytes_on_disk(),
        (SNAPSHOT_OVERHEAD_BYTES + 18 + FILE_HEADER_BYTES) as u64
    );
    assert_eq!(disk.bytes_on_disk(), s.bytes_on_disk());
}

#[test]
fn record_too_large_writes_nothing() {
    let disk = MemDisk::new();
    let mut s = MemStorage::new(disk.clone(), "s").with_max_record_bytes(4);
    s.load().unwrap();
    let before = s.bytes_on_disk();
    assert!(matches!(
        s.append(b"12345"),
        Err(StorageError::RecordTooLarge { len: 5, max: 4 })
    ));
    assert_eq!(s.bytes_on_disk(), before);
    assert!(matches!(
        s.with_max_snapshot_bytes(2).compact(b"123"),
        Err(StorageError::SnapshotTooLarge { len: 3, max: 2 })
    ));
    assert_eq!(
        MemStorage::new(disk, "s").load().unwrap(),
        Recovered::default()
    );
}

#[test]
fn crash_after_snapshot_before_log_reset_leaves_a_stale_log_that_is_not_replayed() {
    let disk = MemDisk::new();
    let mut s = MemStorage::new(disk.clone(), "s");
    s.load().unwrap();
    s.compact(b"old snapshot").unwrap();
    s.append(&rec(1)).unwrap();
    s.sync().unwrap();
    // What a compaction to generation 2 leaves when the power fails after
    // its snapshot is in place and before the log is reset.
    let mut snapshot = snapshot_prefix(b"new snapshot", 2).to_vec();
    snapshot.extend_from_slice(b"new snapshot");
    with_files(&disk, "s", |f| f.snapshot = Some(snapshot));
    disk.crash();
    for load_first in [true, false] {
        let mut s = MemStorage::new(disk.clone(), "s");
        if load_first {
            let got = s.load().unwrap();
            assert_eq!(got.snapshot.as_deref(), Some(&b"new snapshot"[..]));
            assert!(got.records.is_empty(), "stale records replayed");
            assert_eq!(with_files(&disk, "s", |f| f.log.clone()), log_header(2));
        } else {
            // An append before any load resets the stale log first.
            s.append(&rec(2)).unwrap();
            s.sync().unwrap();
        }
    }
    disk.crash();
    let got = MemStorage::new(disk.clone(), "s").load().unwrap();
    assert_eq!(got.records, vec![rec(2)]);
    // The next compaction goes past both generations.
    MemStorage::new(disk.clone(), "s")
        .compact(b"newest")
        .unwrap();
    assert_eq!(with_files(&disk, "s", |f| f.log.clone()), log_header(3));
}

#[test]
fn version_1_files_still_load() {
    let disk = MemDisk::new();
    let v1 = |magic: [u8; 4], payload: &[u8]| {
        let mut file = magic.to_vec();
        file.extend_from_slice(&1u32.to_le_bytes());
        file.extend_from_slice(&record_header(payload));
        file.extend_from_slice(payload);
        file
    };
    MemStorage::new(disk.clone(), "s").load().unwrap();
    with_files(&disk, "s", |f| {
        f.snapshot = Some(v1(crate::SNAPSHOT_MAGIC, b"v1 snapshot"));
        f.log = v1(crate::LOG_MAGIC, b"v1 record");
        f.synced = f.log.len();
    });
    let mut s = MemStorage::new(disk.clone(), "s");
    let got = s.load().unwrap();
    assert_eq!(got.snapshot.as_deref(), Some(&b"v1 snapshot"[..]));
    assert_eq!(got.records, vec![b"v1 record".to_vec()]);
    s.append(&rec(1)).unwrap();
    s.sync().unwrap();
    let got = MemStorage::new(disk.clone(), "s").load().unwrap();
    assert_eq!(got.records, vec![b"v1 record".to_vec(), rec(1)]);
    s.compact(b"v2").unwrap();
    assert_eq!(with_files(&disk, "s", |f| f.log.clone()), log_header(1));
    assert_eq!(
        s.bytes_on_disk(),
        (SNAPSHOT_OVERHEAD_BYTES + 2 + FILE_HEADER_BYTES) as u64
    );
}
