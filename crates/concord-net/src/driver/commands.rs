//! The driver's commands from [`NetHandle`](crate::NetHandle)s other than
//! writes: opening a space, subscribing, questions about peers and storage,
//! dialing, stats, and the final flush at shutdown; plus the delivery of
//! subscription events. Owns nothing; it never decides what to send.

use concord_state::{Replica, SubscribeOptions};
use concord_storage::Storage;
use tokio::sync::mpsc;
use tracing::{debug_span, info};

use super::{
    Command, Driver, NetError, PeerInfo, SpaceOptions, SpaceState, Sub, channel_sink, wall_clock,
};
use crate::SpaceStats;
use crate::behaviour;
use crate::persist::SpaceDisk;

impl Driver {
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::OpenSpace {
                replica,
                storage,
                options,
                reply,
            } => {
                let _ = reply.send(self.open_space(*replica, storage, options));
            }
            Command::BytesOnDisk { space, reply } => {
                let bytes = self
                    .spaces
                    .get(&space)
                    .map(|s| s.disk.bytes_on_disk())
                    .ok_or(NetError::UnknownSpace(space));
                let _ = reply.send(bytes);
            }
            Command::Subscribe {
                space,
                pattern,
                capacity,
                reply,
            } => {
                let _ = reply.send(self.subscribe(space, &pattern, capacity));
            }
            Command::Peers { reply } => {
                let peers = self
                    .peers
                    .iter()
                    .map(|(peer_id, address)| {
                        let figures = self.peer_stats.figures(peer_id);
                        PeerInfo {
                            peer_id: *peer_id,
                            address: address.clone(),
                            rtt: figures.rtt,
                            sent_bytes: figures.sent_bytes,
                            received_bytes: figures.received_bytes,
                        }
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen.clone());
            }
            Command::SpaceStats { reply } => {
                let _ = reply.send(self.space_stats());
            }
            Command::Dial { addr, reply } => {
                let result = self
                    .swarm
                    .dial(addr)
                    .map_err(|e| NetError::Transport(e.to_string()));
                let _ = reply.send(result);
            }
            // Both are handled by `on_received`, which never passes them here.
            Command::With { .. } | Command::Shutdown { .. } => {}
        }
    }

    /// Every open space's stats, by name.
    fn space_stats(&self) -> Vec<SpaceStats> {
        let _span = debug_span!("space_stats", spaces = self.spaces.len()).entered();
        self.spaces
            .iter()
            .filter_map(|(name, state)| {
                let replica = self.hub.replica(name)?;
                Some(SpaceStats {
                    space: name.clone(),
                    peers: self.hub.space_peers(name).unwrap_or(0),
                    replica: replica.stats(),
                    epoch: replica.epoch(),
                    bytes_on_disk: state.disk.bytes_on_disk(),
                    unsynced: state.disk.unsynced_ops(),
                })
            })
            .collect()
    }

    fn subscribe(
        &mut self,
        space: String,
        pattern: &str,
        capacity: usize,
    ) -> Result<mpsc::Receiver<concord_state::Delivery>, NetError> {
        let replica = self
            .hub
            .replica_mut(&space)
            .ok_or_else(|| NetError::UnknownSpace(space.clone()))?;
        let (tx, rx) = mpsc::channel(capacity);
        let id = replica.subscribe(pattern, SubscribeOptions::default())?;
        replica.set_event_sink(id, channel_sink(tx.clone()))?;
        self.subs.push(Sub { space, id, tx });
        Ok(rx)
    }

    fn open_space(
        &mut self,
        replica: Replica,
        storage: Box<dyn Storage>,
        options: SpaceOptions,
    ) -> Result<(), NetError> {
        let name = replica.space().to_owned();
        if self.spaces.contains_key(&name) {
            return Err(NetError::SpaceExists(name));
        }
        let topic = behaviour::topic(&name);
        // A space with an allowlist never travels on gossipsub: the hub
        // sends its broadcasts to each allowed peer that shares it.
        if options.allowlist.is_none() {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&topic)
                .map_err(|e| NetError::Transport(e.to_string()))?;
            self.topics.insert(topic.hash(), name.clone());
        }
        let opened = self
            .hub
            .open_space(wall_clock(), replica, options.allowlist);
        if let Err(e) = opened {
            self.topics.remove(&topic.hash());
            let _ = self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
            return Err(e.into());
        }
        let disk = SpaceDisk::new(storage);
        self.spaces.insert(name.clone(), SpaceState { disk, topic });
        // A fresh replica's genesis change goes to storage (and is fsynced
        // with the next flush).
        self.pump();
        info!(space = %name, "space open");
        Ok(())
    }

    /// Moves subscription events from the replica to the application's
    /// channels, as far as they have room.
    pub(super) fn deliver(&mut self, space: &str) {
        let Some(replica) = self.hub.replica_mut(space) else {
            return;
        };
        self.subs.retain(|sub| {
            if sub.space != space {
                return true;
            }
            loop {
                match sub.tx.try_reserve() {
                    Ok(permit) => match replica.poll_event(sub.id) {
                        Ok(Some(d)) => permit.send(d),
                        _ => return true,
                    },
                    Err(mpsc::error::TrySendError::Full(())) => return true,
                    Err(mpsc::error::TrySendError::Closed(())) => {
                        replica.unsubscribe(sub.id);
                        return false;
                    }
                }
            }
        });
    }

    pub(super) fn shutdown(&mut self) -> Result<Vec<Replica>, NetError> {
        let hub = std::mem::replace(
            &mut self.hub,
            concord_sync::SyncHub::new(self.config.sync.clone(), 0),
        );
        let mut out = Vec::new();
        for mut replica in hub.into_replicas() {
            if let Some(space) = self.spaces.get_mut(replica.space()) {
                space.disk.sync_now(&mut replica).map_err(NetError::Flush)?;
            }
            out.push(replica);
        }
        self.spaces.clear();
        info!("driver stopped");
        Ok(out)
    }
}
