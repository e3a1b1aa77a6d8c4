//! One hand-built malformed frame per `DecodeError` variant, and the exact
//! variant it yields.

use concord_sync::wire::{
    ByeReason, DecodeError, EncodeError, EphemeralEntry, Frame, FrameKind, WIRE_VERSION,
    decode_varint, encode_varint,
};

/// The epoch id every frame of these tests names.
const EPOCH: [u8; 32] = [0xE0; 32];

fn raw(kind: u8, space: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION, kind];
    encode_varint(space.len() as u64, &mut out);
    out.extend_from_slice(space);
    out.extend_from_slice(body);
    out
}

fn digest_body(flags: u8, actors: &[&[u8]]) -> Vec<u8> {
    let mut body = EPOCH.to_vec();
    body.push(flags);
    body.extend_from_slice(&[0; 8]);
    encode_varint(actors.len() as u64, &mut body);
    for a in actors {
        encode_varint(a.len() as u64, &mut body);
        body.extend_from_slice(a);
        body.push(1);
    }
    body
}

#[test]
fn empty_and_short_inputs_are_truncated() {
    assert_eq!(
        Frame::decode(&[]),
        Err(DecodeError::Truncated { what: "version" })
    );
    assert_eq!(
        Frame::decode(&[WIRE_VERSION]),
        Err(DecodeError::Truncated { what: "frame kind" })
    );
    assert!(matches!(
        Frame::decode(&[WIRE_VERSION, FrameKind::Bye.code()]),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        Frame::decode(&raw(FrameKind::Bye.code(), b"s", &[])),
        Err(DecodeError::Truncated { what: "bye reason" })
    ));
    assert!(matches!(
        Frame::decode(&raw(FrameKind::Digest.code(), b"s", &[0, 1, 2])),
        Err(DecodeError::Truncated { what: "epoch" })
    ));
    let mut body = EPOCH.to_vec();
    body.extend_from_slice(&[0, 1, 2]);
    assert!(matches!(
        Frame::decode(&raw(FrameKind::Digest.code(), b"s", &body)),
        Err(DecodeError::Truncated { what: "heads hash" })
    ));
    let mut body = EPOCH.to_vec();
    body.extend_from_slice(&[9, 0, 1]); // 9 bytes of snapshot, a piece of 1 missing
    assert!(matches!(
        Frame::decode(&raw(FrameKind::Snapshot.code(), b"s", &body)),
        Err(DecodeError::Truncated {
            what: "snapshot piece"
        })
    ));
}

#[test]
fn unsupported_version() {
    for v in [0, 1, 3, 0xff] {
        let mut bytes = raw(FrameKind::Bye.code(), b"s", &[0]);
        bytes[0] = v;
        assert_eq!(
            Frame::decode(&bytes),
            Err(DecodeError::UnsupportedVersion(v))
        );
    }
}

#[test]
fn unknown_kind() {
    for k in [0, 13, 0xff] {
        assert_eq!(
            Frame::decode(&raw(k, b"s", &[0])),
            Err(DecodeError::UnknownKind(k))
        );
    }
}

#[test]
fn trailing_bytes() {
    let mut bytes = Frame::Bye {
        space: "s".into(),
        reason: ByeReason::LeavingSpace,
    }
    .encode()
    .expect("encodes");
    bytes.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        Frame::decode(&bytes),
        Err(DecodeError::TrailingBytes { count: 3 })
    );
}

#[test]
fn invalid_utf8_space() {
    assert_eq!(
        Frame::decode(&raw(FrameKind::Bye.code(), &[0x66, 0xff, 0x66], &[0])),
        Err(DecodeError::InvalidUtf8)
    );
}

/// The body of an ephemeral frame with one entry: the path bytes, writer
/// `[7]`, wall 1, the given logical part, ttl 5, value `1`.
fn ephemeral_body(path: &[u8], logical: u64) -> Vec<u8> {
    let mut body = vec![1];
    encode_varint(path.len() as u64, &mut body);
    body.extend_from_slice(path);
    body.extend_from_slice(&[1, 7, 1]);
    encode_varint(logical, &mut body);
    body.extend_from_slice(&[5, 1, b'1']);
    body
}

