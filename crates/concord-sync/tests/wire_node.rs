//! Node-level frames (kinds 9 to 12): their pinned bytes, every limit at
//! and one over, each rule of the canonical encoding broken once, the
//! addressing rules (`peek`, node-level kinds refused by `Frame::decode`
//! and the others by `NodeFrame::decode`), chunking and bucket arithmetic.

use concord_sync::wire::{
    BucketNode, ByeReason, Child, DecodeError, EncodeError, Frame, FrameKind, Header, Limit,
    MAX_BUCKET_NODES, MAX_FRAME_BYTES, MAX_LEAVES_PER_FRAME, MAX_SPACE_KEYS, NodeFrame, Prefix,
    TREE_DEPTH, TREE_FANOUT, WIRE_VERSION, chunk_buckets, chunk_leaves, encode_varint, peek,
};

fn raw(kind: FrameKind, space: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION, kind.code()];
    encode_varint(space.len() as u64, &mut out);
    out.extend_from_slice(space);
    out.extend_from_slice(body);
    out
}

fn round_trip(frame: &NodeFrame) -> Vec<u8> {
    let bytes = frame.encode().expect("encodes");
    assert_eq!(bytes.len(), frame.encoded_len());
    assert_eq!(NodeFrame::decode(&bytes).as_ref(), Ok(frame));
    bytes
}

fn too_large(what: Limit, len: usize) -> (EncodeError, DecodeError) {
    (
        EncodeError::TooLarge {
            what,
            len,
            max: what.max(),
        },
        DecodeError::TooLarge {
            what,
            len: len as u64,
            max: what.max() as u64,
        },
    )
}

fn full_node(prefix: Prefix) -> BucketNode {
    BucketNode {
        prefix,
        children: (0..TREE_FANOUT as u8)
            .map(|index| Child {
                index,
                spaces: u64::from(index) + 1,
                hash: [index; 16],
            })
            .collect(),
    }
}

fn summary(spaces: u64) -> NodeFrame {
    NodeFrame::Summary {
        version: 3,
        known: 2,
        spaces,
        root: [0xab; 16],
        reply: true,
    }
}

#[test]
fn known_bytes_of_each_node_kind() {
    let spaces = NodeFrame::Spaces {
        version: 300,
        keys: vec![1, 0x0102_0304_0506_0708],
    };
    let mut want = vec![2, 9, 0, 0xac, 0x02, 2, 0, 0, 0, 0, 0, 0, 0, 1];
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(round_trip(&spaces), want);
    let mut want = vec![2, 10, 0, 1, 3, 2, 0xe8, 0x07];
    want.extend_from_slice(&[0xab; 16]);
    assert_eq!(round_trip(&summary(1_000)), want);
    let buckets = NodeFrame::Buckets {
        nodes: vec![BucketNode {
            prefix: Prefix::new(2, 0xa5).expect("prefix"),
            children: vec![Child {
                index: 3,
                spaces: 2,
                hash: [7; 16],
            }],
        }],
    };
    let mut want = vec![2, 11, 0, 1, 2, 0xa5, 0x01, 1, 3, 2];
    want.extend_from_slice(&[7; 16]);
    assert_eq!(round_trip(&buckets), want);
    let leaves = NodeFrame::Leaves {
        leaves: vec![(5, [9; 16])],
    };
    let mut want = vec![2, 12, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5];
    want.extend_from_slice(&[9; 16]);
    assert_eq!(round_trip(&leaves), want);
    // A summary's size does not depend on how many spaces it covers beyond
    // the varint of their count.
    let one = summary(1).encoded_len();
    assert_eq!(summary(MAX_SPACE_KEYS as u64).encoded_len(), one + 2);
}

