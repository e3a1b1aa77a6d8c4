//! Wire codec of concord-sync: the exact bytes that peers exchange.
//!
//! This module owns the frame format: the [`Frame`] type, its encoding and
//! decoding, and the hard limits ([`MAX_FRAME_BYTES`] and friends) that keep
//! a hostile or buggy peer from making a node allocate or work without bound.
//! It is pure: bytes in, [`Frame`] out, and back.
//!
//! It must never touch a replica, never do I/O, never read a clock, never
//! panic on any input, and never allocate based on an untrusted length before
//! checking that length against the remaining input and the limits. It knows
//! nothing of automerge or of other Concord crates: actor ids, changes and
//! sync messages are opaque byte strings here.
//!
//! # Format (version [`WIRE_VERSION`] = 2)
//!
//! ```text
//! frame        = version:u8 kind:u8 space body        (nothing after body)
//! space        = len:varint utf8-bytes                (len <= MAX_SPACE_NAME_BYTES)
//! epoch        = [u8; 32]                             (the sender's epoch id)
//! clock        = count:varint entry*count
//!                entry = actor_len:varint actor seq:varint
//!                (actor_len <= MAX_ACTOR_BYTES, no actor twice)
//!
//! kind 1  Changes      body = epoch count:varint change*count (count <= MAX_CHANGES_PER_FRAME)
//!                      change = len:varint bytes              (len <= MAX_CHANGE_BYTES)
//! kind 2  Digest       body = epoch flags:u8 heads_hash:[u8; 8] clock
//!                      flags: bit 0 = truncated, bit 1 = reply, bits 2..7 must be 0
//!                      (count <= MAX_CLOCK_ENTRIES)
//! kind 3  SyncMessage  body = epoch len:varint bytes          (len <= MAX_SYNC_MESSAGE_BYTES)
//! kind 4  Bye          body = reason:u8                       (see ByeReason)
//! kind 5  Ephemeral    body = count:varint entry*count        (count <= MAX_EPHEMERAL_PER_FRAME)
//!                      entry = path_len:varint path writer_len:varint writer
//!                              wall:varint logical:varint ttl_ms:varint
//!                              value_len:varint value
//!                      (path UTF-8, path_len <= MAX_PATH_BYTES,
//!                       writer_len <= MAX_ACTOR_BYTES, logical <= u32::MAX,
//!                       value_len <= MAX_EPHEMERAL_VALUE_BYTES)
//! kind 6  Epoch        body = epoch clock                     (the epoch's cut;
//!                                                              count <= MAX_CUT_ENTRIES)
//! kind 7  SnapshotRequest  body = epoch
//! kind 8  Snapshot     body = epoch total:varint offset:varint len:varint bytes
//!                      (total <= MAX_SNAPSHOT_BYTES, len <= MAX_SNAPSHOT_CHUNK_BYTES,
//!                       offset + len <= total)
//!
//! varint = unsigned LEB128 of a u64: 7 bits per byte, least significant
//!          group first, high bit set on every byte but the last; at most 10
//!          bytes and minimal (no redundant trailing zero groups).
//! ```
//!
//! The whole frame is at most [`MAX_FRAME_BYTES`]. The encoding is canonical:
//! a byte string that decodes to a frame is exactly what [`Frame::encode`]
//! produces for that frame, so `decode` then `encode` gives back the input.
//!
//! ```
//! use concord_sync::wire::{Frame, chunk_changes};
//!
//! let epoch = [0u8; 32];
//! let frames = chunk_changes("team", epoch, vec![b"change 1".to_vec(), b"change 2".to_vec()])?;
//! assert_eq!(frames.len(), 1);
//! let bytes = frames[0].encode()?;
//! assert_eq!(Frame::decode(&bytes)?, frames[0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors and what the caller does with them
//!
//! Encoding a frame that breaks a limit returns an [`EncodeError`]; use
//! [`chunk_changes`] to split a long list of changes, [`chunk_ephemeral`]
//! for ephemeral values, and [`Frame::digest`] to bound a large vector
//! clock. Decoding a malformed or oversized frame
//! returns a [`DecodeError`]; the sync engine then disconnects the peer and
//! scores it down, and the local replica is left untouched (the codec never
//! sees it anyway).
//!
//! # Digest truncation and the fallback
//!
//! A [`Frame::Digest`] carries at most [`MAX_CLOCK_ENTRIES`] clock entries.
//! A sender whose clock has more sets `truncated`; the entries it does send
//! are then only a hint. A receiver of a truncated digest must not compute a
//! clock-based delta from it (it could miss changes of the actors left out)
//! and must fall back to the automerge sync protocol
//! ([`Frame::SyncMessage`]) with that peer. The same fallback applies when
//! the clocks are equal but the heads hashes differ.

use std::collections::BTreeSet;
use std::fmt;

mod ephemeral;

pub use ephemeral::{
    EphemeralEntry, MAX_EPHEMERAL_PER_FRAME, MAX_EPHEMERAL_VALUE_BYTES, MAX_PATH_BYTES,
    chunk_ephemeral,
};

/// Version byte at the start of every frame. A frame with any other version
/// is rejected with [`DecodeError::UnsupportedVersion`].
pub const WIRE_VERSION: u8 = 2;

