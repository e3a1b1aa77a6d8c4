//! Handing a lock over: a holder that releases leaves how far its writes
//! in the space went (its actor and its latest sequence number there), and
//! the next holder waits until its own replica has them before it acts.
//!
//! The context travels with the lease (`LeaseBackend::release_with`,
//! `Lease::handoff`): the lease service keeps it with the resource and
//! gives it to the next grant, so it does not depend on the replicated
//! state having arrived, which is what it is there to check. An operation
//! completed under one holder (its outcome written before the release) is
//! therefore seen as completed by the next holder, never run again.
//!
//! This module owns the context's format and the wait. It must never let a
//! holder act before it has caught up: if the writes do not arrive within
//! the wait, the lock is given back and the caller gets
//! [`Error::Handoff`]. A context it cannot read (written by something else
//! than Concord) or about another space is no reason to wait, and is
//! logged.

use std::time::{Duration, Instant};

use concord_state::{ActorId, Replica};
use serde::{Deserialize, Serialize};

use crate::{Error, Space};

/// How long to check between two looks at the replica while catching up.
const POLL: Duration = Duration::from_millis(5);

/// What a releasing holder leaves: its writes in `space` up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Context {
    space: String,
    actor: String,
    seq: u64,
}

/// The context for a holder of a lock in space `space` (this replica's)
/// releasing now, if it wrote anything there (`None` if it is too large to
/// leave: the next holder then waits for nothing). Called on the replica,
/// in the same step as the holder's last write (the lock mirror's removal).
pub(crate) fn context(r: &Replica, space: &str) -> Option<Vec<u8>> {
    let actor = r.actor().clone();
    let seq = r.vector_clock().get(&actor);
    if seq == 0 {
        return None;
    }
    let context = Context {
        space: space.to_owned(),
        actor: actor.to_hex_string(),
        seq,
    };
    let bytes = serde_json::to_vec(&context).ok()?;
    debug_assert!(
        bytes.len() <= concord_lease::MAX_HANDOFF_BYTES,
        "a space name (64 bytes), an actor and a number fit"
    );
    Some(bytes)
}

/// Waits until `space`'s replica holds the writes `handoff` names (if
/// any), for up to `wait`, then runs `then` on the replica in the same step
/// as the check that found them there.
///
/// # Errors
/// [`Error::Handoff`] if they did not arrive in time (`then` did not run).
pub(crate) async fn catch_up<F>(
    space: &Space,
    resource: &str,
    handoff: Option<&[u8]>,
    wait: Duration,
    then: F,
) -> Result<(), Error>
where
    F: FnOnce(&mut Replica) + Send + 'static,
{
    let wanted = handoff.and_then(|h| parse(space, h));
    let started = Instant::now();
    let mut then = Some(then);
    loop {
        let (target, run) = (wanted.clone(), then.take());
        // How far this replica has the writes (`None`: nothing to wait
        // for), and `then` back if it did not run. Not waited for on disk:
        // what `then` writes (a lock's mirror) is informative.
        let (have, unused) = space
            .commit_lazy(move |r| {
                let have = target.map(|(actor, seq)| (r.vector_clock().get(&actor), seq));
                match run {
                    Some(run) if have.is_none_or(|(have, seq)| have >= seq) => {
                        run(r);
                        (have, None)
                    }
                    run => (have, run),
                }
            })
            .await?
            .0;
        let Some((have, seq)) = have.filter(|(have, seq)| have < seq) else {
            return Ok(());
        };
        then = unused;
        if started.elapsed() >= wait {
            let actor = wanted
                .map(|(actor, _)| actor.to_hex_string())
                .unwrap_or_default();
            return Err(Error::Handoff {
                resource: resource.to_owned(),
                actor,
                seq,
                have,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The actor and sequence number a context names for `space`, if it is
/// one of Concord's and about `space`.
fn parse(space: &Space, handoff: &[u8]) -> Option<(ActorId, u64)> {
    let context: Context = match serde_json::from_slice(handoff) {
        Ok(context) => context,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a lock handoff that is not Concord's");
            return None;
        }
    };
    if context.space != space.name() {
        return None;
    }
    match ActorId::try_from(context.actor.as_str()) {
        Ok(actor) => Some((actor, context.seq)),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a lock handoff naming no actor");
            None
        }
    }
}
