//! Epochs through the public API: cuts keep what readers see, writes made
//! concurrently with a cut are carried over exactly once, concurrent cuts
//! join, and every replica converges to the same epoch and state.
#![allow(clippy::unwrap_used)]

use concord_state::{
    ActorId, Adoption, ChannelSpec, EpochConfig, Millis, Policy, Replica, ReplicaConfig,
};
use serde_json::{Value, json};

fn replica(n: u8) -> Replica {
    let config = ReplicaConfig {
        epochs: EpochConfig::manual(),
        ..ReplicaConfig::default()
    };
    Replica::with_config("s", ActorId::from(&[n; 16][..]), config)
}

/// Brings `a` and `b` to the same epoch (each adopts the other's), as two
/// sync engines do when they meet.
fn align(a: &mut Replica, b: &mut Replica, now: u64) {
    for _ in 0..2 {
        adopt(a, b, now);
        adopt(b, a, now);
    }
    assert_eq!(a.epoch().id, b.epoch().id, "aligned");
}

/// `to` adopts `from`'s epoch, with its snapshot if it asks for it.
fn adopt(to: &mut Replica, from: &Replica, now: u64) -> Adoption {
    let announce = from.epoch_announce();
    match to.adopt_epoch(Millis(now), &announce, None).unwrap() {
        Adoption::NeedSnapshot => {
            let snapshot = from.epoch_snapshot().unwrap();
            let done = to
                .adopt_epoch(Millis(now), &announce, Some(&snapshot))
                .unwrap();
            assert!(matches!(done, Adoption::Switched { .. }), "{done:?}");
            done
        }
        other => other,
    }
}

/// `to` gets every change `from` holds (after aligning epochs).
fn sync(from: &mut Replica, to: &mut Replica, now: u64) {
    align(from, to, now);
    let delta = from.changes_since(to.vector_clock());
    to.apply_changes(Millis(now), delta).unwrap();
}

/// Both ways, until both hold the same.
fn converge(a: &mut Replica, b: &mut Replica, now: u64) {
    sync(a, b, now);
    sync(b, a, now);
    assert_eq!(a.vector_clock(), b.vector_clock());
    assert_eq!(a.heads(), b.heads(), "same changes, same document");
}

/// Every channel's visible value.
fn state(r: &Replica) -> Vec<(String, Option<Value>)> {
    r.channels()
        .into_iter()
        .map(|(p, _)| (p.to_string(), r.get(p.as_str()).unwrap()))
        .chain(std::iter::once((
            "coordination/conflicts".to_owned(),
            r.get("coordination/conflicts").unwrap(),
        )))
        .collect()
}

#[test]
fn a_cut_keeps_what_readers_see_and_sheds_history() {
    let mut a = replica(1);
    for i in 0..500 {
        a.put(Millis(i), "observation/status", &i).unwrap();
    }
    a.append(Millis(600), "intent/ops", &"deploy").unwrap();
    a.increment(Millis(601), "observation/n", 5).unwrap();
    a.set_add(Millis(602), "coordination/who", &"a").unwrap();
    let before = state(&a);
    let clock = a.vector_clock().clone();
    let big = a.doc().save().len();
    let from = a.epoch().id;
    let to = a.cut_epoch(Millis(700)).unwrap().unwrap();
    assert_ne!(from, to);
    assert_eq!(state(&a), before);
    assert_eq!(a.vector_clock(), &clock, "the clock goes on across the cut");
    assert_eq!(a.epoch().cut, clock);
    let small = a.doc().save().len();
    assert!(small * 5 < big, "{small} vs {big}");
    // writes go on with the next logical numbers
    let receipt = a.put(Millis(800), "observation/status", &"next").unwrap();
    assert_eq!(receipt.seq, clock.get(a.actor()) + 1);
    assert!(a.cut_epoch(Millis(900)).unwrap().is_some());
    assert_eq!(
        a.cut_epoch(Millis(901)).unwrap(),
        None,
        "nothing since the cut"
    );
    assert_eq!(a.get("observation/status").unwrap(), Some(json!("next")));
}

