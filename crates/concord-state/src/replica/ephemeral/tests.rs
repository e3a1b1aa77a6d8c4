#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::{ChannelSpec, Delivery, Policy, SubscribeOptions, SubscriptionId, VectorClock};

const BEAT: &str = "observation/agent-7.heartbeat";

fn actor(n: u8) -> ActorId {
    ActorId::from(&[n; 16][..])
}

fn replica(n: u8) -> Replica {
    Replica::new("s", actor(n))
}

/// A replica with `BEAT` declared ephemeral with a 1 s TTL.
fn with_beat(n: u8) -> Replica {
    let mut r = replica(n);
    r.declare(Millis(0), BEAT, ChannelSpec::ephemeral(1_000))
        .unwrap();
    r
}

fn update(path: &str, writer: u8, wall: u64, logical: u32, value: Value) -> EphemeralUpdate {
    EphemeralUpdate {
        path: path.parse().unwrap(),
        writer: actor(writer),
        hlc: Hlc { wall, logical },
        ttl_ms: 1_000,
        value: serde_json::to_vec(&value).unwrap(),
    }
}

fn events(r: &mut Replica, sub: SubscriptionId) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event(sub).unwrap())
        .map(|d| match d {
            Delivery::Event(e) => e,
            Delivery::Lagged { missed } => panic!("lagged {missed}"),
        })
        .collect()
}

#[test]
fn each_writer_keeps_its_newest_value_by_hlc() {
    let mut r = with_beat(1);
    let applied = |r: &mut Replica, u| r.apply_ephemeral(Millis(100), vec![u]).unwrap();
    assert_eq!(
        applied(&mut r, update(BEAT, 2, 50, 1, json!("a1"))).applied,
        1
    );
    assert_eq!(
        applied(&mut r, update(BEAT, 3, 10, 0, json!("b1"))).applied,
        1
    );
    // Older and equal HLCs of writer 2 are ignored, whatever their value.
    assert_eq!(
        applied(&mut r, update(BEAT, 2, 50, 0, json!("old"))).ignored,
        1
    );
    assert_eq!(
        applied(&mut r, update(BEAT, 2, 50, 1, json!("same"))).ignored,
        1
    );
    assert_eq!(
        applied(&mut r, update(BEAT, 2, 50, 2, json!("a2"))).applied,
        1
    );
    let values = r.ephemeral_values(BEAT).unwrap();
    let seen: Vec<(ActorId, Value)> = values.into_iter().map(|v| (v.writer, v.value)).collect();
    assert_eq!(seen, [(actor(2), json!("a2")), (actor(3), json!("b1"))]);
    assert_eq!(
        r.get(BEAT).unwrap(),
        Some(json!({ actor(2).to_hex_string(): "a2", actor(3).to_hex_string(): "b1" }))
    );
    // The HLC observed the peers' writes: the next local write orders after them.
    assert!(
        r.put_ephemeral(Millis(1), BEAT, &"mine").unwrap().hlc
            > Hlc {
                wall: 50,
                logical: 2
            }
    );
}

#[test]
fn the_ttl_is_required_and_lives_in_the_declaration() {
    let mut r = replica(1);
    let ttl_error = |e: StateError| matches!(e, StateError::EphemeralTtl { .. });
    // Never declared: no TTL.
    assert!(ttl_error(r.put_ephemeral(Millis(1), BEAT, &1).unwrap_err()));
    for spec in [
        ChannelSpec::of_kind(ChannelKind::Ephemeral),
        ChannelSpec::ephemeral(0),
        ChannelSpec::ephemeral(MAX_EPHEMERAL_TTL_MS + 1),
    ] {
        assert!(ttl_error(r.declare(Millis(1), BEAT, spec).unwrap_err()));
    }
    assert_eq!(r.spec(BEAT).unwrap(), None);
    r.declare(Millis(1), BEAT, ChannelSpec::ephemeral(250))
        .unwrap();
    let receipt = r.put_ephemeral(Millis(10), BEAT, &1).unwrap();
    assert_eq!(receipt.expires_at, Millis(receipt.hlc.wall + 250));
    // Kinds do not mix, either way.
    assert!(matches!(
        r.put(Millis(11), BEAT, &1),
        Err(StateError::WrongKind { .. })
    ));
    r.put(Millis(12), "observation/ci", &"green").unwrap();
    assert!(matches!(
        r.put_ephemeral(Millis(13), "observation/ci", &1),
        Err(StateError::WrongKind { .. })
    ));
    // The declaration is listed like any other.
    assert!(
        r.channels()
            .contains(&(BEAT.parse().unwrap(), ChannelSpec::ephemeral(250)))
    );
}

