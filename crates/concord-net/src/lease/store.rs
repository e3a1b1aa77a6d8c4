//! The acceptor's durable state ([`concord_lease::AcceptorState`]) in a
//! lease peer's data dir.
//!
//! Two slot files, `acceptor.0` and `acceptor.1`, written alternately: each
//! write goes to the slot *not* holding the latest durable state and ends
//! with an fsync (`sync_data`), so a crash in the middle of a write leaves
//! the previous state intact in the other slot. One fsync per persist, no
//! rename. A record is
//!
//! ```text
//! "CLA1" | seq: u64 LE | len: u32 LE | crc32(seq | len | payload): u32 LE | payload (JSON)
//! ```
//!
//! and the valid record with the highest `seq` wins on load. `seq` keeps
//! counting across restarts (the acceptor's own versions restart at 0).
//!
//! This module owns the file format and the fsync. It must never report a
//! state saved before `sync_data` returned, and never pick a record whose
//! checksum does not match.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use concord_lease::AcceptorState;

const MAGIC: &[u8; 4] = b"CLA1";
const HEADER: usize = 4 + 8 + 4 + 4;
const SLOTS: [&str; 2] = ["acceptor.0", "acceptor.1"];

/// What a data dir held at start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// Nothing was ever written: a brand-new lease peer.
    Fresh,
    /// The latest durable state.
    State(AcceptorState),
    /// Records were written but none is readable (disk corruption: a crash
    /// alone never destroys both slots). The acceptor must restart as if
    /// its disk was lost.
    Unreadable,
}

/// The acceptor state files of one data dir.
#[derive(Debug)]
pub(crate) struct StateStore {
    dir: PathBuf,
    next_seq: u64,
}

impl StateStore {
    /// Opens (creating if needed) the data dir and reads the latest state.
    pub(crate) fn open(dir: &Path) -> io::Result<(StateStore, Loaded)> {
        std::fs::create_dir_all(dir)?;
        let mut created = false;
        let mut latest: Option<(u64, AcceptorState)> = None;
        let mut written = false;
        for slot in SLOTS {
            let path = dir.join(slot);
            let bytes = match File::open(&path) {
                Ok(mut file) => {
                    let mut bytes = Vec::new();
                    file.read_to_end(&mut bytes)?;
                    bytes
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    File::create(&path)?.sync_all()?;
                    created = true;
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            written |= !bytes.is_empty();
            if let Some((seq, state)) = parse(&bytes)
                && latest.as_ref().is_none_or(|(best, _)| seq > *best)
            {
                latest = Some((seq, state));
            }
        }
        if created {
            // Make the new directory entries durable once, so that later
            // writes only need `sync_data` on the file.
            File::open(dir)?.sync_all()?;
        }
        let (next_seq, loaded) = match latest {
            Some((seq, state)) => (seq + 1, Loaded::State(state)),
            None if written => (1, Loaded::Unreadable),
            None => (1, Loaded::Fresh),
        };
        let store = StateStore {
            dir: dir.to_owned(),
            next_seq,
        };
        Ok((store, loaded))
    }

    /// Writes `state` to the older slot and fsyncs it.
    pub(crate) fn save(&mut self, state: &AcceptorState) -> io::Result<()> {
        let payload = serde_json::to_vec(state)?;
        let seq = self.next_seq;
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "acceptor state too large"))?;
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&checksum(seq, len, &payload).to_le_bytes());
        record.extend_from_slice(&payload);
        // Overwrite in place (no truncation): trailing bytes of a longer
        // old record are ignored thanks to `len`, and a same-size overwrite
        // needs no metadata update.
        let path = self.dir.join(SLOTS[usize::from(seq % 2 == 1)]);
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.write_all(&record)?;
        file.sync_data()?;
        self.next_seq += 1;
        Ok(())
    }
}

fn checksum(seq: u64, len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn parse(bytes: &[u8]) -> Option<(u64, AcceptorState)> {
    let header = bytes.get(..HEADER)?;
    if &header[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(header[12..16].try_into().ok()?);
    let crc = u32::from_le_bytes(header[16..20].try_into().ok()?);
    let end = HEADER.checked_add(usize::try_from(len).ok()?)?;
    let payload = bytes.get(HEADER..end)?;
    if checksum(seq, len, payload) != crc {
        return None;
    }
    Some((seq, serde_json::from_slice(payload).ok()?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use concord_lease::{Ballot, Millis, NodeId, Resource};

    use super::*;

    fn state(round: u64) -> AcceptorState {
        let mut s = AcceptorState {
            longest_ttl: Millis(round),
            ..AcceptorState::default()
        };
        s.promises.insert(
            Resource::new("r").unwrap(),
            Ballot::new(round, NodeId(1)).unwrap(),
        );
        s
    }

    #[test]
    fn latest_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded) = StateStore::open(dir.path()).unwrap();
        assert_eq!(loaded, Loaded::Fresh);
        for round in 1..=5 {
            store.save(&state(round)).unwrap();
        }
        drop(store);
        let (mut store, loaded) = StateStore::open(dir.path()).unwrap();
        assert_eq!(loaded, Loaded::State(state(5)));
        // Sequence numbers continue: the next write replaces the older slot.
        store.save(&state(6)).unwrap();
        let (_, loaded) = StateStore::open(dir.path()).unwrap();
        assert_eq!(loaded, Loaded::State(state(6)));
    }

    #[test]
    fn a_torn_write_falls_back_to_the_other_slot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = StateStore::open(dir.path()).unwrap();
        store.save(&state(1)).unwrap();
        store.save(&state(2)).unwrap();
        // Tear the newest record (seq 2, slot 0).
        let newest = dir.path().join(SLOTS[0]);
        let mut bytes = std::fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&newest, &bytes).unwrap();
        let (_, loaded) = StateStore::open(dir.path()).unwrap();
        assert_eq!(loaded, Loaded::State(state(1)));
        // Both torn: unreadable, never fresh.
        std::fs::write(dir.path().join(SLOTS[1]), b"CLA1garbage").unwrap();
        let (_, loaded) = StateStore::open(dir.path()).unwrap();
        assert_eq!(loaded, Loaded::Unreadable);
    }
}