#[test]
fn a_peer_adopts_a_cut_it_holds_and_builds_the_same_epoch() {
    let (mut a, mut b) = (replica(1), replica(2));
    a.put(Millis(1), "observation/x", &1).unwrap();
    b.put(Millis(2), "observation/y", &2).unwrap();
    converge(&mut a, &mut b, 3);
    let id = a.cut_epoch(Millis(4)).unwrap().unwrap();
    let announce = a.epoch_announce();
    // b holds every change of the cut: no snapshot needed, same bytes
    let done = b.adopt_epoch(Millis(5), &announce, None).unwrap();
    assert_eq!(done, Adoption::Switched { to: id, carried: 0 });
    assert_eq!(b.heads(), a.heads());
    assert_eq!(state(&a), state(&b));
    assert_eq!(
        b.adopt_epoch(Millis(6), &announce, None).unwrap(),
        Adoption::Current
    );
}

#[test]
fn writes_concurrent_with_a_cut_are_carried_over_once() {
    let (mut a, mut b, mut c) = (replica(1), replica(2), replica(3));
    a.increment(Millis(1), "observation/n", 1).unwrap();
    converge(&mut a, &mut b, 2);
    converge(&mut a, &mut c, 2);
    // b writes while a cuts; c holds b's writes too, both carry them over
    b.increment(Millis(3), "observation/n", 10).unwrap();
    b.append(Millis(3), "intent/log", &"b").unwrap();
    b.set_add(Millis(3), "coordination/who", &"b").unwrap();
    sync(&mut b, &mut c, 4);
    a.increment(Millis(4), "observation/n", 100).unwrap();
    a.cut_epoch(Millis(5)).unwrap().unwrap();
    converge(&mut a, &mut b, 6);
    converge(&mut a, &mut c, 7);
    converge(&mut b, &mut c, 8);
    for r in [&a, &b, &c] {
        assert_eq!(
            r.counter("observation/n").unwrap(),
            111,
            "each increment once"
        );
        assert_eq!(r.get("intent/log").unwrap(), Some(json!(["b"])));
        assert_eq!(r.get("coordination/who").unwrap(), Some(json!(["b"])));
    }
    assert_eq!(a.heads(), c.heads());
}

#[test]
fn policies_keep_their_meaning_across_a_cut() {
    let (mut a, mut b) = (replica(1), replica(2));
    a.declare(
        Millis(1),
        "coordination/leader",
        ChannelSpec::last_value(Policy::FirstWriteWins),
    )
    .unwrap();
    a.declare(
        Millis(1),
        "intent/version",
        ChannelSpec::last_value(Policy::Reject),
    )
    .unwrap();
    a.put(Millis(1), "intent/version", &"1.0").unwrap();
    converge(&mut a, &mut b, 2);
    // concurrent: a cuts after its writes, b writes later by the clock
    a.put(Millis(10), "observation/lww", &"a-late").unwrap();
    a.put(Millis(10), "coordination/leader", &"a").unwrap();
    a.put(Millis(10), "intent/version", &"1.1").unwrap();
    b.put(Millis(5), "coordination/leader", &"b-first").unwrap();
    b.put(Millis(20), "observation/lww", &"b-later").unwrap();
    b.put(Millis(20), "intent/version", &"2.0").unwrap();
    let mut reference = (replica(1), replica(2));
    // the same writes, never cut, for comparison
    reference
        .0
        .apply_changes(Millis(30), a.changes_since(&Default::default()))
        .unwrap();
    reference
        .1
        .apply_changes(Millis(30), b.changes_since(&Default::default()))
        .unwrap();
    converge(&mut reference.0, &mut reference.1, 30);
    a.cut_epoch(Millis(30)).unwrap().unwrap();
    converge(&mut a, &mut b, 31);
    assert_eq!(state(&a), state(&reference.0));
    assert_eq!(a.get("observation/lww").unwrap(), Some(json!("b-later")));
    assert_eq!(
        a.get("coordination/leader").unwrap(),
        Some(json!("b-first"))
    );
    let conflicts = a.conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].candidates.len(), 2);
    assert_eq!(conflicts[0].agreed, Some(json!("1.0")));
    // a later write that saw both resolves the conflict, after another cut
    b.cut_epoch(Millis(40)).unwrap().unwrap();
    b.put(Millis(41), "intent/version", &"2.1").unwrap();
    converge(&mut a, &mut b, 42);
    assert!(a.conflicts().is_empty());
    assert_eq!(a.get("intent/version").unwrap(), Some(json!("2.1")));
}

