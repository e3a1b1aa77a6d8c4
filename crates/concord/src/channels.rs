//! Typed channel handles: `LastValue<T>`, `Topic<T>`, `Counter`, `SetChannel<T>`.
//! Each is a path plus a [`Space`]; values cross the API as `T` via serde.

use std::marker::PhantomData;

use concord_net::wall_clock;
use concord_state::{ChannelPath, WriteReceipt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Space};

fn parse(path: &str) -> Result<ChannelPath, Error> {
    Ok(path.parse::<ChannelPath>()?)
}

fn from_json<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::State(e.into()))
}

/// A register holding one `T`.
#[derive(Debug, Clone)]
pub struct LastValue<T> {
    space: Space,
    path: ChannelPath,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> LastValue<T> {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(LastValue {
            space,
            path: parse(path)?,
            _t: PhantomData,
        })
    }

    /// Writes the value.
    pub async fn set(&self, value: &T) -> Result<WriteReceipt, Error> {
        let json = serde_json::to_value(value).map_err(|e| Error::State(e.into()))?;
        let path = self.path.clone();
        self.space
            .run(move |r| r.put(wall_clock(), path, &json))
            .await
    }

    /// Reads the visible value.
    pub async fn get(&self) -> Result<Option<T>, Error> {
        let path = self.path.clone();
        self.space.run(move |r| r.get_as::<T>(path)).await
    }
}

/// An append-only log of `T` entries.
#[derive(Debug, Clone)]
pub struct Topic<T> {
    space: Space,
    path: ChannelPath,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Topic<T> {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(Topic {
            space,
            path: parse(path)?,
            _t: PhantomData,
        })
    }

    /// Appends an entry; returns its id (ids sort in causal-then-clock order).
    pub async fn append(&self, value: &T) -> Result<String, Error> {
        let json = serde_json::to_value(value).map_err(|e| Error::State(e.into()))?;
        let path = self.path.clone();
        let (id, _) = self
            .space
            .run(move |r| r.append(wall_clock(), path, &json))
            .await?;
        Ok(id)
    }

    /// All visible entries as `(id, value)`.
    pub async fn entries(&self) -> Result<Vec<(String, T)>, Error> {
        let path = self.path.clone();
        let raw = self.space.run(move |r| r.topic_entries(path)).await?;
        raw.into_iter()
            .map(|(id, v)| Ok((id, from_json(v)?)))
            .collect()
    }
}

/// A counter whose concurrent increments add up.
#[derive(Debug, Clone)]
pub struct Counter {
    space: Space,
    path: ChannelPath,
}

impl Counter {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(Counter {
            space,
            path: parse(path)?,
        })
    }

    /// Adds `delta`.
    pub async fn add(&self, delta: i64) -> Result<(), Error> {
        let path = self.path.clone();
        self.space
            .run(move |r| r.increment(wall_clock(), path, delta).map(|_| ()))
            .await
    }

    /// The total.
    pub async fn value(&self) -> Result<i64, Error> {
        let path = self.path.clone();
        self.space.run(move |r| r.counter(path)).await
    }
}

/// An add-wins set of `T`.
#[derive(Debug, Clone)]
pub struct SetChannel<T> {
    space: Space,
    path: ChannelPath,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> SetChannel<T> {
    pub(crate) fn new(space: Space, path: &str) -> Result<Self, Error> {
        Ok(SetChannel {
            space,
            path: parse(path)?,
            _t: PhantomData,
        })
    }

    /// Adds a member.
    pub async fn insert(&self, member: &T) -> Result<(), Error> {
        let json = serde_json::to_value(member).map_err(|e| Error::State(e.into()))?;
        let path = self.path.clone();
        self.space
            .run(move |r| r.set_add(wall_clock(), path, &json).map(|_| ()))
            .await
    }

    /// Removes a member (no-op if absent).
    pub async fn remove(&self, member: &T) -> Result<(), Error> {
        let json = serde_json::to_value(member).map_err(|e| Error::State(e.into()))?;
        let path = self.path.clone();
        self.space
            .run(move |r| r.set_remove(wall_clock(), path, &json).map(|_| ()))
            .await
    }

    /// The members.
    pub async fn members(&self) -> Result<Vec<T>, Error> {
        let path = self.path.clone();
        let raw = self.space.run(move |r| r.set_members(path)).await?;
        raw.into_iter().map(from_json).collect()
    }
}
