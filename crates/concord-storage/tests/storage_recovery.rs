//! Black-box recovery tests of the storage backends: random sequences of
//! append / sync / crash / compact / reopen / load, checked against a model,
//! on [`MemStorage`] (crash = [`MemDisk::crash_with`]) and on [`FileStorage`]
//! (crash = drop, then cut the log somewhere after its synced part).
//!
//! Properties: a synced record is never lost, a record that was never
//! appended never comes back, order is kept, and a torn tail is reported
//! exactly when a crash left part of a record behind.

use std::fs::{self, OpenOptions};

use concord_storage::{
    FILE_HEADER_BYTES, FileStorage, MemDisk, MemStorage, RECORD_HEADER_BYTES, Storage, TornTail,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Debug, Clone)]
enum Op {
    /// Append a new record with this many payload bytes.
    Append(usize),
    Sync,
    /// Crash, keeping this many of the unsynced log bytes; then restart,
    /// loading at once or not (the next append then recovers implicitly).
    Crash {
        keep: u64,
        load: bool,
    },
    /// Clean restart: drop the storage (no crash) and open a new one.
    Reopen {
        load: bool,
    },
    Load,
    /// Compact with a snapshot holding every record so far.
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..200).prop_map(Op::Append),
        1 => Just(Op::Append(70_000)),
        4 => Just(Op::Sync),
        3 => (prop_oneof![0u64..600, Just(u64::MAX)], any::<bool>())
            .prop_map(|(keep, load)| Op::Crash { keep, load }),
        1 => any::<bool>().prop_map(|load| Op::Reopen { load }),
        1 => Just(Op::Load),
        1 => Just(Op::Compact),
    ]
}

/// A backend under test, able to simulate a crash.
trait Backend {
    type S: Storage;
    fn open(&mut self) -> Self::S;
    /// Crashes with `storage` in use: of the log bytes after `durable_len`
    /// (all of them unsynced records), only `keep` survive.
    fn crash(&mut self, storage: Self::S, durable_len: u64, keep: u64);
}

struct Mem(MemDisk);

impl Backend for Mem {
    type S = MemStorage;
    fn open(&mut self) -> MemStorage {
        MemStorage::new(self.0.clone(), "space")
    }
    fn crash(&mut self, storage: MemStorage, _durable_len: u64, keep: u64) {
        self.0.crash_with(|_, _| keep);
        drop(storage);
    }
}

struct File(tempfile::TempDir);

impl Backend for File {
    type S = FileStorage;
    fn open(&mut self) -> FileStorage {
        FileStorage::open(self.0.path()).expect("open")
    }
    fn crash(&mut self, storage: FileStorage, durable_len: u64, keep: u64) {
        drop(storage); // writes its buffer to the file, like a page cache
        let path = self.0.path().join(FileStorage::LOG_FILE);
        let len = fs::metadata(&path).expect("stat").len();
        let target = len.min(durable_len.saturating_add(keep));
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(target))
            .expect("cut log");
    }
}

#[derive(Default, Debug)]
struct Model {
    /// Records in the snapshot, if one was written.
    snapshot: Option<Vec<Vec<u8>>>,
    /// Log records that must survive any crash.
    synced: Vec<Vec<u8>>,
    /// Log records appended since the last sync.
    unsynced: Vec<Vec<u8>>,
    /// Bytes of a torn record a crash left after `synced`.
    garbage: u64,
}

fn framed(r: &[u8]) -> u64 {
    (RECORD_HEADER_BYTES + r.len()) as u64
}

impl Model {
    /// Log bytes that survive every crash (header, synced records, torn bytes).
    fn durable_len(&self) -> u64 {
        FILE_HEADER_BYTES as u64 + self.synced.iter().map(|r| framed(r)).sum::<u64>() + self.garbage
    }

    fn crash(&mut self, keep: u64) {
        let unsynced: u64 = self.unsynced.iter().map(|r| framed(r)).sum();
        let kept = keep.min(unsynced);
        let mut used = 0;
        let mut whole = 0;
        for r in &self.unsynced {
            if used + framed(r) > kept {
                break;
            }
            used += framed(r);
            whole += 1;
        }
        self.synced.extend(self.unsynced.drain(..whole));
        self.unsynced.clear();
        self.garbage += kept - used;
    }
}

