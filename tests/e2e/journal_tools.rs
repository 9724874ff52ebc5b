//! The offline journal tools of the real binary: `clearline journal verify` and `inspect` take
//! the data directory (the one `start --data` takes) or its `journal` folder, and never report
//! OK for a directory that holds no journal.

use std::path::Path;
use std::time::Duration;

use clearline_engine::Operation;

use crate::support::{
    account, clearline_command, data_dir, encode_accounts, request_ok, run_until_exit, Options,
    Server, LEDGER,
};

/// What one run of a `clearline journal` tool gave.
pub struct ToolRun {
    /// Whether it exited 0.
    pub success: bool,
    /// Its exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `clearline journal TOOL DIR` with a deadline.
pub fn journal_tool(tool: &str, dir: &Path) -> ToolRun {
    let output = run_until_exit(
        clearline_command().arg("journal").arg(tool).arg(dir),
        Duration::from_secs(30),
    );
    ToolRun {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A data directory with a journal of a few records, its server stopped.
fn data_with_records() -> tempfile::TempDir {
    let data = data_dir();
    let mut server = Server::start(data.path(), &Options::new("data"));
    let mut client = server.client();
    for id in 1..=3u128 {
        let body = encode_accounts(&[account(id, LEDGER, 0)]);
        request_ok(&mut client, Operation::CreateAccounts, &body);
    }
    drop(client);
    assert!(server.terminate().success(), "{}", server.output());
    data
}

#[test]
fn journal_verify_and_inspect_accept_the_data_directory() {
    let data = data_with_records();
    let journal = data.path().join("journal");
    for dir in [data.path(), journal.as_path()] {
        let run = journal_tool("verify", dir);
        assert!(
            run.success,
            "verify {}: {}{}",
            dir.display(),
            run.stdout,
            run.stderr
        );
        assert!(run.stdout.contains(": OK"), "{}", run.stdout);
        assert!(
            run.stdout.contains(&journal.display().to_string()),
            "verify names the journal directory it checked: {}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("records checked:    3 (sequences 1..=3)"),
            "verify {} checked the three records: {}",
            dir.display(),
            run.stdout
        );
        let run = journal_tool("inspect", dir);
        assert!(run.success, "inspect {}: {}", dir.display(), run.stderr);
        assert!(
            run.stdout.contains("segment-0000000000000000.log"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("3 record(s)"), "{}", run.stdout);
        assert!(run.stdout.contains("verify: OK"), "{}", run.stdout);
    }
}

#[test]
fn journal_tools_fail_on_a_directory_without_a_journal() {
    let empty = data_dir();
    let data_without_journal = data_dir();
    std::fs::create_dir(data_without_journal.path().join("journal")).expect("mkdir journal");
    let missing = empty.path().join("missing");
    let cases = [
        ("an empty directory", empty.path(), "no journal"),
        (
            "a data directory whose journal folder is empty",
            data_without_journal.path(),
            "no journal",
        ),
        ("a missing directory", missing.as_path(), "no such"),
    ];
    for (case, dir, message) in cases {
        for tool in ["verify", "inspect"] {
            let run = journal_tool(tool, dir);
            assert!(
                !run.success,
                "{tool} on {case} must fail; it printed:\n{}",
                run.stdout
            );
            assert_eq!(run.code, Some(1), "{tool} on {case}: exit code");
            assert!(
                !run.stdout.contains("OK"),
                "{tool} on {case}: {}",
                run.stdout
            );
            assert!(
                run.stderr.contains(message),
                "{tool} on {case}: the message says what is wrong: {}",
                run.stderr
            );
        }
    }
}
