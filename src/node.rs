//! The core thread of a node in a replication group (docs/replication.md): a hot standby that
//! journals and applies what the primary streams, until leadership makes it primary; then it
//! journals its epoch record and runs the ordinary core loop.
//!
//! On a backup, clients' writes (and reads that did not ask for a backup) are answered with
//! `not_primary`, naming the primary when it is known. Nothing here waits on etcd: the role is
//! read from [`Replication::role_for_core`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use clearline_journal::le::u128_at;
use clearline_journal::{Journal, RecordReader};
use clearline_net::frame::Redirect;
use clearline_net::tigerbeetle::gateway::CoreLink;
use clearline_net::{CoreSide, Reply};

use crate::core::{core_loop, reply_to, Core, REPLY_SIZE_MAX};
use crate::replica::{self, CoreRole, Inbound, JournalFacts, Replication, Tip};
use crate::request_record::EpochRecord;

/// How long the backup's core waits for records before it looks at clients and the role.
const BACKUP_WAIT: Duration = Duration::from_millis(2);

/// The file in the data directory that keeps the newest epoch this node's journal has met,
/// for when a checkpoint covers the epoch record itself.
pub const EPOCH_FILE_NAME: &str = "replication-epoch";

/// The newest epoch `data` records (0 when none).
pub fn epoch_from_file(data: &Path) -> u64 {
    std::fs::read_to_string(data.join(EPOCH_FILE_NAME))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `epoch` to the epoch file in `dir` (a data directory, or a catch-up's staging
/// directory), synced.
pub fn epoch_to_file(dir: &Path, epoch: u64) -> Result<(), String> {
    write_synced(dir, EPOCH_FILE_NAME, &format!("{epoch}\n"))
}

/// Writes the small file `dir/name` through a temporary file and a rename, each synced, so a
/// crash leaves the old content or the new, never part of it.
pub fn write_synced(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let path = dir.join(name);
    let temporary: PathBuf = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut &file, text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// The facts a primary tells its backups about its journal.
pub fn journal_facts(journal: &Journal) -> JournalFacts {
    JournalFacts {
        generation: journal.generation(),
        segment_size: journal.segment_size(),
        first_sequence: journal.first_sequence(),
    }
}

/// Runs the core thread of a replicated node until the server stops. Returns the journal for
/// its final sync.
///
/// # Errors
/// A journal failure, a record the engine cannot apply, or a journal that cannot mirror the
/// primary's: the node must stop.
pub fn node_loop(
    mut core: Core,
    core_side: &CoreSide,
    tigerbeetle: Option<&CoreLink>,
    stop: &AtomicBool,
    replication: &Replication,
    inbox: &Receiver<Inbound>,
    data: &Path,
) -> Result<Journal, String> {
    let durability = core.journal_mut().durability();
    let mut scratch = vec![0u8; REPLY_SIZE_MAX];
    let reader = core
        .journal_mut()
        .reader()
        .map_err(|error| format!("reading the journal: {error}"))?;
    let mut standby = Standby {
        replication,
        reader,
        data,
    };
    loop {
        if durability.failed() {
            return Err("a journal sync failed; stopping without acknowledging more".to_string());
        }
        if core_side.is_stopped() || stop.load(Ordering::Acquire) {
            return core.finish();
        }
        match replication.role_for_core() {
            CoreRole::Backup => {}
            CoreRole::Restart => {
                // The main thread starts the process again; until then clients are redirected.
                answer_clients(&mut core, core_side, replication, &mut scratch)?;
                std::thread::sleep(BACKUP_WAIT * 10);
                continue;
            }
            CoreRole::Primary(epoch) => {
                // What the old primary streamed before it went is part of its epoch: apply it.
                while let Ok(inbound) = inbox.try_recv() {
                    standby.take(&mut core, inbound, &mut scratch)?;
                }
                let record = EpochRecord {
                    epoch,
                    node_id: replication.node_id(),
                };
                let sequence = core
                    .append_epoch(record)
                    .map_err(|error| format!("cannot journal the epoch record: {error}"))?;
                epoch_to_file(data, epoch)?;
                replication.became_primary(epoch, sequence, journal_facts(core.journal_mut()));
                say!(
                    "clearline: primary of epoch {epoch} (node {}), its records from sequence \
                     {sequence}",
                    replication.node_id()
                );
                let written = |journal: &Journal| replication.records_written(journal);
                return core_loop(core, core_side, tigerbeetle, stop, Some(&written));
            }
        }
        match inbox.recv_timeout(BACKUP_WAIT) {
            Ok(inbound) => standby.take(&mut core, inbound, &mut scratch)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the replication receiver stopped".to_string());
            }
        }
        answer_clients(&mut core, core_side, replication, &mut scratch)?;
        core.between_batches()?;
    }
}

/// What a backup's core needs besides the core itself to take the primary's frames.
struct Standby<'a> {
    replication: &'a Replication,
    /// Reads this node's own journal (checksums, before a truncation).
    reader: RecordReader,
    data: &'a Path,
}

impl Standby<'_> {
    /// Applies what the receiver handed over.
    fn take(
        &mut self,
        core: &mut Core,
        inbound: Inbound,
        scratch: &mut [u8],
    ) -> Result<(), String> {
        let (replication, reader, data) = (self.replication, &mut self.reader, self.data);
        take(core, inbound, replication, reader, scratch, data)
    }
}

