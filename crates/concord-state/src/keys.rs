//! The document layout of a space. This module owns how channels map onto
//! automerge keys and how entries are encoded; it never applies policies.
//!
//! The document root holds one map per family, and each family map holds
//! [`BUCKETS`] bucket maps (keys `00`, `01`, …), all created by a *genesis
//! change* that every replica builds byte for byte the same (fixed actor,
//! time 0), so no two replicas ever create them concurrently. A channel lives
//! in one bucket, chosen by a hash of its name ([`bucket_of`]). Buckets exist
//! for speed: automerge 0.12 applies a remote change to a map by walking that
//! map's operations from its start up to the written key, so with one map
//! per family every remote write would cost time in proportion to the whole
//! history of the family; with buckets it mostly costs the history of its own
//! channel. Inside a bucket every key is flat, so no channel ever needs a
//! nested object whose concurrent creation would hide one side's writes:
//!
//! | key                        | value                                        |
//! |----------------------------|----------------------------------------------|
//! | `name`                     | the channel's [`ChannelSpec`] as JSON         |
//! | `name#v`                   | `LastValue` register: an [`Envelope`]        |
//! | `name#e#<hlc>-<actor>`     | `Topic` entry: an [`Envelope`]               |
//! | `name#c#<actor>`           | `Counter`: that actor's running contribution |
//! | `name#s#<json>`            | `Set` member (present = in the set)          |
//!
//! Values are JSON strings, so any automerge implementation (for example the
//! JavaScript package) can read an exported document.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ChannelSpec, Hlc};

/// The actor id of the genesis change shared by every space (and of an
/// epoch's first document, see [`crate::epoch::genesis`]).
pub(crate) const GENESIS_ACTOR: [u8; 16] = *b"concord-genesis\0";

/// What every genesis actor starts with; its last byte tells them apart.
pub(crate) const GENESIS_PREFIX: &[u8] = b"concord-genesis";

/// Most concurrent writes beyond the first that an epoch's first document
/// carries at one key: one genesis actor each (last byte 1..=255).
pub(crate) const MAX_CONCURRENT_WRITES: usize = 255;

/// The genesis actor carrying the `rank`-th extra concurrent writes
/// (`1..=MAX_CONCURRENT_WRITES`).
pub(crate) fn extra_genesis_actor(rank: usize) -> automerge::ActorId {
    debug_assert!((1..=MAX_CONCURRENT_WRITES).contains(&rank));
    let mut bytes = GENESIS_ACTOR;
    bytes[GENESIS_ACTOR.len() - 1] = u8::try_from(rank).unwrap_or(u8::MAX);
    automerge::ActorId::from(&bytes[..])
}

/// Bucket maps per family. Part of the document layout: every replica of
/// a space must use the same number.
pub(crate) const BUCKETS: usize = 32;

/// The bucket holding the channel `name` (FNV-1a of the name).
pub(crate) fn bucket_of(name: &str) -> usize {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash as usize % BUCKETS
}

/// The key of bucket `i` inside its family map.
pub(crate) fn bucket_key(i: usize) -> String {
    format!("{i:02x}")
}

