//! Helpers shared by the benches that write files (`history`, `journal`).

use std::path::PathBuf;

/// A fresh directory under `$CLEARLINE_BENCH_DIR` (default: the system temporary directory),
/// removed when dropped.
pub fn temporary_dir() -> tempfile::TempDir {
    let root =
        std::env::var_os("CLEARLINE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&root).expect("benchmark directory");
    tempfile::tempdir_in(root).expect("temporary directory")
}
