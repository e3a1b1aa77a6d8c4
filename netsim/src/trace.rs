//! The event trace: every send, delivery, drop, write, crash, ... as one
//! JSON line, hashed into the run's `trace_hash` (SHA-256) and optionally
//! kept for the report.
//!
//! It owns the trace format. It must never influence the simulation: it
//! only records what the simulator tells it, in the order it is told.
//!
//! **One exception to byte-for-byte.** The size of a point-to-point
//! `changes` frame (an anti-entropy delta) is left out of the hashed line
//! (it stays in the kept record and in the byte counters). Deltas carry
//! automerge *bundles* (`Replica::changes_since`), and automerge 0.12 writes
//! the delete ops of a bundle in `std::collections::HashMap` order
//! (`BundleBuilder::flush_deletes`), so their encoded size varies between
//! processes while the changes they carry, and everything that follows, do
//! not. Gossip frames carry plain changes and keep their sizes in the hash.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::network::DropReason;
use crate::scenario::{Fault, LinkParams};

mod line;

/// Most records kept for a report; the hash always covers all of them.
pub const MAX_KEPT_RECORDS: usize = 2_000_000;

/// Lines are hashed in batches of about this many bytes (hashing a line at
/// a time spends as long on the call as on the bytes).
const HASH_BATCH: usize = 16 * 1024;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TraceEvent {
    /// A message was put on a link (`hop` is set for gossip).
    Send {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// Size in bytes.
        bytes: usize,
        /// Frame kind (`changes`, `digest`, `sync`, `bye`).
        frame: &'static str,
        /// Gossip relay hop, if gossip.
        #[serde(skip_serializing_if = "Option::is_none")]
        hop: Option<u32>,
    },
    /// A message reached a node (processed now, or queued if paused).
    Deliver {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// When it was sent.
        sent_at: u64,
        /// Size in bytes.
        bytes: usize,
        /// Frame kind.
        frame: &'static str,
        /// Gossip relay hop, if gossip.
        #[serde(skip_serializing_if = "Option::is_none")]
        hop: Option<u32>,
    },
    /// A message was lost.
    Drop {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// Why.
        reason: DropReason,
    },
    /// The network duplicated a message.
    Duplicate {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
    },
    /// A gossip message already seen was not processed again.
    Suppress {
        /// The node.
        node: u32,
        /// The neighbour that relayed it.
        from: u32,
    },
    /// An engine timer fired.
    Tick {
        /// The node.
        node: u32,
    },
    /// A connection event reached an engine.
    Connection {
        /// The node.
        node: u32,
        /// The peer.
        peer: u32,
        /// Up or down.
        up: bool,
    },
    /// A local write.
    Write {
        /// The node.
        node: u32,
        /// The channel.
        path: String,
        /// The change's sequence number (0 if the write changed nothing).
        seq: u64,
        /// Whether the write was durable on return.
        durable: bool,
    },
    /// A local write was refused.
    WriteError {
        /// The node.
        node: u32,
        /// The channel.
        path: String,
        /// The error.
        error: String,
    },
    /// A flush raised the durable sequence.
    Flush {
        /// The node.
        node: u32,
        /// The new durable sequence.
        durable_seq: u64,
    },
    /// A node stopped.
    Crash {
        /// The node.
        node: u32,
        /// Clean shutdown or power loss.
        clean: bool,
        /// Unsynced bytes lost.
        lost_bytes: u64,
    },
    /// A node started (again).
    Start {
        /// The node.
        node: u32,
        /// Its incarnation.
        incarnation: u32,
    },
    /// A fault was injected (partition, heal, pause, ...).
    Fault {
        /// Which.
        fault: Fault,
    },
    /// New link parameters.
    Links {
        /// The parameters.
        params: LinkParams,
    },
    /// A sync engine reported something notable.
    Sync {
        /// The node.
        node: u32,
        /// The peer concerned.
        peer: u32,
        /// `in-sync`, `behind`, `ahead`, `applied`, `error`, `disconnect`.
        what: &'static str,
    },
    /// The application of a lease proposer did or learnt something:
    /// `acquired`, `renewed`, `renew-failed`, `denied`, `expired`,
    /// `released` (it let go of the lease), then `release-confirmed` (every
    /// acceptor confirmed) or `release-unconfirmed` (the release deadline
    /// passed first).
    Lease {
        /// The node.
        node: u32,
        /// The resource.
        resource: String,
        /// What happened.
        what: &'static str,
        /// The fencing token, if known.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<u64>,
        /// End of validity in virtual time, for grants and renewals.
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<u64>,
    },
    /// A write under a lease reached the resource's fenced external system.
    FencedWrite {
        /// The writing node.
        node: u32,
        /// The resource.
        resource: String,
        /// The token it carried.
        token: u64,
        /// Whether the holder's lease was valid when it landed.
        valid: bool,
        /// Whether a newer grant had superseded the holder.
        stale: bool,
        /// Whether the system accepted it.
        accepted: bool,
    },
    /// An acceptor's state of this version became durable.
    LeaseDurable {
        /// The node.
        node: u32,
        /// The version.
        version: u64,
    },
    /// A checker found a violation.
    Violation {
        /// The node concerned.
        node: u32,
        /// Description.
        what: String,
    },
}

impl TraceEvent {
    /// The event as hashed: sizes of point-to-point `changes` frames zeroed
    /// (see the module documentation).
    fn hashed(&self) -> std::borrow::Cow<'_, TraceEvent> {
        match self {
            TraceEvent::Send {
                frame: "changes",
                hop: None,
                ..
            }
            | TraceEvent::Deliver {
                frame: "changes",
                hop: None,
                ..
            } => {
                let mut e = self.clone();
                if let TraceEvent::Send { bytes, .. } | TraceEvent::Deliver { bytes, .. } = &mut e {
                    *bytes = 0;
                }
                std::borrow::Cow::Owned(e)
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }
}

/// One record: virtual time and event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceRecord {
    /// Virtual time in ms.
    pub t: u64,
    /// What happened.
    pub e: TraceEvent,
}

/// A record by reference, serialised exactly like [`TraceRecord`].
#[derive(Serialize)]
struct RecordRef<'a> {
    t: u64,
    e: &'a TraceEvent,
}

/// The running trace.
pub struct Trace {
    hasher: Sha256,
    keep: bool,
    records: Vec<TraceRecord>,
    lines: u64,
    /// Lines not hashed yet.
    unhashed: Vec<u8>,
}

impl Trace {
    /// A trace that keeps its records when `keep` is set.
    pub fn new(keep: bool) -> Trace {
        Trace {
            hasher: Sha256::new(),
            keep,
            records: Vec::new(),
            lines: 0,
            unhashed: Vec::with_capacity(HASH_BATCH + 1024),
        }
    }

    /// Appends one record.
    pub fn record(&mut self, t: u64, e: TraceEvent) {
        line::write(&mut self.unhashed, t, &e.hashed());
        self.unhashed.push(b'\n');
        if self.unhashed.len() >= HASH_BATCH {
            self.hasher.update(&self.unhashed);
            self.unhashed.clear();
        }
        self.lines += 1;
        if self.keep && self.records.len() < MAX_KEPT_RECORDS {
            self.records.push(TraceRecord { t, e });
        }
    }

    /// Records so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Ends the trace: the hex SHA-256 of all lines, and the kept records.
    pub fn finish(mut self) -> (String, Vec<TraceRecord>) {
        self.hasher.update(&self.unhashed);
        (hex::encode(self.hasher.finalize()), self.records)
    }
}
