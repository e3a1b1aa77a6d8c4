//! The driver's side of the swarm: connection and protocol events become
//! hub inputs, and what the hub asks for becomes swarm actions (directed
//! frames, gossip publications, disconnections) and storage writes. Every
//! byte of a frame in or out is counted ([`crate::Traffic`]), per peer too,
//! with the round trip of directed frames (`peer_stats`).
//!
//! It never decides what to send: it routes the hub's transmits, checks
//! that gossip decodes and names its topic's space before relaying it, and
//! disconnects a peer that sent garbage or that the hub refused.

use concord_sync::wire::Frame;
use concord_sync::{Destination, HubInput, SyncEvent};
use libp2p::core::ConnectedPoint;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, mdns, request_response};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Driver;
use crate::behaviour::BehaviourEvent;

impl Driver {
    /// Carries out what the last hub input asked for: transmits, events,
    /// and, for every space it touched, records to persist and
    /// subscription deliveries.
    pub(super) fn pump(&mut self) {
        while let Some(t) = self.hub.poll_transmit() {
            match t.to {
                Destination::Peer(peer) => {
                    let bytes = t.bytes.len();
                    self.traffic.sync.sent(bytes);
                    let request = self.swarm.behaviour_mut().sync.send_request(&peer, t.bytes);
                    let now = std::time::Instant::now();
                    self.peer_stats.sent(&peer, bytes, request, now);
                }
                Destination::Broadcast => {
                    let Some(state) = t.space.and_then(|s| self.spaces.get(&s)) else {
                        continue;
                    };
                    let topic = state.topic.clone();
                    self.traffic.gossip.sent(t.bytes.len());
                    if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, t.bytes) {
                        debug!(error = %e, "gossipsub publish");
                    }
                }
            }
        }
        while let Some(e) = self.hub.poll_event() {
            match e.event {
                SyncEvent::Disconnect(peer) => {
                    warn!(%peer, space = ?e.space, "disconnecting misbehaving peer");
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                SyncEvent::ProtocolError { peer, error } => {
                    warn!(%peer, space = ?e.space, %error, "protocol error");
                }
                other => debug!(space = ?e.space, ?other, "sync event"),
            }
        }
        // After the transmits are handed to the swarm, so that writing a
        // compaction's snapshot (in place) never holds up gossip.
        while let Some(space) = self.hub.poll_touched() {
            if let (Some(state), Some(replica)) =
                (self.spaces.get_mut(&space), self.hub.replica_mut(&space))
            {
                state.disk.write(&space, replica);
                if state.disk.unsynced() && self.flush_at.is_none() {
                    self.flush_at = Some(Instant::now() + self.config.flush_delay);
                }
            }
            self.deliver(&space);
        }
    }

    /// Hands a received frame to the hub, timing the hub's work (decoding
    /// the frame, applying its changes) for [`crate::Latency::apply`], then
    /// carries out what it asks.
    fn on_frame(&mut self, from: libp2p::PeerId, bytes: Vec<u8>) {
        let start = std::time::Instant::now();
        self.hub
            .handle_input(super::wall_clock(), HubInput::Frame { from, bytes });
        self.latency.apply.record(start.elapsed());
        self.pump();
    }

    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                num_established,
                ..
            } => {
                let address = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address.clone(),
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
                };
                if let Some(i) = self.dialing.remove(&connection_id) {
                    self.bootstrap[i].connected = true;
                    self.bootstrap[i].backoff = std::time::Duration::from_millis(250);
                }
                if num_established.get() == 1 {
                    info!(%peer_id, %address, "peer connected");
                    self.peers.insert(peer_id, Some(address));
                    self.peer_stats.up(peer_id);
                    self.input(HubInput::PeerUp(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    for b in self.bootstrap.iter_mut().filter(|b| &b.addr == address) {
                        b.connected = false;
                    }
                }
                if num_established == 0 {
                    info!(%peer_id, "peer disconnected");
                    self.peers.remove(&peer_id);
                    self.peer_stats.down(&peer_id);
                    self.input(HubInput::PeerDown(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                self.dialing.remove(&connection_id);
                debug!(%error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, &message_id, message),
            BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, ());
                self.traffic.sync.received(request.len());
                self.peer_stats.received(&peer, request.len());
                self.on_frame(peer, request);
            }
            BehaviourEvent::Sync(request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            }) => {
                let now = std::time::Instant::now();
                self.peer_stats.answered(&request_id, now);
            }
            BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                warn!(%peer, %error, "inbound sync stream failed");
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                self.peer_stats.failed(&request_id);
                debug!(%peer, %error, "outbound sync stream failed");
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if !self.peers.contains_key(&peer) {
                        debug!(%peer, %addr, "mdns discovered");
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            _ => {}
        }
    }

    /// A gossip message: relayed (and handed to the hub) only if it is a
    /// frame of its topic's space; otherwise refused, and the peer that
    /// handed it over (it validates before relaying) disconnected.
    fn on_gossip(
        &mut self,
        from: libp2p::PeerId,
        id: &gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        self.traffic.gossip.received(message.data.len());
        self.peer_stats.received(&from, message.data.len());
        let space = self.topics.get(&message.topic);
        let valid = space.is_some_and(|space| {
            Frame::decode(&message.data).is_ok_and(|frame| frame.space() == space)
        });
        let acceptance = if valid {
            gossipsub::MessageAcceptance::Accept
        } else {
            gossipsub::MessageAcceptance::Reject
        };
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        gossip.report_message_validation_result(id, &from, acceptance);
        if valid {
            // Anonymous messages: the peer that handed us the frame answers
            // for it.
            self.on_frame(from, message.data);
        } else {
            warn!(%from, topic = %message.topic, "invalid gossip; disconnecting");
            let _ = self.swarm.disconnect_peer_id(from);
        }
    }
}