/// Snapshot payload of the test: the records, each length-prefixed.
fn encode(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

fn decode(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        out.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    out
}

/// A record that no other record of the run equals (its id leads it).
fn record(id: u64, len: usize) -> Vec<u8> {
    let mut r = id.to_le_bytes().to_vec();
    r.extend((0..len).map(|i| (id as usize * 31 + i) as u8));
    r
}

fn check_load(s: &mut impl Storage, m: &mut Model) -> Result<(), TestCaseError> {
    let got = s
        .load()
        .map_err(|e| TestCaseError::fail(format!("load: {e}")))?;
    let torn = (m.garbage > 0).then(|| TornTail {
        offset: m.durable_len() - m.garbage,
        dropped_bytes: m.garbage,
    });
    prop_assert_eq!(got.torn_tail, torn);
    prop_assert_eq!(got.snapshot.as_deref().map(decode), m.snapshot.clone());
    let want: Vec<Vec<u8>> = m.synced.iter().chain(&m.unsynced).cloned().collect();
    prop_assert_eq!(got.records, want);
    m.garbage = 0;
    Ok(())
}

fn run<B: Backend>(backend: &mut B, ops: &[Op]) -> Result<(), TestCaseError> {
    let fail =
        |what: &str, e: concord_storage::StorageError| TestCaseError::fail(format!("{what}: {e}"));
    let mut s = backend.open();
    let mut m = Model::default();
    let mut next_id = 0u64;
    for op in ops {
        match *op {
            Op::Append(len) => {
                let r = record(next_id, len);
                next_id += 1;
                s.append(&r).map_err(|e| fail("append", e))?;
                m.garbage = 0; // an append first repairs the log
                m.unsynced.push(r);
            }
            Op::Sync => {
                s.sync().map_err(|e| fail("sync", e))?;
                m.synced.append(&mut m.unsynced);
            }
            Op::Crash { keep, load } => {
                backend.crash(s, m.durable_len(), keep);
                m.crash(keep);
                s = backend.open();
                if load {
                    check_load(&mut s, &mut m)?;
                }
            }
            Op::Reopen { load } => {
                drop(s);
                s = backend.open();
                if load {
                    check_load(&mut s, &mut m)?;
                }
            }
            Op::Load => check_load(&mut s, &mut m)?,
            Op::Compact => {
                let mut state = m.snapshot.take().unwrap_or_default();
                state.append(&mut m.synced);
                state.append(&mut m.unsynced);
                s.compact(&encode(&state)).map_err(|e| fail("compact", e))?;
                m.snapshot = Some(state);
                m.garbage = 0;
            }
        }
    }
    // Finally a crash that keeps nothing unsynced: exactly the synced records.
    backend.crash(s, m.durable_len(), 0);
    m.crash(0);
    let mut s = backend.open();
    check_load(&mut s, &mut m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn mem_storage_never_loses_a_synced_record(ops in proptest::collection::vec(op(), 0..60)) {
        run(&mut Mem(MemDisk::new()), &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn file_storage_never_loses_a_synced_record(ops in proptest::collection::vec(op(), 0..40)) {
        run(&mut File(tempfile::tempdir().expect("tempdir")), &ops)?;
    }
}

/// The same scenario through `Box<dyn Storage>`, as the replica holds it.
#[test]
fn boxed_backends_behave_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = MemDisk::new();
    let backends: Vec<Box<dyn Storage>> = vec![
        Box::new(FileStorage::open(dir.path()).expect("open")),
        Box::new(MemStorage::new(disk, "s")),
    ];
    let mut loaded = Vec::new();
    for mut s in backends {
        s.load().expect("load");
        s.append(b"one").expect("append");
        s.append(b"two").expect("append");
        s.sync().expect("sync");
        s.compact(b"snap").expect("compact");
        s.append(b"three").expect("append");
        s.sync().expect("sync");
        let size = s.bytes_on_disk();
        loaded.push((s.load().expect("load"), size));
    }
    assert_eq!(loaded[0], loaded[1]);
    assert_eq!(loaded[0].0.records, vec![b"three".to_vec()]);
}
