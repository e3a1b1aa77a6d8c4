//! `concord top` in a real terminal: two `concord node` processes of one
//! space, `top` attached to the first inside a detached `tmux` session of a
//! fixed size; a lock taken and a value written on the second node show up
//! on the screen (with the peer's round trip), the node going away is said
//! on screen, its return is followed, and `q` ends `top` with exit status 0. Beside it, the peer
//! figures `top` shows, through `inspect --json`.
//!
//! Without tmux the terminal test says so and passes, unless `CI` is set
//! (CI installs tmux: then its absence is a failure).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concord_tests::{Binary, Cluster, DEADLINE, Guarded, eventually, spaces};

/// The CLI under test, built by cargo before these tests run.
const CONCORD: Binary = Binary(env!("CARGO_BIN_EXE_concord-under-test"));

const SPACE: &str = "team";

/// A tmux server of its own (`tmux -L NAME`), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane's text as the terminal shows it.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Waits until the screen contains every one of `texts`.
    fn wait_for(&self, texts: &[&str]) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{texts:?} not on screen within {DEADLINE:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

fn tmux_present() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `concord top` for `data` in a 160x48 detached tmux session; its exit
/// status goes to `status`, and the terminal's settings after it (`stty
/// -a`) to `status` with `.stty` appended.
fn start_top(data: &Path, status: &Path) -> Tmux {
    let tmux = Tmux {
        socket: format!("concord-top-test-{}", std::process::id()),
    };
    let script = r#""$0" top --data "$1" "$2"; code=$?; stty -a > "$3.stty"; echo "$code" > "$3""#;
    let command = [
        "sh",
        "-c",
        &format!("'{script}'"),
        CONCORD.0,
        data.to_str().unwrap(),
        SPACE,
        status.to_str().unwrap(),
    ]
    .join(" ");
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "160",
        "-y",
        "48",
        &command,
    ]);
    tmux
}

#[test]
fn top_shows_a_remote_write_and_quits_on_q() {
    if !tmux_present() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing in CI (.ci/run installs it)"
        );
        eprintln!(
            "SKIPPED: tmux is not installed; install it to run the real-terminal test of concord top"
        );
        return;
    }
    let mut cluster = Cluster::start(CONCORD, 2, |_| spaces(&[SPACE]));
    let status: PathBuf = cluster.root().join("top.status");
    let tmux = start_top(cluster.nodes[0].dir(), &status);
    tmux.wait_for(&["concord top", "space team", "  live", "peers (1)", " ms "]);

    // A lock held through the second node and a value written there.
    let mut holder = Guarded::spawn(
        CONCORD
            .command()
            .args(["lock", "--data"])
            .arg(cluster.nodes[1].dir())
            .args([SPACE, "github.main", "--", "sleep", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    cluster.nodes[1].put(SPACE, "observation/ci.status", "\"green\"");
    let shown = tmux.wait_for(&[
        "locks held (1)",
        "github.main",
        "observation/ci.status",
        "observation/ci.status = \"green\"",
        "coordination/lock_holders + {",
    ]);
    let line = |text: &str| {
        shown
            .lines()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with {text:?}:\n{shown}"))
    };
    let row = line("│observation/ci.status");
    assert!(
        row.contains("last_value") && row.contains("\"green\""),
        "{row}"
    );
    assert!(row.contains('#'), "no last writer: {row}");
    let event = line("observation/ci.status = \"green\"");
    assert!(event.contains("remote"), "{event}");
    let peer = line(cluster.nodes[1].peer_id());
    assert!(peer.contains(" ms ") && peer.contains(" B "), "{peer}");
    eprintln!("--- concord top, 160x48 ---\n{shown}");
    let _ = holder.child().kill();

    // The node going away is said on screen; top keeps running.
    cluster.nodes[0].terminate();
    tmux.wait_for(&["NODE GONE", "observation/ci.status"]);
    assert!(!status.exists(), "top exited when the node went away");

    // The node back: once the screen is live again (snapshots and the
    // event stream), it follows new events.
    cluster.nodes[0].restart();
    tmux.wait_for(&["  live"]);
    cluster.nodes[0].put(SPACE, "observation/ci.status", "\"blue\"");
    let back = tmux.wait_for(&["local ", "observation/ci.status = \"blue\""]);
    assert!(!back.contains("NODE GONE"), "{back}");
    let row = back.lines().find(|l| l.contains("│observation/ci.status"));
    assert!(row.is_some_and(|r| r.contains("(this node)")), "{back}");

    tmux.run(&["send-keys", "-t", "top", "q"]);
    eventually("top exits after q", || {
        std::fs::read_to_string(&status).is_ok_and(|s| !s.trim().is_empty())
    });
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "0");
    // The terminal is handed back cooked: line editing and echo are on.
    let stty = std::fs::read_to_string(status.with_extension("status.stty")).unwrap();
    let flags: Vec<&str> = stty.split_whitespace().collect();
    assert!(
        flags.contains(&"icanon") && flags.contains(&"echo"),
        "{stty}"
    );
}

/// What `top` shows of peers, without a terminal: `inspect --json` gives
/// each peer's round trip and the bytes exchanged with it.
#[test]
fn inspect_reports_each_peers_round_trip_and_bytes() {
    let cluster = Cluster::start(CONCORD, 2, |_| spaces(&[SPACE]));
    let peer = cluster.nodes[1].peer_id().to_owned();
    eventually("node 0 measured its peer's round trip", || {
        let report = cluster.nodes[0].inspect(SPACE);
        let peers = report["peers"].as_array().cloned().unwrap_or_default();
        peers.iter().any(|p| {
            p["peer_id"] == peer.as_str()
                && p["rtt_ms"]
                    .as_f64()
                    .is_some_and(|ms| ms > 0.0 && ms < 10_000.0)
                && p["sent_bytes"].as_u64().is_some_and(|b| b > 0)
                && p["received_bytes"].as_u64().is_some_and(|b| b > 0)
        })
    });
}
