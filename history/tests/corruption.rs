//! Damaged files in a history store are reported as errors, never ignored and never a panic.

mod support;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use clearline_engine::{AccountFilter, AccountFilterFlags, QueryFilter};
use clearline_history::{History, HistoryConfig, HistoryError};
use support::{Generator, Model, ACCOUNTS, CACHE_BYTES};

fn files(directory: &Path, out: &mut Vec<(PathBuf, u64)>) {
    for entry in fs::read_dir(directory).expect("read directory").flatten() {
        let path = entry.path();
        let metadata = entry.metadata().expect("metadata");
        if metadata.is_dir() {
            files(&path, out);
        } else {
            out.push((path, metadata.len()));
        }
    }
}

/// A store of three runs, closed; returns the model and the key spaces' directories.
fn build(directory: &Path, seed: u64) -> (Model, Vec<(&'static str, PathBuf)>) {
    let history = support::open(directory);
    let mut generator = Generator::new(seed);
    let mut model = Model::default();
    for _ in 0..3 {
        let (run, watermark) = generator.run(2_000);
        history.ingest(&run, watermark).expect("ingest");
        model.add(&run, watermark);
    }
    (model, history.key_space_paths().to_vec())
}

/// Opens the store and reads everything; the first error, if any.
fn open_and_read_all(directory: &Path, model: &Model) -> Result<(), HistoryError> {
    let history = History::open(&HistoryConfig {
        directory: directory.to_path_buf(),
        cache_bytes: CACHE_BYTES,
    })?;
    for transfer in &model.transfers {
        history.transfer_in(transfer.id, transfer.flags().settlement())?;
        history.transfer_at(transfer.timestamp)?;
    }
    for burned in &model.burned_ids {
        history.burned(burned.id)?;
    }
    for resolution in &model.resolutions {
        history.resolution(resolution.id, resolution.settlement)?;
    }
    let mut out = Vec::new();
    let mut balances = Vec::new();
    for account_id in 1..=u128::from(ACCOUNTS) {
        let filter = AccountFilter {
            account_id,
            limit: u32::MAX,
            flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
            ..AccountFilter::default()
        };
        history.account_transfers(&filter, &mut out)?;
        history.account_balances(&filter, &mut balances)?;
    }
    let everything = QueryFilter {
        limit: u32::MAX,
        ..QueryFilter::default()
    };
    history.query_transfers(&everything, &mut out)?;
    Ok(())
}

#[test]
fn flipped_bytes_in_the_largest_table_are_reported() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (model, _) = build(directory.path(), 0xC0DE);
    assert!(open_and_read_all(directory.path(), &model).is_ok());

    let mut all = Vec::new();
    files(directory.path(), &mut all);
    let (largest, size) = all
        .iter()
        .max_by_key(|(_, size)| *size)
        .cloned()
        .expect("a file");
    assert!(size > 32_768, "{largest:?} is only {size} bytes");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&largest)
        .expect("open table");
    // One byte in every 4 KiB of the first half: every data block there is damaged.
    for offset in (0..size / 2).step_by(4096) {
        let mut byte = [0u8; 1];
        file.seek(SeekFrom::Start(offset + 100)).expect("seek");
        file.read_exact(&mut byte).expect("read");
        byte[0] ^= 0x5A;
        file.seek(SeekFrom::Start(offset + 100)).expect("seek");
        file.write_all(&byte).expect("write");
    }
    file.sync_all().expect("sync");
    drop(file);

    let result = open_and_read_all(directory.path(), &model);
    assert!(
        result.as_ref().is_err_and(HistoryError::is_corruption),
        "{largest:?}: {result:?}"
    );
}

#[test]
fn a_truncated_meta_table_is_reported() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (model, paths) = build(directory.path(), 0xC0DF);
    let meta = paths
        .iter()
        .find(|(name, _)| *name == "meta")
        .map(|(_, path)| path.clone())
        .expect("meta key space");
    let mut tables = Vec::new();
    files(&meta, &mut tables);
    let mut truncated = 0;
    for (path, size) in &tables {
        if path
            .parent()
            .is_some_and(|parent| parent.ends_with("tables"))
            && *size > 0
        {
            let file = OpenOptions::new().write(true).open(path).expect("open");
            file.set_len(size / 2).expect("truncate");
            truncated += 1;
        }
    }
    assert!(truncated > 0, "no meta table among {tables:?}");

    let result = open_and_read_all(directory.path(), &model);
    assert!(
        result.as_ref().is_err_and(HistoryError::is_corruption),
        "{result:?}"
    );
}

#[test]
fn a_missing_key_space_under_a_watermark_is_reported() {
    for (index, missing) in ["account_runs", "balances", "burned_ids", "resolutions"]
        .into_iter()
        .enumerate()
    {
        let directory = tempfile::tempdir().expect("temporary directory");
        let (model, paths) = build(directory.path(), 0xC0E0 + index as u64);
        let (_, path) = paths
            .iter()
            .find(|(name, _)| *name == missing)
            .expect("key space");
        fs::remove_dir_all(path).expect("remove key space");
        let result = open_and_read_all(directory.path(), &model);
        assert!(
            result.as_ref().is_err_and(
                |error| error.is_corruption() || matches!(error, HistoryError::Fjall { .. })
            ),
            "{missing}: {result:?}"
        );
    }
}
