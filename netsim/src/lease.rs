//! The lease side of one simulated process (DESIGN §4): the real
//! concord-lease [`Acceptor`] with its durable state on the node's simulated
//! disk, the real [`Proposer`], and the state of the application that uses
//! the proposer (idle, acquiring, holding).
//!
//! It owns the life cycle of those machines (start from disk, clean stop,
//! power loss) and the acceptor's persistence: every [`Persist`] is appended
//! to the `lease` space of the node's [`MemDisk`] as one record (the JSON of
//! the [`AcceptorState`], as concord-net stores it) and only becomes durable
//! when the simulator syncs it, a simulated fsync later; a power loss before
//! that drops it (or tears it). A restarted acceptor comes back through
//! [`Acceptor::restore`] from the last intact record, with its quiet period.
//! It must never route messages, draw random numbers, schedule anything or
//! read a clock: the simulator hands it `now` and seeds, and carries out the
//! rest.

use concord_lease::{
    Acceptor, AcceptorConfig, AcceptorState, FencingToken, LeaseId, Message, Millis, Persist,
    Proposer, ProposerConfig,
};
use concord_storage::{MemDisk, MemStorage, Storage};

use crate::check::GrantId;

/// The disk space holding an acceptor's durable state.
pub const LEASE_SPACE: &str = "lease";

/// Records appended before the log is compacted into a snapshot of the
/// latest state (keeps the simulated disk bounded).
const COMPACT_EVERY: usize = 64;

/// What the application on a node is doing with its proposer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// The process is down.
    Down,
    /// Between two requests.
    Idle,
    /// Waiting for an acquisition.
    Acquiring {
        /// The request.
        lease: LeaseId,
        /// Index of the resource in the plan.
        resource: usize,
        /// Highest token of any grant of the resource that had started
        /// when the request was made: the grant must beat it.
        token_floor: u64,
        /// The handoff the grant must carry (see [`crate::check::HandoffCheck`]).
        handoff_floor: crate::check::HandoffFloor,
    },
    /// Holding a lease.
    Holding(Holding),
    /// Released a lease (no longer using it), waiting for the proposer to
    /// report the release done, as concord-net's release call does.
    Releasing {
        /// Index of the resource in the plan.
        resource: usize,
        /// The token of the released lease.
        token: FencingToken,
    },
}

/// A held lease and what the application means to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The request.
    pub lease: LeaseId,
    /// Index of the resource in the plan.
    pub resource: usize,
    /// The grant, as the checker knows it.
    pub grant: GrantId,
    /// The fencing token.
    pub token: FencingToken,
    /// Virtual time the hold is meant to end.
    pub hold_until: u64,
    /// Whether it still renews.
    pub renews: bool,
    /// Ttl asked for by renewals.
    pub renew_ttl: Millis,
    /// Whether it walks away at the end without releasing.
    pub abandon: bool,
}

/// A write under a lease, from the check of the lease until it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingWrite {
    /// The lease it was checked under.
    pub lease: LeaseId,
    /// Index of the resource in the plan.
    pub resource: usize,
    /// The token it carries.
    pub token: FencingToken,
}

/// Lease work of a process that waits while the process is paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseLocal {
    /// The application's wake-up (ignored unless `epoch` is current).
    Wake(u64),
    /// The acceptor's state of this version is durable.
    Persisted(u64),
    /// The holder checks its lease and, if valid, starts a write.
    WriteCheck(LeaseId),
    /// A write reaches the external system.
    WriteLands(PendingWrite),
}

/// The lease machines and application of one node.
#[derive(Debug)]
pub struct LeaseNode {
    acceptor_config: Option<AcceptorConfig>,
    proposer_config: Option<ProposerConfig>,
    /// The running acceptor, if this node is a lease peer and runs.
    pub acceptor: Option<Acceptor>,
    /// The running proposer, if this node runs one and runs.
    pub proposer: Option<Proposer>,
    storage: Option<MemStorage>,
    appended: usize,
    started: bool,
    /// Bumped at every start and stop: work scheduled for an older
    /// generation is void.
    pub generation: u64,
    /// Virtual time of the pending proposer timer, if one is scheduled.
    pub timer_at: Option<u64>,
    /// Bumped whenever the application's wake-up is rescheduled.
    pub wake_epoch: u64,
    /// The application.
    pub agent: Agent,
    /// Next lease id: from 0 at every start, as concord-net's lease node
    /// numbers its requests (a restarted proposer reuses its old ids).
    pub next_lease: u64,
}

