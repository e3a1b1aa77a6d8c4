//! The etcd lease backend ([`EtcdLeaseBackend`], cargo feature `etcd`) and a
//! throwaway etcd server for tests and benchmarks ([`EtcdServer`]).
//!
//! A lease on `resource` with `N` permits is an etcd lease (granted with the
//! ttl rounded up to whole seconds) plus one key
//! `<prefix><resource>/<slot>` for some free slot in `0..N`, created with
//! that lease in a transaction that only succeeds if the key does not exist
//! (`create_revision == 0`). The fencing token is the key's create revision:
//! etcd revisions only grow, and a new key for the resource is created after
//! the old one was deleted, so tokens strictly increase per resource.
//! Renewal is a keep-alive (etcd resets the lease to its *granted* ttl; the
//! ttl passed to `renew` is not used), release revokes the lease, which
//! deletes the key. While every slot is taken, an acquisition watches the
//! resource's keys for a deletion until its `wait` is spent. A release with
//! a handoff first puts it, with no lease, under `<prefix><resource>/handoff`
//! (never a slot's name), where the next holder reads it.
//!
//! Timing follows the same argument as the quorum backend (see
//! [`concord_lease::time`]): the holder's validity starts before it asked
//! for the etcd lease and is shortened by the drift bound, so it ends before
//! etcd deletes the key, which is what lets another holder in.
//!
//! This module owns the mapping of leases onto etcd keys and revisions. It
//! must never report a lease whose key it did not create, and never keep an
//! etcd lease it failed to attach to a key (it revokes it). It does not
//! check that every user of a resource uses the same permit count.

use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use concord_lease::{
    AcquireRequest, BackendError, BoxFuture, DriftBound, FencingToken, Lease, LeaseBackend,
    LeaseHandle, Millis, Resource,
};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp, WatchFilterType,
    WatchOptions,
};

use super::{Clock, LeaseNetError, free_tcp_port};

/// The key prefix [`EtcdLeaseBackend::connect`] uses.
pub const ETCD_KEY_PREFIX: &str = "concord/lease/";

/// The gRPC status code (`NOT_FOUND`) etcd answers for an unknown lease.
const GRPC_NOT_FOUND: i32 = 5;

/// Leases on an etcd cluster.
#[derive(Clone)]
pub struct EtcdLeaseBackend {
    client: Client,
    prefix: String,
    clock: Clock,
    drift: DriftBound,
}

impl std::fmt::Debug for EtcdLeaseBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLeaseBackend")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How a claim on a resource's slots ended.
enum Claim {
    /// The key was created at this revision (and, once read, the handoff
    /// the last holder left).
    Won(i64, Option<Vec<u8>>),
    /// Every slot is taken, as of this revision.
    Full(i64),
}

fn unavailable(error: etcd_client::Error) -> BackendError {
    BackendError::Unavailable(format!("etcd: {error}"))
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> Result<i64, BackendError> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| BackendError::Other("etcd response without a header".into()))
}

impl EtcdLeaseBackend {
    /// Connects to the etcd cluster at `endpoints` (e.g.
    /// `http://127.0.0.1:2379`), keeping keys under [`ETCD_KEY_PREFIX`].
    ///
    /// # Errors
    /// [`LeaseNetError::Transport`] if no endpoint can be reached.
    pub async fn connect<E: AsRef<str>>(endpoints: &[E]) -> Result<Self, LeaseNetError> {
        Self::connect_with_prefix(endpoints, ETCD_KEY_PREFIX).await
    }

