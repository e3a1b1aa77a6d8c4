//! Unit tests of the acceptor.

use super::*;
use crate::ids::LeaseId;
use crate::messages::HolderInfo;

const P: NodeId = NodeId(100);

fn res(name: &str) -> Resource {
    Resource::new(name).unwrap()
}

fn b(round: u64) -> Ballot {
    Ballot::new(round, P).unwrap()
}

fn holder(lease: u64) -> Holder {
    Holder {
        node: P,
        lease: LeaseId(lease),
    }
}

fn prepare(r: &str, ballot: Ballot, limit: Permits) -> AcceptorInput {
    AcceptorInput::Message {
        from: P,
        message: Message::Prepare {
            resource: res(r),
            ballot,
            limit,
        },
    }
}

fn propose(r: &str, ballot: Ballot, lease: u64, ttl: u64, limit: Permits) -> AcceptorInput {
    AcceptorInput::Message {
        from: P,
        message: Message::Propose {
            resource: res(r),
            ballot,
            limit,
            holder: holder(lease),
            token: ballot.token(),
            ttl: Millis(ttl),
        },
    }
}

/// Persists whatever is pending and returns the replies.
fn flush(a: &mut Acceptor, now: Millis) -> Vec<Message> {
    while let Some(p) = a.poll_persist() {
        a.handle_input(now, AcceptorInput::Persisted { version: p.version })
            .unwrap();
    }
    std::iter::from_fn(|| a.poll_transmit())
        .map(|t| {
            assert_eq!(t.to, P);
            t.message
        })
        .collect()
}

fn acceptor() -> Acceptor {
    Acceptor::new(AcceptorConfig::new(NodeId(1))).unwrap()
}

#[test]
fn promise_then_accept_then_report_holder() {
    let mut a = acceptor();
    a.handle_input(Millis(0), prepare("r", b(1), Permits::MUTEX))
        .unwrap();
    assert_eq!(
        flush(&mut a, Millis(0)),
        vec![Message::Promise {
            resource: res("r"),
            ballot: b(1),
            holders: vec![],
            handoff: None,
        }]
    );
    a.handle_input(Millis(1), propose("r", b(1), 7, 100, Permits::MUTEX))
        .unwrap();
    assert_eq!(
        flush(&mut a, Millis(1)),
        vec![Message::Accepted {
            resource: res("r"),
            ballot: b(1)
        }]
    );
    a.handle_input(Millis(50), prepare("r", b(2), Permits::MUTEX))
        .unwrap();
    let info = HolderInfo {
        holder: holder(7),
        token: b(1).token(),
    };
    assert_eq!(
        flush(&mut a, Millis(50)),
        vec![Message::Promise {
            resource: res("r"),
            ballot: b(2),
            holders: vec![info],
            handoff: None,
        }]
    );
    // Accepted at 1 for 100ms: live until 101 (exclusive).
    assert_eq!(a.holders(Millis(100), &res("r")), vec![info]);
    assert_eq!(a.holders(Millis(101), &res("r")), vec![]);
}

#[test]
fn a_full_resource_refuses_other_nodes_without_a_promise() {
    let mut a = acceptor();
    a.handle_input(Millis(0), propose("r", b(1), 7, 100, Permits::MUTEX))
        .unwrap();
    flush(&mut a, Millis(0));
    let q = NodeId(9);
    let from_q = |round| AcceptorInput::Message {
        from: q,
        message: Message::Prepare {
            resource: res("r"),
            ballot: Ballot::new(round, q).unwrap(),
            limit: Permits::MUTEX,
        },
    };
    a.handle_input(Millis(10), from_q(5)).unwrap();
    assert!(a.poll_persist().is_none(), "no promise, no write");
    let refusal = a.poll_transmit().unwrap();
    assert_eq!(refusal.to, q);
    assert!(matches!(
        refusal.message,
        Message::Reject {
            reason: RejectReason::Full,
            ..
        }
    ));
    assert_eq!(a.state().promised(&res("r")), b(1));
    // The holder's node still gets its promise (to renew).
    a.handle_input(Millis(20), prepare("r", b(6), Permits::MUTEX))
        .unwrap();
    assert!(matches!(
        flush(&mut a, Millis(20))[..],
        [Message::Promise { .. }]
    ));
    // Once the grant ended, so does the refusal.
    a.handle_input(Millis(101), from_q(7)).unwrap();
    while let Some(p) = a.poll_persist() {
        let persisted = AcceptorInput::Persisted { version: p.version };
        a.handle_input(Millis(101), persisted).unwrap();
    }
    assert!(matches!(
        a.poll_transmit().map(|t| t.message),
        Some(Message::Promise { .. })
    ));
}

