//! The hub's unit tests: hubs wired back to back in memory, the frames
//! between them counted by kind and size.
#![allow(clippy::unwrap_used)]

use concord_state::{ActorId, ChannelSpec};
use serde_json::json;

use super::*;
use crate::wire::{FrameKind, MAX_SPACE_KEYS, NodeFrame, Summary};

type Hub = SyncHub<u8>;

fn config() -> SyncConfig {
    SyncConfig {
        jitter_ms: 100,
        ..SyncConfig::default()
    }
}

fn replica(id: u8, name: &str) -> Replica {
    Replica::new(name, ActorId::from(&[id; 16][..]))
}

fn hub_with(id: u8, config: SyncConfig, spaces: &[String]) -> Hub {
    let mut hub = SyncHub::new(config, u64::from(id));
    for name in spaces {
        hub.open_space(Millis(0), replica(id, name), None).unwrap();
    }
    hub
}

fn hub(id: u8, spaces: &[String]) -> Hub {
    hub_with(id, config(), spaces)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("space-{i}")).collect()
}

/// One frame that went over the network.
#[derive(Debug, Clone, Copy)]
struct Sent {
    kind: Option<FrameKind>,
    bytes: usize,
}

impl Sent {
    fn node_level(&self) -> bool {
        self.kind.is_some_and(FrameKind::is_node_level)
    }
}

/// Hubs wired back to back: what one sends reaches the others (a broadcast
/// all of them) unless the caller loses it.
struct Net {
    hubs: Vec<Hub>,
    now: Millis,
    log: Vec<Sent>,
}

type Lose<'a> = &'a mut dyn FnMut(&Sent) -> bool;

impl Net {
    fn new(hubs: Vec<Hub>) -> Net {
        Net {
            hubs,
            now: Millis(0),
            log: Vec::new(),
        }
    }

    fn ids(&self) -> impl Iterator<Item = u8> + use<> {
        0..self.hubs.len() as u8
    }

    fn connect(&mut self) {
        for i in self.ids() {
            for j in self.ids().filter(|j| *j != i) {
                self.hubs[usize::from(i)].handle_input(self.now, HubInput::PeerUp(j));
            }
        }
        self.pump(&mut |_| false);
    }

