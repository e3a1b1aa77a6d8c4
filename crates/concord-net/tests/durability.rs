//! `with_replica` answers only once the replica's storage is flushed, even
//! when the replica defers syncing to its owner (`SyncPolicy::Batched`, as
//! `concord::Node` opens spaces): a write it acknowledged survives a power
//! loss. Changes received from peers are flushed too, without any command.
//! Concurrent writers share fsyncs (group commit). The driver never waits
//! for the disk: fsyncs run on a blocking thread while it goes on.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use concord_net::{NetConfig, NetHandle, SpaceOptions, identity};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use concord_state::storage::{MemDisk, MemStorage, Recovered, Storage, StorageError, SyncJob};
use concord_state::{ActorId, Delivery, Millis, Replica, ReplicaConfig, SyncPolicy};
use futures::StreamExt;

const SPACE: &str = "team";

fn deferred() -> ReplicaConfig {
    ReplicaConfig {
        sync: SyncPolicy::Batched { max_unsynced: 64 },
        ..ReplicaConfig::default()
    }
}

fn open(disk: &MemDisk, actor: u8) -> Replica {
    open_on(MemStorage::new(disk.clone(), SPACE), actor)
}

fn open_on(storage: impl Storage + 'static, actor: u8) -> Replica {
    Replica::open(
        SPACE,
        ActorId::from(&[actor; 16][..]),
        Box::new(storage),
        deferred(),
    )
    .unwrap()
}

async fn node(disk: &MemDisk, actor: u8, bootstrap: Option<concord_net::Multiaddr>) -> NetHandle {
    let mut config = NetConfig::new(identity::Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.bootstrap = bootstrap.into_iter().collect();
    let handle = concord_net::spawn(config).unwrap();
    handle
        .open_space(open(disk, actor), SpaceOptions::default())
        .await
        .unwrap();
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_survives_a_power_loss() {
    let disk = MemDisk::new();
    let a = node(&disk, 1, None).await;
    for i in 0..20u64 {
        let receipt = a
            .with_replica(SPACE, move |r| r.put(Millis(i + 1), "observation/n", &i))
            .await
            .unwrap()
            .unwrap();
        assert!(!receipt.durable, "the replica itself defers the sync");
        assert_eq!(disk.unsynced_bytes(SPACE), 0, "answered before the fsync");
    }
    // Power loss while the driver still runs: nothing acknowledged is lost.
    disk.crash();
    let recovered = open(&disk, 1);
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
    a.with_replica(SPACE, |r| r.put(Millis(1), "observation/ci", &"green"))
        .await
        .unwrap()
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    assert!(matches!(event, Some(Delivery::Event(e)) if e.new == Some(serde_json::json!("green"))));
    // No command reaches b from here on: the driver flushes on its own.
    let mut synced = false;
    for _ in 0..200 {
        if disk_b.unsynced_bytes(SPACE) == 0 {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(synced, "b never synced the change it received");
    disk_b.crash();
    let recovered = open(&disk_b, 2);
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
    let replica = open_on(TestDisk::new(&disk, &syncs), 1);
    let mut config = NetConfig::new(identity::Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let node = concord_net::spawn(config).unwrap();
    node.open_space(replica, SpaceOptions::default())
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
    let recovered = open(&disk, 1);
    for w in 0..WRITERS {
        let value = recovered.get(format!("observation/w{w}").as_str()).unwrap();
        assert_eq!(value, Some(serde_json::json!(EACH - 1)));
    }
    node.shutdown().await.unwrap();
}

/// A simulated disk that counts its fsyncs; with a gate, each fsync (run
/// off the driver, see `Storage::start_sync`) waits until the test lets it
/// through, with the outcome the test chooses.
struct TestDisk {
    inner: MemStorage,
    syncs: Arc<AtomicUsize>,
    gate: Option<Arc<std::sync::Mutex<std::sync::mpsc::Receiver<bool>>>>,
}

impl TestDisk {
    fn new(disk: &MemDisk, syncs: &Arc<AtomicUsize>) -> Self {
        TestDisk {
            inner: MemStorage::new(disk.clone(), SPACE),
            syncs: syncs.clone(),
            gate: None,
        }
    }
}

impl Storage for TestDisk {
    fn load(&mut self) -> Result<Recovered, StorageError> {
        self.inner.load()
    }
    fn append(&mut self, record: &[u8]) -> Result<(), StorageError> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_goes_on_while_an_fsync_runs_and_answers_after_it() {
    let (open_gate, gate) = std::sync::mpsc::channel();
    let started = Arc::new(AtomicUsize::new(0));
    let storage = TestDisk {
        gate: Some(Arc::new(std::sync::Mutex::new(gate))),
        ..TestDisk::new(&MemDisk::new(), &started)
    };
    let replica = open_on(storage, 1);
    let node = concord_net::spawn(NetConfig::new(identity::Keypair::generate_ed25519())).unwrap();
    node.open_space(replica, SpaceOptions::default())
        .await
        .unwrap();
    // fsyncs since the space opened
    let base = started.load(Ordering::SeqCst);
    let started = || started.load(Ordering::SeqCst) - base;
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
    // It stays unsynced, so the driver tries again (on its next tick).
    eventually("a flush retries", || started() == 3).await;
    open_gate.send(true).unwrap();
    let mut unsynced = usize::MAX;
    for _ in 0..1000 {
        unsynced = node.with_replica(SPACE, |r| r.unsynced()).await.unwrap();
        if unsynced == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(unsynced, 0, "the retried flush covers the failed write");
    node.shutdown().await.unwrap();
}
