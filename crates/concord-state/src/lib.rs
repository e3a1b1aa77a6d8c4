//! # concord-state — the sans-IO replica of a Concord space
//!
//! A *space* is one automerge document shared by many agent processes. This
//! crate owns everything that happens to one replica of it: typed channels in
//! the four families (observation, intent, coordination, execution), conflict
//! policies, hybrid logical clocks, TTL, vector clocks, subscriptions,
//! ephemeral values (heartbeats, presence: in memory only, never in the
//! document nor persisted), epochs (see [`epoch`]) and what must be
//! persisted: every change it holds goes out as a [`Persist`] op through
//! [`Replica::poll_persist`], and its owner writes it (concord-storage holds
//! the backends) and confirms it with [`Replica::persisted`].
//!
//! It must never do I/O of any kind (network or files), spawn tasks, read the
//! system clock or use a global RNG: time comes in as [`Millis`] from the
//! caller, so the very same code runs under the network driver and under
//! the deterministic simulator.
//!
//! ```
//! use concord_state::{ActorId, ChannelSpec, Millis, Replica};
//! use serde_json::json;
//!
//! let mut a = Replica::new("demo", ActorId::from(&[1u8; 16][..]));
//! let mut b = Replica::new("demo", ActorId::from(&[2u8; 16][..]));
//! a.put(Millis(1_000), "observation/ci.status", &json!("green")).unwrap();
//! // ship a's changes to b (concord-sync does this over the network)
//! let delta = a.changes_since(b.vector_clock());
//! b.apply_changes(Millis(1_001), delta).unwrap();
//! assert_eq!(b.get("observation/ci.status").unwrap(), Some(json!("green")));
//! assert_eq!(a.vector_clock(), b.vector_clock());
//! # let _ = ChannelSpec::topic();
//! ```

mod channel;
mod clock;
mod ephemeral;
pub mod epoch;
mod error;
mod hlc;
mod keys;
mod path;
mod policy;
mod replica;
pub mod schema;
mod subscription;

pub use automerge::{ActorId, ChangeHash};
pub use channel::{ChannelKind, ChannelSpec, Policy};
pub use clock::{Causality, VectorClock};
pub use ephemeral::{
    EphemeralOutcome, EphemeralReceipt, EphemeralUpdate, EphemeralValue, MAX_EPHEMERAL_TTL_MS,
    MAX_EPHEMERAL_VALUES,
};
pub use epoch::{EpochConfig, EpochId};
pub use error::StateError;
pub use hlc::{Hlc, HlcClock};
pub use path::{ChannelPath, Family};
pub use path::{IntoChannelPath, MAX_CHANNEL_NAME_BYTES};
pub use policy::{Candidate, Conflict, MergeFn};
pub use replica::{
    Adoption, ApplyOutcome, CompactReport, Durable, EpochAnnounce, EpochInfo, HistoryEntry,
    MAX_LIVE_REGISTER_BYTES, MAX_LIVE_REGISTERS, MAX_PENDING_CHANGES, MAX_UNPERSISTED_BYTES,
    MAX_VALUE_BYTES, Millis, Persist, PersistOp, Replica, ReplicaConfig, Stats, WriteReceipt,
};
pub use schema::{MAX_MIGRATIONS, MAX_PINNED_CHANNELS, MAX_SCHEMA_VERSION, MigrationFn};
pub use subscription::{
    DEFAULT_SUBSCRIBER_CAPACITY, Delivery, Event, EventFilter, EventPosition, EventSink, Origin,
    SubscribeOptions, SubscriptionId,
};
