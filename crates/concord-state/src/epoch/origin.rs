//! Origins of carried writes. A value that an epoch's first document carries
//! over from the cut is written there by a genesis actor, so its op id no
//! longer says which change wrote it; the origin (the logical change, see
//! [`Dot`]) travels inside the value instead: as an `"o"` field in a JSON
//! object (register and topic envelopes, channel declarations), or as a
//! `#o=` suffix on a set member's tag. Readers ignore both. Counter
//! contributions are integers and carry no tag: only their own actor ever
//! writes them, so the actor's latest change in the cut stands in (see
//! [`pseudo_origin`]).
//!
//! This module owns that encoding; it never reads a document.

use automerge::{ActorId, ScalarValue};
use serde_json::Value;

use crate::VectorClock;
use crate::keys::{self, Slot};

/// A logical change: its actor and its logical sequence number. Logical
/// numbers go on across epochs (see the `epoch` module), so a dot names one
/// write in every epoch it lives in.
pub(crate) type Dot = (ActorId, u64);

/// The suffix that carries a set member's origin.
const TAG_SUFFIX: &str = "#o=";

/// The field that carries a JSON value's origin.
const ORIGIN_FIELD: &str = "o";

fn encode(origin: &Dot) -> String {
    format!("{}:{}", origin.0.to_hex_string(), origin.1)
}

fn decode(s: &str) -> Option<Dot> {
    let (actor, seq) = s.split_once(':')?;
    let actor = ActorId::from(hex::decode(actor).ok()?);
    Some((actor, seq.parse().ok()?))
}

/// `value` as the first document of an epoch stores it: tagged with `origin`
/// when it is a string; other scalars are stored as they are.
pub(crate) fn tag(value: &ScalarValue, origin: &Dot) -> ScalarValue {
    let ScalarValue::Str(s) = value else {
        return value.clone();
    };
    let tagged = match serde_json::from_str::<serde_json::Map<String, Value>>(s) {
        Ok(mut object) => {
            object.insert(ORIGIN_FIELD.to_owned(), Value::String(encode(origin)));
            Value::Object(object).to_string()
        }
        Err(_) => format!("{s}{TAG_SUFFIX}{}", encode(origin)),
    };
    ScalarValue::Str(tagged.into())
}

/// Splits a stored value into the value as written and its origin tag, if
/// it has one (only carried values do).
pub(crate) fn untag(value: &ScalarValue) -> (ScalarValue, Option<Dot>) {
    let ScalarValue::Str(s) = value else {
        return (value.clone(), None);
    };
    if s.starts_with('{')
        && let Ok(mut object) = serde_json::from_str::<serde_json::Map<String, Value>>(s)
    {
        return match object.remove(ORIGIN_FIELD) {
            Some(Value::String(o)) => {
                let origin = decode(&o);
                (
                    ScalarValue::Str(Value::Object(object).to_string().into()),
                    origin,
                )
            }
            _ => (value.clone(), None),
        };
    }
    match s.rsplit_once(TAG_SUFFIX) {
        Some((plain, o)) => (ScalarValue::Str(plain.into()), decode(o)),
        None => (value.clone(), None),
    }
}

/// The stand-in origin of an untagged carried value: for a counter
/// contribution, its actor's latest change in `cut` (that actor alone
/// writes the key, and each of its writes saw the one before).
pub(crate) fn pseudo_origin(key: &str, cut: &VectorClock) -> Option<Dot> {
    let (_, Slot::Contribution(actor)) = keys::parse_key(key)? else {
        return None;
    };
    let actor = ActorId::from(hex::decode(actor).ok()?);
    let seq = cut.get(&actor);
    Some((actor, seq))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dot(n: u8, seq: u64) -> Dot {
        (ActorId::from(&[n; 4][..]), seq)
    }

    #[test]
    fn json_objects_carry_the_origin_as_a_field() {
        let envelope = ScalarValue::Str(r#"{"v":1,"t":5,"l":0}"#.into());
        let tagged = tag(&envelope, &dot(7, 42));
        let ScalarValue::Str(s) = &tagged else {
            panic!("a string stays a string")
        };
        assert!(s.contains(r#""o":"07070707:42""#), "{s}");
        let (plain, origin) = untag(&tagged);
        assert_eq!(origin, Some(dot(7, 42)));
        // canonical JSON: tagging what untag gave back is stable
        assert_eq!(tag(&plain, &dot(7, 42)), tagged);
        let parsed: Value = serde_json::from_str(plain.as_str().unwrap()).unwrap();
        assert_eq!(parsed, serde_json::json!({"v": 1, "t": 5, "l": 0}));
    }

    #[test]
    fn other_strings_carry_a_suffix_and_other_scalars_nothing() {
        let member = ScalarValue::Str("12.0@abcdef01".into());
        let tagged = tag(&member, &dot(1, 3));
        assert_eq!(untag(&tagged), (member.clone(), Some(dot(1, 3))));
        assert_eq!(untag(&member), (member, None));
        let int = ScalarValue::Int(9);
        assert_eq!(tag(&int, &dot(1, 3)), int);
        assert_eq!(untag(&int), (int, None));
    }

    #[test]
    fn contributions_stand_in_with_their_actor_in_the_cut() {
        let a = ActorId::from(&[0xab; 4][..]);
        let cut: VectorClock = [(a.clone(), 17)].into_iter().collect();
        let key = keys::contribution_key("n", &a.to_hex_string());
        assert_eq!(pseudo_origin(&key, &cut), Some((a, 17)));
        assert_eq!(pseudo_origin("n#v", &cut), None);
    }
}
