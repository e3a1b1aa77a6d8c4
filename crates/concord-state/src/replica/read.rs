//! Reads: the visible value of channels, now or at past heads, with
//! policies and TTL applied. Reads never modify the document.

use automerge::{ChangeHash, ReadDoc, legacy};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Replica;
use super::doc::{as_str, is_genesis_actor, ref_int, ref_str};
use super::write::CONFLICTS_CHANNEL;
use crate::keys::{self, Envelope, Slot};
use crate::path::IntoChannelPath;
use crate::policy::{self, Candidate, Conflict, Resolution};
use crate::{ChannelKind, ChannelPath, ChannelSpec, Family, Hlc, Policy, StateError};

/// One write in a channel's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Hex actor id of the writer.
    pub actor: String,
    /// The writer's change sequence number.
    pub seq: u64,
    /// The change's hybrid logical clock, if it carries one.
    pub hlc: Option<Hlc>,
    /// Topic entry id or set member, for those kinds.
    pub key: Option<String>,
    /// The value written; `None` for a clear or remove.
    pub value: Option<Value>,
}

impl Replica {
    /// The declaration of a channel, if it was declared (or written).
    pub fn spec(&self, path: impl IntoChannelPath) -> Result<Option<ChannelSpec>, StateError> {
        Ok(self.spec_of(&path.into_path()?))
    }

    /// A channel's declaration. Concurrent declarations resolve to the
    /// greatest (by kind, schema version, then policy), a function of the
    /// set of live declarations alone, so the winner never depends on op
    /// ids (which an epoch's first document does not keep).
    pub(crate) fn spec_of(&self, path: &ChannelPath) -> Option<ChannelSpec> {
        let all = self.doc.get_all(self.channel_obj(path), path.name()).ok()?;
        resolve_spec(all.iter().filter_map(|(v, _)| as_str(v)))
    }