#[test]
fn limits_at_and_one_over() {
    // A whole list of keys in one frame.
    let keys: Vec<u64> = (0..MAX_SPACE_KEYS as u64).collect();
    let at = NodeFrame::Spaces { version: 1, keys };
    let bytes = round_trip(&at);
    assert!(bytes.len() <= MAX_FRAME_BYTES);
    let keys: Vec<u64> = (0..=MAX_SPACE_KEYS as u64).collect();
    let over = NodeFrame::Spaces { version: 1, keys };
    let (enc, dec) = too_large(Limit::SpaceKeys, MAX_SPACE_KEYS + 1);
    assert_eq!(over.encode(), Err(enc));
    let mut body = vec![1];
    encode_varint(MAX_SPACE_KEYS as u64 + 1, &mut body);
    for key in 0..=MAX_SPACE_KEYS as u64 {
        body.extend_from_slice(&key.to_be_bytes());
    }
    assert_eq!(
        NodeFrame::decode(&raw(FrameKind::Spaces, b"", &body)),
        Err(dec)
    );
    // A summary's count of spaces.
    round_trip(&summary(MAX_SPACE_KEYS as u64));
    let (enc, dec) = too_large(Limit::SpaceKeys, MAX_SPACE_KEYS + 1);
    assert_eq!(summary(MAX_SPACE_KEYS as u64 + 1).encode(), Err(enc));
    let mut body = vec![0, 1, 1];
    encode_varint(MAX_SPACE_KEYS as u64 + 1, &mut body);
    body.extend_from_slice(&[0; 16]);
    assert_eq!(
        NodeFrame::decode(&raw(FrameKind::Summary, b"", &body)),
        Err(dec)
    );
    // Bucket nodes, each with every child.
    let nodes: Vec<BucketNode> = (0..MAX_BUCKET_NODES as u64)
        .map(|path| full_node(Prefix::new(3, path).expect("prefix")))
        .collect();
    round_trip(&NodeFrame::Buckets { nodes });
    let nodes: Vec<BucketNode> = (0..=MAX_BUCKET_NODES as u64)
        .map(|path| full_node(Prefix::new(3, path).expect("prefix")))
        .collect();
    let over = NodeFrame::Buckets { nodes };
    let (enc, dec) = too_large(Limit::BucketNodes, MAX_BUCKET_NODES + 1);
    assert_eq!(over.encode(), Err(enc));
    let mut body = Vec::new();
    encode_varint(MAX_BUCKET_NODES as u64 + 1, &mut body);
    body.extend_from_slice(&vec![0; 3 * (MAX_BUCKET_NODES + 1)]);
    assert_eq!(
        NodeFrame::decode(&raw(FrameKind::Buckets, b"", &body)),
        Err(dec)
    );
    // Children of one bucket: a 17th.
    let (_, dec) = too_large(Limit::BucketChildren, TREE_FANOUT + 1);
    let mut body = vec![1, 0, 0, TREE_FANOUT as u8 + 1];
    body.extend_from_slice(&vec![0; 18 * (TREE_FANOUT + 1)]);
    assert_eq!(
        NodeFrame::decode(&raw(FrameKind::Buckets, b"", &body)),
        Err(dec)
    );
    // Leaves.
    let leaves: Vec<(u64, [u8; 16])> = (0..MAX_LEAVES_PER_FRAME as u64)
        .map(|k| (k, [1; 16]))
        .collect();
    round_trip(&NodeFrame::Leaves { leaves });
    let leaves: Vec<(u64, [u8; 16])> = (0..=MAX_LEAVES_PER_FRAME as u64)
        .map(|k| (k, [1; 16]))
        .collect();
    let over = NodeFrame::Leaves { leaves };
    let (enc, dec) = too_large(Limit::Leaves, MAX_LEAVES_PER_FRAME + 1);
    assert_eq!(over.encode(), Err(enc));
    let mut body = Vec::new();
    encode_varint(MAX_LEAVES_PER_FRAME as u64 + 1, &mut body);
    body.extend_from_slice(&vec![0; 24 * (MAX_LEAVES_PER_FRAME + 1)]);
    assert_eq!(
        NodeFrame::decode(&raw(FrameKind::Leaves, b"", &body)),
        Err(dec)
    );
}

#[test]
fn each_canonical_rule_broken_once() {
    let not = |what| Err(DecodeError::NotCanonical(what));
    let decode = |kind, body: &[u8]| NodeFrame::decode(&raw(kind, b"", body));
    // Keys repeated or out of order, in a list and in leaves.
    let mut body = vec![1, 2];
    body.extend_from_slice(&5u64.to_be_bytes());
    body.extend_from_slice(&5u64.to_be_bytes());
    assert_eq!(
        decode(FrameKind::Spaces, &body),
        not("space keys not strictly increasing")
    );
    let mut body = vec![2];
    for key in [6u64, 5] {
        body.extend_from_slice(&key.to_be_bytes());
        body.extend_from_slice(&[0; 16]);
    }
    assert_eq!(
        decode(FrameKind::Leaves, &body),
        not("space keys not strictly increasing")
    );
    let child = |index: u8, spaces: u8| [&[index, spaces][..], &[0; 16]].concat();
    let node = |depth: u8, path: u8, children: &[Vec<u8>]| {
        [&[depth, path, children.len() as u8][..], &children.concat()].concat()
    };
    let buckets = |nodes: &[Vec<u8>]| [&[nodes.len() as u8][..], &nodes.concat()].concat();
    let cases: [(Vec<u8>, &str); 6] = [
        (
            buckets(&[node(1, 2, &[]), node(1, 1, &[])]),
            "bucket nodes not strictly increasing",
        ),
        (
            buckets(&[node(1, 2, &[child(4, 1), child(4, 1)])]),
            "bucket children not strictly increasing",
        ),
        (
            buckets(&[node(1, 2, &[child(16, 1)])]),
            "bucket child index past the fan-out",
        ),
        (buckets(&[node(1, 2, &[child(3, 0)])]), "empty bucket child"),
        (buckets(&[node(16, 2, &[])]), "bucket at a leaf's depth"),
        (
            buckets(&[node(1, 16, &[])]),
            "bucket path longer than its depth",
        ),
    ];
    for (body, what) in cases {
        assert_eq!(decode(FrameKind::Buckets, &body), not(what), "{what}");
    }
    // The encoder refuses the same.
    let bad = NodeFrame::Leaves {
        leaves: vec![(2, [0; 16]), (1, [0; 16])],
    };
    assert!(matches!(bad.encode(), Err(EncodeError::NotCanonical(_))));
    let bad = NodeFrame::Buckets {
        nodes: vec![BucketNode {
            prefix: Prefix::ROOT,
            children: vec![Child {
                index: 1,
                spaces: 0,
                hash: [0; 16],
            }],
        }],
    };
    assert_eq!(
        bad.encode(),
        Err(EncodeError::NotCanonical("empty bucket child"))
    );
    // A summary's reserved flags.
    let mut body = vec![0b10, 1, 1, 1];
    body.extend_from_slice(&[0; 16]);
    assert_eq!(
        decode(FrameKind::Summary, &body),
        Err(DecodeError::UnknownFlags(0b10))
    );
}

