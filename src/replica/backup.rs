//! The backup's side of a replication group (docs/replication.md, "The stream"): the receiver
//! that follows the current primary and hands its frames to the core, and the thread that
//! acknowledges what this node holds durably.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use clearline_replication::frame::{
    Message, StreamDecoder, FRAME_BODY_SIZE_MAX, FRAME_HEADER_SIZE,
};
use clearline_replication::leadership::LeaderInfo;

use super::catch_up::Stage;
use super::{
    lock, read_frame, send, BoxError, Inbound, Replication, HANDSHAKE_TIMEOUT, LOOK_INTERVAL,
    RECONNECT_WAIT,
};

/// How long a backup waits before asking again after a catch-up it could not take.
const CATCH_UP_RETRY_WAIT: Duration = Duration::from_secs(5);

impl Replication {
    /// Keeps a connection to the current primary while this node is a backup, and hands what
    /// it streams to the core.
    pub(super) fn receiver(self: Arc<Replication>, inbox: &SyncSender<Inbound>) {
        // Said once per change: a dead primary is retried every RECONNECT_WAIT.
        let mut said = String::new();
        loop {
            if self.stopping() {
                return;
            }
            if self.epoch.load(Ordering::Acquire) != 0 {
                std::thread::sleep(LOOK_INTERVAL);
                continue;
            }
            let Some(primary) = self.primary() else {
                // No primary known: say why when etcd is the reason (once per new error).
                if let Some(error) = self.leadership.last_error() {
                    let text = format!("etcd: {error}");
                    if text != said {
                        warn!("clearline: no primary known yet; {text}");
                        said = text;
                    }
                }
                std::thread::sleep(LOOK_INTERVAL);
                continue;
            };
            if primary.node_id == self.config.node_id {
                // etcd still names this node from before a restart; its lease runs out.
                std::thread::sleep(LOOK_INTERVAL);
                continue;
            }
            if let Err(error) = self.follow(primary, inbox) {
                let text = format!(
                    "replication from the primary {} at {}: {error}",
                    primary.node_id, primary.peer_address
                );
                if !self.stopping() && text != said {
                    warn!("clearline: {text}");
                    said = text;
                }
            }
            std::thread::sleep(RECONNECT_WAIT);
        }
    }

    fn follow(
        self: &Arc<Replication>,
        primary: LeaderInfo,
        inbox: &SyncSender<Inbound>,
    ) -> Result<(), BoxError> {
        let mut stream = TcpStream::connect_timeout(&primary.peer_address, HANDSHAKE_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(LOOK_INTERVAL))?;
        let tip = *lock(&self.tip);
        let known_epoch = self.journal_epoch.load(Ordering::Acquire);
        let mut out = vec![0u8; FRAME_HEADER_SIZE + 64];
        send(
            &mut stream,
            &mut out,
            known_epoch,
            Message::Hello {
                node_id: self.config.node_id,
                durable_sequence: tip.sequence,
                durable_checksum: tip.checksum,
            },
        )?;
        let closed = Arc::new(AtomicBool::new(false));
        let acks = {
            let this = Arc::clone(self);
            let stream = stream.try_clone()?;
            let closed = Arc::clone(&closed);
            std::thread::Builder::new()
                .name("replica-acks-out".to_owned())
                .spawn(move || this.send_acks(stream, primary.epoch, &closed))?
        };
        let result = self.receive(&mut stream, primary, inbox, &closed);
        closed.store(true, Ordering::Release);
        let _ = stream.shutdown(Shutdown::Both);
        let _ = acks.join();
        result
    }

