//! Catching up from a checkpoint (docs/replication.md, "Catching up from a checkpoint"): a
//! backup that needs records its primary already retired gets the primary's newest
//! checkpoint, the start of the segment file that holds the checkpoint's record, and in
//! history mode a copy of the history store; it stages them beside its data, and the next
//! start puts them in place of its journal and store and streams the rest. A diverged node
//! that cannot be cut back asks the next start to set its data aside (docs/replication.md,
//! "Divergence"), and then catches up as a new node.
//!
//! Invariants:
//! - the staging directory is complete only once it is renamed from `catch-up.tmp` to
//!   `catch-up`, after every byte was checked against the sizes and totals the primary sent
//!   and synced; a start finds either an unfinished stage, which it deletes (the backup asks
//!   again), or a finished one, which it installs;
//! - installing is idempotent: each directory is moved in only while the stage still holds
//!   it, so a crash during the install finishes it at the next start;
//! - the store copy is taken after the checkpoint was written, so it holds everything the
//!   checkpoint left out (the records evicted before it); it may hold more, which recovery
//!   expects (docs/history.md, "Recovery");
//! - nothing is moved while open: a set-aside request and a finished catch-up are carried out
//!   by the next start, before the journal and the store open;
//! - a chunk from the primary is checked (part, place, size, decompressed size) before a byte
//!   of it is written, and none of it can make the backup panic.

use std::fs::{self, File};
use std::io;
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clearline_history::{CopyReport, History, HistoryConfig, HistoryError};
use clearline_journal::{checkpoint_file_name, parse_checkpoint_name, segment_file_name};
use clearline_replication::frame::{CatchUpPart, Message, CATCH_UP_LZ4, CATCH_UP_STORE};
use lz4_flex::block;

use super::{lock, send, BoxError, Replication};
use crate::history::HISTORY_DIR_NAME;
use crate::node::{epoch_to_file, write_synced, EPOCH_FILE_NAME};
use crate::start::JOURNAL_DIR_NAME;

/// Where a catch-up is written while it arrives.
const STAGING_DIR_NAME: &str = "catch-up.tmp";
/// A catch-up that arrived whole, waiting for the next start to install it.
const STAGED_DIR_NAME: &str = "catch-up";
/// Names the directory the next start moves a diverged node's data into.
const SET_ASIDE_REQUEST_NAME: &str = "set-aside.request";
/// The start of the names of directories holding a diverged node's data.
const SET_ASIDE_PREFIX: &str = "set-aside-";
/// Bytes of one chunk of a catch-up, before compression.
const CHUNK_BYTES: usize = 1 << 20;
/// The uncompressed size before each compressed chunk.
const LZ4_PREFIX: usize = 4;
/// The largest chunk a backup decompresses (a primary sends at most [`CHUNK_BYTES`]).
const CHUNK_BYTES_MAX: usize = 4 << 20;
/// Store chunks queued for the thread that loads them.
const STORE_CHUNKS_QUEUED: usize = 4;
/// The cache of the store being loaded (it is only written).
const STAGING_STORE_CACHE_BYTES: u64 = 16 << 20;

/// Keeps a sender at or below a rate.
struct Throttle {
    bytes_per_second: u64,
    started: Instant,
    sent: u64,
}

impl Throttle {
    fn new(bytes_per_second: u64) -> Throttle {
        Throttle {
            bytes_per_second,
            started: Instant::now(),
            sent: 0,
        }
    }

    fn sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
        if self.bytes_per_second == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.sent as f64 / self.bytes_per_second as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// Sends the chunks of one catch-up, each compressed into one LZ4 block.
struct ChunkSender<'a> {
    stream: &'a mut TcpStream,
    out: &'a mut [u8],
    epoch: u64,
    throttle: Throttle,
    /// The compressed chunk: its uncompressed size, then the block.
    block: Vec<u8>,
    /// Bytes of chunks sent, compressed.
    sent: u64,
}

