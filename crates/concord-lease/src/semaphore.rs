//! Counting: how many holders a resource may have ([`Permits`]), the set of
//! holders an acceptor currently grants ([`HolderSet`]), and the census a
//! proposer takes of a majority's answers ([`Census`]).
//!
//! A mutex is a semaphore with one permit; the protocol has a single code
//! path for both. This module owns the counting rule and its bound,
//! [`MAX_PERMITS`], which also bounds every holder list a peer can send. It
//! must never read a clock (expiry is checked against a `now` passed in) and
//! never store more than `permits` holders for a resource.
//!
//! # The rule
//!
//! A proposer asks a majority to promise a ballot; each promise lists the
//! holders the acceptor currently grants (entries not yet expired on its own
//! clock). The proposer takes the union of the *other* holders over the
//! first majority of promises and sends the accept request only if that
//! union has fewer than `permits` members. An acceptor also refuses to hold
//! more than `permits` entries.
//!
//! # Why at most `permits` holders are valid at any real time
//!
//! Take the holders valid at some real time `T`, and among them the grant
//! `G` with the highest ballot `b`. For any other valid grant `H` (ballot
//! below `b`), `H`'s accepting majority and `G`'s promising majority share
//! an acceptor `X`. Had `G`'s prepare reached `X` before `H`'s accept
//! request, `X` would have promised `b` and refused `H`; so `X` accepted `H`
//! first. `H` is valid at `T`, so by the drift argument in [`crate::time`]
//! `X` still holds `H`'s entry at `T`, and a fortiori when `G`'s prepare
//! arrived (before `T`). So `G`'s census saw every other grant valid at `T`,
//! found fewer than `permits`, and at most `permits` are valid at `T`.
//! Entries of the same holder (a renewal) are not "other" holders: a holder
//! counts once.
//!
//! With one permit the same argument says more: if `G` is granted while
//! `H` is still held at an acceptor, `G` is refused, so grants of a mutex do
//! not overlap, and since each later grant met a promise of every earlier
//! one (see [`crate::ballot`]), tokens increase in the order of holding. A
//! semaphore's holders overlap by design; their tokens are unique, and a
//! grant requested after another was granted has a higher token, but two
//! overlapping holders may learn of their grants in either order.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ballot::FencingToken;
use crate::error::LeaseError;
use crate::ids::{Holder, NodeId};
use crate::messages::{HolderInfo, RejectReason};
use crate::time::Millis;

/// Largest number of permits of one resource, and hence the largest holder
/// list in a `Promise` and the largest holder set an acceptor keeps per
/// resource.
pub const MAX_PERMITS: u32 = 64;

/// How many holders a resource may have at once: 1 for a mutex, N for a
/// counting semaphore (e.g. at most 3 calls in flight to one API).
///
/// Every user of a resource must use the same count; acceptors refuse a
/// request whose count differs from the one their current holders used
/// ([`RejectReason::LimitMismatch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Permits(u32);

impl Permits {
    /// One permit: a mutex.
    pub const MUTEX: Permits = Permits(1);

    /// `n` permits.
    ///
    /// # Errors
    /// [`LeaseError::InvalidPermits`] unless `1 <= n <= MAX_PERMITS`.
    pub const fn new(n: u32) -> Result<Permits, LeaseError> {
        if n == 0 || n > MAX_PERMITS {
            return Err(LeaseError::InvalidPermits {
                permits: n,
                max: MAX_PERMITS,
            });
        }
        Ok(Permits(n))
    }

    /// The count.
    pub const fn get(self) -> u32 {
        self.0
    }

    fn as_usize(self) -> usize {
        // MAX_PERMITS fits in any usize.
        self.0 as usize
    }
}

impl TryFrom<u32> for Permits {
    type Error = LeaseError;

    fn try_from(n: u32) -> Result<Self, Self::Error> {
        Permits::new(n)
    }
}

impl From<Permits> for u32 {
    fn from(p: Permits) -> u32 {
        p.0
    }
}

/// One holder an acceptor grants, until `expires` on the acceptor's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    holder: Holder,
    token: FencingToken,
    expires: Millis,
}

/// The holders one acceptor currently grants for one resource: at most
/// `permits` entries, each with its expiry on the acceptor's clock.
///
/// Entries live only in memory; a restarted acceptor relies on its quiet
/// period instead (see [`crate::acceptor`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderSet {
    limit: Permits,
    entries: Vec<Entry>,
}

