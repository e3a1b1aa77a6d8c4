//! `with_replica` answers only once the driver wrote what the replica handed
//! out to persist and fsynced the space's storage: a write it acknowledged
//! survives a power loss. Changes received from peers are fsynced too,
//! without any command. Concurrent writers share fsyncs (group commit). The
//! driver never waits for the disk: fsyncs run on a blocking thread while
//! it goes on. A lazy write starts no fsync of its own: it goes to disk
//! with the next one.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use concord_net::{NetConfig, NetHandle, SpaceOptions, identity};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use concord_state::{ActorId, Delivery, Durable, Millis, Persist, Replica, ReplicaConfig};
use concord_storage::{MemDisk, MemStorage, Recovered, Storage, StorageError, SyncJob};
use futures::StreamExt;

const SPACE: &str = "team";

/// A replica recovered from `storage`, and the storage, for `open_space`.
/// A fresh space's genesis change is written and synced here, so that the
/// fsyncs the tests count and gate are those of their writes.
fn open_on(mut storage: impl Storage + 'static, actor: u8) -> (Replica, Box<dyn Storage>) {
    let recovered = storage.load().unwrap();
    let durable = Durable {
        snapshot: recovered.snapshot,
        records: recovered.records,
    };
    let actor = ActorId::from(&[actor; 16][..]);
    let mut replica = Replica::recover(SPACE, actor, durable, ReplicaConfig::default()).unwrap();
    while let Some(op) = replica.poll_persist() {
        match op.op {
            Persist::Append(record) => storage.append(&record).unwrap(),
            Persist::Snapshot(doc) => storage.compact(&doc).unwrap(),
        }
        storage.sync().unwrap();
        replica.persisted(op.version);
    }
    (replica, Box::new(storage))
}

fn open(disk: &MemDisk, actor: u8) -> (Replica, Box<dyn Storage>) {
    open_on(MemStorage::new(disk.clone(), SPACE), actor)
}

/// What `disk` holds for the space, as a replica (after a restart).
fn recover(disk: &MemDisk, actor: u8) -> Replica {
    open(disk, actor).0
}