impl ChunkSender<'_> {
    fn send(&mut self, part: CatchUpPart, offset: u64, bytes: &[u8]) -> Result<(), BoxError> {
        compress_chunk(bytes, &mut self.block);
        send(
            self.stream,
            self.out,
            self.epoch,
            Message::CatchUpChunk {
                part,
                offset,
                bytes: &self.block,
            },
        )?;
        self.throttle.sent(self.block.len());
        self.sent += self.block.len() as u64;
        Ok(())
    }
}

/// Compresses `input` (at most [`CHUNK_BYTES`]) into `out`: its size as a little-endian u32,
/// then one LZ4 block.
fn compress_chunk(input: &[u8], out: &mut Vec<u8>) {
    assert!(input.len() <= CHUNK_BYTES);
    out.clear();
    out.resize(LZ4_PREFIX + block::get_maximum_output_size(input.len()), 0);
    let size = u32::try_from(input.len()).expect("a chunk is at most 1 MiB");
    out[..LZ4_PREFIX].copy_from_slice(&size.to_le_bytes());
    let written = block::compress_into(input, &mut out[LZ4_PREFIX..])
        .expect("the output has room for the largest block");
    out.truncate(LZ4_PREFIX + written);
}

/// The bytes of a chunk that `compress_chunk` wrote, decompressed into `out`.
fn decompress_chunk<'a>(chunk: &[u8], out: &'a mut [u8]) -> Result<&'a [u8], BoxError> {
    let Some((size, compressed)) = chunk.split_first_chunk::<LZ4_PREFIX>() else {
        return Err("a compressed chunk shorter than its size".into());
    };
    let size = u32::from_le_bytes(*size) as usize;
    if size == 0 || size > out.len() {
        return Err(format!("a compressed chunk of {size} bytes (at most {})", out.len()).into());
    }
    let written = block::decompress_into(compressed, &mut out[..size])
        .map_err(|error| format!("a compressed chunk does not decompress: {error}"))?;
    if written != size {
        return Err(format!("a compressed chunk holds {written} bytes, not {size}").into());
    }
    Ok(&out[..size])
}

/// The newest checkpoint file in `journal_dir`: its sequence and path.
fn newest_checkpoint(journal_dir: &Path) -> io::Result<Option<(u64, PathBuf)>> {
    let mut newest = None;
    for entry in fs::read_dir(journal_dir)? {
        let entry = entry?;
        let Some(sequence) = entry.file_name().to_str().and_then(parse_checkpoint_name) else {
            continue;
        };
        if newest.as_ref().is_none_or(|(best, _)| sequence > *best) {
            newest = Some((sequence, entry.path()));
        }
    }
    Ok(newest)
}

