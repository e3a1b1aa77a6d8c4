//! The final convergence check ([`divergent`]): heads, vector clocks, every
//! channel's value but ephemeral ones, and conflicts, compared across the
//! live nodes.
//!
//! It owns what "the same state" means at the end of a run. It must never
//! modify a replica: it only reads what a reader could see.

use concord_state::{ChangeHash, ChannelKind, Replica, VectorClock};

use crate::node::NodeId;

/// What the final convergence check compares: everything a reader can see.
#[derive(Debug, PartialEq)]
struct Visible {
    heads: Vec<ChangeHash>,
    clock: VectorClock,
    values: Vec<(String, String, Option<serde_json::Value>)>,
    conflicts: Vec<concord_state::Conflict>,
}

fn visible(replica: &Replica) -> Visible {
    let values = replica
        .channels()
        .into_iter()
        .map(|(path, spec)| {
            // Ephemeral values are not replicated state: each node sees
            // those that reached it and have not expired.
            let value = (spec.kind != ChannelKind::Ephemeral)
                .then(|| replica.get(&path).ok().flatten())
                .flatten();
            (path.to_string(), spec.to_string(), value)
        })
        .collect();
    Visible {
        heads: replica.heads(),
        clock: replica.vector_clock().clone(),
        values,
        conflicts: replica.conflicts(),
    }
}

/// Live nodes whose visible state differs from the first live node's.
pub fn divergent<'a>(live: impl Iterator<Item = (NodeId, &'a Replica)>) -> Vec<NodeId> {
    let mut reference: Option<Visible> = None;
    let mut out = Vec::new();
    for (node, replica) in live {
        let v = visible(replica);
        match &reference {
            None => reference = Some(v),
            Some(r) if *r != v => out.push(node),
            Some(_) => {}
        }
    }
    out
}
