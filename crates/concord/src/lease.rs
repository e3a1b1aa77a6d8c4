//! [`HeldLock`]: a lease on a named resource held by this node, with its
//! fencing token, and the informational mirror of holders in a space's
//! [`LOCK_HOLDERS`] channel.
//!
//! This module owns taking (waiting while others hold it, then until the
//! previous holder's writes have arrived: see `handoff.rs`), renewing and
//! releasing a lease through any [`LeaseBackend`] (leaving how far this
//! holder's writes went for the next one), and keeping the mirror.
//! It must never let safety depend on the mirror: the mirror is written
//! after the lease is granted and cleared before it is released, failures
//! to write it are logged and ignored, and it can lag or lose entries (a
//! holder that crashes leaves its entry behind). Exclusion comes from the
//! lease service and the fencing token alone.

use std::sync::Arc;
use std::time::Duration;

use concord_lease::{BackendError, FencingToken, Lease, LeaseBackend, Millis, Permits, Resource};
use concord_net::Durability;
use concord_state::Replica;
use serde::{Deserialize, Serialize};

use crate::{Error, Space, handoff};

/// The `Set` channel mirroring current lock holders, one [`LockHolder`]
/// per held lease (informational only).
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # let node = concord::Node::builder()
/// #     .data_dir(dir.path())
/// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
/// #     .build()
/// #     .await?;
/// # let space = node.space("team").await?;
/// use concord::{LOCK_HOLDERS, LockHolder};
/// use std::time::Duration;
///
/// let lock = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
/// let holders = space.set::<LockHolder>(LOCK_HOLDERS)?.members().await?;
/// assert_eq!(holders[0].resource, "prod-db");
/// lock.release().await?;
/// assert!(space.set::<LockHolder>(LOCK_HOLDERS)?.members().await?.is_empty());
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub const LOCK_HOLDERS: &str = "coordination/lock_holders";

/// How long one acquire attempt waits before [`HeldLock`] asks again;
/// waiting as a whole has no bound.
const BUSY_WAIT: Millis = Millis(10_000);

/// One entry of [`LOCK_HOLDERS`].
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # let node = concord::Node::builder()
/// #     .data_dir(dir.path())
/// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
/// #     .build()
/// #     .await?;
/// # let space = node.space("team").await?;
/// use concord::{LOCK_HOLDERS, LockHolder};
/// use std::time::Duration;
///
/// let lock = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
/// let expected = LockHolder {
///     resource: "prod-db".into(),
///     token: lock.token().get(),
///     holder: node.peer_id().to_string(),
/// };
/// assert_eq!(space.set::<LockHolder>(LOCK_HOLDERS)?.members().await?, [expected]);
/// lock.release().await?;
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The resource.
    pub resource: String,
    /// The fencing token of the holder's lease.
    pub token: u64,
    /// Who holds it (a peer id, or whatever name the taker gave).
    pub holder: String,
}

/// A lease this node holds. Renew it before it expires; release it when
/// done (dropping it without releasing lets the lease run out at its ttl).
///
/// ```
/// # async fn example() -> anyhow::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # let node = concord::Node::builder()
/// #     .data_dir(dir.path())
/// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
/// #     .build()
/// #     .await?;
/// # let space = node.space("team").await?;
/// use std::time::Duration;
///
/// let mut lock = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
/// // ... act on the resource, passing `lock.token()` along ...
/// lock.renew().await?; // before the ttl runs out, if the work takes longer
/// lock.release().await?;
/// # node.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub struct HeldLock {
    backend: Arc<dyn LeaseBackend>,
    space: Space,
    lease: Lease,
    ttl: Millis,
    entry: LockHolder,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLock")
            .field("lease", &self.lease)
            .field("holder", &self.entry.holder)
            .finish_non_exhaustive()
    }
}

/// `d` in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> Millis {
    Millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Acquires one of `permits` permits of `resource` for `ttl`, waiting as
/// long as others hold them all.
pub(crate) async fn wait_for_permit(
    backend: &dyn LeaseBackend,
    resource: &Resource,
    permits: Permits,
    ttl: Millis,
) -> Result<Lease, Error> {
    loop {
        match backend
            .acquire_permit(resource.clone(), permits, ttl, BUSY_WAIT)
            .await
        {
            Ok(lease) => return Ok(lease),
            Err(BackendError::Busy) => {}
            Err(e) => return Err(lease_error(resource, e)),
        }
    }
}