impl Replication {
    /// Sends backup `node_id` a catch-up from this primary's newest checkpoint.
    pub(super) fn send_catch_up(
        &self,
        stream: &mut TcpStream,
        out: &mut [u8],
        epoch: u64,
        node_id: u64,
    ) -> Result<(), BoxError> {
        let started = Instant::now();
        let mut reader = lock(&self.reader).another();
        let journal_dir = reader.directory().to_path_buf();
        let Some((sequence, path)) = newest_checkpoint(&journal_dir)? else {
            return Err("no checkpoint to catch up from yet".into());
        };
        // Held from the checkpoint's record on, so the segment copied and the records after
        // it stay until the backup streams them.
        self.remember(node_id, sequence - 1);
        self.update_hold();
        let checkpoint = File::open(&path)?;
        let checkpoint_size = checkpoint.metadata()?.len();
        let Some((segment, segment_prefix_size)) = reader.end_of(sequence)? else {
            return Err(format!(
                "record {sequence}, which the newest checkpoint covers, was retired meanwhile"
            )
            .into());
        };
        let segment_file = File::open(journal_dir.join(segment_file_name(segment)))?;
        let flags = if self.store.is_some() {
            CATCH_UP_LZ4 | CATCH_UP_STORE
        } else {
            CATCH_UP_LZ4
        };
        say!(
            "clearline: backup {node_id} needs records this journal retired; sending it the \
             checkpoint at sequence {sequence}"
        );
        send(
            stream,
            out,
            epoch,
            Message::CatchUp {
                checkpoint_sequence: sequence,
                checkpoint_size,
                segment,
                segment_prefix_size,
                flags,
            },
        )?;
        let mut chunks = ChunkSender {
            stream,
            out,
            epoch,
            throttle: Throttle::new(self.config.catch_up_bytes_per_second),
            block: Vec::with_capacity(LZ4_PREFIX + block::get_maximum_output_size(CHUNK_BYTES)),
            sent: 0,
        };
        let mut chunk = vec![0u8; CHUNK_BYTES];
        for (part, file, size) in [
            (CatchUpPart::Checkpoint, &checkpoint, checkpoint_size),
            (CatchUpPart::Segment, &segment_file, segment_prefix_size),
        ] {
            let mut offset = 0u64;
            while offset < size {
                if self.stopping() {
                    return Ok(());
                }
                let length = (size - offset).min(CHUNK_BYTES as u64) as usize;
                file.read_exact_at(&mut chunk[..length], offset)?;
                chunks.send(part, offset, &chunk[..length])?;
                offset += length as u64;
            }
        }
        let copied = match &self.store {
            Some(store) => {
                let mut offset = 0u64;
                store.export(CHUNK_BYTES, |bytes| -> Result<(), BoxError> {
                    if self.stopping() {
                        return Err("stopping".into());
                    }
                    chunks.send(CatchUpPart::Store, offset, bytes)?;
                    offset += bytes.len() as u64;
                    Ok(())
                })?
            }
            None => CopyReport::default(),
        };
        let sent = chunks.sent;
        send(
            stream,
            out,
            epoch,
            Message::CatchUpEnd {
                store_entries: copied.entries,
                store_bytes: copied.bytes,
            },
        )?;
        say!(
            "clearline: sent backup {node_id} the checkpoint at sequence {sequence} ({} bytes), \
             {segment_prefix_size} bytes of segment {segment} and {} store entries ({} bytes), \
             {sent} bytes compressed, in {:.3} s",
            checkpoint_size,
            copied.entries,
            copied.bytes,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// The thread that loads a store copy into the staging directory.
type StoreLoader = JoinHandle<Result<CopyReport, HistoryError>>;

/// A catch-up arriving on a backup, written into the staging directory.
pub(super) struct Stage {
    data: PathBuf,
    staging: PathBuf,
    sequence: u64,
    checkpoint: File,
    checkpoint_size: u64,
    checkpoint_written: u64,
    segment: File,
    segment_prefix_size: u64,
    segment_written: u64,
    /// The thread loading the store copy, and its queue.
    store: Option<(SyncSender<Vec<u8>>, StoreLoader)>,
    store_received: u64,
    epoch: u64,
    /// Where compressed chunks are decompressed (empty when the primary sends them plain).
    plain: Vec<u8>,
}

impl Stage {
    /// Starts a catch-up from the checkpoint a `CatchUp` names in `data`, replacing any
    /// unfinished one: the primary's segment size and this node's must be equal, and
    /// `history` (whether this node runs in history mode) must match the primary's.
    pub(super) fn begin(
        data: &Path,
        message: &Message<'_>,
        (segment_size, local_segment_size): (u64, u64),
        history: bool,
        epoch: u64,
    ) -> Result<Stage, BoxError> {
        let Message::CatchUp {
            checkpoint_sequence: sequence,
            checkpoint_size,
            segment,
            segment_prefix_size,
            flags,
        } = *message
        else {
            return Err("a catch-up must start with its CatchUp frame".into());
        };
        let with_store = flags & CATCH_UP_STORE != 0;
        if with_store != history {
            return Err(format!(
                "the primary runs {} history mode and this node {}: start every node of a \
                 group with the same --history or --no-history",
                if with_store { "in" } else { "without" },
                if history { "in it" } else { "without it" },
            )
            .into());
        }
        if segment_size != local_segment_size {
            return Err(format!(
                "the primary's journal segments are {segment_size} bytes and this node's \
                 {local_segment_size}: start it with the primary's --segment-size"
            )
            .into());
        }
        if segment_prefix_size > segment_size {
            return Err(format!(
                "the primary sends {segment_prefix_size} bytes of a segment of {segment_size}"
            )
            .into());
        }
        let staging = data.join(STAGING_DIR_NAME);
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        let journal = staging.join(JOURNAL_DIR_NAME);
        fs::create_dir_all(&journal)?;
        let checkpoint = File::create(journal.join(checkpoint_file_name(sequence)))?;
        let segment_file = File::create(journal.join(segment_file_name(segment)))?;
        segment_file.set_len(segment_size)?;
        let store = if with_store {
            let directory = staging.join(HISTORY_DIR_NAME);
            let (sender, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(STORE_CHUNKS_QUEUED);
            let thread = std::thread::Builder::new()
                .name("catch-up-store".to_owned())
                .spawn(move || {
                    let store = History::open(&HistoryConfig {
                        directory,
                        cache_bytes: STAGING_STORE_CACHE_BYTES,
                    })?;
                    store.import(chunks)
                })?;
            Some((sender, thread))
        } else {
            None
        };
        say!(
            "clearline: catching up from the primary's checkpoint at sequence {sequence} \
             ({checkpoint_size} bytes{})",
            if with_store {
                " and a copy of its history store"
            } else {
                ""
            }
        );
        Ok(Stage {
            data: data.to_path_buf(),
            staging,
            sequence,
            checkpoint,
            checkpoint_size,
            checkpoint_written: 0,
            segment: segment_file,
            segment_prefix_size,
            segment_written: 0,
            store,
            store_received: 0,
            epoch,
            plain: if flags & CATCH_UP_LZ4 != 0 {
                vec![0; CHUNK_BYTES_MAX]
            } else {
                Vec::new()
            },
        })
    }

    /// Writes one chunk as it arrived (decompressed first when the catch-up is compressed).
    pub(super) fn write(
        &mut self,
        part: CatchUpPart,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), BoxError> {
        if self.plain.is_empty() {
            return self.write_plain(part, offset, bytes);
        }
        let mut plain = std::mem::take(&mut self.plain);
        let result = decompress_chunk(bytes, &mut plain)
            .and_then(|bytes| self.write_plain(part, offset, bytes));
        self.plain = plain;
        result
    }

    /// Writes one chunk's bytes; chunks of each part come in order.
    fn write_plain(
        &mut self,
        part: CatchUpPart,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), BoxError> {
        let (file, size, written) = match part {
            CatchUpPart::Checkpoint => (
                &self.checkpoint,
                self.checkpoint_size,
                &mut self.checkpoint_written,
            ),
            CatchUpPart::Segment => (
                &self.segment,
                self.segment_prefix_size,
                &mut self.segment_written,
            ),
            CatchUpPart::Store => {
                if offset != self.store_received {
                    return Err(format!(
                        "a store chunk at {offset} where {} was expected",
                        self.store_received
                    )
                    .into());
                }
                let Some((sender, _)) = &self.store else {
                    return Err("a store chunk the catch-up did not announce".into());
                };
                if sender.send(bytes.to_vec()).is_err() {
                    // The loading thread stopped: its error says why.
                    return Err(self.store_failure());
                }
                self.store_received += bytes.len() as u64;
                return Ok(());
            }
        };
        // `written` is at most `size`, so once `offset` equals it the end cannot overflow.
        if offset != *written || bytes.len() as u64 > size - *written {
            return Err(format!(
                "a {part:?} chunk of {} bytes at {offset} where {written}..{size} was expected",
                bytes.len()
            )
            .into());
        }
        let end = offset + bytes.len() as u64;
        file.write_all_at(bytes, offset)?;
        *written = end;
        Ok(())
    }

    /// Closes the store loader's queue and waits for it: what it loaded (nothing without a
    /// store copy), or why it stopped.
    fn end_store_load(&mut self) -> Result<CopyReport, BoxError> {
        let Some((sender, thread)) = self.store.take() else {
            return Ok(CopyReport::default());
        };
        drop(sender);
        let loaded = thread
            .join()
            .map_err(|_| "the thread loading the store copy panicked")?;
        Ok(loaded.map_err(|error| format!("loading the store copy: {error}"))?)
    }

    /// Why the store loader stopped taking chunks.
    fn store_failure(&mut self) -> BoxError {
        match self.end_store_load() {
            Err(error) => error,
            Ok(_) => "the store copy ended early".into(),
        }
    }

    /// Checks that everything arrived, syncs it and marks the stage complete; the next start
    /// installs it. Returns what to say.
    pub(super) fn finish(
        mut self,
        store_entries: u64,
        store_bytes: u64,
    ) -> Result<String, BoxError> {
        if self.checkpoint_written != self.checkpoint_size
            || self.segment_written != self.segment_prefix_size
        {
            return Err("the catch-up ended before its checkpoint and segment did".into());
        }
        let copied = self.end_store_load()?;
        if copied.entries != store_entries || copied.bytes != store_bytes {
            return Err(format!(
                "the store copy holds {} entries ({} bytes), and the primary sent {store_entries} \
                 ({store_bytes} bytes)",
                copied.entries, copied.bytes
            )
            .into());
        }
        self.checkpoint.sync_all()?;
        self.segment.sync_all()?;
        File::open(self.staging.join(JOURNAL_DIR_NAME))?.sync_all()?;
        // Written last: its rename syncs the staging directory with every entry in it.
        epoch_to_file(&self.staging, self.epoch)?;
        let staged = self.data.join(STAGED_DIR_NAME);
        if staged.exists() {
            fs::remove_dir_all(&staged)?;
        }
        fs::rename(&self.staging, &staged)?;
        File::open(&self.data)?.sync_all()?;
        Ok(format!(
            "received the checkpoint at sequence {} and {} store entries from the primary",
            self.sequence, copied.entries
        ))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // An unfinished catch-up: the loading thread stops at the end of its queue.
        let _ = self.end_store_load();
    }
}

/// Asks the next start to move this node's journal, history store and epoch file into a new
/// `set-aside-N` directory of `data`, kept for inspection: a node whose unacknowledged records
/// cannot be cut back starts again empty and catches up from its primary. Nothing moves while
/// the files are open; the caller restarts the process. Returns what will happen, to say.
///
/// # Errors
/// The request cannot be written.
pub fn request_set_aside(data: &Path) -> Result<String, String> {
    let name = match fs::read_to_string(data.join(SET_ASIDE_REQUEST_NAME)) {
        Ok(name) => name.trim().to_owned(),
        Err(_) => {
            let name = (1u32..)
                .map(|number| format!("{SET_ASIDE_PREFIX}{number}"))
                .find(|name| !data.join(name).exists())
                .expect("a free name");
            write_synced(data, SET_ASIDE_REQUEST_NAME, &format!("{name}\n"))
                .map_err(|error| format!("setting this node's data aside: {error}"))?;
            name
        }
    };
    Ok(format!(
        "its journal and history store move to {} at the restart (delete it once inspected)",
        data.join(name).display()
    ))
}

/// At start, before the journal opens: carries out a set-aside request, deletes an unfinished
/// catch-up, and puts a finished one in place of the journal and the history store. Each step
/// is idempotent, so a crash in the middle finishes at the next start. Returns what it did, to
/// say.
///
/// # Errors
/// A file operation failed; the data directory is left for the next start to finish.
pub fn apply_pending_moves(data: &Path) -> Result<Vec<String>, String> {
    let failed = |what: &str, path: &Path, error: io::Error| {
        format!(
            "preparing {}: {what} {}: {error}",
            data.display(),
            path.display()
        )
    };
    let sync_data = || {
        File::open(data)
            .and_then(|directory| directory.sync_all())
            .map_err(|error| failed("syncing", data, error))
    };
    // Moves each of the node's own files and directories found in `from` into `to`, replacing
    // what `to` holds under the same name.
    let move_node_files = |from: &Path, to: &Path| -> Result<(), String> {
        for name in [JOURNAL_DIR_NAME, HISTORY_DIR_NAME, EPOCH_FILE_NAME] {
            let source = from.join(name);
            if !source.exists() {
                continue;
            }
            let target = to.join(name);
            if target.is_dir() {
                fs::remove_dir_all(&target).map_err(|error| failed("removing", &target, error))?;
            }
            fs::rename(&source, &target).map_err(|error| failed("moving", &source, error))?;
            sync_data()?;
        }
        Ok(())
    };
    let mut said = Vec::new();
    let request = data.join(SET_ASIDE_REQUEST_NAME);
    if let Ok(name) = fs::read_to_string(&request) {
        let name = name.trim();
        let valid = name.starts_with(SET_ASIDE_PREFIX)
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
        if !valid {
            return Err(format!(
                "{} names {name:?}, not a set-aside directory: remove the file",
                request.display()
            ));
        }
        let target = data.join(name);
        fs::create_dir_all(&target).map_err(|error| failed("creating", &target, error))?;
        move_node_files(data, &target)?;
        fs::remove_file(&request).map_err(|error| failed("removing", &request, error))?;
        sync_data()?;
        said.push(format!(
            "moved this node's journal and history store to {}: it starts as a new backup",
            target.display()
        ));
    }
    let staging = data.join(STAGING_DIR_NAME);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|error| failed("removing", &staging, error))?;
        said.push(
            "removed a catch-up from a checkpoint that did not finish; the primary sends it again"
                .to_owned(),
        );
    }
    let staged = data.join(STAGED_DIR_NAME);
    if staged.exists() {
        move_node_files(&staged, data)?;
        fs::remove_dir_all(&staged).map_err(|error| failed("removing", &staged, error))?;
        sync_data()?;
        said.push(
            "installed the checkpoint, journal start and history store received from the primary"
                .to_owned(),
        );
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("a parent")).expect("directories");
        fs::write(path, text).expect("write");
    }

    fn read(path: &Path) -> Option<String> {
        fs::read_to_string(path).ok()
    }

    #[test]
    fn a_finished_catch_up_replaces_the_journal_and_store_and_an_unfinished_one_goes() {
        let data = tempfile::tempdir().expect("temporary directory");
        let data = data.path();
        write(&data.join("journal/segment-old"), "old");
        write(&data.join("history/table-old"), "old");
        write(&data.join(EPOCH_FILE_NAME), "1\n");
        // Nothing staged: nothing changes.
        assert!(apply_pending_moves(data).expect("install").is_empty());
        assert_eq!(
            read(&data.join("journal/segment-old")).as_deref(),
            Some("old")
        );

        write(&data.join("catch-up.tmp/journal/partial"), "partial");
        let said = apply_pending_moves(data).expect("install").concat();
        assert!(said.contains("did not finish"), "{said}");
        assert!(!data.join("catch-up.tmp").exists());
        assert_eq!(
            read(&data.join("journal/segment-old")).as_deref(),
            Some("old")
        );

        write(&data.join("catch-up/journal/segment-new"), "new");
        write(&data.join("catch-up/history/table-new"), "new");
        write(&data.join("catch-up").join(EPOCH_FILE_NAME), "7\n");
        let said = apply_pending_moves(data).expect("install").concat();
        assert!(said.contains("installed"), "{said}");
        assert!(!data.join("catch-up").exists());
        assert!(!data.join("journal/segment-old").exists());
        assert!(!data.join("history/table-old").exists());
        assert_eq!(
            read(&data.join("journal/segment-new")).as_deref(),
            Some("new")
        );
        assert_eq!(
            read(&data.join("history/table-new")).as_deref(),
            Some("new")
        );
        assert_eq!(read(&data.join(EPOCH_FILE_NAME)).as_deref(), Some("7\n"));
    }

    #[test]
    fn an_install_interrupted_after_the_journal_moved_finishes_at_the_next_start() {
        let data = tempfile::tempdir().expect("temporary directory");
        let data = data.path();
        // The journal was moved in; the old store is still there.
        write(&data.join("journal/segment-new"), "new");
        write(&data.join("history/table-old"), "old");
        write(&data.join("catch-up/history/table-new"), "new");
        assert_eq!(apply_pending_moves(data).expect("install").len(), 1);
        assert_eq!(
            read(&data.join("journal/segment-new")).as_deref(),
            Some("new")
        );
        assert!(!data.join("history/table-old").exists());
        assert_eq!(
            read(&data.join("history/table-new")).as_deref(),
            Some("new")
        );
        assert!(!data.join("catch-up").exists());
    }

    #[test]
    fn a_set_aside_request_moves_the_node_data_at_the_next_start() {
        let data = tempfile::tempdir().expect("temporary directory");
        let data = data.path();
        write(&data.join("journal/segment"), "first");
        write(&data.join("history/table"), "first");
        write(&data.join(EPOCH_FILE_NAME), "3\n");
        let said = request_set_aside(data).expect("request");
        assert!(said.contains("set-aside-1"), "{said}");
        // Asked again before the restart: the same directory.
        assert_eq!(request_set_aside(data).expect("request"), said);
        assert_eq!(
            read(&data.join("journal/segment")).as_deref(),
            Some("first")
        );
        let said = apply_pending_moves(data).expect("apply").concat();
        assert!(said.contains("set-aside-1"), "{said}");
        for name in ["journal/segment", "history/table"] {
            assert!(!data.join(name).exists(), "{name}");
            let kept = data.join("set-aside-1").join(name);
            assert_eq!(read(&kept).as_deref(), Some("first"), "{name}");
        }
        assert!(!data.join(EPOCH_FILE_NAME).exists());
        assert!(!data.join(SET_ASIDE_REQUEST_NAME).exists());
        // A second set-aside keeps the first.
        write(&data.join("journal/segment"), "second");
        assert!(request_set_aside(data)
            .expect("request")
            .contains("set-aside-2"));
        apply_pending_moves(data).expect("apply");
        let second = data.join("set-aside-2/journal/segment");
        assert_eq!(read(&second).as_deref(), Some("second"));
        assert_eq!(
            read(&data.join("set-aside-1/journal/segment")).as_deref(),
            Some("first")
        );
        // A request naming anything else is refused, and nothing moves.
        write(&data.join("journal/segment"), "third");
        write(&data.join(SET_ASIDE_REQUEST_NAME), "../elsewhere\n");
        let error = apply_pending_moves(data).expect_err("refused");
        assert!(error.contains("not a set-aside directory"), "{error}");
        assert_eq!(
            read(&data.join("journal/segment")).as_deref(),
            Some("third")
        );
    }

    #[test]
    fn chunks_round_trip_through_lz4_and_damaged_ones_are_refused() {
        let mut rng = clearline_test_support::Rng::new(7);
        let mut compressed = Vec::new();
        let mut plain = vec![0u8; CHUNK_BYTES_MAX];
        for size in [1usize, 100, 4096, CHUNK_BYTES] {
            // Half zeros (compressible), half noise.
            let mut input = vec![0u8; size];
            rng.fill(&mut input[size / 2..]);
            compress_chunk(&input, &mut compressed);
            assert_eq!(
                decompress_chunk(&compressed, &mut plain).expect("decompresses"),
                &input[..]
            );
            if size == CHUNK_BYTES {
                assert!(compressed.len() < size * 3 / 4, "{}", compressed.len());
            }
        }
        let input = vec![7u8; 1000];
        compress_chunk(&input, &mut compressed);
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (compressed[..2].to_vec(), "shorter than its size"),
            (
                compressed[..compressed.len() - 1].to_vec(),
                "does not decompress",
            ),
        ];
        let mut larger = compressed.clone();
        larger[..4].copy_from_slice(&((CHUNK_BYTES_MAX + 1) as u32).to_le_bytes());
        cases.push((larger, "at most"));
        let mut smaller = compressed.clone();
        smaller[..4].copy_from_slice(&999u32.to_le_bytes());
        cases.push((smaller, "compressed chunk"));
        for (case, expected) in cases {
            let error = decompress_chunk(&case, &mut plain).expect_err("refused");
            assert!(error.to_string().contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn a_stage_takes_chunks_in_order_and_finishes_only_when_whole() {
        let data = tempfile::tempdir().expect("temporary directory");
        let data = data.path();
        let catch_up = Message::CatchUp {
            checkpoint_sequence: 9,
            checkpoint_size: 10,
            segment: 2,
            segment_prefix_size: 4,
            flags: 0,
        };
        let refused = Stage::begin(data, &catch_up, (1 << 16, 1 << 17), false, 3);
        assert!(refused.is_err_and(|error| error.to_string().contains("--segment-size")));
        let refused = Stage::begin(data, &catch_up, (1 << 16, 1 << 16), true, 3);
        assert!(refused.is_err_and(|error| error.to_string().contains("history mode")));
        let mut stage =
            Stage::begin(data, &catch_up, (1 << 16, 1 << 16), false, 3).expect("begins");
        let checkpoint = CatchUpPart::Checkpoint;
        stage.write(checkpoint, 0, b"01234").expect("first chunk");
        for (offset, bytes) in [(0, &b"56789"[..]), (6, b"6789"), (5, b"567890")] {
            let error = stage.write(checkpoint, offset, bytes).expect_err("refused");
            assert!(error.to_string().contains("was expected"), "{error}");
        }
        assert!(stage.write(checkpoint, u64::MAX, b"x").is_err());
        assert!(
            stage.write(CatchUpPart::Store, 0, b"x").is_err(),
            "no store announced"
        );
        stage.write(checkpoint, 5, b"56789").expect("second chunk");
        stage
            .write(CatchUpPart::Segment, 0, b"abc")
            .expect("segment");
        assert!(data.join(STAGING_DIR_NAME).exists());
        let error = stage.finish(0, 0).expect_err("the segment is short");
        assert!(error.to_string().contains("ended before"), "{error}");
        assert!(!data.join(STAGED_DIR_NAME).exists());

        let mut stage =
            Stage::begin(data, &catch_up, (1 << 16, 1 << 16), false, 3).expect("begins again");
        stage
            .write(checkpoint, 0, b"0123456789")
            .expect("checkpoint");
        stage
            .write(CatchUpPart::Segment, 0, b"abcd")
            .expect("segment");
        stage.finish(0, 0).expect("finishes");
        let journal = data.join(STAGED_DIR_NAME).join(JOURNAL_DIR_NAME);
        let image = fs::read(journal.join(checkpoint_file_name(9))).expect("checkpoint");
        assert_eq!(image, b"0123456789");
        let segment = fs::read(journal.join(segment_file_name(2))).expect("segment");
        assert_eq!(segment.len(), 1 << 16);
        assert_eq!(&segment[..5], b"abcd\0");
        let epoch = data.join(STAGED_DIR_NAME).join(EPOCH_FILE_NAME);
        assert_eq!(read(&epoch).as_deref(), Some("3\n"));
    }

    #[test]
    fn the_newest_checkpoint_is_found_by_name() {
        let journal = tempfile::tempdir().expect("temporary directory");
        assert!(newest_checkpoint(journal.path()).expect("list").is_none());
        for sequence in [9, 120, 30] {
            write(
                &journal.path().join(checkpoint_file_name(sequence)),
                "image",
            );
        }
        write(&journal.path().join("checkpoint-x.ckpt.tmp"), "partial");
        let (sequence, path) = newest_checkpoint(journal.path())
            .expect("list")
            .expect("found");
        assert_eq!(sequence, 120);
        assert_eq!(path, journal.path().join(checkpoint_file_name(120)));
    }
}
