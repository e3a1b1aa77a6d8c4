//! `concord`: the command-line face of Concord.
//!
//! Today it runs the README's main job (`concord demo`); the node daemon and
//! the control commands of DESIGN §7 arrive with the network driver. This
//! binary owns argument parsing and printing; it never implements protocol
//! logic of its own.

mod demo;
mod table;

use clap::{Parser, Subcommand};

/// Coordinate AI agents without a central server.
#[derive(Parser, Debug)]
#[command(name = "concord", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the demo scenario: several replicas coordinate and converge.
    Demo {
        /// Print the result as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { json } => demo::run(json),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
