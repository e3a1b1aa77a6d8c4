//! `concord lock --data DIR SPACE RESOURCE [--ttl SECS] -- CMD...`: runs CMD
//! while the node in DIR holds the lease on RESOURCE (DESIGN §7).
//!
//! The node takes the lease (waiting while another holder has it) and keeps
//! it renewed for as long as this process keeps its control connection open
//! (see [`crate::control`]). CMD runs with `CONCORD_FENCING_TOKEN` and
//! `CONCORD_RESOURCE` in its environment; when it exits the connection is
//! half-closed, the node releases the lease, and `concord lock` exits with
//! CMD's exit code. If the lease is lost while CMD runs (renewal failed, the
//! node stopped), CMD is killed and `concord lock` fails: CMD must not go on
//! believing it holds the lock.
//!
//! This module owns CMD's process and its environment; it never talks to
//! the lease service itself (the node does) and prints nothing on stdout,
//! which belongs to CMD.

use std::net::Shutdown;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::client::Client;
use crate::control::{LockGranted, LockReleased, Request};

/// Environment variable carrying the lease's fencing token to CMD.
pub const TOKEN_ENV: &str = "CONCORD_FENCING_TOKEN";
/// Environment variable carrying the resource name to CMD.
pub const RESOURCE_ENV: &str = "CONCORD_RESOURCE";

/// How often the wait for CMD looks at the control connection.
const POLL: Duration = Duration::from_millis(10);
/// How long to wait for the node to confirm the release.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `command` under the lease on `resource`; returns its exit code.
pub fn run(
    data: &Path,
    space: String,
    resource: String,
    ttl_secs: u64,
    command: &[String],
) -> Result<i32> {
    let Some((program, args)) = command.split_first() else {
        bail!("no command to run: concord lock --data DIR SPACE RESOURCE -- CMD...");
    };
    concord::Resource::new(resource.as_str()).map_err(|e| anyhow!("{e}"))?;
    let ttl_ms = ttl_secs
        .checked_mul(1000)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| anyhow!("--ttl must be between 1 and {} seconds", u64::MAX / 1000))?;
    let mut client = Client::send(
        data,
        &Request::Lock {
            space,
            resource: resource.clone(),
            ttl_ms,
        },
    )?;
    let granted: LockGranted = client.expect()?;
    let connection = client.stream()?;
    // The node says nothing more until we hang up, unless the lease is lost.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(client.next());
    });
    let done = || -> Result<()> {
        connection
            .shutdown(Shutdown::Write)
            .context("telling the node to release the lock")?;
        match rx.recv_timeout(RELEASE_TIMEOUT) {
            Ok(Ok(Some(released))) => {
                serde_json::from_value::<LockReleased>(released)
                    .context("the node sent a reply of an unexpected shape")?;
                Ok(())
            }
            Ok(Ok(None)) => bail!("the node closed the connection before confirming the release"),
            Ok(Err(e)) => Err(e.context("releasing the lock")),
            Err(_) => bail!("the node did not confirm the release within {RELEASE_TIMEOUT:?}"),
        }
    };
    let spawned = Command::new(program)
        .args(args)
        .env(TOKEN_ENV, granted.token.to_string())
        .env(RESOURCE_ENV, &granted.resource)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            done()?;
            bail!("running {program}: {e}");
        }
    };
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the command")? {
            break status;
        }
        let why = match rx.recv_timeout(POLL) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(_)) | Err(RecvTimeoutError::Disconnected) => {
                "the node closed the connection".to_owned()
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        bail!("lost the lock on {resource} while {program} ran, so it was killed: {why}");
    };
    if let Err(e) = done() {
        // The lease still ends at its expiry; CMD's outcome is what matters.
        eprintln!("warning: {e:#}");
    }
    Ok(exit_code(status))
}

/// The exit code to pass on: CMD's own, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