/// What a flat bucket-map key addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot<'a> {
    /// The channel's declaration.
    Meta,
    /// The `LastValue` register.
    Register,
    /// One `Topic` entry, by id.
    Entry(&'a str),
    /// One actor's `Counter` contribution.
    Contribution(&'a str),
    /// One `Set` member, as canonical JSON.
    Member(&'a str),
}

/// Splits a family-map key into channel name and slot.
pub(crate) fn parse_key(key: &str) -> Option<(&str, Slot<'_>)> {
    let Some((name, rest)) = key.split_once('#') else {
        return Some((key, Slot::Meta));
    };
    let slot = match rest.split_once('#') {
        None if rest == "v" => Slot::Register,
        Some(("e", id)) => Slot::Entry(id),
        Some(("c", actor)) => Slot::Contribution(actor),
        Some(("s", member)) => Slot::Member(member),
        _ => return None,
    };
    Some((name, slot))
}

pub(crate) fn register_key(name: &str) -> String {
    format!("{name}#v")
}

pub(crate) fn entry_key(name: &str, id: &str) -> String {
    format!("{name}#e#{id}")
}

/// Topic entry ids sort in HLC order, then by actor: `<wall:016x><logical:08x>-<actor hex>`.
pub(crate) fn entry_id(hlc: Hlc, actor_hex: &str) -> String {
    format!("{:016x}{:08x}-{actor_hex}", hlc.wall, hlc.logical)
}

pub(crate) fn contribution_key(name: &str, actor_hex: &str) -> String {
    format!("{name}#c#{actor_hex}")
}

pub(crate) fn member_key(name: &str, member: &Value) -> String {
    format!("{name}#s#{member}")
}

/// Half-open key range `[start, end)` holding every key of one slot family of
/// a channel, e.g. all topic entries: `name#e#` .. `name#e$`.
pub(crate) fn slot_range(name: &str, tag: char) -> std::ops::Range<String> {
    format!("{name}#{tag}#")..format!("{name}#{tag}$")
}

/// A stored `LastValue` or `Topic` value with its causal metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The value.
    pub v: Value,
    /// HLC wall part of the write.
    pub t: u64,
    /// HLC logical part of the write.
    pub l: u32,
    /// Expiry (HLC wall milliseconds), if the entry has a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<u64>,
    /// For `reject` channels: the value the writer saw before this write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<Value>,
    /// For a write an epoch's first document carries: the change that made
    /// it, `<actor hex>:<seq>` (see [`crate::epoch::origin`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub o: Option<String>,
    /// The schema version of `v` (and `p`), as its writer declared the
    /// channel; absent at 1 (see [`crate::schema`]).
    #[serde(
        default = "crate::schema::first_version",
        skip_serializing_if = "crate::schema::is_first_version"
    )]
    pub s: u32,
}

impl Envelope {
    pub(crate) fn hlc(&self) -> Hlc {
        Hlc {
            wall: self.t,
            logical: self.l,
        }
    }

    /// The writer's actor, hex: from the origin of a carried write.
    pub(crate) fn origin_actor(&self) -> Option<&str> {
        self.o.as_deref()?.split_once(':').map(|(actor, _)| actor)
    }

    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.x.is_some_and(|x| x <= now_ms)
    }
}

pub(crate) fn encode_spec(spec: &ChannelSpec) -> String {
    // Serializing a plain derive of enums and strings cannot fail.
    serde_json::to_string(spec).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread_channels() {
        // Part of the document layout: these must never change.
        assert_eq!(bucket_of(""), 0x811c_9dc5 % BUCKETS);
        assert_eq!(bucket_key(0), "00");
        assert_eq!(bucket_key(BUCKETS - 1), format!("{:02x}", BUCKETS - 1));
        let used: std::collections::HashSet<usize> = (0..64)
            .map(|i| bucket_of(&format!("agent{i}.status")))
            .collect();
        assert!(used.len() > BUCKETS / 2, "{used:?}");
        assert!(used.iter().all(|b| *b < BUCKETS));
    }

    #[test]
    fn keys_round_trip() {
        assert_eq!(parse_key("ci"), Some(("ci", Slot::Meta)));
        assert_eq!(parse_key(&register_key("ci")), Some(("ci", Slot::Register)));
        assert_eq!(
            parse_key(&entry_key("ops", "00ab-01")),
            Some(("ops", Slot::Entry("00ab-01")))
        );
        assert_eq!(
            parse_key(&contribution_key("n", "ff")),
            Some(("n", Slot::Contribution("ff")))
        );
        let k = member_key("s", &serde_json::json!({"a":"x#y"}));
        assert_eq!(parse_key(&k), Some(("s", Slot::Member("{\"a\":\"x#y\"}"))));
        assert_eq!(parse_key("x#zz"), None);
    }

    #[test]
    fn entry_ids_sort_by_hlc() {
        let a = entry_id(
            Hlc {
                wall: 9,
                logical: 1,
            },
            "ff",
        );
        let b = entry_id(
            Hlc {
                wall: 10,
                logical: 0,
            },
            "00",
        );
        assert!(a < b);
        let r = slot_range("t", 'e');
        assert!(r.contains(&entry_key("t", &a)));
        assert!(!r.contains(&"t#v".to_string()));
    }
}
