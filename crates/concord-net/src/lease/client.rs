//! `/concord/lease-client/1`: how a node that is not a lease peer takes
//! leases through one that is.
//!
//! A space's lease quorum is a fixed set of lease peers; the other members
//! of the space are clients. A client sends one [`ClientCall`] per request
//! to a lease peer, which runs it through its own proposer exactly as a
//! call of its own application and answers with one [`ClientAnswer`] once
//! the proposer has decided. Fencing tokens come from the quorum, so leases
//! taken by clients exclude each other and the lease peers' own.
//!
//! Expiries never cross the wire as instants (the two clocks share no
//! origin): a grant says how much validity is left when it leaves the lease
//! peer, and the client counts that from the moment it *sent* the request,
//! so its view of the lease ends no later than the lease peer's.
//!
//! This module owns the messages and their encoding. It must never act on
//! a call (the lease node does, see `node/serve.rs`) and never hand out a
//! message that failed to decode or is larger than
//! [`super::MAX_LEASE_MESSAGE_BYTES`].

use concord_lease::{BackendError, FencingToken, Millis, Permits, Resource};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use super::wire::WireError;

/// The protocol name.
pub(crate) const LEASE_CLIENT_PROTOCOL: StreamProtocol =
    StreamProtocol::new("/concord/lease-client/1");

/// Most client calls one lease peer runs at once, over all clients; past
/// it a call is answered with [`ClientFailure::Unavailable`] (and counted
/// in the node's log).
pub const MAX_CLIENT_CALLS: usize = 1024;

/// Most leases one lease peer holds for clients at once; past it an
/// acquisition is refused as unavailable.
pub const MAX_CLIENT_LEASES: usize = 4096;

/// A lease call from a client to a lease peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ClientCall {
    /// Take `permits` of `resource` for `ttl`, waiting up to `wait`.
    Acquire {
        resource: Resource,
        ttl: Millis,
        permits: Permits,
        wait: Millis,
    },
    /// Renew the grant the lease peer named `handle`.
    Renew { handle: u64, ttl: Millis },
    /// Release the grant the lease peer named `handle`, leaving `handoff`
    /// for the next holder.
    Release {
        handle: u64,
        handoff: Option<Vec<u8>>,
    },
}

/// The lease peer's answer to one [`ClientCall`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ClientAnswer {
    /// Acquired or renewed: valid for `remaining` from when it was sent;
    /// a fresh grant carries what the previous holder left.
    Granted {
        token: FencingToken,
        remaining: Millis,
        handle: u64,
        handoff: Option<Vec<u8>>,
    },
    /// Released.
    Released,
    /// The call failed.
    Failed(ClientFailure),
}

/// Why a client call failed, as the client's backend reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ClientFailure {
    Busy,
    Expired,
    Unavailable(String),
    Other(String),
}

impl From<BackendError> for ClientFailure {
    fn from(e: BackendError) -> ClientFailure {
        match e {
            BackendError::Busy => ClientFailure::Busy,
            BackendError::Expired => ClientFailure::Expired,
            BackendError::Unavailable(why) => ClientFailure::Unavailable(why),
            other => ClientFailure::Other(other.to_string()),
        }
    }
}

impl From<ClientFailure> for BackendError {
    fn from(f: ClientFailure) -> BackendError {
        match f {
            ClientFailure::Busy => BackendError::Busy,
            ClientFailure::Expired => BackendError::Expired,
            ClientFailure::Unavailable(why) => BackendError::Unavailable(why),
            ClientFailure::Other(why) => BackendError::Other(why),
        }
    }
}

/// Encodes a call or an answer.
pub(crate) fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    super::wire::bounded(serde_json::to_vec(message)?)
}

/// Decodes a call or an answer.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    Ok(serde_json::from_slice(super::wire::bounded_ref(bytes)?)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn calls_and_answers_round_trip_and_garbage_is_an_error() {
        let call = ClientCall::Acquire {
            resource: Resource::new("printer").unwrap(),
            ttl: Millis(5_000),
            permits: Permits::MUTEX,
            wait: Millis(1_000),
        };
        assert_eq!(decode::<ClientCall>(&encode(&call).unwrap()).unwrap(), call);
        let answer = ClientAnswer::Granted {
            token: FencingToken::new(7),
            remaining: Millis(4_990),
            handle: 3,
            handoff: Some(b"clock".to_vec()),
        };
        assert_eq!(
            decode::<ClientAnswer>(&encode(&answer).unwrap()).unwrap(),
            answer
        );
        assert!(matches!(
            decode::<ClientCall>(b"{\"Renew\":{}}"),
            Err(WireError::Decode(_))
        ));
        // Zero permits is not a call.
        let bad = br#"{"Acquire":{"resource":"r","ttl":1,"permits":0,"wait":0}}"#;
        assert!(decode::<ClientCall>(bad).is_err());
        let huge = vec![b' '; super::super::MAX_LEASE_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode::<ClientCall>(&huge),
            Err(WireError::TooLarge(_))
        ));
    }

    #[test]
    fn failures_map_both_ways() {
        for e in [
            BackendError::Busy,
            BackendError::Expired,
            BackendError::Unavailable("no majority".into()),
        ] {
            assert_eq!(BackendError::from(ClientFailure::from(e.clone())), e);
        }
    }
}
