//! A peer that speaks Concord's protocols correctly at the libp2p level but
//! sends garbage inside them — on a space's gossipsub topic, or as a
//! directed sync frame — is disconnected, and the node's replica is
//! untouched and keeps syncing with honest peers.

use std::time::Duration;

use concord_state::{ActorId, Millis, Replica};
use concord_storage::{MemDisk, MemStorage};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identity};

use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::{NetConfig, NetHandle, SpaceOptions};

const SPACE: &str = "team";

async fn node() -> (NetHandle, Multiaddr) {
    let mut config = NetConfig::new(identity::Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    let handle = crate::spawn(config).expect("spawn");
    let replica = Replica::new(SPACE, ActorId::from(&[1u8; 16][..]));
    let storage = Box::new(MemStorage::new(MemDisk::new(), SPACE));
    handle
        .open_space(replica, storage, SpaceOptions::default())
        .await
        .expect("open");
    handle
        .with_replica(SPACE, |r| r.put(Millis(1), "observation/ci", &"green"))
        .await
        .expect("with")
        .expect("put");
    loop {
        if let Some(addr) = handle.listen_addrs().await.expect("addrs").pop() {
            return (handle, addr);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A bare swarm with Concord's behaviour, connected to `target` and, once
/// its gossipsub subscription reached the node, handed to `attack`; returns
/// whether the node closed the connection within 10 s.
async fn attacker(
    target: Multiaddr,
    node: PeerId,
    attack: impl FnOnce(&mut libp2p::Swarm<Behaviour>),
) -> bool {
    let key = identity::Keypair::generate_ed25519();
    let mut swarm = behaviour::swarm(&key, |k| behaviour::build(k, false), |c| c).expect("swarm");
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&behaviour::topic(SPACE))
        .expect("subscribe");
    swarm.dial(target).expect("dial");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut attack = Some(attack);
    loop {
        let event = tokio::select! {
            e = swarm.select_next_some() => e,
            _ = tokio::time::sleep_until(deadline) => return false,
        };
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(
                libp2p::gossipsub::Event::Subscribed { peer_id, .. },
            )) if peer_id == node => {
                if let Some(attack) = attack.take() {
                    attack(&mut swarm);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == node => {
                return attack.is_none();
            }
            _ => {}
        }
    }
}

async fn still_healthy(node: &NetHandle) {
    let value = node
        .with_replica(SPACE, |r| r.get("observation/ci"))
        .await
        .expect("with")
        .expect("get");
    assert_eq!(value, Some(serde_json::json!("green")));
    let changes = node
        .with_replica(SPACE, |r| r.vector_clock().total())
        .await
        .expect("with");
    assert_eq!(changes, 1, "the one write, nothing from the attacker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_gossip_topic_gets_the_sender_disconnected() {
    let (node, addr) = node().await;
    let disconnected = attacker(addr, node.peer_id(), |swarm| {
        swarm
            .behaviour_mut()
            .gossipsub
            .publish(behaviour::topic(SPACE), b"not a frame".to_vec())
            .expect("publish");
    })
    .await;
    assert!(disconnected, "the node kept a peer that gossiped garbage");
    still_healthy(&node).await;
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_frame_with_a_garbage_change_gets_the_sender_disconnected() {
    let (node, addr) = node().await;
    let target = node.peer_id();
    let disconnected = attacker(addr, target, move |swarm| {
        // A well-formed frame of the space's (first) epoch whose "change"
        // is not an automerge change.
        let fresh =
            concord_state::Replica::new(SPACE, concord_state::ActorId::from(&[7u8; 16][..]));
        let frame = concord_sync::wire::Frame::Changes {
            space: SPACE.into(),
            epoch: fresh.epoch().id.0.0,
            changes: vec![b"not an automerge change".to_vec()],
        }
        .encode()
        .expect("encode");
        swarm.behaviour_mut().sync.send_request(&target, frame);
    })
    .await;
    assert!(
        disconnected,
        "the node kept a peer that sent a garbage change"
    );
    still_healthy(&node).await;
    node.shutdown().await.expect("shutdown");
}
