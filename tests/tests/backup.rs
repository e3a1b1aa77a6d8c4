//! `concord backup` and `concord restore` with real processes: a backup
//! taken while the node runs (or from its files when it does not) restores
//! into a new data directory that a new node serves, with a new identity,
//! as one more replica of the space; a backup process killed with SIGKILL
//! mid-write leaves the node and the earlier backup intact; a damaged
//! backup is refused with an error naming the damage, and leaves no
//! directory behind.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use concord_tests::{Binary, Guarded, NodeProcess, eventually, spaces};
use serde_json::{Value, json};

/// The CLI under test, built by cargo before these tests run.
const CONCORD: Binary = Binary(env!("CARGO_BIN_EXE_concord-under-test"));

const SPACE: &str = "team";

/// `concord backup`'s test hook: pause after writing this many bytes.
const PAUSE_ENV: &str = "CONCORD_TEST_BACKUP_PAUSE_AFTER_BYTES";

fn backup(node: &NodeProcess, out: &Path) -> Value {
    let out = node
        .cli("backup", &["--json", SPACE, "--out", out.to_str().unwrap()])
        .ok();
    serde_json::from_str(&out).unwrap()
}

fn restore(data: &Path, file: &Path) -> concord_tests::CliOutput {
    CONCORD.run(&[
        "restore".as_ref(),
        "--json".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        file.as_os_str(),
    ])
}