/// Largest encoded frame, in bytes, header included: 4 MiB.
///
/// The network layer sets gossipsub's (and request-response's) maximum
/// message size to this value, so any frame this codec accepts to encode can
/// be sent, and anything bigger is refused before decoding.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of [`MAX_FRAME_BYTES`] reserved for the frame header (version,
/// kind, space name, counts and length prefixes), so that a single change of
/// [`MAX_CHANGE_BYTES`] or a sync message of [`MAX_SYNC_MESSAGE_BYTES`]
/// always fits in one frame whatever the space name.
pub const FRAME_HEADROOM: usize = 1024;

/// Largest number of changes in one [`Frame::Changes`]. Longer lists are
/// split by [`chunk_changes`].
pub const MAX_CHANGES_PER_FRAME: usize = 1024;

/// Largest number of (actor, seq) entries in the clock of a
/// [`Frame::Digest`]. A sender with more sets `truncated` (see
/// [`Frame::digest`]) and the receiver falls back to the automerge sync
/// protocol.
pub const MAX_CLOCK_ENTRIES: usize = 256;

/// Largest space name, in bytes of UTF-8.
pub const MAX_SPACE_NAME_BYTES: usize = 128;

/// Largest actor id in a digest clock, in bytes (automerge actor ids are
/// usually 16 bytes; Concord's carry an incarnation number besides).
pub const MAX_ACTOR_BYTES: usize = 64;

/// Largest single change in a [`Frame::Changes`], in bytes. A bigger change
/// cannot be sent on the fast path; it reaches peers through the automerge
/// sync protocol instead (which the caller must then also keep under
/// [`MAX_SYNC_MESSAGE_BYTES`] per message).
pub const MAX_CHANGE_BYTES: usize = MAX_FRAME_BYTES - FRAME_HEADROOM;

/// Largest automerge sync message in a [`Frame::SyncMessage`], in bytes.
pub const MAX_SYNC_MESSAGE_BYTES: usize = MAX_FRAME_BYTES - FRAME_HEADROOM;

/// Largest number of entries in the cut of a [`Frame::Epoch`]: a cut holds
/// every actor that ever wrote to the space, and it cannot be truncated
/// (a peer needs all of it to adopt the epoch).
pub const MAX_CUT_ENTRIES: usize = 16 * 1024;

/// Largest first document of an epoch sent in [`Frame::Snapshot`]s.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

/// Largest piece of a snapshot in one [`Frame::Snapshot`].
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Bytes of an epoch id on the wire.
pub const EPOCH_BYTES: usize = 32;

/// Longest varint: 10 bytes hold 64 bits at 7 bits per byte.
const MAX_VARINT_BYTES: usize = 10;

/// Largest header of a Changes frame holding one change, or of a SyncMessage
/// frame: version, kind, space name with its prefix, count, length prefix.
const MAX_SINGLE_ITEM_HEADER: usize = 2
    + varint_len(MAX_SPACE_NAME_BYTES as u64)
    + MAX_SPACE_NAME_BYTES
    + EPOCH_BYTES
    + 1
    + MAX_VARINT_BYTES;

const _: () = assert!(MAX_CHANGE_BYTES + MAX_SINGLE_ITEM_HEADER <= MAX_FRAME_BYTES);
const _: () = assert!(MAX_SYNC_MESSAGE_BYTES + MAX_SINGLE_ITEM_HEADER <= MAX_FRAME_BYTES);
const _: () = assert!(
    MAX_SNAPSHOT_CHUNK_BYTES + MAX_SINGLE_ITEM_HEADER + EPOCH_BYTES + 2 * MAX_VARINT_BYTES
        <= MAX_FRAME_BYTES
);
const _: () = assert!(
    MAX_CUT_ENTRIES * (MAX_ACTOR_BYTES + 2 * MAX_VARINT_BYTES) + MAX_SINGLE_ITEM_HEADER
        <= MAX_FRAME_BYTES
);

const FLAG_TRUNCATED: u8 = 0b01;
const FLAG_REPLY: u8 = 0b10;

/// Which limit an [`EncodeError::TooLarge`] or [`DecodeError::TooLarge`]
/// is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The whole encoded frame, against [`MAX_FRAME_BYTES`].
    Frame,
    /// The space name, against [`MAX_SPACE_NAME_BYTES`].
    SpaceName,
    /// The number of changes in a frame, against [`MAX_CHANGES_PER_FRAME`].
    ChangesPerFrame,
    /// One change, against [`MAX_CHANGE_BYTES`].
    Change,
    /// The number of clock entries in a digest, against
    /// [`MAX_CLOCK_ENTRIES`].
    ClockEntries,
    /// One actor id in a digest clock, against [`MAX_ACTOR_BYTES`].
    Actor,
    /// One sync message, against [`MAX_SYNC_MESSAGE_BYTES`].
    SyncMessage,
    /// The entries of an epoch's cut, against [`MAX_CUT_ENTRIES`].
    CutEntries,
    /// A whole snapshot, against [`MAX_SNAPSHOT_BYTES`].
    Snapshot,
    /// One piece of a snapshot, against [`MAX_SNAPSHOT_CHUNK_BYTES`].
    SnapshotChunk,
    /// The number of entries in an ephemeral frame, against
    /// [`MAX_EPHEMERAL_PER_FRAME`].
    EphemeralPerFrame,
    /// One channel path of an ephemeral entry, against [`MAX_PATH_BYTES`].
    Path,
    /// One ephemeral value, against [`MAX_EPHEMERAL_VALUE_BYTES`].
    EphemeralValue,
}

