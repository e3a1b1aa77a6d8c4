//! The live writes of registers, cached, so that what a remote change does
//! to them is known *before* automerge applies it: for a change that only
//! puts or clears registers whose live writes are cached, the replica
//! computes the events exactly and hands them to subscribers first, then
//! applies the change (automerge's apply is most of what a remote change
//! costs, and nothing on the notification path needs it).
//!
//! Exactness: in automerge a put or delete on a map key supersedes the ops
//! it names as predecessors, and the live writes of the key are the ops no
//! one superseded. So when every predecessor of an op is a live write, the
//! live writes afterwards are those minus the predecessors, plus the op
//! itself if it is a put, and the policy resolves them as it would the
//! document's. Anything else (another kind of op, an uncached register a
//! subscriber wants, a predecessor that is not live) takes the ordinary
//! path: apply, then read.
//!
//! Invalidation: a local commit drops its channel's entry; an ordinary
//! remote apply, a sync message or a compaction drops them all. This module
//! owns the cache and that computation; it never mutates the document.

use std::collections::HashMap;

use automerge::legacy::{self, OpType};
use automerge::{ActorId, ObjId, ReadDoc, ScalarValue};
use serde_json::Value;

use super::Replica;
use super::doc::as_str;
use super::events::Touched;
use crate::keys::{self, Slot};
use crate::policy;
use crate::subscription::{Event, EventPosition, Origin};
use crate::{ChannelKind, ChannelPath, ChannelSpec, StateError};

/// Most registers whose live writes are cached; the cache is emptied when
/// it is full (it refills from the next ordinary applies).
pub const MAX_LIVE_REGISTERS: usize = 1024;

/// Most bytes of stored text a cached register may hold (all its live
/// writes together); a register over it is not cached, so the cache stays
/// under `MAX_LIVE_REGISTERS * MAX_LIVE_REGISTER_BYTES` of text.
pub const MAX_LIVE_REGISTER_BYTES: usize = 4096;

/// One live write of a register: the op's id and its stored text.
#[derive(Debug, Clone, PartialEq)]
struct LiveWrite {
    counter: u64,
    actor: ActorId,
    text: Option<String>,
}

/// A register's declaration and live writes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LiveRegister {
    spec: ChannelSpec,
    writes: Vec<LiveWrite>,
}

impl LiveRegister {
    /// Applies one op (its id is `counter`@`actor`); `None` when the result
    /// cannot be known without the document.
    fn apply(&mut self, counter: u64, actor: &ActorId, op: &legacy::Op) -> Option<()> {
        let superseded = |w: &LiveWrite| {
            op.pred
                .iter()
                .any(|p| w.counter == p.0 && &w.actor == p.actor())
        };
        // every predecessor must be live (ids are unique on both sides)
        if self.writes.iter().filter(|w| superseded(w)).count() != op.pred.len() {
            return None;
        }
        let text = match &op.action {
            OpType::Put(ScalarValue::Str(s)) => Some(s.to_string()),
            OpType::Delete => None,
            _ => return None,
        };
        self.writes.retain(|w| !superseded(w));
        if text.is_some() {
            self.writes.push(LiveWrite {
                counter,
                actor: actor.clone(),
                text,
            });
        }
        Some(())
    }
}

/// The cache: a bounded map from register to its live writes.
#[derive(Debug, Default)]
pub(crate) struct LiveRegisters {
    map: HashMap<ChannelPath, LiveRegister>,
}

impl LiveRegisters {
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    pub(crate) fn remove(&mut self, path: &ChannelPath) {
        self.map.remove(path);
    }

