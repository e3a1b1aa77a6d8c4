//! Ephemeral values in the sync engine (DESIGN §5 "Ephemeral channels"):
//! fresh local writes go out on the fast path, a peer that comes up gets
//! every live value, received values go into the replica, and the engine
//! asks for a tick at the next expiry.
//!
//! A peer gets the live values on the first valid frame it sends after it
//! came up (normally the digest it sends on its own `PeerUp`), not on
//! `PeerUp` itself: a connection comes up for every space a node has open,
//! and a frame sent before the peer opened the space would be lost, while
//! its first frame shows that its session runs. A peer that reconnects
//! comes up again and gets them again.
//!
//! There is no anti-entropy for them: a value lost on the way is replaced
//! by its writer's next one or handed over again when the peer reconnects.
//! This module owns the mapping between wire entries and the replica's
//! updates; it never does I/O, reads a clock or keeps values of its own.

use std::fmt::Debug;

use concord_state::{ActorId, EphemeralUpdate, Hlc, Millis, StateError};
use tracing::{trace, warn};

use super::{Destination, SyncEngine};
use crate::wire::{self, EphemeralEntry};

// Every value the replica accepts fits a wire entry.
const _: () = assert!(wire::MAX_EPHEMERAL_VALUE_BYTES >= concord_state::MAX_VALUE_BYTES);

impl<P: Clone + Ord + Debug> SyncEngine<P> {
    /// Broadcasts the replica's ephemeral writes not sent yet (fast path).
    pub(super) fn broadcast_ephemeral(&mut self) {
        let fresh = self.replica.take_ephemeral_outbox();
        self.send_ephemeral(Destination::Broadcast, fresh);
    }

    /// Hands `peer` every live ephemeral value, once per session: called
    /// after each valid frame from it.
    pub(super) fn greet_ephemeral(&mut self, peer: &P) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if std::mem::replace(&mut state.ephemeral_handed, true) {
            return;
        }
        let live = self.replica.ephemeral_snapshot();
        self.send_ephemeral(Destination::Peer(peer.clone()), live);
    }

    fn send_ephemeral(&mut self, to: Destination<P>, updates: Vec<EphemeralUpdate>) {
        if updates.is_empty() {
            return;
        }
        let entries = updates.into_iter().map(to_entry);
        match wire::chunk_ephemeral(self.replica.space(), entries) {
            Ok(frames) => {
                for frame in frames {
                    self.send(to.clone(), &frame);
                }
            }
            Err(e) => warn!(error = %e, "ephemeral values do not fit frames"),
        }
    }

    /// Applies a peer's [`wire::Frame::Ephemeral`]; anything malformed in it
    /// refuses the peer and leaves the replica untouched.
    pub(super) fn on_ephemeral(&mut self, from: P, entries: Vec<EphemeralEntry>) {
        let updates = match entries.into_iter().map(from_entry).collect() {
            Ok(updates) => updates,
            Err(e) => return self.refuse(from, e.into()),
        };
        match self.replica.apply_ephemeral(self.now, updates) {
            Ok(outcome) => trace!(?from, ?outcome, "ephemeral values applied"),
            Err(e) => self.refuse(from, e.into()),
        }
    }

    /// When the next ephemeral value expires, if the replica holds any.
    pub(super) fn ephemeral_timeout(&self) -> Option<Millis> {
        self.replica.next_ephemeral_expiry()
    }
}

fn to_entry(update: EphemeralUpdate) -> EphemeralEntry {
    EphemeralEntry {
        path: update.path.to_string(),
        writer: update.writer.to_bytes().to_vec(),
        wall: update.hlc.wall,
        logical: update.hlc.logical,
        ttl_ms: update.ttl_ms,
        value: update.value,
    }
}

fn from_entry(entry: EphemeralEntry) -> Result<EphemeralUpdate, StateError> {
    Ok(EphemeralUpdate {
        path: entry.path.parse()?,
        writer: ActorId::from(entry.writer.as_slice()),
        hlc: Hlc {
            wall: entry.wall,
            logical: entry.logical,
        },
        ttl_ms: entry.ttl_ms,
        value: entry.value,
    })
}
