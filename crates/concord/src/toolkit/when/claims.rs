//! Standing claims: the leases a `when` handler holds while its events
//! come, so that an event arriving in a partition this node holds starts at
//! once, with no lease round trip on its way.
//!
//! A handler's events fall into [`CLAIM_PARTITIONS`] partitions by a hash of
//! their id, the same on every node. Partition `p` of handler `h` is the
//! lock `when.<h>.<p>`: whoever holds it runs that partition's events, one
//! node at a time, and a new holder catches up with the last one's writes
//! (its records of what it handled) before it runs anything.
//!
//! Which node should hold which partition is decided by rendezvous hashing
//! over the nodes running the handler, which announce themselves in an
//! ephemeral channel ([`presence_path`]); each node shares the partitions
//! out anew whenever the announcements change, and a node that stops its
//! handler announces that it leaves (an empty name) before it gives its
//! partitions back, so the others take them at once. A node takes one of
//! its partitions when an event comes for it (the first event after a
//! quiet spell pays one acquisition), keeps it renewed while events keep
//! coming, and gives it back after [`IDLE_TTLS`] claim ttls without one, so
//! that an idle handler holds no lease. It also gives back, between runs,
//! the partitions that are no longer its own. Views of who is there can
//! differ for a while; the lease decides, so two nodes never hold one
//! partition, and a node only ever waits for one to be given back or to
//! expire. A partition whose events wait too long (its holder cannot reach
//! the lease service, say) is taken by any node that sees them waiting.
//!
//! This module owns the partitioning, the choice of partitions and the
//! leases' upkeep. It must never give a partition back while a run of it
//! is under way, nor before this node's writes under it are on disk (the
//! next holder would wait for writes that may never come).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use concord_lease::LeaseBackend;
use concord_net::Durability;
use concord_state::ActorId;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::{Ephemeral, Error, HeldLock, Space};

/// How many partitions a handler's events fall into: the most nodes that
/// share one handler's work.
pub const CLAIM_PARTITIONS: u16 = 16;

/// How often a wanted partition that another node holds is asked for again.
const RETRY: Duration = Duration::from_millis(250);

/// A held partition with no event for this many claim ttls is given back:
/// an idle handler holds no leases, and costs the lease service nothing.
pub(crate) const IDLE_TTLS: u32 = 6;

/// What a handler's events ask of its claims.
#[derive(Debug, Default)]
pub(crate) struct Demand {
    /// Partitions with events waiting (or running).
    pub(crate) waiting: BTreeSet<u16>,
    /// Partitions whose events wait too long: wanted, whoever should hold
    /// them.
    pub(crate) stale: BTreeSet<u16>,
    /// Partitions with a run under way: kept while it runs.
    pub(crate) busy: BTreeSet<u16>,
}

/// The partition of event `id`, the same on every node.
pub(crate) fn partition_of(id: &str) -> u16 {
    let digest = Sha256::digest(id.as_bytes());
    u16::from_be_bytes([digest[0], digest[1]]) % CLAIM_PARTITIONS
}

/// The ephemeral channel where the nodes running `handler` announce
/// themselves.
pub(crate) fn presence_path(handler: &str) -> String {
    format!("coordination/when.{handler}")
}

/// Rendezvous hashing: the partitions of `handler` that `me` ranks first
/// for among `members` (`me` counted in whether listed or not).
pub(crate) fn assigned(handler: &str, me: &ActorId, members: &[ActorId]) -> BTreeSet<u16> {
    let rank = |p: u16, actor: &ActorId| {
        let mut hash = Sha256::new();
        hash.update(handler.as_bytes());
        hash.update(p.to_be_bytes());
        hash.update(actor.to_bytes());
        let digest = hash.finalize();
        u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 8 bytes"))
    };
    (0..CLAIM_PARTITIONS)
        .filter(|&p| {
            let mine = rank(p, me);
            members
                .iter()
                .filter(|m| *m != me)
                .all(|m| (rank(p, m), m) < (mine, me))
        })
        .collect()
}

/// One partition this node holds, and when to renew it.
struct Held {
    lock: HeldLock,
    renew_at: Instant,
}

impl Held {
    fn new(lock: HeldLock) -> Held {
        let renew_at = Instant::now() + lock.valid_for() / 2;
        Held { lock, renew_at }
    }
}

