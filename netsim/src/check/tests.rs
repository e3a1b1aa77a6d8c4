//! Unit tests of the checkers: causal order, lease safety, divergence,
//! lost writes and writes applied other than once.
//!
//! They own small hand-made replicas and logs. They must never run the
//! simulator: each checker is tested on its own.

use concord_state::{ActorId, EventPosition, Millis, Replica};

use super::*;
use crate::node::NodeId;
use crate::workload::Effect;

fn actor(n: u8) -> ActorId {
    ActorId::from(&[n; 16][..])
}

#[test]
fn causal_order_flags_an_overtaken_ancestor() {
    let mut a = Replica::new("s", actor(1));
    let first = a.put(Millis(1), "observation/x", &1).unwrap();
    let second = a.put(Millis(2), "observation/x", &2).unwrap();
    let pos = |r: &concord_state::WriteReceipt| EventPosition {
        actor: actor(1),
        seq: r.seq,
        change: r.change,
        hlc: Some(r.hlc),
    };
    let mut good = CausalOrder::default();
    assert!(good.observe(&a, &pos(&first)));
    assert!(good.observe(&a, &pos(&second)));
    assert!(good.observe(&a, &pos(&second)), "same change again is fine");
    let mut bad = CausalOrder::default();
    assert!(bad.observe(&a, &pos(&second)));
    assert!(!bad.observe(&a, &pos(&first)));
}

#[test]
fn lease_check_finds_overlaps_and_stale_writes() {
    let mut c = LeaseCheck::new([1, 2]);
    let (a, v) = c.grant(0, NodeId(0), 10, 0, (0, 100));
    assert!(v.is_empty());
    assert_eq!(
        c.write(0, 10).0,
        WriteOutcome {
            accepted: true,
            stale: false
        }
    );
    // An overlapping grant.
    let (_, v) = c.grant(0, NodeId(1), 20, 10, (50, 150));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("overlap"));
    // The new holder writes; the older one is stale now: refused.
    assert!(c.write(0, 20).1.is_none());
    let (out, v) = c.write(0, 10);
    assert_eq!(
        out,
        WriteOutcome {
            accepted: false,
            stale: true
        }
    );
    assert!(v.is_none());
    // Ending early, renewing, and order of tokens.
    c.extend(0, a, 500);
    c.end(0, a, 60);
    let (_, v) = c.grant(0, NodeId(2), 15, 0, (200, 300));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("tokens"), "{v:?}");
    // A semaphore allows two holders, not three.
    assert!(c.grant(1, NodeId(0), 5, 0, (0, 10)).1.is_empty());
    assert!(c.grant(1, NodeId(1), 6, 0, (1, 10)).1.is_empty());
    assert_eq!(c.holders(1), 2);
    assert_eq!(c.grant(1, NodeId(2), 7, 0, (2, 10)).1.len(), 1);
    assert_eq!(c.holders(1), 3, "the overlap is counted");
    assert!(c.grant(1, NodeId(2), 8, 7, (10, 20)).1.is_empty());
    assert_eq!(c.token_floor(1), 8);
}

#[test]
fn divergence_and_lost_writes_are_found() {
    let mut a = Replica::new("s", actor(1));
    let b = Replica::new("s", actor(2));
    let w = a.put(Millis(1), "observation/x", &1).unwrap();
    let mut log = WriteLog::default();
    log.record(NodeId(0), 0, &actor(1), w.seq, Effect::Other);
    log.ack(NodeId(0), 0, &actor(1), w.seq);
    let live = [(NodeId(0), &a), (NodeId(1), &b)];
    assert_eq!(divergent(live.iter().copied()), vec![NodeId(1)]);
    let lost = log.lost(live.iter().copied());
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].missing_on, NodeId(1));
    assert_eq!((log.total(), log.acked()), (1, 1));
    // a write inside an epoch's cut has no change of its own: still held
    a.cut_epoch(Millis(2)).unwrap();
    assert!(log.lost([(NodeId(0), &a)].into_iter()).is_empty());
}

#[test]
fn a_write_shown_twice_or_not_at_all_is_found() {
    let mut a = Replica::new("s", actor(1));
    let mut log = WriteLog::default();
    let one = a.increment(Millis(1), "execution/n", 2).unwrap().unwrap();
    log.record(
        NodeId(0),
        0,
        &actor(1),
        one.seq,
        Effect::Increment("execution/n".into(), 2),
    );
    let (id, two) = a.append(Millis(2), "intent/log", &"x").unwrap();
    log.record(
        NodeId(0),
        0,
        &actor(1),
        two.seq,
        Effect::Append("intent/log".into(), id),
    );
    assert!(log.applied_once(&a).is_empty());
    // a write the log says was made but counted once more
    log.record(
        NodeId(0),
        0,
        &actor(1),
        one.seq,
        Effect::Increment("execution/n".into(), 2),
    );
    assert_eq!(log.applied_once(&a).len(), 1, "{:?}", log.applied_once(&a));
    // an entry the replica holds but no held write appended
    let mut other = WriteLog::default();
    other.record(
        NodeId(0),
        0,
        &actor(1),
        one.seq,
        Effect::Increment("execution/n".into(), 2),
    );
    other.record(
        NodeId(0),
        0,
        &actor(1),
        two.seq,
        Effect::Append("intent/log".into(), "y".into()),
    );
    assert_eq!(other.applied_once(&a).len(), 1);
}
