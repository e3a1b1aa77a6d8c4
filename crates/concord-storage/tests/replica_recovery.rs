//! A durable replica on [`FileStorage`] survives restarts: acknowledged
//! writes come back, a compaction's snapshot replaces the log, a torn log
//! tail is dropped and reported, corrupt storage is a typed error. The
//! replica only hands out what to persist; this test is its owner.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use concord_state::{ActorId, Durable, Millis, Persist, Replica, ReplicaConfig};
use concord_storage::{
    FILE_HEADER_BYTES, FileStorage, Recovered, SNAPSHOT_OVERHEAD_BYTES, Storage, StorageError,
};
use serde_json::json;

/// A replica and its storage, as the network driver keeps them.
struct Owned {
    replica: Replica,
    storage: FileStorage,
    recovered: Recovered,
    /// The last version written to storage.
    written: u64,
}

impl Owned {
    fn open(dir: &Path) -> Result<Owned, StorageError> {
        let mut storage = FileStorage::open(dir)?;
        let recovered = storage.load()?;
        let durable = Durable {
            snapshot: recovered.snapshot.clone(),
            records: recovered.records.clone(),
        };
        let actor = ActorId::from(&[1u8; 16][..]);
        let replica = Replica::recover("space", actor, durable, ReplicaConfig::default()).unwrap();
        Ok(Owned {
            replica,
            storage,
            recovered,
            written: 0,
        })
    }

    /// Writes every op the replica hands out (not yet durable).
    fn write(&mut self) {
        while let Some(op) = self.replica.poll_persist() {
            match &op.op {
                Persist::Append(record) => self.storage.append(record).unwrap(),
                Persist::Snapshot(doc) => self.storage.compact(doc).unwrap(),
            }
            self.written = op.version;
        }
    }

    /// Writes, fsyncs and confirms everything.
    fn sync(&mut self) {
        self.write();
        self.storage.sync().unwrap();
        self.replica.persisted(self.written);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn acknowledged_writes_survive_restart_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Owned::open(dir.path()).unwrap();
    for i in 0..10 {
        let receipt = s.replica.put(Millis(i), "observation/x", &i).unwrap();
        s.replica.append(Millis(i), "intent/log", &i).unwrap();
        s.sync();
        assert!(s.replica.durable_seq() >= receipt.seq);
    }
    let heads = s.replica.heads();
    drop(s);
    let mut s = Owned::open(dir.path()).unwrap();
    assert_eq!(s.replica.heads(), heads);
    assert_eq!(s.replica.get("observation/x").unwrap(), Some(json!(9)));
    assert_eq!(s.replica.topic_entries("intent/log").unwrap().len(), 10);
    assert!(s.recovered.torn_tail.is_none());
    let report = s.replica.compact(Millis(100)).unwrap();
    s.sync();
    // The snapshot and an empty log.
    let compacted = SNAPSHOT_OVERHEAD_BYTES + report.snapshot_bytes + FILE_HEADER_BYTES;
    assert_eq!(s.storage.bytes_on_disk(), compacted as u64);
    s.replica
        .put(Millis(101), "observation/x", &"after")
        .unwrap();
    s.sync();
    drop(s);
    let s = Owned::open(dir.path()).unwrap();
    assert!(s.recovered.snapshot.is_some());
    assert_eq!(
        s.recovered.records.len(),
        1,
        "the log restarted at the snapshot"
    );
    assert_eq!(
        s.replica.get("observation/x").unwrap(),
        Some(json!("after"))
    );
    assert_eq!(s.replica.topic_entries("intent/log").unwrap().len(), 10);
}

#[test]
fn a_write_is_durable_only_once_its_op_is_synced_and_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Owned::open(dir.path()).unwrap();
    s.sync();
    for i in 0..3 {
        s.replica.put(Millis(i), "observation/x", &i).unwrap();
    }
    s.write();
    s.storage.sync().unwrap();
    let synced = s.written;
    s.replica.put(Millis(3), "observation/x", &3).unwrap();
    s.write();
    assert_eq!(s.replica.durable_seq(), 0, "synced but not confirmed");
    s.replica.persisted(synced);
    assert_eq!((s.replica.durable_seq(), s.replica.unpersisted()), (3, 1));
    s.sync();
    assert_eq!((s.replica.durable_seq(), s.replica.unpersisted()), (4, 0));
}

#[test]
fn torn_tail_at_every_offset_of_the_last_write_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Owned::open(dir.path()).unwrap();
    for i in 0..5 {
        s.replica.put(Millis(i), "observation/x", &i).unwrap();
    }
    s.sync();
    let log = dir.path().join(FileStorage::LOG_FILE);
    let before_last = fs::metadata(&log).unwrap().len();
    s.replica.put(Millis(9), "observation/x", &"last").unwrap();
    s.sync();
    drop(s);
    let full = fs::read(&log).unwrap();
    for cut in before_last + 1..full.len() as u64 {
        let case = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), case.path());
        fs::write(
            case.path().join(FileStorage::LOG_FILE),
            &full[..cut as usize],
        )
        .unwrap();
        let mut s = Owned::open(case.path()).unwrap();
        assert_eq!(
            s.replica.get("observation/x").unwrap(),
            Some(json!(4)),
            "cut at {cut}"
        );
        let torn = s.recovered.torn_tail.expect("torn tail reported");
        assert_eq!(torn.offset, before_last);
        // The replica keeps working and the next restart is clean.
        s.replica
            .put(Millis(10), "observation/x", &"again")
            .unwrap();
        s.sync();
        drop(s);
        let s = Owned::open(case.path()).unwrap();
        assert_eq!(
            s.replica.get("observation/x").unwrap(),
            Some(json!("again"))
        );
        assert!(s.recovered.torn_tail.is_none());
    }
}

#[test]
fn corrupt_snapshot_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Owned::open(dir.path()).unwrap();
    s.replica.put(Millis(1), "observation/x", &1).unwrap();
    s.replica.compact(Millis(2)).unwrap();
    s.sync();
    drop(s);
    let snap = dir.path().join(FileStorage::SNAPSHOT_FILE);
    let mut bytes = fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&snap, &bytes).unwrap();
    assert!(matches!(
        Owned::open(dir.path()),
        Err(StorageError::Corrupt { .. })
    ));
}