#[test]
fn spec_json_of_other_kinds_is_unchanged() {
    let lww = ChannelSpec::last_value(Policy::LastWriteWins);
    let text = serde_json::to_string(&lww).unwrap();
    assert_eq!(text, r#"{"kind":"last_value","policy":"last_write_wins"}"#);
    assert_eq!(serde_json::from_str::<ChannelSpec>(&text).unwrap(), lww);
    let eph = ChannelSpec::ephemeral(5_000);
    let text = serde_json::to_string(&eph).unwrap();
    assert_eq!(
        text,
        r#"{"kind":"ephemeral","policy":"last_write_wins","ttl_ms":5000}"#
    );
    assert_eq!(serde_json::from_str::<ChannelSpec>(&text).unwrap(), eph);
    assert_eq!(eph.to_string(), "ephemeral/5000ms");
}

#[test]
fn expired_values_are_invisible_removed_and_announced() {
    let mut r = with_beat(1);
    let sub = r
        .subscribe("observation/*", SubscribeOptions::default())
        .unwrap();
    let receipt = r
        .put_ephemeral(Millis(100), BEAT, &json!({"beat": 1}))
        .unwrap();
    r.apply_ephemeral(Millis(100), vec![update(BEAT, 2, 600, 0, json!("b"))])
        .unwrap();
    assert_eq!(r.next_ephemeral_expiry(), Some(receipt.expires_at));
    let written = events(&mut r, sub);
    assert_eq!(written.len(), 2);
    assert!(written.iter().all(|e| e.ephemeral && e.old.is_none()));

    r.tick(Millis(1_100)); // the local value's expiry: gone
    let expired = events(&mut r, sub);
    assert_eq!(expired.len(), 1);
    let e = &expired[0];
    assert_eq!(
        (e.old.clone(), e.new.clone(), e.origin),
        (Some(json!({"beat": 1})), None, Origin::Local)
    );
    assert_eq!(e.position.hlc, Some(receipt.hlc));
    assert_eq!(
        r.get(BEAT).unwrap(),
        Some(json!({ actor(2).to_hex_string(): "b" }))
    );
    assert_eq!(r.stats().ephemeral_values, 1);
    assert_eq!(r.next_ephemeral_expiry(), Some(Millis(1_600)));

    r.tick(Millis(1_600));
    assert_eq!(events(&mut r, sub)[0].origin, Origin::Remote);
    assert_eq!(r.get(BEAT).unwrap(), Some(json!({})));
    assert_eq!(r.next_ephemeral_expiry(), None);
    assert_eq!(r.stats().ephemeral_values, 0);
    // A value that arrives expired is never seen.
    let late = r.apply_ephemeral(Millis(1_700), vec![update(BEAT, 3, 100, 0, json!(0))]);
    assert_eq!(late.unwrap().ignored, 1);
    assert!(events(&mut r, sub).is_empty());
}

#[test]
fn events_are_marked_and_name_the_writer_not_a_change() {
    let mut r = with_beat(1);
    let sub = r.subscribe("**", SubscribeOptions::default()).unwrap();
    r.put(Millis(1), "observation/ci", &"green").unwrap();
    let hlc = r.put_ephemeral(Millis(2), BEAT, &1).unwrap().hlc;
    r.put_ephemeral(Millis(3), BEAT, &2).unwrap();
    let got = events(&mut r, sub);
    assert_eq!(got.len(), 3);
    assert!(!got[0].ephemeral && got[0].position.seq > 0);
    let first = &got[1];
    assert!(first.ephemeral);
    assert_eq!(first.key, Some(actor(1).to_hex_string()));
    assert_eq!(first.position.actor, actor(1));
    assert_eq!(first.position.seq, 0);
    assert_eq!(first.position.change, ChangeHash([0; 32]));
    assert_eq!(first.position.hlc, Some(hlc));
    assert_eq!(
        (got[2].old.clone(), got[2].new.clone()),
        (Some(json!(1)), Some(json!(2)))
    );
}

#[test]
fn values_never_enter_the_document() {
    let mut a = with_beat(1);
    let mut b = replica(2);
    b.apply_changes(Millis(1), a.changes_since(&VectorClock::new()))
        .unwrap();
    let clock = a.vector_clock().clone();
    let heads = a.heads();
    let saved = a.doc().save();
    let all = a.changes_since(&VectorClock::new()).len();
    for i in 0..50 {
        a.put_ephemeral(Millis(10 + i), BEAT, &json!({"beat": i}))
            .unwrap();
    }
    assert_eq!(a.vector_clock(), &clock);
    assert_eq!(a.heads(), heads);
    assert_eq!(a.doc().save(), saved);
    assert_eq!(a.changes_since(&VectorClock::new()).len(), all);
    assert!(a.changes_since(b.vector_clock()).is_empty());
    assert!(
        a.replay("**", &VectorClock::new())
            .unwrap()
            .iter()
            .all(|e| !e.ephemeral)
    );
    assert!(a.history(BEAT).unwrap().is_empty());
    assert_eq!(a.stats().changes, clock.total());
}

#[test]
fn the_outbox_holds_the_latest_local_value_per_channel_once() {
    let mut r = with_beat(1);
    r.declare(
        Millis(0),
        "coordination/presence",
        ChannelSpec::ephemeral(60_000),
    )
    .unwrap();
    for i in 0..10 {
        r.put_ephemeral(Millis(10 + i), BEAT, &i).unwrap();
    }
    r.put_ephemeral(Millis(30), "coordination/presence", &"here")
        .unwrap();
    r.apply_ephemeral(Millis(30), vec![update(BEAT, 2, 30, 0, json!("theirs"))])
        .unwrap();
    let out = r.take_ephemeral_outbox();
    let got: Vec<(String, Vec<u8>)> = out
        .iter()
        .map(|u| (u.path.to_string(), u.value.clone()))
        .collect();
    // In path order (families first, in document order).
    assert_eq!(
        got,
        [
            (BEAT.to_owned(), b"9".to_vec()),
            ("coordination/presence".to_owned(), b"\"here\"".to_vec()),
        ]
    );
    assert!(out.iter().all(|u| u.writer == actor(1)));
    assert!(r.take_ephemeral_outbox().is_empty());
    // Everything live, the peer's value too, is what a joining peer gets.
    assert_eq!(r.ephemeral_snapshot().len(), 3);
}

#[test]
fn the_bound_refuses_local_writes_and_drops_remote_ones() {
    let mut r = with_beat(1);
    let mut full: Vec<EphemeralUpdate> = (0..MAX_EPHEMERAL_VALUES)
        .map(|i| update(&format!("observation/n{i}.beat"), 2, 50, 0, json!(i)))
        .collect();
    // One of them is on BEAT, written by this replica.
    full[0] = EphemeralUpdate {
        writer: actor(1),
        ..update(BEAT, 1, 50, 0, json!("mine"))
    };
    let outcome = r.apply_ephemeral(Millis(60), full).unwrap();
    assert_eq!(
        (outcome.applied, outcome.dropped),
        (MAX_EPHEMERAL_VALUES, 0)
    );
    // A local write on a new (channel, writer) is a typed error...
    r.declare(
        Millis(61),
        "coordination/presence",
        ChannelSpec::ephemeral(1_000),
    )
    .unwrap();
    assert!(matches!(
        r.put_ephemeral(Millis(62), "coordination/presence", &1),
        Err(StateError::EphemeralFull {
            max: MAX_EPHEMERAL_VALUES,
            ..
        })
    ));
    // ... replacing its own value still works ...
    r.put_ephemeral(Millis(63), BEAT, &"again").unwrap();
    // ... and a remote value on a new entry is dropped and counted.
    let more = vec![
        update("observation/late", 3, 60, 0, json!(1)),
        update("observation/n7.beat", 2, 61, 0, json!("newer")),
    ];
    let outcome = r.apply_ephemeral(Millis(64), more).unwrap();
    assert_eq!((outcome.applied, outcome.dropped), (1, 1));
    let stats = r.stats();
    assert_eq!(
        (stats.ephemeral_values, stats.ephemeral_dropped),
        (MAX_EPHEMERAL_VALUES, 1)
    );
    // Once values expire there is room again.
    r.tick(Millis(1_100));
    r.put_ephemeral(Millis(1_100), "coordination/presence", &1)
        .unwrap();
}

#[test]
fn oversized_values_are_refused() {
    let mut r = with_beat(1);
    let big = "x".repeat(MAX_VALUE_BYTES);
    assert!(matches!(
        r.put_ephemeral(Millis(1), BEAT, &big),
        Err(StateError::ValueTooLarge { .. })
    ));
    assert_eq!(r.stats().ephemeral_values, 0);
}

#[test]
fn a_malformed_batch_changes_nothing() {
    let mut r = with_beat(1);
    let good = update(BEAT, 2, 10, 0, json!(1));
    let bad = [
        EphemeralUpdate {
            value: b"{not json".to_vec(),
            ..update(BEAT, 3, 10, 0, json!(0))
        },
        EphemeralUpdate {
            ttl_ms: 0,
            ..update(BEAT, 3, 10, 0, json!(0))
        },
        EphemeralUpdate {
            ttl_ms: MAX_EPHEMERAL_TTL_MS + 1,
            ..update(BEAT, 3, 10, 0, json!(0))
        },
        EphemeralUpdate {
            value: vec![b'1'; MAX_VALUE_BYTES + 1],
            ..update(BEAT, 3, 10, 0, json!(0))
        },
    ];
    for bad in bad {
        let batch = vec![good.clone(), bad];
        assert!(matches!(
            r.apply_ephemeral(Millis(20), batch),
            Err(StateError::InvalidEphemeral(_))
        ));
        assert_eq!(r.get(BEAT).unwrap(), Some(json!({})));
    }
}

#[test]
fn values_wait_for_their_declaration_but_not_on_other_kinds() {
    let mut r = replica(1);
    // Not declared here yet: kept and readable.
    r.apply_ephemeral(Millis(10), vec![update(BEAT, 2, 10, 0, json!("early"))])
        .unwrap();
    assert_eq!(
        r.get(BEAT).unwrap(),
        Some(json!({ actor(2).to_hex_string(): "early" }))
    );
    // Declared with another kind: ignored.
    r.put(Millis(11), "observation/ci", &"green").unwrap();
    let outcome = r
        .apply_ephemeral(
            Millis(12),
            vec![update("observation/ci", 2, 12, 0, json!(1))],
        )
        .unwrap();
    assert_eq!(outcome.ignored, 1);
    assert_eq!(r.get("observation/ci").unwrap(), Some(json!("green")));
}
