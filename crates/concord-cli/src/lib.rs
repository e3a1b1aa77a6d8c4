//! `concord`: the command-line face of Concord (DESIGN §7), as a library so
//! that test crates can build the very same program under another name.
//!
//! `concord node` runs a node and serves a control socket in its data
//! directory; `put`, `get`, `watch`, `lock`, `inspect` and `export` talk to that node
//! through the socket; `top` shows a space live in the terminal; `demo`
//! runs the README's main job in one process. `node --metrics ADDR` also
//! serves Prometheus metrics (the `metrics` module); the `otel` feature
//! exports the tracing spans (`otel`).
//! This crate owns argument parsing, the control protocol and printing; it
//! never implements replication or protocol logic of its own (the `concord`
//! facade does).

mod backup;
mod client;
mod cmd_backup;
mod cmd_client;
mod cmd_lock;
mod cmd_node;
mod control;
mod demo;
mod metrics;
#[cfg(feature = "otel")]
mod otel;
mod table;
mod top;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Coordinate AI agents without a central server.
#[derive(Parser, Debug)]
#[command(name = "concord", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every node-facing command takes.
#[derive(Args, Debug)]
struct Common {
    /// The node's data directory (identity, spaces, control socket).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Print JSON for machines instead of text for humans.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node until SIGINT/SIGTERM, serving the other commands locally.
    Node {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: cmd_node::NodeArgs,
    },
    /// Print the node's peer id (creating its identity if DIR has none), e.g.
    /// to list it in other nodes' `--lease-peer` or `--allow` before it starts.
    Id {
        #[command(flatten)]
        common: Common,
    },
    /// Write a JSON value to a channel.
    Put {
        #[command(flatten)]
        common: Common,
        /// Write an ephemeral value (a heartbeat, presence): kept in memory
        /// and gossiped, never stored; it lives SECS seconds. A new channel
        /// is declared ephemeral with this TTL; one declared already keeps
        /// its own (the output says which applies).
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        /// The space.
        space: String,
        /// The channel, `family/name` (e.g. `observation/ci.status`).
        path: String,
        /// The value as JSON (a string needs quotes: '"green"').
        value: String,
    },
    /// Print a channel's visible value.
    Get {
        #[command(flatten)]
        common: Common,
        /// The space.
        space: String,
        /// The channel, `family/name`.
        path: String,
    },
    /// Print one JSON line per event on matching channels until interrupted.
    Watch {
        #[command(flatten)]
        common: Common,
        /// The space.
        space: String,
        /// A glob on channel paths, e.g. `intent/*` or `**`.
        pattern: String,
    },
    /// Run CMD while holding the lease on RESOURCE (waiting for other
    /// holders), with CONCORD_FENCING_TOKEN and CONCORD_RESOURCE in its
    /// environment; exits with CMD's exit code.
    Lock {
        /// The node's data directory.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The space whose `coordination/lock_holders` shows the holder.
        space: String,
        /// The resource to lock, e.g. `github.main`.
        resource: String,
        /// The lease's time to live; while CMD runs it is renewed whenever
        /// half of its remaining validity has passed.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        ttl: u64,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Show peers, vector clocks, channels and queue sizes.
    Inspect {
        #[command(flatten)]
        common: Common,
        /// Only this space (default: every space the node has open).
        space: Option<String>,
    },
    /// A live terminal view of a space: peers (round trip, bytes), vector
    /// clock, channels with their last writer, locks, queues and an event
    /// timeline; `q` quits.
    Top {
        /// The node's data directory.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The space.
        space: String,
    },
    /// Dump a space as JSON or as an automerge document.
    Export {
        #[command(flatten)]
        common: Common,
        /// The space.
        space: String,
        /// `json`: every channel's visible value; `automerge`: the document.
        #[arg(long, value_enum)]
        format: control::ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write a consistent, checksummed backup of one space to FILE (taken by
    /// the node running in DIR, or from DIR's files when none runs).
    Backup {
        #[command(flatten)]
        common: Common,
        /// The space.
        space: String,
        /// The backup file (replaced atomically if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup into a new data directory DIR (with a new node
    /// identity), from which `concord node --data DIR` serves the space.
    Restore {
        #[command(flatten)]
        common: Common,
        /// The backup file.
        file: PathBuf,
    },
    /// Run the demo scenario: several replicas coordinate and converge.
    Demo {
        /// Print the result as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Node { common, args } => cmd_node::run(&common.data, args, common.json),
        Command::Id { common } => cmd_node::id(&common.data, common.json),
        Command::Put {
            common,
            ttl,
            space,
            path,
            value,
        } => {
            let ttl_ms = ttl.map(|secs| secs.saturating_mul(1_000));
            cmd_client::put(&common.data, space, path, &value, ttl_ms, common.json)
        }
        Command::Get {
            common,
            space,
            path,
        } => cmd_client::get(&common.data, space, path, common.json),
        Command::Watch {
            common,
            space,
            pattern,
        } => cmd_client::watch(&common.data, space, pattern),
        Command::Lock {
            data,
            space,
            resource,
            ttl,
            command,
        } => {
            let code = cmd_lock::run(&data, space, resource, ttl, &command)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Inspect { common, space } => cmd_client::inspect(&common.data, space, common.json),
        Command::Top { data, space } => top::run(&data, space),
        Command::Export {
            common,
            space,
            format,
            out,
        } => cmd_client::export(&common.data, space, format, out, common.json),
        Command::Backup { common, space, out } => {
            cmd_backup::backup(&common.data, &space, &out, common.json)
        }
        Command::Restore { common, file } => cmd_backup::restore(&common.data, &file, common.json),
        Command::Demo { json } => demo::run(json),
    }
}

/// Runs `concord` with the process's arguments and exits non-zero on error.
pub fn main() {
    let result = {
        let _telemetry = init_tracing();
        run(Cli::parse().command)
        // Exported spans are flushed here, before any exit.
    };
    if let Err(e) = result {
        let broken_pipe = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
        if broken_pipe {
            // The reader went away (`concord watch ... | head`): nothing left to say.
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Keeps the export of spans (feature `otel`) running until dropped.
struct Telemetry {
    #[cfg(feature = "otel")]
    _otel: Option<otel::Otel>,
}

/// Logs to stderr under `RUST_LOG` (default `warn`); with the `otel`
/// feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, the same spans also go
/// out over OTLP.
fn init_tracing() -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(stderr);
    #[cfg(feature = "otel")]
    {
        let (layer, otel) = otel::from_env().unzip();
        registry.with(layer).init();
        Telemetry { _otel: otel }
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        Telemetry {}
    }
}
