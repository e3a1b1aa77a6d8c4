//! A bare git repository driven through the `git` command line: objects
//! written with plumbing commands (no work tree), commits carrying a
//! `Fencing-Token: N` trailer, and the branch moved only by
//! compare-and-swap (`git update-ref <ref> <new> <old>`).
//!
//! This module owns running `git`. It must never move a ref without naming
//! the value it expects there, never read a user's or the system's git
//! configuration, and never read more than [`MAX_GIT_OUTPUT_BYTES`] of a
//! command's output.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::ExampleError;

/// The branch the agents commit to.
pub(crate) const BRANCH: &str = "refs/heads/main";

/// The trailer recording the committer's fencing token.
pub(crate) const TOKEN_TRAILER: &str = "Fencing-Token";

/// Most bytes read from one git command's output (and, apart, its error
/// output); a longer output is an error.
pub(crate) const MAX_GIT_OUTPUT_BYTES: usize = 64 * 1024;

/// Reads `pipe` up to [`MAX_GIT_OUTPUT_BYTES`]; `true` if it had more.
fn bounded(pipe: Option<impl Read>) -> std::io::Result<(Vec<u8>, bool)> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        let limit = u64::try_from(MAX_GIT_OUTPUT_BYTES).unwrap_or(u64::MAX);
        pipe.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    }
    let more = bytes.len() > MAX_GIT_OUTPUT_BYTES;
    bytes.truncate(MAX_GIT_OUTPUT_BYTES);
    Ok((bytes, more))
}

/// The object id git uses for "this ref must not exist yet".
const NO_REF: &str = "0000000000000000000000000000000000000000";

/// A bare repository on disk.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    dir: PathBuf,
}

/// How a compare-and-swap of the branch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cas {
    /// The branch moved from the expected commit to the new one.
    Moved,
    /// git refused; its own words.
    Refused(String),
}

