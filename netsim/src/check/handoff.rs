//! The handoff checker: what a mutex holder leaves on release reaches the
//! next holder.
//!
//! Each holder releases with its own token as the handoff context. The
//! property: a grant requested after a release of token `t` that every
//! acceptor confirmed carries a handoff of token `t` or later, unless an
//! acceptor restarted in between (acceptors keep handoffs in memory, like
//! grants; a restart loses them). And every handoff carries the token it
//! was left with, below the token of the grant it reaches.
//!
//! This module owns that rule and the little state it needs (per resource,
//! the latest release confirmed by all, and how many acceptor restarts
//! happened). It must never look inside the lease machines: it sees only
//! what the application sees.

/// What the handoff rule needs to know, across the run.
#[derive(Debug, Default)]
pub struct HandoffCheck {
    /// Per resource: the highest token of a release every acceptor
    /// confirmed since the last acceptor restart.
    confirmed: Vec<Option<u64>>,
    /// Acceptor restarts so far.
    restarts: u64,
}

/// What a request must find, taken when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoffFloor {
    token: Option<u64>,
    restarts: u64,
}

impl HandoffCheck {
    /// A release of `token` on `resource` was confirmed by every acceptor.
    pub fn confirmed(&mut self, resource: usize, token: u64) {
        if self.confirmed.len() <= resource {
            self.confirmed.resize(resource + 1, None);
        }
        let kept = &mut self.confirmed[resource];
        *kept = Some(kept.map_or(token, |k| k.max(token)));
    }

    /// An acceptor restarted: the handoffs it kept are gone.
    pub fn acceptor_restarted(&mut self) {
        self.restarts += 1;
        self.confirmed.clear();
    }

    /// What a request of `resource` made now must find.
    pub fn floor(&self, resource: usize) -> HandoffFloor {
        HandoffFloor {
            token: self.confirmed.get(resource).copied().flatten(),
            restarts: self.restarts,
        }
    }

    /// A grant of `resource` with `token`, requested at `floor`, carried
    /// `handoff` (its token and context); returns the violation, if any.
    pub fn grant(
        &self,
        resource: usize,
        token: u64,
        floor: HandoffFloor,
        handoff: Option<(u64, &[u8])>,
    ) -> Option<String> {
        if let Some((left_with, context)) = handoff {
            if context != left_with.to_be_bytes() {
                return Some(format!(
                    "handoff: resource {resource} granted token {token} with a handoff of token {left_with} carrying another's context {context:?}"
                ));
            }
            if left_with >= token {
                return Some(format!(
                    "handoff: resource {resource} granted token {token} with a handoff of token {left_with}, not released before it"
                ));
            }
        }
        let wanted = floor.token.filter(|_| floor.restarts == self.restarts)?;
        if handoff.is_none_or(|(left_with, _)| left_with < wanted) {
            return Some(format!(
                "handoff: resource {resource} granted token {token} with handoff {:?}, missing the release of token {wanted} every acceptor confirmed before the request",
                handoff.map(|(t, _)| t)
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmed_release_must_reach_the_next_grant_unless_an_acceptor_restarted() {
        let mut check = HandoffCheck::default();
        assert_eq!(check.grant(0, 5, check.floor(0), None), None);
        check.confirmed(0, 5);
        let floor = check.floor(0);
        let ctx = 5u64.to_be_bytes();
        assert_eq!(check.grant(0, 9, floor, Some((5, &ctx))), None);
        assert!(check.grant(0, 9, floor, None).is_some());
        let older = 3u64.to_be_bytes();
        assert!(check.grant(0, 9, floor, Some((3, &older))).is_some());
        // Another resource is not held up.
        assert_eq!(check.grant(1, 9, check.floor(1), None), None);
        // Forged or future handoffs are violations whatever the floor.
        assert!(check.grant(0, 9, floor, Some((5, &older))).is_some());
        let later = 12u64.to_be_bytes();
        assert!(check.grant(0, 9, floor, Some((12, &later))).is_some());
        // A restart between request and grant excuses a missing handoff.
        check.acceptor_restarted();
        assert_eq!(check.grant(0, 9, floor, None), None);
        assert_eq!(check.floor(0).token, None);
    }
}