    fn receive(
        &self,
        stream: &mut TcpStream,
        primary: LeaderInfo,
        inbox: &SyncSender<Inbound>,
        closed: &AtomicBool,
    ) -> Result<(), BoxError> {
        let mut decoder = StreamDecoder::new(FRAME_BODY_SIZE_MAX);
        let still_following = || {
            !self.stopping()
                && !closed.load(Ordering::Acquire)
                && self.epoch.load(Ordering::Acquire) == 0
                && self.primary().is_some_and(|now| now.epoch == primary.epoch)
        };
        let stop = || !still_following();
        let mut welcomed = false;
        // Set when the primary's journal no longer reaches this node's: a catch-up follows.
        let mut catch_up_segment_size = None;
        let mut stage: Option<Stage> = None;
        loop {
            let Some(frame) = read_frame(stream, &mut decoder, &stop)? else {
                return Ok(());
            };
            if frame.epoch < self.journal_epoch.load(Ordering::Acquire) {
                return Err(format!(
                    "refused a frame of epoch {}: this node's journal has records of epoch {}",
                    frame.epoch,
                    self.journal_epoch.load(Ordering::Acquire)
                )
                .into());
            }
            if frame.epoch != primary.epoch {
                return Err(format!(
                    "the stream's epoch {} is not the primary's {}",
                    frame.epoch, primary.epoch
                )
                .into());
            }
            let inbound = match frame.message {
                Message::Welcome {
                    generation,
                    segment_size,
                    first_sequence,
                    ..
                } => {
                    welcomed = true;
                    // A catch-up may follow: when this node needs records the primary retired,
                    // or when the two journals part before the primary's first record.
                    catch_up_segment_size = Some(segment_size);
                    let holds = lock(&self.tip).sequence;
                    if holds + 1 < first_sequence {
                        say!(
                            "clearline: this node holds records up to {holds} and the \
                             primary's journal starts at {first_sequence} (older records were \
                             retired after a checkpoint): it catches up from the primary's \
                             checkpoint"
                        );
                        continue;
                    }
                    Inbound::Welcome {
                        generation,
                        segment_size,
                    }
                }
                _ if !welcomed => return Err("the primary did not start with a welcome".into()),
                Message::Records {
                    first_sequence,
                    records_count,
                    records,
                } => {
                    let mut bytes = self.buffer();
                    bytes.extend_from_slice(records);
                    Inbound::Records {
                        first_sequence,
                        count: records_count,
                        bytes,
                    }
                }
                Message::Truncate {
                    from_sequence,
                    previous_checksum,
                } => Inbound::Truncate {
                    from_sequence,
                    previous_checksum,
                },
                Message::CatchUp { .. }
                | Message::CatchUpChunk { .. }
                | Message::CatchUpEnd { .. } => {
                    let taken = self.take_catch_up(
                        &frame.message,
                        &mut stage,
                        catch_up_segment_size,
                        primary.epoch,
                    );
                    match taken {
                        Ok(false) => continue,
                        Ok(true) => return Ok(()),
                        Err(error) => {
                            // Asked again after a pause: a catch-up costs the primary a copy.
                            std::thread::sleep(CATCH_UP_RETRY_WAIT);
                            return Err(error);
                        }
                    }
                }
                other => {
                    return Err(
                        format!("unexpected {:?} frame from the primary", other.kind()).into(),
                    )
                }
            };
            let mut item = inbound;
            loop {
                match inbox.try_send(item) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        if stop() {
                            return Ok(());
                        }
                        item = back;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
        }
    }

    /// Takes one frame of a catch-up from a checkpoint; true once it is complete and the
    /// process starts again to install it.
    fn take_catch_up(
        &self,
        message: &Message<'_>,
        stage: &mut Option<Stage>,
        segment_size: Option<u64>,
        epoch: u64,
    ) -> Result<bool, BoxError> {
        match *message {
            Message::CatchUp { .. } => {
                let Some(segment_size) = segment_size else {
                    return Err("a catch-up before the primary's welcome".into());
                };
                *stage = Some(Stage::begin(
                    &self.data,
                    message,
                    (segment_size, lock(&self.journal_facts).segment_size),
                    self.history,
                    epoch,
                )?);
                Ok(false)
            }
            Message::CatchUpChunk {
                part,
                offset,
                bytes,
            } => {
                let Some(stage) = stage.as_mut() else {
                    return Err("a catch-up chunk before its CatchUp frame".into());
                };
                stage.write(part, offset, bytes)?;
                Ok(false)
            }
            Message::CatchUpEnd {
                store_entries,
                store_bytes,
            } => {
                let Some(stage) = stage.take() else {
                    return Err("a catch-up end before its CatchUp frame".into());
                };
                let done = stage.finish(store_entries, store_bytes)?;
                self.request_restart(done);
                Ok(true)
            }
            _ => Err("not a catch-up frame".into()),
        }
    }

    fn send_acks(&self, mut stream: TcpStream, epoch: u64, closed: &AtomicBool) {
        let mut out = vec![0u8; FRAME_HEADER_SIZE + 64];
        let mut sent = u64::MAX;
        let mut seen = 0;
        loop {
            if self.stopping() || closed.load(Ordering::Acquire) {
                return;
            }
            let durable = self.durability.durable_sequence();
            if durable != sent {
                let message = Message::Ack {
                    durable_sequence: durable,
                };
                if send(&mut stream, &mut out, epoch, message).is_err() {
                    closed.store(true, Ordering::Release);
                    return;
                }
                sent = durable;
            }
            seen = self.progress.wait(seen, LOOK_INTERVAL);
        }
    }
}
