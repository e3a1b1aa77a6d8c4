//! Local writes: every mutation a caller makes, one automerge change each.
//! A write validates everything before it touches the document, so a refused
//! write leaves the replica exactly as it was.

use automerge::ReadDoc;
use automerge::transaction::{CommitOptions, Transactable, Transaction};
use serde::Serialize;
use serde_json::Value;

use super::{CachedChannel, MAX_CACHED_CHANNELS, MAX_VALUE_BYTES, Millis, Replica, WriteReceipt};

/// Largest encoded value the write-path cache keeps a copy of.
const MAX_CACHED_VALUE_BYTES: usize = 1024;
use crate::keys::{self, Envelope, Slot};
use crate::path::IntoChannelPath;
use crate::subscription::{Event, EventPosition, Origin};
use crate::{ChannelKind, ChannelPath, ChannelSpec, Family, Hlc, Policy, StateError};

/// What [`Replica::compact`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactReport {
    /// Expired entries deleted from the document.
    pub expired_removed: usize,
    /// Bytes of the snapshot queued as a [`crate::Persist::Snapshot`] (0 for
    /// an in-memory replica, which queues nothing).
    pub snapshot_bytes: usize,
}

/// The derived channel that lists unresolved conflicts; it cannot be written.
pub(crate) const CONFLICTS_CHANNEL: &str = "conflicts";

struct Prepared {
    path: ChannelPath,
    spec: ChannelSpec,
    declare: bool,
}