impl Limit {
    /// The value of the limit.
    pub const fn max(self) -> usize {
        match self {
            Limit::Frame => MAX_FRAME_BYTES,
            Limit::SpaceName => MAX_SPACE_NAME_BYTES,
            Limit::ChangesPerFrame => MAX_CHANGES_PER_FRAME,
            Limit::Change => MAX_CHANGE_BYTES,
            Limit::ClockEntries => MAX_CLOCK_ENTRIES,
            Limit::Actor => MAX_ACTOR_BYTES,
            Limit::SyncMessage => MAX_SYNC_MESSAGE_BYTES,
            Limit::CutEntries => MAX_CUT_ENTRIES,
            Limit::Snapshot => MAX_SNAPSHOT_BYTES,
            Limit::SnapshotChunk => MAX_SNAPSHOT_CHUNK_BYTES,
            Limit::EphemeralPerFrame => MAX_EPHEMERAL_PER_FRAME,
            Limit::Path => MAX_PATH_BYTES,
            Limit::EphemeralValue => MAX_EPHEMERAL_VALUE_BYTES,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Frame => "frame bytes",
            Limit::SpaceName => "space name bytes",
            Limit::ChangesPerFrame => "changes per frame",
            Limit::Change => "change bytes",
            Limit::ClockEntries => "clock entries",
            Limit::Actor => "actor id bytes",
            Limit::SyncMessage => "sync message bytes",
            Limit::CutEntries => "cut entries",
            Limit::Snapshot => "snapshot bytes",
            Limit::SnapshotChunk => "snapshot chunk bytes",
            Limit::EphemeralPerFrame => "ephemeral values per frame",
            Limit::Path => "channel path bytes",
            Limit::EphemeralValue => "ephemeral value bytes",
        })
    }
}

/// Why a [`Frame`] could not be encoded. Nothing was produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A size or count is over its limit.
    #[error("{what} too large: {len} > {max}")]
    TooLarge {
        /// Which limit.
        what: Limit,
        /// The offending size or count.
        len: usize,
        /// The limit ([`Limit::max`]).
        max: usize,
    },
    /// The same actor appears twice in a digest clock.
    #[error("duplicate actor in digest clock at entry {index}")]
    DuplicateActor {
        /// Position of the second occurrence in the clock.
        index: usize,
    },
    /// A snapshot piece reaches past the snapshot's size.
    #[error("snapshot piece ends past the snapshot's size")]
    SnapshotRange,
}

/// Why bytes could not be decoded into a [`Frame`].
///
/// Every variant means the peer sent something this node does not accept:
/// the caller drops the frame, disconnects the peer and leaves its replica
/// untouched. [`DecodeError::UnsupportedVersion`] may come from a newer but
/// honest peer, so it deserves a disconnect without a bad score.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first byte is not [`WIRE_VERSION`].
    #[error("unsupported wire version {0} (this node speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// The frame kind byte names no known [`FrameKind`].
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The input ended in the middle of a field, or a length prefix points
    /// past its end.
    #[error("frame truncated while reading {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A size or count is over its limit (checked before anything is
    /// allocated for it).
    #[error("{what} too large: {len} > {max}")]
    TooLarge {
        /// Which limit.
        what: Limit,
        /// The declared or actual size or count.
        len: u64,
        /// The limit ([`Limit::max`]).
        max: u64,
    },
    /// Bytes remain after a complete frame.
    #[error("{count} trailing bytes after the frame")]
    TrailingBytes {
        /// How many bytes remain.
        count: usize,
    },
    /// The space name is not valid UTF-8.
    #[error("space name is not valid UTF-8")]
    InvalidUtf8,
    /// A varint does not fit in 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A varint has redundant trailing zero groups (the encoding is
    /// canonical, so this is malformed).
    #[error("non-canonical (overlong) varint")]
    NonCanonicalVarint,
    /// A digest's flags byte has a reserved bit set.
    #[error("unknown digest flags {0:#04x}")]
    UnknownFlags(u8),
    /// The same actor appears twice in a digest clock.
    #[error("duplicate actor in digest clock at entry {index}")]
    DuplicateActor {
        /// Position of the second occurrence in the clock.
        index: usize,
    },
    /// The reason byte of a bye frame names no known [`ByeReason`].
    #[error("unknown bye reason {0}")]
    UnknownByeReason(u8),
    /// A snapshot piece reaches past the snapshot's announced size.
    #[error("snapshot piece at {offset} of {len} bytes ends past the snapshot's {total} bytes")]
    SnapshotRange {
        /// Where the piece starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// The snapshot's size.
        total: u64,
    },
    /// An ephemeral entry's channel path is not valid UTF-8.
    #[error("ephemeral channel path is not valid UTF-8")]
    PathNotUtf8,
    /// An ephemeral entry's HLC logical part does not fit in 32 bits.
    #[error("hlc logical part {0} does not fit in 32 bits")]
    LogicalOverflow(u64),
}