/// The standing claims of one handler on this node.
pub(crate) struct Claims {
    space: Space,
    handler: String,
    ttl: Duration,
    holder: String,
    me: ActorId,
    presence: Ephemeral<String>,
    backend: Option<Arc<dyn LeaseBackend>>,
    held: BTreeMap<u16, Held>,
    /// The partitions rendezvous hashing gives this node.
    assigned: BTreeSet<u16>,
    /// The partitions wanted at the last upkeep.
    wanted: BTreeSet<u16>,
    /// When each partition last had an event waiting.
    used: BTreeMap<u16, Instant>,
    /// When to announce this node again.
    announce_at: Instant,
    /// Whether to look at who else is there (and share out anew).
    members_changed: bool,
    /// When to ask again for wanted partitions held elsewhere.
    ask_at: BTreeMap<u16, Instant>,
    /// The latest write made under the claims, not yet known on disk.
    unflushed: Option<Durability>,
}

impl Claims {
    /// The claims of `handler` on this node (none held yet).
    pub(crate) async fn new(space: &Space, handler: &str, ttl: Duration) -> Result<Claims, Error> {
        let me = space.read(|r| r.actor().clone()).await?;
        let now = Instant::now();
        Ok(Claims {
            space: space.clone(),
            handler: handler.to_owned(),
            ttl,
            holder: space.holder_name(),
            presence: space.ephemeral(&presence_path(handler), ttl)?,
            backend: None,
            held: BTreeMap::new(),
            assigned: BTreeSet::new(),
            wanted: BTreeSet::new(),
            used: BTreeMap::new(),
            announce_at: now,
            members_changed: true,
            ask_at: BTreeMap::new(),
            unflushed: None,
            me,
        })
    }

    /// Whether this node holds partition `p`.
    pub(crate) fn holds(&self, p: u16) -> bool {
        self.held.contains_key(&p)
    }

    /// Notes a write made under the claims: no partition is given back
    /// before it is on disk.
    pub(crate) fn wrote(&mut self, durable: Durability) {
        self.unflushed = Some(durable);
    }

    /// When [`Claims::upkeep`] has something to do next.
    pub(crate) fn next_upkeep(&self) -> Instant {
        let renew = self.held.values().map(|h| h.renew_at);
        let idle = self.held.keys().filter_map(|p| self.idle_at(*p));
        let asks = self
            .wanted
            .iter()
            .filter(|p| !self.holds(**p))
            .map(|p| self.ask_at.get(p).copied().unwrap_or_else(Instant::now));
        renew
            .chain(idle)
            .chain(asks)
            .fold(self.announce_at, Instant::min)
    }

    /// When held partition `p` counts as idle, if it had an event.
    fn idle_at(&self, p: u16) -> Option<Instant> {
        self.used.get(&p).map(|at| *at + self.ttl * IDLE_TTLS)
    }

    /// Announces this node, renews what is due, gives back what is no
    /// longer wanted (no longer this node's, or idle) unless a run of it is
    /// under way, and asks for what is wanted: this node's partitions with
    /// events, and stale ones. Returns whether a partition was gained (its
    /// events must be looked at anew). Failures are logged: the next upkeep
    /// tries again.
    pub(crate) async fn upkeep(&mut self, demand: &Demand) -> bool {
        let now = Instant::now();
        if let Err(e) = self.keep_up().await {
            tracing::warn!(error = %e, "could not announce this node");
        }
        for p in &demand.waiting {
            self.used.insert(*p, now);
        }
        let recent: BTreeSet<u16> = self
            .used
            .keys()
            .filter(|p| self.idle_at(**p).is_some_and(|at| at > now))
            .copied()
            .collect();
        self.used.retain(|p, _| recent.contains(p));
        self.wanted = self
            .assigned
            .intersection(&recent)
            .chain(&demand.stale)
            .copied()
            .collect();
        let unwanted: Vec<u16> = self
            .held
            .keys()
            .filter(|p| !self.wanted.contains(p) && !demand.busy.contains(p))
            .copied()
            .collect();
        if !unwanted.is_empty() {
            self.give_back(&unwanted).await;
        }
        let mut gained = false;
        let asks: Vec<u16> = self
            .wanted
            .iter()
            .filter(|p| !self.holds(**p) && self.ask_at.get(p).is_none_or(|at| *at <= now))
            .copied()
            .collect();
        for p in asks {
            if self.ask(p).await {
                gained = true;
                self.ask_at.remove(&p);
            } else {
                self.ask_at.insert(p, now + RETRY);
            }
        }
        self.ask_at.retain(|p, _| self.wanted.contains(p));
        gained
    }