/// Adds `entry` to the space's [`LOCK_HOLDERS`] (or removes it), without
/// waiting for it to reach the disk: the mirror is informational, and a
/// lock's cost should be the lease's. Failures are logged.
/// Adds `entry` to (or removes it from) the lock mirror; a failure is
/// logged, the mirror being informative only.
fn mirror(r: &mut Replica, entry: &LockHolder, add: bool) {
    let now = concord_net::wall_clock();
    let written = if add {
        r.set_add(now, LOCK_HOLDERS, entry).map(drop)
    } else {
        r.set_remove(now, LOCK_HOLDERS, entry).map(drop)
    };
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not update the lock mirror");
    }
}

fn lease_error(resource: &Resource, source: BackendError) -> Error {
    Error::Lease {
        resource: resource.to_string(),
        source,
    }
}

impl HeldLock {
    /// Takes `resource` for `ttl` from `backend`, waiting as long as others
    /// hold it, then until this node has the writes the previous holder
    /// made in `space` before it released (for up to half the lease's
    /// validity), and mirrors `holder` into `space`'s [`LOCK_HOLDERS`].
    ///
    /// Dropping the returned future while it waits is allowed; a lease
    /// granted at that very moment is then held by nobody and simply ends
    /// at its ttl.
    ///
    /// # Errors
    /// An invalid resource name, a ttl above the service's maximum, a
    /// backend failure other than the resource being busy (no quorum
    /// reachable, a restarted lease peer still in its quiet period), or
    /// [`Error::Handoff`] if the previous holder's writes did not arrive in
    /// time (the lock is given back).
    ///
    /// [`crate::Node::lock`] is this with the space's lease service
    /// ([`crate::Node::space_lease`]) and the node's peer id; call it
    /// directly to use another backend or holder name:
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use concord::{HeldLock, LOCK_HOLDERS, LockHolder};
    /// use std::time::Duration;
    ///
    /// let backend = node.space_lease(&space).await?;
    /// let ttl = Duration::from_secs(10);
    /// let lock = HeldLock::acquire(backend, &space, "prod-db", ttl, "migrator").await?;
    /// let holders = space.set::<LockHolder>(LOCK_HOLDERS)?.members().await?;
    /// assert_eq!(holders[0].holder, "migrator");
    /// lock.release().await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn acquire(
        backend: Arc<dyn LeaseBackend>,
        space: &Space,
        resource: &str,
        ttl: Duration,
        holder: &str,
    ) -> Result<HeldLock, Error> {
        HeldLock::acquire_permit(backend, space, resource, 1, ttl, holder).await
    }

    /// Like [`HeldLock::acquire`], for one of `permits` permits of
    /// `resource` (a counting semaphore: at most `permits` holders at
    /// once, on every node of the space).
    ///
    /// # Errors
    /// As [`HeldLock::acquire`]; `permits` must be 1 to
    /// [`concord_lease::MAX_PERMITS`].
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use concord::HeldLock;
    /// use std::time::Duration;
    ///
    /// let leases = node.space_lease(&space).await?;
    /// let ttl = Duration::from_secs(10);
    /// let one = HeldLock::acquire_permit(leases.clone(), &space, "gpu", 2, ttl, "a").await?;
    /// let two = HeldLock::acquire_permit(leases, &space, "gpu", 2, ttl, "b").await?;
    /// assert_ne!(one.token(), two.token());
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn acquire_permit(
        backend: Arc<dyn LeaseBackend>,
        space: &Space,
        resource: &str,
        permits: u32,
        ttl: Duration,
        holder: &str,
    ) -> Result<HeldLock, Error> {
        let resource = Resource::new(resource)?;
        let permits = Permits::new(permits)?;
        let ttl = millis(ttl);
        let lease = wait_for_permit(backend.as_ref(), &resource, permits, ttl).await?;
        HeldLock::taken(backend, space, lease, ttl, holder).await
    }

    /// Like [`HeldLock::acquire`], but one attempt that does not wait:
    /// `None` if others hold the resource.
    ///
    /// # Errors
    /// As [`HeldLock::acquire`].
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use concord::HeldLock;
    /// use std::time::Duration;
    ///
    /// let leases = node.space_lease(&space).await?;
    /// let ttl = Duration::from_secs(10);
    /// let first = HeldLock::try_acquire(leases.clone(), &space, "db", ttl, "a").await?;
    /// let second = HeldLock::try_acquire(leases, &space, "db", ttl, "b").await?;
    /// assert!(first.is_some() && second.is_none());
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn try_acquire(
        backend: Arc<dyn LeaseBackend>,
        space: &Space,
        resource: &str,
        ttl: Duration,
        holder: &str,
    ) -> Result<Option<HeldLock>, Error> {
        let resource = Resource::new(resource)?;
        let ttl = millis(ttl);
        match backend.acquire(resource.clone(), ttl, Millis(0)).await {
            Ok(lease) => Ok(Some(
                HeldLock::taken(backend, space, lease, ttl, holder).await?,
            )),
            Err(BackendError::Busy) => Ok(None),
            Err(e) => Err(lease_error(&resource, e)),
        }
    }

    /// A granted lease becomes a held lock: wait for the previous holder's
    /// writes, then mirror the holder.
    async fn taken(
        backend: Arc<dyn LeaseBackend>,
        space: &Space,
        lease: Lease,
        ttl: Millis,
        holder: &str,
    ) -> Result<HeldLock, Error> {
        let resource = lease.resource.clone();
        let entry = LockHolder {
            resource: resource.to_string(),
            token: lease.token.get(),
            holder: holder.to_owned(),
        };
        let left = lease.expires.saturating_sub(backend.now());
        let wait = Duration::from_millis(left.0 / 2);
        // Mirrored in the same step as the check that the last holder's
        // writes are in (not waited for on disk: informative only).
        let mirrored = entry.clone();
        let handoff = lease.handoff.as_deref();
        let add = move |r: &mut Replica| mirror(r, &mirrored, true);
        if let Err(e) = handoff::catch_up(space, resource.as_str(), handoff, wait, add).await {
            // No handoff of ours: the previous holder's stays in place.
            if let Err(back) = backend.release(lease).await {
                tracing::warn!(error = %back, %resource, "could not give back the lock");
            }
            return Err(e);
        }
        Ok(HeldLock {
            backend,
            space: space.clone(),
            lease,
            ttl,
            entry,
        })
    }

    /// The fencing token: pass it to whatever acts under the lock.
    ///
    /// Each grant of a resource has a higher token than the last, so the
    /// external system can refuse a stale holder.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use std::time::Duration;
    ///
    /// let first = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
    /// let old = first.token();
    /// first.release().await?;
    /// let second = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
    /// assert!(second.token() > old);
    /// second.release().await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn token(&self) -> FencingToken {
        self.lease.token
    }

    /// The lease as the backend granted (or last renewed) it.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use std::time::Duration;
    ///
    /// let lock = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
    /// assert_eq!(lock.lease().token, lock.token());
    /// assert!(lock.lease().expires > node.lease_backend().now());
    /// lock.release().await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The ttl it was taken with; renewals extend it by as much.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use std::time::Duration;
    ///
    /// let lock = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
    /// assert_eq!(lock.ttl(), Duration::from_secs(10));
    /// lock.release().await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl.0)
    }

    /// How long the lease is still valid, on this node's clock: zero once
    /// it ended. Less than the ttl right after taking or renewing it, by
    /// the time the lease service took to answer and the drift allowance.
    /// Renew well before it runs out, for example when half of it is gone.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use std::time::Duration;
    ///
    /// let mut lock = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
    /// assert!(lock.valid_for() > Duration::ZERO);
    /// assert!(lock.valid_for() <= lock.ttl());
    /// tokio::time::sleep(lock.valid_for() / 2).await; // ... work ...
    /// lock.renew().await?;
    /// lock.release().await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub fn valid_for(&self) -> Duration {
        let left = self.lease.expires.saturating_sub(self.backend.now());
        Duration::from_millis(left.0)
    }

    /// Extends the lease by its ttl from now, keeping the token.
    ///
    /// # Errors
    /// The lease already ended or the lease service is unreachable: the
    /// lock must be considered lost.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use std::time::Duration;
    ///
    /// let mut lock = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
    /// let token = lock.token();
    /// lock.renew().await?;
    /// assert_eq!(lock.token(), token);
    /// lock.release().await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn renew(&mut self) -> Result<(), Error> {
        self.lease = self
            .backend
            .renew(&self.lease, self.ttl)
            .await
            .map_err(|e| lease_error(&self.lease.resource, e))?;
        Ok(())
    }

    /// Runs `work` while keeping the lease renewed (each time half of its
    /// validity is left); returns its output. If a renewal fails, `work`
    /// is dropped at once (it must not go on believing it holds the lock)
    /// and the error is returned.
    ///
    /// # Errors
    /// A renewal failed: the lock must be considered lost.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use std::time::Duration;
    ///
    /// let mut lock = node.lock(&space, "db", Duration::from_secs(1)).await?;
    /// let token = lock.token();
    /// // Longer than the ttl: renewed meanwhile.
    /// let out = lock.hold_while(async { tokio::time::sleep(Duration::from_millis(1_500)).await; 7 }).await?;
    /// assert_eq!((out, lock.token()), (7, token));
    /// lock.release().await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn hold_while<F: std::future::Future>(
        &mut self,
        work: F,
    ) -> Result<F::Output, Error> {
        let mut work = std::pin::pin!(work);
        loop {
            let renew_in = self.valid_for() / 2;
            tokio::select! {
                out = &mut work => return Ok(out),
                () = tokio::time::sleep(renew_in) => self.renew().await?,
            }
        }
    }

    /// Clears the mirror entry, then gives the lease up, leaving how far
    /// this node's writes in the space went for the next holder, who waits
    /// until it has them.
    ///
    /// # Errors
    /// The lease service did not confirm the release (the lease then ends
    /// at its expiry anyway), or the replica did not answer (the node is
    /// stopping; the lease is released without a handoff).
    ///
    /// The resource is free again at once:
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = concord::Node::builder()
    /// #     .data_dir(dir.path())
    /// #     .listen("/ip4/127.0.0.1/tcp/0".parse()?)
    /// #     .build()
    /// #     .await?;
    /// # let space = node.space("team").await?;
    /// use std::time::Duration;
    ///
    /// let lock = node.lock(&space, "prod-db", Duration::from_secs(10)).await?;
    /// lock.release().await?;
    /// let again = node.lock(&space, "prod-db", Duration::from_secs(10));
    /// let again = tokio::time::timeout(Duration::from_secs(5), again).await??;
    /// again.release().await?;
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn release(self) -> Result<(), Error> {
        self.release_after(|_| ()).await.map(drop)
    }

    /// Runs `then` on the replica, then releases as [`HeldLock::release`]
    /// does: the handoff covers what `then` wrote, so the next holder sees
    /// it. Returns what `then` returned and when its writes are on disk
    /// (the fsync overlaps the release).
    ///
    /// # Errors
    /// The replica did not answer (`then` may not have run; the lease is
    /// released without a handoff), or as [`HeldLock::release`].
    pub(crate) async fn release_after<R: Send + 'static>(
        self,
        then: impl FnOnce(&mut Replica) -> R + Send + 'static,
    ) -> Result<(R, Durability), Error> {
        let resource = self.lease.resource.clone();
        let (entry, name) = (self.entry.clone(), self.space.name().to_owned());
        // `then`, the mirror's removal and the context in one step: the
        // context covers every write of this holder.
        let committed = self
            .space
            .commit(move |r| {
                let out = then(r);
                mirror(r, &entry, false);
                (out, handoff::context(r, &name))
            })
            .await;
        let ((out, handoff), durable) = match committed {
            Ok(committed) => committed,
            Err(e) => {
                tracing::warn!(error = %e, space = self.space.name(), "no handoff: the replica did not answer");
                if let Err(back) = self.backend.release(self.lease).await {
                    tracing::warn!(error = %back, %resource, "could not release the lock");
                }
                return Err(e);
            }
        };
        self.backend
            .release_with(self.lease, handoff)
            .await
            .map_err(|e| lease_error(&resource, e))?;
        Ok((out, durable))
    }
}
