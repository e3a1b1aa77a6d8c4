//! The messages lease peers exchange ([`Message`]), and an addressed message
//! ready to send ([`Transmit`]).
//!
//! Plain enums with serde derives; a network driver picks the encoding. This
//! module owns the shape of the protocol and [`Message::validate`], the
//! check every receiver runs before acting. It must never hold state, and
//! never carry a clock reading: nodes' clocks are not comparable, so only
//! durations (`ttl`) cross the wire.
//!
//! ```text
//! proposer                       acceptor
//!    | Prepare(resource, b, limit) --> |  promise b if b > promised (durable first)
//!    | <-- Promise(b, live holders)    |  or Reject(promised, reason)
//!    | Propose(b, holder, token, ttl)->|  accept if b >= promised and a permit is free;
//!    | <-- Accepted(b)                 |  time the entry from receipt
//!    | Release(holder, token) -------> |  drop the entry (after a restart:
//!    | <-- Released(holder, token)     |  nothing to drop) and confirm
//! ```

use serde::{Deserialize, Serialize};

use crate::ballot::{Ballot, FencingToken};
use crate::error::LeaseError;
use crate::ids::{Holder, NodeId};
use crate::resource::Resource;
use crate::semaphore::{MAX_PERMITS, Permits};
use crate::time::Millis;

/// Largest [`Handoff::context`], in bytes.
pub const MAX_HANDOFF_BYTES: usize = 512;

/// What the last holder of a resource left for the next one when it
/// released: an opaque context (Concord puts there how far the holder's
/// writes went, so that the next holder waits until it has seen them) and
/// the token of the grant it gave up.
///
/// Acceptors keep the handoff with the highest token per resource, in
/// memory like grants, and list it in their promises; a proposer hands the
/// one with the highest token among a majority's promises to the new
/// holder ([`crate::Event::Acquired`]). A release confirmed by a majority
/// therefore always reaches the next holder; one that reached fewer
/// acceptors (or a holder that crashed and let its lease expire) may not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// The token of the grant released with it.
    pub token: FencingToken,
    /// The releaser's context, at most [`MAX_HANDOFF_BYTES`].
    pub context: Vec<u8>,
}

/// Checks a handoff context against [`MAX_HANDOFF_BYTES`].
///
/// # Errors
/// [`LeaseError::Malformed`] if it is longer.
pub fn check_handoff(context: Option<&[u8]>) -> Result<(), LeaseError> {
    match context {
        Some(c) if c.len() > MAX_HANDOFF_BYTES => Err(LeaseError::Malformed(
            "handoff context above MAX_HANDOFF_BYTES",
        )),
        _ => Ok(()),
    }
}

/// A holder and its token, as listed in a [`Message::Promise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderInfo {
    /// The holder.
    pub holder: Holder,
    /// The token of its grant.
    pub token: FencingToken,
}

/// Why an acceptor refused a prepare or accept request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectReason {
    /// The ballot is not above (prepare) or not at least (accept) the
    /// acceptor's promise, which the reply carries.
    Outdated,
    /// The acceptor restarted recently and sits out its quiet period.
    Recovering,
    /// All permits of the resource are held by others.
    Full,
    /// The current holders use a different permit count.
    LimitMismatch,
    /// The ttl exceeds the acceptor's maximum.
    TtlTooLong,
    /// The acceptor tracks its maximum of resources and none is idle.
    TooManyResources,
}

/// A lease protocol message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Proposer to acceptor: promise `ballot` for `resource` and tell me who
    /// holds it.
    Prepare {
        /// The resource.
        resource: Resource,
        /// The proposer's ballot.
        ballot: Ballot,
        /// The resource's permit count as the proposer sees it.
        limit: Permits,
    },
    /// Acceptor to proposer: `ballot` is promised; these holders are live.
    Promise {
        /// The resource.
        resource: Resource,
        /// The promised ballot.
        ballot: Ballot,
        /// Live holders at the acceptor; at most [`MAX_PERMITS`].
        holders: Vec<HolderInfo>,
        /// The latest handoff left by a holder of the resource.
        #[serde(default)]
        handoff: Option<Handoff>,
    },
    /// Proposer to acceptor: grant `holder` the resource for `ttl`.
    Propose {
        /// The resource.
        resource: Resource,
        /// The ballot promised by a majority.
        ballot: Ballot,
        /// The permit count.
        limit: Permits,
        /// Who gets the grant.
        holder: Holder,
        /// The grant's token: `ballot.token()` for a new grant, the original
        /// token for a renewal; never above `ballot.token()`.
        token: FencingToken,
        /// How long the acceptor keeps the grant, timed from receipt.
        ttl: Millis,
    },
    /// Acceptor to proposer: the grant at `ballot` is accepted.
    Accepted {
        /// The resource.
        resource: Resource,
        /// The accepted ballot.
        ballot: Ballot,
    },
    /// Acceptor to proposer: the request at `ballot` is refused.
    Reject {
        /// The resource.
        resource: Resource,
        /// The refused ballot.
        ballot: Ballot,
        /// The acceptor's current promise for the resource, so the proposer
        /// can pick a higher ballot next time.
        promised: Ballot,
        /// Why.
        reason: RejectReason,
    },
    /// Proposer to acceptor: `holder` gives up the grant carrying `token`.
    Release {
        /// The resource.
        resource: Resource,
        /// The holder.
        holder: Holder,
        /// The token of the grant given up.
        token: FencingToken,
        /// Context for the next holder (see [`Handoff`]).
        #[serde(default)]
        handoff: Option<Vec<u8>>,
    },
    /// Acceptor to proposer: the acceptor holds no grant of `holder` with
    /// `token` (any it held is dropped), in answer to a `Release`.
    Released {
        /// The resource.
        resource: Resource,
        /// The holder named in the `Release`.
        holder: Holder,
        /// The token named in the `Release`.
        token: FencingToken,
    },
}