    /// Like [`EtcdLeaseBackend::connect`], with keys under `prefix`.
    ///
    /// # Errors
    /// [`LeaseNetError::Transport`] if no endpoint can be reached.
    pub async fn connect_with_prefix<E: AsRef<str>>(
        endpoints: &[E],
        prefix: impl Into<String>,
    ) -> Result<Self, LeaseNetError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| LeaseNetError::Transport(format!("etcd: {e}")))?;
        Ok(EtcdLeaseBackend {
            client,
            prefix: prefix.into(),
            clock: Clock::start(),
            drift: DriftBound::DEFAULT,
        })
    }

    /// The prefix of every key of `resource`.
    fn resource_prefix(&self, resource: &Resource) -> String {
        format!("{}{resource}/", self.prefix)
    }

    /// The key of the handoff the last holder of `resource` left.
    fn handoff_key(&self, resource: &Resource) -> String {
        format!("{}handoff", self.resource_prefix(resource))
    }

    /// Tries to create one of the resource's slot keys with `lease`.
    async fn claim(
        &self,
        client: &mut Client,
        request: &AcquireRequest,
        lease: i64,
    ) -> Result<Claim, BackendError> {
        let prefix = self.resource_prefix(&request.resource);
        let mut seen = 0;
        for slot in 0..request.permits.get() {
            let key = format!("{prefix}{slot}");
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    lease.to_string(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let response = client.txn(txn).await.map_err(unavailable)?;
            let at = revision(response.header())?;
            if response.succeeded() {
                return Ok(Claim::Won(at, None));
            }
            seen = at;
        }
        Ok(Claim::Full(seen))
    }

    /// Waits until a key of the resource is deleted after `revision`, or
    /// `wait` passes (then [`BackendError::Busy`]).
    async fn await_deletion(
        &self,
        client: &mut Client,
        request: &AcquireRequest,
        revision: i64,
        wait: Millis,
    ) -> Result<(), BackendError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1)
            .with_filters([WatchFilterType::NoPut]);
        let deleted = async {
            let mut stream = client
                .watch(self.resource_prefix(&request.resource), Some(options))
                .await
                .map_err(unavailable)?;
            loop {
                match stream.message().await.map_err(unavailable)? {
                    Some(response) if !response.events().is_empty() => return Ok(()),
                    Some(response) if response.canceled() => {
                        return Err(BackendError::Unavailable(format!(
                            "etcd cancelled a watch: {}",
                            response.cancel_reason()
                        )));
                    }
                    Some(_) => {}
                    None => return Err(BackendError::Unavailable("etcd watch ended".into())),
                }
            }
        };
        tokio::time::timeout(Duration::from_millis(wait.0), deleted)
            .await
            .unwrap_or(Err(BackendError::Busy))
    }

    async fn acquire(&self, request: AcquireRequest) -> Result<Lease, BackendError> {
        let mut client = self.client.clone();
        let deadline = self.clock.now().saturating_add(request.wait);
        let ttl_secs = i64::try_from(request.ttl.0.div_ceil(1000).max(1))
            .map_err(|_| BackendError::Other("ttl out of range".into()))?;
        loop {
            let sent = self.clock.now();
            let grant = client
                .lease_grant(ttl_secs, None)
                .await
                .map_err(unavailable)?;
            let claim = match self.claim(&mut client, &request, grant.id()).await {
                Ok(Claim::Won(created, _)) => {
                    let key = self.handoff_key(&request.resource);
                    match client.get(key, None).await {
                        Ok(found) => {
                            Ok((created, found.kvs().first().map(|kv| kv.value().to_vec())))
                        }
                        Err(e) => Err(unavailable(e)),
                    }
                    .map(|(created, handoff)| Claim::Won(created, handoff))
                }
                other => other,
            };
            match claim {
                Ok(Claim::Won(created, handoff)) => {
                    let granted =
                        Millis(u64::try_from(grant.ttl()).unwrap_or(0).saturating_mul(1000));
                    return Ok(Lease {
                        resource: request.resource,
                        token: FencingToken::new(u64::try_from(created).unwrap_or(0)),
                        expires: sent.saturating_add(self.drift.local_validity(granted)),
                        permits: request.permits,
                        handle: LeaseHandle(u64::try_from(grant.id()).unwrap_or(0)),
                        handoff,
                    });
                }
                Ok(Claim::Full(seen)) => {
                    self.revoke(&mut client, grant.id()).await?;
                    let left = deadline.saturating_sub(self.clock.now());
                    if left == Millis::ZERO {
                        return Err(BackendError::Busy);
                    }
                    self.await_deletion(&mut client, &request, seen, left)
                        .await?;
                }
                Err(e) => {
                    // Best effort: the grant expires by itself otherwise.
                    let _ = self.revoke(&mut client, grant.id()).await;
                    return Err(e);
                }
            }
        }
    }

    async fn revoke(&self, client: &mut Client, lease: i64) -> Result<(), BackendError> {
        match client.lease_revoke(lease).await {
            Ok(_) => Ok(()),
            Err(etcd_client::Error::GRpcStatus(status))
                if i32::from(status.code()) == GRPC_NOT_FOUND =>
            {
                Err(BackendError::Expired)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn keep_alive(&self, lease: &Lease) -> Result<Lease, BackendError> {
        let mut client = self.client.clone();
        let id = i64::try_from(lease.handle.0).map_err(|_| BackendError::Expired)?;
        let sent = self.clock.now();
        let (mut keeper, mut stream) = client.lease_keep_alive(id).await.map_err(unavailable)?;
        keeper.keep_alive().await.map_err(unavailable)?;
        let response = stream
            .message()
            .await
            .map_err(unavailable)?
            .ok_or_else(|| BackendError::Unavailable("etcd keep-alive stream ended".into()))?;
        let ttl = u64::try_from(response.ttl()).unwrap_or(0);
        if ttl == 0 {
            return Err(BackendError::Expired);
        }
        let renewed =
            sent.saturating_add(self.drift.local_validity(Millis(ttl.saturating_mul(1000))));
        Ok(Lease {
            expires: lease.expires.max(renewed),
            handoff: None,
            ..lease.clone()
        })
    }
}

impl LeaseBackend for EtcdLeaseBackend {
    fn now(&self) -> Millis {
        self.clock.now()
    }

    fn acquire_with(&self, request: AcquireRequest) -> BoxFuture<'_, Result<Lease, BackendError>> {
        Box::pin(self.acquire(request))
    }

    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        _ttl: Millis,
    ) -> BoxFuture<'a, Result<Lease, BackendError>> {
        Box::pin(self.keep_alive(lease))
    }

    fn release_with(
        &self,
        lease: Lease,
        handoff: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let id = i64::try_from(lease.handle.0).map_err(|_| BackendError::Expired)?;
            let mut client = self.client.clone();
            concord_lease::check_handoff(handoff.as_deref())?;
            if let Some(context) = handoff {
                client
                    .put(self.handoff_key(&lease.resource), context, None)
                    .await
                    .map_err(unavailable)?;
            }
            self.revoke(&mut client, id).await
        })
    }
}

