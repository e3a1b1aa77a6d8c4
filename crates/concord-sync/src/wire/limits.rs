//! The hard limits of the wire codec ([`MAX_FRAME_BYTES`] and friends) and
//! [`Limit`], which names them in errors. Every size or count that a peer
//! controls is checked against one of these before anything is allocated
//! for it.
//!
//! This module owns the numbers and the compile-time proofs that the
//! largest single item always fits in a frame; it never encodes or decodes.

use std::fmt;

use super::{MAX_EPHEMERAL_PER_FRAME, MAX_EPHEMERAL_VALUE_BYTES, MAX_PATH_BYTES, varint_len};

/// Version byte at the start of every frame. A frame with any other version
/// is rejected with [`DecodeError::UnsupportedVersion`](super::DecodeError::UnsupportedVersion).
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

/// Largest number of changes in one [`Frame::Changes`](super::Frame::Changes). Longer lists are
/// split by [`chunk_changes`](super::chunk_changes).
pub const MAX_CHANGES_PER_FRAME: usize = 1024;

/// Largest number of (actor, seq) entries in the clock of a
/// [`Frame::Digest`](super::Frame::Digest). A sender with more sets `truncated` (see
/// [`Frame::digest`](super::Frame::digest)) and the receiver falls back to the automerge sync
/// protocol.
pub const MAX_CLOCK_ENTRIES: usize = 256;

/// Largest space name, in bytes of UTF-8.
pub const MAX_SPACE_NAME_BYTES: usize = 128;

/// Largest actor id in a digest clock, in bytes (automerge actor ids are
/// usually 16 bytes; Concord's carry an incarnation number besides).
pub const MAX_ACTOR_BYTES: usize = 64;

/// Largest single change in a [`Frame::Changes`](super::Frame::Changes), in bytes. A bigger change
/// cannot be sent on the fast path; it reaches peers through the automerge
/// sync protocol instead (which the caller must then also keep under
/// [`MAX_SYNC_MESSAGE_BYTES`] per message).
pub const MAX_CHANGE_BYTES: usize = MAX_FRAME_BYTES - FRAME_HEADROOM;

/// Largest automerge sync message in a [`Frame::SyncMessage`](super::Frame::SyncMessage), in bytes.
pub const MAX_SYNC_MESSAGE_BYTES: usize = MAX_FRAME_BYTES - FRAME_HEADROOM;

/// Largest number of entries in the cut of a [`Frame::Epoch`](super::Frame::Epoch): a cut holds
/// every actor that ever wrote to the space, and it cannot be truncated
/// (a peer needs all of it to adopt the epoch).
pub const MAX_CUT_ENTRIES: usize = 16 * 1024;

/// Largest first document of an epoch sent in [`Frame::Snapshot`](super::Frame::Snapshot)s.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

/// Largest piece of a snapshot in one [`Frame::Snapshot`](super::Frame::Snapshot).
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Bytes of an epoch id on the wire.
pub const EPOCH_BYTES: usize = 32;

/// Most space keys in one [`NodeFrame::Spaces`](super::NodeFrame::Spaces):
/// the most spaces a node offers one peer, in one frame (so a list never
/// needs reassembly).
pub const MAX_SPACE_KEYS: usize = 65_536;

/// Most nodes in one [`NodeFrame::Buckets`](super::NodeFrame::Buckets).
pub const MAX_BUCKET_NODES: usize = 256;

/// Most leaves in one [`NodeFrame::Leaves`](super::NodeFrame::Leaves).
pub const MAX_LEAVES_PER_FRAME: usize = 4_096;

/// Children of a bucket of the summary tree: one per hex digit of a space
/// key (see [`Prefix`](super::Prefix)).
pub const TREE_FANOUT: usize = 16;

/// Longest varint: 10 bytes hold 64 bits at 7 bits per byte.
pub(super) const MAX_VARINT_BYTES: usize = 10;

/// Largest header of a Changes frame holding one change, or of a SyncMessage
/// frame: version, kind, space name with its prefix, count, length prefix.
pub(super) const MAX_SINGLE_ITEM_HEADER: usize = 2
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
// Node-level frames at their limits fit a frame: a whole list of keys, the
// most bucket nodes with every child, the most leaves.
const _: () =
    assert!(MAX_SPACE_KEYS * super::SPACE_KEY_BYTES + 3 + 3 * MAX_VARINT_BYTES <= MAX_FRAME_BYTES);
const _: () = assert!(
    MAX_BUCKET_NODES
        * (1 + 2 * MAX_VARINT_BYTES
            + TREE_FANOUT * (1 + MAX_VARINT_BYTES + super::TREE_HASH_BYTES))
        + 3
        + MAX_VARINT_BYTES
        <= MAX_FRAME_BYTES
);
const _: () = assert!(
    MAX_LEAVES_PER_FRAME * (super::SPACE_KEY_BYTES + super::TREE_HASH_BYTES) + 3 + MAX_VARINT_BYTES
        <= MAX_FRAME_BYTES
);

/// Which limit an [`EncodeError::TooLarge`](super::EncodeError::TooLarge) or [`DecodeError::TooLarge`](super::DecodeError::TooLarge)
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
    /// The keys of a space list, or the spaces a summary or a bucket
    /// counts, against [`MAX_SPACE_KEYS`].
    SpaceKeys,
    /// The nodes of a buckets frame, against [`MAX_BUCKET_NODES`].
    BucketNodes,
    /// The children of one bucket node, against [`TREE_FANOUT`].
    BucketChildren,
    /// The leaves of a leaves frame, against [`MAX_LEAVES_PER_FRAME`].
    Leaves,
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
            Limit::SpaceKeys => MAX_SPACE_KEYS,
            Limit::BucketNodes => MAX_BUCKET_NODES,
            Limit::BucketChildren => TREE_FANOUT,
            Limit::Leaves => MAX_LEAVES_PER_FRAME,
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
            Limit::SpaceKeys => "space keys",
            Limit::BucketNodes => "bucket nodes per frame",
            Limit::BucketChildren => "children per bucket",
            Limit::Leaves => "leaves per frame",
        })
    }
}
