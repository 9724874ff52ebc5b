//! The `clearline` command: wiring of engine, journal and network, and the CLI subcommands.
//!
//! The binary holds no business rules: `start` wires the network layer, the core thread, the
//! journal and the engine together; `repl` and `benchmark` are clients; `journal` reads a journal
//! offline.

mod benchmark;
mod benchmark_orders;
mod cli;
mod core;
mod plot;
mod record;
mod repl;
mod server;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Start(args) => server::run(&args),
        cli::Command::Repl(args) => repl::run(&args),
        cli::Command::Benchmark(args) => benchmark::run(&args),
        cli::Command::Journal(cli::JournalCommand::Verify { dir }) => {
            match clearline_journal::verify(&dir) {
                Ok(report) => {
                    println!("{report}");
                    Ok(())
                }
                Err(error) => Err(format!("journal verify {}: {error}", dir.display()).into()),
            }
        }
        cli::Command::Journal(cli::JournalCommand::Inspect { dir }) => {
            match clearline_journal::inspect(&dir) {
                Ok(report) => {
                    println!("{report}");
                    Ok(())
                }
                Err(error) => Err(format!("journal inspect {}: {error}", dir.display()).into()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("clearline: {error}");
            ExitCode::FAILURE
        }
    }
}
