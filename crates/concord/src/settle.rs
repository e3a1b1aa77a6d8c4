//! Waiting for nodes to meet and agree: [`Node::connect`] dials peers and
//! waits until they are connected (how a node cut off from the others, by
//! a restart from its data directory with no bootstrap peer, rejoins), and
//! [`Space::converge`] waits until handles of one space on several nodes
//! hold the same vector clock.
//!
//! This module owns these two waits, shared by the CLI demo and the
//! examples. It only reads and dials; it must never write to a space, and
//! never wait without a bound.

use std::time::{Duration, Instant};

use concord_net::{Multiaddr, PeerId};

use crate::{Error, Node, Space};

/// How long to wait between two looks.
const POLL: Duration = Duration::from_millis(5);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Node {
    /// Dials every `(peer id, address)` of `peers` and waits until all of
    /// them are connected to this node, for up to `within`. Returns how
    /// long it took.
    ///
    /// # Errors
    /// A dial could not be started, or [`Error::Timeout`] if some peer was
    /// still not connected after `within`.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use std::time::Duration;
    ///
    /// let (a_dir, b_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    /// let listen: concord::Multiaddr = "/ip4/127.0.0.1/tcp/0".parse()?;
    /// let a = concord::Node::builder().data_dir(a_dir.path()).listen(listen.clone()).build().await?;
    /// let b = concord::Node::builder().data_dir(b_dir.path()).listen(listen).build().await?;
    /// let a_addr = a.wait_listening(Duration::from_secs(5)).await?[0].clone();
    /// b.connect(&[(a.peer_id(), a_addr)], Duration::from_secs(10)).await?;
    /// assert!(b.peers().await?.iter().any(|p| p.peer_id == a.peer_id()));
    /// # a.shutdown().await?;
    /// # b.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(peers = peers.len()))]
    pub async fn connect(
        &self,
        peers: &[(PeerId, Multiaddr)],
        within: Duration,
    ) -> Result<Duration, Error> {
        for (_, addr) in peers {
            self.dial(addr.clone()).await?;
        }
        let start = Instant::now();
        loop {
            let connected = self.peers().await?;
            let missing = peers
                .iter()
                .filter(|(id, _)| !connected.iter().any(|p| p.peer_id == *id))
                .count();
            if missing == 0 {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= within {
                return Err(Error::Timeout {
                    what: format!("{missing} of {} peer(s) not connected", peers.len()),
                    waited_ms: millis(within),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Space {
    /// Waits until every handle in `spaces` (one space, on several nodes)
    /// holds the same vector clock, for up to `within`. Returns how long it
    /// took.
    ///
    /// # Errors
    /// A replica could not be read, or [`Error::Timeout`] if they still
    /// differed after `within`.
    ///
    /// ```
    /// # async fn example() -> anyhow::Result<()> {
    /// use std::time::Duration;
    ///
    /// let (a_dir, b_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    /// let listen: concord::Multiaddr = "/ip4/127.0.0.1/tcp/0".parse()?;
    /// let a = concord::Node::builder().data_dir(a_dir.path()).listen(listen.clone()).build().await?;
    /// let a_addr = a.wait_listening(Duration::from_secs(5)).await?[0].clone();
    /// let b = concord::Node::builder().data_dir(b_dir.path()).listen(listen).bootstrap(a_addr).build().await?;
    /// let spaces = [a.space("team").await?, b.space("team").await?];
    /// spaces[0].put("observation/ci", serde_json::json!("green")).await?;
    /// concord::Space::converge(&spaces, Duration::from_secs(10)).await?;
    /// assert_eq!(spaces[1].get("observation/ci").await?, Some(serde_json::json!("green")));
    /// # a.shutdown().await?;
    /// # b.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(nodes = spaces.len()))]
    pub async fn converge(spaces: &[Space], within: Duration) -> Result<Duration, Error> {
        let start = Instant::now();
        loop {
            let mut clocks = Vec::with_capacity(spaces.len());
            for space in spaces {
                clocks.push(space.vector_clock().await?);
            }
            if clocks.windows(2).all(|w| w[0] == w[1]) {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= within {
                return Err(Error::Timeout {
                    what: format!("{} replicas of one space did not converge", spaces.len()),
                    waited_ms: millis(within),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
