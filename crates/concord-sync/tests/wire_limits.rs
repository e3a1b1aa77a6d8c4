//! Every limit of the wire codec hit exactly: at the limit encodes and
//! decodes, one over is an `EncodeError` on encode and a `DecodeError` on
//! decode. Also the helpers that keep frames within the limits:
//! `chunk_changes`, `chunk_ephemeral` and `Frame::digest`.

use concord_sync::wire::{
    DecodeError, EncodeError, EphemeralEntry, FRAME_HEADROOM, Frame, FrameKind, Limit,
    MAX_ACTOR_BYTES, MAX_CHANGE_BYTES, MAX_CHANGES_PER_FRAME, MAX_CLOCK_ENTRIES, MAX_CUT_ENTRIES,
    MAX_EPHEMERAL_PER_FRAME, MAX_EPHEMERAL_VALUE_BYTES, MAX_FRAME_BYTES, MAX_PATH_BYTES,
    MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_CHUNK_BYTES, MAX_SPACE_NAME_BYTES, MAX_SYNC_MESSAGE_BYTES,
    WIRE_VERSION, chunk_changes, chunk_ephemeral, chunk_snapshot, encode_varint,
};

/// The epoch id every frame of these tests names.
const EPOCH: [u8; 32] = [0xE0; 32];

fn enc_too_large(what: Limit, len: usize) -> EncodeError {
    EncodeError::TooLarge {
        what,
        len,
        max: what.max(),
    }
}

fn dec_too_large(what: Limit, len: usize) -> DecodeError {
    DecodeError::TooLarge {
        what,
        len: len as u64,
        max: what.max() as u64,
    }
}

/// Hand-built frame bytes (bypassing the encoder's checks): header with the
/// given space name bytes, the epoch for the kinds that carry one, then `body`.
fn raw(kind: FrameKind, space: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION, kind.code()];
    encode_varint(space.len() as u64, &mut out);
    out.extend_from_slice(space);
    if !matches!(kind, FrameKind::Bye | FrameKind::Ephemeral) {
        out.extend_from_slice(&EPOCH);
    }
    out.extend_from_slice(body);
    out
}

fn round_trip(frame: &Frame) {
    let bytes = frame.encode().expect("at the limit encodes");
    assert_eq!(&Frame::decode(&bytes).expect("at the limit decodes"), frame);
}

fn bye(space: String) -> Frame {
    Frame::Bye {
        space,
        reason: concord_sync::wire::ByeReason::Shutdown,
    }
}

fn digest(clock: Vec<(Vec<u8>, u64)>) -> Frame {
    Frame::Digest {
        space: "s".into(),
        epoch: EPOCH,
        clock,
        heads_hash: [7; 8],
        truncated: false,
        reply: true,
    }
}

fn actor(i: usize) -> Vec<u8> {
    (i as u32).to_be_bytes().to_vec()
}

#[test]
fn limits_are_consistent() {
    assert_eq!(MAX_FRAME_BYTES, 4 * 1024 * 1024);
    assert_eq!(MAX_CHANGE_BYTES, MAX_FRAME_BYTES - FRAME_HEADROOM);
    assert_eq!(MAX_SYNC_MESSAGE_BYTES, MAX_FRAME_BYTES - FRAME_HEADROOM);
    assert_eq!(Limit::Frame.max(), MAX_FRAME_BYTES);
    assert_eq!(Limit::ChangesPerFrame.max(), MAX_CHANGES_PER_FRAME);
    assert_eq!(Limit::ClockEntries.max(), MAX_CLOCK_ENTRIES);
    // The largest possible digest is far below the frame limit.
    let max_digest = Frame::Digest {
        space: "x".repeat(MAX_SPACE_NAME_BYTES),
        epoch: EPOCH,
        clock: (0..MAX_CLOCK_ENTRIES)
            .map(|i| {
                let mut a = vec![0u8; MAX_ACTOR_BYTES];
                a[..4].copy_from_slice(&actor(i));
                (a, u64::MAX)
            })
            .collect(),
        heads_hash: [0; 8],
        truncated: true,
        reply: true,
    };
    round_trip(&max_digest);
    assert!(max_digest.encoded_len() < MAX_FRAME_BYTES / 100);
}