#[test]
fn concurrent_cuts_join_into_one_epoch() {
    let (mut a, mut b) = (replica(1), replica(2));
    a.put(Millis(1), "observation/x", &1).unwrap();
    converge(&mut a, &mut b, 1);
    a.put(Millis(2), "observation/x", &"a").unwrap();
    a.append(Millis(2), "intent/log", &"a").unwrap();
    b.put(Millis(3), "observation/x", &"b").unwrap();
    b.append(Millis(3), "intent/log", &"b").unwrap();
    a.cut_epoch(Millis(4)).unwrap().unwrap();
    b.cut_epoch(Millis(4)).unwrap().unwrap();
    // more writes on both sides after their own cuts
    a.increment(Millis(5), "observation/n", 1).unwrap();
    b.increment(Millis(5), "observation/n", 2).unwrap();
    converge(&mut a, &mut b, 6);
    assert_eq!(a.epoch().id, b.epoch().id);
    assert_eq!(state(&a), state(&b));
    assert_eq!(a.get("observation/x").unwrap(), Some(json!("b")));
    assert_eq!(a.get("intent/log").unwrap(), Some(json!(["a", "b"])));
    assert_eq!(a.counter("observation/n").unwrap(), 3);
}

#[test]
fn an_offline_writer_rejoins_across_three_cuts() {
    let (mut a, mut b) = (replica(1), replica(2));
    a.put(Millis(1), "observation/x", &0).unwrap();
    converge(&mut a, &mut b, 1);
    // b goes offline and writes; a writes and cuts three times
    for i in 0..3u64 {
        b.append(Millis(10 + i), "intent/offline", &i).unwrap();
        b.increment(Millis(10 + i), "observation/n", 1).unwrap();
        a.put(Millis(20 + i), "observation/x", &(i + 1)).unwrap();
        a.increment(Millis(20 + i), "observation/n", 10).unwrap();
        a.cut_epoch(Millis(30 + i)).unwrap().unwrap();
    }
    b.put(Millis(5), "observation/x", &"stale").unwrap();
    converge(&mut a, &mut b, 100);
    assert_eq!(state(&a), state(&b));
    assert_eq!(a.counter("observation/n").unwrap(), 33);
    assert_eq!(a.get("intent/offline").unwrap(), Some(json!([0, 1, 2])));
    assert_eq!(
        a.get("observation/x").unwrap(),
        Some(json!(3)),
        "newer by HLC"
    );
}

mod model {
    //! Random writes, syncs and cuts on three replicas, against the same
    //! writes and syncs on three replicas that never cut: after every step
    //! each replica shows what its never-cut twin shows, and at the end all
    //! six agree. A sync is both ways (adopting a peer's cut brings its
    //! content); a gossip is one way and, as in the sync engine, only
    //! between replicas in the same epoch.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    pub enum Op {
        Put(usize, u8, i64),
        Clear(usize, u8),
        Append(usize, u8, i64),
        Increment(usize, u8, i64),
        SetAdd(usize, u8, i64),
        SetRemove(usize, u8, i64),
        Declare(usize, u8, u8),
        Sync(usize, usize),
        Gossip(usize, usize),
        Cut(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let r = 0..3usize;
        let ch = 0..3u8;
        prop_oneof![
            4 => (r.clone(), ch.clone(), 0..5i64).prop_map(|(r, c, v)| Op::Put(r, c, v)),
            1 => (r.clone(), ch.clone()).prop_map(|(r, c)| Op::Clear(r, c)),
            2 => (r.clone(), ch.clone(), 0..5i64).prop_map(|(r, c, v)| Op::Append(r, c, v)),
            2 => (r.clone(), ch.clone(), -3..5i64).prop_map(|(r, c, v)| Op::Increment(r, c, v)),
            2 => (r.clone(), ch.clone(), 0..3i64).prop_map(|(r, c, v)| Op::SetAdd(r, c, v)),
            1 => (r.clone(), ch.clone(), 0..3i64).prop_map(|(r, c, v)| Op::SetRemove(r, c, v)),
            1 => (r.clone(), ch.clone(), 0..3u8).prop_map(|(r, c, p)| Op::Declare(r, c, p)),
            2 => (r.clone(), r.clone()).prop_map(|(a, b)| Op::Sync(a, b)),
            3 => (r.clone(), r.clone()).prop_map(|(a, b)| Op::Gossip(a, b)),
            2 => r.prop_map(Op::Cut),
        ]
    }

