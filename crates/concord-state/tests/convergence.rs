//! Properties: every replica that holds the same set of changes shows the
//! same values, the same conflicts and the same heads, whatever the order and
//! batching in which the changes arrived; and the events a remote change
//! raises show exactly the values before and after it, however they were
//! computed (read from the document, or known from cached register state
//! before the apply).

#![allow(clippy::unwrap_used)]

mod common;

use concord_state::{
    ActorId, ChannelSpec, Delivery, Millis, Policy, Replica, SubscribeOptions, VectorClock,
};
use proptest::prelude::*;
use serde_json::{Value, json};

type Declaration = (&'static str, fn() -> ChannelSpec);

const CHANNELS: [Declaration; 7] = [
    ("observation/lww", || {
        ChannelSpec::last_value(Policy::LastWriteWins)
    }),
    ("observation/fww", || {
        ChannelSpec::last_value(Policy::FirstWriteWins)
    }),
    ("intent/rej", || ChannelSpec::last_value(Policy::Reject)),
    ("observation/merge", || {
        ChannelSpec::last_value(Policy::Merge("max".into()))
    }),
    ("intent/topic", ChannelSpec::topic),
    ("coordination/count", ChannelSpec::counter),
    ("coordination/set", ChannelSpec::set),
];

#[derive(Debug, Clone)]
enum Op {
    /// Replica `r` writes value `v` to channel `c` at time `t`.
    Write { r: usize, c: usize, v: i64, t: u64 },
    /// Replica `from` sends everything it has to replica `to`.
    Sync { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..CHANNELS.len(), -5i64..5, 0u64..50)
            .prop_map(|(r, c, v, t)| Op::Write { r, c, v, t }),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

fn replica(n: u8) -> Replica {
    let mut r = Replica::new("prop", ActorId::from(&[n; 16][..]));
    r.register_merge("max", |vs| {
        vs.iter()
            .filter_map(Value::as_i64)
            .max()
            .map_or(Value::Null, Value::from)
    });
    r
}

fn write(r: &mut Replica, c: usize, v: i64, t: u64) {
    let now = Millis(t);
    let path = CHANNELS[c].0;
    // Refusals (first_write_wins already set, removing an absent member) are fine.
    let _ = match c {
        0 if v % 2 == 0 => r.put_with_ttl(now, path, &v, 20).map(|_| ()),
        4 => r.append(now, path, &v).map(|_| ()),
        5 => r.increment(now, path, v).map(|_| ()),
        6 if v < 0 => r.set_remove(now, path, &(-v)).map(|_| ()),
        6 => r.set_add(now, path, &v).map(|_| ()),
        _ => r.put(now, path, &v).map(|_| ()),
    };
}

/// Three writers (the first declares every channel, the others get that
/// first) run `ops`; returns them and the declaring changes.
fn run_writers(ops: &[Op]) -> (Vec<Replica>, Vec<Vec<u8>>) {
    let mut writers: Vec<Replica> = (1..=3).map(replica).collect();
    for (path, spec) in CHANNELS {
        writers[0].declare(Millis(0), path, spec()).unwrap();
    }
    let declared = writers[0].changes_since(&VectorClock::new());
    for w in &mut writers[1..] {
        w.apply_changes(Millis(0), declared.clone()).unwrap();
    }
    for op in ops {
        match *op {
            Op::Write { r, c, v, t } => write(&mut writers[r], c, v, t),
            Op::Sync { from, to } if from != to => {
                let delta = writers[from].changes_since(writers[to].vector_clock());
                writers[to].apply_changes(Millis(60), delta).unwrap();
            }
            Op::Sync { .. } => {}
        }
    }
    (writers, declared)
}

fn snapshot(r: &Replica) -> (Vec<Option<Value>>, Value, Vec<automerge::ChangeHash>) {
    let values = CHANNELS.iter().map(|(p, _)| r.get(*p).unwrap()).collect();
    let conflicts = serde_json::to_value(r.conflicts()).unwrap();
    (values, conflicts, r.heads())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn same_changes_same_state(
        ops in proptest::collection::vec(op(), 1..40),
        orders in proptest::collection::vec(proptest::collection::vec(any::<u32>(), 200), 3),
        batch in 1usize..7,
    ) {
        let (mut writers, _) = run_writers(&ops);
        // Every writer's own changes, one by one (the genesis change is shared).
        let all: Vec<Vec<u8>> = writers.iter().flat_map(|w| w.own_changes_after(0)).collect();
        let mut states = Vec::new();
        for (i, order) in orders.iter().enumerate() {
            let mut observer = replica(10 + i as u8);
            common::deliver_shuffled(&mut observer, &all, order, batch);
            prop_assert_eq!(observer.stats().pending, 0);
            states.push(snapshot(&observer));
        }
        // Writers converge too after a full exchange.
        common::exchange_all(&mut writers);
        for w in &mut writers {
            w.tick(Millis(100));
            states.push(snapshot(w));
        }
        for s in &states[1..] {
            prop_assert_eq!(s, &states[0]);
        }
    }
}

/// The `LastValue` channels of [`CHANNELS`].
const REGISTERS: usize = 4;

/// Writes to the `LastValue` channels only, and syncs.
fn register_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..REGISTERS, -5i64..5, 0u64..50)
            .prop_map(|(r, c, v, t)| Op::Write { r, c, v, t }),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

/// Three writers run `ops`; returns every change they made: the
/// declarations first, then each writer's changes in its own order,
/// interleaved as `order` picks the next writer.
fn histories(ops: &[Op], order: &[u32]) -> Vec<Vec<u8>> {
    let (writers, mut all) = run_writers(ops);
    let mut own: Vec<std::collections::VecDeque<Vec<u8>>> = writers
        .iter()
        .map(|w| w.own_changes_after(0).into())
        .collect();
    own[0].retain(|c| !all.contains(c));
    for pick in order.iter().cycle() {
        let left: Vec<usize> = (0..3).filter(|&w| !own[w].is_empty()).collect();
        let Some(&w) = left.get(*pick as usize % left.len().max(1)) else {
            break;
        };
        all.extend(own[w].pop_front());
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn remote_events_show_the_values_before_and_after(
        ops in proptest::collection::vec(register_op(), 1..60),
        order in proptest::collection::vec(any::<u32>(), 200),
        local in proptest::collection::vec(proptest::option::of((0..REGISTERS, -5i64..5)), 1..8),
    ) {
        let mut observer = replica(20);
        let sub = observer.subscribe("*/*", SubscribeOptions::default()).unwrap();
        let registers = |r: &Replica| -> Vec<Option<Value>> {
            CHANNELS[..REGISTERS].iter().map(|(p, _)| r.get(*p).unwrap()).collect()
        };
        for (k, change) in histories(&ops, &order).into_iter().enumerate() {
            let now = 30 + k as u64;
            // the observer writes too, sometimes (that drops cached state)
            if let Some((c, v)) = local[k % local.len()] {
                write(&mut observer, c, v, now);
            }
            observer.tick(Millis(now));
            while observer.poll_event(sub).unwrap().is_some() {}
            let before = registers(&observer);
            let outcome = observer.apply_changes(Millis(now), [change]).unwrap();
            let after = registers(&observer);
            let mut changed = [false; REGISTERS];
            while let Some(delivery) = observer.poll_event(sub).unwrap() {
                let Delivery::Event(e) = delivery else {
                    return Err(TestCaseError::fail("lagged"));
                };
                let Some(i) = CHANNELS[..REGISTERS].iter().position(|(p, _)| e.path.as_str() == *p) else {
                    continue;
                };
                // only one change applied: the event is exactly its effect
                if outcome.applied == 1 {
                    prop_assert_eq!(&e.old, &before[i], "old value of {}", e.path);
                    prop_assert_eq!(&e.new, &after[i], "new value of {}", e.path);
                }
                changed[i] = true;
            }
            for i in 0..REGISTERS {
                if outcome.applied == 1 {
                    prop_assert_eq!(changed[i], before[i] != after[i], "event for {}", CHANNELS[i].0);
                }
            }
        }
    }
}

#[test]
fn concurrent_appends_never_clash() {
    let mut a = replica(1);
    let mut b = replica(2);
    for i in 0..10 {
        a.append(Millis(5), "intent/topic", &json!({"a": i}))
            .unwrap();
        b.append(Millis(5), "intent/topic", &json!({"b": i}))
            .unwrap();
    }
    b.apply_changes(Millis(6), a.changes_since(b.vector_clock()))
        .unwrap();
    a.apply_changes(Millis(6), b.changes_since(a.vector_clock()))
        .unwrap();
    assert_eq!(a.topic_entries("intent/topic").unwrap().len(), 20);
    assert_eq!(
        a.topic_entries("intent/topic").unwrap(),
        b.topic_entries("intent/topic").unwrap()
    );
}