/// A single-member etcd on 127.0.0.1 with a fresh data dir, for tests and
/// benchmarks: started from `$ETCD_BIN` or `etcd` on the `PATH`, on free
/// ports, and killed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd and waits (up to 20 s) until it answers.
    ///
    /// # Errors
    /// If the `etcd` binary is missing (the message says how to install it),
    /// or etcd does not come up (the message carries the end of its log).
    pub async fn start() -> io::Result<EtcdServer> {
        let binary = std::env::var_os("ETCD_BIN").unwrap_or_else(|| "etcd".into());
        let dir = tempfile::tempdir()?;
        let client_url = format!("http://127.0.0.1:{}", free_tcp_port()?);
        let peer_url = format!("http://127.0.0.1:{}", free_tcp_port()?);
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(&binary)
            .arg("--name=concord")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=concord={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot run etcd ({}): {e}; install it (Debian: `apt-get install \
                         etcd-server`) or point ETCD_BIN at the binary",
                        binary.to_string_lossy()
                    ),
                )
            })?;
        let mut server = EtcdServer {
            child,
            endpoint: client_url,
            dir,
        };
        server.wait_until_ready().await?;
        Ok(server)
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn wait_until_ready(&mut self) -> io::Result<()> {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(self.failed(&format!("etcd exited with {status}")));
            }
            let options = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
            if let Ok(mut client) = Client::connect([&self.endpoint], Some(options)).await
                && client.status().await.is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > give_up {
                return Err(self.failed("etcd did not answer within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn failed(&self, what: &str) -> io::Error {
        io::Error::other(format!("{what}; log:\n{}", log_tail(self.dir.path())))
    }
}

/// The last lines of the etcd log in `dir`.
fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
