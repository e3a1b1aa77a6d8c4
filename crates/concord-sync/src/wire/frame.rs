//! The frames about one space (kinds 1 to 8): [`Frame`], [`FrameKind`],
//! [`ByeReason`], and the encoding and decoding of a whole frame. See the
//! [parent module](super) for the byte layout.
//!
//! This module owns the mapping between a [`Frame`] value and its bytes; it
//! never panics on any input and checks every length before allocating.

use super::{
    DecodeError, EPOCH_BYTES, EncodeError, EphemeralEntry, Limit, MAX_CLOCK_ENTRIES,
    MAX_FRAME_BYTES, MAX_SNAPSHOT_BYTES, Reader, WIRE_VERSION, check, clock_len, encode_varint,
    ephemeral, prefixed_len, put_bytes, put_clock, too_large, validate_clock, varint_len,
};

const FLAG_TRUNCATED: u8 = 0b01;
const FLAG_REPLY: u8 = 0b10;

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
    /// [`NodeFrame::Spaces`](super::NodeFrame::Spaces) (node-level).
    Spaces = 9,
    /// [`NodeFrame::Summary`](super::NodeFrame::Summary) (node-level).
    Summary = 10,
    /// [`NodeFrame::Buckets`](super::NodeFrame::Buckets) (node-level).
    Buckets = 11,
    /// [`NodeFrame::Leaves`](super::NodeFrame::Leaves) (node-level).
    Leaves = 12,
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
            9 => Some(FrameKind::Spaces),
            10 => Some(FrameKind::Summary),
            11 => Some(FrameKind::Buckets),
            12 => Some(FrameKind::Leaves),
            _ => None,
        }
    }

    /// Whether frames of this kind concern the node and every space it
    /// shares with the receiver ([`NodeFrame`](super::NodeFrame)) rather
    /// than one space ([`Frame`]).
    pub const fn is_node_level(self) -> bool {
        self.code() >= FrameKind::Spaces.code()
    }
}

/// The header every frame starts with: its kind and the space it names
/// (empty for a node-level kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The frame's kind.
    pub kind: FrameKind,
    /// The space a frame of a space names; empty for a node-level frame.
    pub space: &'a str,
}

/// Reads the header of a frame without decoding its body: what a node
/// needs to hand the frame to the right machine.
///
/// Errors as [`Frame::decode`] does on a bad header, and with
/// [`DecodeError::NamedNodeFrame`] when a node-level frame names a space.
pub fn peek(bytes: &[u8]) -> Result<Header<'_>, DecodeError> {
    open(bytes).map(|(_, header)| header)
}

/// Checks a frame's size and reads its header: the reader then stands at
/// the body.
pub(super) fn open(bytes: &[u8]) -> Result<(Reader<'_>, Header<'_>), DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(too_large(Limit::Frame, bytes.len() as u64));
    }
    let mut r = Reader { rest: bytes };
    let header = read_header(&mut r)?;
    Ok((r, header))
}

/// Reads version, kind and space name; a node-level kind must name none.
fn read_header<'a>(r: &mut Reader<'a>) -> Result<Header<'a>, DecodeError> {
    let version = r.u8("version")?;
    if version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let code = r.u8("frame kind")?;
    let kind = FrameKind::from_code(code).ok_or(DecodeError::UnknownKind(code))?;
    let space_bytes = r.prefixed("space name", Limit::SpaceName)?;
    let space = std::str::from_utf8(space_bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    if kind.is_node_level() && !space.is_empty() {
        return Err(DecodeError::NamedNodeFrame);
    }
    Ok(Header { kind, space })
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
/// Every frame names its space (UTF-8, at most [`MAX_SPACE_NAME_BYTES`](super::MAX_SPACE_NAME_BYTES)).
/// See the [module documentation](super) for the byte layout and the limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame {
    /// The fast path: freshly committed automerge changes (raw bytes, in an
    /// order the receiver can apply: dependencies first), pushed on commit
    /// and also sent in answer to a digest. At most
    /// [`MAX_CHANGES_PER_FRAME`](super::MAX_CHANGES_PER_FRAME) changes of at most [`MAX_CHANGE_BYTES`](super::MAX_CHANGE_BYTES)
    /// each; see [`chunk_changes`](super::chunk_changes).
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
    /// most [`MAX_SYNC_MESSAGE_BYTES`](super::MAX_SYNC_MESSAGE_BYTES).
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
    /// cut holds, at most [`MAX_CUT_ENTRIES`](super::MAX_CUT_ENTRIES)): a receiver whose own cut
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
        /// The piece, at most [`MAX_SNAPSHOT_CHUNK_BYTES`](super::MAX_SNAPSHOT_CHUNK_BYTES).
        chunk: Vec<u8>,
    },
    /// Ephemeral values (heartbeats, presence): pushed on the fast path
    /// after local writes, and every live one to a peer that comes up. At
    /// most [`MAX_EPHEMERAL_PER_FRAME`](super::MAX_EPHEMERAL_PER_FRAME) entries; see [`chunk_ephemeral`](super::chunk_ephemeral).
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
        let (mut r, Header { kind, space }) = open(bytes)?;
        let space = space.to_owned();
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
            FrameKind::Spaces | FrameKind::Summary | FrameKind::Buckets | FrameKind::Leaves => {
                return Err(DecodeError::NotASpaceFrame(kind.code()));
            }
        };
        r.finish()?;
        Ok(frame)
    }
}
