//! Names and configuration shared by the lockstep and scripted tests.

use concord_lease::{Input, LeaseId, Millis, NodeId, Permits, ProposerConfig, Quorum, Resource};

/// Acceptor `i`'s id (1, 2, ...).
pub fn acc_id(i: usize) -> NodeId {
    NodeId(i as u16 + 1)
}

/// Proposer `i`'s id (100, 101, ...).
pub fn prop_id(i: usize) -> NodeId {
    NodeId(i as u16 + 100)
}

/// The resource `name`.
pub fn r(name: &str) -> Resource {
    Resource::new(name).unwrap()
}

/// Proposer `i` of `acceptors` acceptors, with a round timeout of 50 ms
/// and a retry backoff of 10 ms.
pub fn config(i: usize, acceptors: usize) -> ProposerConfig {
    let quorum = Quorum::new((0..acceptors).map(acc_id)).unwrap();
    ProposerConfig {
        round_timeout: Millis(50),
        retry_backoff: Millis(10),
        ..ProposerConfig::new(prop_id(i), quorum)
    }
}

/// An acquisition of the mutex `res` as `lease`, for `ttl` ms, waiting up
/// to `wait` ms.
pub fn acquire_mutex(lease: u64, res: &str, ttl: u64, wait: u64) -> Input {
    Input::Acquire {
        lease: LeaseId(lease),
        resource: r(res),
        ttl: Millis(ttl),
        permits: Permits::MUTEX,
        wait: Millis(wait),
    }
}