impl Message {
    /// The resource the message is about.
    pub fn resource(&self) -> &Resource {
        match self {
            Message::Prepare { resource, .. }
            | Message::Promise { resource, .. }
            | Message::Propose { resource, .. }
            | Message::Accepted { resource, .. }
            | Message::Reject { resource, .. }
            | Message::Release { resource, .. }
            | Message::Released { resource, .. } => resource,
        }
    }

    /// The message kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "Prepare",
            Message::Promise { .. } => "Promise",
            Message::Propose { .. } => "Propose",
            Message::Accepted { .. } => "Accepted",
            Message::Reject { .. } => "Reject",
            Message::Release { .. } => "Release",
            Message::Released { .. } => "Released",
        }
    }

    /// Checks the rules the types alone do not enforce.
    ///
    /// # Errors
    /// [`LeaseError::Malformed`] if a `Promise` lists more than
    /// [`MAX_PERMITS`] holders, a `Propose` has a zero ttl or a token
    /// above its ballot, or a handoff context exceeds [`MAX_HANDOFF_BYTES`].
    pub fn validate(&self) -> Result<(), LeaseError> {
        let handoff = match self {
            Message::Promise {
                handoff: Some(h), ..
            } => Some(h.context.as_slice()),
            Message::Release {
                handoff: Some(context),
                ..
            } => Some(context.as_slice()),
            _ => None,
        };
        check_handoff(handoff)?;
        match self {
            Message::Promise { holders, .. } if holders.len() > MAX_PERMITS as usize => Err(
                LeaseError::Malformed("promise lists more than MAX_PERMITS holders"),
            ),
            Message::Propose { ttl, .. } if *ttl == Millis::ZERO => {
                Err(LeaseError::Malformed("propose with zero ttl"))
            }
            Message::Propose { ballot, token, .. } if *token > ballot.token() => Err(
                LeaseError::Malformed("propose with a token above its ballot"),
            ),
            _ => Ok(()),
        }
    }
}

/// A message addressed to a lease peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transmit {
    /// The recipient.
    pub to: NodeId,
    /// The message.
    pub message: Message,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::LeaseId;

    fn res() -> Resource {
        Resource::new("r").unwrap()
    }

    #[test]
    fn validate_bounds_holder_lists() {
        let info = HolderInfo {
            holder: Holder {
                node: NodeId(1),
                lease: LeaseId(1),
            },
            token: FencingToken::new(1),
        };
        let promise = |holders, context: usize| Message::Promise {
            resource: res(),
            ballot: Ballot::ZERO,
            holders,
            handoff: Some(Handoff {
                token: FencingToken::new(1),
                context: vec![7; context],
            }),
        };
        let ok = promise(vec![info; MAX_PERMITS as usize], MAX_HANDOFF_BYTES);
        assert_eq!(ok.validate(), Ok(()));
        let too_many = promise(vec![info; MAX_PERMITS as usize + 1], 0);
        assert!(matches!(too_many.validate(), Err(LeaseError::Malformed(_))));
        let too_long = promise(Vec::new(), MAX_HANDOFF_BYTES + 1);
        assert!(matches!(too_long.validate(), Err(LeaseError::Malformed(_))));
        let release = |context: usize| Message::Release {
            resource: res(),
            holder: info.holder,
            token: info.token,
            handoff: Some(vec![0; context]),
        };
        assert_eq!(release(MAX_HANDOFF_BYTES).validate(), Ok(()));
        assert!(release(MAX_HANDOFF_BYTES + 1).validate().is_err());
        // A message from before handoffs existed still decodes.
        let old = r#"{"Release":{"resource":"r","holder":{"node":1,"lease":1},"token":5}}"#;
        assert!(matches!(
            serde_json::from_str::<Message>(old).unwrap(),
            Message::Release { handoff: None, .. }
        ));
    }

    #[test]
    fn validate_checks_propose() {
        let b = Ballot::new(3, NodeId(1)).unwrap();
        let propose = |token, ttl| Message::Propose {
            resource: res(),
            ballot: b,
            limit: Permits::MUTEX,
            holder: Holder {
                node: NodeId(1),
                lease: LeaseId(1),
            },
            token,
            ttl,
        };
        assert_eq!(propose(b.token(), Millis(5)).validate(), Ok(()));
        assert!(propose(b.token(), Millis::ZERO).validate().is_err());
        assert!(
            propose(FencingToken::new(b.raw() + 1), Millis(5))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn messages_round_trip_through_serde() {
        let m = Message::Reject {
            resource: res(),
            ballot: Ballot::new(1, NodeId(2)).unwrap(),
            promised: Ballot::new(4, NodeId(0)).unwrap(),
            reason: RejectReason::Outdated,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), m);
        assert_eq!(m.kind(), "Reject");
        assert_eq!(m.resource(), &res());
    }

    #[test]
    fn decoding_rejects_bad_permits_and_names() {
        let bad = r#"{"Prepare":{"resource":"r","ballot":65536,"limit":0}}"#;
        assert!(serde_json::from_str::<Message>(bad).is_err());
        let bad = r#"{"Prepare":{"resource":"","ballot":65536,"limit":1}}"#;
        assert!(serde_json::from_str::<Message>(bad).is_err());
        let good = r#"{"Prepare":{"resource":"r","ballot":65536,"limit":1}}"#;
        assert!(serde_json::from_str::<Message>(good).is_ok());
    }
}
