//! Two agents on two nodes commit to one real git repository (a bare repo
//! made with the `git` command line). Each takes the space's lock on the
//! branch, builds a commit carrying its fencing token
//! (`Fencing-Token: N`), and moves the branch by compare-and-swap
//! (`git update-ref refs/heads/main NEW OLD`). Then agent-1 takes the lock
//! and stalls past its ttl; agent-2 gets the lock once the lease expired
//! and commits; agent-1 wakes up and tries its swap: git refuses it.
//!
//! ```no_run
//! # async fn run() -> Result<(), concord_examples::ExampleError> {
//! let report = concord_examples::git_cas::run(std::time::Duration::from_millis(1_500)).await?;
//! assert!(report.stale_refused());
//! print!("{report}");
//! # Ok(()) }
//! ```
//!
//! This module owns the scenario. It must never move the branch without
//! holding the lock when it starts its commit, and never report a swap it
//! did not see git accept or refuse.

use std::fmt;
use std::time::{Duration, Instant};

use concord::HeldLock;

use crate::cluster::{self, Member};
use crate::git::{Cas, Repo};
use crate::{ExampleError, short};

/// The lock the agents take before committing.
pub const RESOURCE: &str = "git.main";

/// One commit an agent built and tried to put on the branch.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Who built it.
    pub agent: String,
    /// On which node.
    pub node: String,
    /// The fencing token of its lock.
    pub token: u64,
    /// How long it waited for the lock.
    pub waited: Duration,
    /// The commit's id.
    pub commit: String,
    /// The branch head it read and built on (`None`: no branch yet).
    pub parent: Option<String>,
    /// `None` if git moved the branch; git's refusal otherwise.
    pub refused: Option<String>,
}

/// What the scenario saw.
#[derive(Debug, Clone)]
pub struct GitCasReport {
    /// `git --version`.
    pub git: String,
    /// The lease ttl of agent-1's stalled lock.
    pub ttl: Duration,
    /// The turns that ran without a stall, in order: agent-1, agent-2,
    /// and agent-2 again, overtaking the stalled agent-1.
    pub turns: Vec<Attempt>,
    /// agent-1's stalled turn, its swap tried last.
    pub stale: Attempt,
    /// How long agent-1 stalled between building its commit and swapping.
    pub pause: Duration,
    /// How much of its lease agent-1's node saw left when it woke.
    pub left_on_wake: Duration,
    /// The branch head when agent-1's swap was refused, and its token.
    pub head_at_refusal: Option<(String, Option<u64>)>,
    /// The branch's history read back at the end, newest first.
    pub history: Vec<(String, Option<u64>)>,
}

impl GitCasReport {
    /// The stalled turn's swap was refused, and its commit is not on the
    /// branch.
    pub fn stale_refused(&self) -> bool {
        self.stale.refused.is_some() && !self.history.iter().any(|(id, _)| *id == self.stale.commit)
    }

    /// The tokens on the branch increase from oldest to newest commit.
    pub fn tokens_increase(&self) -> bool {
        let tokens: Vec<Option<u64>> = self.history.iter().rev().map(|(_, t)| *t).collect();
        tokens.iter().all(Option::is_some) && tokens.windows(2).all(|w| w[0] < w[1])
    }
}

/// Takes the lock as `agent`, reads the branch and builds a commit on it.
async fn prepare(
    m: &Member,
    agent: &str,
    repo: &Repo,
    ttl: Duration,
) -> Result<(HeldLock, Attempt), ExampleError> {
    let started = Instant::now();
    let lock = cluster::lock(&m.space, RESOURCE, ttl, agent).await?;
    let waited = started.elapsed();
    let token = lock.token().get();
    let parent = repo.head().await?;
    let content = format!("{agent} on {} holds token {token}\n", m.name);
    let subject = format!("{agent}: record its turn");
    let commit = repo
        .commit(parent.as_deref(), "turn.txt", &content, &subject, token)
        .await?;
    let attempt = Attempt {
        agent: agent.to_owned(),
        node: m.name.clone(),
        token,
        waited,
        commit,
        parent,
        refused: None,
    };
    Ok((lock, attempt))
}

/// Swaps the branch from the attempt's parent to its commit.
async fn swap(repo: &Repo, attempt: &mut Attempt) -> Result<(), ExampleError> {
    match repo
        .compare_and_swap(&attempt.commit, attempt.parent.as_deref())
        .await?
    {
        Cas::Moved => attempt.refused = None,
        Cas::Refused(why) => attempt.refused = Some(why),
    }
    Ok(())
}

