//! The `clearline` command: wiring of engine, journal and network, and the CLI subcommands.

use clap::{Parser, Subcommand};

/// clearline: a low-latency in-memory settlement and matching engine.
#[derive(Parser)]
#[command(name = "clearline", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the data directory if needed, recover, and serve.
    Start,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Start => {
            eprintln!("clearline: the server is not built yet");
            std::process::exit(2);
        }
    }
}
