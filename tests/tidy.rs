//! Checks that clippy cannot make: every Rust file starts with a `//!` module doc, no line is
//! longer than 100 columns, no to-do marker lacks an issue number, and `unsafe` code appears
//! only in `journal/src/mmap.rs`.

use std::fs;
use std::path::{Path, PathBuf};

const LINE_COLUMNS_MAX: usize = 100;
const UNSAFE_ALLOWED: &str = "journal/src/mmap.rs";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn project_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    for dir in [
        "src",
        "engine",
        "journal",
        "history",
        "replication",
        "net",
        "test-support",
        "benches",
        "tests",
        "fuzz",
    ] {
        rust_files(&root.join(dir), &mut paths);
    }
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no Rust files found under {}",
        root.display()
    );
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).expect("project files are UTF-8");
            let relative = path.strip_prefix(root).expect("under the root");
            (relative.to_string_lossy().replace('\\', "/"), text)
        })
        .collect()
}

#[test]
fn every_file_starts_with_a_module_doc() {
    for (path, text) in project_files() {
        let first = text
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("");
        assert!(
            first.starts_with("//!"),
            "{path}: the first line must be a `//!` module doc"
        );
    }
}

#[test]
fn no_line_is_longer_than_100_columns() {
    for (path, text) in project_files() {
        for (index, line) in text.lines().enumerate() {
            let columns = line.chars().count();
            assert!(
                columns <= LINE_COLUMNS_MAX,
                "{path}:{}: {columns} columns (at most {LINE_COLUMNS_MAX})",
                index + 1
            );
        }
    }
}

#[test]
fn every_todo_names_an_issue() {
    let marker = ["TO", "DO"].concat();
    for (path, text) in project_files() {
        for (index, line) in text.lines().enumerate() {
            if let Some(at) = line.find(&marker) {
                let rest = &line[at + marker.len()..];
                assert!(
                    rest.starts_with("(#"),
                    "{path}:{}: write `{marker}(#N)` with the issue number",
                    index + 1
                );
            }
        }
    }
}

#[test]
fn unsafe_code_lives_only_in_the_mmap_module() {
    let needles = [
        ["un", "safe {"].concat(),
        ["un", "safe fn"].concat(),
        ["un", "safe impl"].concat(),
    ];
    for (path, text) in project_files() {
        if path == UNSAFE_ALLOWED {
            continue;
        }
        for (index, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for needle in &needles {
                assert!(
                    !code.contains(needle.as_str()),
                    "{path}:{}: `unsafe` is allowed only in {UNSAFE_ALLOWED}",
                    index + 1
                );
            }
        }
    }
}
