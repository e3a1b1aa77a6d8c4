//! Real `concord node` processes facing what they must refuse: a stranger
//! outside a space's allowlist, garbage and oversized frames on their TCP
//! port, and bad input on the command line.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use concord_tests::{Binary, Cluster, NodeProcess, eventually, spaces};
use serde_json::json;

/// The CLI under test, built by cargo before these tests run.
const CONCORD: Binary = Binary(env!("CARGO_BIN_EXE_concord-under-test"));

#[test]
fn a_node_outside_the_allowlist_can_neither_read_nor_write_the_space() {
    let (root, dirs) = Cluster::dirs(3);
    // First run: learn the persisted peer ids (and check SIGTERM exits cleanly).
    let ids: Vec<String> = dirs
        .iter()
        .map(|dir| {
            let mut node = NodeProcess::start(CONCORD, dir, &[]);
            let id = node.peer_id().to_owned();
            assert!(node.terminate().success(), "{}", node.log());
            id
        })
        .collect();
    let allow = format!("secret={},{}", ids[0], ids[1]);
    let cluster = Cluster::start_in(CONCORD, root, &dirs, |i| {
        let mut args = spaces(&["secret", "public"]);
        if i < 2 {
            args.extend(["--allow".to_owned(), allow.clone()]);
        }
        args
    });
    let [a, b, stranger] = &cluster.nodes[..] else {
        unreachable!()
    };
    assert_eq!(stranger.peer_id(), ids[2]);

    a.put("secret", "observation/plan", r#""members only""#);
    stranger.put("secret", "observation/plan", r#""intruder""#);
    stranger.put("secret", "observation/extra", r#""intruder""#);
    // The stranger is connected and replicating the public space both ways...
    stranger.put("public", "observation/hello", r#""from the stranger""#);
    a.put("public", "observation/welcome", r#""from a""#);
    cluster.converge_on("public", "observation/hello", &json!("from the stranger"));
    cluster.converge_on("public", "observation/welcome", &json!("from a"));
    eventually("b holds a's secret", || {
        b.get("secret", "observation/plan") == Some(json!("members only"))
    });
    // ...yet over several sync heartbeats nothing of "secret" crosses.
    let until = Instant::now() + Duration::from_millis(2_500);
    while Instant::now() < until {
        for member in [a, b] {
            assert_eq!(
                member.get("secret", "observation/plan"),
                Some(json!("members only"))
            );
            assert_eq!(member.get("secret", "observation/extra"), None);
        }
        assert_eq!(
            stranger.get("secret", "observation/plan"),
            Some(json!("intruder"))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The stranger holds its own two changes: nothing of a's.
    let clock = stranger.vector_clock("secret");
    assert_eq!(clock.as_object().unwrap().len(), 1, "{clock}");
    assert_eq!(a.vector_clock("secret"), b.vector_clock("secret"));
}

/// Deterministic junk (xorshift), so a failure is reproducible.
fn junk(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[0]
        })
        .collect()
}

/// A multistream-select message: uvarint length, then the line.
fn multistream(line: &str) -> Vec<u8> {
    let len = u8::try_from(line.len()).unwrap();
    assert!(len < 0x80);
    let mut msg = vec![len];
    msg.extend_from_slice(line.as_bytes());
    msg
}

/// Connects, writes `bytes` (the node may hang up halfway), reads what comes back.
fn send_junk(port: u16, bytes: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

#[test]
fn garbage_and_oversized_frames_do_not_crash_a_node() {
    let mut cluster = Cluster::start(CONCORD, 2, |_| spaces(&["team"]));
    let port = cluster.nodes[0].tcp_port();
    let header = multistream("/multistream/1.0.0\n");

    // Random bytes, and a lot of them.
    send_junk(port, &junk(4 * 1024 * 1024, 1));
    // A multistream header, then a length prefix of 2^35 bytes.
    let mut huge = header.clone();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
    huge.extend(junk(64 * 1024, 2));
    send_junk(port, &huge);
    // Negotiate noise properly, then a maximal noise frame of garbage and more.
    let mut noise = header.clone();
    noise.extend(multistream("/noise\n"));
    noise.extend_from_slice(&[0xff, 0xff]);
    noise.extend(junk(1024 * 1024, 3));
    send_junk(port, &noise);
    // Many half-open connections at once, each with a little junk.
    let idle: Vec<TcpStream> = (0..50u64)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = s.write_all(&junk(100, i + 10));
            s
        })
        .collect();

    let node = &mut cluster.nodes[0];
    assert!(node.is_running(), "the node died:\n{}", node.log());
    node.put("team", "observation/after_junk", "1");
    assert_eq!(node.get("team", "observation/after_junk"), Some(json!(1)));
    drop(idle);
    // Replication with the honest peer still works both ways.
    cluster.nodes[1].put("team", "observation/from_peer", "2");
    cluster.converge_on("team", "observation/from_peer", &json!(2));
    cluster.converge_on("team", "observation/after_junk", &json!(1));
    assert!(cluster.nodes[0].is_running());
}

#[test]
fn bad_input_on_the_command_line_gives_a_clear_error() {
    let cluster = Cluster::start(CONCORD, 1, |_| spaces(&["team"]));
    let node = &cluster.nodes[0];
    let cases: [(&str, &[&str], &str); 8] = [
        (
            "put",
            &["team", "observation/x", "{oops"],
            "invalid JSON value",
        ),
        (
            "put",
            &["team", "observation/x", "green"],
            "a string needs JSON quotes",
        ),
        ("put", &["team", "gossip/x", "1"], "unknown family"),
        ("put", &["team", "observation", "1"], "expected family/name"),
        (
            "put",
            &["team", "observation/sp ace", "1"],
            "malformed channel path",
        ),
        (
            "get",
            &["team", "observation/never"],
            "no channel observation/never",
        ),
        (
            "get",
            &["no such space", "observation/x"],
            "invalid space name",
        ),
        (
            "watch",
            &["team", "observation/[x"],
            "invalid subscription pattern",
        ),
    ];
    for (command, args, message) in cases {
        let err = node.cli(command, args).err();
        assert!(err.contains(message), "{command} {args:?}: {err}");
    }
    // Nothing was written by the failed commands, and the node still answers.
    node.put("team", "observation/x", "[1, 2]");
    assert_eq!(node.get("team", "observation/x"), Some(json!([1, 2])));
    let report = node.inspect("team");
    // x, and the lease quorum the node declared as the space's first node
    assert_eq!(report["spaces"][0]["queue"]["channels"], 2);

    let nowhere = cluster.root().join("nowhere");
    let err = CONCORD
        .run(&[
            "get",
            "--data",
            nowhere.to_str().unwrap(),
            "team",
            "observation/x",
        ])
        .err();
    assert!(err.contains("no node is running"), "{err}");

    let err = CONCORD
        .run(&["node", "--data", node.dir().to_str().unwrap()])
        .err();
    assert!(err.contains("already running"), "{err}");
    let err = CONCORD.run(&["node", "--data", "x", "--allow", "team=not-a-peer"]);
    assert!(
        !err.status.success() && err.stderr.contains("bad peer id"),
        "{err:?}"
    );
    assert_eq!(node.get("team", "observation/x"), Some(json!([1, 2])));
}
