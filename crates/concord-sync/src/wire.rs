//! Wire codec of concord-sync: the exact bytes that peers exchange.
//!
//! This module owns the frame format: the [`Frame`] type (frames about one
//! space) and the [`NodeFrame`] type (frames about every space two nodes
//! share), their encoding and decoding, and the hard limits
//! ([`MAX_FRAME_BYTES`] and friends) that keep a hostile or buggy peer from
//! making a node allocate or work without bound. It is pure: bytes in,
//! frames out, and back.
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
//! space        = len:varint utf8-bytes                (len <= MAX_SPACE_NAME_BYTES;
//!                                                      empty in a node-level frame)
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
//! key          = [u8; 8]                              (a space's key, big-endian u64)
//! hash         = [u8; 16]
//!
//! kind 9  Spaces       body = version:varint count:varint key*count
//!                      (count <= MAX_SPACE_KEYS, keys strictly increasing)
//! kind 10 Summary      body = flags:u8 version:varint known:varint spaces:varint root:hash
//!                      flags: bit 0 = reply, bits 1..7 must be 0
//!                      (spaces <= MAX_SPACE_KEYS)
//! kind 11 Buckets      body = count:varint node*count         (count <= MAX_BUCKET_NODES,
//!                                                              strictly increasing by depth, path)
//!                      node = depth:u8 path:varint children:varint child*children
//!                      (depth < 16, path < 16^depth, children <= TREE_FANOUT)
//!                      child = index:u8 spaces:varint hash    (indices strictly increasing, < 16;
//!                                                              1 <= spaces <= MAX_SPACE_KEYS)
//! kind 12 Leaves       body = count:varint leaf*count         (count <= MAX_LEAVES_PER_FRAME)
//!                      leaf = key hash                        (keys strictly increasing)
//!
//! varint = unsigned LEB128 of a u64: 7 bits per byte, least significant
//!          group first, high bit set on every byte but the last; at most 10
//!          bytes and minimal (no redundant trailing zero groups).
//! ```
//!
//! The whole frame is at most [`MAX_FRAME_BYTES`]. The encoding is canonical:
//! a byte string that decodes to a frame is exactly what [`Frame::encode`]
//! (or [`NodeFrame::encode`]) produces for that frame, so `decode` then
//! `encode` gives back the input.
//!
//! # Addressing
//!
//! Kinds 1 to 8 ([`Frame`]) are about the one space they name. Kinds 9 to
//! 12 ([`NodeFrame`], [`FrameKind::is_node_level`]) are about the sending
//! node and every space it shares with the receiver: they are addressed to
//! no space, their space field is empty (one zero byte), and a node-level
//! frame that names a space is malformed ([`DecodeError::NamedNodeFrame`]).
//! A receiver reads the header with [`peek`] to hand a frame to the right
//! machine; [`Frame::decode`] refuses node-level kinds and
//! [`NodeFrame::decode`] refuses the others. Inside node-level frames a
//! space is named by its key, a `u64` its holder derives from its name (the
//! sync hub uses the first 8 bytes of the name's SHA-256), so a list of a
//! thousand spaces takes 8 KB whatever their names.
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
mod node;
mod primitives;

pub use chunk::{chunk_changes, chunk_snapshot};
pub use ephemeral::{
    EphemeralEntry, MAX_EPHEMERAL_PER_FRAME, MAX_EPHEMERAL_VALUE_BYTES, MAX_PATH_BYTES,
    chunk_ephemeral,
};
pub use error::{DecodeError, EncodeError};
pub use frame::{ByeReason, Frame, FrameKind, Header, peek};
pub use limits::{
    EPOCH_BYTES, FRAME_HEADROOM, Limit, MAX_ACTOR_BYTES, MAX_BUCKET_NODES, MAX_CHANGE_BYTES,
    MAX_CHANGES_PER_FRAME, MAX_CLOCK_ENTRIES, MAX_CUT_ENTRIES, MAX_FRAME_BYTES,
    MAX_LEAVES_PER_FRAME, MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_CHUNK_BYTES, MAX_SPACE_KEYS,
    MAX_SPACE_NAME_BYTES, MAX_SYNC_MESSAGE_BYTES, TREE_FANOUT, WIRE_VERSION,
};
pub use node::{
    BucketNode, Child, NodeFrame, Prefix, SPACE_KEY_BYTES, Summary, TREE_DEPTH, TREE_HASH_BYTES,
    TreeHash, chunk_buckets, chunk_leaves,
};
pub use primitives::{decode_varint, encode_varint, varint_len};

use chunk::chunk_items;
use frame::open;
use limits::{MAX_SINGLE_ITEM_HEADER, MAX_VARINT_BYTES};
use primitives::{
    Reader, check, clock_len, prefixed_len, put_bytes, put_clock, too_large, validate_clock,
};
