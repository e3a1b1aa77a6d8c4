//! Zero-config discovery: two `concord node --mdns` processes on two hosts
//! of one link (two network namespaces joined by a veth pair; mDNS ignores
//! loopback) find each other with no bootstrap address and sync a space.
//!
//! Making namespaces needs root and `ip` (iproute2), which CI has. Elsewhere
//! the test says why it cannot run and passes, unless `CI` is set, where
//! that is a failure.
#![allow(clippy::unwrap_used)]

use concord_tests::{Binary, Cluster, NetnsPair, NodeProcess, eventually, spaces};
use serde_json::json;

const CONCORD: Binary = Binary(env!("CARGO_BIN_EXE_concord-under-test"));

#[test]
fn nodes_on_one_link_find_each_other_with_mdns() {
    let netns = match NetnsPair::create() {
        Ok(pair) => pair,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: cannot make network namespaces here ({why})");
            return;
        }
        Err(why) => panic!("CI must be able to make network namespaces: {why}"),
    };
    let (_root, dirs) = Cluster::dirs(2);
    let mut args = spaces(&["edge"]);
    args.extend(["--mdns", "--listen", "/ip4/0.0.0.0/tcp/0"].map(String::from));
    let a = NodeProcess::start_in(CONCORD, &dirs[0], &args, Some(&netns.names[0]));
    let b = NodeProcess::start_in(CONCORD, &dirs[1], &args, Some(&netns.names[1]));
    eventually("the nodes discover each other", || {
        a.inspect("edge")["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["peer_id"] == b.peer_id()))
    });
    // They met over the link, not loopback (which is not shared).
    let peers = a.inspect("edge")["peers"].to_string();
    assert!(peers.contains("198.18.77.2"), "{peers}");
    a.put("edge", "observation/battery", "81");
    eventually("the write reaches the other host", || {
        b.get("edge", "observation/battery") == Some(json!(81))
    });
    drop((a, b));
}
