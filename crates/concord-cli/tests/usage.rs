//! The `concord` binary without a node: its help names every command of
//! DESIGN §7, and bad input is refused before any node is contacted. (The
//! tests with running nodes live in the `concord-tests` crate; this file also
//! makes `cargo test` build the binary they run.)
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn concord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_command() {
    let out = concord(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "node", "put", "get", "watch", "lock", "inspect", "top", "export", "demo",
    ] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} missing:\n{help}"
        );
    }
}

#[test]
fn top_refuses_to_run_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = concord(&["top", "--data", dir.path().to_str().unwrap(), "team"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: concord top needs a terminal"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_is_refused_before_contacting_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["put", "--data", data, "team", "observation/x", "{oops"],
            "invalid JSON value",
        ),
        (
            &["put", "--data", data, "team", "nofamily", "1"],
            "malformed channel path",
        ),
        (
            &["get", "--data", data, "team", "gossip/x"],
            "unknown family",
        ),
        (
            &["lock", "--data", data, "team", "", "--", "true"],
            "resource",
        ),
        (
            &[
                "lock", "--data", data, "team", "r", "--ttl", "0", "--", "true",
            ],
            "--ttl",
        ),
    ];
    for (args, message) in cases {
        let out = concord(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(message),
            "{stderr}"
        );
        assert!(!stderr.contains("no node is running"), "{stderr}");
    }
}