#[test]
fn prepare_needs_a_strictly_higher_ballot_and_propose_at_least_equal() {
    let mut a = acceptor();
    a.handle_input(Millis(0), prepare("r", b(5), Permits::MUTEX))
        .unwrap();
    a.handle_input(Millis(0), prepare("r", b(5), Permits::MUTEX))
        .unwrap();
    a.handle_input(Millis(0), propose("r", b(4), 1, 10, Permits::MUTEX))
        .unwrap();
    a.handle_input(Millis(0), propose("r", b(5), 1, 10, Permits::MUTEX))
        .unwrap();
    let replies = flush(&mut a, Millis(0));
    assert!(matches!(replies[0], Message::Promise { .. }));
    for r in &replies[1..3] {
        assert!(
            matches!(r, Message::Reject { promised, reason: RejectReason::Outdated, .. } if *promised == b(5)),
            "{r:?}"
        );
    }
    assert!(matches!(replies[3], Message::Accepted { .. }));
}

#[test]
fn replies_wait_for_persistence() {
    let mut a = acceptor();
    a.handle_input(Millis(0), prepare("r", b(1), Permits::MUTEX))
        .unwrap();
    assert_eq!(a.poll_transmit(), None, "promise held until durable");
    let p = a.poll_persist().unwrap();
    assert_eq!(p.state.promised(&res("r")), b(1));
    assert_eq!(a.poll_persist(), None, "nothing new");
    assert!(matches!(
        a.handle_input(
            Millis(0),
            AcceptorInput::Persisted {
                version: p.version + 1
            }
        ),
        Err(LeaseError::PersistVersion { .. })
    ));
    a.handle_input(Millis(0), AcceptorInput::Persisted { version: p.version })
        .unwrap();
    assert!(a.poll_transmit().is_some());
    // A rejection changes nothing and is released at once.
    a.handle_input(Millis(0), prepare("r", b(1), Permits::MUTEX))
        .unwrap();
    assert_eq!(a.poll_persist(), None);
    assert!(a.poll_transmit().is_some());
}

#[test]
fn restart_keeps_promises_and_sits_out_the_quiet_period() {
    let mut a = acceptor();
    a.handle_input(Millis(0), prepare("r", b(3), Permits::MUTEX))
        .unwrap();
    a.handle_input(Millis(0), propose("r", b(3), 1, 1000, Permits::MUTEX))
        .unwrap();
    flush(&mut a, Millis(0));
    let saved = a.state().clone();
    let json = serde_json::to_string(&saved).unwrap();
    let loaded: AcceptorState = serde_json::from_str(&json).unwrap();
    assert_eq!(loaded, saved);

    let config = AcceptorConfig {
        max_ttl: Millis(1000),
        ..AcceptorConfig::new(NodeId(1))
    };
    // The new clock starts anywhere.
    let mut a = Acceptor::restore(config, loaded, Millis(5)).unwrap();
    assert!(a.is_recovering(Millis(1004)));
    a.handle_input(Millis(1004), prepare("r", b(9), Permits::MUTEX))
        .unwrap();
    a.handle_input(
        Millis(1004),
        AcceptorInput::Message {
            from: P,
            message: Message::Release {
                resource: res("r"),
                holder: holder(1),
                token: b(3).token(),
                handoff: None,
            },
        },
    )
    .unwrap();
    // Refused while recovering, but the release is confirmed: every
    // grant was forgotten.
    assert!(matches!(
        flush(&mut a, Millis(1004))[..],
        [
            Message::Reject {
                reason: RejectReason::Recovering,
                ..
            },
            Message::Released { .. }
        ]
    ));
    assert!(!a.is_recovering(Millis(1005)));
    // The old promise survived: a lower ballot is refused.
    a.handle_input(Millis(1005), prepare("r", b(2), Permits::MUTEX))
        .unwrap();
    a.handle_input(Millis(1005), prepare("r", b(4), Permits::MUTEX))
        .unwrap();
    let replies = flush(&mut a, Millis(1005));
    assert!(matches!(
        replies[0],
        Message::Reject {
            reason: RejectReason::Outdated,
            ..
        }
    ));
    assert!(
        matches!(&replies[1], Message::Promise { holders, .. } if holders.is_empty()),
        "grants were forgotten"
    );
}

#[test]
fn quiet_period_covers_the_longest_ttl_ever_granted() {
    let mut a = acceptor();
    a.handle_input(Millis(0), propose("r", b(1), 1, 5_000, Permits::MUTEX))
        .unwrap();
    assert_eq!(
        a.poll_transmit(),
        None,
        "new longest ttl must be durable first"
    );
    flush(&mut a, Millis(0));
    assert_eq!(a.state().longest_ttl, Millis(5_000));
    let lowered = AcceptorConfig {
        max_ttl: Millis(1_000),
        ..AcceptorConfig::new(NodeId(1))
    };
    let a = Acceptor::restore(lowered, a.state().clone(), Millis(0)).unwrap();
    assert!(a.is_recovering(Millis(4_999)));
    assert!(!a.is_recovering(Millis(5_000)));
}