#[test]
fn cut_entries_at_limit_and_one_over() {
    let cut = |n: usize| -> Vec<(Vec<u8>, u64)> { (0..n).map(|i| (actor(i), 1)).collect() };
    let at = Frame::Epoch {
        space: "s".into(),
        epoch: EPOCH,
        cut: cut(MAX_CUT_ENTRIES),
    };
    round_trip(&at);
    let over = Frame::Epoch {
        space: "s".into(),
        epoch: EPOCH,
        cut: cut(MAX_CUT_ENTRIES + 1),
    };
    assert_eq!(
        over.encode(),
        Err(enc_too_large(Limit::CutEntries, MAX_CUT_ENTRIES + 1))
    );
    let mut body = Vec::new();
    encode_varint((MAX_CUT_ENTRIES + 1) as u64, &mut body);
    body.extend(std::iter::repeat_n(0u8, 2 * (MAX_CUT_ENTRIES + 1)));
    assert_eq!(
        Frame::decode(&raw(FrameKind::Epoch, b"s", &body)),
        Err(dec_too_large(Limit::CutEntries, MAX_CUT_ENTRIES + 1))
    );
}

#[test]
fn snapshot_sizes_at_limit_and_one_over() {
    let piece = |total: u64, chunk: usize| Frame::Snapshot {
        space: "s".into(),
        epoch: EPOCH,
        total,
        offset: 0,
        chunk: vec![1; chunk],
    };
    round_trip(&piece(MAX_SNAPSHOT_BYTES as u64, MAX_SNAPSHOT_CHUNK_BYTES));
    assert_eq!(
        piece(MAX_SNAPSHOT_BYTES as u64 + 1, 1).encode(),
        Err(enc_too_large(Limit::Snapshot, MAX_SNAPSHOT_BYTES + 1))
    );
    assert_eq!(
        piece(MAX_SNAPSHOT_BYTES as u64, MAX_SNAPSHOT_CHUNK_BYTES + 1).encode(),
        Err(enc_too_large(
            Limit::SnapshotChunk,
            MAX_SNAPSHOT_CHUNK_BYTES + 1
        ))
    );
    let mut body = Vec::new();
    encode_varint(MAX_SNAPSHOT_BYTES as u64 + 1, &mut body);
    assert_eq!(
        Frame::decode(&raw(FrameKind::Snapshot, b"s", &body)),
        Err(dec_too_large(Limit::Snapshot, MAX_SNAPSHOT_BYTES + 1))
    );
    let mut body = Vec::new();
    encode_varint(MAX_SNAPSHOT_BYTES as u64, &mut body);
    encode_varint(0, &mut body);
    encode_varint(MAX_SNAPSHOT_CHUNK_BYTES as u64 + 1, &mut body);
    assert_eq!(
        Frame::decode(&raw(FrameKind::Snapshot, b"s", &body)),
        Err(dec_too_large(
            Limit::SnapshotChunk,
            MAX_SNAPSHOT_CHUNK_BYTES + 1
        ))
    );
    // a whole snapshot splits into pieces within the limits
    let doc = vec![3u8; 2 * MAX_SNAPSHOT_CHUNK_BYTES + 5];
    let frames = chunk_snapshot("s", EPOCH, &doc).expect("fits");
    assert_eq!(frames.len(), 3);
    let mut joined = Vec::new();
    for frame in &frames {
        round_trip(frame);
        if let Frame::Snapshot {
            offset,
            chunk,
            total,
            ..
        } = frame
        {
            assert_eq!(*offset, joined.len() as u64);
            assert_eq!(*total, doc.len() as u64);
            joined.extend_from_slice(chunk);
        }
    }
    assert_eq!(joined, doc);
}

