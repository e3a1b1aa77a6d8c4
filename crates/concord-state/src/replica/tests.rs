use serde_json::json;

use super::*;
use crate::{ChannelSpec, Delivery, Origin, Policy, StateError, SubscribeOptions, SubscriptionId};

fn actor(n: u8) -> ActorId {
    ActorId::from(&[n; 16][..])
}

fn sync_pair(a: &mut Replica, b: &mut Replica, now: Millis) {
    let to_b = a.changes_since(b.vector_clock());
    b.apply_changes(now, to_b).unwrap();
    let to_a = b.changes_since(a.vector_clock());
    a.apply_changes(now, to_a).unwrap();
}

#[test]
fn put_get_and_converge() {
    let mut a = Replica::new("s", actor(1));
    let mut b = Replica::new("s", actor(2));
    a.put(Millis(10), "observation/ci", &json!({"ok": true}))
        .unwrap();
    sync_pair(&mut a, &mut b, Millis(11));
    assert_eq!(b.get("observation/ci").unwrap(), Some(json!({"ok": true})));
    assert_eq!(a.heads(), b.heads());
    assert_eq!(a.vector_clock(), b.vector_clock());
}

#[test]
fn lww_picks_highest_hlc_then_actor() {
    let mut a = Replica::new("s", actor(1));
    let mut b = Replica::new("s", actor(2));
    a.put(Millis(10), "observation/x", &1).unwrap();
    b.put(Millis(20), "observation/x", &2).unwrap();
    sync_pair(&mut a, &mut b, Millis(30));
    assert_eq!(a.get("observation/x").unwrap(), Some(json!(2)));
    assert_eq!(b.get("observation/x").unwrap(), Some(json!(2)));
    // A later write after seeing both wins everywhere.
    a.put(Millis(5), "observation/x", &3).unwrap();
    sync_pair(&mut a, &mut b, Millis(31));
    assert_eq!(b.get("observation/x").unwrap(), Some(json!(3)));
}

#[test]
fn first_write_wins_refuses_overwrite_and_resolves_to_earliest() {
    let mut a = Replica::new("s", actor(1));
    let mut b = Replica::new("s", actor(2));
    let spec = ChannelSpec::last_value(Policy::FirstWriteWins);
    a.declare(Millis(1), "coordination/owner", spec.clone())
        .unwrap();
    b.declare(Millis(1), "coordination/owner", spec).unwrap();
    a.put(Millis(20), "coordination/owner", &"a").unwrap();
    b.put(Millis(10), "coordination/owner", &"b").unwrap();
    sync_pair(&mut a, &mut b, Millis(30));
    assert_eq!(a.get("coordination/owner").unwrap(), Some(json!("b")));
    assert_eq!(b.get("coordination/owner").unwrap(), Some(json!("b")));
    assert!(matches!(
        a.put(Millis(40), "coordination/owner", &"again"),
        Err(StateError::AlreadySet { .. })
    ));
}

#[test]
fn reject_keeps_concurrent_values_out_and_records_conflict() {
    let mut a = Replica::new("s", actor(1));
    let mut b = Replica::new("s", actor(2));
    let spec = ChannelSpec::last_value(Policy::Reject);
    a.declare(Millis(1), "intent/deploy", spec).unwrap();
    a.put(Millis(2), "intent/deploy", &"v1").unwrap();
    sync_pair(&mut a, &mut b, Millis(3));
    a.put(Millis(4), "intent/deploy", &"a").unwrap();
    b.put(Millis(4), "intent/deploy", &"b").unwrap();
    sync_pair(&mut a, &mut b, Millis(5));
    assert_eq!(a.get("intent/deploy").unwrap(), Some(json!("v1")));
    let conflicts = b.conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].candidates.len(), 2);
    assert_eq!(a.conflicts(), conflicts);
    assert!(a.get("coordination/conflicts").unwrap().is_some());
    // A later write resolves the conflict.
    a.put(Millis(6), "intent/deploy", &"resolved").unwrap();
    sync_pair(&mut a, &mut b, Millis(7));
    assert!(b.conflicts().is_empty());
    assert_eq!(b.get("intent/deploy").unwrap(), Some(json!("resolved")));
}

