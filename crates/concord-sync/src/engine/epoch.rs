//! The sync engine's part in epochs: telling peers which epoch this replica
//! is in, adopting a peer's cut (fetching the peer's first document when
//! this replica lacks changes of it), serving this replica's first document,
//! and cutting once the replica passes its thresholds.
//!
//! Bounds: one snapshot download at a time (a newer announcement replaces
//! it), at most [`wire::MAX_SNAPSHOT_BYTES`] assembled, and one epoch
//! announcement per peer per [`TELL_INTERVAL_MS`] in answer to frames of
//! another epoch.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use concord_state::{Adoption, ChangeHash, EpochAnnounce, EpochId, Millis, VectorClock};
use rand::Rng;
use tracing::{debug, info, warn};

use super::{Destination, ProtocolError, SyncEngine, SyncEvent, clock_entries};
use crate::wire::{self, EPOCH_BYTES, Frame};

/// Shortest time between two epoch announcements to one peer that keeps
/// sending frames of another epoch.
pub const TELL_INTERVAL_MS: u64 = 100;

/// A snapshot download that received nothing for this long is started
/// again when the peer announces the epoch anew (a request or a piece was
/// lost).
pub const SNAPSHOT_STALL_MS: u64 = 2_000;

/// A snapshot being downloaded.
struct Download<P> {
    from: P,
    announce: EpochAnnounce,
    total: u64,
    /// Pieces by offset.
    pieces: BTreeMap<u64, Vec<u8>>,
    received: u64,
    /// When it was requested or last received a piece.
    last: Millis,
}

/// The engine's epoch bookkeeping.
pub(super) struct Epochs<P> {
    /// When this replica cuts, once it passed a threshold.
    pub cut_at: Option<Millis>,
    download: Option<Download<P>>,
    told: BTreeMap<P, Millis>,
    /// This replica's first document, once built for a peer.
    snapshot: Option<(EpochId, Arc<Vec<u8>>)>,
}

impl<P> Default for Epochs<P> {
    fn default() -> Self {
        Epochs {
            cut_at: None,
            download: None,
            told: BTreeMap::new(),
            snapshot: None,
        }
    }
}

impl<P: Ord + PartialEq> Epochs<P> {
    /// Forgets what concerns a peer that left.
    pub(super) fn forget(&mut self, peer: &P) {
        self.told.remove(peer);
        if self.download.as_ref().is_some_and(|d| &d.from == peer) {
            self.download = None;
        }
    }
}

impl<P: Clone + Ord + Debug> SyncEngine<P> {
    /// This replica's epoch id as frames carry it.
    pub(super) fn epoch_bytes(&self) -> [u8; EPOCH_BYTES] {
        self.replica.epoch().id.0.0
    }

    /// A frame of another epoch came from `from`: tell it ours (throttled),
    /// so that whichever of the two is behind moves up.
    pub(super) fn other_epoch(&mut self, from: P) {
        let due = self
            .epochs
            .told
            .get(&from)
            .is_none_or(|at| at.plus(TELL_INTERVAL_MS) <= self.now);
        if due {
            self.tell(&from);
        }
    }

    /// Sends this replica's epoch and cut to `to`.
    fn tell(&mut self, to: &P) {
        self.epochs.told.insert(to.clone(), self.now);
        let announce = self.replica.epoch_announce();
        let frame = Frame::Epoch {
            space: self.replica.space().to_owned(),
            epoch: announce.id.0.0,
            cut: clock_entries(&announce.cut).collect(),
        };
        self.send(Destination::Peer(to.clone()), &frame);
    }

    pub(super) fn on_epoch(&mut self, from: P, epoch: [u8; EPOCH_BYTES], cut: Vec<(Vec<u8>, u64)>) {
        let theirs = EpochAnnounce {
            id: EpochId(ChangeHash(epoch)),
            cut: cut
                .into_iter()
                .map(|(a, s)| (concord_state::ActorId::from(a.as_slice()), s))
                .collect::<VectorClock>(),
        };
        if theirs.id == self.replica.epoch().id {
            return;
        }
        if self.epochs.download.as_ref().is_some_and(|d| {
            d.announce.id == theirs.id && d.last.plus(SNAPSHOT_STALL_MS) > self.now
        }) {
            return;
        }
        match self.replica.adopt_epoch(self.now, &theirs, None) {
            Ok(Adoption::Current) => self.other_epoch(from),
            Ok(Adoption::NeedSnapshot) => {
                debug!(?from, to = %theirs.id, "fetching the first document of a peer's epoch");
                let frame = Frame::SnapshotRequest {
                    space: self.replica.space().to_owned(),
                    epoch,
                };
                self.send(Destination::Peer(from.clone()), &frame);
                self.epochs.download = Some(Download {
                    from,
                    announce: theirs,
                    total: 0,
                    pieces: BTreeMap::new(),
                    received: 0,
                    last: self.now,
                });
            }
            Ok(Adoption::Switched { to, carried }) => self.switched(to, carried),
            Err(e) => self.refuse(from, ProtocolError::Replica(e)),
        }
    }

