//! The primary's side of a replication group (docs/replication.md, "Acknowledgements" and
//! "The stream"): the acknowledger that moves the reply gate, the peer listener, one sender per
//! backup with its acknowledgement reader, and the journal's retention hold.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clearline_journal::{ReadOutcome, RecordReader, RECORD_HEADER_SIZE};
use clearline_replication::frame::{
    Frame, Message, StreamDecoder, FRAME_BODY_SIZE_MAX, FRAME_HEADER_SIZE,
};
use clearline_replication::leadership::Role;

use super::{
    lock, read_frame, send, BackupSlot, BoxError, JournalFacts, Remembered, Replication,
    BACKUPS_MAX, HANDSHAKE_TIMEOUT, LOOK_INTERVAL, PEER_WRITE_TIMEOUT, RECORDS_BYTES_MAX,
    REMEMBERED_MAX, REMEMBER_FOR,
};

impl Replication {
    /// Moves the reply gate while this node is primary: to the local durable sequence, or,
    /// with K backups, to the K-th highest sequence the backups of this epoch acknowledged
    /// if that is lower. Stops for good when the lease may no longer be relied on.
    pub(super) fn acknowledger(&self) {
        let mut seen = 0;
        loop {
            seen = self.progress.wait(seen, LOOK_INTERVAL / 10);
            if self.stopping() {
                return;
            }
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch == 0 {
                continue;
            }
            let still_primary = matches!(
                self.leadership.role(),
                Role::Primary { epoch: now, .. } if now == epoch
            );
            if !still_primary || !self.leadership.may_acknowledge(Instant::now()) {
                self.request_restart(format!(
                    "the lease of epoch {epoch} is lost or could expire: this node no longer \
                     acknowledges as primary"
                ));
                return;
            }
            let local = self.durability.durable_sequence();
            let target = match self.config.ack_backups {
                0 => local,
                k => {
                    // At most one slot per node (a reconnection replaces the old one), so K
                    // counts nodes, not connections.
                    let mut acknowledged = [0u64; BACKUPS_MAX];
                    let backups = lock(&self.backups);
                    for (slot, into) in backups.iter().zip(acknowledged.iter_mut()) {
                        *into = slot.acknowledged;
                    }
                    drop(backups);
                    acknowledged.sort_unstable_by(|a, b| b.cmp(a));
                    acknowledged
                        .get(k as usize - 1)
                        .map_or(0, |&kth| kth.min(local))
                }
            };
            self.update_hold();
            if target > self.ack.load(Ordering::Acquire) {
                self.ack.store(target, Ordering::Release);
                if let Some(wake) = self.wake.get() {
                    wake();
                }
            }
        }
    }

    /// A backup said it holds records up to `holds`.
    pub(super) fn remember(&self, node_id: u64, holds: u64) {
        let now = Instant::now();
        let mut remembered = lock(&self.remembered);
        if let Some(entry) = remembered.iter_mut().find(|entry| entry.node_id == node_id) {
            entry.holds = holds;
            entry.seen = now;
            return;
        }
        if remembered.len() == REMEMBERED_MAX {
            // The one seen longest ago goes.
            if let Some(oldest) = (0..remembered.len()).min_by_key(|&at| remembered[at].seen) {
                remembered.swap_remove(oldest);
            }
        }
        remembered.push(Remembered {
            node_id,
            holds,
            seen: now,
        });
    }

    /// Sets the journal's retention hold to the first record a backup heard from lately does
    /// not hold yet (nothing held when there is none).
    pub(super) fn update_hold(&self) {
        let now = Instant::now();
        let backups = lock(&self.backups);
        let mut remembered = lock(&self.remembered);
        for entry in remembered.iter_mut() {
            if backups.iter().any(|slot| slot.node_id == entry.node_id) {
                entry.seen = now;
            }
        }
        drop(backups);
        remembered.retain(|entry| now.duration_since(entry.seen) < REMEMBER_FOR);
        let floor = remembered
            .iter()
            .map(|entry| entry.holds.saturating_add(1))
            .min()
            .unwrap_or(u64::MAX);
        self.hold.store(floor, Ordering::Release);
    }

    // ----- primary: serving backups -----

