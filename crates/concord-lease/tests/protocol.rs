//! Tests of the proposer and acceptor machines together, over a lockstep
//! network (instant delivery, links that can be cut, an fsync that takes a
//! set time), with the proposer's own decisions (retries, release
//! confirmations) at the end; `scripted.rs` tests the proposer alone
//! against scripted replies.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;

use common::{acc_id, acquire_mutex, config, prop_id, r};
use concord_lease::*;

/// Lockstep network: instant delivery, links can be cut, acceptors
/// persist after `fsync` (at once by default).
struct Net {
    now: Millis,
    acceptors: Vec<Acceptor>,
    proposers: Vec<Proposer>,
    cut: BTreeSet<(NodeId, NodeId)>,
    events: Vec<(usize, Event)>,
    fsync: Millis,
    /// Acceptor writes under way: (done at, acceptor, version).
    writes: Vec<(Millis, usize, u64)>,
}

impl Net {
    fn new(acceptors: usize, proposers: usize) -> Net {
        Net {
            now: Millis(1000),
            acceptors: (0..acceptors)
                .map(|i| Acceptor::new(AcceptorConfig::new(acc_id(i))).unwrap())
                .collect(),
            proposers: (0..proposers)
                .map(|i| Proposer::new(config(i, acceptors), i as u64).unwrap())
                .collect(),
            cut: BTreeSet::new(),
            events: Vec::new(),
            fsync: Millis::ZERO,
            writes: Vec::new(),
        }
    }

    /// Confirms the acceptor writes done by now.
    fn finish_writes(&mut self) {
        let now = self.now;
        let (done, pending) = self.writes.drain(..).partition(|w| w.0 <= now);
        self.writes = pending;
        for (_, a, version) in done {
            let input = AcceptorInput::Persisted { version };
            self.acceptors[a].handle_input(now, input).unwrap();
        }
    }