#[test]
fn space_name_at_limit_and_one_over() {
    round_trip(&bye("a".repeat(MAX_SPACE_NAME_BYTES)));
    // Multi-byte UTF-8 counts bytes, not chars: 32 x 4 bytes = 128.
    round_trip(&bye("\u{1F600}".repeat(MAX_SPACE_NAME_BYTES / 4)));

    let over = "a".repeat(MAX_SPACE_NAME_BYTES + 1);
    assert_eq!(
        bye(over.clone()).encode(),
        Err(enc_too_large(Limit::SpaceName, MAX_SPACE_NAME_BYTES + 1))
    );
    assert_eq!(
        Frame::decode(&raw(FrameKind::Bye, over.as_bytes(), &[0])),
        Err(dec_too_large(Limit::SpaceName, MAX_SPACE_NAME_BYTES + 1))
    );
}

#[test]
fn changes_per_frame_at_limit_and_one_over() {
    let at = Frame::Changes {
        space: "s".into(),
        epoch: EPOCH,
        changes: vec![vec![1]; MAX_CHANGES_PER_FRAME],
    };
    round_trip(&at);

    let over = Frame::Changes {
        space: "s".into(),
        epoch: EPOCH,
        changes: vec![vec![1]; MAX_CHANGES_PER_FRAME + 1],
    };
    assert_eq!(
        over.encode(),
        Err(enc_too_large(
            Limit::ChangesPerFrame,
            MAX_CHANGES_PER_FRAME + 1
        ))
    );
    let mut body = Vec::new();
    encode_varint((MAX_CHANGES_PER_FRAME + 1) as u64, &mut body);
    body.extend(std::iter::repeat_n(0u8, MAX_CHANGES_PER_FRAME + 1));
    assert_eq!(
        Frame::decode(&raw(FrameKind::Changes, b"s", &body)),
        Err(dec_too_large(
            Limit::ChangesPerFrame,
            MAX_CHANGES_PER_FRAME + 1
        ))
    );
}

#[test]
fn change_bytes_at_limit_and_one_over() {
    let space = "s".repeat(MAX_SPACE_NAME_BYTES);
    let at = Frame::Changes {
        space: space.clone(),
        epoch: EPOCH,
        changes: vec![vec![0xab; MAX_CHANGE_BYTES]],
    };
    round_trip(&at);

    let over = Frame::Changes {
        space: space.clone(),
        epoch: EPOCH,
        changes: vec![vec![0xab; MAX_CHANGE_BYTES + 1]],
    };
    assert_eq!(
        over.encode(),
        Err(enc_too_large(Limit::Change, MAX_CHANGE_BYTES + 1))
    );
    // Declared length one over, with the bytes present.
    let mut body = vec![1];
    encode_varint((MAX_CHANGE_BYTES + 1) as u64, &mut body);
    body.resize(body.len() + MAX_CHANGE_BYTES + 1, 0xab);
    assert_eq!(
        Frame::decode(&raw(FrameKind::Changes, space.as_bytes(), &body)),
        Err(dec_too_large(Limit::Change, MAX_CHANGE_BYTES + 1))
    );
}

#[test]
fn sync_message_at_limit_and_one_over() {
    let space = "s".repeat(MAX_SPACE_NAME_BYTES);
    round_trip(&Frame::SyncMessage {
        space: space.clone(),
        epoch: EPOCH,
        message: vec![3; MAX_SYNC_MESSAGE_BYTES],
    });

    let over = Frame::SyncMessage {
        space: space.clone(),
        epoch: EPOCH,
        message: vec![3; MAX_SYNC_MESSAGE_BYTES + 1],
    };
    assert_eq!(
        over.encode(),
        Err(enc_too_large(
            Limit::SyncMessage,
            MAX_SYNC_MESSAGE_BYTES + 1
        ))
    );
    let mut body = Vec::new();
    encode_varint((MAX_SYNC_MESSAGE_BYTES + 1) as u64, &mut body);
    body.resize(body.len() + MAX_SYNC_MESSAGE_BYTES + 1, 3);
    assert_eq!(
        Frame::decode(&raw(FrameKind::SyncMessage, space.as_bytes(), &body)),
        Err(dec_too_large(
            Limit::SyncMessage,
            MAX_SYNC_MESSAGE_BYTES + 1
        ))
    );
}