    pub(super) fn listen(self: Arc<Replication>, listener: &TcpListener) {
        loop {
            if self.stopping() {
                return;
            }
            match listener.accept() {
                Ok((stream, address)) => {
                    let this = Arc::clone(&self);
                    let spawned = std::thread::Builder::new()
                        .name("replica-send".to_owned())
                        .spawn(move || {
                            if let Err(error) = this.serve_backup(stream) {
                                warn!("clearline: replication to the backup at {address}: {error}");
                            }
                        });
                    if let Err(error) = spawned {
                        warn!("clearline: cannot serve the backup at {address}: {error}");
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(LOOK_INTERVAL / 2);
                }
                Err(error) => {
                    warn!("clearline: accepting a backup: {error}");
                    std::thread::sleep(LOOK_INTERVAL);
                }
            }
        }
    }

    fn serve_backup(self: Arc<Replication>, mut stream: TcpStream) -> Result<(), BoxError> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        // A backup that stops reading (stalled, gone without a reset) loses its connection
        // instead of holding this thread; it is still remembered for the retention hold.
        stream.set_write_timeout(Some(PEER_WRITE_TIMEOUT))?;
        let epoch = self.epoch.load(Ordering::Acquire);
        if epoch == 0 {
            // Not primary (yet): the backup looks again at etcd and comes back.
            return Ok(());
        }
        let mut decoder = StreamDecoder::new(FRAME_BODY_SIZE_MAX);
        let hello = read_frame(&mut stream, &mut decoder, &|| self.stopping())?;
        let Some(Frame {
            epoch: backup_epoch,
            message:
                Message::Hello {
                    node_id,
                    durable_sequence,
                    durable_checksum,
                },
        }) = hello
        else {
            return Err("the first frame was not a hello".into());
        };
        if backup_epoch > epoch {
            self.request_restart(format!(
                "backup {node_id} knows epoch {backup_epoch}, newer than this primary's {epoch}"
            ));
            return Ok(());
        }
        let connections = lock(&self.backups).len();
        if connections >= BACKUPS_MAX {
            return Err(format!("more than {BACKUPS_MAX} backups; closing").into());
        }
        let facts = JournalFacts {
            first_sequence: self.first_sequence.load(Ordering::Acquire),
            ..*lock(&self.journal_facts)
        };
        // Everything written can be streamed, durable here or not.
        let written = self.durability.written_sequence();
        let mut out = vec![0u8; FRAME_HEADER_SIZE + FRAME_BODY_SIZE_MAX as usize];
        send(
            &mut stream,
            &mut out,
            epoch,
            Message::Welcome {
                generation: facts.generation,
                segment_size: facts.segment_size,
                first_sequence: facts.first_sequence,
                written_sequence: written,
            },
        )?;
        if durable_sequence + 1 < facts.first_sequence {
            // The backup loads the checkpoint, starts again and says hello from there.
            return self.send_catch_up(&mut stream, &mut out, epoch, node_id);
        }
        // Where the two journals agree: the backup's end if it is ours too; else the backup
        // drops what it has after the shorter of the two journals and starts again.
        let common = durable_sequence.min(written);
        let ours = lock(&self.reader).checksum_at(common)?;
        let next = if durable_sequence <= written && ours == Some(durable_checksum) {
            durable_sequence + 1
        } else {
            // Records from this primary's epoch record on are this epoch's own: a backup's
            // records there came from an older primary and were never acknowledged. Below it,
            // the backup's end is the first place the two journals may differ.
            let epoch_start = self.epoch_start.load(Ordering::Acquire);
            let from_sequence = durable_sequence.min(written + 1).min(epoch_start.max(1));
            let previous = lock(&self.reader).checksum_at(from_sequence - 1)?;
            let Some(previous_checksum) = previous else {
                // The common prefix is no longer in this journal: the backup starts again from
                // this primary's checkpoint.
                return self.send_catch_up(&mut stream, &mut out, epoch, node_id);
            };
            say!(
                "clearline: backup {node_id} holds records this primary does not (its end: \
                 {durable_sequence}); it drops them from sequence {from_sequence}"
            );
            send(
                &mut stream,
                &mut out,
                epoch,
                Message::Truncate {
                    from_sequence,
                    previous_checksum,
                },
            )?;
            // It starts again from its journal and says hello again.
            std::thread::sleep(LOOK_INTERVAL);
            return Ok(());
        };
        let connection = self.connections.fetch_add(1, Ordering::AcqRel);
        say!("clearline: backup {node_id} follows from sequence {next}");
        self.remember(node_id, next - 1);
        let mut backups = lock(&self.backups);
        // A node that connects again replaces its old connection: it must not count twice.
        backups.retain(|slot| slot.node_id != node_id);
        backups.push(BackupSlot {
            connection,
            node_id,
            acknowledged: 0,
        });
        drop(backups);
        self.progress.bump();
        let closed = Arc::new(AtomicBool::new(false));
        let acks = {
            let this = Arc::clone(&self);
            let stream = stream.try_clone()?;
            let closed = Arc::clone(&closed);
            std::thread::Builder::new()
                .name("replica-acks-in".to_owned())
                .spawn(move || {
                    this.read_acks(stream, decoder, (connection, node_id), epoch, &closed);
                })?
        };
        let reader = lock(&self.reader).another();
        let result = self.stream_records(&mut stream, reader, &mut out, epoch, next, &closed);
        closed.store(true, Ordering::Release);
        let _ = stream.shutdown(Shutdown::Both);
        let _ = acks.join();
        lock(&self.backups).retain(|slot| slot.connection != connection);
        self.progress.bump();
        result
    }