fn encode(envelope: &Envelope) -> Result<String, StateError> {
    let s = serde_json::to_string(envelope)?;
    if s.len() > MAX_VALUE_BYTES {
        return Err(StateError::ValueTooLarge {
            len: s.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(s)
}

impl Replica {
    /// Declares a channel's kind and policy. Declaring again with the same
    /// kind is allowed (and may change the policy, or an ephemeral channel's
    /// TTL); another kind is refused. An ephemeral channel needs a TTL
    /// ([`StateError::EphemeralTtl`] otherwise).
    ///
    /// Schema versions ([`ChannelSpec::with_version`], see
    /// [`crate::schema`]): declaring a `LastValue` or `Topic` channel also
    /// pins this replica to the declared version, the one its code reads
    /// and writes. A version above the channel's raises it (only with this
    /// replica's migrations from the channel's version to the new one
    /// registered: [`StateError::NoMigration`] otherwise); one below it
    /// changes nothing in the document and only pins this replica (code
    /// still on the old version keeps writing it, and its writes are
    /// upgraded by the readers on the new one).
    pub fn declare(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
        spec: ChannelSpec,
    ) -> Result<Option<WriteReceipt>, StateError> {
        let path = path.into_path()?;
        refuse_reserved(&path)?;
        if spec.kind == ChannelKind::Ephemeral {
            super::ephemeral::check_ttl(&path, spec.ttl_ms)?;
        }
        self.check_backlog()?;
        self.tick(now);
        let existing = self.cached_spec(&path);
        if let Some(existing) = &existing
            && existing.kind != spec.kind
        {
            return Err(wrong_kind(&path, spec.kind, existing.kind));
        }
        if !self.check_declared_version(&path, &spec, existing.as_ref())? {
            return Ok(None);
        }
        let _span =
            tracing::debug_span!("declare", space = %self.space, %path, version = spec.version)
                .entered();
        let hlc = self.hlc.tick(now);
        let receipt = self.commit(now, hlc, &path, Some(&spec), |_, _| Ok(()))?;
        self.cache.remove(&path);
        self.pin_declared(&path, &spec);
        Ok(Some(receipt))
    }

    /// Writes a `LastValue` channel (declaring it `last_write_wins` if new).
    pub fn put<V: Serialize + ?Sized>(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
        value: &V,
    ) -> Result<WriteReceipt, StateError> {
        self.put_inner(now, path.into_path()?, serde_json::to_value(value)?, None)
    }

    /// Like [`Replica::put`], but the value is invisible from `now + ttl_ms` on
    /// and removed by the next [`Replica::compact`] after that.
    pub fn put_with_ttl<V: Serialize + ?Sized>(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
        value: &V,
        ttl_ms: u64,
    ) -> Result<WriteReceipt, StateError> {
        let expires = now.plus(ttl_ms).0;
        self.put_inner(
            now,
            path.into_path()?,
            serde_json::to_value(value)?,
            Some(expires),
        )
    }

    fn put_inner(
        &mut self,
        now: Millis,
        path: ChannelPath,
        value: Value,
        expires: Option<u64>,
    ) -> Result<WriteReceipt, StateError> {
        let Prepared {
            path,
            spec,
            declare,
        } = self.prepare(now, path, ChannelKind::LastValue)?;
        let needs_old = self.subs.wants(&path)
            || matches!(spec.policy, Policy::FirstWriteWins | Policy::Reject);
        let old = match self.cache.get(&path).and_then(|c| c.last.as_ref()) {
            Some((value, expires)) => {
                (!expires.is_some_and(|x| x <= self.now.0)).then(|| value.clone())
            }
            None if needs_old => self.value_before_write(&path, &spec)?,
            None => None,
        };
        if spec.policy == Policy::FirstWriteWins && old.is_some() {
            return Err(StateError::AlreadySet {
                path: path.to_string(),
            });
        }
        let hlc = self.hlc.tick(now);
        let envelope = Envelope {
            v: value,
            t: hlc.wall,
            l: hlc.logical,
            x: expires,
            p: (spec.policy == Policy::Reject)
                .then(|| old.clone())
                .flatten(),
            o: None,
            s: self.version_for(&path, &spec),
        };
        let encoded = encode(&envelope)?;
        let key = keys::register_key(path.name());
        let small = encoded.len() <= MAX_CACHED_VALUE_BYTES;
        let receipt = self.commit(now, hlc, &path, declare.then_some(&spec), |tx, fam| {
            tx.put(fam, key, encoded)
        })?;
        if let Some(cached) = self.cache.get_mut(&path) {
            cached.last = small.then(|| (envelope.v.clone(), expires));
        }
        self.publish_local(&path, None, old, Some(envelope.v), &receipt);
        Ok(receipt)
    }

    /// Clears a `LastValue` channel. Returns `None` if it held nothing.
    pub fn clear(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
    ) -> Result<Option<WriteReceipt>, StateError> {
        let Prepared { path, spec, .. } =
            self.prepare(now, path.into_path()?, ChannelKind::LastValue)?;
        let old = self.value_before_write(&path, &spec)?;
        let key = keys::register_key(path.name());
        if self
            .doc
            .get(self.channel_obj(&path), key.as_str())?
            .is_none()
        {
            return Ok(None);
        }
        let hlc = self.hlc.tick(now);
        let receipt = self.commit(now, hlc, &path, None, |tx, fam| tx.delete(fam, key))?;
        self.cache.remove(&path);
        self.publish_local(&path, None, old, None, &receipt);
        Ok(Some(receipt))
    }

    /// Appends an entry to a `Topic` channel (declaring it if new). Returns the
    /// entry id: ids sort in hybrid-logical-clock order.
    pub fn append<V: Serialize + ?Sized>(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
        value: &V,
    ) -> Result<(String, WriteReceipt), StateError> {
        self.append_inner(now, path.into_path()?, serde_json::to_value(value)?, None)
    }

    /// Like [`Replica::append`] with an entry that expires after `ttl_ms`.
    pub fn append_with_ttl<V: Serialize + ?Sized>(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
        value: &V,
        ttl_ms: u64,
    ) -> Result<(String, WriteReceipt), StateError> {
        let expires = now.plus(ttl_ms).0;
        self.append_inner(
            now,
            path.into_path()?,
            serde_json::to_value(value)?,
            Some(expires),
        )
    }

    fn append_inner(
        &mut self,
        now: Millis,
        path: ChannelPath,
        value: Value,
        expires: Option<u64>,
    ) -> Result<(String, WriteReceipt), StateError> {
        let Prepared {
            path,
            spec,
            declare,
        } = self.prepare(now, path, ChannelKind::Topic)?;
        let hlc = self.hlc.tick(now);
        let envelope = Envelope {
            v: value,
            t: hlc.wall,
            l: hlc.logical,
            x: expires,
            p: None,
            o: None,
            s: self.version_for(&path, &spec),
        };
        let encoded = encode(&envelope)?;
        let id = keys::entry_id(hlc, &self.actor_hex);
        let key = keys::entry_key(path.name(), &id);
        let receipt = self.commit(now, hlc, &path, declare.then_some(&spec), |tx, fam| {
            tx.put(fam, key, encoded)
        })?;
        self.publish_local(&path, Some(id.clone()), None, Some(envelope.v), &receipt);
        Ok((id, receipt))
    }

    /// Adds `delta` to a `Counter` channel (declaring it if new). Adding 0
    /// to a declared counter changes nothing and returns `None`.
    pub fn increment(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
        delta: i64,
    ) -> Result<Option<WriteReceipt>, StateError> {
        let Prepared {
            path,
            spec,
            declare,
        } = self.prepare(now, path.into_path()?, ChannelKind::Counter)?;
        if delta == 0 && !declare {
            return Ok(None);
        }
        let old = self.counter_at(&path, None)?;
        let key = keys::contribution_key(path.name(), &self.actor_hex);
        let mine = self
            .doc
            .get(self.channel_obj(&path), key.as_str())?
            .and_then(|(v, _)| super::doc::as_int(&v))
            .unwrap_or(0);
        let hlc = self.hlc.tick(now);
        let receipt = self.commit(now, hlc, &path, declare.then_some(&spec), |tx, fam| {
            tx.put(fam, key, mine.saturating_add(delta))
        })?;
        let new = old.saturating_add(delta);
        self.publish_local(&path, None, Some(old.into()), Some(new.into()), &receipt);
        Ok(Some(receipt))
    }

    /// Adds `member` to a `Set` channel (declaring it if new). Add wins over a
    /// concurrent remove.
    pub fn set_add<V: Serialize + ?Sized>(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
        member: &V,
    ) -> Result<WriteReceipt, StateError> {
        let member = serde_json::to_value(member)?;
        let Prepared {
            path,
            spec,
            declare,
        } = self.prepare(now, path.into_path()?, ChannelKind::Set)?;
        let key = keys::member_key(path.name(), &member);
        if key.len() > MAX_VALUE_BYTES {
            return Err(StateError::ValueTooLarge {
                len: key.len(),
                max: MAX_VALUE_BYTES,
            });
        }
        let had = self.member_at(&path, &key, None)?;
        let hlc = self.hlc.tick(now);
        // A fresh value per add, so a re-add is a new op that survives a concurrent remove.
        let tag = format!("{hlc}@{}", &self.actor_hex[..self.actor_hex.len().min(8)]);
        let receipt = self.commit(now, hlc, &path, declare.then_some(&spec), |tx, fam| {
            tx.put(fam, key, tag)
        })?;
        let id = member.to_string();
        self.publish_local(
            &path,
            Some(id),
            had.then(|| member.clone()),
            Some(member),
            &receipt,
        );
        Ok(receipt)
    }

    /// Removes `member` from a `Set` channel. Returns `None` if it was absent.
    pub fn set_remove<V: Serialize + ?Sized>(
        &mut self,
        now: Millis,
        path: impl IntoChannelPath,
        member: &V,
    ) -> Result<Option<WriteReceipt>, StateError> {
        let member = serde_json::to_value(member)?;
        let Prepared { path, .. } = self.prepare(now, path.into_path()?, ChannelKind::Set)?;
        let key = keys::member_key(path.name(), &member);
        if !self.member_at(&path, &key, None)? {
            return Ok(None);
        }
        let hlc = self.hlc.tick(now);
        let receipt = self.commit(now, hlc, &path, None, |tx, fam| tx.delete(fam, key))?;
        self.publish_local(
            &path,
            Some(member.to_string()),
            Some(member),
            None,
            &receipt,
        );
        Ok(Some(receipt))
    }

    /// Deletes expired entries from the document (one change, if any) and,
    /// for a durable replica, queues a snapshot of the whole document
    /// ([`crate::Persist::Snapshot`]): the owner replaces its snapshot and
    /// log with it, atomically.
    ///
    /// While the persist backlog is at its bound nothing is deleted, but the
    /// snapshot is still queued: it replaces every op not yet handed out, so
    /// it is the way out of a backlog.
    pub fn compact(&mut self, now: Millis) -> Result<CompactReport, StateError> {
        let _span = tracing::debug_span!("compact", space = %self.space).entered();
        self.tick(now);
        let expired = if self.backlogged() {
            Vec::new()
        } else {
            self.expired_keys()?
        };
        if !expired.is_empty() {
            self.live.clear();
            let hlc = self.hlc.tick(now);
            let mut tx = self.doc.transaction();
            for (obj, key) in &expired {
                tx.delete(obj, key.as_str())?;
            }
            let hash = commit_tx(tx, now, hlc);
            let mut buckets: Vec<automerge::ObjId> = Vec::new();
            for (obj, _) in &expired {
                if !buckets.contains(obj) {
                    buckets.push(obj.clone());
                }
            }
            self.record_local_commit(hash, hlc, &buckets)?;
        }
        Ok(CompactReport {
            expired_removed: expired.len(),
            snapshot_bytes: self.queue_snapshot(),
        })
    }

    /// Every register and topic entry whose live values have all expired,
    /// with the map holding it.
    fn expired_keys(&self) -> Result<Vec<(automerge::ObjId, String)>, StateError> {
        let now = self.now.0;
        let mut out = Vec::new();
        for fam in Family::ALL.iter().flat_map(|f| self.layout.family(*f)) {
            for item in self.doc.map_range(fam, ..) {
                let expired = match keys::parse_key(&item.key) {
                    Some((_, Slot::Register | Slot::Entry(_))) => {
                        let all = self.doc.get_all(fam, item.key.as_ref())?;
                        !all.is_empty()
                            && all.iter().all(|(v, _)| {
                                super::doc::as_str(v)
                                    .and_then(|s| serde_json::from_str::<Envelope>(s).ok())
                                    .is_some_and(|e| e.expired(now))
                            })
                    }
                    _ => false,
                };
                if expired {
                    out.push((fam.clone(), item.key.into_owned()));
                }
            }
        }
        Ok(out)
    }

    fn prepare(
        &mut self,
        now: Millis,
        path: ChannelPath,
        kind: ChannelKind,
    ) -> Result<Prepared, StateError> {
        refuse_reserved(&path)?;
        self.check_backlog()?;
        self.tick(now);
        match self.cached_spec(&path) {
            Some(spec) if spec.kind == kind => Ok(Prepared {
                path,
                spec,
                declare: false,
            }),
            Some(spec) => Err(wrong_kind(&path, kind, spec.kind)),
            None => Ok(Prepared {
                path,
                spec: ChannelSpec::of_kind(kind),
                declare: true,
            }),
        }
    }

    /// A register's visible value before a local write. A value this
    /// replica cannot read at the channel's schema version counts as none
    /// (the write replaces it), unless the policy decides by the old value
    /// (`first_write_wins`, `reject`): then the write is refused with the
    /// read's error.
    fn value_before_write(
        &self,
        path: &ChannelPath,
        spec: &ChannelSpec,
    ) -> Result<Option<Value>, StateError> {
        match self.register_at(path, spec, None) {
            Ok(resolution) => Ok(resolution.value),
            Err(e)
                if e.is_unreadable_value()
                    && !matches!(spec.policy, Policy::FirstWriteWins | Policy::Reject) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn cached_spec(&mut self, path: &ChannelPath) -> Option<ChannelSpec> {
        if let Some(cached) = self.cache.get(path) {
            return Some(cached.spec.clone());
        }
        let spec = self.spec_of(path)?;
        self.remember(path, spec.clone());
        Some(spec)
    }

    fn remember(&mut self, path: &ChannelPath, spec: ChannelSpec) {
        if self.cache.len() >= MAX_CACHED_CHANNELS {
            self.cache.clear();
        }
        self.cache
            .insert(path.clone(), CachedChannel { spec, last: None });
    }

    /// Runs `ops` and, if `declare` is given, the channel declaration in one
    /// change, then records it and queues it to be persisted.
    fn commit(
        &mut self,
        now: Millis,
        hlc: Hlc,
        path: &ChannelPath,
        declare: Option<&ChannelSpec>,
        ops: impl FnOnce(
            &mut Transaction<'_>,
            &automerge::ObjId,
        ) -> Result<(), automerge::AutomergeError>,
    ) -> Result<WriteReceipt, StateError> {
        let fam = self.channel_obj(path).clone();
        self.live.remove(path);
        let mut tx = self.doc.transaction();
        if let Some(spec) = declare {
            tx.put(&fam, path.name(), keys::encode_spec(spec))?;
        }
        ops(&mut tx, &fam)?;
        let hash = commit_tx(tx, now, hlc);
        let receipt = self.record_local_commit(hash, hlc, &[fam])?;
        if let Some(spec) = declare {
            self.remember(path, spec.clone());
        }
        Ok(receipt)
    }

    /// Indexes the change a local commit made and queues it to be persisted.
    fn record_local_commit(
        &mut self,
        hash: Option<automerge::ChangeHash>,
        hlc: Hlc,
        buckets: &[automerge::ObjId],
    ) -> Result<WriteReceipt, StateError> {
        let change = hash
            .and_then(|_| self.doc.get_last_local_change())
            .ok_or_else(|| StateError::InvalidChange("commit produced no change".into()))?;
        self.record_change(&change, true, buckets);
        Ok(WriteReceipt {
            change: change.hash(),
            seq: self.logical_seq(&change),
            hlc,
        })
    }

    fn publish_local(
        &mut self,
        path: &ChannelPath,
        key: Option<String>,
        old: Option<Value>,
        new: Option<Value>,
        receipt: &WriteReceipt,
    ) {
        if !self.subs.wants(path) {
            return;
        }
        let event = Event {
            path: path.clone(),
            key,
            old,
            new,
            origin: Origin::Local,
            position: EventPosition {
                actor: self.actor.clone(),
                seq: receipt.seq,
                change: receipt.change,
                hlc: Some(receipt.hlc),
            },
            ephemeral: false,
        };
        self.subs.publish(&event);
    }
}

/// Commits a transaction stamped with its HLC (as the change message) and `now`.
fn commit_tx(tx: Transaction<'_>, now: Millis, hlc: Hlc) -> Option<automerge::ChangeHash> {
    let time = i64::try_from(now.0).unwrap_or(i64::MAX);
    tx.commit_with(
        CommitOptions::default()
            .with_message(hlc.to_string())
            .with_time(time),
    )
    .0
}

fn refuse_reserved(path: &ChannelPath) -> Result<(), StateError> {
    if path.family() == Family::Coordination && path.name() == CONFLICTS_CHANNEL {
        return Err(StateError::MalformedPath {
            path: path.to_string(),
            reason: "coordination/conflicts is derived from the document and cannot be written",
        });
    }
    Ok(())
}

fn wrong_kind(path: &ChannelPath, expected: ChannelKind, actual: ChannelKind) -> StateError {
    StateError::WrongKind {
        path: path.to_string(),
        expected: expected.as_str(),
        actual: actual.as_str(),
    }
}