#[test]
fn clock_entries_at_limit_and_one_over() {
    let clock: Vec<_> = (0..MAX_CLOCK_ENTRIES)
        .map(|i| (actor(i), i as u64))
        .collect();
    round_trip(&digest(clock.clone()));

    let mut over = clock;
    over.push((actor(MAX_CLOCK_ENTRIES), 1));
    assert_eq!(
        digest(over.clone()).encode(),
        Err(enc_too_large(Limit::ClockEntries, MAX_CLOCK_ENTRIES + 1))
    );
    let mut body = vec![0];
    body.extend_from_slice(&[7; 8]);
    encode_varint(over.len() as u64, &mut body);
    for (a, seq) in &over {
        encode_varint(a.len() as u64, &mut body);
        body.extend_from_slice(a);
        encode_varint(*seq, &mut body);
    }
    assert_eq!(
        Frame::decode(&raw(FrameKind::Digest, b"s", &body)),
        Err(dec_too_large(Limit::ClockEntries, MAX_CLOCK_ENTRIES + 1))
    );
}

#[test]
fn actor_bytes_at_limit_and_one_over() {
    round_trip(&digest(vec![(vec![9; MAX_ACTOR_BYTES], 5)]));
    round_trip(&digest(vec![(Vec::new(), 5)]));

    assert_eq!(
        digest(vec![(vec![9; MAX_ACTOR_BYTES + 1], 5)]).encode(),
        Err(enc_too_large(Limit::Actor, MAX_ACTOR_BYTES + 1))
    );
    let mut body = vec![0];
    body.extend_from_slice(&[7; 8]);
    body.push(1);
    encode_varint((MAX_ACTOR_BYTES + 1) as u64, &mut body);
    body.extend_from_slice(&[9; MAX_ACTOR_BYTES + 1]);
    body.push(5);
    assert_eq!(
        Frame::decode(&raw(FrameKind::Digest, b"s", &body)),
        Err(dec_too_large(Limit::Actor, MAX_ACTOR_BYTES + 1))
    );
}

/// A Changes frame whose encoding is exactly `target` bytes (two changes:
/// one of MAX_CHANGE_BYTES, one filling the rest).
fn changes_frame_of_len(target: usize) -> Frame {
    let base = Frame::Changes {
        space: "s".into(),
        epoch: EPOCH,
        changes: vec![vec![1; MAX_CHANGE_BYTES], Vec::new()],
    }
    .encoded_len();
    let room = target - base;
    for len in room.saturating_sub(10)..=room {
        let frame = Frame::Changes {
            space: "s".into(),
            epoch: EPOCH,
            changes: vec![vec![1; MAX_CHANGE_BYTES], vec![2; len]],
        };
        if frame.encoded_len() == target {
            return frame;
        }
    }
    panic!("no frame of {target} bytes");
}

#[test]
fn frame_bytes_at_limit_and_one_over() {
    let at = changes_frame_of_len(MAX_FRAME_BYTES);
    let bytes = at.encode().expect("exactly MAX_FRAME_BYTES encodes");
    assert_eq!(bytes.len(), MAX_FRAME_BYTES);
    assert_eq!(Frame::decode(&bytes), Ok(at));

    let over = changes_frame_of_len(MAX_FRAME_BYTES + 1);
    assert_eq!(
        over.encode(),
        Err(enc_too_large(Limit::Frame, MAX_FRAME_BYTES + 1))
    );
    // Decoding refuses an oversized input before looking inside it.
    let mut long = bytes;
    long.push(0);
    assert_eq!(
        Frame::decode(&long),
        Err(dec_too_large(Limit::Frame, MAX_FRAME_BYTES + 1))
    );
}

