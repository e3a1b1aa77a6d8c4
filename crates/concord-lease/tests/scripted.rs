//! Tests of the proposer alone against scripted replies: duplicates, late
//! answers, bad input, bounds and exhausted rounds.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{acc_id, acquire_mutex, config, prop_id, r};
use concord_lease::proposer::DEFAULT_MAX_TTL;
use concord_lease::*;

#[test]
fn late_answers_after_loss_are_ignored() {
    let mut p = Proposer::new(config(0, 3), 0).unwrap();
    p.handle_input(Millis(0), acquire_mutex(1, "r", 100, 0))
        .unwrap();
    let ballot = Ballot::new(1, prop_id(0)).unwrap();
    for a in 0..2 {
        let promise = Message::Promise {
            resource: r("r"),
            ballot,
            holders: vec![],
            handoff: None,
        };
        p.handle_input(
            Millis(1),
            Input::Message {
                from: acc_id(a),
                message: promise,
            },
        )
        .unwrap();
    }
    // Accepted only arrives when the local validity (from 1) is over.
    let late = Millis(1).saturating_add(DriftBound::DEFAULT.local_validity(Millis(100)));
    for a in 0..2 {
        let accepted = Message::Accepted {
            resource: r("r"),
            ballot,
        };
        p.handle_input(
            late,
            Input::Message {
                from: acc_id(a),
                message: accepted,
            },
        )
        .unwrap();
    }
    let events: Vec<Event> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(events.iter().all(|e| !matches!(e, Event::Acquired { .. })));
    // It released the useless grant.
    let releases = std::iter::from_fn(|| p.poll_transmit())
        .filter(|t| matches!(t.message, Message::Release { .. }))
        .count();
    assert_eq!(releases, 3);
}

#[test]
fn duplicate_replies_are_counted_once() {
    let mut p = Proposer::new(config(0, 3), 0).unwrap();
    p.handle_input(Millis(0), acquire_mutex(1, "r", 100, 0))
        .unwrap();
    let ballot = Ballot::new(1, prop_id(0)).unwrap();
    let promise = Message::Promise {
        resource: r("r"),
        ballot,
        holders: vec![],
        handoff: None,
    };
    let dup_reject = Message::Reject {
        resource: r("r"),
        ballot,
        promised: ballot,
        reason: RejectReason::Outdated,
    };
    for m in [promise.clone(), dup_reject.clone(), promise, dup_reject] {
        p.handle_input(
            Millis(1),
            Input::Message {
                from: acc_id(0),
                message: m,
            },
        )
        .unwrap();
    }
    // One promise of three: still preparing, no propose sent yet.
    let proposes = std::iter::from_fn(|| p.poll_transmit())
        .filter(|t| matches!(t.message, Message::Propose { .. }))
        .count();
    assert_eq!(proposes, 0);
    assert_eq!(p.poll_event(), None);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let mut p = Proposer::new(config(0, 3), 0).unwrap();
    let acquire = |lease: u64, ttl: u64| acquire_mutex(lease, "r", ttl, 0);
    assert!(matches!(
        p.handle_input(Millis(0), acquire(1, 0)),
        Err(LeaseError::InvalidTtl { .. })
    ));
    assert!(matches!(
        p.handle_input(Millis(0), acquire(1, 2)),
        Err(LeaseError::InvalidTtl { .. })
    ));
    assert!(matches!(
        p.handle_input(Millis(0), acquire(1, DEFAULT_MAX_TTL.0 + 1)),
        Err(LeaseError::InvalidTtl { .. })
    ));
    p.handle_input(Millis(0), acquire(1, 100)).unwrap();
    assert_eq!(
        p.handle_input(Millis(0), acquire(1, 100)),
        Err(LeaseError::LeaseInUse(LeaseId(1)))
    );
    assert_eq!(
        p.handle_input(
            Millis(0),
            Input::Renew {
                lease: LeaseId(1),
                ttl: Millis(100)
            }
        ),
        Err(LeaseError::NotHeld(LeaseId(1)))
    );
    let promise = |from: NodeId, holders: usize| Input::Message {
        from,
        message: Message::Promise {
            resource: r("r"),
            ballot: Ballot::new(1, prop_id(0)).unwrap(),
            holders: vec![
                HolderInfo {
                    holder: Holder {
                        node: NodeId(5),
                        lease: LeaseId(5)
                    },
                    token: FencingToken::new(1)
                };
                holders
            ],
            handoff: None,
        },
    };
    assert_eq!(
        p.handle_input(Millis(0), promise(NodeId(77), 0)),
        Err(LeaseError::NotAMember(NodeId(77)))
    );
    assert!(matches!(
        p.handle_input(Millis(0), promise(acc_id(0), MAX_PERMITS as usize + 1)),
        Err(LeaseError::Malformed(_))
    ));
    let wrong_resource = Input::Message {
        from: acc_id(0),
        message: Message::Accepted {
            resource: r("other"),
            ballot: Ballot::new(1, prop_id(0)).unwrap(),
        },
    };
    // The same ballot for another resource: a late answer to this node's
    // previous incarnation, ignored.
    assert_eq!(p.handle_input(Millis(0), wrong_resource), Ok(()));
    let wrong_kind = Input::Message {
        from: acc_id(0),
        message: Message::Prepare {
            resource: r("r"),
            ballot: Ballot::ZERO,
            limit: Permits::MUTEX,
        },
    };
    assert_eq!(
        p.handle_input(Millis(0), wrong_kind),
        Err(LeaseError::UnexpectedMessage { kind: "Prepare" })
    );
    let bad_config = ProposerConfig {
        round_timeout: Millis::ZERO,
        ..config(0, 3)
    };
    assert!(Proposer::new(bad_config, 0).is_err());
}

#[test]
fn lease_and_outbox_bounds_are_enforced() {
    let small = ProposerConfig {
        max_leases: 4,
        max_outbox: 10,
        ..config(0, 3)
    };
    let mut p = Proposer::new(small, 0).unwrap();
    for lease in 0..4 {
        p.handle_input(
            Millis(0),
            acquire_mutex(lease, &format!("r{lease}"), 100, 0),
        )
        .unwrap();
    }
    assert_eq!(
        p.handle_input(Millis(0), acquire_mutex(9, "r", 100, 0)),
        Err(LeaseError::TooManyLeases { max: 4 })
    );
    // 4 attempts x 3 prepares = 12 transmits into an outbox of 10.
    assert_eq!(p.stats().dropped_transmits, 2);
    assert_eq!(std::iter::from_fn(|| p.poll_transmit()).count(), 10);
}

#[test]
fn rounds_exhausted_is_reported() {
    let mut p = Proposer::new(config(0, 1), 0).unwrap();
    p.handle_input(Millis(0), acquire_mutex(1, "r", 100, 1_000))
        .unwrap();
    let top = Ballot::new(Ballot::MAX_ROUND, NodeId(0)).unwrap();
    p.handle_input(
        Millis(1),
        Input::Message {
            from: acc_id(0),
            message: Message::Reject {
                resource: r("r"),
                ballot: Ballot::new(1, prop_id(0)).unwrap(),
                promised: top,
                reason: RejectReason::Outdated,
            },
        },
    )
    .unwrap();
    let retry = p.poll_timeout().unwrap();
    p.handle_input(retry, Input::Timeout).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(matches!(
        events[..],
        [Event::Denied {
            reason: DenyReason::RoundsExhausted,
            ..
        }]
    ));
}