impl Repo {
    /// Creates a bare repository in `dir`.
    pub(crate) async fn init_bare(dir: &Path) -> Result<Repo, ExampleError> {
        let repo = Repo {
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(dir).map_err(ExampleError::io("creating the repository"))?;
        repo.ok(
            &["init", "--bare", "--quiet", "--initial-branch=main"],
            None,
        )
        .await?;
        Ok(repo)
    }

    /// `git --version`.
    pub(crate) async fn version(&self) -> Result<String, ExampleError> {
        self.ok(&["--version"], None).await
    }

    /// Runs `git args` in the repository, feeding it `stdin`.
    async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, ExampleError> {
        let dir = self.dir.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let input = stdin.map(<[u8]>::to_vec);
        let shown = args.join(" ");
        let failed = move |detail: String| ExampleError::Git {
            args: shown.clone(),
            detail,
        };
        let failed_too = failed.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new("git");
            command
                .arg("-C")
                .arg(&dir)
                .args(&args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_AUTHOR_NAME", "concord-examples")
                .env("GIT_AUTHOR_EMAIL", "agents@example.invalid")
                .env("GIT_COMMITTER_NAME", "concord-examples")
                .env("GIT_COMMITTER_EMAIL", "agents@example.invalid")
                .stdin(if input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = command
                .spawn()
                .map_err(|e| failed(format!("could not start git: {e}")))?;
            if let (Some(bytes), Some(mut pipe)) = (input, child.stdin.take()) {
                pipe.write_all(&bytes)
                    .map_err(|e| failed(format!("writing to git: {e}")))?;
            }
            // Errors are read beside the output, so that neither pipe fills
            // while the other is read; both bounded.
            let errors = child.stderr.take();
            let errors = std::thread::spawn(move || bounded(errors));
            let read = bounded(child.stdout.take());
            let finished = child.wait();
            let (stdout, too_long) = read.map_err(|e| failed(format!("reading git: {e}")))?;
            let stderr = match errors.join() {
                Ok(Ok((stderr, _))) => stderr,
                _ => Vec::new(),
            };
            if too_long {
                return Err(ExampleError::GitOutputTooLarge {
                    max: MAX_GIT_OUTPUT_BYTES,
                });
            }
            let status = finished.map_err(|e| failed(format!("waiting for git: {e}")))?;
            Ok(Output {
                status,
                stdout,
                stderr,
            })
        })
        .await
        .map_err(|e| failed_too(format!("git's thread: {e}")))?
    }

    /// Runs `git args`, which must succeed; returns its output, trimmed.
    async fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, ExampleError> {
        let out = self.run(args, stdin).await?;
        if !out.status.success() {
            return Err(ExampleError::Git {
                args: args.join(" "),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The commit the branch points at, if it exists.
    pub(crate) async fn head(&self) -> Result<Option<String>, ExampleError> {
        let out = self
            .run(&["rev-parse", "--verify", "--quiet", BRANCH], None)
            .await?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((out.status.success() && !id.is_empty()).then_some(id))
    }

    /// Writes a commit (not yet on any branch) whose tree holds `file`
    /// with `content`, on top of `parent`, its message `subject` with the
    /// trailer `Fencing-Token: token`. Returns its id.
    pub(crate) async fn commit(
        &self,
        parent: Option<&str>,
        file: &str,
        content: &str,
        subject: &str,
        token: u64,
    ) -> Result<String, ExampleError> {
        let blob = self
            .ok(&["hash-object", "-w", "--stdin"], Some(content.as_bytes()))
            .await?;
        let entry = format!("100644 blob {blob}\t{file}\n");
        let tree = self.ok(&["mktree"], Some(entry.as_bytes())).await?;
        let message = format!("{subject}\n\n{TOKEN_TRAILER}: {token}\n");
        let mut args = vec!["commit-tree", tree.as_str()];
        if let Some(parent) = parent {
            args.extend(["-p", parent]);
        }
        self.ok(&args, Some(message.as_bytes())).await
    }

    /// Moves the branch to `new` if it is at `expected` (or does not exist
    /// yet, for `None`), atomically.
    pub(crate) async fn compare_and_swap(
        &self,
        new: &str,
        expected: Option<&str>,
    ) -> Result<Cas, ExampleError> {
        let old = expected.unwrap_or(NO_REF);
        let out = self.run(&["update-ref", BRANCH, new, old], None).await?;
        Ok(if out.status.success() {
            Cas::Moved
        } else {
            Cas::Refused(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        })
    }

    /// The fencing token in `commit`'s trailer, if it has one.
    pub(crate) async fn token_of(&self, commit: &str) -> Result<Option<u64>, ExampleError> {
        let format = format!("--format=%(trailers:key={TOKEN_TRAILER},valueonly)");
        let out = self.ok(&["log", "-1", &format, commit], None).await?;
        Ok(out.trim().parse().ok())
    }

    /// The branch's history, newest first: each commit with its token.
    pub(crate) async fn history(&self) -> Result<Vec<(String, Option<u64>)>, ExampleError> {
        let format =
            format!("--format=%H %(trailers:key={TOKEN_TRAILER},valueonly,separator=%x2C)");
        let out = self.ok(&["log", &format, BRANCH], None).await?;
        Ok(out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let (id, token) = line.split_once(' ').unwrap_or((line, ""));
                (id.to_owned(), token.trim().parse().ok())
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_output_over_the_limit_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init_bare(dir.path()).await.unwrap();
        let at_limit = "a".repeat(MAX_GIT_OUTPUT_BYTES);
        let blob = repo
            .ok(&["hash-object", "-w", "--stdin"], Some(at_limit.as_bytes()))
            .await
            .unwrap();
        let out = repo.run(&["cat-file", "-p", &blob], None).await.unwrap();
        assert_eq!(out.stdout.len(), MAX_GIT_OUTPUT_BYTES);
        let over = format!("{at_limit}b");
        let blob = repo
            .ok(&["hash-object", "-w", "--stdin"], Some(over.as_bytes()))
            .await
            .unwrap();
        match repo.run(&["cat-file", "-p", &blob], None).await {
            Err(ExampleError::GitOutputTooLarge { max }) => assert_eq!(max, MAX_GIT_OUTPUT_BYTES),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_swap_from_a_stale_head_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init_bare(dir.path()).await.unwrap();
        let first = repo.commit(None, "f", "1", "first", 1).await.unwrap();
        assert_eq!(
            repo.compare_and_swap(&first, None).await.unwrap(),
            Cas::Moved
        );
        let second = repo
            .commit(Some(&first), "f", "2", "second", 2)
            .await
            .unwrap();
        // Expecting no branch, while it exists: refused.
        assert!(matches!(
            repo.compare_and_swap(&second, None).await.unwrap(),
            Cas::Refused(_)
        ));
        assert_eq!(
            repo.compare_and_swap(&second, Some(&first)).await.unwrap(),
            Cas::Moved
        );
        assert_eq!(repo.token_of(&second).await.unwrap(), Some(2));
        let history = repo.history().await.unwrap();
        assert_eq!(history, [(second, Some(2)), (first, Some(1))]);
    }
}