/// The kind byte of a frame (second byte on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// [`Frame::Changes`].
    Changes = 1,
    /// [`Frame::Digest`].
    Digest = 2,
    /// [`Frame::SyncMessage`].
    SyncMessage = 3,
    /// [`Frame::Bye`].
    Bye = 4,
    /// [`Frame::Ephemeral`].
    Ephemeral = 5,
    /// [`Frame::Epoch`].
    Epoch = 6,
    /// [`Frame::SnapshotRequest`].
    SnapshotRequest = 7,
    /// [`Frame::Snapshot`].
    Snapshot = 8,
}

impl FrameKind {
    /// The byte on the wire.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The kind for a wire byte, if any.
    pub const fn from_code(code: u8) -> Option<FrameKind> {
        match code {
            1 => Some(FrameKind::Changes),
            2 => Some(FrameKind::Digest),
            3 => Some(FrameKind::SyncMessage),
            4 => Some(FrameKind::Bye),
            5 => Some(FrameKind::Ephemeral),
            6 => Some(FrameKind::Epoch),
            7 => Some(FrameKind::SnapshotRequest),
            8 => Some(FrameKind::Snapshot),
            _ => None,
        }
    }
}

/// Why a peer closes its session for a space ([`Frame::Bye`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByeReason {
    /// The node is shutting down.
    Shutdown = 0,
    /// The node stops replicating this space.
    LeavingSpace = 1,
    /// The peer sent something this node does not accept (a malformed or
    /// oversized frame, or a protocol violation).
    ProtocolViolation = 2,
    /// The peer is not allowed in this space.
    NotAllowed = 3,
    /// The peer is too slow or this node is overloaded (back-pressure).
    Overloaded = 4,
}

impl ByeReason {
    /// The byte on the wire.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The reason for a wire byte, if any.
    pub const fn from_code(code: u8) -> Option<ByeReason> {
        match code {
            0 => Some(ByeReason::Shutdown),
            1 => Some(ByeReason::LeavingSpace),
            2 => Some(ByeReason::ProtocolViolation),
            3 => Some(ByeReason::NotAllowed),
            4 => Some(ByeReason::Overloaded),
            _ => None,
        }
    }
}

/// One message between two peers about one space.
///
/// Every frame names its space (UTF-8, at most [`MAX_SPACE_NAME_BYTES`]).
/// See the [module documentation](self) for the byte layout and the limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame {
    /// The fast path: freshly committed automerge changes (raw bytes, in an
    /// order the receiver can apply: dependencies first), pushed on commit
    /// and also sent in answer to a digest. At most
    /// [`MAX_CHANGES_PER_FRAME`] changes of at most [`MAX_CHANGE_BYTES`]
    /// each; see [`chunk_changes`].
    Changes {
        /// The space the changes belong to.
        space: String,
        /// The epoch whose document the changes belong to.
        epoch: [u8; EPOCH_BYTES],
        /// Raw automerge changes.
        changes: Vec<Vec<u8>>,
    },
    /// Heartbeat and start of anti-entropy: the sender's vector clock and a
    /// short hash of its heads.
    ///
    /// If `truncated`, the sender's clock had more than
    /// [`MAX_CLOCK_ENTRIES`] entries and `clock` holds only some of them:
    /// the receiver must fall back to the automerge sync protocol
    /// ([`Frame::SyncMessage`]) instead of sending a clock-based delta.
    Digest {
        /// The space the clock belongs to.
        space: String,
        /// The sender's epoch: a receiver in another one answers with a
        /// [`Frame::Epoch`] instead of a delta.
        epoch: [u8; EPOCH_BYTES],
        /// Actor id -> highest change sequence number held, no actor twice,
        /// at most [`MAX_CLOCK_ENTRIES`] entries.
        clock: Vec<(Vec<u8>, u64)>,
        /// A short hash of the sender's heads (computed by the caller);
        /// equal clocks with different heads hashes mean the receiver must
        /// fall back to the automerge sync protocol.
        heads_hash: [u8; 8],
        /// The sender had more clock entries than fit: `clock` is partial.
        truncated: bool,
        /// The receiver is asked to answer with its own digest.
        reply: bool,
    },
    /// One message of automerge's own sync protocol (the fallback path), at
    /// most [`MAX_SYNC_MESSAGE_BYTES`].
    SyncMessage {
        /// The space the sync session is about.
        space: String,
        /// The epoch whose document the session is about.
        epoch: [u8; EPOCH_BYTES],
        /// An encoded automerge sync message.
        message: Vec<u8>,
    },
    /// Polite close of the session for this space.
    Bye {
        /// The space whose session closes.
        space: String,
        /// Why.
        reason: ByeReason,
    },
    /// The sender's epoch and its cut (every actor's logical sequence the
    /// cut holds, at most [`MAX_CUT_ENTRIES`]): a receiver whose own cut
    /// lacks part of it moves to the union of the two.
    Epoch {
        /// The space.
        space: String,
        /// The epoch.
        epoch: [u8; EPOCH_BYTES],
        /// Its cut, no actor twice.
        cut: Vec<(Vec<u8>, u64)>,
    },
    /// Asks for the first document of `epoch` (the receiver lacks changes
    /// of its cut).
    SnapshotRequest {
        /// The space.
        space: String,
        /// The epoch asked for.
        epoch: [u8; EPOCH_BYTES],
    },
    /// A piece of the first document of `epoch`: `chunk` is its bytes from
    /// `offset` on; `total` is its whole size.
    Snapshot {
        /// The space.
        space: String,
        /// The epoch.
        epoch: [u8; EPOCH_BYTES],
        /// Size of the whole document, at most [`MAX_SNAPSHOT_BYTES`].
        total: u64,
        /// Where this piece starts.
        offset: u64,
        /// The piece, at most [`MAX_SNAPSHOT_CHUNK_BYTES`].
        chunk: Vec<u8>,
    },
    /// Ephemeral values (heartbeats, presence): pushed on the fast path
    /// after local writes, and every live one to a peer that comes up. At
    /// most [`MAX_EPHEMERAL_PER_FRAME`] entries; see [`chunk_ephemeral`].
    Ephemeral {
        /// The space the values belong to.
        space: String,
        /// The values.
        entries: Vec<EphemeralEntry>,
    },
}