    /// Runs a write; errors (a refused first-write-wins overwrite) must be
    /// the same on both sides, so they are returned as text.
    fn write(r: &mut Replica, op: &Op, now: u64) -> Option<String> {
        let now = Millis(now);
        let res = match op {
            Op::Put(_, c, v) => r
                .put(now, format!("observation/r{c}").as_str(), v)
                .map(|_| ()),
            Op::Clear(_, c) => r
                .clear(now, format!("observation/r{c}").as_str())
                .map(|_| ()),
            Op::Append(_, c, v) => r
                .append(now, format!("intent/t{c}").as_str(), v)
                .map(|_| ()),
            Op::Increment(_, c, v) => r
                .increment(now, format!("observation/n{c}").as_str(), *v)
                .map(|_| ()),
            Op::SetAdd(_, c, v) => r
                .set_add(now, format!("coordination/s{c}").as_str(), v)
                .map(|_| ()),
            Op::SetRemove(_, c, v) => r
                .set_remove(now, format!("coordination/s{c}").as_str(), v)
                .map(|_| ()),
            Op::Declare(_, c, p) => {
                let policy = match p {
                    0 => Policy::LastWriteWins,
                    1 => Policy::FirstWriteWins,
                    _ => Policy::Reject,
                };
                r.declare(
                    now,
                    format!("observation/r{c}").as_str(),
                    ChannelSpec::last_value(policy),
                )
                .map(|_| ())
            }
            Op::Sync(..) | Op::Gossip(..) | Op::Cut(_) => Ok(()),
        };
        res.err().map(|e| e.to_string())
    }

    fn plain_sync(from: &Replica, to: &mut Replica, now: u64) {
        let delta = from.changes_since(to.vector_clock());
        to.apply_changes(Millis(now), delta).unwrap();
    }

