//! Helpers that split long lists into as few frames as the limits allow:
//! changes ([`chunk_changes`]), snapshot pieces ([`chunk_snapshot`]) and the
//! generic splitter the ephemeral entries share. Pure: they never encode.

use super::{
    EPOCH_BYTES, EncodeError, Frame, Limit, MAX_CHANGES_PER_FRAME, MAX_FRAME_BYTES,
    MAX_SNAPSHOT_CHUNK_BYTES, check, prefixed_len, varint_len,
};

/// Splits a list of changes into as few [`Frame::Changes`] as the limits
/// allow, keeping their order (so dependencies still come first), each frame
/// within [`MAX_CHANGES_PER_FRAME`] and [`MAX_FRAME_BYTES`]. No changes give
/// no frames.
///
/// Errors if the space name is over [`MAX_SPACE_NAME_BYTES`](super::MAX_SPACE_NAME_BYTES) or a single
/// change is over [`MAX_CHANGE_BYTES`](super::MAX_CHANGE_BYTES) (such a change can only travel
/// through the automerge sync protocol).
pub fn chunk_changes(
    space: &str,
    epoch: [u8; EPOCH_BYTES],
    changes: impl IntoIterator<Item = Vec<u8>>,
) -> Result<Vec<Frame>, EncodeError> {
    chunk_items(
        space,
        EPOCH_BYTES,
        changes,
        MAX_CHANGES_PER_FRAME,
        |change| check(Limit::Change, change.len()).map(|()| prefixed_len(change.len())),
        |space, changes| Frame::Changes {
            space,
            epoch,
            changes,
        },
    )
}

/// Splits `items` into as few frames (built by `frame`) of a count-prefixed
/// list as `max_count` and [`MAX_FRAME_BYTES`] allow, keeping their order.
/// `fixed` is the frame's bytes between the space name and the list;
/// `measure` checks an item's own limits and gives its encoded size.
pub(super) fn chunk_items<T>(
    space: &str,
    fixed: usize,
    items: impl IntoIterator<Item = T>,
    max_count: usize,
    measure: impl Fn(&T) -> Result<usize, EncodeError>,
    frame: impl Fn(String, Vec<T>) -> Frame,
) -> Result<Vec<Frame>, EncodeError> {
    check(Limit::SpaceName, space.len())?;
    let header = 2 + varint_len(space.len() as u64) + space.len() + fixed;
    let mut frames = Vec::new();
    let mut current: Vec<T> = Vec::new();
    // Encoded bytes of the items in `current`.
    let mut body = 0usize;
    for item in items {
        let size = measure(&item)?;
        let count = current.len() + 1;
        let total = header + varint_len(count as u64) + body + size;
        if !current.is_empty() && (count > max_count || total > MAX_FRAME_BYTES) {
            frames.push(frame(space.to_owned(), std::mem::take(&mut current)));
            body = 0;
        }
        body += size;
        current.push(item);
    }
    if !current.is_empty() {
        frames.push(frame(space.to_owned(), current));
    }
    Ok(frames)
}

/// Splits the first document of an epoch into [`Frame::Snapshot`] pieces of
/// at most [`MAX_SNAPSHOT_CHUNK_BYTES`] (an empty document gives one empty
/// piece). Errors if it is over [`MAX_SNAPSHOT_BYTES`](super::MAX_SNAPSHOT_BYTES).
pub fn chunk_snapshot(
    space: &str,
    epoch: [u8; EPOCH_BYTES],
    snapshot: &[u8],
) -> Result<Vec<Frame>, EncodeError> {
    check(Limit::SpaceName, space.len())?;
    check(Limit::Snapshot, snapshot.len())?;
    let total = snapshot.len() as u64;
    let mut frames: Vec<Frame> = snapshot
        .chunks(MAX_SNAPSHOT_CHUNK_BYTES)
        .enumerate()
        .map(|(i, chunk)| Frame::Snapshot {
            space: space.to_owned(),
            epoch,
            total,
            offset: (i * MAX_SNAPSHOT_CHUNK_BYTES) as u64,
            chunk: chunk.to_vec(),
        })
        .collect();
    if frames.is_empty() {
        frames.push(Frame::Snapshot {
            space: space.to_owned(),
            epoch,
            total: 0,
            offset: 0,
            chunk: Vec::new(),
        });
    }
    Ok(frames)
}
