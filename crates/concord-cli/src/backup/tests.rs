//! The backup format: a round trip, and every kind of damage refused with
//! the error that names it.

use super::*;

fn sample() -> Backup {
    Backup::new(
        Meta::now("team", 3),
        b"not really automerge, the format does not care".to_vec(),
    )
}

#[test]
fn round_trip_keeps_meta_and_snapshot() {
    let backup = sample();
    let bytes = backup.encode().unwrap();
    assert_eq!(&bytes[..4], b"CCBK");
    assert_eq!(bytes[4..8], BACKUP_VERSION.to_le_bytes());
    assert_eq!(Backup::decode(&bytes).unwrap(), backup);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("team.ccbk");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(Backup::read_file(&path).unwrap(), backup);
}

#[test]
fn any_flipped_payload_byte_fails_the_checksum() {
    let bytes = sample().encode().unwrap();
    for at in HEADER_BYTES..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        assert!(
            matches!(Backup::decode(&bad), Err(BackupError::Checksum { .. })),
            "flip at {at}"
        );
    }
    // So does a flipped checksum byte in the header.
    let mut bad = bytes.clone();
    bad[20] ^= 0x80;
    let err = Backup::decode(&bad).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn header_damage_is_named() {
    let bytes = sample().encode().unwrap();
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert!(matches!(
        Backup::decode(&magic),
        Err(BackupError::NotABackup)
    ));
    let mut version = bytes.clone();
    version[4] = 9;
    assert!(matches!(
        Backup::decode(&version),
        Err(BackupError::UnsupportedVersion { found: 9 })
    ));
    let mut longer = bytes.clone();
    longer[8] = longer[8].wrapping_add(1); // the payload length, one more
    assert!(matches!(
        Backup::decode(&longer),
        Err(BackupError::Truncated { .. })
    ));
    let mut shorter = bytes.clone();
    shorter[8] = shorter[8].wrapping_sub(1);
    assert!(matches!(
        Backup::decode(&shorter),
        Err(BackupError::TrailingBytes { extra: 1 })
    ));
}

#[test]
fn every_truncation_is_refused_as_truncated() {
    let bytes = sample().encode().unwrap();
    for len in 0..bytes.len() {
        match Backup::decode(&bytes[..len]) {
            Err(BackupError::Truncated { expected, found }) => {
                assert_eq!(found, len as u64);
                assert!(expected > found);
            }
            other => panic!("cut at {len}: {other:?}"),
        }
    }
    let mut appended = bytes;
    appended.extend_from_slice(b"junk");
    assert!(matches!(
        Backup::decode(&appended),
        Err(BackupError::TrailingBytes { extra: 4 })
    ));
}

#[test]
fn read_file_checks_the_size_before_reading_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.ccbk");
    let bytes = sample().encode().unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = Backup::read_file(&path).unwrap_err();
    assert!(matches!(err, BackupError::Truncated { .. }), "{err}");
    assert!(err.to_string().starts_with("backup truncated"), "{err}");
    let missing = Backup::read_file(&dir.path().join("none")).unwrap_err();
    assert!(
        matches!(missing, BackupError::Io { op: "open", .. }),
        "{missing}"
    );
}

#[test]
fn a_payload_length_over_the_limit_is_refused_before_allocating() {
    let mut bytes = sample().encode().unwrap();
    bytes[8..16].copy_from_slice(&(MAX_PAYLOAD_BYTES + 1).to_le_bytes());
    let err = Backup::decode(&bytes).unwrap_err();
    assert!(
        matches!(err, BackupError::TooLarge { what: "payload", len, max }
            if len == MAX_PAYLOAD_BYTES + 1 && max == MAX_PAYLOAD_BYTES),
        "{err}"
    );
    // A file claiming the largest payload but holding a few bytes is cut short.
    bytes[8..16].copy_from_slice(&MAX_PAYLOAD_BYTES.to_le_bytes());
    assert!(matches!(
        Backup::decode(&bytes),
        Err(BackupError::Truncated { .. })
    ));
}

#[test]
fn metadata_over_the_limit_is_refused_both_ways() {
    let mut backup = sample();
    backup.meta.space = "x".repeat(MAX_META_BYTES);
    assert!(matches!(
        backup.encode(),
        Err(BackupError::TooLarge {
            what: "metadata",
            ..
        })
    ));
    // A hand-made file with a metadata length over the limit (valid checksum).
    let mut payload = ((MAX_META_BYTES + 1) as u32).to_le_bytes().to_vec();
    payload.extend(std::iter::repeat_n(b' ', MAX_META_BYTES + 1));
    let err = Backup::decode(&framed(&payload)).unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::TooLarge {
                what: "metadata",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_metadata_is_named() {
    let mut payload = 4u32.to_le_bytes().to_vec();
    payload.extend_from_slice(b"{no}snapshot");
    let err = Backup::decode(&framed(&payload)).unwrap_err();
    assert!(matches!(err, BackupError::Metadata(_)), "{err}");
    let short = framed(&100u32.to_le_bytes());
    assert!(matches!(
        Backup::decode(&short),
        Err(BackupError::Metadata(m)) if m.contains("longer than the payload")
    ));
    assert!(matches!(
        Backup::decode(&framed(b"ab")),
        Err(BackupError::Metadata(_))
    ));
}

/// A valid header (right checksum) around an arbitrary payload.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = BACKUP_MAGIC.to_vec();
    out.extend_from_slice(&BACKUP_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}