    fn pair(v: &mut [Replica], a: usize, b: usize) -> (&mut Replica, &mut Replica) {
        assert_ne!(a, b);
        if a < b {
            let (l, r) = v.split_at_mut(b);
            (&mut l[a], &mut r[0])
        } else {
            let (l, r) = v.split_at_mut(a);
            (&mut r[0], &mut l[b])
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
            ..ProptestConfig::default()
        })]
        #[test]
        fn cut_replicas_show_what_never_cut_ones_show(ops in proptest::collection::vec(op(), 1..60)) {
            let mut cut: Vec<Replica> = (1..=3).map(replica).collect();
            let mut never: Vec<Replica> = (1..=3).map(replica).collect();
            for (step, op) in ops.iter().enumerate() {
                let now = 10 + step as u64;
                match *op {
                    Op::Sync(a, b) if a != b => {
                        let (x, y) = pair(&mut cut, a, b);
                        converge(x, y, now);
                        let (x, y) = pair(&mut never, a, b);
                        plain_sync(x, y, now);
                        plain_sync(y, x, now);
                    }
                    Op::Gossip(a, b) if a != b && cut[a].epoch().id == cut[b].epoch().id => {
                        let (from, to) = pair(&mut cut, a, b);
                        plain_sync(from, to, now);
                        let (from, to) = pair(&mut never, a, b);
                        plain_sync(from, to, now);
                    }
                    Op::Sync(..) | Op::Gossip(..) => {}
                    Op::Cut(i) => {
                        cut[i].cut_epoch(Millis(now)).unwrap();
                    }
                    Op::Put(i, ..) | Op::Clear(i, _) | Op::Append(i, ..) | Op::Increment(i, ..)
                    | Op::SetAdd(i, ..) | Op::SetRemove(i, ..) | Op::Declare(i, ..) => {
                        let x = write(&mut cut[i], op, now);
                        let y = write(&mut never[i], op, now);
                        prop_assert_eq!(x, y, "same outcome of {:?}", op);
                    }
                }
                for i in 0..3 {
                    prop_assert_eq!(state(&cut[i]), state(&never[i]), "replica {} after {:?}", i, op);
                    prop_assert_eq!(cut[i].vector_clock(), never[i].vector_clock());
                }
            }
            let end = 1_000;
            for (a, b) in [(0, 1), (1, 2), (0, 2), (0, 1)] {
                let (x, y) = pair(&mut cut, a, b);
                converge(x, y, end);
                let (x, y) = pair(&mut never, a, b);
                plain_sync(x, y, end);
                plain_sync(y, x, end);
            }
            for i in 0..3 {
                prop_assert_eq!(state(&cut[i]), state(&never[0]));
                prop_assert_eq!(cut[i].heads(), cut[0].heads());
            }
        }
    }
}

#[test]
fn a_write_that_replaces_some_concurrent_values_keeps_the_others() {
    // Declaring what one of two concurrent declarations already says makes
    // automerge delete only the other one: the carried change must replace
    // exactly that one, not everything its writer saw.
    let (mut a, mut b) = (replica(1), replica(2));
    b.put(Millis(1), "observation/r", &0).unwrap();
    let fww = ChannelSpec::last_value(Policy::FirstWriteWins);
    a.declare(Millis(2), "observation/r", fww.clone()).unwrap();
    converge(&mut b, &mut a, 3);
    b.declare(Millis(4), "observation/r", fww.clone()).unwrap();
    a.cut_epoch(Millis(5)).unwrap().unwrap();
    converge(&mut a, &mut b, 6);
    for r in [&a, &b] {
        assert_eq!(r.spec("observation/r").unwrap(), Some(fww.clone()));
        assert_eq!(r.get("observation/r").unwrap(), Some(json!(0)));
    }
}

#[test]
fn history_and_replay_reach_back_across_retained_cuts() {
    let config = ReplicaConfig {
        epochs: EpochConfig {
            retain: 2,
            ..EpochConfig::manual()
        },
        ..ReplicaConfig::default()
    };
    let mut a = Replica::with_config("s", ActorId::from(&[1u8; 16][..]), config);
    let start = a.vector_clock().clone();
    a.put(Millis(1), "observation/x", &1).unwrap();
    a.cut_epoch(Millis(2)).unwrap();
    let after_first = a.vector_clock().clone();
    a.put(Millis(3), "observation/x", &2).unwrap();
    a.cut_epoch(Millis(4)).unwrap();
    a.put(Millis(5), "observation/x", &3).unwrap();
    let values = |events: Vec<concord_state::Event>| -> Vec<Option<Value>> {
        events.into_iter().map(|e| e.new).collect()
    };
    let history: Vec<_> = a
        .history("observation/x")
        .unwrap()
        .into_iter()
        .map(|h| h.value)
        .collect();
    assert_eq!(
        history,
        vec![Some(json!(1)), Some(json!(2)), Some(json!(3))]
    );
    assert_eq!(
        values(a.replay("observation/*", &start).unwrap()),
        vec![Some(json!(1)), Some(json!(2)), Some(json!(3))]
    );
    assert_eq!(
        values(a.replay("observation/*", &after_first).unwrap()),
        vec![Some(json!(2)), Some(json!(3))]
    );
    // one more cut: the first epoch falls out of the retention of two
    a.cut_epoch(Millis(6)).unwrap();
    assert_eq!(a.epoch().retained.len(), 2);
    assert!(matches!(
        a.replay("observation/*", &start),
        Err(concord_state::StateError::ReplayTooOld { .. })
    ));
    assert_eq!(
        values(a.replay("observation/*", &after_first).unwrap()),
        vec![Some(json!(2)), Some(json!(3))]
    );
}