    /// Caches `register` unless it is over [`MAX_LIVE_REGISTER_BYTES`].
    fn insert(&mut self, path: ChannelPath, register: LiveRegister) {
        let bytes: usize = register
            .writes
            .iter()
            .map(|w| w.text.as_ref().map_or(0, String::len))
            .sum();
        if bytes > MAX_LIVE_REGISTER_BYTES {
            self.map.remove(&path);
            return;
        }
        if self.map.len() >= MAX_LIVE_REGISTERS && !self.map.contains_key(&path) {
            self.map.clear();
        }
        self.map.insert(path, register);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// What a change that only writes registers does: its events, and each
/// register's live writes afterwards (`None`: not cached, nobody wants it).
pub(crate) struct RegisterPlan {
    pub(crate) events: Vec<Event>,
    after: Vec<(ChannelPath, Option<LiveRegister>)>,
}

impl Replica {
    /// The plan for a remote change (`decoded`), if it only puts or clears
    /// registers and its effect on each one a subscriber wants follows from
    /// the cache (see the module documentation); `None` otherwise.
    pub(crate) fn plan_from_live(
        &self,
        decoded: &automerge::ExpandedChange,
        position: &EventPosition,
    ) -> Option<RegisterPlan> {
        // (path, value before if wanted, live writes after), in the order
        // of first touch
        let mut touched: Vec<(ChannelPath, Option<Value>, Option<LiveRegister>)> = Vec::new();
        for (i, op) in decoded.operations.iter().enumerate() {
            let legacy::Key::Map(key) = &op.key else {
                return None;
            };
            let Some((name, Slot::Register)) = keys::parse_key(key) else {
                return None;
            };
            let path = self.layout.path_in(&op.obj, name)?;
            if op.insert {
                return None;
            }
            let slot = match touched.iter().position(|(p, ..)| p == &path) {
                Some(slot) => slot,
                None => {
                    let cached = self.live.map.get(&path);
                    let old = match (cached, self.subs.wants(&path)) {
                        (Some(register), true) => self.resolve_live(&path, register).ok()?,
                        (None, true) => return None,
                        (_, false) => None,
                    };
                    touched.push((path, old, cached.cloned()));
                    touched.len() - 1
                }
            };
            if let Some(after) = &mut touched[slot].2 {
                let counter = decoded.start_op.get() + i as u64;
                after.apply(counter, &decoded.actor_id, op)?;
            }
        }
        let mut events = Vec::new();
        for (path, old, after) in &touched {
            let Some(after) = after.as_ref().filter(|_| self.subs.wants(path)) else {
                continue;
            };
            let new = self.resolve_live(path, after).ok()?;
            if *old != new {
                events.push(Event {
                    path: path.clone(),
                    key: None,
                    old: old.clone(),
                    new,
                    origin: Origin::Remote,
                    position: position.clone(),
                    ephemeral: false,
                });
            }
        }
        let after = touched
            .into_iter()
            .map(|(path, _, after)| (path, after))
            .collect();
        Some(RegisterPlan { events, after })
    }

    /// The cached live writes of a register, if any.
    pub(crate) fn live_register(&self, path: &ChannelPath) -> Option<&LiveRegister> {
        self.live.map.get(path)
    }

    /// Records in the cache what an applied plan left.
    pub(crate) fn plan_applied(&mut self, plan: RegisterPlan) {
        for (path, after) in plan.after {
            self.cache.remove(&path);
            match after {
                Some(register) => self.live.insert(path, register),
                None => self.live.remove(&path),
            }
        }
    }

    /// Reads the live writes of the touched registers into the cache.
    pub(crate) fn refresh_live(&mut self, touched: &[Touched]) -> Result<(), StateError> {
        for path in touched.iter().filter_map(Touched::register) {
            let spec = self
                .spec_of(path)
                .unwrap_or_else(|| ChannelSpec::of_kind(ChannelKind::LastValue));
            let key = keys::register_key(path.name());
            let writes = self
                .doc
                .get_all(self.channel_obj(path), key.as_str())?
                .iter()
                .filter_map(|(v, id)| match id {
                    ObjId::Id(counter, actor, _) => Some(LiveWrite {
                        counter: *counter,
                        actor: actor.clone(),
                        text: as_str(v).map(str::to_owned),
                    }),
                    ObjId::Root => None,
                })
                .collect();
            self.live
                .insert(path.clone(), LiveRegister { spec, writes });
        }
        Ok(())
    }

    /// A register's visible value from cached live writes.
    pub(crate) fn resolve_live(
        &self,
        path: &ChannelPath,
        register: &LiveRegister,
    ) -> Result<Option<Value>, StateError> {
        let candidates = self.candidates(
            path,
            self.version_for(path, &register.spec),
            register
                .writes
                .iter()
                .map(|w| (w.text.as_deref(), Some(&w.actor))),
        )?;
        policy::resolve(path, &register.spec.policy, candidates, &self.merge_fns)
            .map(|resolution| resolution.value)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Delivery, Millis, SubscribeOptions, SubscriptionId};

    fn replica(n: u8) -> Replica {
        Replica::new("s", ActorId::from(&[n; 16][..]))
    }

    /// Sends `from`'s changes that `to` lacks; returns what `to` did.
    fn sync(from: &Replica, to: &mut Replica, now: u64) -> crate::ApplyOutcome {
        let delta = from.changes_since(to.vector_clock());
        to.apply_changes(Millis(now), delta).unwrap()
    }

    fn events(r: &mut Replica, sub: SubscriptionId) -> Vec<(Option<Value>, Option<Value>)> {
        std::iter::from_fn(|| r.poll_event(sub).unwrap())
            .map(|d| match d {
                Delivery::Event(e) => (e.old, e.new),
                Delivery::Lagged { .. } => (None, None),
            })
            .collect()
    }

    /// A writer, and a replica subscribed to its observations.
    fn watched_pair() -> (Replica, Replica, SubscriptionId) {
        let (a, mut b) = (replica(1), replica(2));
        let sub = b
            .subscribe("observation/*", SubscribeOptions::default())
            .unwrap();
        (a, b, sub)
    }

    #[test]
    fn register_writes_are_published_before_the_apply_once_cached() {
        let (mut a, mut b, sub) = watched_pair();
        a.put(Millis(1), "observation/ci", &"red").unwrap();
        // first sight of the register: the ordinary path, which caches it
        assert_eq!(sync(&a, &mut b, 1).published_early, 0);
        assert_eq!(events(&mut b, sub), vec![(None, Some(json!("red")))]);
        a.put(Millis(2), "observation/ci", &"green").unwrap();
        assert_eq!(sync(&a, &mut b, 2).published_early, 1);
        assert_eq!(
            events(&mut b, sub),
            vec![(Some(json!("red")), Some(json!("green")))]
        );
        assert_eq!(b.get("observation/ci").unwrap(), Some(json!("green")));
        a.clear(Millis(3), "observation/ci").unwrap();
        assert_eq!(sync(&a, &mut b, 3).published_early, 1);
        assert_eq!(events(&mut b, sub), vec![(Some(json!("green")), None)]);
        assert_eq!(b.get("observation/ci").unwrap(), None);
        // a sink takes the event during the call
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = move |e: Event| {
            let _ = tx.send(e.new);
            None
        };
        b.set_event_sink(sub, Box::new(sink)).unwrap();
        a.put(Millis(4), "observation/ci", &"blue").unwrap();
        assert_eq!(sync(&a, &mut b, 4).published_early, 1);
        assert_eq!(rx.try_recv().unwrap(), Some(json!("blue")));
        assert_eq!(b.buffered_events(sub), 0);
    }

    #[test]
    fn concurrent_writes_take_the_ordinary_path_and_agree_with_the_document() {
        let (mut a, mut b, mut c) = (replica(1), replica(2), replica(3));
        let sub = b
            .subscribe("observation/*", SubscribeOptions::default())
            .unwrap();
        a.put(Millis(1), "observation/ci", &1).unwrap();
        sync(&a, &mut b, 1);
        sync(&a, &mut c, 1);
        events(&mut b, sub);
        // a and c overwrite 1 concurrently; c's write is the later one
        a.put(Millis(2), "observation/ci", &2).unwrap();
        c.put(Millis(3), "observation/ci", &3).unwrap();
        assert_eq!(sync(&a, &mut b, 3).published_early, 1);
        // c's predecessor (1) is no longer live at b: apply, then read
        assert_eq!(sync(&c, &mut b, 3).published_early, 0);
        assert_eq!(
            events(&mut b, sub),
            vec![
                (Some(json!(1)), Some(json!(2))),
                (Some(json!(2)), Some(json!(3)))
            ]
        );
        // both writes are live now; a write that saw both replaces both
        sync(&b, &mut a, 4);
        a.put(Millis(5), "observation/ci", &5).unwrap();
        assert_eq!(sync(&a, &mut b, 5).published_early, 1);
        assert_eq!(events(&mut b, sub), vec![(Some(json!(3)), Some(json!(5)))]);
        assert_eq!(b.get("observation/ci").unwrap(), Some(json!(5)));
    }

    #[test]
    fn other_changes_and_local_writes_are_not_planned() {
        let (mut a, mut b) = (replica(1), replica(2));
        let sub = b.subscribe("*/*", SubscribeOptions::default()).unwrap();
        a.put(Millis(1), "observation/ci", &1).unwrap();
        sync(&a, &mut b, 1);
        let path = ChannelPath::new(crate::Family::Observation, "ci").unwrap();
        assert!(
            b.live.map.contains_key(&path),
            "cached by the ordinary apply"
        );
        a.append(Millis(2), "intent/ops", &"deploy").unwrap();
        assert_eq!(sync(&a, &mut b, 2).published_early, 0, "a topic append");
        assert!(!b.live.map.contains_key(&path), "which empties the cache");
        a.put(Millis(2), "observation/ci", &2).unwrap();
        assert_eq!(sync(&a, &mut b, 2).published_early, 0);
        assert!(b.live.map.contains_key(&path));
        b.put(Millis(3), "observation/ci", &3).unwrap();
        assert!(
            !b.live.map.contains_key(&path),
            "a local write drops the entry"
        );
        events(&mut b, sub);
        sync(&b, &mut a, 3);
        a.put(Millis(4), "observation/ci", &4).unwrap();
        assert_eq!(sync(&a, &mut b, 4).published_early, 0);
        assert_eq!(events(&mut b, sub), vec![(Some(json!(3)), Some(json!(4)))]);
        assert_eq!(sync(&a, &mut b, 4).published_early, 0, "nothing new");
    }

    #[test]
    fn registers_nobody_wants_need_no_cache() {
        let (mut a, mut b, sub) = watched_pair();
        a.put(Millis(1), "observation/ci", &1).unwrap();
        sync(&a, &mut b, 1);
        // (the first write declares the channel: not a plain register write)
        a.put(Millis(2), "intent/deploy", &"soon").unwrap();
        sync(&a, &mut b, 2);
        events(&mut b, sub);
        a.put(Millis(3), "intent/deploy", &"now").unwrap();
        assert_eq!(sync(&a, &mut b, 3).published_early, 1);
        assert!(events(&mut b, sub).is_empty());
        assert_eq!(b.get("intent/deploy").unwrap(), Some(json!("now")));
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = LiveRegisters::default();
        let register = LiveRegister {
            spec: ChannelSpec::of_kind(ChannelKind::LastValue),
            writes: Vec::new(),
        };
        for i in 0..MAX_LIVE_REGISTERS {
            let path = ChannelPath::new(crate::Family::Observation, &format!("r{i}")).unwrap();
            cache.insert(path, register.clone());
        }
        assert_eq!(cache.len(), MAX_LIVE_REGISTERS);
        cache.insert(
            ChannelPath::new(crate::Family::Observation, "one-more").unwrap(),
            register,
        );
        assert_eq!(cache.len(), 1, "emptied when full");
    }

    #[test]
    fn large_registers_are_not_cached() {
        let (mut a, mut b, sub) = watched_pair();
        let big = "x".repeat(MAX_LIVE_REGISTER_BYTES);
        a.put(Millis(1), "observation/doc", &big).unwrap();
        sync(&a, &mut b, 1);
        assert_eq!(b.live.len(), 0, "over the bound with its envelope");
        a.put(Millis(2), "observation/doc", &"small").unwrap();
        assert_eq!(sync(&a, &mut b, 2).published_early, 0);
        assert_eq!(b.live.len(), 1);
        a.put(Millis(3), "observation/doc", &big).unwrap();
        assert_eq!(sync(&a, &mut b, 3).published_early, 1);
        assert_eq!(b.live.len(), 0, "the planned write made it too large");
        let last = std::iter::from_fn(|| b.poll_event(sub).unwrap()).last();
        assert!(matches!(last, Some(Delivery::Event(e)) if e.new == Some(json!(big))));
    }
}
