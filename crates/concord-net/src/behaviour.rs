//! The libp2p behaviour of a Concord node and its construction. Owns the
//! protocol configuration (gossipsub limits match the wire codec's); it never
//! handles events.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{gossipsub, identify, identity, mdns, request_response};

use concord_sync::wire::{MAX_FRAME_BYTES, MAX_SPACE_KEYS};

use crate::codec::{FrameCodec, SYNC_PROTOCOL};

/// Everything a Concord node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<FrameCodec>,
    pub identify: identify::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// A swarm with Concord's transports (TCP with nodelay and QUIC, noise,
/// yamux) on tokio, idle connections kept for an hour. `tune` adjusts the
/// swarm config further; errors come back as text for the caller's type.
pub(crate) fn swarm<B: NetworkBehaviour>(
    keypair: &identity::Keypair,
    behaviour: impl FnOnce(&identity::Keypair) -> Result<B, BuildError>,
    tune: impl FnOnce(libp2p::swarm::Config) -> libp2p::swarm::Config,
) -> Result<libp2p::Swarm<B>, String> {
    Ok(
        libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .map_err(|e| e.to_string())?
            .with_quic()
            .with_behaviour(behaviour)
            .map_err(|e| e.to_string())?
            .with_swarm_config(|c| tune(c.with_idle_connection_timeout(Duration::from_secs(3600))))
            .build(),
    )
}

/// Gossipsub topic of a space's fast path.
pub(crate) fn topic(space: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("concord/space/{space}"))
}

/// Errors while building the behaviour, as libp2p's builder wants them.
pub(crate) type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// A gossip message's id: the first 20 bytes of the SHA-256 of its data.
///
/// Messages are anonymous (see [`gossip_config`]), so the id is the
/// content: the same frame relayed twice is one message, and a frame sent
/// again later (the same changes) is a duplicate, which is what applying
/// changes treats it as anyway.
fn content_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    use sha2::{Digest, Sha256};
    gossipsub::MessageId::from(&Sha256::digest(&message.data)[..20])
}

/// The fast path's gossipsub settings.
///
/// Messages are **anonymous** (no author, sequence number or signature).
/// Gossipsub's signatures would only tell who published a frame, and that
/// protects nothing here: the automerge changes inside a frame name their
/// own actors, which no signature binds to a peer, so a member of an open
/// space can write as anyone with or without them; spaces that need a closed
/// membership use allowlists, which never touch gossipsub. What gossipsub
/// does keep: every frame is validated (decoded within the codec's limits)
/// before it is relayed, so an honest relay never forwards garbage, and the
/// peer that handed us a bad frame is the one reported and disconnected.
/// Dropping the signatures saves an ed25519 signature per publish and a
/// verification per receiver and hop: the largest fixed cost of a small
/// message's trip (see the `propagation` bench).
///
/// A node's first RPC to a new peer lists every topic it subscribes to
/// (one per open space), and a heartbeat may graft as many: gossipsub's
/// default bound on control bytes per RPC (16 KB) holds about 500 topics,
/// past which the peer drops the whole list and never publishes to this
/// node (the fast path silently stops; see the `many_spaces` bench). The
/// bound is a frame's here, as for messages: a hello of
/// [`MAX_SPACE_KEYS`] topics fits while space names average under about
/// 40 bytes (at the longest names, about 27,000 topics fit).
pub(crate) fn gossip_config() -> Result<gossipsub::Config, BuildError> {
    Ok(gossipsub::ConfigBuilder::default()
        .max_transmit_size(MAX_FRAME_BYTES + 1024)
        .max_control_message_size(MAX_FRAME_BYTES + 1024)
        .heartbeat_interval(Duration::from_millis(500))
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(content_id)
        .validate_messages()
        .flood_publish(true)
        .build()?)
}

/// Which topics a peer may subscribe to: any, up to one per space a node
/// may hold ([`MAX_SPACE_KEYS`]), all in one request if need be. (The
/// default filter takes 100 topics per peer and per request and drops a
/// longer list whole.)
fn subscription_filter()
-> gossipsub::MaxCountSubscriptionFilter<gossipsub::AllowAllSubscriptionFilter> {
    gossipsub::MaxCountSubscriptionFilter {
        filter: gossipsub::AllowAllSubscriptionFilter {},
        max_subscribed_topics: MAX_SPACE_KEYS,
        max_subscriptions_per_request: MAX_SPACE_KEYS,
    }
}

/// How often mDNS asks the local network for peers.
const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) fn build(key: &identity::Keypair, mdns: bool) -> Result<Behaviour, BuildError> {
    let gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
        gossipsub::MessageAuthenticity::Anonymous,
        gossip_config()?,
        subscription_filter(),
    )?;
    let sync = request_response::Behaviour::with_codec(
        FrameCodec,
        [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
    );
    let identify =
        identify::Behaviour::new(identify::Config::new("/concord/1.0.0".into(), key.public()));
    let mdns = if mdns {
        // Ask again every few seconds (libp2p's default is five minutes):
        // a peer whose first answer was missed, or whose dial failed while
        // it was still starting, is found and dialed again soon.
        let config = mdns::Config {
            query_interval: MDNS_QUERY_INTERVAL,
            ..mdns::Config::default()
        };
        Some(mdns::tokio::Behaviour::new(
            config,
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
