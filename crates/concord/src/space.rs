//! [`Space`]: the application's view of one replicated space on a node.
//! Every call runs on the replica inside the network driver, so local writes
//! are pushed to peers as soon as they commit.

use concord_net::{NetHandle, PeerInfo, Subscription, wall_clock};
use concord_state::{ChannelSpec, Conflict, Replica, StateError, VectorClock, WriteReceipt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;
use crate::channels::{Counter, LastValue, SetChannel, Topic};

/// Default number of deliveries buffered in a subscription stream.
pub const SUBSCRIPTION_CAPACITY: usize = 256;

/// A replicated space on a node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Space {
    net: NetHandle,
    name: String,
}

impl Space {
    pub(crate) fn new(net: NetHandle, name: &str) -> Self {
        Space {
            net,
            name: name.to_owned(),
        }
    }

    /// The space's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on the replica; changes it commits are pushed to peers at once.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Replica) -> R + Send + 'static,
    ) -> Result<R, Error> {
        Ok(self.net.with_replica(&self.name, f).await?)
    }

    /// Runs a fallible replica operation and flattens its error.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Replica) -> Result<R, StateError> + Send + 'static,
    ) -> Result<R, Error> {
        Ok(self.with(f).await??)
    }

    /// Declares a channel's kind and policy.
    pub async fn declare(&self, path: &str, spec: ChannelSpec) -> Result<(), Error> {
        let path = path.to_owned();
        self.run(move |r| r.declare(wall_clock(), path.as_str(), spec).map(|_| ()))
            .await
    }

    /// Writes a JSON value to a `LastValue` channel.
    pub async fn put(&self, path: &str, value: Value) -> Result<WriteReceipt, Error> {
        let path = path.to_owned();
        self.run(move |r| r.put(wall_clock(), path.as_str(), &value))
            .await
    }

    /// The visible value of any channel as JSON (see `Replica::get`).
    pub async fn get(&self, path: &str) -> Result<Option<Value>, Error> {
        let path = path.to_owned();
        self.run(move |r| r.get(path.as_str())).await
    }

    /// A typed handle to a `LastValue` channel.
    pub fn last_value<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
    ) -> Result<LastValue<T>, Error> {
        LastValue::new(self.clone(), path)
    }

    /// A typed handle to a `Topic` channel.
    pub fn topic<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
    ) -> Result<Topic<T>, Error> {
        Topic::new(self.clone(), path)
    }

    /// A handle to a `Counter` channel.
    pub fn counter(&self, path: &str) -> Result<Counter, Error> {
        Counter::new(self.clone(), path)
    }

    /// A typed handle to a `Set` channel.
    pub fn set<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
    ) -> Result<SetChannel<T>, Error> {
        SetChannel::new(self.clone(), path)
    }

    /// A stream of events on channels matching the glob `pattern`.
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, Error> {
        Ok(self
            .net
            .subscribe(&self.name, pattern, SUBSCRIPTION_CAPACITY)
            .await?)
    }

    /// The replica's vector clock.
    pub async fn vector_clock(&self) -> Result<VectorClock, Error> {
        self.with(|r| r.vector_clock().clone()).await
    }

    /// Unresolved conflicts on `reject` channels.
    pub async fn conflicts(&self) -> Result<Vec<Conflict>, Error> {
        self.with(|r| r.conflicts()).await
    }

    /// Peers connected to this node.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        Ok(self.net.peers().await?)
    }
}