impl LeaseNode {
    /// A node with these roles that has not started yet.
    pub fn new(
        acceptor_config: Option<AcceptorConfig>,
        proposer_config: Option<ProposerConfig>,
    ) -> LeaseNode {
        LeaseNode {
            acceptor_config,
            proposer_config,
            acceptor: None,
            proposer: None,
            storage: None,
            appended: 0,
            started: false,
            generation: 0,
            timer_at: None,
            wake_epoch: 0,
            agent: Agent::Down,
            next_lease: 0,
        }
    }

    /// Whether the machines were started before (a start now is a restart).
    pub fn has_started(&self) -> bool {
        self.started
    }

    /// Whether the node runs a proposer (when up).
    pub fn is_proposer(&self) -> bool {
        self.proposer_config.is_some()
    }

    /// Starts the machines at local time `now`: a brand-new acceptor on the
    /// very first start, otherwise one restored from the last durable state
    /// on `disk` (default state if none survived) with its quiet period.
    ///
    /// # Errors
    /// A storage or decoding failure, or a refused configuration; the
    /// machines stay down.
    pub fn start(&mut self, disk: &MemDisk, now: Millis, seed: u64) -> Result<(), String> {
        self.generation += 1;
        self.timer_at = None;
        self.wake_epoch += 1;
        if let Some(config) = &self.acceptor_config {
            let mut storage = MemStorage::new(disk.clone(), LEASE_SPACE);
            let recovered = storage.load().map_err(|e| format!("lease disk: {e}"))?;
            let latest = recovered.records.last().or(recovered.snapshot.as_ref());
            let state: Option<AcceptorState> = latest
                .map(|bytes| serde_json::from_slice(bytes))
                .transpose()
                .map_err(|e| format!("lease state: {e}"))?;
            let acceptor = if self.started {
                Acceptor::restore(config.clone(), state.unwrap_or_default(), now)
            } else {
                Acceptor::new(config.clone())
            }
            .map_err(|e| format!("acceptor: {e}"))?;
            self.acceptor = Some(acceptor);
            self.storage = Some(storage);
            self.appended = recovered.records.len();
        }
        if let Some(config) = &self.proposer_config {
            let proposer =
                Proposer::new(config.clone(), seed).map_err(|e| format!("proposer: {e}"))?;
            self.proposer = Some(proposer);
        }
        self.agent = Agent::Idle;
        self.next_lease = 0;
        self.started = true;
        Ok(())
    }

    /// Stops the machines; a clean stop first makes the acceptor's state
    /// durable. Everything in memory is gone.
    ///
    /// # Errors
    /// The final sync failed (the machines are stopped anyway).
    pub fn stop(&mut self, clean: bool) -> Result<(), String> {
        let synced = match (&mut self.storage, clean) {
            (Some(storage), true) => storage.sync().map_err(|e| format!("lease sync: {e}")),
            _ => Ok(()),
        };
        self.acceptor = None;
        self.proposer = None;
        self.storage = None;
        self.generation += 1;
        self.timer_at = None;
        self.wake_epoch += 1;
        self.agent = Agent::Down;
        synced
    }

    /// Writes `persist` to the disk (not yet durable), compacting the log
    /// every `COMPACT_EVERY` (64) records.
    ///
    /// # Errors
    /// A storage failure.
    pub fn persist(&mut self, persist: &Persist) -> Result<(), String> {
        let Some(storage) = &mut self.storage else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&persist.state).map_err(|e| format!("lease state: {e}"))?;
        let written = if self.appended + 1 >= COMPACT_EVERY {
            self.appended = 0;
            storage.compact(&bytes)
        } else {
            self.appended += 1;
            storage.append(&bytes)
        };
        written.map_err(|e| format!("lease disk: {e}"))
    }

    /// Makes everything written so far durable (the fsync completed).
    ///
    /// # Errors
    /// A storage failure.
    pub fn sync(&mut self) -> Result<(), String> {
        match &mut self.storage {
            Some(storage) => storage.sync().map_err(|e| format!("lease sync: {e}")),
            None => Ok(()),
        }
    }

    /// The lease this node's application holds, if any.
    pub fn holding(&self) -> Option<&Holding> {
        match &self.agent {
            Agent::Holding(h) => Some(h),
            _ => None,
        }
    }

    /// Whether the proposer considers `lease` valid at local time `now`.
    pub fn is_valid(&self, lease: LeaseId, now: Millis) -> bool {
        self.proposer
            .as_ref()
            .is_some_and(|p| p.is_valid(lease, now))
    }
}

