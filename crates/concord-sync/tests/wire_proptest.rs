//! Property tests of the wire codec: round trips of arbitrary frames (of a
//! space and node-level) within the limits, and robustness of decoding
//! against arbitrary and mutated bytes (never a panic; a frame that decodes
//! re-encodes to the same bytes; `peek` agrees with both decoders).

use concord_sync::wire::{
    BucketNode, ByeReason, Child, DecodeError, EphemeralEntry, Frame, FrameKind, MAX_ACTOR_BYTES,
    MAX_CLOCK_ENTRIES, NodeFrame, Prefix, Summary, TREE_DEPTH, WIRE_VERSION, decode_varint,
    encode_varint, peek, varint_len,
};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;

fn space() -> impl Strategy<Value = String> {
    // ASCII names up to the limit, and arbitrary Unicode (up to 4 bytes a
    // char, so at most 128 bytes).
    prop_oneof!["[a-z0-9._/-]{0,128}", "\\PC{0,32}"]
}

fn bye_reason() -> impl Strategy<Value = ByeReason> {
    prop_oneof![
        Just(ByeReason::Shutdown),
        Just(ByeReason::LeavingSpace),
        Just(ByeReason::ProtocolViolation),
        Just(ByeReason::NotAllowed),
        Just(ByeReason::Overloaded),
    ]
}

fn clock() -> impl Strategy<Value = Vec<(Vec<u8>, u64)>> {
    prop_oneof![
        btree_map(vec(any::<u8>(), 0..=MAX_ACTOR_BYTES), any::<u64>(), 0..16),
        btree_map(
            vec(any::<u8>(), 0..=MAX_ACTOR_BYTES),
            any::<u64>(),
            0..=MAX_CLOCK_ENTRIES
        ),
    ]
    .prop_map(|m| m.into_iter().collect::<Vec<_>>())
    .prop_shuffle()
}

fn ephemeral_entry() -> impl Strategy<Value = EphemeralEntry> {
    (
        prop_oneof!["[a-z]{1,12}/[a-z0-9._:-]{1,128}", "\\PC{0,64}"],
        vec(any::<u8>(), 0..=MAX_ACTOR_BYTES),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(path, writer, wall, logical, ttl_ms, value)| EphemeralEntry {
                path,
                writer,
                wall,
                logical,
                ttl_ms,
                value,
            },
        )
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            space(),
            any::<[u8; 32]>(),
            vec(vec(any::<u8>(), 0..300), 0..40)
        )
            .prop_map(|(space, epoch, changes)| Frame::Changes {
                space,
                epoch,
                changes
            }),
        (
            space(),
            any::<[u8; 32]>(),
            clock(),
            any::<[u8; 8]>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(space, epoch, clock, heads_hash, truncated, reply)| {
                Frame::Digest {
                    space,
                    epoch,
                    clock,
                    heads_hash,
                    truncated,
                    reply,
                }
            }),
        (space(), any::<[u8; 32]>(), vec(any::<u8>(), 0..2000)).prop_map(
            |(space, epoch, message)| Frame::SyncMessage {
                space,
                epoch,
                message
            }
        ),
        (space(), bye_reason()).prop_map(|(space, reason)| Frame::Bye { space, reason }),
        (space(), any::<[u8; 32]>(), clock()).prop_map(|(space, epoch, cut)| Frame::Epoch {
            space,
            epoch,
            cut
        }),
        (space(), any::<[u8; 32]>())
            .prop_map(|(space, epoch)| Frame::SnapshotRequest { space, epoch }),
        (
            space(),
            any::<[u8; 32]>(),
            vec(any::<u8>(), 0..2000),
            0u64..5000,
            0u64..5000
        )
            .prop_map(|(space, epoch, chunk, offset, extra)| {
                let total = offset + chunk.len() as u64 + extra;
                Frame::Snapshot {
                    space,
                    epoch,
                    total,
                    offset,
                    chunk,
                }
            }),
        (space(), vec(ephemeral_entry(), 0..20))
            .prop_map(|(space, entries)| Frame::Ephemeral { space, entries }),
    ]
}

fn bucket_node() -> impl Strategy<Value = BucketNode> {
    (
        any::<u64>(),
        0..TREE_DEPTH,
        btree_map(0u8..16, (1u64..=65_536, any::<[u8; 16]>()), 0..=16),
    )
        .prop_map(|(key, depth, children)| BucketNode {
            prefix: Prefix::of(key, depth),
            children: children
                .into_iter()
                .map(|(index, (spaces, hash))| Child {
                    index,
                    spaces,
                    hash,
                })
                .collect(),
        })
}