async fn node(disk: &MemDisk, actor: u8, bootstrap: Option<concord_net::Multiaddr>) -> NetHandle {
    let mut config = NetConfig::new(identity::Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.bootstrap = bootstrap.into_iter().collect();
    let handle = concord_net::spawn(config).unwrap();
    let (replica, storage) = open(disk, actor);
    handle
        .open_space(replica, storage, SpaceOptions::default())
        .await
        .unwrap();
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_survives_a_power_loss() {
    let disk = MemDisk::new();
    let a = node(&disk, 1, None).await;
    for i in 0..20u64 {
        let (receipt, durable) = a
            .with_replica(SPACE, move |r| {
                let receipt = r.put(Millis(i + 1), "observation/n", &i).unwrap();
                (receipt, r.durable_seq())
            })
            .await
            .unwrap();
        assert!(durable < receipt.seq, "the replica itself never writes");
        assert_eq!(disk.unsynced_bytes(SPACE), 0, "answered before the fsync");
        let durable = a.with_replica(SPACE, |r| r.durable_seq()).await.unwrap();
        assert!(
            durable >= receipt.seq,
            "the fsync was confirmed to the replica"
        );
    }
    // Power loss while the driver still runs: nothing acknowledged is lost.
    disk.crash();
    let recovered = recover(&disk, 1);
    assert_eq!(
        recovered.get("observation/n").unwrap(),
        Some(serde_json::json!(19))
    );
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_from_peers_are_flushed_without_a_command() {
    let (disk_a, disk_b) = (MemDisk::new(), MemDisk::new());
    let a = node(&disk_a, 1, None).await;
    let addr = loop {
        if let Some(addr) = a.listen_addrs().await.unwrap().pop() {
            break addr;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let b = node(&disk_b, 2, Some(addr)).await;
    let mut events = b.subscribe(SPACE, "observation/*", 16).await.unwrap();
    let before = disk_b.bytes_on_disk();
    a.with_replica(SPACE, |r| r.put(Millis(1), "observation/ci", &"green"))
        .await
        .unwrap()
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    assert!(matches!(event, Some(Delivery::Event(e)) if e.new == Some(serde_json::json!("green"))));
    // No command reaches b from here on: the driver writes the change (the
    // event may come first) and fsyncs it on its own.
    let mut synced = false;
    for _ in 0..200 {
        if disk_b.bytes_on_disk() > before && disk_b.unsynced_bytes(SPACE) == 0 {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(synced, "b never synced the change it received");
    disk_b.crash();
    let recovered = recover(&disk_b, 2);
    assert_eq!(
        recovered.get("observation/ci").unwrap(),
        Some(serde_json::json!("green"))
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_fsyncs_and_every_write_is_durable() {
    let disk = MemDisk::new();
    let syncs = Arc::new(AtomicUsize::new(0));
    let (replica, storage) = open_on(TestDisk::new(&disk, &syncs), 1);
    let mut config = NetConfig::new(identity::Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let node = concord_net::spawn(config).unwrap();
    node.open_space(replica, storage, SpaceOptions::default())
        .await
        .unwrap();
    let before = syncs.load(Ordering::SeqCst);
    const WRITERS: u64 = 16;
    const EACH: u64 = 20;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let node = node.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let path = format!("observation/w{w}");
                    node.with_replica(SPACE, move |r| r.put(Millis(1), path.as_str(), &i))
                        .await
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let fsyncs = syncs.load(Ordering::SeqCst) - before;
    let writes = (WRITERS * EACH) as usize;
    assert!(
        fsyncs < writes,
        "{fsyncs} fsyncs for {writes} writes: no group commit"
    );
    disk.crash();
    let recovered = recover(&disk, 1);
    for w in 0..WRITERS {
        let value = recovered.get(format!("observation/w{w}").as_str()).unwrap();
        assert_eq!(value, Some(serde_json::json!(EACH - 1)));
    }
    node.shutdown().await.unwrap();
}

/// A simulated disk that counts its fsyncs; with a gate, each fsync (run
/// off the driver, see `Storage::start_sync`) waits until the test lets it
/// through, with the outcome the test chooses. Appends fail while
/// `full` is set.
struct TestDisk {
    inner: MemStorage,
    syncs: Arc<AtomicUsize>,
    gate: Option<Arc<std::sync::Mutex<std::sync::mpsc::Receiver<bool>>>>,
    full: Arc<AtomicBool>,
}

impl TestDisk {
    fn new(disk: &MemDisk, syncs: &Arc<AtomicUsize>) -> Self {
        TestDisk {
            inner: MemStorage::new(disk.clone(), SPACE),
            syncs: syncs.clone(),
            gate: None,
            full: Arc::default(),
        }
    }
}

impl Storage for TestDisk {
    fn load(&mut self) -> Result<Recovered, StorageError> {
        self.inner.load()
    }
    fn append(&mut self, record: &[u8]) -> Result<(), StorageError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StorageError::Io {
                op: "append to",
                file: "test".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        self.inner.append(record)
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync()
    }
    fn start_sync(&mut self) -> Result<Option<SyncJob>, StorageError> {
        self.sync()?;
        let Some(gate) = self.gate.clone() else {
            return Ok(None);
        };
        Ok(Some(Box::new(move || match gate.lock().unwrap().recv() {
            Ok(true) => Ok(()),
            _ => Err(StorageError::Poisoned {
                file: "gated".into(),
            }),
        })))
    }
    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
        self.inner.compact(snapshot)
    }
    fn bytes_on_disk(&self) -> u64 {
        self.inner.bytes_on_disk()
    }
}

/// Waits (up to 10 s) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

/// A node whose space is on a gated [`TestDisk`]: each fsync waits for a
/// `true` (success) or `false` (failure) on the returned sender. The counter
/// counts the fsyncs started since the space opened.
async fn gated_node(
    config: NetConfig,
) -> (NetHandle, std::sync::mpsc::Sender<bool>, Arc<AtomicUsize>) {
    let (open_gate, gate) = std::sync::mpsc::channel();
    let synced = Arc::new(AtomicUsize::new(0));
    let storage = TestDisk {
        gate: Some(Arc::new(std::sync::Mutex::new(gate))),
        ..TestDisk::new(&MemDisk::new(), &synced)
    };
    let (replica, storage) = open_on(storage, 1);
    let node = concord_net::spawn(config).unwrap();
    node.open_space(replica, storage, SpaceOptions::default())
        .await
        .unwrap();
    synced.store(0, Ordering::SeqCst);
    (node, open_gate, synced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_goes_on_while_an_fsync_runs_and_answers_after_it() {
    let config = NetConfig::new(identity::Keypair::generate_ed25519());
    let (node, open_gate, started) = gated_node(config).await;
    let started = || started.load(Ordering::SeqCst);
    let put = |i: u64| {
        let node = node.clone();
        tokio::spawn(async move {
            node.with_replica(SPACE, move |r| r.put(Millis(i), "observation/n", &i))
                .await
        })
    };
    let first = put(1);
    eventually("the first fsync starts", || started() == 1).await;
    // The driver answers other commands while the fsync waits...
    tokio::time::timeout(Duration::from_secs(5), node.peers())
        .await
        .expect("the driver is stuck behind the fsync")
        .unwrap();
    // ...and runs new writes, which wait for a flush of their own.
    let second = put(2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!first.is_finished() && !second.is_finished());
    assert_eq!(started(), 1, "one fsync at a time");
    open_gate.send(true).unwrap();
    assert!(matches!(first.await.unwrap(), Ok(Ok(_))));
    eventually("the second fsync starts", || started() == 2).await;
    assert!(!second.is_finished());
    // A failed fsync is the writer's error, and nothing counts as durable.
    open_gate.send(false).unwrap();
    assert!(matches!(
        second.await.unwrap(),
        Err(concord_net::NetError::Flush(_))
    ));
    // It stays unsynced, so the driver tries again (after its flush delay).
    eventually("a flush retries", || started() == 3).await;
    open_gate.send(true).unwrap();
    let mut unpersisted = usize::MAX;
    for _ in 0..1000 {
        unpersisted = node.with_replica(SPACE, |r| r.unpersisted()).await.unwrap();
        if unpersisted == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(unpersisted, 0, "the retried flush covers the failed write");
    assert_eq!(
        node.with_replica(SPACE, |r| r.durable_seq()).await.unwrap(),
        2
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_replaces_the_log_and_survives_a_power_loss() {
    let disk = MemDisk::new();
    let node = node(&disk, 1, None).await;
    for i in 0..10u64 {
        node.with_replica(SPACE, move |r| r.put(Millis(i + 1), "observation/n", &i))
            .await
            .unwrap()
            .unwrap();
    }
    let log_before = node.bytes_on_disk(SPACE).await.unwrap();
    let report = node
        .with_replica(SPACE, |r| r.compact(Millis(20)))
        .await
        .unwrap()
        .unwrap();
    assert!(report.snapshot_bytes > 0);
    assert_eq!(
        disk.unsynced_bytes(SPACE),
        0,
        "a snapshot is durable at once"
    );
    assert_ne!(node.bytes_on_disk(SPACE).await.unwrap(), log_before);
    node.with_replica(SPACE, |r| r.put(Millis(21), "observation/n", &"after"))
        .await
        .unwrap()
        .unwrap();
    disk.crash();
    let recovered = MemStorage::new(disk.clone(), SPACE).load().unwrap();
    assert!(recovered.snapshot.is_some());
    assert_eq!(
        recovered.records.len(),
        1,
        "the log restarted at the snapshot"
    );
    assert_eq!(
        recover(&disk, 2).get("observation/n").unwrap(),
        Some(serde_json::json!("after"))
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_could_not_be_written_fails_writes_until_a_compaction() {
    let disk = MemDisk::new();
    let storage = TestDisk::new(&disk, &Arc::default());
    let full = storage.full.clone();
    let (replica, storage) = open_on(storage, 1);
    let node = concord_net::spawn(NetConfig::new(identity::Keypair::generate_ed25519())).unwrap();
    node.open_space(replica, storage, SpaceOptions::default())
        .await
        .unwrap();
    let put = |i: u64| node.with_replica(SPACE, move |r| r.put(Millis(i), "observation/n", &i));
    put(1).await.unwrap().unwrap();
    full.store(true, Ordering::SeqCst);
    assert!(matches!(put(2).await, Err(concord_net::NetError::Flush(_))));
    // The log now misses a record: later ones must not follow it, even once
    // the disk takes appends again.
    full.store(false, Ordering::SeqCst);
    assert!(matches!(put(3).await, Err(concord_net::NetError::Flush(_))));
    // A snapshot rewrites the whole state.
    node.with_replica(SPACE, |r| r.compact(Millis(4)))
        .await
        .unwrap()
        .unwrap();
    put(5).await.unwrap().unwrap();
    assert_eq!(
        node.with_replica(SPACE, |r| r.durable_seq()).await.unwrap(),
        4
    );
    disk.crash();
    let recovered = recover(&disk, 2);
    let writer = ActorId::from(&[1u8; 16][..]);
    assert_eq!(
        recovered.vector_clock().get(&writer),
        4,
        "every write survived"
    );
    assert_eq!(
        recovered.get("observation/n").unwrap(),
        Some(serde_json::json!(5))
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_write_starts_no_fsync_and_goes_to_disk_with_the_next() {
    let mut config = NetConfig::new(identity::Keypair::generate_ed25519());
    config.flush_delay = Duration::from_millis(600);
    let (node, open_gate, started) = gated_node(config).await;
    let started = || started.load(Ordering::SeqCst);
    let put = |i: u64| move |r: &mut Replica| r.put(Millis(i), "observation/n", &i).unwrap();
    // A lazy write is answered at once and starts no fsync...
    let (_, lazy) = node.commit_lazy(SPACE, put(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(started(), 0, "a lazy write started an fsync");
    // ...a write that is waited on does, and it covers both.
    let (_, eager) = node.commit(SPACE, put(2)).await.unwrap();
    eventually("the eager write's fsync starts", || started() == 1).await;
    open_gate.send(true).unwrap();
    eager.wait().await.unwrap();
    lazy.wait().await.unwrap();
    // Alone, a lazy write goes to disk after the flush delay.
    let written = std::time::Instant::now();
    let (_, lazy) = node.commit_lazy(SPACE, put(3)).await.unwrap();
    eventually("the delayed fsync starts", || started() == 2).await;
    assert!(written.elapsed() >= Duration::from_millis(500));
    open_gate.send(true).unwrap();
    lazy.wait().await.unwrap();
    assert_eq!(
        node.commit_lazy(SPACE, |r| r.durable_seq())
            .await
            .unwrap()
            .0,
        3
    );
    node.shutdown().await.unwrap();
}
