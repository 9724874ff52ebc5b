//! Build script of the `clearline` binary: records the git commit it is built from, so
//! `clearline benchmark --output` can say which code produced a result.
//!
//! Sets `CLEARLINE_COMMIT` (the 40-hex commit) and `CLEARLINE_COMMIT_DIRTY` (`true` when tracked
//! source files differ from that commit) when the source is a git checkout and `git` runs; sets neither
//! otherwise (a source tarball), and the report then leaves the commit out. Never fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8(output.stdout).ok()?.trim().to_string())
}

fn watch(path: &Path) {
    // A path that does not exist would make cargo rerun the script on every build.
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The sources of the binary: the dirty flag covers these, and an edit to one reruns the script.
const SOURCES: [&str; 7] = [
    "build.rs",
    "Cargo.toml",
    "Cargo.lock",
    "src",
    "engine",
    "journal",
    "net",
];

fn main() {
    for path in SOURCES {
        watch(Path::new(path));
    }
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    if commit.len() != 40 || !commit.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return;
    }
    // HEAD, the branch it points to (loose or packed) and the index: a commit, checkout or
    // staging changes one of them.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        watch(&git_dir.join("HEAD"));
        watch(&git_dir.join("index"));
    }
    if let Some(common_dir) = git(&["rev-parse", "--git-common-dir"]) {
        let common_dir = PathBuf::from(common_dir);
        watch(&common_dir.join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&common_dir.join(branch));
        }
    }
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(SOURCES);
    let dirty = git(&status).is_some_and(|status| !status.is_empty());
    println!("cargo:rustc-env=CLEARLINE_COMMIT={commit}");
    println!("cargo:rustc-env=CLEARLINE_COMMIT_DIRTY={dirty}");
}
