//! One record as its hashed line of JSON. The frequent events (sends,
//! deliveries, drops, duplicates, suppressed gossip duplicates, ticks,
//! connection and sync events: nearly every record of a run) are written by
//! hand, byte for byte what `serde_json` writes for them, because putting a
//! million records a run through serde was a large part of the simulator's
//! own time. Every other event goes through `serde_json`. The tests hold the
//! two to the same bytes, so `trace_hash` does not depend on which path
//! wrote a line.

use super::{RecordRef, TraceEvent};
use crate::network::DropReason;

/// Appends the record's line (without the newline) to `out`.
pub(super) fn write(out: &mut Vec<u8>, t: u64, e: &TraceEvent) {
    let start = out.len();
    let mut line = Line(out);
    line.raw("{\"t\":");
    line.num(t);
    line.raw(",\"e\":{\"kind\":");
    match e {
        TraceEvent::Send {
            from,
            to,
            bytes,
            frame,
            hop,
        } => {
            line.name("send");
            line.u32("from", *from);
            line.u32("to", *to);
            line.num_field("bytes", *bytes as u64);
            line.str("frame", frame);
            line.hop(*hop);
        }
        TraceEvent::Deliver {
            from,
            to,
            sent_at,
            bytes,
            frame,
            hop,
        } => {
            line.name("deliver");
            line.u32("from", *from);
            line.u32("to", *to);
            line.num_field("sent_at", *sent_at);
            line.num_field("bytes", *bytes as u64);
            line.str("frame", frame);
            line.hop(*hop);
        }
        TraceEvent::Drop { from, to, reason } => {
            line.name("drop");
            line.u32("from", *from);
            line.u32("to", *to);
            line.str("reason", drop_reason(*reason));
        }
        TraceEvent::Duplicate { from, to } => {
            line.name("duplicate");
            line.u32("from", *from);
            line.u32("to", *to);
        }
        TraceEvent::Suppress { node, from } => {
            line.name("suppress");
            line.u32("node", *node);
            line.u32("from", *from);
        }
        TraceEvent::Tick { node } => {
            line.name("tick");
            line.u32("node", *node);
        }
        TraceEvent::Connection { node, peer, up } => {
            line.name("connection");
            line.u32("node", *node);
            line.u32("peer", *peer);
            line.raw(if *up { ",\"up\":true" } else { ",\"up\":false" });
        }
        TraceEvent::Sync { node, peer, what } => {
            line.name("sync");
            line.u32("node", *node);
            line.u32("peer", *peer);
            line.str("what", what);
        }
        _ => {
            out.truncate(start);
            // Serialising plain data into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &RecordRef { t, e });
            return;
        }
    }
    line.raw("}}");
}

/// A [`DropReason`] as serde names it (kebab-case).
fn drop_reason(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Loss => "loss",
        DropReason::Partition => "partition",
        DropReason::Offline => "offline",
        DropReason::Down => "down",
        DropReason::InboxFull => "inbox-full",
    }
}

/// A line being written.
struct Line<'a>(&'a mut Vec<u8>);

impl Line<'_> {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// A quoted name: the simulator's static names (frame kinds, sync
    /// events, drop reasons) are plain ASCII and need no escaping.
    fn name(&mut self, s: &str) {
        debug_assert!(
            s.bytes().all(|b| b >= b' ' && b != b'"' && b != b'\\'),
            "{s:?} needs escaping"
        );
        self.0.push(b'"');
        self.raw(s);
        self.0.push(b'"');
    }

    fn key(&mut self, key: &str) {
        self.0.extend_from_slice(b",\"");
        self.raw(key);
        self.0.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.name(value);
    }

    fn u32(&mut self, key: &str, value: u32) {
        self.num_field(key, u64::from(value));
    }

    fn num_field(&mut self, key: &str, value: u64) {
        self.key(key);
        self.num(value);
    }

    /// The gossip hop, left out when absent (`skip_serializing_if`).
    fn hop(&mut self, hop: Option<u32>) {
        if let Some(hop) = hop {
            self.u32("hop", hop);
        }
    }

    /// A number in decimal, as `serde_json` writes it (with `itoa`).
    fn num(&mut self, n: u64) {
        self.raw(itoa::Buffer::new().format(n));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The line as serde_json writes it.
    fn serde_line(t: u64, e: &TraceEvent) -> Vec<u8> {
        serde_json::to_vec(&RecordRef { t, e }).expect("plain data")
    }

    fn same(t: u64, e: &TraceEvent) {
        let mut out = Vec::new();
        write(&mut out, t, e);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&serde_line(t, e))
        );
    }

    const FRAMES: [&str; 4] = ["changes", "snapshot-request", "sync", "unknown"];
    const REASONS: [DropReason; 5] = [
        DropReason::Loss,
        DropReason::Partition,
        DropReason::Offline,
        DropReason::Down,
        DropReason::InboxFull,
    ];

    proptest! {
        #[test]
        fn hand_written_lines_are_serde_json_lines(
            t in any::<u64>(),
            a in any::<u32>(),
            b in any::<u32>(),
            sent_at in any::<u64>(),
            bytes in any::<usize>(),
            frame in 0..FRAMES.len(),
            hop in any::<Option<u32>>(),
            reason in 0..REASONS.len(),
            up in any::<bool>(),
        ) {
            let frame = FRAMES[frame];
            for e in [
                TraceEvent::Send { from: a, to: b, bytes, frame, hop },
                TraceEvent::Deliver { from: a, to: b, sent_at, bytes, frame, hop },
                TraceEvent::Drop { from: a, to: b, reason: REASONS[reason] },
                TraceEvent::Duplicate { from: a, to: b },
                TraceEvent::Suppress { node: a, from: b },
                TraceEvent::Tick { node: a },
                TraceEvent::Connection { node: a, peer: b, up },
                TraceEvent::Sync { node: a, peer: b, what: "pending-overflow" },
            ] {
                same(t, &e);
            }
        }
    }

    #[test]
    fn other_events_go_through_serde() {
        same(
            7,
            &TraceEvent::Write {
                node: 1,
                path: "a/\"b\"".to_owned(),
                seq: 3,
                durable: true,
            },
        );
        same(0, &TraceEvent::Tick { node: 0 });
    }
}
