//! Byte and message counters of what the driver sends and receives, per
//! protocol and direction, for benchmarks and operators' metrics
//! ([`NetHandle::traffic`](crate::NetHandle::traffic)).
//!
//! The driver counts the frames it hands to libp2p and gets from it: for
//! directed frames (request-response) the frame bytes, for the fast path
//! (gossipsub) the published or received message data, once per publish
//! whatever the fan-out. Framing below (length prefixes, yamux, noise,
//! TCP/QUIC) and gossipsub's own control messages are not counted. This
//! module owns the counters; it never decides anything.

use std::sync::atomic::{AtomicU64, Ordering};

/// What went one way on one protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Messages sent.
    pub sent_messages: u64,
    /// Bytes received.
    pub received_bytes: u64,
    /// Messages received.
    pub received_messages: u64,
}

/// A snapshot of the driver's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Directed frames (request-response `/concord/sync/1`): digests,
    /// answers, node-level summaries and lists, frames of restricted
    /// spaces.
    pub sync: Flow,
    /// The fast path (gossipsub): fresh changes and ephemeral values of
    /// open spaces.
    pub gossip: Flow,
}

impl Traffic {
    /// Bytes sent on every protocol.
    pub fn sent_bytes(&self) -> u64 {
        self.sync.sent_bytes + self.gossip.sent_bytes
    }

    /// Bytes received on every protocol.
    pub fn received_bytes(&self) -> u64 {
        self.sync.received_bytes + self.gossip.received_bytes
    }
}

/// The live counters of one protocol, shared by the driver and its handles.
#[derive(Debug, Default)]
pub(crate) struct FlowCounters {
    sent_bytes: AtomicU64,
    sent_messages: AtomicU64,
    received_bytes: AtomicU64,
    received_messages: AtomicU64,
}

impl FlowCounters {
    pub(crate) fn sent(&self, bytes: usize) {
        self.sent_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.sent_messages.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.received_messages.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> Flow {
        Flow {
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            sent_messages: self.sent_messages.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
            received_messages: self.received_messages.load(Ordering::Relaxed),
        }
    }
}

/// Every protocol's live counters.
#[derive(Debug, Default)]
pub(crate) struct TrafficCounters {
    pub(crate) sync: FlowCounters,
    pub(crate) gossip: FlowCounters,
}

impl TrafficCounters {
    pub(crate) fn read(&self) -> Traffic {
        Traffic {
            sync: self.sync.read(),
            gossip: self.gossip.read(),
        }
    }
}
