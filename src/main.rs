//! The `clearline` command: wiring of engine, journal and network, and the CLI subcommands.
//!
//! The binary holds no business rules: `start` wires the network layer, the core thread, the
//! journal and the engine together; `repl` and `benchmark` are clients (`benchmark compare` reads
//! saved results); `journal` reads a journal offline.

/// Prints a line to standard output, ignoring a closed or broken stdout: the server must
/// never stop because whoever read its messages went away (`println!` would panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Prints to standard output without a newline (and flushes), ignoring a broken stdout.
macro_rules! say_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        let _ = write!(stdout, $($arg)*);
        let _ = stdout.flush();
    }};
}

/// Prints a line to standard error, ignoring a broken stderr.
macro_rules! warn {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Large allocations (the engine's stores) on transparent huge pages: the fork that starts a
/// checkpoint copies the page tables, and pauses the core for that long (docs/durability.md).
#[global_allocator]
static ALLOCATOR: clearline_journal::HugePageAllocator = clearline_journal::HugePageAllocator;

mod benchmark;
mod benchmark_orders;
mod cli;
mod compare;
mod core;
mod history;
mod node;
mod plot;
mod repl;
mod replica;
mod report;
mod request_record;
mod start;
mod tigerbeetle;

use std::process::ExitCode;

use clap::Parser;

/// Runs the offline journal tool `name` on the journal of the data directory `data` and prints
/// its report.
fn run_journal_tool<Report: std::fmt::Display>(
    name: &str,
    data: &std::path::Path,
    tool: fn(&std::path::Path) -> Result<Report, clearline_journal::JournalError>,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = start::journal_dir_of(data);
    match tool(&dir) {
        Ok(report) => {
            say!("{report}");
            Ok(())
        }
        Err(error) => Err(journal_tool_error(name, &dir, &error).into()),
    }
}

/// The message of a failed offline journal tool; a directory without a journal gets a hint.
fn journal_tool_error(
    tool: &str,
    dir: &std::path::Path,
    error: &clearline_journal::JournalError,
) -> String {
    let hint = match error {
        clearline_journal::JournalError::NoJournal { .. } => {
            "; give the data directory of `clearline start --data` or its journal folder"
        }
        _ => "",
    };
    format!("journal {tool} {}: {error}{hint}", dir.display())
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Start(args) => start::run(&args),
        cli::Command::Repl(args) => repl::run(&args),
        cli::Command::Benchmark(args) => match &args.command {
            Some(cli::BenchmarkCommand::Compare(compare)) => compare::run(compare),
            None => benchmark::run(&args),
        },
        cli::Command::Journal(cli::JournalCommand::Verify { dir }) => {
            run_journal_tool("verify", &dir, clearline_journal::verify)
        }
        cli::Command::Journal(cli::JournalCommand::Inspect { dir }) => {
            run_journal_tool("inspect", &dir, clearline_journal::inspect)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            warn!("clearline: {error}");
            if error.is::<core::ReplayFailed>() {
                ExitCode::from(core::EXIT_REPLAY_FAILED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
