//! Typed channel handles: `LastValue<T>`, `Topic<T>`, `Counter`, `SetChannel<T>`.
//! Each is a path plus a [`Space`]; values cross the API as `T` via serde.

use std::marker::PhantomData;

use concord_net::wall_clock;
use concord_state::{ChannelPath, Replica, StateError, WriteReceipt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Space};

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::State(e.into()))
}

fn from_json<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::State(e.into()))
}

/// What every handle holds: the space and the validated path.
#[derive(Debug, Clone)]
struct Channel {
    space: Space,
    path: ChannelPath,
}

impl Channel {
    fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(Channel {
            space,
            path: path.parse::<ChannelPath>()?,
        })
    }

    /// Runs `f` with the replica and this channel's path.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Replica, ChannelPath) -> Result<R, StateError> + Send + 'static,
    ) -> Result<R, Error> {
        let path = self.path.clone();
        self.space.run(move |r| f(r, path)).await
    }
}

/// A register holding one `T`.
#[derive(Debug, Clone)]
pub struct LastValue<T> {
    channel: Channel,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> LastValue<T> {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(LastValue {
            channel: Channel::new(space, path)?,
            _t: PhantomData,
        })
    }

    /// Writes the value.
    pub async fn set(&self, value: &T) -> Result<WriteReceipt, Error> {
        let json = to_json(value)?;
        self.channel
            .run(move |r, path| r.put(wall_clock(), path, &json))
            .await
    }

    /// Reads the visible value.
    pub async fn get(&self) -> Result<Option<T>, Error> {
        self.channel.run(|r, path| r.get_as::<T>(path)).await
    }
}

/// An append-only log of `T` entries.
#[derive(Debug, Clone)]
pub struct Topic<T> {
    channel: Channel,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Topic<T> {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(Topic {
            channel: Channel::new(space, path)?,
            _t: PhantomData,
        })
    }

    /// Appends an entry; returns its id (ids sort in causal-then-clock order).
    pub async fn append(&self, value: &T) -> Result<String, Error> {
        let json = to_json(value)?;
        self.channel
            .run(move |r, path| r.append(wall_clock(), path, &json).map(|(id, _)| id))
            .await
    }

    /// All visible entries as `(id, value)`.
    pub async fn entries(&self) -> Result<Vec<(String, T)>, Error> {
        let raw = self.channel.run(|r, path| r.topic_entries(path)).await?;
        raw.into_iter()
            .map(|(id, v)| Ok((id, from_json(v)?)))
            .collect()
    }
}

/// A counter whose concurrent increments add up.
#[derive(Debug, Clone)]
pub struct Counter {
    channel: Channel,
}

impl Counter {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(Counter {
            channel: Channel::new(space, path)?,
        })
    }

    /// Adds `delta`.
    pub async fn add(&self, delta: i64) -> Result<(), Error> {
        self.channel
            .run(move |r, path| r.increment(wall_clock(), path, delta).map(|_| ()))
            .await
    }

    /// The total.
    pub async fn value(&self) -> Result<i64, Error> {
        self.channel.run(|r, path| r.counter(path)).await
    }
}

/// An add-wins set of `T`.
#[derive(Debug, Clone)]
pub struct SetChannel<T> {
    channel: Channel,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> SetChannel<T> {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(SetChannel {
            channel: Channel::new(space, path)?,
            _t: PhantomData,
        })
    }

    /// Adds a member.
    pub async fn insert(&self, member: &T) -> Result<(), Error> {
        let json = to_json(member)?;
        self.channel
            .run(move |r, path| r.set_add(wall_clock(), path, &json).map(|_| ()))
            .await
    }

    /// Removes a member (no-op if absent).
    pub async fn remove(&self, member: &T) -> Result<(), Error> {
        let json = to_json(member)?;
        self.channel
            .run(move |r, path| r.set_remove(wall_clock(), path, &json).map(|_| ()))
            .await
    }

    /// The members.
    pub async fn members(&self) -> Result<Vec<T>, Error> {
        let raw = self.channel.run(|r, path| r.set_members(path)).await?;
        raw.into_iter().map(from_json).collect()
    }
}