#[test]
fn huge_declared_lengths_are_refused_without_allocating() {
    // Lengths and counts near u64::MAX with no bytes behind them.
    let mut body = Vec::new();
    encode_varint(u64::MAX, &mut body);
    for kind in [FrameKind::Changes, FrameKind::SyncMessage] {
        let err = Frame::decode(&raw(kind, b"s", &body)).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { len: u64::MAX, .. }),
            "{err:?}"
        );
    }
    let mut space_len = vec![WIRE_VERSION, FrameKind::Bye.code()];
    encode_varint(u64::MAX, &mut space_len);
    assert_eq!(
        Frame::decode(&space_len),
        Err(DecodeError::TooLarge {
            what: Limit::SpaceName,
            len: u64::MAX,
            max: MAX_SPACE_NAME_BYTES as u64,
        })
    );
    // A count within the limit that the remaining input cannot hold.
    let mut body = Vec::new();
    encode_varint(MAX_CHANGES_PER_FRAME as u64, &mut body);
    assert!(matches!(
        Frame::decode(&raw(FrameKind::Changes, b"s", &body)),
        Err(DecodeError::Truncated { .. })
    ));
    // A length within the limit pointing past the end.
    let mut body = Vec::new();
    encode_varint(MAX_SYNC_MESSAGE_BYTES as u64, &mut body);
    body.extend_from_slice(&[0; 10]);
    assert!(matches!(
        Frame::decode(&raw(FrameKind::SyncMessage, b"s", &body)),
        Err(DecodeError::Truncated { .. })
    ));
}

fn all_changes(frames: &[Frame]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .flat_map(|f| match f {
            Frame::Changes { changes, .. } => changes.clone(),
            other => panic!("not a changes frame: {other:?}"),
        })
        .collect()
}

/// Every frame encodes, and none but the last could have taken the first
/// change of the next one (the split is greedy).
fn check_chunks(space: &str, input: &[Vec<u8>], frames: &[Frame]) {
    assert_eq!(all_changes(frames), input, "order and content kept");
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.space(), space);
        let bytes = frame.encode().expect("every chunk encodes");
        assert!(bytes.len() <= MAX_FRAME_BYTES);
        if let (Frame::Changes { changes, .. }, Some(Frame::Changes { changes: next, .. })) =
            (frame, frames.get(i + 1))
        {
            let mut grown = changes.clone();
            grown.push(next[0].clone());
            let grown = Frame::Changes {
                space: space.into(),
                epoch: EPOCH,
                changes: grown,
            };
            assert!(
                grown.encode().is_err(),
                "chunk {i} could hold one more change"
            );
        }
    }
}

#[test]
fn chunk_changes_splits_by_count() {
    assert_eq!(chunk_changes("s", EPOCH, Vec::new()), Ok(Vec::new()));
    let input: Vec<Vec<u8>> = (0..2 * MAX_CHANGES_PER_FRAME + 1)
        .map(|i| (i as u32).to_le_bytes().to_vec())
        .collect();
    let frames = chunk_changes("s", EPOCH, input.clone()).expect("small changes chunk");
    assert_eq!(frames.len(), 3);
    check_chunks("s", &input, &frames);
}

#[test]
fn chunk_changes_splits_by_bytes() {
    let space = "z".repeat(MAX_SPACE_NAME_BYTES);
    let sizes = [
        MAX_CHANGE_BYTES,
        1,
        MAX_FRAME_BYTES / 3,
        MAX_FRAME_BYTES / 3,
        MAX_FRAME_BYTES / 3,
        0,
        MAX_CHANGE_BYTES,
        MAX_CHANGE_BYTES,
        FRAME_HEADROOM,
        7,
    ];
    let input: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| vec![i as u8; n])
        .collect();
    let frames = chunk_changes(&space, EPOCH, input.clone()).expect("changes within limit chunk");
    check_chunks(&space, &input, &frames);
    assert_eq!(frames.len(), 6);
}