#[test]
fn ephemeral_path_and_logical_clock() {
    let kind = FrameKind::Ephemeral.code();
    assert!(Frame::decode(&raw(kind, b"s", &ephemeral_body(b"observation/x", 0))).is_ok());
    assert_eq!(
        Frame::decode(&raw(kind, b"s", &ephemeral_body(&[b'o', 0xff], 0))),
        Err(DecodeError::PathNotUtf8)
    );
    let at = raw(
        kind,
        b"s",
        &ephemeral_body(b"observation/x", u64::from(u32::MAX)),
    );
    assert!(Frame::decode(&at).is_ok());
    let over = u64::from(u32::MAX) + 1;
    assert_eq!(
        Frame::decode(&raw(kind, b"s", &ephemeral_body(b"observation/x", over))),
        Err(DecodeError::LogicalOverflow(over))
    );
    // Every entry field cut short is a typed error.
    let full = raw(kind, b"s", &ephemeral_body(b"observation/x", 300));
    for cut in 5..full.len() {
        assert!(matches!(
            Frame::decode(&full[..cut]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}

#[test]
fn varint_overflow_and_non_canonical() {
    // u64::MAX takes 10 bytes, the last being 0x01.
    let mut max = Vec::new();
    encode_varint(u64::MAX, &mut max);
    assert_eq!(max.len(), 10);
    assert_eq!(decode_varint(&max), Ok((u64::MAX, 10)));
    // A tenth byte above 1 overflows, and so does an eleventh byte.
    let mut over = max.clone();
    over[9] = 0x02;
    assert_eq!(decode_varint(&over), Err(DecodeError::VarintOverflow));
    assert_eq!(decode_varint(&[0xff; 11]), Err(DecodeError::VarintOverflow));
    // Overlong encodings of 0 and 1.
    assert_eq!(
        decode_varint(&[0x80, 0x00]),
        Err(DecodeError::NonCanonicalVarint)
    );
    assert_eq!(
        decode_varint(&[0x81, 0x80, 0x00]),
        Err(DecodeError::NonCanonicalVarint)
    );
    assert_eq!(decode_varint(&[0x00]), Ok((0, 1)));
    assert!(matches!(
        decode_varint(&[0x80]),
        Err(DecodeError::Truncated { .. })
    ));
    // Inside a frame: the space name length.
    let mut bytes = vec![WIRE_VERSION, FrameKind::Bye.code()];
    bytes.extend_from_slice(&[0xff; 10]);
    assert_eq!(Frame::decode(&bytes), Err(DecodeError::VarintOverflow));
    let bytes = vec![WIRE_VERSION, FrameKind::Bye.code(), 0x81, 0x00, b's', 0];
    assert_eq!(Frame::decode(&bytes), Err(DecodeError::NonCanonicalVarint));
}

#[test]
fn digest_flags_and_duplicates() {
    for flags in [0b00, 0b01, 0b10, 0b11] {
        let frame = Frame::decode(&raw(
            FrameKind::Digest.code(),
            b"s",
            &digest_body(flags, &[b"a"]),
        ))
        .expect("known flags decode");
        assert!(matches!(
            frame,
            Frame::Digest { truncated, reply, .. }
                if truncated == (flags & 1 != 0) && reply == (flags & 2 != 0)
        ));
    }
    for flags in [0b100, 0x80, 0xff] {
        assert_eq!(
            Frame::decode(&raw(
                FrameKind::Digest.code(),
                b"s",
                &digest_body(flags, &[b"a"])
            )),
            Err(DecodeError::UnknownFlags(flags))
        );
    }
    assert_eq!(
        Frame::decode(&raw(
            FrameKind::Digest.code(),
            b"s",
            &digest_body(0, &[b"a", b"b", b"c", b"b"])
        )),
        Err(DecodeError::DuplicateActor { index: 3 })
    );
    let dup = Frame::Digest {
        space: "s".into(),
        epoch: EPOCH,
        clock: vec![(b"x".to_vec(), 1), (b"x".to_vec(), 2)],
        heads_hash: [0; 8],
        truncated: false,
        reply: false,
    };
    assert_eq!(dup.encode(), Err(EncodeError::DuplicateActor { index: 1 }));
}

#[test]
fn snapshot_pieces_stay_within_their_snapshot() {
    let mut body = EPOCH.to_vec();
    body.extend_from_slice(&[3, 2, 2, 7, 7]); // 2 bytes at 2 of a 3-byte snapshot
    assert_eq!(
        Frame::decode(&raw(FrameKind::Snapshot.code(), b"s", &body)),
        Err(DecodeError::SnapshotRange {
            offset: 2,
            len: 2,
            total: 3
        })
    );
    let over = Frame::Snapshot {
        space: "s".into(),
        epoch: EPOCH,
        total: 3,
        offset: 2,
        chunk: vec![7, 7],
    };
    assert_eq!(over.encode(), Err(EncodeError::SnapshotRange));
}

#[test]
fn unknown_bye_reason() {
    for code in 0..=4 {
        let reason = ByeReason::from_code(code).expect("known reason");
        assert_eq!(reason.code(), code);
        assert_eq!(
            Frame::decode(&raw(FrameKind::Bye.code(), b"s", &[code])),
            Ok(Frame::Bye {
                space: "s".into(),
                reason
            })
        );
    }
    assert_eq!(
        Frame::decode(&raw(FrameKind::Bye.code(), b"s", &[5])),
        Err(DecodeError::UnknownByeReason(5))
    );
}

#[test]
fn known_bytes_of_each_kind() {
    // Pin the layout so an accidental format change shows up here.
    let changes = Frame::Changes {
        space: "ab".into(),
        epoch: EPOCH,
        changes: vec![vec![0xaa], Vec::new()],
    };
    let with_epoch = |head: &[u8], body: &[u8]| [head, &EPOCH[..], body].concat();
    assert_eq!(
        changes.encode().expect("encodes"),
        with_epoch(&[2, 1, 2, b'a', b'b'], &[2, 1, 0xaa, 0])
    );
    let digest = Frame::Digest {
        space: "s".into(),
        epoch: EPOCH,
        clock: vec![(vec![0x10, 0x11], 300)],
        heads_hash: [1, 2, 3, 4, 5, 6, 7, 8],
        truncated: true,
        reply: false,
    };
    assert_eq!(
        digest.encode().expect("encodes"),
        with_epoch(
            &[2, 2, 1, b's'],
            &[0b01, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 0x10, 0x11, 0xac, 0x02]
        )
    );
    let sync = Frame::SyncMessage {
        space: String::new(),
        epoch: EPOCH,
        message: vec![9, 9, 9],
    };
    assert_eq!(
        sync.encode().expect("encodes"),
        with_epoch(&[2, 3, 0], &[3, 9, 9, 9])
    );
    let bye = Frame::Bye {
        space: "s".into(),
        reason: ByeReason::Overloaded,
    };
    assert_eq!(bye.encode().expect("encodes"), vec![2, 4, 1, b's', 4]);
    let epoch = Frame::Epoch {
        space: "s".into(),
        epoch: EPOCH,
        cut: vec![(vec![0x10], 2)],
    };
    assert_eq!(
        epoch.encode().expect("encodes"),
        with_epoch(&[2, 6, 1, b's'], &[1, 1, 0x10, 2])
    );
    let request = Frame::SnapshotRequest {
        space: "s".into(),
        epoch: EPOCH,
    };
    assert_eq!(
        request.encode().expect("encodes"),
        with_epoch(&[2, 7, 1, b's'], &[])
    );
    let piece = Frame::Snapshot {
        space: "s".into(),
        epoch: EPOCH,
        total: 3,
        offset: 1,
        chunk: vec![7, 7],
    };
    assert_eq!(
        piece.encode().expect("encodes"),
        with_epoch(&[2, 8, 1, b's'], &[3, 1, 2, 7, 7])
    );
    let ephemeral = Frame::Ephemeral {
        space: "s".into(),
        entries: vec![EphemeralEntry {
            path: "intent/p".into(),
            writer: vec![0x10, 0x11],
            wall: 300,
            logical: 2,
            ttl_ms: 5,
            value: b"{}".to_vec(),
        }],
    };
    assert_eq!(
        ephemeral.encode().expect("encodes"),
        [
            &[2, 5, 1, b's', 1, 8][..],
            b"intent/p",
            &[2, 0x10, 0x11, 0xac, 0x02, 2, 5, 2, b'{', b'}'],
        ]
        .concat()
    );
    for frame in [changes, digest, sync, bye, ephemeral, epoch, request, piece] {
        let bytes = frame.encode().expect("encodes");
        assert_eq!(Frame::decode(&bytes), Ok(frame));
    }
}