#[test]
fn semaphore_grants_up_to_its_permits() {
    let mut a = acceptor();
    let two = Permits::new(2).unwrap();
    for (round, lease) in [(1, 1), (2, 2), (3, 3)] {
        a.handle_input(Millis(0), propose("api", b(round), lease, 100, two))
            .unwrap();
    }
    // A different count while held is refused.
    a.handle_input(Millis(0), prepare("api", b(4), Permits::MUTEX))
        .unwrap();
    let replies = flush(&mut a, Millis(0));
    assert!(matches!(replies[0], Message::Accepted { .. }));
    assert!(matches!(replies[1], Message::Accepted { .. }));
    assert!(matches!(
        replies[2],
        Message::Reject {
            reason: RejectReason::Full,
            ..
        }
    ));
    assert!(matches!(
        replies[3],
        Message::Reject {
            reason: RejectReason::LimitMismatch,
            ..
        }
    ));
    // Release frees a permit.
    a.handle_input(
        Millis(1),
        AcceptorInput::Message {
            from: P,
            message: Message::Release {
                resource: res("api"),
                holder: holder(1),
                token: b(1).token(),
                handoff: None,
            },
        },
    )
    .unwrap();
    a.handle_input(Millis(1), propose("api", b(5), 3, 100, two))
        .unwrap();
    assert!(matches!(
        flush(&mut a, Millis(1))[..],
        [
            Message::Released {
                holder: Holder {
                    lease: LeaseId(1),
                    ..
                },
                ..
            },
            Message::Accepted { .. }
        ]
    ));
}

#[test]
fn ttl_above_the_maximum_is_refused() {
    let mut a = acceptor();
    a.handle_input(
        Millis(0),
        propose("r", b(1), 1, DEFAULT_MAX_TTL.0 + 1, Permits::MUTEX),
    )
    .unwrap();
    assert!(matches!(
        flush(&mut a, Millis(0))[..],
        [Message::Reject {
            reason: RejectReason::TtlTooLong,
            ..
        }]
    ));
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut a = acceptor();
    let wrong_kind = AcceptorInput::Message {
        from: P,
        message: Message::Accepted {
            resource: res("r"),
            ballot: b(1),
        },
    };
    assert_eq!(
        a.handle_input(Millis(0), wrong_kind),
        Err(LeaseError::UnexpectedMessage { kind: "Accepted" })
    );
    let mut bad = propose("r", b(1), 1, 10, Permits::MUTEX);
    if let AcceptorInput::Message {
        message: Message::Propose { token, .. },
        ..
    } = &mut bad
    {
        *token = b(2).token();
    }
    assert!(matches!(
        a.handle_input(Millis(0), bad),
        Err(LeaseError::Malformed(_))
    ));
    assert_eq!(a.state(), &AcceptorState::default());
    assert!(
        Acceptor::new(AcceptorConfig {
            max_resources: 0,
            ..AcceptorConfig::new(NodeId(1))
        })
        .is_err()
    );
}

#[test]
fn resource_bound_evicts_idle_resources_and_keeps_promises_monotone() {
    let config = AcceptorConfig {
        max_resources: 4,
        ..AcceptorConfig::new(NodeId(1))
    };
    let mut a = Acceptor::new(config).unwrap();
    // Four resources, one of them held.
    a.handle_input(Millis(0), propose("held", b(10), 1, 1000, Permits::MUTEX))
        .unwrap();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        a.handle_input(Millis(0), prepare(name, b(20 + i as u64), Permits::MUTEX))
            .unwrap();
    }
    assert_eq!(a.resource_count(), 4);
    // Many more resources: the count never exceeds the bound.
    for i in 0..100u64 {
        let name = format!("x{i}");
        a.handle_input(Millis(1), prepare(&name, b(100 + i), Permits::MUTEX))
            .unwrap();
        assert!(a.resource_count() <= 4);
    }
    assert!(a.stats().evicted_resources >= 97);
    // The held resource was never evicted.
    assert_eq!(a.holders(Millis(2), &res("held")).len(), 1);
    // A forgotten resource keeps (at least) its old promise via the floor.
    assert!(a.state().promised(&res("a")) >= b(20));
    a.handle_input(Millis(2), prepare("a", b(20), Permits::MUTEX))
        .unwrap();
    let replies = flush(&mut a, Millis(2));
    assert!(matches!(
        replies.last(),
        Some(Message::Reject {
            reason: RejectReason::Outdated,
            ..
        })
    ));
}

