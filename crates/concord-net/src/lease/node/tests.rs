//! Tests of the lease node against a misbehaving peer.

#![allow(clippy::unwrap_used)]

use concord_lease::{Ballot, Holder, LeaseBackend, Resource};
use libp2p::swarm::SwarmEvent;

use super::*;
use crate::lease::QuorumLeaseBackend;

/// Sends `bytes` from `rogue` to `target`; returns the response, or
/// `None` if `target` hung up instead.
async fn ask(rogue: &mut Swarm<LeaseBehaviour>, target: PeerId, bytes: Vec<u8>) -> Option<Vec<u8>> {
    rogue.behaviour_mut().rpc.send_request(&target, bytes);
    let answer = async {
        loop {
            match rogue.select_next_some().await {
                SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == target => {
                    return None;
                }
                SwarmEvent::Behaviour(LeaseBehaviourEvent::Rpc(
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    },
                )) => return Some(response),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_bad_messages_is_disconnected_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let configs = QuorumConfig::loopback(3, dir.path()).unwrap();
    let a = QuorumLeaseBackend::start(configs[0].clone()).unwrap();
    let b = QuorumLeaseBackend::start(configs[1].clone()).unwrap();
    // The third lease peer is configured but misbehaves.
    let mut rogue = build_swarm(&configs[2]).unwrap();
    let target = a.peer_id();
    rogue.add_peer_address(target, configs[0].listen.clone());

    assert_eq!(
        ask(&mut rogue, target, b"\x00\xffgarbage".to_vec()).await,
        None
    );
    // Decodes, but breaks a protocol rule: a token above its ballot.
    let ballot = Ballot::new(1, NodeId(3)).unwrap();
    let bad = Message::Propose {
        resource: Resource::new("r").unwrap(),
        ballot,
        limit: Permits::MUTEX,
        holder: Holder {
            node: NodeId(3),
            lease: LeaseId(1),
        },
        token: Ballot::new(2, NodeId(3)).unwrap().token(),
        ttl: Millis(1_000),
    };
    assert_eq!(
        ask(&mut rogue, target, wire::encode(&bad).unwrap()).await,
        None
    );
    // A well-behaved message from the same peer is still answered.
    let prepare = Message::Prepare {
        resource: Resource::new("other").unwrap(),
        ballot,
        limit: Permits::MUTEX,
    };
    let answer = ask(&mut rogue, target, wire::encode(&prepare).unwrap()).await;
    let reply = wire::decode_response(&answer.unwrap()).unwrap();
    assert!(matches!(reply, Some(Message::Promise { .. })), "{reply:?}");

    // Nothing it said stuck: had the propose been accepted, `r` would be
    // held by the rogue, and an acquisition that does not wait would
    // find it busy.
    a.acquire(Resource::new("r").unwrap(), Millis(1_000), Millis(0))
        .await
        .unwrap();
    drop(b);
}