fn node_frame() -> impl Strategy<Value = NodeFrame> {
    prop_oneof![
        (any::<u64>(), btree_set(any::<u64>(), 0..200)).prop_map(|(version, keys)| {
            NodeFrame::Spaces {
                version,
                keys: keys.into_iter().collect(),
            }
        }),
        (
            any::<u64>(),
            any::<u64>(),
            0u64..=65_536,
            any::<[u8; 16]>(),
            any::<bool>()
        )
            .prop_map(|(version, known, spaces, root, reply)| {
                NodeFrame::Summary(Summary {
                    version,
                    known,
                    spaces,
                    root,
                    reply,
                })
            }),
        vec(bucket_node(), 0..12).prop_map(|mut nodes| {
            nodes.sort_by_key(|n| n.prefix);
            nodes.dedup_by_key(|n| n.prefix);
            NodeFrame::Buckets { nodes }
        }),
        btree_map(any::<u64>(), any::<[u8; 16]>(), 0..100).prop_map(|leaves| {
            NodeFrame::Leaves {
                leaves: leaves.into_iter().collect(),
            }
        }),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit(i, b) if len > 0 => bytes[i % len] ^= 1 << b,
        Mutation::SetByte(i, v) if len > 0 => bytes[i % len] = *v,
        Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
        Mutation::Extend(more) => bytes.extend_from_slice(more),
        Mutation::Insert(i, v) => bytes.insert(i % (len + 1), *v),
        Mutation::Remove(i) if len > 0 => {
            bytes.remove(i % len);
        }
        _ => {}
    }
}

/// A frame of a space or a node-level frame.
#[derive(Debug, Clone, PartialEq)]
enum AnyFrame {
    Space(Frame),
    Node(NodeFrame),
}

impl AnyFrame {
    fn encode(&self) -> Vec<u8> {
        match self {
            AnyFrame::Space(f) => f.encode(),
            AnyFrame::Node(f) => f.encode(),
        }
        .expect("frames within limits encode")
    }

    fn encoded_len(&self) -> usize {
        match self {
            AnyFrame::Space(f) => f.encoded_len(),
            AnyFrame::Node(f) => f.encoded_len(),
        }
    }

    /// Kind and space, as `peek` should read them.
    fn header(&self) -> (FrameKind, &str) {
        match self {
            AnyFrame::Space(f) => (f.kind(), f.space()),
            AnyFrame::Node(f) => (f.kind(), ""),
        }
    }
}

fn any_frame() -> impl Strategy<Value = AnyFrame> {
    prop_oneof![
        frame().prop_map(AnyFrame::Space),
        node_frame().prop_map(AnyFrame::Node),
    ]
}

/// Decodes `bytes` with the decoder its header names (must not panic; the
/// other decoder must refuse them); if it decodes, re-encoding gives the
/// same bytes back (the encoding is canonical) and `peek` agrees.
fn check_decode(bytes: &[u8]) -> Result<AnyFrame, DecodeError> {
    let space = Frame::decode(bytes).map(AnyFrame::Space);
    let node = NodeFrame::decode(bytes).map(AnyFrame::Node);
    let decoded = match (space, node) {
        (Ok(_), Ok(_)) => panic!("both decoders accept {bytes:?}"),
        (Ok(f), Err(_)) | (Err(_), Ok(f)) => Ok(f),
        (Err(e), Err(_)) if peek(bytes).is_ok_and(|h| !h.kind.is_node_level()) => Err(e),
        (Err(_), Err(e)) => Err(e),
    };
    if let Ok(frame) = &decoded {
        assert_eq!(frame.encode(), bytes, "decode then encode is the identity");
        let header = peek(bytes).expect("a decoded frame's header peeks");
        assert_eq!((header.kind, header.space), frame.header());
    }
    decoded
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip_every_kind(frame in any_frame()) {
        let bytes = frame.encode();
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        prop_assert_eq!(bytes[0], WIRE_VERSION);
        prop_assert_eq!(bytes[1], frame.header().0.code());
        let decoded = check_decode(&bytes).expect("own encoding decodes");
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let _ = check_decode(&bytes);
    }

    #[test]
    fn arbitrary_bodies_after_a_valid_header_never_panic(
        kind in 0u8..14,
        body in vec(any::<u8>(), 0..600),
    ) {
        // As it comes, and after an empty space name (node-level frames).
        for head in [&[WIRE_VERSION, kind][..], &[WIRE_VERSION, kind, 0]] {
            let _ = check_decode(&[head, &body].concat());
        }
    }

    #[test]
    fn mutated_frames_decode_or_give_a_typed_error(
        frame in any_frame(),
        mutations in vec(mutation(), 1..6),
    ) {
        let mut bytes = frame.encode();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        // Either some frame (which re-encodes to exactly these bytes) or a
        // DecodeError; a panic fails the test.
        match check_decode(&bytes) {
            Ok(decoded) => prop_assert_eq!(decoded.encode(), bytes),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn every_truncation_of_a_valid_frame_is_an_error(frame in any_frame()) {
        let bytes = frame.encode();
        for cut in 0..bytes.len() {
            prop_assert!(check_decode(&bytes[..cut]).is_err(), "prefix of {} bytes decoded", cut);
        }
    }

    #[test]
    fn varint_round_trip(value in any::<u64>(), tail in vec(any::<u8>(), 0..4)) {
        let mut bytes = Vec::new();
        encode_varint(value, &mut bytes);
        prop_assert_eq!(bytes.len(), varint_len(value));
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(decode_varint(&bytes), Ok((value, varint_len(value))));
    }

    #[test]
    fn varint_arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..16)) {
        if let Ok((value, used)) = decode_varint(&bytes) {
            let mut again = Vec::new();
            encode_varint(value, &mut again);
            prop_assert_eq!(&again[..], &bytes[..used]);
        }
    }
}