#[test]
fn resource_bound_refuses_when_everything_is_held() {
    let config = AcceptorConfig {
        max_resources: 2,
        ..AcceptorConfig::new(NodeId(1))
    };
    let mut a = Acceptor::new(config).unwrap();
    a.handle_input(Millis(0), propose("a", b(1), 1, 1000, Permits::MUTEX))
        .unwrap();
    a.handle_input(Millis(0), propose("b", b(2), 2, 1000, Permits::MUTEX))
        .unwrap();
    a.handle_input(Millis(0), prepare("c", b(3), Permits::MUTEX))
        .unwrap();
    let replies = flush(&mut a, Millis(0));
    assert!(matches!(
        replies[2],
        Message::Reject {
            reason: RejectReason::TooManyResources,
            ..
        }
    ));
    assert_eq!(a.resource_count(), 2);
}

#[test]
fn restore_compacts_an_oversized_state() {
    let mut state = AcceptorState::default();
    for i in 0..10u64 {
        state.promises.insert(res(&format!("r{i}")), b(i + 1));
    }
    let config = AcceptorConfig {
        max_resources: 5,
        ..AcceptorConfig::new(NodeId(1))
    };
    let a = Acceptor::restore(config, state, Millis(0)).unwrap();
    assert_eq!(a.resource_count(), 0);
    assert_eq!(a.state().floor, b(10));
}

#[test]
fn outbox_bound_drops_replies() {
    let config = AcceptorConfig {
        max_outbox: 8,
        ..AcceptorConfig::new(NodeId(1))
    };
    let mut a = Acceptor::new(config).unwrap();
    for round in 1..=20 {
        a.handle_input(Millis(0), prepare("r", b(round), Permits::MUTEX))
            .unwrap();
    }
    assert_eq!(a.stats().dropped_replies, 12);
    assert_eq!(flush(&mut a, Millis(0)).len(), 8);
}

fn release(r: &str, ballot: Ballot, lease: u64, handoff: &[u8]) -> AcceptorInput {
    AcceptorInput::Message {
        from: P,
        message: Message::Release {
            resource: res(r),
            holder: holder(lease),
            token: ballot.token(),
            handoff: Some(handoff.to_vec()),
        },
    }
}

/// The handoff listed in the promise for a prepare of `r` at `ballot`.
fn promised_handoff(a: &mut Acceptor, now: Millis, r: &str, ballot: Ballot) -> Option<Handoff> {
    a.handle_input(now, prepare(r, ballot, Permits::MUTEX))
        .unwrap();
    match flush(a, now).pop() {
        Some(Message::Promise { handoff, .. }) => handoff,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_release_leaves_its_handoff_for_the_next_promise_the_latest_token_wins() {
    let mut a = acceptor();
    a.handle_input(Millis(0), prepare("r", b(1), Permits::MUTEX))
        .unwrap();
    a.handle_input(Millis(0), propose("r", b(1), 1, 1_000, Permits::MUTEX))
        .unwrap();
    a.handle_input(Millis(1), release("r", b(1), 1, b"one"))
        .unwrap();
    flush(&mut a, Millis(1));
    let kept = promised_handoff(&mut a, Millis(2), "r", b(2)).unwrap();
    assert_eq!(
        (kept.token, kept.context.as_slice()),
        (b(1).token(), &b"one"[..])
    );
    // A late release of an older grant does not replace it; a newer does.
    a.handle_input(Millis(3), release("r", b(0), 9, b"stale"))
        .unwrap();
    a.handle_input(Millis(3), release("r", b(2), 2, b"two"))
        .unwrap();
    flush(&mut a, Millis(3));
    let kept = promised_handoff(&mut a, Millis(4), "r", b(3)).unwrap();
    assert_eq!(kept.context, b"two");
}

#[test]
fn handoffs_are_kept_only_for_resources_with_a_promise() {
    let mut config = AcceptorConfig::new(NodeId(1));
    config.max_resources = 2;
    let mut a = Acceptor::new(config).unwrap();
    // Releases naming resources never promised keep nothing, however many.
    for i in 0..100 {
        a.handle_input(Millis(0), release(&format!("x{i}"), b(1), 1, b"junk"))
            .unwrap();
    }
    flush(&mut a, Millis(0));
    assert_eq!(promised_handoff(&mut a, Millis(1), "x0", b(2)), None);
    // A resource forgotten to make room forgets its handoff too.
    a.handle_input(Millis(1), release("x0", b(1), 1, b"kept"))
        .unwrap();
    flush(&mut a, Millis(1));
    for r in ["y", "z"] {
        promised_handoff(&mut a, Millis(2), r, b(5));
    }
    assert_eq!(a.stats().evicted_resources, 1);
    assert_eq!(promised_handoff(&mut a, Millis(3), "x0", b(9)), None);
}