#[test]
fn merge_policy_uses_registered_function() {
    let mut a = Replica::new("s", actor(1));
    let mut b = Replica::new("s", actor(2));
    for r in [&mut a, &mut b] {
        r.register_merge("max", |vs| {
            vs.iter()
                .filter_map(|v| v.as_i64())
                .max()
                .map_or(json!(null), |m| json!(m))
        });
    }
    a.declare(
        Millis(1),
        "observation/peak",
        ChannelSpec::last_value(Policy::Merge("max".into())),
    )
    .unwrap();
    sync_pair(&mut a, &mut b, Millis(1));
    a.put(Millis(2), "observation/peak", &7).unwrap();
    b.put(Millis(3), "observation/peak", &5).unwrap();
    sync_pair(&mut a, &mut b, Millis(4));
    assert_eq!(a.get("observation/peak").unwrap(), Some(json!(7)));
    assert_eq!(b.get("observation/peak").unwrap(), Some(json!(7)));
}

#[test]
fn topic_counter_set() {
    let mut a = Replica::new("s", actor(1));
    let mut b = Replica::new("s", actor(2));
    a.append(Millis(1), "intent/ops", &"a1").unwrap();
    b.append(Millis(1), "intent/ops", &"b1").unwrap();
    a.increment(Millis(1), "coordination/calls", 2).unwrap();
    b.increment(Millis(1), "coordination/calls", 3).unwrap();
    a.set_add(Millis(1), "coordination/workers", &"w1").unwrap();
    sync_pair(&mut a, &mut b, Millis(2));
    // concurrent remove and add: add wins
    a.set_remove(Millis(3), "coordination/workers", &"w1")
        .unwrap();
    b.set_add(Millis(3), "coordination/workers", &"w1").unwrap();
    sync_pair(&mut a, &mut b, Millis(4));
    for r in [&a, &b] {
        assert_eq!(r.topic_entries("intent/ops").unwrap().len(), 2);
        assert_eq!(r.counter("coordination/calls").unwrap(), 5);
        assert_eq!(
            r.set_members("coordination/workers").unwrap(),
            vec![json!("w1")]
        );
    }
}

#[test]
fn ttl_hides_and_compaction_removes() {
    let mut a = Replica::new("s", actor(1));
    a.put_with_ttl(Millis(100), "observation/lease", &"x", 50)
        .unwrap();
    a.append_with_ttl(Millis(100), "observation/events", &"e", 50)
        .unwrap();
    assert_eq!(a.get("observation/lease").unwrap(), Some(json!("x")));
    a.tick(Millis(150));
    assert_eq!(a.get("observation/lease").unwrap(), None);
    assert!(a.topic_entries("observation/events").unwrap().is_empty());
    let report = a.compact(Millis(151)).unwrap();
    assert_eq!(report.expired_removed, 2);
    assert_eq!(a.compact(Millis(152)).unwrap().expired_removed, 0);
}

#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() {
    let mut a = Replica::new("s", actor(1));
    a.put(Millis(1), "observation/x", &1).unwrap();
    let heads = a.heads();
    assert!(matches!(
        a.put(Millis(2), "nope/x", &1),
        Err(StateError::MalformedPath { .. })
    ));
    assert!(matches!(
        a.append(Millis(2), "observation/x", &1),
        Err(StateError::WrongKind { .. })
    ));
    let big = "x".repeat(MAX_VALUE_BYTES);
    assert!(matches!(
        a.put(Millis(2), "observation/y", &big),
        Err(StateError::ValueTooLarge { .. })
    ));
    assert!(matches!(
        a.apply_changes(Millis(2), [b"garbage".to_vec()]),
        Err(StateError::InvalidChange(_))
    ));
    assert!(matches!(
        a.put(Millis(2), "coordination/conflicts", &1),
        Err(StateError::MalformedPath { .. })
    ));
    assert_eq!(a.heads(), heads);
    assert_eq!(a.get("observation/x").unwrap(), Some(json!(1)));
}

#[test]
fn a_change_that_deletes_nothing_is_refused() {
    // automerge 0.12 applies such a change but panics when it rebuilds it
    // later (for a peer's delta): a hostile peer must not get that far.
    let mut a = Replica::new("s", actor(1));
    a.put(Millis(1), "observation/x", &1).unwrap();
    let heads = a.heads();
    let last = automerge::ReadDoc::get_change_by_hash(a.doc(), &heads[0]).unwrap();
    let bucket = a.layout.obj(&"observation/x".parse().unwrap()).clone();
    let forged = automerge::Change::from(automerge::ExpandedChange {
        operations: vec![automerge::legacy::Op {
            action: automerge::legacy::OpType::Delete,
            obj: super::doc::legacy_id(&bucket).unwrap(),
            key: automerge::legacy::Key::Map("x#v".into()),
            pred: Vec::new().into_iter().collect(),
            insert: false,
        }],
        actor_id: actor(9),
        hash: None,
        seq: 1,
        start_op: std::num::NonZeroU64::new(last.max_op() + 1).unwrap(),
        time: 0,
        message: None,
        deps: heads.clone(),
        extra_bytes: Vec::new(),
        author: None,
    });
    let err = a.apply_changes(Millis(2), [forged.raw_bytes().to_vec()]);
    assert!(matches!(err, Err(StateError::InvalidChange(_))), "{err:?}");
    assert_eq!(a.heads(), heads);
    assert_eq!(a.changes_since(&VectorClock::new()).len(), 1);
}