    fn stream_records(
        &self,
        stream: &mut TcpStream,
        mut reader: RecordReader,
        out: &mut [u8],
        epoch: u64,
        mut next: u64,
        closed: &AtomicBool,
    ) -> Result<(), BoxError> {
        let mut records = Vec::with_capacity(RECORDS_BYTES_MAX + RECORD_HEADER_SIZE as usize);
        let mut seen = self.progress.now();
        loop {
            if self.stopping()
                || closed.load(Ordering::Acquire)
                || self.epoch.load(Ordering::Acquire) != epoch
            {
                return Ok(());
            }
            // Written records go out before they are durable here: the backups' syncs run
            // alongside this node's, and a reply waits for both.
            let written = self.durability.written_sequence();
            if next > written {
                seen = self.progress.wait(seen, LOOK_INTERVAL);
                continue;
            }
            records.clear();
            let read = reader.read(next, written, &mut records, RECORDS_BYTES_MAX)?;
            let count = match read {
                ReadOutcome::Read { records, .. } if records > 0 => {
                    u32::try_from(records).expect("a frame holds fewer than 2^32 records")
                }
                ReadOutcome::Read { .. } => {
                    return Err(format!("record {next} is written but could not be read").into())
                }
                ReadOutcome::Retired { first_available } => {
                    return Err(format!(
                        "record {next} was retired (the journal starts at {first_available})"
                    )
                    .into())
                }
            };
            send(
                stream,
                out,
                epoch,
                Message::Records {
                    first_sequence: next,
                    records_count: count,
                    records: &records,
                },
            )?;
            next += u64::from(count);
        }
    }

    fn read_acks(
        &self,
        mut stream: TcpStream,
        mut decoder: StreamDecoder,
        (connection, node_id): (u64, u64),
        epoch: u64,
        closed: &AtomicBool,
    ) {
        let _ = stream.set_read_timeout(Some(LOOK_INTERVAL));
        let stop = || self.stopping() || closed.load(Ordering::Acquire);
        loop {
            match read_frame(&mut stream, &mut decoder, &stop) {
                Ok(Some(Frame {
                    epoch: backup_epoch,
                    message: Message::Ack { durable_sequence },
                })) => {
                    if backup_epoch > epoch {
                        self.request_restart(format!(
                            "a backup knows epoch {backup_epoch}, newer than this primary's \
                             {epoch}"
                        ));
                        break;
                    }
                    if backup_epoch < epoch {
                        // An acknowledgement of an older stream counts for nothing here.
                        continue;
                    }
                    let mut backups = lock(&self.backups);
                    if let Some(slot) = backups
                        .iter_mut()
                        .find(|slot| slot.connection == connection)
                    {
                        slot.acknowledged = slot.acknowledged.max(durable_sequence);
                    }
                    drop(backups);
                    self.remember(node_id, durable_sequence);
                    self.progress.bump();
                }
                Ok(Some(_)) => {
                    warn!("clearline: a backup sent a frame other than an acknowledgement");
                    break;
                }
                Ok(None) => break,
                Err(error) => {
                    if !stop() {
                        warn!("clearline: a backup's acknowledgements: {error}");
                    }
                    break;
                }
            }
        }
        closed.store(true, Ordering::Release);
        self.progress.bump();
    }
}
