//! Three real `concord node` processes on loopback, driven through the CLI:
//! writes propagate, `watch` sees remote events, concurrent writes converge,
//! a node killed with SIGKILL catches up after a restart without losing an
//! acknowledged write, `inspect`/`export` describe the space, and ephemeral
//! values (`put --ttl`) show in `get`, `watch` and `inspect`, marked.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use concord_tests::{Binary, Cluster, Guarded, NodeProcess, eventually, spaces};
use serde_json::{Value, json};

/// The CLI under test, built by cargo before these tests run.
const CONCORD: Binary = Binary(env!("CARGO_BIN_EXE_concord-under-test"));

const SPACE: &str = "team";

fn team_cluster(n: usize) -> Cluster {
    Cluster::start(CONCORD, n, |_| spaces(&[SPACE]))
}

/// `concord watch` on `node`, subscribed once this returns; its lines come
/// out of the receiver.
fn watch(node: &NodeProcess, pattern: &str) -> (Guarded, mpsc::Receiver<String>) {
    let mut watch = Guarded::spawn(
        CONCORD
            .command()
            .args(["watch", "--data"])
            .arg(node.dir())
            .args([SPACE, pattern])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // The watcher says on stderr when it is subscribed.
    let mut ready = String::new();
    BufReader::new(watch.child().stderr.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with(&format!("watching {pattern}")), "{ready}");
    let (tx, events) = mpsc::channel();
    let stdout = watch.child().stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (watch, events)
}

#[test]
fn writes_on_one_node_reach_the_others_and_their_watchers() {
    let cluster = team_cluster(3);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let (_watch, events) = watch(c, "observation/*");

    a.put(SPACE, "observation/ci.status", r#""green""#);
    cluster.converge_on(SPACE, "observation/ci.status", &json!("green"));
    b.put(SPACE, "observation/plan", r#"{"steps": ["build", "ship"]}"#);
    cluster.converge_on(
        SPACE,
        "observation/plan",
        &json!({"steps": ["build", "ship"]}),
    );

    let event: Value =
        serde_json::from_str(&events.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(event["type"], "event");
    assert_eq!(event["path"], "observation/ci.status");
    assert_eq!(event["new"], "green");
    assert_eq!(event["origin"], "remote");
    assert_eq!(event["old"], Value::Null);
    assert!(event["seq"].as_u64().unwrap() >= 1);
    assert!(event["actor"].as_str().unwrap().len() == 32);
}

#[test]
fn concurrent_writes_converge() {
    let cluster = team_cluster(3);
    let writers: Vec<Guarded> = cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            Guarded::spawn(
                CONCORD
                    .command()
                    .args(["put", "--data"])
                    .arg(node.dir())
                    .args([SPACE, "observation/leader", &format!(r#""node{i}""#)])
                    .stdout(Stdio::null()),
            )
        })
        .collect();
    for mut w in writers {
        assert!(w.child().wait().unwrap().success());
    }
    // Every node wrote locally, so equal clocks mean all three writes are everywhere.
    eventually("vector clocks equal", || {
        let clocks: Vec<Value> = cluster
            .nodes
            .iter()
            .map(|n| n.vector_clock(SPACE))
            .collect();
        clocks.windows(2).all(|w| w[0] == w[1])
    });
    let values: Vec<Value> = cluster
        .nodes
        .iter()
        .map(|n| n.get(SPACE, "observation/leader").unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
    assert!(["node0", "node1", "node2"].contains(&values[0].as_str().unwrap()));
}

#[test]
fn a_killed_node_catches_up_and_keeps_every_acknowledged_write() {
    let mut cluster = team_cluster(3);
    // "solo" lives only on node 1: after the crash its values can only come
    // back from node 1's own disk.
    let victim = &cluster.nodes[1];
    for i in 0..20 {
        victim.put(SPACE, &format!("observation/k{i}"), &i.to_string());
        victim.put("solo", &format!("observation/k{i}"), &i.to_string());
    }
    cluster.nodes[1].kill9();
    cluster.nodes[0].put(
        SPACE,
        "observation/while_down",
        r#""written while 1 was dead""#,
    );
    cluster.nodes[2].put(SPACE, "observation/k0", r#""overwritten while 1 was dead""#);
    cluster.nodes[1].restart();

    let victim = &cluster.nodes[1];
    for i in 0..20 {
        assert_eq!(
            victim.get("solo", &format!("observation/k{i}")),
            Some(json!(i)),
            "acknowledged write k{i} lost"
        );
    }
    cluster.converge_on(
        SPACE,
        "observation/while_down",
        &json!("written while 1 was dead"),
    );
    cluster.converge_on(
        SPACE,
        "observation/k0",
        &json!("overwritten while 1 was dead"),
    );
    for i in 1..20 {
        cluster.converge_on(SPACE, &format!("observation/k{i}"), &json!(i));
    }
    // The restart after SIGKILL took a new incarnation: the old actor's
    // changes and the new (empty) one are distinct clock entries.
    let report = victim.inspect("solo");
    let clock = report["spaces"][0]["vector_clock"]
        .as_object()
        .unwrap()
        .clone();
    assert!(!clock.contains_key(report["actor"].as_str().unwrap()));
    assert_eq!(clock.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 20);
}

#[test]
fn inspect_and_export_describe_the_space() {
    let cluster = team_cluster(2);
    let [a, b] = &cluster.nodes[..] else {
        unreachable!()
    };
    a.put(SPACE, "observation/ci.status", r#""green""#);
    a.put(SPACE, "intent/deploy", r#"{"by": "a"}"#);
    cluster.converge_on(SPACE, "intent/deploy", &json!({"by": "a"}));

    let report = b.inspect(SPACE);
    assert_eq!(report["peer_id"], b.peer_id());
    assert_eq!(report["peers"][0]["peer_id"], a.peer_id());
    let space = &report["spaces"][0];
    assert_eq!(space["name"], SPACE);
    // a's two writes, and the lease quorum a declared as the space's first
    // node (two changes: the channel's policy and the value)
    assert_eq!(space["queue"]["channels"], 3);
    assert_eq!(space["queue"]["pending"], 0);
    let channel = |path: &str| {
        space["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} not in {space}"))
    };
    assert_eq!(
        channel("coordination/lease.quorum")["value"]["members"][0]["peer"],
        json!(a.peer_id())
    );
    assert_eq!(
        channel("observation/ci.status"),
        json!({"path": "observation/ci.status", "kind": "last_value",
               "policy": "last_write_wins", "version": 1, "value": "green"})
    );
    // the first epoch: nothing cut yet, every change since
    assert_eq!(space["epoch"]["cut_changes"], 0);
    assert_eq!(space["epoch"]["changes"], 4);
    assert_eq!(space["epoch"]["retained"], json!([]));
    let human = b.cli("inspect", &[]).ok();
    for heading in [
        "peers (1)",
        "space team",
        "vector clock",
        "channels (3)",
        "version",
        "queue",
        "pending",
        "epoch",
        "ops_held",
    ] {
        assert!(human.contains(heading), "{heading:?} missing in:\n{human}");
    }
    assert!(human.contains(a.peer_id()));

    let exported: Value =
        serde_json::from_str(&b.cli("export", &[SPACE, "--format", "json", "--json"]).ok())
            .unwrap();
    assert_eq!(
        exported,
        json!({"coordination/lease.quorum": channel("coordination/lease.quorum")["value"],
               "intent/deploy": {"by": "a"}, "observation/ci.status": "green"})
    );

    let file = cluster.root().join("team.automerge");
    let file_arg = file.to_str().unwrap();
    b.cli(
        "export",
        &[SPACE, "--format", "automerge", "--out", file_arg],
    )
    .ok();
    let doc = automerge::Automerge::load(&std::fs::read(&file).unwrap()).unwrap();
    let changes = space["queue"]["changes"].as_u64().unwrap();
    // the writes, and the space's genesis change (no write, in no clock)
    assert_eq!(doc.get_changes(&[]).len() as u64, changes + 1);
}

/// The JavaScript check needs `npm ci` in `tests/js`; with
/// `CONCORD_JS_CHECK=1` (set by CI after installing) a missing install fails.
#[test]
fn exported_automerge_document_loads_in_javascript() {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    let required = std::env::var_os("CONCORD_JS_CHECK").is_some_and(|v| v == "1");
    if !js.join("node_modules/@automerge/automerge").exists() {
        assert!(
            !required,
            "CONCORD_JS_CHECK=1 but tests/js has no node_modules"
        );
        eprintln!(
            "skipped: run `npm ci` in tests/js to check the export with @automerge/automerge"
        );
        return;
    }
    let cluster = team_cluster(1);
    let node = &cluster.nodes[0];
    node.put(SPACE, "observation/ci.status", r#""green""#);
    let file = cluster.root().join("team.automerge");
    node.cli(
        "export",
        &[
            SPACE,
            "--format",
            "automerge",
            "--out",
            file.to_str().unwrap(),
        ],
    )
    .ok();
    let out = Command::new("node")
        .arg(js.join("load.mjs"))
        .arg(&file)
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The JavaScript package reads every change the Rust one does: the
    // epoch's genesis and the node's writes (the lease quorum it declared
    // as the space's first node, and the put).
    let bytes = std::fs::read(&file).unwrap();
    let rust = automerge::Automerge::load(&bytes).unwrap();
    let writes = node.inspect(SPACE)["spaces"][0]["queue"]["changes"]
        .as_u64()
        .unwrap();
    let all = rust.get_changes(&[]).len() as u64;
    assert!(
        all > writes,
        "{all} changes in the document, {writes} writes"
    );
    assert_eq!(seen["changes"], json!(all));
    // How a value is laid out in the document is concord-state's business;
    // that the JavaScript side sees it at all is this test's.
    let observations = seen["doc"]["observation"].to_string();
    assert!(observations.contains("green"), "{observations}");
}

#[test]
fn ephemeral_values_show_in_get_watch_and_inspect() {
    const BEAT: &str = "observation/a.heartbeat";
    let cluster = team_cluster(2);
    let [a, b] = &cluster.nodes[..] else {
        unreachable!()
    };
    let (_watch, events) = watch(b, "observation/*");
    let a_actor = a.inspect(SPACE)["actor"].as_str().unwrap().to_owned();
    let said = a
        .cli("put", &["--ttl", "30", SPACE, BEAT, r#"{"beat": 0}"#])
        .ok();
    assert!(said.contains("ephemeral"), "{said}");
    // A heartbeat is published again and again; one reaches b.
    let mut beat = 0;
    eventually("b gets a's heartbeat", || {
        beat += 1;
        let value = format!(r#"{{"beat": {beat}}}"#);
        let put = a
            .cli("put", &["--json", "--ttl", "30", SPACE, BEAT, &value])
            .ok();
        let put: Value = serde_json::from_str(&put).unwrap();
        assert_eq!(
            (put["ephemeral"].clone(), put["ttl_ms"].clone()),
            (json!(true), json!(30_000))
        );
        b.get(SPACE, BEAT).is_some_and(|v| {
            v.get(&a_actor)
                .is_some_and(|b| b["beat"].as_u64() > Some(0))
        })
    });
    let human = b.cli("get", &[SPACE, BEAT]).ok();
    assert!(
        human.contains(&a_actor) && human.contains("beat"),
        "{human}"
    );

    // The watcher saw it, marked, with no change behind it.
    let event: Value = loop {
        let line = events.recv_timeout(Duration::from_secs(10)).unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["path"] == BEAT && event["new"].is_object() {
            break event;
        }
    };
    assert_eq!(event["ephemeral"], true);
    assert_eq!(event["origin"], "remote");
    assert_eq!(event["actor"], a_actor.as_str());
    assert_eq!(event["seq"], 0);
    assert_eq!(event["key"], a_actor.as_str());
    // Document events stay as they were: no ephemeral field.
    a.put(SPACE, "observation/ci.status", r#""green""#);
    let document: Value = loop {
        let line = events.recv_timeout(Duration::from_secs(20)).unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["path"] == "observation/ci.status" {
            break event;
        }
    };
    assert!(document.get("ephemeral").is_none(), "{document}");

    // inspect lists the channel as ephemeral with its live values; the
    // heartbeats added no change: one declaration and one put by a, after
    // the two of the lease quorum a declared as the space's first node.
    eventually("b lists the ephemeral channel", || {
        let report = b.inspect(SPACE);
        let space = &report["spaces"][0];
        let row = space["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == BEAT)
            .cloned();
        row.is_some_and(|row| {
            row["kind"] == "ephemeral" && row["live"] == 1 && row["ttl_ms"] == 30_000
        }) && space["queue"]["ephemeral_values"] == 1
    });
    let clock = a.vector_clock(SPACE);
    assert_eq!(clock[&a_actor], 4, "{clock}");
    let human = a.cli("inspect", &[SPACE]).ok();
    assert!(
        human.contains("ephemeral") && human.contains("1 live"),
        "{human}"
    );
    assert!(human.contains("ttl 30000 ms"), "{human}");
}