#[test]
fn out_of_order_changes_wait_and_queue_is_bounded() {
    let mut a = Replica::new("s", actor(1));
    for i in 0..5 {
        a.put(Millis(i), "observation/x", &i).unwrap();
    }
    let mut changes = a.own_changes_after(0);
    changes.reverse();
    let mut b = Replica::new("s", actor(2));
    let out = b.apply_changes(Millis(10), changes.clone()).unwrap();
    assert_eq!(out.pending, 0);
    assert_eq!(b.get("observation/x").unwrap(), Some(json!(4)));

    let mut c = Replica::new("s", actor(3));
    c.config.max_pending_changes = 2;
    // only the last three changes: none can apply, two wait, one is dropped
    let out = c.apply_changes(Millis(10), &changes[..3]).unwrap();
    assert_eq!((out.pending, out.dropped, out.applied), (2, 1, 0));
    assert!(out.overflowed());
    // anti-entropy then repairs everything
    c.apply_changes(Millis(11), a.changes_since(c.vector_clock()))
        .unwrap();
    assert_eq!(c.heads(), a.heads());
    assert_eq!(c.stats().pending, 0);
}

#[test]
fn subscriptions_deliver_local_and_remote_events_and_overflow() {
    let mut a = Replica::new("s", actor(1));
    let mut b = Replica::new("s", actor(2));
    let sub = b
        .subscribe("intent/*", SubscribeOptions::default().capacity(2))
        .unwrap();
    let all = b.subscribe("*", SubscribeOptions::default()).unwrap();
    a.put(Millis(1), "intent/plan", &"p1").unwrap();
    a.put(Millis(2), "observation/x", &1).unwrap();
    sync_pair(&mut a, &mut b, Millis(3));
    let Some(Delivery::Event(e)) = b.poll_event(sub).unwrap() else {
        panic!("no event")
    };
    assert_eq!(e.path.to_string(), "intent/plan");
    assert_eq!(e.new, Some(json!("p1")));
    assert_eq!(e.origin, Origin::Remote);
    assert_eq!(b.poll_event(sub).unwrap(), None);
    assert_eq!(b.buffered_events(all), 2);
    for i in 0..3 {
        b.put(Millis(4 + i), "intent/plan", &i).unwrap();
    }
    assert_eq!(
        b.poll_event(sub).unwrap(),
        Some(Delivery::Lagged { missed: 1 })
    );
    let Some(Delivery::Event(e)) = b.poll_event(sub).unwrap() else {
        panic!()
    };
    assert_eq!(
        (e.old, e.new, e.origin),
        (Some(json!(0)), Some(json!(1)), Origin::Local)
    );
    // replay recovers everything since the empty clock
    let replayed = b.replay("intent/*", &VectorClock::new()).unwrap();
    assert_eq!(replayed.len(), 4);
    assert!(b.subscribe("[", SubscribeOptions::default()).is_err());
}

#[test]
fn filter_predicate_applies() {
    let mut a = Replica::new("s", actor(1));
    let sub = a
        .subscribe(
            "*",
            SubscribeOptions::default().filter(|e| e.new == Some(json!("keep"))),
        )
        .unwrap();
    a.put(Millis(1), "intent/a", &"drop").unwrap();
    a.put(Millis(2), "intent/a", &"keep").unwrap();
    assert!(
        matches!(a.poll_event(sub).unwrap(), Some(Delivery::Event(e)) if e.new == Some(json!("keep")))
    );
    assert_eq!(a.poll_event(sub).unwrap(), None);
}

