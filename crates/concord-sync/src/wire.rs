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

mod chunk;
mod ephemeral;
mod error;
mod frame;
mod limits;
mod primitives;

pub use chunk::{chunk_changes, chunk_snapshot};
pub use ephemeral::{
    EphemeralEntry, MAX_EPHEMERAL_PER_FRAME, MAX_EPHEMERAL_VALUE_BYTES, MAX_PATH_BYTES,
    chunk_ephemeral,
};
pub use error::{DecodeError, EncodeError};
pub use frame::{ByeReason, Frame, FrameKind};
pub use limits::{
    EPOCH_BYTES, FRAME_HEADROOM, Limit, MAX_ACTOR_BYTES, MAX_CHANGE_BYTES, MAX_CHANGES_PER_FRAME,
    MAX_CLOCK_ENTRIES, MAX_CUT_ENTRIES, MAX_FRAME_BYTES, MAX_SNAPSHOT_BYTES,
    MAX_SNAPSHOT_CHUNK_BYTES, MAX_SPACE_NAME_BYTES, MAX_SYNC_MESSAGE_BYTES, WIRE_VERSION,
};
pub use primitives::{decode_varint, encode_varint, varint_len};

use chunk::chunk_items;
use limits::{MAX_SINGLE_ITEM_HEADER, MAX_VARINT_BYTES};
use primitives::{
    Reader, check, clock_len, prefixed_len, put_bytes, put_clock, too_large, validate_clock,
};
