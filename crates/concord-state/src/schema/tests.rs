//! Unit tests of schema versions: the registry, declarations, and reads,
//! events and writes of channels whose version was raised.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;
use crate::{ActorId, Delivery, Millis, Policy, Replica, SubscribeOptions};

fn replica(n: u8) -> Replica {
    Replica::new("schema", ActorId::from(&[n; 16][..]))
}

/// Sends `from`'s changes that `to` lacks.
fn sync(from: &Replica, to: &mut Replica, now: u64) {
    let delta = from.changes_since(to.vector_clock());
    to.apply_changes(Millis(now), delta).unwrap();
}

/// Version 1 → 2 renames `step` to `task`.
fn rename_step(mut v: Value) -> Result<Value, String> {
    let step = v
        .as_object_mut()
        .and_then(|o| o.remove("step"))
        .ok_or_else(|| format!("no step in {v}"))?;
    v["task"] = step;
    Ok(v)
}

/// Version 2 → 3 wraps the task in a list.
fn listify(v: Value) -> Result<Value, String> {
    Ok(json!({"tasks": [v["task"].clone()]}))
}

fn with_migrations(n: u8, path: &str) -> Replica {
    let mut r = replica(n);
    r.register_migration(path, 1, rename_step).unwrap();
    r.register_migration(path, 2, listify).unwrap();
    r
}

fn lww() -> ChannelSpec {
    ChannelSpec::last_value(Policy::LastWriteWins)
}

fn path(p: &str) -> ChannelPath {
    p.parse().unwrap()
}

#[test]
fn version_one_is_stored_byte_for_byte_as_before() {
    assert_eq!(
        crate::keys::encode_spec(&ChannelSpec::topic()),
        r#"{"kind":"topic","policy":"last_write_wins"}"#
    );
    assert_eq!(
        crate::keys::encode_spec(&ChannelSpec::topic().with_version(2)),
        r#"{"kind":"topic","policy":"last_write_wins","version":2}"#
    );
    let old: ChannelSpec =
        serde_json::from_str(r#"{"kind":"last_value","policy":"reject"}"#).unwrap();
    assert_eq!(old.version, 1);
    let envelope: crate::keys::Envelope = serde_json::from_str(r#"{"v":1,"t":5,"l":0}"#).unwrap();
    assert_eq!(envelope.s, 1);
    assert_eq!(
        serde_json::to_string(&envelope).unwrap(),
        r#"{"v":1,"t":5,"l":0}"#
    );
    assert_eq!(
        lww().with_version(3).to_string(),
        "last_value/last_write_wins v3"
    );
    assert_eq!(lww().to_string(), "last_value/last_write_wins");
}

#[test]
fn old_writes_are_upgraded_on_receipt_and_missing_migrations_refused() {
    let (mut old, mut new) = (replica(1), with_migrations(2, "intent/plan"));
    old.put(Millis(1), "intent/plan", &json!({"step": "build"}))
        .unwrap();
    sync(&old, &mut new, 2);
    new.declare(Millis(3), "intent/plan", lww().with_version(2))
        .unwrap();
    assert_eq!(
        new.get("intent/plan").unwrap(),
        Some(json!({"task": "build"}))
    );
    // the old writer, not having seen the raise, writes version 1 again
    old.put(Millis(4), "intent/plan", &json!({"step": "test"}))
        .unwrap();
    sync(&old, &mut new, 5);
    assert_eq!(
        new.get("intent/plan").unwrap(),
        Some(json!({"task": "test"}))
    );
    // once it has the raise, its version-1 value is unreadable there
    sync(&new, &mut old, 6);
    assert_eq!(old.spec("intent/plan").unwrap().unwrap().version, 2);
    let err = old.get("intent/plan").unwrap_err();
    assert!(
        matches!(&err, StateError::NoMigration { path, from: 1, to: 2, missing: 1 } if path == "intent/plan"),
        "{err}"
    );
    assert!(err.to_string().contains("version 1"), "{err}");
    // its writes are stamped 2 now, and read back as written
    old.put(Millis(7), "intent/plan", &json!({"task": "ship"}))
        .unwrap();
    assert_eq!(
        old.get("intent/plan").unwrap(),
        Some(json!({"task": "ship"}))
    );
    sync(&old, &mut new, 8);
    assert_eq!(
        new.get("intent/plan").unwrap(),
        Some(json!({"task": "ship"}))
    );
}

#[test]
fn declarations_raise_only_with_migrations_and_never_lower() {
    let mut r = replica(1);
    r.put(Millis(1), "intent/plan", &json!({"step": 1}))
        .unwrap();
    let err = r
        .declare(Millis(2), "intent/plan", lww().with_version(2))
        .unwrap_err();
    assert!(
        matches!(err, StateError::NoMigration { missing: 1, .. }),
        "{err}"
    );
    r.register_migration("intent/plan", 1, rename_step).unwrap();
    r.declare(Millis(3), "intent/plan", lww().with_version(2))
        .unwrap();
    assert_eq!(r.schema_version("intent/plan").unwrap(), 2);
    for (spec, what) in [
        (lww().with_version(0), "zero"),
        (lww().with_version(MAX_SCHEMA_VERSION + 1), "past the bound"),
    ] {
        let err = r.declare(Millis(4), "intent/plan", spec).unwrap_err();
        assert!(
            matches!(err, StateError::SchemaVersion { .. }),
            "{what}: {err}"
        );
    }
    let err = r
        .declare(
            Millis(5),
            "coordination/n",
            ChannelSpec::counter().with_version(2),
        )
        .unwrap_err();
    assert!(matches!(err, StateError::SchemaVersion { .. }), "{err}");
    // a new channel may start at any version
    r.declare(
        Millis(6),
        "intent/fresh",
        lww().with_version(MAX_SCHEMA_VERSION),
    )
    .unwrap();
    assert_eq!(
        r.spec("intent/fresh").unwrap().unwrap().version,
        MAX_SCHEMA_VERSION
    );
    assert_eq!(r.get("intent/plan").unwrap(), Some(json!({"task": 1})));
}

#[test]
fn code_on_an_old_version_pins_it_and_is_upgraded_by_the_new() {
    let p = "intent/plan";
    let (mut old, mut new) = (replica(1), with_migrations(2, p));
    // the old code declares its channel at startup: version 1
    assert!(old.declare(Millis(1), p, lww()).unwrap().is_some());
    sync(&old, &mut new, 1);
    new.declare(Millis(2), p, lww().with_version(2)).unwrap();
    sync(&new, &mut old, 3);
    // restarted, the old code declares version 1 again: nothing is written
    assert!(old.declare(Millis(4), p, lww()).unwrap().is_none());
    assert_eq!(old.spec(p).unwrap(), Some(lww().with_version(2)));
    assert_eq!(old.schema_version(p).unwrap(), 1);
    assert_eq!(new.schema_version(p).unwrap(), 2);
    // it keeps writing and reading version 1; the new code reads version 2
    old.put(Millis(5), p, &json!({"step": "build"})).unwrap();
    assert_eq!(old.get(p).unwrap(), Some(json!({"step": "build"})));
    sync(&old, &mut new, 6);
    assert_eq!(new.get(p).unwrap(), Some(json!({"task": "build"})));
    // a version-2 value is newer than the old code knows: refused
    new.put(Millis(7), p, &json!({"task": "ship"})).unwrap();
    sync(&new, &mut old, 8);
    let err = old.get(p).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::NewerSchema {
                version: 2,
                current: 1,
                ..
            }
        ),
        "{err}"
    );
    // an observer that never declared reads at the channel's version
    let mut observer = with_migrations(3, p);
    sync(&new, &mut observer, 9);
    assert_eq!(observer.schema_version(p).unwrap(), 2);
    assert_eq!(observer.get(p).unwrap(), new.get(p).unwrap());
}

