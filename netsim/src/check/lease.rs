//! Lease safety ([`LeaseCheck`]): overlapping holders, fencing tokens out
//! of order, and the model of fenced external systems that accept or
//! refuse each holder's writes ([`WriteOutcome`]).
//!
//! It owns the lease safety rules and the grants that may still be valid.
//! It must never look inside the lease machines: it learns grants,
//! renewals, ends and writes from the simulator, in virtual time.

use crate::node::NodeId;

/// Names one grant (one `Acquired`, with its renewals) in [`LeaseCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrantId(pub u64);

/// A grant whose validity may not have ended yet.
#[derive(Debug, Clone, Copy)]
struct LiveGrant {
    id: GrantId,
    node: NodeId,
    token: u64,
    /// Virtual time the holder learnt of it.
    start: u64,
    /// Virtual time (exclusive) its holder stops believing in it: its local
    /// end of validity mapped through its clock, cut short by a release or
    /// a crash.
    end: u64,
}

/// One resource as the checker sees it.
#[derive(Debug, Default)]
struct ResourceLog {
    permits: u32,
    live: Vec<LiveGrant>,
    /// Token of the grant that started last.
    latest: Option<u64>,
    /// Highest token of any grant started so far.
    max_token: u64,
    /// The fenced external system: the highest token it has seen.
    highest_seen: u64,
}

/// What the fenced external system made of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The system took the write (its token was at least every token seen).
    pub accepted: bool,
    /// A newer grant of the resource had started: the writer is stale.
    pub stale: bool,
}

/// Lease safety, checked online in virtual (simulated real) time.
///
/// * **Overlap.** A grant's validity is what its holder believes: from the
///   moment it learns of the grant until its local end of validity, mapped
///   back to virtual time through its clock (extended by renewals, cut
///   short by a release or a crash). When a grant starts, fewer than
///   `permits` other grants of the resource may still be valid. (The number
///   of valid grants peaks at some grant's start, so checking at starts is
///   checking always.)
/// * **Tokens.** A mutex's tokens strictly increase in grant order. For any
///   resource, a grant's token exceeds every token granted before it was
///   requested, and differs from every token still valid.
/// * **Fencing.** Each mutex guards a model external system that accepts a
///   write only if its token is at least the highest it has seen. A holder
///   writes once as it acquires (so the system learns the new token at
///   once) and then repeatedly, checking its lease before each write, which
///   lands a little later (or, if the process is paused meanwhile, after it
///   resumes). A write accepted from a *stale* holder (a newer grant of the
///   resource has started) is a violation; so is a refused write from a
///   holder that is not stale (tokens out of order). A write from a holder
///   whose lease ended but that nobody superseded is accepted: the resource
///   was free, so fencing neither can nor needs to refuse it. Callers count
///   it as a late write.
///
/// It keeps only grants that may still be valid, so it stays small however
/// long the run.
#[derive(Debug, Default)]
pub struct LeaseCheck {
    resources: Vec<ResourceLog>,
    next_id: u64,
}

impl LeaseCheck {
    /// A checker for resources with these permit counts.
    pub fn new(permits: impl IntoIterator<Item = u32>) -> LeaseCheck {
        LeaseCheck {
            resources: permits
                .into_iter()
                .map(|permits| ResourceLog {
                    permits,
                    ..ResourceLog::default()
                })
                .collect(),
            next_id: 0,
        }
    }

    /// Highest token of any grant of `resource` started so far: a request
    /// made now must get a higher one.
    pub fn token_floor(&self, resource: usize) -> u64 {
        self.resources.get(resource).map_or(0, |r| r.max_token)
    }

    /// Records a grant of `resource` to `node` with `token`, valid over
    /// `[start, end)`, requested when the floor was `token_floor`; returns
    /// its id and the violations it reveals.
    pub fn grant(
        &mut self,
        resource: usize,
        node: NodeId,
        token: u64,
        token_floor: u64,
        (start, end): (u64, u64),
    ) -> (GrantId, Vec<String>) {
        let id = GrantId(self.next_id);
        self.next_id += 1;
        let mut found = Vec::new();
        let Some(r) = self.resources.get_mut(resource) else {
            return (id, vec![format!("grant of unknown resource {resource}")]);
        };
        r.live.retain(|g| g.end > start);
        if r.live.len() >= r.permits as usize {
            let holders: Vec<String> = r
                .live
                .iter()
                .map(|g| format!("{:?} token {} until {}", g.node, g.token, g.end))
                .collect();
            found.push(format!(
                "overlap: resource {resource} ({} permits) granted to {node:?} with token {token} while held by {}",
                r.permits,
                holders.join(", ")
            ));
        }
        if r.permits == 1 && r.latest.is_some_and(|t| t >= token) {
            found.push(format!(
                "tokens: mutex {resource} granted token {token} after token {}",
                r.latest.unwrap_or_default()
            ));
        }
        if token <= token_floor {
            found.push(format!(
                "tokens: resource {resource} granted token {token}, not above {token_floor} granted before the request"
            ));
        }
        if r.live.iter().any(|g| g.token == token) {
            found.push(format!(
                "tokens: resource {resource} granted token {token} twice"
            ));
        }
        r.live.push(LiveGrant {
            id,
            node,
            token,
            start,
            end,
        });
        r.latest = Some(token);
        r.max_token = r.max_token.max(token);
        (id, found)
    }

    /// Grants of `resource` valid at the start of the latest grant, that
    /// one included.
    pub fn holders(&self, resource: usize) -> u64 {
        self.resources
            .get(resource)
            .map_or(0, |r| r.live.len() as u64)
    }

    /// A renewal: the grant is valid until `end` now, if that is later.
    pub fn extend(&mut self, resource: usize, id: GrantId, end: u64) {
        if let Some(g) = self.live_mut(resource, id) {
            g.end = g.end.max(end);
        }
    }

    /// The holder stopped believing in the grant at `at` (release, crash).
    pub fn end(&mut self, resource: usize, id: GrantId, at: u64) {
        if let Some(g) = self.live_mut(resource, id) {
            g.end = g.end.min(at).max(g.start);
        }
    }

    fn live_mut(&mut self, resource: usize, id: GrantId) -> Option<&mut LiveGrant> {
        self.resources
            .get_mut(resource)?
            .live
            .iter_mut()
            .find(|g| g.id == id)
    }

    /// A write with `token` reaches the external system of `resource`;
    /// returns what the system did and the violation it reveals, if any.
    pub fn write(&mut self, resource: usize, token: u64) -> (WriteOutcome, Option<String>) {
        let Some(r) = self.resources.get_mut(resource) else {
            let outcome = WriteOutcome {
                accepted: false,
                stale: false,
            };
            return (
                outcome,
                Some(format!("write to unknown resource {resource}")),
            );
        };
        let stale = r.latest != Some(token);
        let accepted = token >= r.highest_seen;
        if accepted {
            r.highest_seen = token;
        }
        let violation = match (accepted, stale) {
            (true, true) => Some(format!(
                "fencing: resource {resource} accepted a write with token {token} from a stale holder (latest grant {})",
                r.latest.unwrap_or_default()
            )),
            (false, false) => Some(format!(
                "fencing: resource {resource} refused the current holder's token {token} (seen {})",
                r.highest_seen
            )),
            _ => None,
        };
        (WriteOutcome { accepted, stale }, violation)
    }
}