    /// Delivers every transmit until all hubs are quiet.
    fn pump(&mut self, lose: Lose<'_>) {
        loop {
            let mut moved = false;
            for i in self.ids() {
                while let Some(t) = self.hubs[usize::from(i)].poll_transmit() {
                    moved = true;
                    let sent = Sent {
                        kind: t.bytes.get(1).copied().and_then(FrameKind::from_code),
                        bytes: t.bytes.len(),
                    };
                    self.log.push(sent);
                    if lose(&sent) {
                        continue;
                    }
                    let targets: Vec<u8> = match t.to {
                        Destination::Peer(p) => vec![p],
                        Destination::Broadcast => self.ids().filter(|j| *j != i).collect(),
                    };
                    for j in targets {
                        let input = HubInput::Frame {
                            from: i,
                            bytes: t.bytes.clone(),
                        };
                        self.hubs[usize::from(j)].handle_input(self.now, input);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Runs `ms` of time: every hub is ticked when it asks to be.
    fn run(&mut self, ms: u64, lose: Lose<'_>) {
        let end = self.now.plus(ms);
        loop {
            let next = self.hubs.iter().filter_map(Hub::poll_timeout).min();
            match next {
                Some(at) if at <= end => self.now = self.now.max(at),
                _ => break,
            }
            for hub in &mut self.hubs {
                if hub.poll_timeout().is_some_and(|at| at <= self.now) {
                    hub.handle_input(self.now, HubInput::Tick);
                }
            }
            self.pump(lose);
        }
        self.now = end;
    }

    fn write(&mut self, hub: usize, space: &str, value: u64) {
        let now = self.now;
        let replica = self.hubs[hub].replica_mut(space).unwrap();
        replica.put(now, "observation/x", &value).unwrap();
        let space = space.to_owned();
        self.hubs[hub].handle_input(now, HubInput::LocalCommit { space });
    }

    fn in_sync(&self, space: &str) -> bool {
        let heads = |h: &Hub| h.replica(space).unwrap().heads();
        self.hubs.windows(2).all(|w| heads(&w[0]) == heads(&w[1]))
    }

    fn events(&mut self, hub: usize) -> Vec<HubEvent<u8>> {
        std::iter::from_fn(|| self.hubs[hub].poll_event()).collect()
    }
}

fn no_loss() -> impl FnMut(&Sent) -> bool {
    |_| false
}

/// Two hubs sharing `n` fresh spaces, connected and settled.
fn pair(n: usize) -> Net {
    let spaces = names(n);
    let mut net = Net::new(vec![hub(0, &spaces), hub(1, &spaces)]);
    net.connect();
    net.run(3_000, &mut no_loss());
    net.log.clear();
    net
}

#[test]
fn in_sync_peers_exchange_one_constant_size_summary() {
    let mut per_heartbeat = Vec::new();
    for n in [1, 1_000] {
        let mut net = pair(n);
        assert_eq!(net.hubs[0].shared_with(&1), n);
        net.run(20_000, &mut no_loss());
        assert!(net.log.iter().all(|s| s.kind == Some(FrameKind::Summary)));
        assert!(net.log.iter().all(|s| s.bytes <= 32), "{:?}", net.log);
        // One summary per heartbeat for the pair (1 s plus up to 100 ms
        // jitter), not one per side: the receiver's stands in for its own.
        assert!((18..=22).contains(&net.log.len()), "{}", net.log.len());
        let bytes: usize = net.log.iter().map(|s| s.bytes).sum();
        per_heartbeat.push(bytes as f64 / net.log.len() as f64);
        assert_eq!(net.hubs[1].stats().descents, 0);
        assert!(net.hubs[0].stats().summaries_matched + net.hubs[1].stats().summaries_matched > 0);
    }
    // The count of shared spaces and the two list versions (which moved
    // once per space opened) take a byte more each as varints; nothing else
    // grows.
    assert!(
        per_heartbeat[1] <= per_heartbeat[0] + 3.0,
        "{per_heartbeat:?}"
    );
}

#[test]
fn one_changed_space_among_a_thousand_is_found_with_few_frames() {
    let mut net = pair(1_000);
    for (round, space) in ["space-537", "space-2", "space-999"].iter().enumerate() {
        // The fast path loses the change: only the summaries can find it.
        net.write(0, space, round as u64);
        net.pump(&mut |s| s.kind == Some(FrameKind::Changes));
        assert!(!net.in_sync(space));
        net.log.clear();
        net.run(1_200, &mut no_loss());
        assert!(net.in_sync(space), "{space} not repaired");
        let node: Vec<&Sent> = net.log.iter().filter(|s| s.node_level()).collect();
        let node_bytes: usize = node.iter().map(|s| s.bytes).sum();
        let all_bytes: usize = net.log.iter().map(|s| s.bytes).sum();
        // Summary, root buckets, one level below, leaves: then the
        // engines' digest, delta and digest reply.
        assert!(node.len() <= 5, "{:?}", net.log);
        assert!(net.log.len() <= 9, "{:?}", net.log);
        assert!(node_bytes <= 1_200, "{node_bytes} bytes: {:?}", net.log);
        assert!(all_bytes <= 2_500, "{all_bytes} bytes: {:?}", net.log);
        assert_eq!(net.hubs[0].stats().probes + net.hubs[1].stats().probes, {
            round as u64 + 1
        });
    }
    for space in names(1_000) {
        assert!(net.in_sync(&space));
    }
}

#[test]
fn many_differences_are_all_found() {
    let mut net = pair(300);
    for i in (0..300).step_by(7) {
        net.write(i % 2, &format!("space-{i}"), 1);
    }
    net.pump(&mut |s| s.kind == Some(FrameKind::Changes));
    net.run(1_500, &mut no_loss());
    assert!(names(300).iter().all(|s| net.in_sync(s)));
}

#[test]
fn a_peer_that_opens_a_space_later_gets_it() {
    let mut net = Net::new(vec![hub(0, &names(3)), hub(1, &names(2))]);
    net.connect();
    assert_eq!(net.hubs[0].shared_with(&1), 2);
    net.write(0, "space-2", 42);
    net.run(1_000, &mut no_loss());
    let late = replica(1, "space-2");
    net.hubs[1].open_space(net.now, late, None).unwrap();
    // The new list goes out after the announce delay; a summary follows at
    // once and finds the space.
    net.run(ANNOUNCE_DELAY_MS + 50, &mut no_loss());
    assert_eq!(net.hubs[0].shared_with(&1), 3);
    assert!(net.in_sync("space-2"));
    let value = net.hubs[1].replica("space-2").unwrap().get("observation/x");
    assert_eq!(value.unwrap(), Some(json!(42)));
    // Closing it takes it out of the other side's view.
    assert!(net.hubs[1].close_space(net.now, "space-2").is_some());
    net.run(ANNOUNCE_DELAY_MS + 50, &mut no_loss());
    assert_eq!(net.hubs[0].shared_with(&1), 2);
    net.log.clear();
    let descents = |net: &Net| net.hubs[0].stats().descents + net.hubs[1].stats().descents;
    let before = descents(&net);
    net.run(5_000, &mut no_loss());
    assert_eq!(descents(&net), before, "{:?}", net.log);
}

#[test]
fn a_lost_list_is_sent_again() {
    let spaces = names(10);
    let mut net = Net::new(vec![hub(0, &spaces), hub(1, &spaces)]);
    net.connect();
    // Both lists lost: nothing is shared yet.
    net.hubs[0].handle_input(net.now, HubInput::PeerDown(1));
    net.hubs[1].handle_input(net.now, HubInput::PeerDown(0));
    for (i, j) in [(0, 1), (1, 0)] {
        net.hubs[i].handle_input(net.now, HubInput::PeerUp(j));
    }
    net.pump(&mut |s| s.kind == Some(FrameKind::Spaces));
    assert_eq!(net.hubs[0].shared_with(&1), 0);
    net.run(3_000, &mut no_loss());
    assert_eq!(net.hubs[0].shared_with(&1), 10);
    assert_eq!(net.hubs[1].shared_with(&0), 10);
}

#[test]
fn an_idle_space_holds_no_timer() {
    let mut lone = hub(0, &names(1_000));
    lone.handle_input(Millis(ANNOUNCE_DELAY_MS), HubInput::Tick);
    assert_eq!(lone.poll_timeout(), None, "no peer, nothing to do");
    let mut net = pair(1_000);
    let summary = net.hubs[0].poll_timeout().unwrap();
    assert!(summary <= net.now.plus(1_100));
    // An ephemeral value is the one space with a timer (its expiry).
    let now = net.now;
    let r = net.hubs[0].replica_mut("space-5").unwrap();
    r.declare(now, "observation/beat", ChannelSpec::ephemeral(60_000))
        .unwrap();
    r.put_ephemeral(now, "observation/beat", &1).unwrap();
    let space = "space-5".to_owned();
    net.hubs[0].handle_input(now, HubInput::LocalCommit { space });
    assert_eq!(net.hubs[0].deadlines.len(), 1);
    assert_eq!(net.hubs[1].deadlines.len(), 0);
    net.pump(&mut no_loss());
    assert_eq!(net.hubs[1].deadlines.len(), 1, "the value's expiry");
}

#[test]
fn a_restricted_space_is_listed_and_broadcast_to_allowed_peers_only() {
    let open = names(2);
    let mut hubs: Vec<Hub> = (0..3).map(|i| hub(i, &open)).collect();
    for (i, h) in hubs.iter_mut().enumerate() {
        let allowed = BTreeSet::from([0, 1]);
        let r = replica(i as u8, "secret");
        h.open_space(Millis(0), r, Some(allowed)).unwrap();
    }
    let mut net = Net::new(hubs);
    net.connect();
    assert_eq!(net.hubs[0].shared_with(&1), 3);
    assert_eq!(net.hubs[0].shared_with(&2), 2);
    assert_eq!(net.hubs[0].space_peers("secret"), Some(1));
    assert_eq!(net.hubs[0].space_peers("space-0"), Some(2));
    assert_eq!(net.hubs[0].space_peers("nowhere"), None);
    net.write(0, "secret", 7);
    let t = net.hubs[0].poll_transmit().unwrap();
    assert_eq!(t.to, Destination::Peer(1), "a directed frame to hub 1 only");
    assert_eq!(net.hubs[0].poll_transmit(), None);
    net.hubs[1].handle_input(
        net.now,
        HubInput::Frame {
            from: 0,
            bytes: t.bytes,
        },
    );
    net.pump(&mut no_loss());
    let got = |h: &Hub| h.replica("secret").unwrap().get("observation/x").unwrap();
    assert_eq!(got(&net.hubs[1]), Some(json!(7)));
    assert_eq!(got(&net.hubs[2]), None);
    // A frame of the space from hub 2 is dropped and counted.
    let epoch = net.hubs[0].replica("secret").unwrap().epoch().id.0.0;
    let frame = crate::wire::Frame::digest("secret", epoch, Vec::new(), [0; 8], true).unwrap();
    let bytes = frame.encode().unwrap();
    net.hubs[0].handle_input(net.now, HubInput::Frame { from: 2, bytes });
    assert_eq!(net.hubs[0].stats().not_allowed, 1);
}

/// Feeds `bytes` from peer 1 to a hub that shares spaces with it, and
/// checks that the peer is refused and forgotten and no replica moved.
fn assert_refused(bytes: Vec<u8>) {
    let mut net = pair(20);
    let heads: Vec<_> = names(20)
        .iter()
        .map(|s| net.hubs[0].replica(s).unwrap().heads())
        .collect();
    net.events(0);
    net.hubs[0].handle_input(net.now, HubInput::Frame { from: 1, bytes });
    let events = net.events(0);
    assert!(
        events
            .iter()
            .any(|e| e.space.is_none()
                && matches!(e.event, SyncEvent::ProtocolError { peer: 1, .. })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.space.is_none() && matches!(e.event, SyncEvent::Disconnect(1)))
    );
    assert_eq!(net.hubs[0].peers().count(), 0);
    for (s, before) in names(20).iter().zip(heads) {
        assert_eq!(net.hubs[0].replica(s).unwrap().heads(), before);
    }
}

/// A summary from peer 1 as `pair` leaves it: built on its first list.
fn summary(spaces: u64) -> NodeFrame {
    let mut summary = Summary::default();
    (summary.version, summary.known, summary.spaces) = (1, 1, spaces);
    summary.root = [7; 16];
    NodeFrame::Summary(summary)
}

#[test]
fn malformed_summaries_are_refused() {
    let valid = summary(5).encode().unwrap();
    // Truncated root.
    assert_refused(valid[..valid.len() - 3].to_vec());
    // A reserved flag.
    let mut flagged = valid.clone();
    flagged[3] = 0x80;
    assert_refused(flagged);
    // A node-level frame naming a space.
    let named = [&valid[..2], &[1, b's'], &valid[3..]].concat();
    assert_refused(named);
    // Garbage that is no frame at all.
    assert_refused(vec![0xff, 0x00, 0x13]);
    // Well-formed, but counting more spaces than the peer listed.
    let mut net = pair(20);
    let lie = Summary {
        version: net.hubs[0].peers[&1].listed_version(),
        known: net.hubs[0].version,
        spaces: 21,
        ..Summary::default()
    };
    let bytes = NodeFrame::Summary(lie).encode().unwrap();
    net.hubs[0].handle_input(net.now, HubInput::Frame { from: 1, bytes });
    assert!(net.events(0).iter().any(|e| matches!(
        &e.event,
        SyncEvent::ProtocolError {
            error: ProtocolError::Node(_),
            ..
        }
    )));
}

#[test]
fn a_list_over_the_limit_is_refused() {
    // A list at the limit, its count raised by one (the varint keeps its
    // length) and one more key.
    let keys: Vec<u64> = (0..MAX_SPACE_KEYS as u64).collect();
    let mut over = NodeFrame::Spaces { version: 3, keys }.encode().unwrap();
    assert_eq!(over[4..7], [0x80, 0x80, 0x04]);
    over[4] = 0x81;
    over.extend_from_slice(&(MAX_SPACE_KEYS as u64).to_be_bytes());
    assert_refused(over);
    // Keys out of order.
    let mut swapped = NodeFrame::Spaces {
        version: 3,
        keys: vec![8, 9],
    }
    .encode()
    .unwrap();
    swapped[5..].rotate_left(8);
    assert_refused(swapped);
}

#[test]
fn limits_on_spaces_and_peers() {
    let config = SyncConfig {
        max_spaces: 3,
        max_peers: 2,
        ..config()
    };
    let mut h = hub_with(0, config, &names(3));
    let err = h.open_space(Millis(0), replica(0, "one-more"), None);
    assert_eq!(err, Err(HubError::TooManySpaces(3)));
    let err = h.open_space(Millis(0), replica(0, "space-1"), None);
    assert_eq!(err, Err(HubError::SpaceExists("space-1".into())));
    for peer in 1..=3 {
        h.handle_input(Millis(1), HubInput::PeerUp(peer));
    }
    assert_eq!(h.peers().count(), 2);
    assert_eq!(h.stats().refused_peers, 1);
    let events: Vec<_> = std::iter::from_fn(|| h.poll_event()).collect();
    assert!(matches!(
        events[..],
        [HubEvent {
            space: None,
            event: SyncEvent::Disconnect(3)
        }]
    ));
}

#[test]
fn dropped_frames_and_full_queues_are_counted() {
    let mut h = hub(0, &names(2));
    // A frame of a space not open here.
    let frame = crate::wire::Frame::digest("elsewhere", [0; 32], Vec::new(), [0; 8], true);
    let bytes = frame.unwrap().encode().unwrap();
    h.handle_input(Millis(1), HubInput::Frame { from: 1, bytes });
    assert_eq!(h.stats().unknown_space, 1);
    // A node-level frame from a peer that is not up.
    let bytes = NodeFrame::Leaves { leaves: Vec::new() }.encode().unwrap();
    h.handle_input(Millis(1), HubInput::Frame { from: 1, bytes });
    assert_eq!(h.stats().unknown_peer, 1);
    // Nobody takes the transmits: past the bound they are dropped.
    h.handle_input(Millis(1), HubInput::PeerUp(1));
    for i in 0..MAX_QUEUED_TRANSMITS as u64 {
        let bytes = summary(0).encode().unwrap();
        h.handle_input(Millis(2 + i), HubInput::Frame { from: 1, bytes });
    }
    assert_eq!(h.queued_transmits(), MAX_QUEUED_TRANSMITS);
    assert!(h.stats().dropped_transmits > 0);
    // Events: the oldest go first.
    for _ in 0..=MAX_QUEUED_EVENTS {
        h.push_event(None, SyncEvent::InSync(1));
    }
    assert_eq!(h.events.len(), MAX_QUEUED_EVENTS);
    assert!(h.stats().dropped_events > 0);
}
