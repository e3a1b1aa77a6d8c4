//! Why a frame could not be encoded ([`EncodeError`]) or decoded
//! ([`DecodeError`]). Owns the error types only; it never inspects bytes.

use super::{Limit, WIRE_VERSION};

/// Why a [`Frame`](super::Frame) could not be encoded. Nothing was produced.
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
    /// A node-level frame breaks a rule of the canonical encoding (say,
    /// space keys out of order); the text says which.
    #[error("not canonical: {0}")]
    NotCanonical(&'static str),
}

/// Why bytes could not be decoded into a [`Frame`](super::Frame).
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
    /// The frame kind byte names no known [`FrameKind`](super::FrameKind).
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
    /// A digest's or summary's flags byte has a reserved bit set.
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// The same actor appears twice in a digest clock.
    #[error("duplicate actor in digest clock at entry {index}")]
    DuplicateActor {
        /// Position of the second occurrence in the clock.
        index: usize,
    },
    /// The reason byte of a bye frame names no known [`ByeReason`](super::ByeReason).
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
    /// A node-level kind given to [`Frame::decode`](super::Frame::decode).
    #[error("kind {0} is a node-level frame, not a space's")]
    NotASpaceFrame(u8),
    /// A kind of a space's frame given to
    /// [`NodeFrame::decode`](super::NodeFrame::decode).
    #[error("kind {0} is a space's frame, not a node-level one")]
    NotANodeFrame(u8),
    /// A node-level frame names a space (it must name none).
    #[error("a node-level frame names a space")]
    NamedNodeFrame,
    /// A node-level frame breaks a rule of the canonical encoding (say,
    /// space keys out of order); the text says which.
    #[error("not canonical: {0}")]
    NotCanonical(&'static str),
}
