//! Property: replicas with the same migrations registered read identical
//! values from the same writes, whatever order they received them in, while
//! writers on old and new schema versions write concurrently (the first
//! writer's code stays on version 1 until it raises a channel itself) and
//! raise the versions concurrently; and every value they read has the
//! shape of its channel's version (see `concord_state::schema`).

#![allow(clippy::unwrap_used)]

mod common;

use concord_state::{ActorId, ChannelSpec, Millis, Policy, Replica, VectorClock};
use proptest::prelude::*;
use serde_json::{Value, json};

const CHANNELS: [&str; 3] = ["observation/lww", "observation/merge", "intent/topic"];

/// The highest version a test raises to.
const TOP: u32 = 3;

/// The field a value of `version` keeps its number in.
fn field(version: u32) -> &'static str {
    match version {
        1 => "n",
        2 => "m",
        _ => "k",
    }
}

fn spec(c: usize, version: u32) -> ChannelSpec {
    let spec = match c {
        0 => ChannelSpec::last_value(Policy::LastWriteWins),
        1 => ChannelSpec::last_value(Policy::Merge("max".into())),
        _ => ChannelSpec::topic(),
    };
    spec.with_version(version)
}

/// The number a value holds, in whichever field.
fn number(v: &Value) -> i64 {
    v.as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN)
}

/// A replica with every channel's migrations 1 → 2 → 3: each renames the
/// field, and 2 → 3 doubles the number too.
fn replica(n: u8) -> Replica {
    let mut r = Replica::new("schema-prop", ActorId::from(&[n; 16][..]));
    for path in CHANNELS {
        r.register_migration(path, 1, |v: Value| {
            Ok::<_, String>(json!({ field(2): v[field(1)] }))
        })
        .unwrap();
        r.register_migration(path, 2, |v: Value| {
            let n = v[field(2)].as_i64().ok_or("not a number")?;
            Ok::<_, String>(json!({ field(3): n * 2 }))
        })
        .unwrap();
    }
    r.register_merge("max", |vs| {
        vs.iter()
            .max_by_key(|v| number(v))
            .cloned()
            .unwrap_or(Value::Null)
    });
    r
}

#[derive(Debug, Clone)]
enum Op {
    /// Replica `r` writes `v` to channel `c` at time `t`, in the shape of
    /// its own version of the channel.
    Write { r: usize, c: usize, v: i64, t: u64 },
    /// Replica `r` raises channel `c` one version (up to [`TOP`]).
    Raise { r: usize, c: usize, t: u64 },
    /// Replica `from` sends everything it has to replica `to`.
    Sync { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..CHANNELS.len(), -50i64..50, 0u64..50)
            .prop_map(|(r, c, v, t)| Op::Write { r, c, v, t }),
        1 => (0..3usize, 0..CHANNELS.len(), 0u64..50).prop_map(|(r, c, t)| Op::Raise { r, c, t }),
        2 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

/// The channel's replicated version.
fn version(r: &Replica, c: usize) -> u32 {
    r.spec(CHANNELS[c]).unwrap().map_or(1, |s| s.version)
}

fn run(r: &mut Replica, op: &Op) {
    match *op {
        Op::Write { c, v, t, .. } => {
            // the shape of the version this writer's code is on
            let value = json!({ field(r.schema_version(CHANNELS[c]).unwrap()): v });
            if c == 2 {
                r.append(Millis(t), CHANNELS[c], &value).unwrap();
            } else {
                r.put(Millis(t), CHANNELS[c], &value).unwrap();
            }
        }
        Op::Raise { c, t, .. } => {
            let next = version(r, c) + 1;
            if next <= TOP {
                r.declare(Millis(t), CHANNELS[c], spec(c, next)).unwrap();
            }
        }
        Op::Sync { .. } => {}
    }
}

/// Every channel's version and visible value.
fn snapshot(r: &Replica) -> Vec<(u32, Option<Value>)> {
    (0..CHANNELS.len())
        .map(|c| (version(r, c), r.get(CHANNELS[c]).unwrap()))
        .collect()
}

/// Whether every value read has the shape of its channel's version.
fn shaped(snapshot: &[(u32, Option<Value>)]) -> bool {
    snapshot.iter().all(|(version, value)| {
        let values = match value {
            Some(Value::Array(entries)) => entries.clone(),
            Some(v) => vec![v.clone()],
            None => Vec::new(),
        };
        values.iter().all(|v| v.get(field(*version)).is_some())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn old_and_new_version_writes_read_the_same_everywhere(
        ops in proptest::collection::vec(op(), 1..40),
        orders in proptest::collection::vec(proptest::collection::vec(any::<u32>(), 200), 3),
        batch in 1usize..7,
    ) {
        let mut writers: Vec<Replica> = (1..=3).map(replica).collect();
        for (c, path) in CHANNELS.iter().enumerate() {
            writers[0].declare(Millis(0), *path, spec(c, 1)).unwrap();
        }
        let declared = writers[0].changes_since(&VectorClock::new());
        for w in &mut writers[1..] {
            w.apply_changes(Millis(0), declared.clone()).unwrap();
        }
        for op in &ops {
            match *op {
                Op::Write { r, .. } | Op::Raise { r, .. } => run(&mut writers[r], op),
                Op::Sync { from, to } if from != to => {
                    let delta = writers[from].changes_since(writers[to].vector_clock());
                    writers[to].apply_changes(Millis(60), delta).unwrap();
                }
                Op::Sync { .. } => {}
            }
        }
        let all: Vec<Vec<u8>> = writers.iter().flat_map(|w| w.own_changes_after(0)).collect();
        let mut states = Vec::new();
        for (i, order) in orders.iter().enumerate() {
            let mut observer = replica(10 + i as u8);
            common::deliver_shuffled(&mut observer, &all, order, batch);
            prop_assert_eq!(observer.stats().pending, 0);
            states.push(snapshot(&observer));
        }
        common::exchange_all(&mut writers);
        // the writers' code moves to the channels' versions (writers that
        // declared an older one were pinned there), and reads like the rest
        for w in &mut writers {
            for path in CHANNELS {
                let spec = w.spec(path).unwrap().unwrap();
                prop_assert!(w.declare(Millis(100), path, spec).unwrap().is_none());
            }
            states.push(snapshot(w));
        }
        prop_assert!(shaped(&states[0]), "{:?}", states[0]);
        for s in &states[1..] {
            prop_assert_eq!(s, &states[0]);
        }
    }
}