impl Frame {
    /// The space this frame is about.
    pub fn space(&self) -> &str {
        match self {
            Frame::Changes { space, .. }
            | Frame::Digest { space, .. }
            | Frame::SyncMessage { space, .. }
            | Frame::Bye { space, .. }
            | Frame::Epoch { space, .. }
            | Frame::SnapshotRequest { space, .. }
            | Frame::Snapshot { space, .. }
            | Frame::Ephemeral { space, .. } => space,
        }
    }

    /// The kind of this frame.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Changes { .. } => FrameKind::Changes,
            Frame::Digest { .. } => FrameKind::Digest,
            Frame::SyncMessage { .. } => FrameKind::SyncMessage,
            Frame::Bye { .. } => FrameKind::Bye,
            Frame::Epoch { .. } => FrameKind::Epoch,
            Frame::SnapshotRequest { .. } => FrameKind::SnapshotRequest,
            Frame::Snapshot { .. } => FrameKind::Snapshot,
            Frame::Ephemeral { .. } => FrameKind::Ephemeral,
        }
    }

    /// Builds a digest from a vector clock of any size.
    ///
    /// Keeps the first [`MAX_CLOCK_ENTRIES`] entries in iteration order (pass
    /// a sorted clock, e.g. a `BTreeMap`'s, for a deterministic choice) and
    /// sets `truncated` if any entry was left out. A receiver of a truncated
    /// digest must fall back to the automerge sync protocol.
    ///
    /// Errors if the space name or a kept actor id is over its limit, or a
    /// kept actor appears twice.
    pub fn digest(
        space: impl Into<String>,
        epoch: [u8; EPOCH_BYTES],
        clock: impl IntoIterator<Item = (Vec<u8>, u64)>,
        heads_hash: [u8; 8],
        reply: bool,
    ) -> Result<Frame, EncodeError> {
        let mut entries = clock.into_iter();
        let kept: Vec<(Vec<u8>, u64)> = entries.by_ref().take(MAX_CLOCK_ENTRIES).collect();
        let truncated = entries.next().is_some();
        let frame = Frame::Digest {
            space: space.into(),
            epoch,
            clock: kept,
            heads_hash,
            truncated,
            reply,
        };
        frame.validate()?;
        Ok(frame)
    }

    /// Size in bytes of this frame's encoding, computed without encoding it
    /// (and without checking the limits).
    pub fn encoded_len(&self) -> usize {
        let space = self.space().len();
        let header = 2 + varint_len(space as u64) + space;
        let body = match self {
            Frame::Changes { changes, .. } => changes.iter().fold(
                EPOCH_BYTES + varint_len(changes.len() as u64),
                |acc, change| acc.saturating_add(prefixed_len(change.len())),
            ),
            Frame::Digest { clock, .. } => EPOCH_BYTES + 1 + 8 + clock_len(clock),
            Frame::SyncMessage { message, .. } => EPOCH_BYTES + prefixed_len(message.len()),
            Frame::Bye { .. } => 1,
            Frame::Epoch { cut, .. } => EPOCH_BYTES + clock_len(cut),
            Frame::SnapshotRequest { .. } => EPOCH_BYTES,
            Frame::Snapshot {
                total,
                offset,
                chunk,
                ..
            } => EPOCH_BYTES + varint_len(*total) + varint_len(*offset) + prefixed_len(chunk.len()),
            Frame::Ephemeral { entries, .. } => entries
                .iter()
                .fold(varint_len(entries.len() as u64), |acc, entry| {
                    acc.saturating_add(entry.encoded_len())
                }),
        };
        header.saturating_add(body)
    }

    /// Checks every limit and invariant that [`Frame::encode`] checks,
    /// without encoding.
    pub fn validate(&self) -> Result<(), EncodeError> {
        check(Limit::SpaceName, self.space().len())?;
        match self {
            Frame::Changes { changes, .. } => {
                check(Limit::ChangesPerFrame, changes.len())?;
                for change in changes {
                    check(Limit::Change, change.len())?;
                }
            }
            Frame::Digest { clock, .. } => validate_clock(clock, Limit::ClockEntries)?,
            Frame::SyncMessage { message, .. } => check(Limit::SyncMessage, message.len())?,
            Frame::Bye { .. } | Frame::SnapshotRequest { .. } => {}
            Frame::Epoch { cut, .. } => validate_clock(cut, Limit::CutEntries)?,
            Frame::Snapshot {
                total,
                offset,
                chunk,
                ..
            } => {
                check(Limit::SnapshotChunk, chunk.len())?;
                check(
                    Limit::Snapshot,
                    usize::try_from(*total).unwrap_or(usize::MAX),
                )?;
                if offset.saturating_add(chunk.len() as u64) > *total {
                    return Err(EncodeError::SnapshotRange);
                }
            }
            Frame::Ephemeral { entries, .. } => {
                check(Limit::EphemeralPerFrame, entries.len())?;
                for entry in entries {
                    entry.validate()?;
                }
            }
        }
        check(Limit::Frame, self.encoded_len())
    }

    /// Encodes this frame, or says which limit it breaks.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.validate()?;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(WIRE_VERSION);
        out.push(self.kind().code());
        put_bytes(&mut out, self.space().as_bytes());
        match self {
            Frame::Changes { epoch, changes, .. } => {
                out.extend_from_slice(epoch);
                encode_varint(changes.len() as u64, &mut out);
                for change in changes {
                    put_bytes(&mut out, change);
                }
            }
            Frame::Digest {
                epoch,
                clock,
                heads_hash,
                truncated,
                reply,
                ..
            } => {
                out.extend_from_slice(epoch);
                let mut flags = 0;
                if *truncated {
                    flags |= FLAG_TRUNCATED;
                }
                if *reply {
                    flags |= FLAG_REPLY;
                }
                out.push(flags);
                out.extend_from_slice(heads_hash);
                put_clock(&mut out, clock);
            }
            Frame::SyncMessage { epoch, message, .. } => {
                out.extend_from_slice(epoch);
                put_bytes(&mut out, message);
            }
            Frame::Bye { reason, .. } => out.push(reason.code()),
            Frame::Epoch { epoch, cut, .. } => {
                out.extend_from_slice(epoch);
                put_clock(&mut out, cut);
            }
            Frame::SnapshotRequest { epoch, .. } => out.extend_from_slice(epoch),
            Frame::Snapshot {
                epoch,
                total,
                offset,
                chunk,
                ..
            } => {
                out.extend_from_slice(epoch);
                encode_varint(*total, &mut out);
                encode_varint(*offset, &mut out);
                put_bytes(&mut out, chunk);
            }
            Frame::Ephemeral { entries, .. } => {
                encode_varint(entries.len() as u64, &mut out);
                for entry in entries {
                    entry.encode(&mut out);
                }
            }
        }
        debug_assert_eq!(out.len(), self.encoded_len());
        Ok(out)
    }

    /// Decodes one frame that must fill `bytes` exactly.
    ///
    /// Never panics, and allocates only for lengths already checked against
    /// the remaining input and the limits.
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(too_large(Limit::Frame, bytes.len() as u64));
        }
        let mut r = Reader { rest: bytes };
        let version = r.u8("version")?;
        if version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind_code = r.u8("frame kind")?;
        let kind = FrameKind::from_code(kind_code).ok_or(DecodeError::UnknownKind(kind_code))?;
        let space_bytes = r.prefixed("space name", Limit::SpaceName)?;
        let space = std::str::from_utf8(space_bytes)
            .map_err(|_| DecodeError::InvalidUtf8)?
            .to_owned();
        let frame = match kind {
            FrameKind::Changes => {
                let epoch = r.array::<EPOCH_BYTES>("epoch")?;
                // Every change takes at least one byte (its length prefix).
                let count = r.count("change count", Limit::ChangesPerFrame, 1)?;
                let mut changes = Vec::with_capacity(count);
                for _ in 0..count {
                    changes.push(r.prefixed("change", Limit::Change)?.to_vec());
                }
                Frame::Changes {
                    space,
                    epoch,
                    changes,
                }
            }
            FrameKind::Digest => {
                let epoch = r.array::<EPOCH_BYTES>("epoch")?;
                let flags = r.u8("digest flags")?;
                if flags & !(FLAG_TRUNCATED | FLAG_REPLY) != 0 {
                    return Err(DecodeError::UnknownFlags(flags));
                }
                let heads_hash = r.array::<8>("heads hash")?;
                let clock = r.clock(Limit::ClockEntries)?;
                Frame::Digest {
                    space,
                    epoch,
                    clock,
                    heads_hash,
                    truncated: flags & FLAG_TRUNCATED != 0,
                    reply: flags & FLAG_REPLY != 0,
                }
            }
            FrameKind::SyncMessage => {
                let epoch = r.array::<EPOCH_BYTES>("epoch")?;
                let message = r.prefixed("sync message", Limit::SyncMessage)?.to_vec();
                Frame::SyncMessage {
                    space,
                    epoch,
                    message,
                }
            }
            FrameKind::Bye => {
                let code = r.u8("bye reason")?;
                let reason =
                    ByeReason::from_code(code).ok_or(DecodeError::UnknownByeReason(code))?;
                Frame::Bye { space, reason }
            }
            FrameKind::Epoch => {
                let epoch = r.array::<EPOCH_BYTES>("epoch")?;
                let cut = r.clock(Limit::CutEntries)?;
                Frame::Epoch { space, epoch, cut }
            }
            FrameKind::SnapshotRequest => {
                let epoch = r.array::<EPOCH_BYTES>("epoch")?;
                Frame::SnapshotRequest { space, epoch }
            }
            FrameKind::Snapshot => {
                let epoch = r.array::<EPOCH_BYTES>("epoch")?;
                let total = r.varint("snapshot size")?;
                if total > MAX_SNAPSHOT_BYTES as u64 {
                    return Err(too_large(Limit::Snapshot, total));
                }
                let offset = r.varint("snapshot offset")?;
                let chunk = r.prefixed("snapshot piece", Limit::SnapshotChunk)?.to_vec();
                let len = chunk.len() as u64;
                if offset.saturating_add(len) > total {
                    return Err(DecodeError::SnapshotRange { offset, len, total });
                }
                Frame::Snapshot {
                    space,
                    epoch,
                    total,
                    offset,
                    chunk,
                }
            }
            FrameKind::Ephemeral => {
                let count = r.count(
                    "ephemeral entry count",
                    Limit::EphemeralPerFrame,
                    ephemeral::MIN_ENTRY_BYTES,
                )?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    entries.push(EphemeralEntry::decode(&mut r)?);
                }
                Frame::Ephemeral { space, entries }
            }
        };
        if !r.rest.is_empty() {
            return Err(DecodeError::TrailingBytes {
                count: r.rest.len(),
            });
        }
        Ok(frame)
    }
}