    /// Every declared channel with its declaration, in path order.
    pub fn channels(&self) -> Vec<(ChannelPath, ChannelSpec)> {
        let mut out = Vec::new();
        for family in Family::ALL {
            for bucket in self.layout.family(family) {
                for key in self.doc.keys(bucket) {
                    if let Some((name, Slot::Meta)) = keys::parse_key(&key)
                        && let Ok(path) = ChannelPath::new(family, name)
                        && let Some(spec) = self.spec_of(&path)
                    {
                        out.push((path, spec));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The visible value of any channel as JSON: a `LastValue`'s value, a
    /// `Topic`'s entries as an array, a `Counter`'s total, a `Set`'s members,
    /// an `Ephemeral` channel's live values as `{ "<writer actor hex>":
    /// value, ... }`.
    /// `coordination/conflicts` lists unresolved conflicts. `None` if the
    /// channel holds nothing or does not exist. A value this replica cannot
    /// read at its schema version of the channel is an error
    /// ([`StateError::NoMigration`], [`StateError::NewerSchema`],
    /// [`StateError::MigrationFailed`]; see [`crate::schema`]).
    pub fn get(&self, path: impl IntoChannelPath) -> Result<Option<Value>, StateError> {
        let path = path.into_path()?;
        if path.family() == Family::Coordination && path.name() == CONFLICTS_CHANNEL {
            let conflicts = self.conflicts();
            return Ok((!conflicts.is_empty())
                .then(|| serde_json::to_value(conflicts))
                .transpose()?);
        }
        let Some(spec) = self.spec_of(&path) else {
            // Ephemeral values may arrive before their channel's declaration.
            return Ok(self.ephemeral_object(&path));
        };
        Ok(match spec.kind {
            ChannelKind::LastValue => self.register_at(&path, &spec, None)?.value,
            ChannelKind::Topic => Some(Value::Array(
                self.entries_at(&path, None)?
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect(),
            )),
            ChannelKind::Counter => Some(self.counter_at(&path, None)?.into()),
            ChannelKind::Set => Some(Value::Array(self.members_at(&path, None))),
            ChannelKind::Ephemeral => self
                .ephemeral_object(&path)
                .or_else(|| Some(Value::Object(serde_json::Map::new()))),
        })
    }

    /// Typed read of a channel's visible value (see [`Replica::get`]).
    pub fn get_as<T: DeserializeOwned>(
        &self,
        path: impl IntoChannelPath,
    ) -> Result<Option<T>, StateError> {
        self.get(path)?
            .map(serde_json::from_value)
            .transpose()
            .map_err(StateError::from)
    }

    /// A `Topic`'s visible entries as `(id, value)`, in id (HLC) order.
    pub fn topic_entries(
        &self,
        path: impl IntoChannelPath,
    ) -> Result<Vec<(String, Value)>, StateError> {
        let path = path.into_path()?;
        self.expect_kind(&path, ChannelKind::Topic)?;
        self.entries_at(&path, None)
    }

    /// A `Counter`'s total.
    pub fn counter(&self, path: impl IntoChannelPath) -> Result<i64, StateError> {
        let path = path.into_path()?;
        self.expect_kind(&path, ChannelKind::Counter)?;
        self.counter_at(&path, None)
    }

    /// A `Set`'s members, in canonical JSON order.
    pub fn set_members(&self, path: impl IntoChannelPath) -> Result<Vec<Value>, StateError> {
        let path = path.into_path()?;
        self.expect_kind(&path, ChannelKind::Set)?;
        Ok(self.members_at(&path, None))
    }

    /// Unresolved conflicts on `reject` channels, in path order. Derived from
    /// the document, so every replica with the same changes lists the same.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.channels()
            .into_iter()
            .filter(|(_, spec)| {
                spec.kind == ChannelKind::LastValue && spec.policy == Policy::Reject
            })
            .filter_map(|(path, spec)| self.register_at(&path, &spec, None).ok()?.conflict)
            .collect()
    }

    /// Every write made to a channel that this replica holds, in causal
    /// (then actor) order, including overwritten and expired ones: those of
    /// the retained earlier epochs (see [`crate::EpochConfig::retain`]) and
    /// of the current one, each write once.
    pub fn history(&self, path: impl IntoChannelPath) -> Result<Vec<HistoryEntry>, StateError> {
        let path = path.into_path()?;
        let Some(bucket) = super::doc::legacy_id(self.channel_obj(&path)) else {
            return Ok(Vec::new());
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (base, doc) in self.epochs_held() {
            let order = super::doc::causal_order(doc.get_changes_meta(&[]));
            for change in order.iter().filter_map(|h| doc.get_change_by_hash(h)) {
                let seq = base.get(change.actor_id()) + change.seq();
                if is_genesis_actor(change.actor_id())
                    || !seen.insert((change.actor_id().clone(), seq))
                {
                    continue;
                }
                history_of(&change, seq, &bucket, &path, &mut out);
            }
        }
        Ok(out)
    }

    pub(crate) fn expect_kind(
        &self,
        path: &ChannelPath,
        kind: ChannelKind,
    ) -> Result<(), StateError> {
        match self.spec_of(path) {
            Some(spec) if spec.kind != kind => Err(StateError::WrongKind {
                path: path.to_string(),
                expected: kind.as_str(),
                actual: spec.kind.as_str(),
            }),
            _ => Ok(()),
        }
    }

    /// The live writes of a register at `heads` (now if `None`), resolved by policy.
    pub(crate) fn register_at(
        &self,
        path: &ChannelPath,
        spec: &ChannelSpec,
        heads: Option<&[ChangeHash]>,
    ) -> Result<Resolution, StateError> {
        let obj = self.channel_obj(path);
        let key = keys::register_key(path.name());
        let all = match heads {
            None => self.doc.get_all(obj, key.as_str())?,
            Some(h) => self.doc.get_all_at(obj, key.as_str(), h)?,
        };
        let candidates = self.candidates(
            path,
            self.version_for(path, spec),
            all.iter().map(|(v, id)| {
                let actor = match id {
                    automerge::ObjId::Id(_, actor, _) => Some(actor),
                    automerge::ObjId::Root => None,
                };
                (as_str(v), actor)
            }),
        )?;
        policy::resolve(path, &spec.policy, candidates, &self.merge_fns)
    }

    /// A register's candidates from its live writes (stored text, writer),
    /// leaving out expired and malformed ones, each upgraded to the
    /// channel's schema `version` (an error if one cannot be: see
    /// [`crate::schema`]).
    pub(crate) fn candidates<'a>(
        &self,
        path: &ChannelPath,
        version: u32,
        writes: impl Iterator<Item = (Option<&'a str>, Option<&'a automerge::ActorId>)>,
    ) -> Result<Vec<Candidate>, StateError> {
        writes
            .filter_map(|(text, actor)| {
                let envelope: Envelope = serde_json::from_str(text?).ok()?;
                if envelope.expired(self.now.0) {
                    return None;
                }
                // A carried write names its writer in its origin.
                let actor = match envelope.origin_actor() {
                    Some(origin) => origin.to_owned(),
                    None => actor.map(policy::actor_hex).unwrap_or_default(),
                };
                Some((envelope, actor))
            })
            .map(|(envelope, actor)| {
                let stamped = envelope.s;
                let upgrade = |v| self.upgrade(path, stamped, version, v);
                Ok(Candidate {
                    hlc: envelope.hlc(),
                    value: upgrade(envelope.v)?,
                    actor,
                    previous: envelope.p.map(upgrade).transpose()?,
                })
            })
            .collect()
    }

    /// The value of a stored topic entry at the channel's schema `version`;
    /// `None` if it is malformed or expired.
    fn entry_value(
        &self,
        path: &ChannelPath,
        version: u32,
        text: &str,
    ) -> Option<Result<Value, StateError>> {
        let envelope: Envelope = serde_json::from_str(text).ok()?;
        (!envelope.expired(self.now.0)).then(|| self.upgrade(path, envelope.s, version, envelope.v))
    }

    pub(crate) fn entries_at(
        &self,
        path: &ChannelPath,
        heads: Option<&[ChangeHash]>,
    ) -> Result<Vec<(String, Value)>, StateError> {
        let obj = self.channel_obj(path);
        let range = keys::slot_range(path.name(), 'e');
        let items: Vec<(String, Option<String>)> = match heads {
            None => self
                .doc
                .map_range(obj, range)
                .map(|i| (i.key.to_string(), ref_str(&i.value).map(str::to_owned)))
                .collect(),
            Some(h) => self
                .doc
                .map_range_at(obj, range, h)
                .map(|i| (i.key.to_string(), ref_str(&i.value).map(str::to_owned)))
                .collect(),
        };
        let version = self.version_of(path);
        items
            .into_iter()
            .filter_map(|(key, s)| {
                let (_, Slot::Entry(id)) = keys::parse_key(&key)? else {
                    return None;
                };
                let value = self.entry_value(path, version, &s?)?;
                Some(value.map(|v| (id.to_owned(), v)))
            })
            .collect()
    }

    pub(crate) fn entry_at(
        &self,
        path: &ChannelPath,
        id: &str,
        heads: Option<&[ChangeHash]>,
    ) -> Result<Option<Value>, StateError> {
        let obj = self.channel_obj(path);
        let key = keys::entry_key(path.name(), id);
        let got = match heads {
            None => self.doc.get(obj, key.as_str())?,
            Some(h) => self.doc.get_at(obj, key.as_str(), h)?,
        };
        got.and_then(|(v, _)| self.entry_value(path, self.version_of(path), as_str(&v)?))
            .transpose()
    }

    pub(crate) fn counter_at(
        &self,
        path: &ChannelPath,
        heads: Option<&[ChangeHash]>,
    ) -> Result<i64, StateError> {
        let obj = self.channel_obj(path);
        let range = keys::slot_range(path.name(), 'c');
        let sum = match heads {
            None => self
                .doc
                .map_range(obj, range)
                .filter_map(|i| ref_int(&i.value))
                .fold(0i64, i64::saturating_add),
            Some(h) => self
                .doc
                .map_range_at(obj, range, h)
                .filter_map(|i| ref_int(&i.value))
                .fold(0i64, i64::saturating_add),
        };
        Ok(sum)
    }

    pub(crate) fn member_at(
        &self,
        path: &ChannelPath,
        key: &str,
        heads: Option<&[ChangeHash]>,
    ) -> Result<bool, StateError> {
        let obj = self.channel_obj(path);
        Ok(match heads {
            None => self.doc.get(obj, key)?,
            Some(h) => self.doc.get_at(obj, key, h)?,
        }
        .is_some())
    }

    fn members_at(&self, path: &ChannelPath, heads: Option<&[ChangeHash]>) -> Vec<Value> {
        let obj = self.channel_obj(path);
        let range = keys::slot_range(path.name(), 's');
        let names: Vec<String> = match heads {
            None => self
                .doc
                .map_range(obj, range)
                .map(|i| i.key.to_string())
                .collect(),
            Some(h) => self
                .doc
                .map_range_at(obj, range, h)
                .map(|i| i.key.to_string())
                .collect(),
        };
        names
            .iter()
            .filter_map(|k| match keys::parse_key(k)? {
                (_, Slot::Member(m)) => serde_json::from_str(m).ok(),
                _ => None,
            })
            .collect()
    }
}

/// Appends the writes `change` (logical number `seq`) made to the channel
/// `path` in the bucket `bucket`.
fn history_of(
    change: &automerge::Change,
    seq: u64,
    bucket: &legacy::ObjectId,
    path: &ChannelPath,
    out: &mut Vec<HistoryEntry>,
) {
    let hlc = change.message().and_then(Hlc::parse);
    for op in change.decode().operations {
        let legacy::Key::Map(key) = &op.key else {
            continue;
        };
        if &op.obj != bucket {
            continue;
        }
        let Some((name, slot)) = keys::parse_key(key) else {
            continue;
        };
        if name != path.name() || slot == Slot::Meta {
            continue;
        }
        let value = match &op.action {
            legacy::OpType::Put(automerge::ScalarValue::Str(s)) => {
                serde_json::from_str::<Envelope>(s).ok().map(|e| e.v)
            }
            legacy::OpType::Put(automerge::ScalarValue::Int(i)) => Some((*i).into()),
            legacy::OpType::Put(automerge::ScalarValue::Boolean(b)) => Some((*b).into()),
            _ => None,
        };
        let key = match slot {
            Slot::Entry(id) | Slot::Member(id) | Slot::Contribution(id) => Some(id.to_owned()),
            Slot::Meta | Slot::Register => None,
        };
        out.push(HistoryEntry {
            actor: change.actor_id().to_hex_string(),
            seq,
            hlc,
            key,
            value,
        });
    }
}

/// The winning declaration among live ones (see [`Replica::spec_of`]):
/// the greatest by kind, then schema version (so concurrent raises end on
/// the highest), then policy. One with a version out of range is left out.
pub(crate) fn resolve_spec<'a>(texts: impl Iterator<Item = &'a str>) -> Option<ChannelSpec> {
    texts
        .filter_map(|t| serde_json::from_str::<ChannelSpec>(t).ok())
        .filter(|spec| crate::schema::valid_version(spec.version))
        .max_by(|a, b| {
            (a.kind.as_str(), a.version, a.policy.to_string()).cmp(&(
                b.kind.as_str(),
                b.version,
                b.policy.to_string(),
            ))
        })
}