impl HolderSet {
    /// An empty set for a resource with `limit` permits.
    pub fn new(limit: Permits) -> HolderSet {
        HolderSet {
            limit,
            entries: Vec::new(),
        }
    }

    /// The permit count of the current holders.
    pub fn limit(&self) -> Permits {
        self.limit
    }

    /// Drops entries that have expired at `now` (an entry is live while
    /// `now < expires`).
    pub fn prune(&mut self, now: Millis) {
        self.entries.retain(|e| now < e.expires);
    }

    /// Whether no entry is live (call [`HolderSet::prune`] first).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, as sent in a `Promise`.
    pub fn active(&self) -> Vec<HolderInfo> {
        self.entries
            .iter()
            .map(|e| HolderInfo {
                holder: e.holder,
                token: e.token,
            })
            .collect()
    }

    /// Whether the set could accept `limit` as the permit count: yes if it
    /// is empty or already uses that count.
    pub fn limit_matches(&self, limit: Permits) -> bool {
        self.entries.is_empty() || self.limit == limit
    }

    /// Whether every permit is held and none by `node`: a new holder on
    /// another node cannot get in before one of them ends.
    pub fn is_full_for(&self, node: NodeId) -> bool {
        self.entries.len() >= self.limit.as_usize()
            && self.entries.iter().all(|e| e.holder.node != node)
    }

    /// Grants `holder` with `token` until `now + ttl`.
    ///
    /// The same holder with the same token (a renewal) keeps the later of its
    /// old and new expiry, so a renewal with a short ttl never cuts short a
    /// validity the holder already relies on. The same holder with another
    /// token (a new grant after its old one ended) replaces its entry.
    ///
    /// # Errors
    /// [`RejectReason::LimitMismatch`] if current holders use another permit
    /// count, [`RejectReason::Full`] if `limit` other holders are live.
    pub fn admit(
        &mut self,
        now: Millis,
        holder: Holder,
        token: FencingToken,
        ttl: Millis,
        limit: Permits,
    ) -> Result<(), RejectReason> {
        self.prune(now);
        if !self.limit_matches(limit) {
            return Err(RejectReason::LimitMismatch);
        }
        self.limit = limit;
        let expires = now.saturating_add(ttl);
        if let Some(e) = self.entries.iter_mut().find(|e| e.holder == holder) {
            if e.token == token {
                e.expires = e.expires.max(expires);
            } else {
                e.token = token;
                e.expires = expires;
            }
            return Ok(());
        }
        if self.entries.len() >= limit.as_usize() {
            return Err(RejectReason::Full);
        }
        self.entries.push(Entry {
            holder,
            token,
            expires,
        });
        Ok(())
    }

    /// Removes `holder`'s entry if it carries `token`; returns whether it
    /// did. Matching the token keeps a late release of an old grant from
    /// ending a newer one.
    pub fn release(&mut self, holder: Holder, token: FencingToken) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.holder == holder && e.token == token));
        self.entries.len() != before
    }
}

/// A proposer's union of the *other* holders reported by the promises it has
/// counted so far.
///
/// Bounded: promises are counted once per acceptor and each lists at most
/// [`MAX_PERMITS`] holders, so the census holds at most
/// `MAX_ACCEPTORS * MAX_PERMITS` holders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    others: BTreeSet<Holder>,
}

impl Census {
    /// Adds the holders of one promise, skipping `me`.
    pub fn add(&mut self, holders: &[HolderInfo], me: Holder) {
        self.others
            .extend(holders.iter().map(|h| h.holder).filter(|h| *h != me));
    }

    /// Number of distinct other holders seen.
    pub fn others(&self) -> usize {
        self.others.len()
    }

