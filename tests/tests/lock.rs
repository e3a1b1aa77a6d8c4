//! `concord lock` against real `concord node` processes: concurrent lock
//! commands on one resource run their commands strictly one after another
//! with increasing fencing tokens — through one node, through three nodes
//! of one space started with no lease flags at all (the space's quorum is
//! the node the others joined), and through three nodes forming a lease
//! quorum with `--lease-peer` (also with one lease peer down) — the holder is mirrored in `coordination/lock_holders` while
//! it runs, and the command's exit code is passed on.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::thread;

use concord_tests::{Binary, Cluster, NodeProcess, free_port, spaces};
use serde_json::Value;

/// The CLI under test, built by cargo before these tests run.
const CONCORD: Binary = Binary(env!("CARGO_BIN_EXE_concord-under-test"));

const SPACE: &str = "team";
const RESOURCE: &str = "github.main";

/// `concord lock --data DIR team github.main -- sh -c SCRIPT`; returns its
/// exit code and stderr.
fn lock(node: &NodeProcess, script: &str) -> (Option<i32>, String) {
    let out = CONCORD
        .command()
        .arg("lock")
        .arg("--data")
        .arg(node.dir())
        .args([SPACE, RESOURCE, "--ttl", "2", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One line per run: start and end (ns since the epoch) and the token.
fn runs(log: &Path) -> Vec<(u128, u128, u64)> {
    let mut runs: Vec<_> = std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    runs.sort_unstable();
    runs
}

/// Runs one `concord lock` per node of `through` at once, each recording
/// its run in `log`, and checks that the runs did not overlap and that the
/// tokens increase in run order.
fn serialized_locks(through: &[&NodeProcess], log: &Path) {
    // Longer than half the ttl (2 s), so each holder renews at least once.
    let script = format!(
        "s=$(date +%s%N); sleep 1.3; e=$(date +%s%N); echo \"$s $e $CONCORD_FENCING_TOKEN\" >> {}",
        log.display()
    );
    thread::scope(|scope| {
        let handles: Vec<_> = through
            .iter()
            .map(|node| scope.spawn(|| lock(node, &script)))
            .collect();
        for handle in handles {
            let (code, stderr) = handle.join().unwrap();
            assert_eq!(code, Some(0), "{stderr}");
        }
    });
    let runs = runs(log);
    assert_eq!(runs.len(), through.len(), "{runs:?}");
    for pair in runs.windows(2) {
        let (_, end, token) = pair[0];
        let (start, _, next_token) = pair[1];
        assert!(end <= start, "runs overlap: {runs:?}");
        assert!(token < next_token, "tokens not increasing: {runs:?}");
    }
}

#[test]
fn concurrent_locks_run_one_after_another_with_increasing_tokens() {
    let cluster = Cluster::start(CONCORD, 1, |_| spaces(&[SPACE]));
    let node = &cluster.nodes[0];
    serialized_locks(&[node, node, node], &cluster.root().join("runs.log"));
    // Every holder cleared its mirror entry on release.
    assert_eq!(
        node.get(SPACE, "coordination/lock_holders"),
        Some(Value::Array(Vec::new()))
    );
}

#[test]
fn locks_on_three_nodes_of_a_space_without_lease_flags_exclude_each_other() {
    let cluster = Cluster::start(CONCORD, 3, |_| spaces(&[SPACE]));
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    // The first node (no bootstrap peer) declared itself the space's
    // quorum; the others learn it by syncing.
    let declared = a.get(SPACE, "coordination/lease.quorum").unwrap();
    cluster.converge_on(SPACE, "coordination/lease.quorum", &declared);
    serialized_locks(&[a, b, c], &cluster.root().join("runs.log"));
}

#[test]
fn locks_through_three_lease_peers_are_serialized_even_with_one_down() {
    let (root, dirs) = Cluster::dirs(3);
    let members: Vec<String> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let id = CONCORD.run(&["id", "--data", dir.to_str().unwrap()]).ok();
            let peer_id = id.trim().strip_prefix("peer_id=").unwrap().to_owned();
            format!("{}=/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", i + 1, free_port())
        })
        .collect();
    let mut cluster = Cluster::start_in(CONCORD, root, &dirs, |_| {
        let mut args = spaces(&[SPACE]);
        for member in &members {
            args.extend(["--lease-peer".to_owned(), member.clone()]);
        }
        args.extend(["--lease-max-ttl".to_owned(), "5".to_owned()]);
        args
    });
    let log = cluster.root().join("runs.log");
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    serialized_locks(&[a, b, c], &log);
    // A majority (two of three) still grants, and tokens keep increasing.
    cluster.nodes[2].terminate();
    std::fs::remove_file(&log).unwrap();
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    serialized_locks(&[a, b, a], &log);
}

#[test]
fn bad_lease_peer_arguments_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (arg, want) in [
        ("/ip4/127.0.0.1/tcp/1", "expected NODE=MULTIADDR/p2p/PEERID"),
        (
            "0=/ip4/127.0.0.1/tcp/1/p2p/x",
            "lease node id must be 1..=65535",
        ),
        ("1=/ip4/127.0.0.1/tcp/1", "must end in /p2p/PEERID"),
        ("1=/ip4/127.0.0.1/tcp/1/p2p/nonsense", "bad peer id"),
    ] {
        let out = CONCORD.run(&["node", "--data", data, "--lease-peer", arg]);
        assert!(out.err().contains(want), "{arg}: want {want:?}");
    }
}

#[test]
fn the_holder_is_mirrored_while_it_runs_and_the_exit_code_is_passed_on() {
    let cluster = Cluster::start(CONCORD, 1, |_| spaces(&[SPACE]));
    let node = &cluster.nodes[0];
    let seen = cluster.root().join("holders.json");
    let script = format!(
        "{} get --json --data {} {SPACE} coordination/lock_holders > {}; \
         test \"$CONCORD_RESOURCE\" = {RESOURCE} || exit 99; exit 7",
        CONCORD.0,
        node.dir().display(),
        seen.display()
    );
    let (code, stderr) = lock(node, &script);
    assert_eq!(code, Some(7), "{stderr}");
    let holders: Value = serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    let holders = holders.as_array().unwrap();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0]["resource"], RESOURCE);
    assert_eq!(holders[0]["holder"], node.peer_id());
    assert!(holders[0]["token"].as_u64().unwrap() > 0);
}

#[test]
fn lock_without_a_command_or_a_node_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = CONCORD.run(&["lock", "--data", data, SPACE, RESOURCE, "--", "true"]);
    assert!(out.err().contains("no node is running"));
}
