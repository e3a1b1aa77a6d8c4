//! The libp2p behaviour of a Concord node and its construction. Owns the
//! protocol configuration (gossipsub limits match the wire codec's); it never
//! handles events.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{gossipsub, identify, identity, mdns, request_response};

use concord_sync::wire::MAX_FRAME_BYTES;

use crate::codec::{FrameCodec, SYNC_PROTOCOL};

/// Everything a Concord node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<FrameCodec>,
    pub identify: identify::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Gossipsub topic of a space's fast path.
pub(crate) fn topic(space: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("concord/space/{space}"))
}

/// Errors while building the behaviour, as libp2p's builder wants them.
pub(crate) type BuildError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn build(key: &identity::Keypair, mdns: bool) -> Result<Behaviour, BuildError> {
    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(MAX_FRAME_BYTES + 1024)
        .heartbeat_interval(Duration::from_millis(500))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .flood_publish(true)
        .build()?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )?;
    let sync = request_response::Behaviour::with_codec(
        FrameCodec,
        [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
    );
    let identify =
        identify::Behaviour::new(identify::Config::new("/concord/1.0.0".into(), key.public()));
    let mdns = if mdns {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            key.public().to_peer_id(),
        )?)
    } else {
        None
    };
    Ok(Behaviour {
        gossipsub,
        sync,
        identify,
        mdns: mdns.into(),
    })
}
