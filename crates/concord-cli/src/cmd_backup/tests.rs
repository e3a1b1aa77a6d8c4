//! `backup` and `restore` without a node: the limits on what a node
//! announces, the storage lock, and backups whose checksum holds but whose
//! contents must still be refused. (With real processes: `tests/tests/backup.rs`.)

use super::*;

/// A real space's snapshot holding one value.
fn space_snapshot(space: &str) -> Vec<u8> {
    let mut r = Replica::recover(
        space,
        ActorId::from(&[7u8; 16][..]),
        Durable::default(),
        ReplicaConfig::default(),
    )
    .unwrap();
    r.put(concord_state::Millis(1), "observation/ci", &"green")
        .unwrap();
    r.durable_snapshot()
}

fn write_backup(dir: &Path, space: &str, snapshot: Vec<u8>) -> PathBuf {
    let path = dir.join("crafted.ccbk");
    let bytes = Backup::new(Meta::now(space, 1), snapshot).encode().unwrap();
    fs::write(&path, bytes).unwrap();
    path
}

fn backup_error(e: &anyhow::Error) -> &BackupError {
    e.downcast_ref::<BackupError>()
        .unwrap_or_else(|| panic!("not a BackupError: {e:#}"))
}

#[test]
fn a_snapshot_announced_over_the_limit_is_refused() {
    assert_eq!(snapshot_len(5).unwrap(), 5);
    assert_eq!(
        snapshot_len(MAX_SNAPSHOT_BYTES as u64).unwrap(),
        MAX_SNAPSHOT_BYTES
    );
    let err = snapshot_len(MAX_SNAPSHOT_BYTES as u64 + 1).unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::TooLarge {
                what: "snapshot",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_space_whose_storage_is_locked_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let space_dir = dir.path().join("spaces").join("team");
    let mut held = FileStorage::open(&space_dir).unwrap();
    held.compact(&space_snapshot("team")).unwrap();
    let err = from_files(&space_dir, "team").unwrap_err();
    assert!(matches!(err, BackupError::SpaceInUse { .. }), "{err}");
    drop(held);
    let snapshot = from_files(&space_dir, "team").unwrap();
    assert_eq!(check_space("team", &snapshot).unwrap(), 1);
}

#[test]
fn restore_refuses_a_space_name_that_would_leave_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_backup(dir.path(), "../evil", space_snapshot("team"));
    let target = dir.path().join("restored");
    let err = restore(&target, &file, true).unwrap_err();
    assert!(
        matches!(backup_error(&err), BackupError::SpaceName(name) if name == "../evil"),
        "{err:#}"
    );
    assert!(!target.exists());
    assert!(!dir.path().join("evil").exists());
}

#[test]
fn restore_refuses_a_checksummed_payload_that_is_not_a_space() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_backup(
        dir.path(),
        "team",
        b"valid checksum, not automerge".to_vec(),
    );
    let target = dir.path().join("restored");
    let err = restore(&target, &file, true).unwrap_err();
    assert!(
        matches!(backup_error(&err), BackupError::NotASpace(_)),
        "{err:#}"
    );
    assert!(!target.exists());
}

#[test]
fn restore_writes_a_complete_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_backup(dir.path(), "team", space_snapshot("team"));
    let target = dir.path().join("nested").join("restored");
    restore(&target, &file, true).unwrap();
    assert!(target.join("identity.key").is_file());
    let mut storage = FileStorage::open(target.join("spaces").join("team")).unwrap();
    let recovered = storage.load().unwrap();
    let durable = Durable {
        snapshot: recovered.snapshot,
        records: recovered.records,
    };
    let r = Replica::recover("team", check_actor(), durable, ReplicaConfig::default()).unwrap();
    assert_eq!(
        r.get("observation/ci").unwrap(),
        Some(serde_json::json!("green"))
    );
    // Only the data directory, no staging leftovers.
    let names: Vec<_> = fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["restored"]);
    // A second restore into it is refused.
    let err = restore(&target, &file, true).unwrap_err();
    assert!(
        matches!(backup_error(&err), BackupError::TargetNotEmpty(_)),
        "{err:#}"
    );
}