    /// Whether one more holder fits under `limit`.
    pub fn admits(&self, limit: Permits) -> bool {
        self.others.len() < limit.as_usize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{LeaseId, NodeId};

    fn h(n: u16) -> Holder {
        Holder {
            node: NodeId(n),
            lease: LeaseId(0),
        }
    }

    #[test]
    fn permits_are_bounded() {
        assert_eq!(Permits::new(1), Ok(Permits::MUTEX));
        assert_eq!(Permits::new(MAX_PERMITS).map(Permits::get), Ok(MAX_PERMITS));
        assert!(Permits::new(0).is_err());
        assert!(Permits::new(MAX_PERMITS + 1).is_err());
        assert!(serde_json::from_str::<Permits>("0").is_err());
        assert!(serde_json::from_str::<Permits>("65").is_err());
        assert_eq!(serde_json::from_str::<Permits>("3").unwrap().get(), 3);
    }

    #[test]
    fn holder_set_fills_to_its_limit_and_no_further() {
        let three = Permits::new(3).unwrap();
        let mut set = HolderSet::new(three);
        for n in 0..3 {
            set.admit(
                Millis(0),
                h(n),
                FencingToken::new(u64::from(n)),
                Millis(10),
                three,
            )
            .unwrap();
        }
        assert_eq!(set.len(), 3);
        assert_eq!(
            set.admit(Millis(0), h(9), FencingToken::new(9), Millis(10), three),
            Err(RejectReason::Full)
        );
        // The same holder renews without taking a new permit.
        set.admit(Millis(5), h(1), FencingToken::new(1), Millis(10), three)
            .unwrap();
        assert_eq!(set.len(), 3);
        // Expiry frees permits: h(0) and h(2) expire at 10, h(1) lives to 15.
        set.admit(Millis(10), h(9), FencingToken::new(9), Millis(10), three)
            .unwrap();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn holder_set_fills_to_max_permits() {
        let max = Permits::new(MAX_PERMITS).unwrap();
        let mut set = HolderSet::new(max);
        for n in 0..=MAX_PERMITS {
            let r = set.admit(
                Millis(0),
                h(n as u16),
                FencingToken::new(u64::from(n)),
                Millis(10),
                max,
            );
            assert_eq!(r.is_ok(), n < MAX_PERMITS);
        }
        assert_eq!(set.len(), MAX_PERMITS as usize);
        assert_eq!(set.active().len(), MAX_PERMITS as usize);
    }

    #[test]
    fn renewal_never_shortens_and_new_token_replaces() {
        let mut set = HolderSet::new(Permits::MUTEX);
        let t = FencingToken::new(5);
        set.admit(Millis(0), h(1), t, Millis(100), Permits::MUTEX)
            .unwrap();
        set.admit(Millis(10), h(1), t, Millis(5), Permits::MUTEX)
            .unwrap();
        set.prune(Millis(99));
        assert_eq!(set.len(), 1, "short renewal kept the longer expiry");
        set.admit(
            Millis(50),
            h(1),
            FencingToken::new(7),
            Millis(5),
            Permits::MUTEX,
        )
        .unwrap();
        set.prune(Millis(55));
        assert!(set.is_empty(), "a new token replaces the old entry");
    }

    #[test]
    fn limits_must_match_while_held() {
        let mut set = HolderSet::new(Permits::MUTEX);
        set.admit(
            Millis(0),
            h(1),
            FencingToken::new(1),
            Millis(10),
            Permits::MUTEX,
        )
        .unwrap();
        let two = Permits::new(2).unwrap();
        assert!(!set.limit_matches(two));
        assert_eq!(
            set.admit(Millis(0), h(2), FencingToken::new(2), Millis(10), two),
            Err(RejectReason::LimitMismatch)
        );
        // Once empty, a new count is fine.
        set.admit(Millis(10), h(2), FencingToken::new(2), Millis(10), two)
            .unwrap();
        assert_eq!(set.limit(), two);
    }

    #[test]
    fn release_needs_the_matching_token() {
        let mut set = HolderSet::new(Permits::MUTEX);
        set.admit(
            Millis(0),
            h(1),
            FencingToken::new(3),
            Millis(10),
            Permits::MUTEX,
        )
        .unwrap();
        assert!(!set.release(h(1), FencingToken::new(2)));
        assert!(!set.release(h(2), FencingToken::new(3)));
        assert!(set.release(h(1), FencingToken::new(3)));
        assert!(set.is_empty());
    }

    #[test]
    fn census_counts_distinct_others() {
        let me = h(0);
        let info = |n: u16| HolderInfo {
            holder: h(n),
            token: FencingToken::new(u64::from(n)),
        };
        let mut c = Census::default();
        c.add(&[info(0), info(1)], me);
        c.add(&[info(1), info(2)], me);
        assert_eq!(c.others(), 2);
        assert!(c.admits(Permits::new(3).unwrap()));
        assert!(!c.admits(Permits::new(2).unwrap()));
    }
}