/// Applies what the receiver handed over.
fn take(
    core: &mut Core,
    inbound: Inbound,
    replication: &Replication,
    reader: &mut RecordReader,
    scratch: &mut [u8],
    data: &Path,
) -> Result<(), String> {
    match inbound {
        Inbound::Records {
            first_sequence,
            count,
            bytes,
        } => {
            let mut tip = None;
            let mut applied = 0u32;
            for record in replica::records(&bytes) {
                let expected = first_sequence + u64::from(applied);
                let (sequence, _) = replica::record_sequence_and_timestamp(record);
                if sequence != expected {
                    return Err(format!(
                        "the primary sent record {sequence} where {expected} belongs"
                    ));
                }
                applied += 1;
                let (sequence, epoch) = core.apply_copied(record, scratch)?;
                if let Some(epoch) = epoch {
                    epoch_to_file(data, epoch.epoch)?;
                    replication.saw_epoch(epoch.epoch);
                }
                tip = Some(Tip {
                    sequence,
                    checksum: u128_at(record, 0),
                });
            }
            replication.recycle(bytes);
            if applied != count {
                return Err(format!(
                    "the primary's frame said {count} records and held {applied}"
                ));
            }
            if let Some(tip) = tip {
                replication.set_tip(tip);
            }
        }
        Inbound::Welcome {
            generation,
            segment_size,
        } => {
            let journal = core.journal_mut();
            if journal.segment_size() != segment_size {
                return Err(format!(
                    "the primary's journal segments are {segment_size} bytes and this node's \
                     {}: start it with the primary's --segment-size",
                    journal.segment_size()
                ));
            }
            if journal.generation() != generation {
                journal
                    .set_generation_if_empty(generation)
                    .map_err(|error| {
                        format!(
                            "this node's journal belongs to another group (generation {:x}, the \
                         primary's {generation:x}) and cannot join it: {error}. Move its data \
                         directory away to start it as a new backup",
                            journal.generation()
                        )
                    })?;
                let reader_of = |journal: &Journal| {
                    journal
                        .reader()
                        .map_err(|error| format!("reading the journal: {error}"))
                };
                *reader = reader_of(journal)?;
                replication.replace_reader(reader_of(journal)?);
            }
        }
        Inbound::Truncate {
            from_sequence,
            previous_checksum,
        } => {
            let keep = from_sequence - 1;
            let ours = reader
                .checksum_at(keep)
                .map_err(|error| format!("reading record {keep}: {error}"))?;
            if ours != Some(previous_checksum) {
                let moved = crate::replica::request_set_aside(data)?;
                replication.request_restart(format!(
                    "this node's journal and the primary's differ at record {keep} already: \
                     {moved}, and this node starts again as a new backup"
                ));
                return Ok(());
            }
            if let Some(stored) = core.history_durable_sequence() {
                if stored > keep {
                    let moved = crate::replica::request_set_aside(data)?;
                    replication.request_restart(format!(
                        "the primary asks to drop records from {from_sequence}, but this node's \
                         history store already holds up to {stored}: {moved}, and this node \
                         starts again as a new backup"
                    ));
                    return Ok(());
                }
            }
            let dropped = core
                .journal_mut()
                .truncate_after(keep)
                .map_err(|error| format!("dropping records after {keep}: {error}"))?;
            say!(
                "clearline: dropped {} records (sequences {} to {}) that the primary of epoch {} \
                 does not hold: they were never acknowledged",
                dropped.records,
                dropped.first_sequence,
                dropped.last_sequence,
                replication.primary().map_or(0, |primary| primary.epoch)
            );
            replication.request_restart(format!("the journal was cut back to sequence {keep}"));
        }
    }
    Ok(())
}

/// Answers what clients sent a backup: a read that asked for a backup is served, anything
/// else gets `not_primary` with the primary's address.
fn answer_clients(
    core: &mut Core,
    core_side: &CoreSide,
    replication: &Replication,
    scratch: &mut [u8],
) -> Result<(), String> {
    let mut answered = false;
    while let Some(mut request) = core_side.pop_request() {
        answered = true;
        let reply = if !request.operation.is_write() && request.header.read_from_backup() {
            let body = std::mem::take(&mut request.reply_body);
            let applied = core.read_on_backup(request.operation, &request.body, scratch);
            reply_to(&request, Ok(applied), scratch, body)
                .map_err(|error| format!("a read on a backup: {error}"))?
        } else {
            Reply::redirect(&mut request, &redirect(replication))
        };
        core_side.recycle(std::mem::take(&mut request.body));
        if core_side.push_reply(reply).is_err() {
            return Err("the reply queue overflowed".to_string());
        }
    }
    if answered {
        core_side.wake();
    }
    Ok(())
}

/// The redirect a backup answers with: the primary it follows, if it knows one.
fn redirect(replication: &Replication) -> Redirect {
    replication
        .primary()
        .and_then(|primary| {
            Redirect::primary(primary.epoch, primary.node_id, primary.client_address).ok()
        })
        .unwrap_or(Redirect::NO_PRIMARY)
}
