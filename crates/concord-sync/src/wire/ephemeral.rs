//! The entries of [`Frame::Ephemeral`] (kind 5): ephemeral values
//! (heartbeats, presence) that travel between peers but never enter the
//! document. See the [parent module](super) for the frame layout.
//!
//! This module owns the entry's encoding and limits and the helper that
//! splits many entries into frames. Like the rest of the codec it is pure:
//! it never interprets a path, an actor id or a value (the replica does),
//! never panics, and checks every length before allocating for it.

use super::{
    DecodeError, EncodeError, Frame, Limit, MAX_ACTOR_BYTES, MAX_FRAME_BYTES, Reader, check,
    chunk_items, encode_varint, prefixed_len, put_bytes, varint_len,
};

/// Largest number of entries in one [`Frame::Ephemeral`]. Longer lists are
/// split by [`chunk_ephemeral`].
pub const MAX_EPHEMERAL_PER_FRAME: usize = 1024;

/// Longest channel path of an entry, in bytes of UTF-8 (Concord's paths are
/// at most a family, a slash and 128 bytes of name).
pub const MAX_PATH_BYTES: usize = 256;

/// Largest value of an entry, in bytes (the replica's own limit on a value
/// is the same 64 KiB).
pub const MAX_EPHEMERAL_VALUE_BYTES: usize = 64 * 1024;

/// Every entry takes at least this many bytes: six one-byte varints (the
/// path, writer and value lengths, wall, logical, ttl).
pub(super) const MIN_ENTRY_BYTES: usize = 6;

/// Largest encoded entry.
const MAX_ENTRY_BYTES: usize =
    10 + MAX_PATH_BYTES + 10 + MAX_ACTOR_BYTES + 10 + 5 + 10 + 10 + MAX_EPHEMERAL_VALUE_BYTES;

// One entry always fits in a frame, whatever the space name.
const _: () = assert!(MAX_ENTRY_BYTES + super::MAX_SINGLE_ITEM_HEADER <= MAX_FRAME_BYTES);

/// One ephemeral value on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EphemeralEntry {
    /// The channel path (UTF-8, at most [`MAX_PATH_BYTES`]).
    pub path: String,
    /// The writer's actor id (at most [`MAX_ACTOR_BYTES`]).
    pub writer: Vec<u8>,
    /// The write's hybrid logical clock, physical part (ms).
    pub wall: u64,
    /// The write's hybrid logical clock, logical part.
    pub logical: u32,
    /// How long the value lives after `wall`, in ms.
    pub ttl_ms: u64,
    /// The value (JSON, opaque here; at most [`MAX_EPHEMERAL_VALUE_BYTES`]).
    pub value: Vec<u8>,
}

impl EphemeralEntry {
    /// Size of the entry's encoding.
    pub(super) fn encoded_len(&self) -> usize {
        prefixed_len(self.path.len())
            .saturating_add(prefixed_len(self.writer.len()))
            .saturating_add(varint_len(self.wall))
            .saturating_add(varint_len(u64::from(self.logical)))
            .saturating_add(varint_len(self.ttl_ms))
            .saturating_add(prefixed_len(self.value.len()))
    }

    /// Checks the entry's own limits.
    pub(super) fn validate(&self) -> Result<(), EncodeError> {
        check(Limit::Path, self.path.len())?;
        check(Limit::Actor, self.writer.len())?;
        check(Limit::EphemeralValue, self.value.len())
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.path.as_bytes());
        put_bytes(out, &self.writer);
        encode_varint(self.wall, out);
        encode_varint(u64::from(self.logical), out);
        encode_varint(self.ttl_ms, out);
        put_bytes(out, &self.value);
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<EphemeralEntry, DecodeError> {
        let path = std::str::from_utf8(r.prefixed("ephemeral path", Limit::Path)?)
            .map_err(|_| DecodeError::PathNotUtf8)?
            .to_owned();
        let writer = r.prefixed("ephemeral writer", Limit::Actor)?.to_vec();
        let wall = r.varint("ephemeral hlc wall")?;
        let logical = r.varint("ephemeral hlc logical")?;
        let logical = u32::try_from(logical).map_err(|_| DecodeError::LogicalOverflow(logical))?;
        let ttl_ms = r.varint("ephemeral ttl")?;
        let value = r
            .prefixed("ephemeral value", Limit::EphemeralValue)?
            .to_vec();
        Ok(EphemeralEntry {
            path,
            writer,
            wall,
            logical,
            ttl_ms,
            value,
        })
    }
}

/// Splits ephemeral entries into as few [`Frame::Ephemeral`] as the limits
/// allow, keeping their order, each frame within
/// [`MAX_EPHEMERAL_PER_FRAME`] and [`MAX_FRAME_BYTES`]. No entries give no
/// frames.
///
/// Errors if the space name is over its limit or an entry breaks one of
/// its own (path, writer or value size).
///
/// ```
/// use concord_sync::wire::{EphemeralEntry, Frame, chunk_ephemeral};
///
/// let beat = EphemeralEntry {
///     path: "observation/agent-7.heartbeat".into(),
///     writer: vec![7; 16],
///     wall: 1_700_000_000_000,
///     logical: 0,
///     ttl_ms: 5_000,
///     value: br#"{"beat":1}"#.to_vec(),
/// };
/// let frames = chunk_ephemeral("team", vec![beat])?;
/// let bytes = frames[0].encode()?;
/// assert_eq!(Frame::decode(&bytes)?, frames[0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn chunk_ephemeral(
    space: &str,
    entries: impl IntoIterator<Item = EphemeralEntry>,
) -> Result<Vec<Frame>, EncodeError> {
    chunk_items(
        space,
        0,
        entries,
        MAX_EPHEMERAL_PER_FRAME,
        |entry| entry.validate().map(|()| entry.encoded_len()),
        |space, entries| Frame::Ephemeral { space, entries },
    )
}