#[test]
fn subscribers_see_each_write_once_across_cuts() {
    use concord_state::{Delivery, SubscribeOptions};
    let (mut a, mut b) = (replica(1), replica(2));
    let sub = b.subscribe("*/*", SubscribeOptions::default()).unwrap();
    let mut expected = Vec::new();
    for i in 0..12i64 {
        a.put(Millis(10 * i as u64), "observation/x", &i).unwrap();
        expected.push(("observation/x".to_owned(), Some(json!(i))));
        if i % 3 == 0 {
            // b writes concurrently, then a cuts; b adopts and carries its write
            b.increment(Millis(10 * i as u64 + 1), "observation/n", 1)
                .unwrap();
            a.cut_epoch(Millis(10 * i as u64 + 2)).unwrap();
        }
        if i % 2 == 0 {
            converge(&mut a, &mut b, 10 * i as u64 + 5);
        }
    }
    converge(&mut a, &mut b, 1_000);
    let mut seen = Vec::new();
    let mut own = 0;
    while let Some(d) = b.poll_event(sub).unwrap() {
        match d {
            Delivery::Event(e) if e.path.as_str() == "observation/x" => {
                seen.push((e.path.to_string(), e.new))
            }
            Delivery::Event(_) => own += 1,
            Delivery::Lagged { .. } => panic!("lagged"),
        }
    }
    assert_eq!(
        own, 4,
        "b's own increments, each once (carrying them adds none)"
    );
    // every value of x once, in order (b never misses one nor sees one twice)
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(seen, dedup, "no event twice");
    assert_eq!(seen.last(), expected.last());
    assert!(seen.iter().all(|s| expected.contains(s)));
    assert_eq!(b.counter("observation/n").unwrap(), 4);
}

#[test]
fn an_announcement_that_contradicts_held_changes_or_garbage_changes_nothing() {
    use concord_state::{ChangeHash, EpochAnnounce, EpochId, StateError};
    let (mut a, mut b) = (replica(1), replica(2));
    a.put(Millis(1), "observation/x", &1).unwrap();
    converge(&mut a, &mut b, 2);
    a.cut_epoch(Millis(3)).unwrap();
    let real = a.epoch_announce();
    let before = (b.epoch().id, b.heads());
    // the cut b holds, under another id
    let forged = EpochAnnounce {
        id: EpochId(ChangeHash([7; 32])),
        cut: real.cut.clone(),
    };
    assert!(matches!(
        b.adopt_epoch(Millis(4), &forged, None),
        Err(StateError::InvalidEpoch(_))
    ));
    // a cut b lacks, with garbage for its first document
    let mut lacking = real.cut.clone();
    lacking.observe(&ActorId::from(&[9u8; 16][..]), 3);
    let unknown = EpochAnnounce {
        id: real.id,
        cut: lacking,
    };
    assert_eq!(
        b.adopt_epoch(Millis(4), &unknown, None).unwrap(),
        Adoption::NeedSnapshot
    );
    assert!(matches!(
        b.adopt_epoch(Millis(4), &unknown, Some(b"not a document")),
        Err(StateError::InvalidEpoch(_))
    ));
    // the real first document, announced with a cut it does not have
    let snapshot = a.epoch_snapshot().unwrap();
    assert!(matches!(
        b.adopt_epoch(Millis(4), &unknown, Some(&snapshot)),
        Err(StateError::InvalidEpoch(_))
    ));
    assert_eq!((b.epoch().id, b.heads()), before);
    // and the real announcement still works
    assert!(matches!(
        b.adopt_epoch(Millis(5), &real, None).unwrap(),
        Adoption::Switched { .. }
    ));
}