/// The frame name of a lease message in the trace.
pub fn frame_name(message: &Message) -> &'static str {
    match message {
        Message::Prepare { .. } => "lease-prepare",
        Message::Promise { .. } => "lease-promise",
        Message::Propose { .. } => "lease-propose",
        Message::Accepted { .. } => "lease-accepted",
        Message::Reject { .. } => "lease-reject",
        Message::Release { .. } => "lease-release",
        Message::Released { .. } => "lease-released",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_lease::{AcceptorInput, Ballot, NodeId as LeaseNodeId, Permits, Quorum, Resource};

    fn prepare(round: u64) -> AcceptorInput {
        AcceptorInput::Message {
            from: LeaseNodeId(9),
            message: Message::Prepare {
                resource: Resource::new("r").expect("name"),
                ballot: Ballot::new(round, LeaseNodeId(9)).expect("ballot"),
                limit: Permits::MUTEX,
            },
        }
    }

    fn node() -> LeaseNode {
        let quorum = Quorum::new([LeaseNodeId(0)]).expect("quorum");
        LeaseNode::new(
            Some(AcceptorConfig::new(LeaseNodeId(0))),
            Some(ProposerConfig::new(LeaseNodeId(0), quorum)),
        )
    }

    /// Feeds a prepare and writes the resulting state; returns its version.
    fn promise(n: &mut LeaseNode, round: u64) -> u64 {
        let acceptor = n.acceptor.as_mut().expect("acceptor");
        acceptor
            .handle_input(Millis(0), prepare(round))
            .expect("ok");
        let p = acceptor.poll_persist().expect("persist");
        n.persist(&p).expect("written");
        p.version
    }

    #[test]
    fn synced_promises_survive_power_loss_and_unsynced_ones_do_not() {
        let disk = MemDisk::new();
        let mut n = node();
        n.start(&disk, Millis(0), 1).expect("start");
        promise(&mut n, 3);
        n.sync().expect("sync");
        promise(&mut n, 7);
        n.stop(false).expect("stop");
        disk.crash();
        n.start(&disk, Millis(10), 2).expect("restart");
        let a = n.acceptor.as_ref().expect("acceptor");
        let r = Resource::new("r").expect("name");
        assert_eq!(a.state().promised(&r).round(), 3);
        assert!(a.is_recovering(Millis(10)), "a restart has a quiet period");
        assert_eq!(n.agent, Agent::Idle);
    }

    #[test]
    fn clean_stop_syncs_and_the_log_is_compacted() {
        let disk = MemDisk::new();
        let mut n = node();
        n.start(&disk, Millis(0), 1).expect("start");
        for round in 1..=(2 * COMPACT_EVERY as u64) {
            promise(&mut n, round);
        }
        assert!(n.appended < COMPACT_EVERY);
        n.stop(true).expect("stop");
        disk.crash();
        n.start(&disk, Millis(0), 2).expect("restart");
        let r = Resource::new("r").expect("name");
        let a = n.acceptor.as_ref().expect("acceptor");
        assert_eq!(a.state().promised(&r).round(), 2 * COMPACT_EVERY as u64);
    }

    #[test]
    fn frame_names_are_distinct() {
        let r = Resource::new("r").expect("name");
        let b = Ballot::ZERO;
        let names = [
            frame_name(&Message::Accepted {
                resource: r.clone(),
                ballot: b,
            }),
            frame_name(&Message::Prepare {
                resource: r,
                ballot: b,
                limit: Permits::MUTEX,
            }),
        ];
        assert_ne!(names[0], names[1]);
    }
}