/// Names in `dir` starting with `prefix`.
fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn put_values(node: &NodeProcess) {
    node.put(SPACE, "observation/ci.status", r#""green""#);
    node.put(SPACE, "intent/plan", r#"{"steps": ["build", "ship"]}"#);
    node.put(SPACE, "coordination/owner", r#""agent-7""#);
}

fn assert_values(node: &NodeProcess) {
    assert_eq!(
        node.get(SPACE, "observation/ci.status"),
        Some(json!("green"))
    );
    assert_eq!(
        node.get(SPACE, "intent/plan"),
        Some(json!({"steps": ["build", "ship"]}))
    );
    assert_eq!(
        node.get(SPACE, "coordination/owner"),
        Some(json!("agent-7"))
    );
}

#[test]
fn backup_of_a_running_node_restores_as_a_new_replica() {
    let root = tempfile::tempdir().unwrap();
    let a = NodeProcess::start(CONCORD, &root.path().join("a"), &spaces(&[SPACE]));
    put_values(&a);
    let file = root.path().join("team.ccbk");
    let done = backup(&a, &file);
    assert_eq!(done["from"], "node", "{done}");
    assert!(done["changes"].as_u64().unwrap() >= 3, "{done}");
    // Written after the backup: not in it.
    a.put(SPACE, "observation/after", r#""later""#);

    let restored_dir = root.path().join("restored");
    let restored: Value = serde_json::from_str(&restore(&restored_dir, &file).ok()).unwrap();
    assert_eq!(restored["space"], SPACE);
    assert_eq!(restored["changes"], done["changes"]);
    assert_ne!(
        restored["peer_id"],
        a.peer_id(),
        "a restored node gets a new identity"
    );
    assert!(entries(root.path(), ".restored.restoring-").is_empty());

    // Alone first: it serves exactly what the backup holds.
    let mut b = NodeProcess::start(CONCORD, &restored_dir, &[]);
    assert_eq!(b.peer_id(), restored["peer_id"].as_str().unwrap());
    assert_values(&b);
    assert_eq!(b.get(SPACE, "observation/after"), None);
    let (a_report, b_report) = (a.inspect(SPACE), b.inspect(SPACE));
    let (a_actor, b_actor) = (
        a_report["actor"].as_str().unwrap(),
        b_report["actor"].as_str().unwrap(),
    );
    assert_ne!(a_actor, b_actor, "never the original's actor");
    assert!(
        b_report["spaces"][0]["vector_clock"].get(a_actor).is_some(),
        "{b_report}"
    );
    b.put(SPACE, "observation/from.restored", r#""hello""#);
    assert_eq!(b.terminate().code(), Some(0));

    // Then with the original as its peer: both ways, as any replica.
    let b = NodeProcess::start(CONCORD, &restored_dir, &["--peer".into(), a.addr().into()]);
    eventually("the restored node gets the later write", || {
        b.get(SPACE, "observation/after") == Some(json!("later"))
    });
    eventually("the original gets the restored node's write", || {
        a.get(SPACE, "observation/from.restored") == Some(json!("hello"))
    });
    assert_values(&a);
}

#[test]
fn backup_without_a_node_reads_its_files() {
    let root = tempfile::tempdir().unwrap();
    let mut a = NodeProcess::start(CONCORD, &root.path().join("a"), &spaces(&[SPACE]));
    put_values(&a);
    a.kill9(); // not even a clean shutdown
    let file = root.path().join("team.ccbk");
    let done = backup(&a, &file);
    assert_eq!(done["from"], "files", "{done}");

    let restored_dir = root.path().join("restored");
    restore(&restored_dir, &file).ok();
    let b = NodeProcess::start(CONCORD, &restored_dir, &[]);
    assert_values(&b);

    let missing = a
        .cli("backup", &["nope", "--out", file.to_str().unwrap()])
        .err();
    assert!(missing.contains("no space \"nope\""), "{missing}");
}

#[test]
fn kill_9_mid_backup_leaves_the_node_and_the_earlier_backup_intact() {
    let root = tempfile::tempdir().unwrap();
    let a = NodeProcess::start(CONCORD, &root.path().join("a"), &spaces(&[SPACE]));
    put_values(&a);
    let file = root.path().join("team.ccbk");
    backup(&a, &file);
    let earlier = std::fs::read(&file).unwrap();
    a.put(SPACE, "observation/ci.status", r#""red""#);

    let mut killed = Guarded::spawn(
        CONCORD
            .command()
            .args(["backup", "--data"])
            .arg(a.dir())
            .args([SPACE, "--out"])
            .arg(&file)
            .env(PAUSE_ENV, "100")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = BufReader::new(killed.child().stderr.take().unwrap());
    let paused = stderr
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("backup paused after 100 of"));
    assert!(paused.is_some(), "the backup never paused");
    let partial = entries(root.path(), ".team.ccbk.");
    assert_eq!(partial.len(), 1, "{partial:?}");
    let partial_len = std::fs::metadata(root.path().join(&partial[0]))
        .unwrap()
        .len();
    assert_eq!(partial_len, 100, "the kill lands mid-write");
    drop(killed); // SIGKILL

    assert_eq!(
        std::fs::read(&file).unwrap(),
        earlier,
        "the earlier backup is intact"
    );
    let restored_dir = root.path().join("restored");
    restore(&restored_dir, &file).ok();
    let b = NodeProcess::start(CONCORD, &restored_dir, &[]);
    assert_eq!(b.get(SPACE, "observation/ci.status"), Some(json!("green")));

    // The node never noticed: it answers, and the next backup has the new value.
    assert_eq!(a.get(SPACE, "observation/ci.status"), Some(json!("red")));
    backup(&a, &file);
    assert_ne!(std::fs::read(&file).unwrap(), earlier);
    let again = root.path().join("again");
    restore(&again, &file).ok();
    drop(b);
    let c = NodeProcess::start(CONCORD, &again, &[]);
    assert_eq!(c.get(SPACE, "observation/ci.status"), Some(json!("red")));
}

#[test]
fn damaged_backups_are_refused_and_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let a = NodeProcess::start(CONCORD, &root.path().join("a"), &spaces(&[SPACE]));
    put_values(&a);
    let file = root.path().join("team.ccbk");
    backup(&a, &file);
    let good = std::fs::read(&file).unwrap();

    let damaged = |name: &str, bytes: &[u8]| -> PathBuf {
        let path = root.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let mut flipped = good.clone();
    let middle = good.len() / 2;
    flipped[middle] ^= 0x20;
    let mut not_a_backup = good.clone();
    not_a_backup[..4].copy_from_slice(b"PK\x03\x04");
    let cases = [
        (damaged("flipped.ccbk", &flipped), "checksum mismatch"),
        (
            damaged("cut.ccbk", &good[..good.len() - 7]),
            "backup truncated",
        ),
        (damaged("header-cut.ccbk", &good[..20]), "backup truncated"),
        (damaged("junk.ccbk", &not_a_backup), "not a concord backup"),
    ];
    let target = root.path().join("restored");
    for (path, message) in &cases {
        let err = restore(&target, path).err();
        assert!(err.contains(message), "{}: {err}", path.display());
        assert!(
            !target.exists(),
            "{}: left a data directory",
            path.display()
        );
        assert!(entries(root.path(), ".restored.").is_empty());
    }

    // An existing, non-empty directory is never restored into.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), b"mine").unwrap();
    let err = restore(&target, &file).err();
    assert!(err.contains("not an empty directory"), "{err}");
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"mine");

    // The intact file restores (into an empty directory, too).
    std::fs::remove_file(target.join("keep.txt")).unwrap();
    restore(&target, &file).ok();
    let b = NodeProcess::start(CONCORD, &target, &[]);
    assert_values(&b);
}

#[test]
fn backups_taken_during_writes_are_each_one_point_in_time() {
    let root = tempfile::tempdir().unwrap();
    let a = NodeProcess::start(CONCORD, &root.path().join("a"), &spaces(&[SPACE]));
    a.put(SPACE, "observation/n", "0");
    let base = backup(&a, &root.path().join("base.ccbk"))["changes"]
        .as_u64()
        .unwrap();
    const WRITES: u64 = 40;
    let taken = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for n in 1..=WRITES {
                a.put(SPACE, "observation/n", &n.to_string());
            }
        });
        let mut taken = Vec::new();
        while !writer.is_finished() {
            let file = root.path().join(format!("during-{}.ccbk", taken.len()));
            let changes = backup(&a, &file)["changes"].as_u64().unwrap();
            taken.push((file, changes));
        }
        taken
    });
    assert!(
        taken.len() >= 2,
        "only {} backups during the writes",
        taken.len()
    );
    // Each backup holds exactly the writes up to one point: its value is
    // the number of writes it holds (every write is one change).
    for (i, (file, changes)) in taken.iter().enumerate().step_by(taken.len() / 2) {
        let dir = root.path().join(format!("restored-{i}"));
        restore(&dir, file).ok();
        let b = NodeProcess::start(CONCORD, &dir, &[]);
        let n = b.get(SPACE, "observation/n").unwrap().as_u64().unwrap();
        assert_eq!(changes - base, n, "backup {i}");
    }
}