    fn isolate(&mut self, p: usize, acceptors: &[usize]) {
        for &a in acceptors {
            self.cut.insert((prop_id(p), acc_id(a)));
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn input(&mut self, p: usize, input: Input) {
        self.proposers[p].handle_input(self.now, input).unwrap();
        self.run();
    }

    fn acquire(&mut self, p: usize, lease: u64, res: &str, ttl: u64, permits: u32, wait: u64) {
        self.input(
            p,
            Input::Acquire {
                lease: LeaseId(lease),
                resource: r(res),
                ttl: Millis(ttl),
                permits: Permits::new(permits).unwrap(),
                wait: Millis(wait),
            },
        );
    }

    fn run(&mut self) {
        loop {
            let mut moved = false;
            for p in 0..self.proposers.len() {
                while let Some(t) = self.proposers[p].poll_transmit() {
                    moved = true;
                    let a = usize::from(t.to.0) - 1;
                    if self.cut.contains(&(prop_id(p), t.to)) {
                        continue;
                    }
                    let input = AcceptorInput::Message {
                        from: prop_id(p),
                        message: t.message,
                    };
                    self.acceptors[a].handle_input(self.now, input).unwrap();
                }
                while let Some(e) = self.proposers[p].poll_event() {
                    self.events.push((p, e));
                }
            }
            for a in 0..self.acceptors.len() {
                while let Some(persist) = self.acceptors[a].poll_persist() {
                    let done = self.now.saturating_add(self.fsync);
                    self.writes.push((done, a, persist.version));
                }
                self.finish_writes();
                while let Some(t) = self.acceptors[a].poll_transmit() {
                    moved = true;
                    let p = usize::from(t.to.0) - 100;
                    if self.cut.contains(&(t.to, acc_id(a))) {
                        continue;
                    }
                    let input = Input::Message {
                        from: acc_id(a),
                        message: t.message,
                    };
                    self.proposers[p].handle_input(self.now, input).unwrap();
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Advances time by `ms`, one millisecond at a time, firing timers.
    fn advance(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now = self.now.saturating_add(Millis(1));
            for p in 0..self.proposers.len() {
                if self.proposers[p]
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.proposers[p]
                        .handle_input(self.now, Input::Timeout)
                        .unwrap();
                }
            }
            self.run();
        }
    }

    /// Proposer `p` has been busy: it acquired and released `r` `rounds`
    /// times, so the acceptors promised its round `rounds`.
    fn keep_busy(&mut self, p: usize, rounds: usize) {
        for _ in 0..rounds {
            self.acquire(p, 1, "r", 100, 1, 0);
            self.input(
                p,
                Input::Release {
                    lease: LeaseId(1),
                    handoff: None,
                },
            );
        }
        self.take_events();
    }

    fn take_events(&mut self) -> Vec<(usize, Event)> {
        std::mem::take(&mut self.events)
    }
}

fn acquired(events: &[(usize, Event)], who: usize) -> Option<(FencingToken, Millis)> {
    events.iter().find_map(|(p, e)| match e {
        Event::Acquired {
            token, valid_until, ..
        } if *p == who => Some((*token, *valid_until)),
        _ => None,
    })
}

#[test]
fn acquire_gets_a_token_and_a_shortened_validity() {
    let mut net = Net::new(3, 1);
    net.acquire(0, 1, "r", 10_000, 1, 0);
    let events = net.take_events();
    let (token, valid_until) = acquired(&events, 0).unwrap();
    assert_eq!(token, Ballot::new(1, prop_id(0)).unwrap().token());
    assert_eq!(
        valid_until,
        Millis(1000).saturating_add(DriftBound::DEFAULT.local_validity(Millis(10_000)))
    );
    assert!(net.proposers[0].is_valid(LeaseId(1), Millis(1000)));
    assert!(!net.proposers[0].is_valid(LeaseId(1), valid_until));
    assert_eq!(net.proposers[0].poll_timeout(), Some(valid_until));
}

#[test]
fn a_held_mutex_denies_others_until_released_then_the_token_grows() {
    let mut net = Net::new(3, 2);
    net.acquire(0, 1, "r", 10_000, 1, 0);
    net.acquire(1, 1, "r", 10_000, 1, 0);
    let events = net.take_events();
    let (first, _) = acquired(&events, 0).unwrap();
    assert!(events.iter().any(|(p, e)| *p == 1
        && matches!(
            e,
            Event::Denied {
                reason: DenyReason::Busy,
                ..
            }
        )));
    net.input(
        0,
        Input::Release {
            lease: LeaseId(1),
            handoff: None,
        },
    );
    net.acquire(1, 2, "r", 10_000, 1, 0);
    let events = net.take_events();
    assert!(events.iter().any(|(p, e)| *p == 0
        && *e
            == Event::Released {
                lease: LeaseId(1),
                resource: r("r"),
                token: Some(first),
                confirmed_by_all: true,
            }));
    let (second, _) = acquired(&events, 1).unwrap();
    assert!(second > first);
}

/// The handoff the grant of `who` carried.
fn handoff_of(events: &[(usize, Event)], who: usize) -> Option<Handoff> {
    events.iter().find_map(|(p, e)| match e {
        Event::Acquired { handoff, .. } if *p == who => Some(handoff.clone()),
        _ => None,
    })?
}

#[test]
fn the_next_holder_gets_what_the_last_one_left_on_release() {
    let mut net = Net::new(3, 2);
    net.acquire(0, 1, "r", 10_000, 1, 0);
    let (first, _) = acquired(&net.take_events(), 0).unwrap();
    let release = |handoff: &[u8]| Input::Release {
        lease: LeaseId(1),
        handoff: Some(handoff.to_vec()),
    };
    // Oversized contexts are refused before anything is sent.
    assert!(matches!(
        net.proposers[0].handle_input(net.now, release(&[0; MAX_HANDOFF_BYTES + 1])),
        Err(LeaseError::Malformed(_))
    ));
    // The release reaches two acceptors of three: a majority.
    net.isolate(0, &[2]);
    net.input(0, release(b"wrote up to 41"));
    net.heal();
    net.advance(5_000);
    net.acquire(1, 1, "r", 10_000, 1, 0);
    let events = net.take_events();
    let (second, _) = acquired(&events, 1).unwrap();
    assert_eq!(
        handoff_of(&events, 1),
        Some(Handoff {
            token: first,
            context: b"wrote up to 41".to_vec()
        })
    );
    // A release without a context leaves the last one in place; the
    // first grant, by a fresh proposer, finds nothing.
    net.input(
        1,
        Input::Release {
            lease: LeaseId(1),
            handoff: None,
        },
    );
    net.acquire(0, 2, "r", 10_000, 1, 0);
    let events = net.take_events();
    assert!(acquired(&events, 0).unwrap().0 > second);
    assert_eq!(handoff_of(&events, 0).unwrap().token, first);
    net.acquire(1, 2, "other", 10_000, 1, 0);
    assert_eq!(handoff_of(&net.take_events(), 1), None);
}

#[test]
fn waiting_acquire_succeeds_after_the_holder_expires() {
    let mut net = Net::new(3, 2);
    net.acquire(0, 1, "r", 200, 1, 0);
    net.acquire(1, 1, "r", 200, 1, 1_000);
    net.advance(400);
    let events = net.take_events();
    let (t0, _) = acquired(&events, 0).unwrap();
    assert!(
        events
            .iter()
            .any(|(p, e)| *p == 0 && matches!(e, Event::Lost { .. }))
    );
    let (t1, _) = acquired(&events, 1).unwrap();
    assert!(t1 > t0);
}

#[test]
fn the_minority_side_of_a_partition_cannot_acquire() {
    let mut net = Net::new(5, 2);
    // Proposer 0 reaches only acceptors 0 and 1: a minority of 5.
    net.isolate(0, &[2, 3, 4]);
    net.acquire(0, 1, "r", 1_000, 1, 500);
    net.advance(600);
    let events = net.take_events();
    assert_eq!(acquired(&events, 0), None);
    assert!(events.iter().any(|(p, e)| *p == 0
        && matches!(
            e,
            Event::Denied {
                reason: DenyReason::NoQuorum,
                ..
            }
        )));
    assert!(net.proposers[0].stats().attempts > 1, "it retried");
    // The majority side can.
    net.isolate(1, &[0, 1]);
    net.acquire(1, 1, "r", 1_000, 1, 0);
    assert!(acquired(&net.take_events(), 1).is_some());
    net.heal();
}

#[test]
fn acceptors_slower_than_the_round_timeout_still_grant() {
    // Every acceptor write takes three first round timeouts (50 ms): with a
    // fixed timeout each attempt would be abandoned before its promises,
    // and each retry's higher ballot would need another write.
    let mut net = Net::new(3, 1);
    net.fsync = Millis(150);
    net.acquire(0, 1, "r", 10_000, 1, 5_000);
    net.advance(1_000);
    let events = net.take_events();
    assert!(acquired(&events, 0).is_some(), "{events:?}");
    // Attempts 1-3 ran out of time (50 ms each). The first promises for
    // attempt 1 arrived at 150 ms, during attempt 3: from then on a phase
    // waits 300 ms, and attempt 4 got through.
    assert_eq!(net.proposers[0].stats().attempts, 4);
    // The next request waits long enough the first time, and so does a
    // release for its confirmations (behind that request's 150 ms writes).
    net.acquire(0, 2, "other", 10_000, 1, 5_000);
    net.input(
        0,
        Input::Release {
            lease: LeaseId(1),
            handoff: None,
        },
    );
    net.advance(1_000);
    let events = net.take_events();
    assert!(acquired(&events, 0).is_some());
    assert_eq!(net.proposers[0].stats().attempts, 5);
    assert!(events.iter().any(|(_, e)| matches!(
        e,
        Event::Released {
            lease: LeaseId(1),
            confirmed_by_all: true,
            ..
        }
    )));
}

#[test]
fn the_learned_round_timeout_has_a_ceiling() {
    // One write takes just longer than the longest phase timeout.
    let longest = 50 * MAX_ROUND_TIMEOUT_FACTOR;
    let mut net = Net::new(3, 1);
    net.fsync = Millis(longest + 1);
    net.acquire(0, 1, "r", 10_000, 1, 20_000);
    net.advance(21_000);
    let events = net.take_events();
    assert_eq!(acquired(&events, 0), None);
    assert!(
        events.iter().any(|(_, e)| matches!(
            e,
            Event::Denied {
                reason: DenyReason::NoQuorum,
                ..
            }
        )),
        "{events:?}"
    );
    // Attempts of 50 ms (and 10-20 ms of backoff) until the first late
    // promise at 801 ms, then attempts of 800 ms and 801-1602 ms of
    // backoff until the wait is spent: about 22. Without the ceiling the
    // second kind would succeed; with a fixed timeout there would be
    // about 300 attempts.
    let attempts = net.proposers[0].stats().attempts;
    assert!((18..=26).contains(&attempts), "{attempts} attempts");
}

#[test]
fn a_proposer_does_not_preempt_its_own_renewal() {
    let mut net = Net::new(3, 1);
    net.acquire(0, 1, "r", 1_000, 1, 0);
    assert!(acquired(&net.take_events(), 0).is_some());
    // The renewal's messages are held up: its attempt stays under way.
    net.isolate(0, &[0, 1, 2]);
    net.input(
        0,
        Input::Renew {
            lease: LeaseId(1),
            ttl: Millis(1_000),
        },
    );
    let attempts = net.proposers[0].stats().attempts;
    net.acquire(0, 2, "r", 1_000, 1, 0);
    assert_eq!(net.proposers[0].stats().attempts, attempts, "no ballot");
    let events = net.take_events();
    assert!(
        events.iter().any(|(_, e)| matches!(
            e,
            Event::Denied {
                lease: LeaseId(2),
                reason: DenyReason::Busy,
                ..
            }
        )),
        "{events:?}"
    );
    net.heal();
    net.advance(200);
    let events = net.take_events();
    assert!(
        events.iter().any(|(_, e)| matches!(
            e,
            Event::Renewed {
                lease: LeaseId(1),
                ..
            }
        )),
        "{events:?}"
    );
}

#[test]
fn renewal_keeps_the_token_and_extends_validity() {
    let mut net = Net::new(3, 2);
    net.acquire(0, 1, "r", 1_000, 1, 0);
    let (token, until) = acquired(&net.take_events(), 0).unwrap();
    net.advance(500);
    net.input(
        0,
        Input::Renew {
            lease: LeaseId(1),
            ttl: Millis(1_000),
        },
    );
    assert_eq!(
        net.proposers[0].handle_input(
            net.now,
            Input::Renew {
                lease: LeaseId(7),
                ttl: Millis(1_000)
            }
        ),
        Err(LeaseError::UnknownLease(LeaseId(7)))
    );
    let events = net.take_events();
    let renewed = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Renewed {
                token, valid_until, ..
            } => Some((*token, *valid_until)),
            _ => None,
        })
        .unwrap();
    assert_eq!(renewed.0, token);
    assert!(renewed.1 > until);
    // Another proposer still cannot get it after the original validity.
    net.advance(600);
    net.acquire(1, 1, "r", 1_000, 1, 0);
    assert_eq!(acquired(&net.take_events(), 1), None);
}

#[test]
fn a_renewal_that_completes_too_late_is_a_loss() {
    let mut net = Net::new(3, 1);
    net.acquire(0, 1, "r", 300, 1, 0);
    let (token, until) = acquired(&net.take_events(), 0).unwrap();
    // Answers to the renewal are lost until after the validity ends.
    net.isolate(0, &[0, 1, 2]);
    net.input(
        0,
        Input::Renew {
            lease: LeaseId(1),
            ttl: Millis(300),
        },
    );
    assert_eq!(
        net.proposers[0].handle_input(
            net.now,
            Input::Renew {
                lease: LeaseId(1),
                ttl: Millis(300)
            }
        ),
        Err(LeaseError::RenewInProgress(LeaseId(1)))
    );
    net.advance(until.0 - net.now.0 + 1);
    let events = net.take_events();
    // It retried the renewal until the very end, then lost the lease.
    assert!(net.proposers[0].stats().attempts > 2);
    assert!(events.iter().any(|(_, e)| *e
        == Event::Lost {
            lease: LeaseId(1),
            resource: r("r"),
            token
        }));
    assert_eq!(net.proposers[0].lease_count(), 0);
}

#[test]
fn rejections_push_the_ballot_above_the_promise() {
    let mut net = Net::new(3, 2);
    net.keep_busy(1, 5);
    // A fresh proposer 0 starts at round 1 and climbs.
    net.acquire(0, 1, "r", 1_000, 1, 1_000);
    net.advance(100);
    let (token, _) = acquired(&net.take_events(), 0).unwrap();
    assert!(token > Ballot::new(5, prop_id(1)).unwrap().token());
}

#[test]
fn a_semaphore_admits_up_to_its_permits_with_unique_growing_tokens() {
    let mut net = Net::new(3, 4);
    for p in 0..4 {
        net.acquire(p, 1, "api", 10_000, 3, 0);
    }
    let events = net.take_events();
    let tokens: Vec<FencingToken> = (0..3).map(|p| acquired(&events, p).unwrap().0).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(acquired(&events, 3), None);
    assert!(events.iter().any(|(p, e)| *p == 3
        && matches!(
            e,
            Event::Denied {
                reason: DenyReason::Busy,
                ..
            }
        )));
    // One proposer may hold two permits under two lease ids.
    net.input(
        1,
        Input::Release {
            lease: LeaseId(1),
            handoff: None,
        },
    );
    net.acquire(0, 2, "api", 10_000, 3, 0);
    assert!(acquired(&net.take_events(), 0).unwrap().0 > tokens[2]);
    // A mutex request on a semaphore resource is refused.
    net.acquire(3, 2, "api", 10_000, 1, 0);
    assert!(net.take_events().iter().any(|(_, e)| matches!(
        e,
        Event::Denied {
            reason: DenyReason::Rejected(RejectReason::LimitMismatch),
            ..
        }
    )));
}

#[test]
fn release_while_acquiring_cleans_up() {
    let mut net = Net::new(3, 1);
    net.isolate(0, &[0, 1, 2]);
    net.acquire(0, 1, "r", 1_000, 1, 1_000);
    net.input(
        0,
        Input::Release {
            lease: LeaseId(1),
            handoff: None,
        },
    );
    let events = net.take_events();
    assert_eq!(
        events,
        vec![(
            0,
            Event::Released {
                lease: LeaseId(1),
                resource: r("r"),
                token: None,
                confirmed_by_all: true,
            }
        )]
    );
    assert_eq!(net.proposers[0].poll_timeout(), None);
    assert_eq!(
        net.proposers[0].handle_input(
            net.now,
            Input::Release {
                lease: LeaseId(1),
                handoff: None
            }
        ),
        Err(LeaseError::UnknownLease(LeaseId(1)))
    );
}

#[test]
fn restarted_acceptors_sit_out_then_never_grant_a_lower_token() {
    let mut net = Net::new(3, 2);
    net.acquire(0, 1, "r", 1_000, 1, 0);
    let (first, _) = acquired(&net.take_events(), 0).unwrap();
    // Two of three acceptors restart from their durable state.
    for a in 0..2 {
        let saved = net.acceptors[a].state().clone();
        let config = AcceptorConfig {
            max_ttl: Millis(2_000),
            ..AcceptorConfig::new(acc_id(a))
        };
        net.acceptors[a] = Acceptor::restore(config, saved, net.now).unwrap();
    }
    // They forgot the grant, but sit out their quiet period, so the other
    // proposer cannot take the resource while proposer 0 may still hold it.
    net.acquire(1, 1, "r", 1_000, 1, 0);
    let events = net.take_events();
    assert_eq!(acquired(&events, 1), None);
    assert!(events.iter().any(|(p, e)| *p == 1
        && matches!(
            e,
            Event::Denied {
                reason: DenyReason::Rejected(RejectReason::Recovering),
                ..
            }
        )));
    // After the quiet period the resource is free again (proposer 0's lease
    // has ended) and the token is higher than before.
    net.advance(2_000);
    net.take_events();
    net.acquire(1, 2, "r", 1_000, 1, 0);
    let (second, _) = acquired(&net.take_events(), 1).unwrap();
    assert!(second > first);
}

/// Acquisitions of `lease` on `r` that ended (granted or denied), per
/// proposer, in order.
fn outcomes(events: &[(usize, Event)], who: usize) -> Vec<&Event> {
    events
        .iter()
        .filter(|(p, e)| *p == who && matches!(e, Event::Acquired { .. } | Event::Denied { .. }))
        .map(|(_, e)| e)
        .collect()
}

#[test]
fn an_outdated_proposer_asks_again_at_once_and_gets_the_grant() {
    let mut net = Net::new(3, 2);
    net.keep_busy(1, 5);
    // Proposer 0 (round 0) does not wait: its first ballot is refused as
    // outdated by every acceptor, which says nothing about the resource.
    net.acquire(0, 1, "r", 1_000, 1, 0);
    let events = net.take_events();
    let outcome = outcomes(&events, 0);
    assert!(
        matches!(outcome[..], [Event::Acquired { token, .. }]
            if *token > Ballot::new(5, prop_id(1)).unwrap().token()),
        "{events:?}"
    );
    let stats = net.proposers[0].stats();
    assert_eq!((stats.attempts, stats.outdated_retries), (2, 1));
}

/// A proposer alone whose every ballot a majority refuses as outdated,
/// the promise always a few rounds ahead (a cluster racing ahead of it).
/// Answers every prepare it sent until `until`, advancing time by 1 ms;
/// returns the events and the time they came.
fn refuse_every_ballot(p: &mut Proposer, mut now: Millis, until: Millis) -> Vec<(Millis, Event)> {
    let mut events = Vec::new();
    while now <= until {
        loop {
            let prepares: Vec<(NodeId, Ballot)> = std::iter::from_fn(|| p.poll_transmit())
                .filter_map(|t| match t.message {
                    Message::Prepare { ballot, .. } => Some((t.to, ballot)),
                    _ => None,
                })
                .collect();
            if prepares.is_empty() {
                break;
            }
            for (to, ballot) in prepares {
                let promised = Ballot::new(ballot.round() + 3, NodeId(7)).unwrap();
                let reject = Message::Reject {
                    resource: r("r"),
                    ballot,
                    promised,
                    reason: RejectReason::Outdated,
                };
                let input = Input::Message {
                    from: to,
                    message: reject,
                };
                p.handle_input(now, input).unwrap();
            }
        }
        events.extend(std::iter::from_fn(|| p.poll_event()).map(|e| (now, e)));
        now = now.saturating_add(Millis(1));
        if p.poll_timeout().is_some_and(|t| t <= now) {
            p.handle_input(now, Input::Timeout).unwrap();
        }
    }
    events
}

#[test]
fn outdated_retries_are_bounded_and_end_in_one_denial() {
    let mut p = Proposer::new(config(0, 3), 0).unwrap();
    let acquire = acquire_mutex(1, "r", 1_000, 0);
    p.handle_input(Millis(0), acquire).unwrap();
    let events = refuse_every_ballot(&mut p, Millis(0), Millis(100));
    assert!(
        matches!(
            events[..],
            [(
                Millis(0),
                Event::Denied {
                    reason: DenyReason::Rejected(RejectReason::Outdated),
                    ..
                }
            )]
        ),
        "{events:?}"
    );
    let stats = p.stats();
    assert_eq!(stats.attempts, 1 + u64::from(OUTDATED_RETRIES));
    assert_eq!(stats.outdated_retries, u64::from(OUTDATED_RETRIES));
    assert_eq!((p.lease_count(), p.poll_timeout()), (0, None));
}

#[test]
fn an_outdated_proposer_gives_up_with_a_denial_after_its_wait() {
    let mut p = Proposer::new(config(0, 3), 0).unwrap();
    let acquire = acquire_mutex(1, "r", 1_000, 200);
    p.handle_input(Millis(0), acquire).unwrap();
    let events = refuse_every_ballot(&mut p, Millis(0), Millis(1_000));
    // Retried after backoffs (10-20 ms) all through its wait, then at once
    // a bounded number of times, then denied once.
    let [(at, Event::Denied { reason, .. })] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(*reason, DenyReason::Rejected(RejectReason::Outdated));
    assert!(
        (Millis(180)..Millis(200)).contains(at),
        "denied at {at}, wait ends at 200 ms"
    );
    let stats = p.stats();
    assert!(stats.attempts >= 10, "{stats:?}");
    assert_eq!(stats.outdated_retries, u64::from(OUTDATED_RETRIES));
}

#[test]
fn a_release_completes_when_every_acceptor_confirms_it() {
    let mut net = Net::new(3, 1);
    net.acquire(0, 1, "r", 10_000, 1, 0);
    let (token, _) = acquired(&net.take_events(), 0).unwrap();
    // Confirmations held up by a slow disk: the release is under way.
    net.fsync = Millis(20);
    net.acquire(0, 2, "other", 10_000, 1, 0);
    net.input(
        0,
        Input::Release {
            lease: LeaseId(1),
            handoff: None,
        },
    );
    assert!(!net.proposers[0].is_valid(LeaseId(1), net.now));
    assert_eq!(net.proposers[0].held(LeaseId(1)), None);
    let released = |events: &[(usize, Event)]| {
        events.iter().any(|(_, e)| {
            matches!(
                e,
                Event::Released {
                    lease: LeaseId(1),
                    ..
                }
            )
        })
    };
    assert!(!released(&net.take_events()));
    // Its id stays taken meanwhile; a second release finds nothing.
    let p = &mut net.proposers[0];
    assert_eq!(
        p.handle_input(
            net.now,
            Input::Release {
                lease: LeaseId(1),
                handoff: None
            }
        ),
        Err(LeaseError::UnknownLease(LeaseId(1)))
    );
    let again = acquire_mutex(1, "r", 1_000, 0);
    assert_eq!(
        p.handle_input(net.now, again),
        Err(LeaseError::LeaseInUse(LeaseId(1)))
    );
    net.advance(20);
    let events = net.take_events();
    assert!(
        events.contains(&(
            0,
            Event::Released {
                lease: LeaseId(1),
                resource: r("r"),
                token: Some(token),
                confirmed_by_all: true,
            }
        )),
        "{events:?}"
    );
    assert_eq!(net.proposers[0].stats().unconfirmed_releases, 0);
    assert_eq!(net.proposers[0].lease_count(), 1);
}

#[test]
fn a_release_completes_at_its_deadline_when_an_acceptor_never_answers() {
    let mut net = Net::new(3, 1);
    net.acquire(0, 1, "r", 10_000, 1, 0);
    let (token, _) = acquired(&net.take_events(), 0).unwrap();
    // Acceptor 2 is out of reach; the other two confirm at once.
    net.isolate(0, &[2]);
    let released_at = net.now;
    net.input(
        0,
        Input::Release {
            lease: LeaseId(1),
            handoff: None,
        },
    );
    assert!(net.take_events().is_empty());
    // The deadline is one round timeout (50 ms: nothing was slow).
    let deadline = released_at.saturating_add(Millis(50));
    assert_eq!(net.proposers[0].poll_timeout(), Some(deadline));
    net.advance(49);
    assert!(net.take_events().is_empty());
    net.advance(1);
    assert_eq!(
        net.take_events(),
        vec![(
            0,
            Event::Released {
                lease: LeaseId(1),
                resource: r("r"),
                token: Some(token),
                confirmed_by_all: false,
            }
        )]
    );
    let p = &net.proposers[0];
    assert_eq!(p.stats().unconfirmed_releases, 1);
    assert_eq!((p.lease_count(), p.poll_timeout()), (0, None));
}

#[test]
fn confirmations_of_other_releases_count_for_nothing() {
    let mut p = Proposer::new(config(0, 1), 0).unwrap();
    let released = |holder: Holder, token: u64| Input::Message {
        from: acc_id(0),
        message: Message::Released {
            resource: r("r"),
            holder,
            token: FencingToken::new(token),
        },
    };
    // Of a request this proposer does not track: ignored.
    let mine = Holder {
        node: prop_id(0),
        lease: LeaseId(4),
    };
    p.handle_input(Millis(0), released(mine, 9)).unwrap();
    assert_eq!(p.poll_event(), None);
    // Of another node's holder: a bad message.
    let theirs = Holder {
        node: prop_id(1),
        lease: LeaseId(4),
    };
    assert!(matches!(
        p.handle_input(Millis(0), released(theirs, 9)),
        Err(LeaseError::Malformed(_))
    ));
}

#[test]
fn stats_count_grants_denials_renewals_and_losses() {
    let mut net = Net::new(3, 2);
    net.acquire(0, 1, "r", 1_000, 1, 0);
    net.acquire(1, 1, "r", 1_000, 1, 0);
    net.advance(100);
    net.input(
        0,
        Input::Renew {
            lease: LeaseId(1),
            ttl: Millis(1_000),
        },
    );
    // Never renewed again: its validity runs out.
    net.advance(2_000);
    let events = net.take_events();
    let count = |p: usize, what: fn(&Event) -> bool| {
        events.iter().filter(|(q, e)| *q == p && what(e)).count() as u64
    };
    let holder = net.proposers[0].stats();
    assert_eq!(holder.grants, 1);
    assert_eq!(holder.renewals, 1);
    assert_eq!(holder.losses, 1);
    assert_eq!(holder.denials, 0);
    assert_eq!(holder.losses, count(0, |e| matches!(e, Event::Lost { .. })));
    let refused = net.proposers[1].stats();
    assert_eq!((refused.grants, refused.denials), (0, 1));
    assert_eq!(
        refused.denials,
        count(1, |e| matches!(e, Event::Denied { .. }))
    );
}