#[test]
fn chunk_changes_refuses_oversized_change_and_space() {
    assert_eq!(
        chunk_changes("s", EPOCH, vec![vec![1], vec![0; MAX_CHANGE_BYTES + 1]]),
        Err(enc_too_large(Limit::Change, MAX_CHANGE_BYTES + 1))
    );
    assert_eq!(
        chunk_changes(&"s".repeat(MAX_SPACE_NAME_BYTES + 1), EPOCH, vec![vec![1]]),
        Err(enc_too_large(Limit::SpaceName, MAX_SPACE_NAME_BYTES + 1))
    );
}

#[test]
fn digest_helper_truncates_big_clocks() {
    let clock = |n: usize| (0..n).map(|i| (actor(i), i as u64 + 1));

    let exact = Frame::digest("s", EPOCH, clock(MAX_CLOCK_ENTRIES), [1; 8], false).expect("fits");
    match &exact {
        Frame::Digest {
            clock, truncated, ..
        } => {
            assert_eq!(clock.len(), MAX_CLOCK_ENTRIES);
            assert!(!truncated);
        }
        other => panic!("{other:?}"),
    }
    round_trip(&exact);

    let big =
        Frame::digest("s", EPOCH, clock(MAX_CLOCK_ENTRIES * 4 + 3), [1; 8], true).expect("fits");
    match &big {
        Frame::Digest {
            clock: kept,
            truncated,
            reply,
            ..
        } => {
            assert_eq!(kept, &clock(MAX_CLOCK_ENTRIES).collect::<Vec<_>>());
            assert!(truncated);
            assert!(reply);
        }
        other => panic!("{other:?}"),
    }
    round_trip(&big);

    let dup = vec![(actor(1), 1), (actor(2), 2), (actor(1), 3)];
    assert_eq!(
        Frame::digest("s", EPOCH, dup, [0; 8], false),
        Err(EncodeError::DuplicateActor { index: 2 })
    );
    assert_eq!(
        Frame::digest(
            "s",
            EPOCH,
            vec![(vec![0; MAX_ACTOR_BYTES + 1], 1)],
            [0; 8],
            false
        ),
        Err(enc_too_large(Limit::Actor, MAX_ACTOR_BYTES + 1))
    );
}

fn entry(path: &str, value_len: usize) -> EphemeralEntry {
    EphemeralEntry {
        path: path.into(),
        writer: vec![7; 16],
        wall: 1_700_000_000_000,
        logical: 3,
        ttl_ms: 5_000,
        value: vec![b'1'; value_len],
    }
}

fn ephemeral(entries: Vec<EphemeralEntry>) -> Frame {
    Frame::Ephemeral {
        space: "s".into(),
        entries,
    }
}