/// Splits a list of changes into as few [`Frame::Changes`] as the limits
/// allow, keeping their order (so dependencies still come first), each frame
/// within [`MAX_CHANGES_PER_FRAME`] and [`MAX_FRAME_BYTES`]. No changes give
/// no frames.
///
/// Errors if the space name is over [`MAX_SPACE_NAME_BYTES`] or a single
/// change is over [`MAX_CHANGE_BYTES`] (such a change can only travel
/// through the automerge sync protocol).
pub fn chunk_changes(
    space: &str,
    epoch: [u8; EPOCH_BYTES],
    changes: impl IntoIterator<Item = Vec<u8>>,
) -> Result<Vec<Frame>, EncodeError> {
    chunk_items(
        space,
        EPOCH_BYTES,
        changes,
        MAX_CHANGES_PER_FRAME,
        |change| check(Limit::Change, change.len()).map(|()| prefixed_len(change.len())),
        |space, changes| Frame::Changes {
            space,
            epoch,
            changes,
        },
    )
}

/// Splits `items` into as few frames (built by `frame`) of a count-prefixed
/// list as `max_count` and [`MAX_FRAME_BYTES`] allow, keeping their order.
/// `fixed` is the frame's bytes between the space name and the list;
/// `measure` checks an item's own limits and gives its encoded size.
fn chunk_items<T>(
    space: &str,
    fixed: usize,
    items: impl IntoIterator<Item = T>,
    max_count: usize,
    measure: impl Fn(&T) -> Result<usize, EncodeError>,
    frame: impl Fn(String, Vec<T>) -> Frame,
) -> Result<Vec<Frame>, EncodeError> {
    check(Limit::SpaceName, space.len())?;
    let header = 2 + varint_len(space.len() as u64) + space.len() + fixed;
    let mut frames = Vec::new();
    let mut current: Vec<T> = Vec::new();
    // Encoded bytes of the items in `current`.
    let mut body = 0usize;
    for item in items {
        let size = measure(&item)?;
        let count = current.len() + 1;
        let total = header + varint_len(count as u64) + body + size;
        if !current.is_empty() && (count > max_count || total > MAX_FRAME_BYTES) {
            frames.push(frame(space.to_owned(), std::mem::take(&mut current)));
            body = 0;
        }
        body += size;
        current.push(item);
    }
    if !current.is_empty() {
        frames.push(frame(space.to_owned(), current));
    }
    Ok(frames)
}