#[test]
fn happened_before_between_events() {
    let mut a = Replica::new("s", actor(1));
    let mut b = Replica::new("s", actor(2));
    let w1 = a.put(Millis(1), "observation/x", &1).unwrap();
    sync_pair(&mut a, &mut b, Millis(2));
    let w2 = b.put(Millis(3), "observation/y", &2).unwrap();
    let w3 = a.put(Millis(3), "observation/z", &3).unwrap();
    sync_pair(&mut a, &mut b, Millis(4));
    let c1 = a.clock_of(&w1.change).unwrap();
    let c2 = a.clock_of(&w2.change).unwrap();
    let c3 = a.clock_of(&w3.change).unwrap();
    assert_eq!(c1.compare(&c2), crate::Causality::Before);
    assert_eq!(c2.compare(&c3), crate::Causality::Concurrent);
}

#[test]
fn history_lists_every_write() {
    let mut a = Replica::new("s", actor(1));
    a.put(Millis(1), "observation/x", &1).unwrap();
    a.put(Millis(2), "observation/x", &2).unwrap();
    a.clear(Millis(3), "observation/x").unwrap();
    let h = a.history("observation/x").unwrap();
    let values: Vec<_> = h.iter().map(|e| e.value.clone()).collect();
    assert_eq!(values, vec![Some(json!(1)), Some(json!(2)), None]);
}

#[test]
fn sync_protocol_fallback_converges() {
    let mut a = Replica::new("s", actor(1));
    let mut b = Replica::new("s", actor(2));
    for i in 0..20 {
        a.put(Millis(i), "observation/x", &i).unwrap();
        b.append(Millis(i), "intent/log", &i).unwrap();
    }
    let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
    for _ in 0..10 {
        if let Some(m) = a.generate_sync_message(&mut sa) {
            b.receive_sync_message(Millis(100), &mut sb, &m).unwrap();
        }
        if let Some(m) = b.generate_sync_message(&mut sb) {
            a.receive_sync_message(Millis(100), &mut sa, &m).unwrap();
        }
    }
    assert_eq!(a.heads(), b.heads());
    assert_eq!(a.vector_clock(), b.vector_clock());
    assert!(b.receive_sync_message(Millis(1), &mut sb, b"junk").is_err());
}

#[test]
fn a_sink_never_overtakes_buffered_events() {
    use std::sync::{Arc, Mutex};
    let mut r = Replica::new("s", ActorId::from(&[1u8; 16][..]));
    let sub = r
        .subscribe("observation/*", SubscribeOptions::default())
        .unwrap();
    let taken = Arc::new(Mutex::new((false, Vec::new())));
    let sink = {
        let taken = taken.clone();
        move |e: crate::Event| {
            let mut t = taken.lock().unwrap();
            if !t.0 {
                return Some(e);
            }
            t.1.push(e.new);
            None
        }
    };
    r.set_event_sink(sub, Box::new(sink)).unwrap();
    r.put(Millis(1), "observation/a", &1).unwrap();
    assert_eq!(r.buffered_events(sub), 1, "no room: buffered");
    taken.lock().unwrap().0 = true;
    r.put(Millis(2), "observation/a", &2).unwrap();
    assert_eq!(r.buffered_events(sub), 2, "queued behind the first");
    let polled: Vec<_> = std::iter::from_fn(|| r.poll_event(sub).unwrap())
        .map(|d| match d {
            Delivery::Event(e) => e.new,
            Delivery::Lagged { .. } => None,
        })
        .collect();
    assert_eq!(polled, vec![Some(json!(1)), Some(json!(2))]);
    r.put(Millis(3), "observation/a", &3).unwrap();
    assert_eq!(taken.lock().unwrap().1, vec![Some(json!(3))]);
    assert!(
        r.set_event_sink(SubscriptionId(99), Box::new(|_| None))
            .is_err()
    );
}

#[test]
fn causal_order_puts_a_change_after_an_empty_dependency() {
    use automerge::transaction::{CommitOptions, Transactable};
    // An empty change shares its first op counter with its successor; the
    // successor's actor sorts first, so ordering by counter alone is wrong.
    let mut doc = automerge::Automerge::new().with_actor(actor(9));
    let empty = doc.empty_commit(CommitOptions::default());
    doc.set_actor(actor(1));
    let mut tx = doc.transaction();
    tx.put(automerge::ROOT, "k", 1).unwrap();
    let next = tx.commit().0.unwrap();
    let metas = doc.get_changes_meta(&[]);
    assert_eq!(
        metas.iter().map(|m| m.start_op).collect::<Vec<_>>(),
        vec![1, 1],
        "the two changes share their first op counter"
    );
    assert_eq!(super::doc::causal_order(metas), vec![empty, next]);
}