#[test]
fn ephemeral_entries_per_frame_at_limit_and_one_over() {
    round_trip(&ephemeral(vec![
        entry("observation/x", 1);
        MAX_EPHEMERAL_PER_FRAME
    ]));
    let over = ephemeral(vec![entry("observation/x", 1); MAX_EPHEMERAL_PER_FRAME + 1]);
    assert_eq!(
        over.encode(),
        Err(enc_too_large(
            Limit::EphemeralPerFrame,
            MAX_EPHEMERAL_PER_FRAME + 1
        ))
    );
    let mut body = Vec::new();
    encode_varint((MAX_EPHEMERAL_PER_FRAME + 1) as u64, &mut body);
    body.extend(std::iter::repeat_n(0u8, 6 * (MAX_EPHEMERAL_PER_FRAME + 1)));
    assert_eq!(
        Frame::decode(&raw(FrameKind::Ephemeral, b"s", &body)),
        Err(dec_too_large(
            Limit::EphemeralPerFrame,
            MAX_EPHEMERAL_PER_FRAME + 1
        ))
    );
    // A count the remaining input cannot hold (entries take 6 bytes at least).
    let mut body = Vec::new();
    encode_varint(MAX_EPHEMERAL_PER_FRAME as u64, &mut body);
    body.extend(std::iter::repeat_n(0u8, 6 * MAX_EPHEMERAL_PER_FRAME - 1));
    assert!(matches!(
        Frame::decode(&raw(FrameKind::Ephemeral, b"s", &body)),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn ephemeral_path_writer_and_value_at_limit_and_one_over() {
    let at = EphemeralEntry {
        writer: vec![1; MAX_ACTOR_BYTES],
        ..entry(&"p".repeat(MAX_PATH_BYTES), MAX_EPHEMERAL_VALUE_BYTES)
    };
    round_trip(&ephemeral(vec![at.clone()]));
    let long_path = entry(&"p".repeat(MAX_PATH_BYTES + 1), 1);
    let long_writer = EphemeralEntry {
        writer: vec![1; MAX_ACTOR_BYTES + 1],
        ..entry("observation/x", 1)
    };
    let long_value = entry("observation/x", MAX_EPHEMERAL_VALUE_BYTES + 1);
    for (bad, limit, len) in [
        (long_path, Limit::Path, MAX_PATH_BYTES + 1),
        (long_writer, Limit::Actor, MAX_ACTOR_BYTES + 1),
        (
            long_value,
            Limit::EphemeralValue,
            MAX_EPHEMERAL_VALUE_BYTES + 1,
        ),
    ] {
        let frame = ephemeral(vec![at.clone(), bad.clone()]);
        assert_eq!(frame.encode(), Err(enc_too_large(limit, len)));
        assert_eq!(
            chunk_ephemeral("s", vec![bad.clone()]),
            Err(enc_too_large(limit, len))
        );
        // The same bytes built by hand are refused by the decoder.
        let mut body = vec![1];
        for field in [bad.path.as_bytes(), &bad.writer] {
            encode_varint(field.len() as u64, &mut body);
            body.extend_from_slice(field);
        }
        for n in [bad.wall, u64::from(bad.logical), bad.ttl_ms] {
            encode_varint(n, &mut body);
        }
        encode_varint(bad.value.len() as u64, &mut body);
        body.extend_from_slice(&bad.value);
        assert_eq!(
            Frame::decode(&raw(FrameKind::Ephemeral, b"s", &body)),
            Err(dec_too_large(limit, len))
        );
    }
}

#[test]
fn chunk_ephemeral_splits_by_count_and_bytes() {
    assert_eq!(chunk_ephemeral("s", Vec::new()), Ok(Vec::new()));
    let many: Vec<EphemeralEntry> = (0..2 * MAX_EPHEMERAL_PER_FRAME + 1)
        .map(|i| entry(&format!("observation/n{i}"), 4))
        .collect();
    let big: Vec<EphemeralEntry> = (0..200)
        .map(|i| entry(&format!("coordination/p{i}"), MAX_EPHEMERAL_VALUE_BYTES))
        .collect();
    for (input, frames_wanted) in [(many, 3), (big, 4)] {
        let frames = chunk_ephemeral("s", input.clone()).expect("entries within limits chunk");
        assert_eq!(frames.len(), frames_wanted);
        let mut back = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let Frame::Ephemeral { entries, .. } = frame else {
                panic!("not an ephemeral frame: {frame:?}");
            };
            assert!(frame.encode().expect("every chunk encodes").len() <= MAX_FRAME_BYTES);
            // Greedy: no frame but the last could take the next one's first entry.
            if let Some(Frame::Ephemeral { entries: next, .. }) = frames.get(i + 1) {
                let mut grown = entries.clone();
                grown.push(next[0].clone());
                assert!(
                    ephemeral(grown).encode().is_err(),
                    "chunk {i} could hold more"
                );
            }
            back.extend(entries.iter().cloned());
        }
        assert_eq!(back, input, "order and content kept");
    }
}
