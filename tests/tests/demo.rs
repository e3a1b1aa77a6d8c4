//! `concord demo` tells a true story: its output shows the conflict the
//! partition produced with both candidates, what each policy made of the
//! writes at once, four nodes on four distinct addresses, the conflict
//! resolved and every node converged.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use concord_tests::Binary;

/// The CLI under test, built by cargo before these tests run.
const CONCORD: Binary = Binary(env!("CARGO_BIN_EXE_concord-under-test"));

/// The lines of `out`'s section titled `title`, up to the next blank line.
fn section<'a>(out: &'a str, title: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = out.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(title))
        .unwrap_or_else(|| panic!("no section {title:?} in:\n{out}"));
    lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .copied()
        .collect()
}

/// The row of `rows` whose first cell is `first`, split into cells.
fn row<'a>(rows: &[&'a str], first: &str) -> Vec<&'a str> {
    let line = rows
        .iter()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in {rows:#?}"));
    line.split_whitespace().collect()
}

#[test]
fn the_demo_shows_what_happened() {
    let out = CONCORD.run(&["demo"]).ok();

    // Four nodes, each on its own address.
    let addrs: BTreeSet<&str> = out
        .lines()
        .filter(|l| l.contains("node up: peer"))
        .map(|l| l.split(" listening on ").nth(1).unwrap())
        .map(|rest| rest.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(addrs.len(), 4, "four distinct node addresses in:\n{out}");
    assert!(addrs.iter().all(|a| a.starts_with("/ip4/127.0.0.1/tcp/")));

    // The partition: the deployer wrote while connected to nobody.
    assert!(
        out.contains("connected to nobody; reads intent/release.version = \"1.4.0\""),
        "{out}"
    );

    // The conflict, with both candidates, kept out of the value.
    let conflict = section(
        &out,
        "Conflicting proposals kept out of intent/release.version",
    );
    let builder = row(&conflict, "\"1.4.1\"");
    let deployer = row(&conflict, "\"2.0.0\"");
    assert_eq!(builder[2], "builder", "{conflict:#?}");
    assert_eq!(deployer[2], "deployer", "{conflict:#?}");
    for hlc in [builder[1], deployer[1]] {
        assert!(
            hlc.split('.').all(|n| n.parse::<u64>().is_ok()),
            "hlc {hlc}"
        );
    }
    assert!(
        conflict.contains(&"  value meanwhile: \"1.4.0\" (what both writers replaced)"),
        "{conflict:#?}"
    );
    assert!(
        out.contains("every node lists a conflict on intent/release.version"),
        "{out}"
    );
    assert!(
        out.contains("policy reject: neither proposal is the value"),
        "{out}"
    );

    // ... then resolved by the planner.
    assert!(out.contains("planner   resolves the conflict"), "{out}");
    assert!(
        out.contains("every node reads intent/release.version = \"1.4.1\", 0 conflict(s) left"),
        "{out}"
    );
    let fin = section(&out, "Final converged state");
    assert_eq!(row(&fin, "intent/release.version")[2], "\"1.4.1\"");

    // What each policy made of the writes at once.
    let outcomes = section(&out, "What each policy made of the writes at once");
    let line = |path: &str, policy: &str| {
        let cells = row(&outcomes, path);
        assert_eq!(cells[1], policy, "{outcomes:#?}");
        cells[2..].join(" ")
    };
    let lww = line("observation/ci.status", "last_write_wins");
    assert!(
        lww.contains("4 writes") && lww.contains("the latest write"),
        "{lww}"
    );
    let fww = line("coordination/deploy.owner", "first_write_wins");
    assert!(fww.contains("the earliest write"), "{fww}");
    let merge = line("observation/load.peak", "merge(max)");
    assert!(merge.contains("merged by max"), "{merge}");
    let topic = line("intent/ops", "topic");
    assert!(
        topic.contains("4 entries appended") && topic.contains("4 kept"),
        "{topic}"
    );
    let counter = line("coordination/api.calls", "counter");
    assert!(counter.ends_with("= 10: shows total 10"), "{counter}");
    let set = line("coordination/workers", "set");
    assert!(
        set.ends_with(r#"members ["builder","deployer","planner","reviewer"]"#),
        "{set}"
    );

    assert!(out.contains("\nconverged: yes — 4 nodes"), "{out}");
}
