//! Node-level frames (kinds 9 to 12): their pinned bytes, every limit at
//! and one over, each rule of the canonical encoding broken once, the
//! addressing rules (`peek`, node-level kinds refused by `Frame::decode`
//! and the others by `NodeFrame::decode`), chunking and bucket arithmetic.

use concord_sync::wire::{
    BucketNode, ByeReason, Child, DecodeError, EncodeError, Frame, FrameKind, Header, Limit,
    MAX_BUCKET_NODES, MAX_FRAME_BYTES, MAX_LEAVES_PER_FRAME, MAX_SPACE_KEYS, NodeFrame, Prefix,
    Summary, TREE_DEPTH, TREE_FANOUT, WIRE_VERSION, chunk_buckets, chunk_leaves, encode_varint,
    peek,
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

fn summary(spaces: u64) -> NodeFrame {
    NodeFrame::Summary(Summary {
        version: 3,
        known: 2,
        spaces,
        root: [0xab; 16],
        reply: true,
    })
}

fn buckets(nodes: u64, children: u8) -> NodeFrame {
    let child = |index| Child {
        index,
        spaces: u64::from(index) + 1,
        hash: [index; 16],
    };
    NodeFrame::Buckets {
        nodes: (0..nodes)
            .map(|path| BucketNode {
                prefix: Prefix::new(3, path).expect("prefix"),
                children: (0..children).map(child).collect(),
            })
            .collect(),
    }
}

fn leaves(n: u64) -> NodeFrame {
    NodeFrame::Leaves {
        leaves: (0..n).map(|k| (k, [1; 16])).collect(),
    }
}

/// Raw bytes of a node-level frame: `head`, a count, `tail` zero bytes.
fn counted(kind: FrameKind, head: &[u8], count: usize, tail: usize) -> Vec<u8> {
    let mut body = head.to_vec();
    encode_varint(count as u64, &mut body);
    body.resize(body.len() + tail, 0);
    raw(kind, b"", &body)
}

/// `at` round-trips; `over`, one past `what`, is refused by the encoder,
/// and `raw_over`, its bytes, by the decoder (before anything is read).
fn assert_limit(at: &NodeFrame, over: &NodeFrame, what: Limit, raw_over: &[u8]) {
    let bytes = round_trip(at);
    assert!(bytes.len() <= MAX_FRAME_BYTES);
    let (enc, dec) = too_large(what, what.max() + 1);
    assert_eq!(over.encode(), Err(enc), "{what}");
    assert_eq!(NodeFrame::decode(raw_over), Err(dec), "{what}");
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
    let (keys, nodes, leaf_count) = (
        MAX_SPACE_KEYS as u64,
        MAX_BUCKET_NODES as u64,
        MAX_LEAVES_PER_FRAME as u64,
    );
    let list = |n: u64| NodeFrame::Spaces {
        version: 1,
        keys: (0..n).collect(),
    };
    let over = MAX_SPACE_KEYS + 1;
    assert_limit(
        &list(keys),
        &list(keys + 1),
        Limit::SpaceKeys,
        &counted(FrameKind::Spaces, &[1], over, 8 * over),
    );
    assert_limit(
        &summary(keys),
        &summary(keys + 1),
        Limit::SpaceKeys,
        &counted(FrameKind::Summary, &[0, 1, 1], over, 16),
    );
    let over = MAX_BUCKET_NODES + 1;
    assert_limit(
        &buckets(nodes, 16),
        &buckets(nodes + 1, 16),
        Limit::BucketNodes,
        &counted(FrameKind::Buckets, &[], over, 3 * over),
    );
    let over = TREE_FANOUT + 1;
    assert_limit(
        &buckets(1, 16),
        &buckets(1, 17),
        Limit::BucketChildren,
        &counted(FrameKind::Buckets, &[1, 0, 0], over, 18 * over),
    );
    let over = MAX_LEAVES_PER_FRAME + 1;
    assert_limit(
        &leaves(leaf_count),
        &leaves(leaf_count + 1),
        Limit::Leaves,
        &counted(FrameKind::Leaves, &[], over, 24 * over),
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
    let NodeFrame::Buckets { nodes } = buckets(2 * MAX_BUCKET_NODES as u64 + 1, 16) else {
        unreachable!("buckets")
    };
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
    let NodeFrame::Leaves { leaves } = leaves(MAX_LEAVES_PER_FRAME as u64 + 1) else {
        unreachable!("leaves")
    };
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