/// Splits the first document of an epoch into [`Frame::Snapshot`] pieces of
/// at most [`MAX_SNAPSHOT_CHUNK_BYTES`] (an empty document gives one empty
/// piece). Errors if it is over [`MAX_SNAPSHOT_BYTES`].
pub fn chunk_snapshot(
    space: &str,
    epoch: [u8; EPOCH_BYTES],
    snapshot: &[u8],
) -> Result<Vec<Frame>, EncodeError> {
    check(Limit::SpaceName, space.len())?;
    check(Limit::Snapshot, snapshot.len())?;
    let total = snapshot.len() as u64;
    let mut frames: Vec<Frame> = snapshot
        .chunks(MAX_SNAPSHOT_CHUNK_BYTES)
        .enumerate()
        .map(|(i, chunk)| Frame::Snapshot {
            space: space.to_owned(),
            epoch,
            total,
            offset: (i * MAX_SNAPSHOT_CHUNK_BYTES) as u64,
            chunk: chunk.to_vec(),
        })
        .collect();
    if frames.is_empty() {
        frames.push(Frame::Snapshot {
            space: space.to_owned(),
            epoch,
            total: 0,
            offset: 0,
            chunk: Vec::new(),
        });
    }
    Ok(frames)
}

/// Size of an encoded clock.
fn clock_len(clock: &[(Vec<u8>, u64)]) -> usize {
    clock
        .iter()
        .fold(varint_len(clock.len() as u64), |acc, (actor, seq)| {
            acc.saturating_add(prefixed_len(actor.len()) + varint_len(*seq))
        })
}

