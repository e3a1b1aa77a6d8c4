//! The lease node's acceptor side: feeding it messages, making its state
//! durable (one write at a time on the blocking pool, the next carrying
//! every change made meanwhile) and sending its replies once the state they
//! depend on is durable, in the responses of open requests when it can.
//!
//! This module owns the order "fsync, then release the replies that depend
//! on it". It must never send a reply before the acceptor hands it out
//! (which it does only once its state is durable), and never let a failed
//! write be followed by a vote: the acceptor is dropped.

use std::collections::VecDeque;

use concord_lease::{AcceptorInput, AcceptorState, Input, LeaseError, Message, NodeId, Transmit};
use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc;
use tracing::error;

use super::super::store::StateStore;
use super::super::wire;
use super::Node;

/// A finished write of the acceptor state.
pub(super) struct PersistDone {
    store: StateStore,
    version: u64,
    result: std::io::Result<()>,
}

/// Writes `state` on the blocking pool and reports to `done`.
fn start_write(
    done: mpsc::Sender<PersistDone>,
    mut store: StateStore,
    version: u64,
    state: AcceptorState,
) {
    tokio::task::spawn_blocking(move || {
        let result = store.save(&state);
        // One write at a time and a channel of one: never full.
        if done
            .try_send(PersistDone {
                store,
                version,
                result,
            })
            .is_err()
        {
            error!("lease node gone before a state write finished");
        }
    });
}

impl Node {
    /// Feeds a message to our acceptor; `channel` stays open for its reply.
    pub(super) fn feed_acceptor(
        &mut self,
        from: NodeId,
        message: Message,
        channel: Option<ResponseChannel<Vec<u8>>>,
    ) -> Result<(), LeaseError> {
        if let Some(channel) = channel {
            self.open.entry(from).or_default().push_back(channel);
        }
        let now = self.clock.now();
        match self.acceptor.as_mut() {
            Some(acceptor) => acceptor.handle_input(now, AcceptorInput::Message { from, message }),
            None => Ok(()),
        }
    }

    /// Starts a state write if one is due, sends the replies that are
    /// durable, and answers open requests once nothing more is coming.
    /// Returns whether any reply moved.
    pub(super) fn pump_acceptor(&mut self) -> bool {
        let Some(acceptor) = self.acceptor.as_mut() else {
            self.close_open_requests();
            return false;
        };
        if let Some(store) = self.store.take() {
            match acceptor.poll_persist() {
                Some(p) => start_write(self.persisted.clone(), store, p.version, p.state),
                None => self.store = Some(store),
            }
        }
        let replies: Vec<Transmit> = std::iter::from_fn(|| acceptor.poll_transmit()).collect();
        let moved = !replies.is_empty();
        for t in replies {
            self.send_from_acceptor(t);
        }
        if self.store.is_some() {
            self.close_open_requests();
        }
        moved
    }

    pub(super) fn on_persisted(&mut self, done: PersistDone) {
        match done.result {
            Ok(()) => {
                self.store = Some(done.store);
                let now = self.clock.now();
                if let Some(acceptor) = self.acceptor.as_mut() {
                    let input = AcceptorInput::Persisted {
                        version: done.version,
                    };
                    if let Err(e) = acceptor.handle_input(now, input) {
                        error!(error = %e, "acceptor refused a persist confirmation");
                    }
                }
            }
            Err(e) => {
                // Its replies must never go out now; the others carry on.
                error!(error = %e, "acceptor state could not be made durable; this peer stops voting");
                self.acceptor = None;
            }
        }
    }

    fn send_from_acceptor(&mut self, t: Transmit) {
        if t.to == self.me {
            let input = Input::Message {
                from: self.me,
                message: t.message,
            };
            if let Err(e) = self.propose(input) {
                error!(error = %e, "own proposer refused own acceptor's reply");
            }
            return;
        }
        match wire::encode(&t.message) {
            Ok(mut bytes) => {
                while let Some(channel) = self.open.get_mut(&t.to).and_then(VecDeque::pop_front) {
                    match self.swarm.behaviour_mut().rpc.send_response(channel, bytes) {
                        Ok(()) => return,
                        // That stream is gone (timed out, closed): next one.
                        Err(back) => bytes = back,
                    }
                }
                self.send_request(t.to, &t.message);
            }
            Err(e) => error!(error = %e, kind = t.message.kind(), "lease reply not encodable"),
        }
    }

    fn close_open_requests(&mut self) {
        for (_, channels) in self.open.drain() {
            for channel in channels {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(channel, wire::NO_REPLY.to_vec());
            }
        }
    }
}