    pub(super) fn on_snapshot_request(&mut self, from: P, epoch: [u8; EPOCH_BYTES]) {
        let mine = self.replica.epoch().id;
        if epoch != mine.0.0 {
            return self.other_epoch(from);
        }
        let bytes = match &self.epochs.snapshot {
            Some((id, bytes)) if *id == mine => Arc::clone(bytes),
            _ => match self.replica.epoch_snapshot() {
                Ok(bytes) => {
                    let bytes = Arc::new(bytes);
                    self.epochs.snapshot = Some((mine, Arc::clone(&bytes)));
                    bytes
                }
                Err(e) => return warn!(error = %e, "cannot build this epoch's first document"),
            },
        };
        match wire::chunk_snapshot(self.replica.space(), epoch, &bytes) {
            Ok(frames) => {
                for frame in frames {
                    self.send(Destination::Peer(from.clone()), &frame);
                }
            }
            Err(e) => warn!(error = %e, "this epoch's first document does not fit the wire"),
        }
    }

    pub(super) fn on_snapshot(
        &mut self,
        from: P,
        epoch: [u8; EPOCH_BYTES],
        total: u64,
        offset: u64,
        chunk: Vec<u8>,
    ) {
        let Some(d) = self.epochs.download.as_mut() else {
            return;
        };
        if d.from != from || d.announce.id.0.0 != epoch {
            return;
        }
        if d.pieces.is_empty() {
            d.total = total;
        }
        if d.total != total || d.pieces.contains_key(&offset) {
            let error = ProtocolError::Snapshot("pieces disagree on the snapshot's size or repeat");
            self.epochs.download = None;
            return self.refuse(from, error);
        }
        d.received += chunk.len() as u64;
        d.last = self.now;
        d.pieces.insert(offset, chunk);
        if d.received < d.total && !(d.total == 0 && d.pieces.len() == 1) {
            return;
        }
        let Some(d) = self.epochs.download.take() else {
            return;
        };
        let mut bytes = Vec::with_capacity(usize::try_from(d.total).unwrap_or(0));
        for (offset, piece) in d.pieces {
            if offset != bytes.len() as u64 {
                let error = ProtocolError::Snapshot("snapshot pieces overlap or leave a gap");
                return self.refuse(from, error);
            }
            bytes.extend_from_slice(&piece);
        }
        match self
            .replica
            .adopt_epoch(self.now, &d.announce, Some(&bytes))
        {
            Ok(Adoption::Switched { to, carried }) => self.switched(to, carried),
            Ok(_) => {}
            Err(e) => self.refuse(from, ProtocolError::Replica(e)),
        }
    }

    /// Cuts once the replica passed a threshold and its random wait is over.
    pub(super) fn consider_cut(&mut self) {
        if self.epochs.cut_at.is_none() && self.replica.wants_cut() {
            let jitter = self.config.cut_jitter_ms;
            let wait = if jitter == 0 {
                0
            } else {
                self.rng.random_range(0..=jitter)
            };
            self.epochs.cut_at = Some(self.now.plus(wait));
        }
        let Some(at) = self.epochs.cut_at else {
            return;
        };
        if at > self.now {
            return;
        }
        self.epochs.cut_at = None;
        if !self.replica.wants_cut() {
            return;
        }
        match self.replica.cut_epoch(self.now) {
            Ok(Some(to)) => self.switched(to, 0),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cutting the epoch failed"),
        }
    }

    /// After a switch: every peer hears of the new epoch at once.
    fn switched(&mut self, to: EpochId, carried: usize) {
        info!(space = %self.replica.space(), %to, carried, "epoch switched");
        self.epochs.cut_at = None;
        self.epochs.download = None;
        self.epochs.snapshot = None;
        let peers: Vec<P> = self.peers.keys().cloned().collect();
        for peer in &peers {
            if let Some(state) = self.peers.get_mut(peer) {
                state.sync = automerge::sync::State::new();
            }
            self.tell(peer);
        }
        self.push_event(SyncEvent::EpochSwitched { to, carried });
    }
}