#[test]
fn addressing() {
    let summary = summary(4).encode().expect("encodes");
    assert_eq!(
        peek(&summary),
        Ok(Header {
            kind: FrameKind::Summary,
            space: ""
        })
    );
    assert_eq!(
        Frame::decode(&summary),
        Err(DecodeError::NotASpaceFrame(10))
    );
    let bye = Frame::Bye {
        space: "team".into(),
        reason: ByeReason::Shutdown,
    }
    .encode()
    .expect("encodes");
    assert_eq!(
        peek(&bye),
        Ok(Header {
            kind: FrameKind::Bye,
            space: "team"
        })
    );
    assert_eq!(NodeFrame::decode(&bye), Err(DecodeError::NotANodeFrame(4)));
    // A node-level frame that names a space is malformed, whatever follows.
    let named = raw(FrameKind::Leaves, b"team", &[0]);
    assert_eq!(peek(&named), Err(DecodeError::NamedNodeFrame));
    assert_eq!(NodeFrame::decode(&named), Err(DecodeError::NamedNodeFrame));
    assert_eq!(Frame::decode(&named), Err(DecodeError::NamedNodeFrame));
    for code in 9..=12 {
        let kind = FrameKind::from_code(code).expect("known kind");
        assert!(kind.is_node_level());
    }
    assert!(!FrameKind::Snapshot.is_node_level());
    assert_eq!(
        peek(&[WIRE_VERSION, 13, 0]),
        Err(DecodeError::UnknownKind(13))
    );
    let mut trailing = summary.clone();
    trailing.push(0);
    assert_eq!(
        NodeFrame::decode(&trailing),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
}

#[test]
fn chunking_keeps_every_item_in_order() {
    let nodes: Vec<BucketNode> = (0..2 * MAX_BUCKET_NODES as u64 + 1)
        .map(|path| full_node(Prefix::new(4, path).expect("prefix")))
        .collect();
    let frames = chunk_buckets(nodes.clone());
    assert_eq!(frames.len(), 3);
    let back: Vec<BucketNode> = frames
        .iter()
        .flat_map(|f| match f {
            NodeFrame::Buckets { nodes } => nodes.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(back, nodes);
    assert!(frames.iter().all(|f| f.encode().is_ok()));
    let leaves: Vec<(u64, [u8; 16])> = (0..MAX_LEAVES_PER_FRAME as u64 + 1)
        .map(|k| (k, [0; 16]))
        .collect();
    assert_eq!(chunk_leaves(leaves).len(), 2);
    assert!(chunk_leaves(Vec::new()).is_empty());
    assert!(chunk_buckets(Vec::new()).is_empty());
}

#[test]
fn bucket_arithmetic() {
    let key = 0x1234_5678_9abc_def0u64;
    assert_eq!(Prefix::of(key, 0), Prefix::ROOT);
    assert_eq!(Prefix::ROOT.first(), 0);
    assert_eq!(Prefix::ROOT.last(), u64::MAX);
    let p = Prefix::of(key, 3);
    assert_eq!((p.depth(), p.path()), (3, 0x123));
    assert_eq!(p.first(), 0x1230_0000_0000_0000);
    assert_eq!(p.last(), 0x123f_ffff_ffff_ffff);
    assert!(p.contains(key) && !p.contains(0x1240_0000_0000_0000));
    assert_eq!(p.child_index(key), Some(4));
    assert_eq!(p.child(4), Some(Prefix::of(key, 4)));
    assert_eq!(p.child(16), None);
    let leaf = Prefix::of(key, TREE_DEPTH);
    assert_eq!((leaf.first(), leaf.last()), (key, key));
    assert_eq!(leaf.child_index(key), None);
    assert_eq!(leaf.child(0), None);
    assert_eq!(Prefix::new(2, 0x100), None);
    assert_eq!(Prefix::new(17, 0), None);
    assert_eq!(
        Prefix::new(TREE_DEPTH, u64::MAX),
        Some(Prefix::of(u64::MAX, 16))
    );
    // Children of a bucket partition it.
    let children: Vec<Prefix> = (0..16).filter_map(|i| p.child(i)).collect();
    assert_eq!(children[0].first(), p.first());
    assert_eq!(children[15].last(), p.last());
    assert!(children.windows(2).all(|w| w[0].last() + 1 == w[1].first()));
}