#[test]
fn pins_are_bounded() {
    let mut r = replica(1);
    for i in 0..MAX_PINNED_CHANNELS {
        r.declare(Millis(1), format!("intent/c{i}").as_str(), lww())
            .unwrap();
    }
    let err = r.declare(Millis(2), "intent/one-more", lww()).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::TooManyPins {
                max: MAX_PINNED_CHANNELS,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(r.spec("intent/one-more").unwrap(), None, "nothing written");
    // declaring a pinned channel again takes no room; counters are not pinned
    r.declare(Millis(3), "intent/c0", lww()).unwrap();
    r.declare(Millis(3), "coordination/n", ChannelSpec::counter())
        .unwrap();
}

#[test]
fn concurrent_raises_end_on_the_highest_version_everywhere() {
    let p = "intent/plan";
    let (mut a, mut b) = (with_migrations(1, p), with_migrations(2, p));
    a.put(Millis(1), p, &json!({"step": "x"})).unwrap();
    sync(&a, &mut b, 1);
    a.declare(
        Millis(2),
        p,
        ChannelSpec::last_value(Policy::Reject).with_version(2),
    )
    .unwrap();
    b.declare(Millis(2), p, lww().with_version(3)).unwrap();
    a.put(Millis(3), p, &json!({"task": "from a"})).unwrap();
    sync(&a, &mut b, 4);
    sync(&b, &mut a, 4);
    assert_eq!(a.spec(p).unwrap(), b.spec(p).unwrap());
    assert_eq!(a.spec(p).unwrap(), Some(lww().with_version(3)));
    // each reads at the version its code declared
    assert_eq!(b.get(p).unwrap(), Some(json!({"tasks": ["from a"]})));
    assert_eq!(a.get(p).unwrap(), Some(json!({"task": "from a"})));
    assert!(
        a.declare(Millis(5), p, lww().with_version(3))
            .unwrap()
            .is_none()
    );
    assert_eq!(a.get(p).unwrap(), b.get(p).unwrap());
}

#[test]
fn topics_merges_and_rejects_upgrade_every_write() {
    let mut a = replica(1);
    let mut b = replica(2);
    for r in [&mut a, &mut b] {
        r.register_migration("intent/log", 1, rename_step).unwrap();
        r.register_migration("observation/max", 1, |v: Value| {
            Ok::<_, String>(json!(v.as_i64().unwrap_or(0) * 10))
        })
        .unwrap();
        r.register_migration("intent/rej", 1, rename_step).unwrap();
        r.register_merge("max", |vs| {
            vs.iter()
                .filter_map(Value::as_i64)
                .max()
                .map_or(Value::Null, Value::from)
        });
    }
    a.append(Millis(1), "intent/log", &json!({"step": 1}))
        .unwrap();
    a.declare(
        Millis(1),
        "observation/max",
        ChannelSpec::last_value(Policy::Merge("max".into())),
    )
    .unwrap();
    a.put(Millis(1), "observation/max", &7).unwrap();
    a.declare(
        Millis(1),
        "intent/rej",
        ChannelSpec::last_value(Policy::Reject),
    )
    .unwrap();
    a.put(Millis(1), "intent/rej", &json!({"step": "agreed"}))
        .unwrap();
    sync(&a, &mut b, 2);
    b.declare(
        Millis(3),
        "intent/log",
        ChannelSpec::topic().with_version(2),
    )
    .unwrap();
    b.declare(
        Millis(3),
        "observation/max",
        ChannelSpec::last_value(Policy::Merge("max".into())).with_version(2),
    )
    .unwrap();
    b.declare(
        Millis(3),
        "intent/rej",
        ChannelSpec::last_value(Policy::Reject).with_version(2),
    )
    .unwrap();
    b.append(Millis(4), "intent/log", &json!({"task": 2}))
        .unwrap();
    // a, still at version 1, and b, at version 2, write concurrently
    a.put(Millis(4), "observation/max", &8).unwrap();
    b.put(Millis(4), "observation/max", &75).unwrap();
    a.put(Millis(4), "intent/rej", &json!({"step": "a"}))
        .unwrap();
    b.put(Millis(4), "intent/rej", &json!({"task": "b"}))
        .unwrap();
    sync(&a, &mut b, 5);
    sync(&b, &mut a, 5);
    // a's code moves to version 2 too (it declared version 1)
    for path in ["intent/log", "observation/max", "intent/rej"] {
        let spec = a.spec(path).unwrap().unwrap();
        assert_eq!(spec.version, 2);
        assert!(a.declare(Millis(6), path, spec).unwrap().is_none());
    }
    for r in [&a, &b] {
        let entries: Vec<Value> = r
            .topic_entries("intent/log")
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(entries, vec![json!({"task": 1}), json!({"task": 2})]);
        // 8 at version 1 is 80 at version 2: the merge sees 80 and 75
        assert_eq!(r.get("observation/max").unwrap(), Some(json!(80)));
        let conflict = r.conflicts().pop().unwrap();
        assert_eq!(conflict.agreed, Some(json!({"task": "agreed"})));
        let values: Vec<&Value> = conflict.candidates.iter().map(|c| &c.value).collect();
        assert!(values.contains(&&json!({"task": "a"})), "{values:?}");
        assert!(values.contains(&&json!({"task": "b"})), "{values:?}");
    }
}

#[test]
fn subscribers_see_upgraded_values_and_never_unreadable_ones() {
    let p = "intent/plan";
    let (mut old, mut new) = (replica(1), with_migrations(2, p));
    let mut watcher = replica(3);
    let sub = watcher
        .subscribe("intent/*", SubscribeOptions::default())
        .unwrap();
    let events = |w: &mut Replica| -> Vec<(Option<Value>, Option<Value>)> {
        std::iter::from_fn(|| w.poll_event(sub).unwrap())
            .filter_map(|d| match d {
                Delivery::Event(e) => Some((e.old, e.new)),
                Delivery::Lagged { .. } => None,
            })
            .collect()
    };
    old.put(Millis(1), p, &json!({"step": "a"})).unwrap();
    sync(&old, &mut watcher, 1);
    assert_eq!(
        events(&mut watcher),
        vec![(None, Some(json!({"step": "a"})))]
    );
    sync(&old, &mut new, 2);
    new.declare(Millis(3), p, lww().with_version(2)).unwrap();
    sync(&new, &mut watcher, 4);
    // the watcher lacks the migration: the version-1 value reads as an
    // error from now on, and no event shows it
    assert!(events(&mut watcher).is_empty());
    assert!(watcher.get(p).unwrap_err().is_unreadable_value());
    new.put(Millis(5), p, &json!({"task": "b"})).unwrap();
    sync(&new, &mut watcher, 6);
    assert_eq!(
        events(&mut watcher),
        vec![(None, Some(json!({"task": "b"})))]
    );
    // registering it later makes the held value readable: nothing was lost
    old.put(Millis(7), p, &json!({"step": "c"})).unwrap();
    sync(&old, &mut watcher, 8);
    assert!(events(&mut watcher).is_empty(), "unreadable again");
    watcher.register_migration(p, 1, rename_step).unwrap();
    assert_eq!(watcher.get(p).unwrap(), Some(json!({"task": "c"})));
    old.put(Millis(9), p, &json!({"step": "d"})).unwrap();
    sync(&old, &mut watcher, 10);
    assert_eq!(
        events(&mut watcher),
        vec![(Some(json!({"task": "c"})), Some(json!({"task": "d"})))]
    );
    // a write replaces an unreadable value on a last_write_wins channel
    let mut lone = replica(4);
    sync(&old, &mut lone, 11);
    sync(&new, &mut lone, 11);
    assert!(lone.get(p).is_err());
    lone.put(Millis(12), p, &json!({"task": "e"})).unwrap();
    assert_eq!(lone.get(p).unwrap(), Some(json!({"task": "e"})));
}

#[test]
fn a_failing_migration_is_a_typed_error() {
    let p = "intent/plan";
    let mut r = with_migrations(1, p);
    r.put(Millis(1), p, &json!("not an object")).unwrap();
    r.declare(Millis(2), p, lww().with_version(3)).unwrap();
    let err = r.get(p).unwrap_err();
    assert!(
        matches!(&err, StateError::MigrationFailed { from: 1, reason, .. } if reason.contains("no step")),
        "{err}"
    );
}

#[test]
fn values_newer_than_the_channel_are_refused() {
    let migrations = Migrations::default();
    let p = path("intent/plan");
    let err = migrations.upgrade(&p, 3, 2, json!(1)).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::NewerSchema {
                version: 3,
                current: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(migrations.upgrade(&p, 2, 2, json!(1)).unwrap(), json!(1));
    // a stamp of 0 (never written by a replica) has no migration
    assert!(matches!(
        migrations.upgrade(&p, 0, 1, json!(1)),
        Err(StateError::NoMigration { missing: 0, .. })
    ));
}

#[test]
fn the_registry_is_bounded() {
    let mut migrations = Migrations::default();
    let step: MigrationFn = Arc::new(Ok::<Value, String>);
    let p = path("intent/plan");
    for bad in [0, MAX_SCHEMA_VERSION] {
        assert!(matches!(
            migrations.register(&p, bad, step.clone()),
            Err(StateError::SchemaVersion { .. })
        ));
    }
    let per_channel = (MAX_SCHEMA_VERSION - 1) as usize;
    for i in 0..MAX_MIGRATIONS {
        let channel = path(&format!("intent/c{}", i / per_channel));
        let from = u32::try_from(i % per_channel).unwrap() + 1;
        migrations.register(&channel, from, step.clone()).unwrap();
    }
    assert!(matches!(
        migrations.register(&path("intent/one-more"), 1, step.clone()),
        Err(StateError::TooManyMigrations {
            max: MAX_MIGRATIONS,
            ..
        })
    ));
    // replacing one takes no room
    migrations.register(&path("intent/c0"), 1, step).unwrap();
    // the longest upgrade runs every step
    let long = path("intent/c0");
    assert_eq!(
        migrations
            .upgrade(&long, 1, MAX_SCHEMA_VERSION, json!("v"))
            .unwrap(),
        json!("v")
    );
}

#[test]
fn a_rolled_back_node_does_not_show_its_newer_value_as_the_old_one() {
    let p = "intent/plan";
    let mut r = with_migrations(1, p);
    r.declare(Millis(1), p, lww().with_version(2)).unwrap();
    r.put(Millis(2), p, &json!({"task": "v2"})).unwrap();
    // the code rolls back to version 1: the version-2 value is unreadable,
    // and the next write's event does not show it as the old value
    assert!(r.declare(Millis(3), p, lww()).unwrap().is_none());
    assert!(matches!(r.get(p), Err(StateError::NewerSchema { .. })));
    let sub = r
        .subscribe("intent/*", SubscribeOptions::default())
        .unwrap();
    r.put(Millis(4), p, &json!({"step": "v1"})).unwrap();
    let Some(Delivery::Event(e)) = r.poll_event(sub).unwrap() else {
        panic!("no event");
    };
    assert_eq!((e.old, e.new), (None, Some(json!({"step": "v1"}))));
}