fn validate_clock(clock: &[(Vec<u8>, u64)], limit: Limit) -> Result<(), EncodeError> {
    check(limit, clock.len())?;
    let mut seen = BTreeSet::new();
    for (index, (actor, _)) in clock.iter().enumerate() {
        check(Limit::Actor, actor.len())?;
        if !seen.insert(actor.as_slice()) {
            return Err(EncodeError::DuplicateActor { index });
        }
    }
    Ok(())
}

fn put_clock(out: &mut Vec<u8>, clock: &[(Vec<u8>, u64)]) {
    encode_varint(clock.len() as u64, out);
    for (actor, seq) in clock {
        put_bytes(out, actor);
        encode_varint(*seq, out);
    }
}

/// Number of bytes of the LEB128 varint encoding of `value` (1 to 10).
pub const fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends the LEB128 varint encoding of `value` (1 to 10 bytes) to `out`.
pub fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes a canonical LEB128 varint at the start of `bytes`; returns the
/// value and the number of bytes it took.
///
/// Errors: [`DecodeError::Truncated`] if `bytes` ends inside it,
/// [`DecodeError::VarintOverflow`] if it does not fit in a `u64`,
/// [`DecodeError::NonCanonicalVarint`] if it is overlong.
pub fn decode_varint(bytes: &[u8]) -> Result<(u64, usize), DecodeError> {
    read_varint(bytes, "varint")
}

fn read_varint(bytes: &[u8], what: &'static str) -> Result<(u64, usize), DecodeError> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate() {
        let group = u64::from(byte & 0x7f);
        if i == MAX_VARINT_BYTES - 1 && byte > 1 {
            // The tenth byte carries bit 63 only.
            return Err(DecodeError::VarintOverflow);
        }
        value |= group << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(DecodeError::NonCanonicalVarint);
            }
            return Ok((value, i + 1));
        }
    }
    Err(DecodeError::Truncated { what })
}

fn check(what: Limit, len: usize) -> Result<(), EncodeError> {
    let max = what.max();
    if len > max {
        return Err(EncodeError::TooLarge { what, len, max });
    }
    Ok(())
}

fn too_large(what: Limit, len: u64) -> DecodeError {
    DecodeError::TooLarge {
        what,
        len,
        max: what.max() as u64,
    }
}

/// Size of a byte string with its varint length prefix.
fn prefixed_len(len: usize) -> usize {
    varint_len(len as u64).saturating_add(len)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Cursor over the not yet decoded part of a frame.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated { what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let (&byte, tail) = self
            .rest
            .split_first()
            .ok_or(DecodeError::Truncated { what })?;
        self.rest = tail;
        Ok(byte)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let (value, used) = read_varint(self.rest, what)?;
        self.rest = self.rest.get(used..).unwrap_or_default();
        Ok(value)
    }

    /// A length-prefixed byte string: the length is checked against `limit`
    /// and then against the remaining input before anything is taken.
    fn prefixed(&mut self, what: &'static str, limit: Limit) -> Result<&'a [u8], DecodeError> {
        let len = self.varint(what)?;
        if len > limit.max() as u64 {
            return Err(too_large(limit, len));
        }
        // len <= limit.max(), a usize, so the conversion is lossless.
        self.take(len as usize, what)
    }

    /// A clock of at most `limit` entries, no actor twice.
    fn clock(&mut self, limit: Limit) -> Result<Vec<(Vec<u8>, u64)>, DecodeError> {
        // Every entry takes at least two bytes (actor prefix, seq).
        let count = self.count("clock entry count", limit, 2)?;
        let mut clock = Vec::with_capacity(count);
        let mut seen = BTreeSet::new();
        for index in 0..count {
            let actor = self.prefixed("actor id", Limit::Actor)?;
            if !seen.insert(actor) {
                return Err(DecodeError::DuplicateActor { index });
            }
            let seq = self.varint("clock seq")?;
            clock.push((actor.to_vec(), seq));
        }
        Ok(clock)
    }

    /// A count of items, each at least `min_item_bytes` long: checked
    /// against `limit` and against what the remaining input could hold, so
    /// that it is safe to allocate for.
    fn count(
        &mut self,
        what: &'static str,
        limit: Limit,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.varint(what)?;
        if count > limit.max() as u64 {
            return Err(too_large(limit, count));
        }
        // count <= limit.max(), a usize, so the conversion is lossless.
        let count = count as usize;
        if count.saturating_mul(min_item_bytes) > self.rest.len() {
            return Err(DecodeError::Truncated { what });
        }
        Ok(count)
    }
}