/// One normal turn: lock, build, swap, release.
async fn turn(
    m: &Member,
    agent: &str,
    repo: &Repo,
    ttl: Duration,
) -> Result<Attempt, ExampleError> {
    let (lock, mut attempt) = prepare(m, agent, repo, ttl).await?;
    swap(repo, &mut attempt).await?;
    lock.release().await?;
    Ok(attempt)
}

/// Runs the scenario with agent-1's stalled lock taken for `ttl`.
///
/// # Errors
/// A node, lock or git command failed.
#[tracing::instrument(level = "info")]
pub async fn run(ttl: Duration) -> Result<GitCasReport, ExampleError> {
    let dir = tempfile::tempdir().map_err(ExampleError::io("making a temp dir"))?;
    let repo = Repo::init_bare(&dir.path().join("repo.git")).await?;
    let git = repo.version().await?;
    let members = cluster::joined(dir.path(), 2, "repo").await?;
    let (one, two) = (&members[0], &members[1]);
    let mut turns = vec![
        turn(one, "agent-1", &repo, ttl).await?,
        turn(two, "agent-2", &repo, ttl).await?,
    ];

    // agent-1 takes the lock and builds its commit, then stalls (as in a
    // long GC pause): it neither renews nor swaps while agent-2 waits for
    // the lease to run out, takes the lock and commits.
    let (stale_lock, mut stale) = prepare(one, "agent-1", &repo, ttl).await?;
    let stalled = Instant::now();
    turns.push(turn(two, "agent-2", &repo, ttl).await?);
    let pause = stalled.elapsed();
    let left_on_wake = stale_lock.valid_for();
    swap(&repo, &mut stale).await?;
    let head_at_refusal = match repo.head().await? {
        Some(head) if stale.refused.is_some() => {
            let token = repo.token_of(&head).await?;
            Some((head, token))
        }
        _ => None,
    };
    // Its lease is over: nothing to release.
    drop(stale_lock);

    let history = repo.history().await?;
    debug_assert!(
        history.len() <= turns.len() + 1,
        "one commit per accepted swap at most"
    );
    cluster::shutdown(members).await?;
    Ok(GitCasReport {
        git,
        ttl,
        turns,
        stale,
        pause,
        left_on_wake,
        head_at_refusal,
        history,
    })
}

fn granted(f: &mut fmt::Formatter<'_>, a: &Attempt) -> fmt::Result {
    writeln!(
        f,
        "{} on {}: lock {RESOURCE} granted after {} ms with fencing token {}; commit {} on {}",
        a.agent,
        a.node,
        a.waited.as_millis(),
        a.token,
        short(&a.commit),
        a.parent.as_deref().map_or("no branch yet", short)
    )
}

fn swapped(f: &mut fmt::Formatter<'_>, a: &Attempt) -> fmt::Result {
    let parent = a.parent.as_deref().map_or("no branch yet", short);
    match &a.refused {
        None => writeln!(
            f,
            "  {}: git update-ref main {} {parent}: accepted",
            a.agent,
            short(&a.commit)
        ),
        Some(why) => writeln!(
            f,
            "  {}: git update-ref main {} {parent}: REFUSED, git says: {why}",
            a.agent,
            short(&a.commit)
        ),
    }
}

impl fmt::Display for GitCasReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}; a bare repository made for this run", self.git)?;
        let (overtaker, before) = match self.turns.split_last() {
            Some((last, before)) => (Some(last), before),
            None => (None, &[][..]),
        };
        for a in before {
            granted(f, a)?;
            swapped(f, a)?;
        }
        granted(f, &self.stale)?;
        writeln!(
            f,
            "  {} stalls (no renewal, no swap) with lease ttl {} ms",
            self.stale.agent,
            self.ttl.as_millis()
        )?;
        if let Some(a) = overtaker {
            granted(f, a)?;
            swapped(f, a)?;
        }
        writeln!(
            f,
            "{} wakes after {} ms; its node sees {} ms of lease left; it tries its swap:",
            self.stale.agent,
            self.pause.as_millis(),
            self.left_on_wake.as_millis()
        )?;
        swapped(f, &self.stale)?;
        if let Some((head, token)) = &self.head_at_refusal {
            let token = token.map_or("none".to_owned(), |t| t.to_string());
            writeln!(
                f,
                "main was at {} carrying Fencing-Token: {token}",
                short(head)
            )?;
        }
        let log: Vec<String> = self
            .history
            .iter()
            .map(|(id, t)| {
                let t = t.map_or("none".to_owned(), |t| t.to_string());
                format!("{} (token {t})", short(id))
            })
            .collect();
        writeln!(f, "git log main, newest first: {}", log.join(", "))?;
        writeln!(
            f,
            "stale swap refused: {}; tokens increase along main: {}",
            self.stale_refused(),
            self.tokens_increase()
        )
    }
}