    /// Renews the partitions, announces this node and looks at who else is
    /// there, when due.
    async fn keep_up(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let due: Vec<u16> = self
            .held
            .iter()
            .filter(|(_, h)| h.renew_at <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            self.renew(p).await;
        }
        if now >= self.announce_at {
            self.announce_at = now + self.ttl / 3;
            self.presence.set(&self.holder).await?;
            self.members_changed = true;
        }
        if std::mem::take(&mut self.members_changed) {
            // A node that left announced an empty name.
            let members: Vec<ActorId> = self
                .presence
                .get()
                .await?
                .into_iter()
                .filter(|(_, name)| !name.is_empty())
                .map(|(actor, _)| actor)
                .collect();
            self.assigned = assigned(&self.handler, &self.me, &members);
        }
        Ok(())
    }

    /// The announcements changed (a node came, left or announced again):
    /// the partitions are shared out anew at the next upkeep.
    pub(crate) fn members_changed(&mut self) {
        self.members_changed = true;
    }

    /// Renews partition `q`, dropping it if that fails (its lease is lost).
    async fn renew(&mut self, q: u16) {
        let Some(mut held) = self.held.remove(&q) else {
            return;
        };
        match held.lock.renew().await {
            Ok(()) => {
                self.held.insert(q, Held::new(held.lock));
            }
            Err(e) => tracing::warn!(partition = q, error = %e, "lost a standing claim"),
        }
    }

    /// Asks once for partition `p`; whether it was granted.
    async fn ask(&mut self, p: u16) -> bool {
        let backend = match &self.backend {
            Some(backend) => Arc::clone(backend),
            None => match self.space.lease_backend().await {
                Ok(backend) => Arc::clone(self.backend.insert(backend)),
                Err(e) => {
                    tracing::warn!(error = %e, "no lease service for the handler's claims yet");
                    return false;
                }
            },
        };
        let resource = format!("when.{}.{p}", self.handler);
        match HeldLock::try_acquire(backend, &self.space, &resource, self.ttl, &self.holder).await {
            Ok(Some(lock)) => {
                tracing::debug!(partition = p, "took a standing claim");
                self.held.insert(p, Held::new(lock));
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "could not take a standing claim");
                false
            }
        }
    }

    /// Leaves: announces so (the others share the partitions out among
    /// themselves at once) and gives back every partition held.
    pub(crate) async fn leave(&mut self) {
        if let Err(e) = self.presence.set(&String::new()).await {
            tracing::warn!(error = %e, "could not announce that this node leaves");
        }
        let held: Vec<u16> = self.held.keys().copied().collect();
        self.give_back(&held).await;
    }

    /// Gives back partitions `ps`, once this node's writes are on disk (if
    /// they cannot be, the claims are kept: their records stay unconfirmed).
    async fn give_back(&mut self, ps: &[u16]) {
        if let Some(durable) = self.unflushed.take()
            && let Err(e) = durable.wait().await
        {
            tracing::warn!(error = %e, "writes under the claims not on disk; keeping them");
            return;
        }
        for p in ps {
            if let Some(held) = self.held.remove(p) {
                tracing::debug!(partition = p, "gave a standing claim back");
                if let Err(e) = held.lock.release().await {
                    tracing::warn!(partition = p, error = %e, "could not give a claim back");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(n: u8) -> ActorId {
        ActorId::from(&[n; 16][..])
    }

    #[test]
    fn partitions_spread_ids_and_are_stable() {
        let mut counts = [0usize; CLAIM_PARTITIONS as usize];
        for i in 0..16_000 {
            counts[usize::from(partition_of(&format!("event-{i}")))] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1_200).contains(&c)),
            "{counts:?}"
        );
        // A fixed point: every node, every version, must agree.
        assert_eq!(partition_of("abc"), partition_of("abc"));
        assert_eq!(partition_of("abc"), 0xba78 % CLAIM_PARTITIONS);
    }

    #[test]
    fn rendezvous_gives_each_partition_to_exactly_one_member() {
        let members: Vec<ActorId> = (1..=5).map(actor).collect();
        let mut seen = BTreeSet::new();
        let mut sizes = Vec::new();
        for me in &members {
            let mine = assigned("h", me, &members);
            assert!(mine.is_disjoint(&seen), "a partition given twice");
            sizes.push(mine.len());
            seen.extend(mine);
        }
        assert_eq!(seen.len(), usize::from(CLAIM_PARTITIONS));
        assert!(sizes.iter().all(|&n| n >= 1), "{sizes:?}");
        // Alone (or not yet seeing the others), a node wants them all.
        assert_eq!(assigned("h", &actor(1), &[]).len(), 16);
        // A member leaving moves only its own partitions.
        let four = &members[..4];
        for me in four {
            let before = assigned("h", me, &members);
            let after = assigned("h", me, four);
            assert!(before.is_subset(&after));
        }
    }
}
