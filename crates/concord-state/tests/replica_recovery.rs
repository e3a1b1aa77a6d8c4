//! A durable replica survives restarts: acknowledged writes come back, a torn
//! log tail is dropped and reported, corrupt storage is a typed error.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use concord_state::storage::FileStorage;
use concord_state::{ActorId, Millis, Replica, ReplicaConfig, StateError, SyncPolicy};
use serde_json::json;

fn open(dir: &Path, config: ReplicaConfig) -> Result<Replica, StateError> {
    Replica::open(
        "space",
        ActorId::from(&[1u8; 16][..]),
        Box::new(FileStorage::open(dir)?),
        config,
    )
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
    let mut r = open(dir.path(), ReplicaConfig::default()).unwrap();
    for i in 0..10 {
        assert!(r.put(Millis(i), "observation/x", &i).unwrap().durable);
        r.append(Millis(i), "intent/log", &i).unwrap();
    }
    let heads = r.heads();
    drop(r);
    let mut r = open(dir.path(), ReplicaConfig::default()).unwrap();
    assert_eq!(r.heads(), heads);
    assert_eq!(r.get("observation/x").unwrap(), Some(json!(9)));
    assert_eq!(r.topic_entries("intent/log").unwrap().len(), 10);
    assert!(r.recovered_torn_tail().is_none());
    let report = r.compact(Millis(100)).unwrap();
    assert!(report.bytes_after > 0);
    r.put(Millis(101), "observation/x", &"after").unwrap();
    drop(r);
    let r = open(dir.path(), ReplicaConfig::default()).unwrap();
    assert_eq!(r.get("observation/x").unwrap(), Some(json!("after")));
    assert_eq!(r.topic_entries("intent/log").unwrap().len(), 10);
}

#[test]
fn batched_policy_acknowledges_only_after_sync() {
    let dir = tempfile::tempdir().unwrap();
    let config = ReplicaConfig {
        sync: SyncPolicy::Batched { max_unsynced: 3 },
        ..ReplicaConfig::default()
    };
    let mut r = open(dir.path(), config).unwrap();
    let durable: Vec<bool> = (0..4)
        .map(|i| r.put(Millis(i), "observation/x", &i).unwrap().durable)
        .collect();
    assert_eq!(durable, [false, false, true, false]);
    assert_eq!(r.durable_seq(), 3);
    assert_eq!(r.unsynced(), 1);
    assert_eq!(r.flush().unwrap(), 4);
    assert_eq!(r.unsynced(), 0);
}

#[test]
fn torn_tail_at_every_offset_of_the_last_write_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = open(dir.path(), ReplicaConfig::default()).unwrap();
    for i in 0..5 {
        r.put(Millis(i), "observation/x", &i).unwrap();
    }
    let log = dir.path().join("log");
    let before_last = fs::metadata(&log).unwrap().len();
    r.put(Millis(9), "observation/x", &"last").unwrap();
    drop(r);
    let full = fs::read(&log).unwrap();
    for cut in before_last + 1..full.len() as u64 {
        let case = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), case.path());
        fs::write(case.path().join("log"), &full[..cut as usize]).unwrap();
        let mut r = open(case.path(), ReplicaConfig::default()).unwrap();
        assert_eq!(
            r.get("observation/x").unwrap(),
            Some(json!(4)),
            "cut at {cut}"
        );
        let torn = r.recovered_torn_tail().expect("torn tail reported");
        assert_eq!(torn.offset, before_last);
        // The replica keeps working and the next restart is clean.
        r.put(Millis(10), "observation/x", &"again").unwrap();
        drop(r);
        let r = open(case.path(), ReplicaConfig::default()).unwrap();
        assert_eq!(r.get("observation/x").unwrap(), Some(json!("again")));
        assert!(r.recovered_torn_tail().is_none());
    }
}

#[test]
fn corrupt_snapshot_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = open(dir.path(), ReplicaConfig::default()).unwrap();
    r.put(Millis(1), "observation/x", &1).unwrap();
    r.compact(Millis(2)).unwrap();
    drop(r);
    let snap = dir.path().join("snapshot");
    let mut bytes = fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&snap, &bytes).unwrap();
    assert!(matches!(
        open(dir.path(), ReplicaConfig::default()),
        Err(StateError::Storage(_))
    ));
}
