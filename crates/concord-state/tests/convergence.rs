//! Property: every replica that holds the same set of changes shows the same
//! values, the same conflicts and the same heads, whatever the order and
//! batching in which the changes arrived.

#![allow(clippy::unwrap_used)]

use concord_state::{ActorId, ChannelSpec, Millis, Policy, Replica, VectorClock};
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
        4 => r.append(now, path, &v).map(|_| ()),
        5 => r.increment(now, path, v).map(|_| ()),
        6 if v < 0 => r.set_remove(now, path, &(-v)).map(|_| ()),
        6 => r.set_add(now, path, &v).map(|_| ()),
        _ => r.put(now, path, &v).map(|_| ()),
    };
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
        let mut writers: Vec<Replica> = (1..=3).map(replica).collect();
        for (path, spec) in CHANNELS {
            writers[0].declare(Millis(0), path, spec()).unwrap();
        }
        let genesis = writers[0].changes_since(&VectorClock::new());
        for w in &mut writers[1..] {
            w.apply_changes(Millis(0), genesis.clone()).unwrap();
        }
        for op in &ops {
            match *op {
                Op::Write { r, c, v, t } => write(&mut writers[r], c, v, t),
                Op::Sync { from, to } if from != to => {
                    let delta = writers[from].changes_since(writers[to].vector_clock());
                    writers[to].apply_changes(Millis(60), delta).unwrap();
                }
                Op::Sync { .. } => {}
            }
        }
        // Every writer's own changes, one by one (the genesis change is shared).
        let all: Vec<Vec<u8>> = writers.iter().flat_map(|w| w.own_changes_after(0)).collect();
        let mut states = Vec::new();
        for (i, order) in orders.iter().enumerate() {
            let mut shuffled: Vec<(u32, Vec<u8>)> =
                all.iter().enumerate().map(|(j, c)| (order[j % order.len()] ^ j as u32, c.clone())).collect();
            shuffled.sort_by_key(|(k, _)| *k);
            let mut observer = replica(10 + i as u8);
            for chunk in shuffled.chunks(batch) {
                observer.apply_changes(Millis(100), chunk.iter().map(|(_, c)| c.clone())).unwrap();
            }
            prop_assert_eq!(observer.stats().pending, 0);
            states.push(snapshot(&observer));
        }
        // Writers converge too after a full exchange.
        for i in 0..3 {
            for j in 0..3 {
                if i != j {
                    let delta = writers[i].changes_since(writers[j].vector_clock());
                    writers[j].apply_changes(Millis(100), delta).unwrap();
                }
            }
        }
        for w in &mut writers {
            w.tick(Millis(100));
            states.push(snapshot(w));
        }
        for s in &states[1..] {
            prop_assert_eq!(s, &states[0]);
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
