//! The checkpoint image: the engine's whole state as bytes, and the loader that rebuilds an
//! engine from them (docs/durability.md, "Checkpoint image").
//!
//! Layout (all integers little-endian):
//! - the magic `CLCKPT\0\0`, `CHECKPOINT_FORMAT_VERSION` (u32) and the nine capacities of the
//!   writer's `Config` (u32 each), then the engine clock (u64);
//! - the ledger's stores, then the exchange's (markets, books, orders and holds, fills,
//!   counters), each written next to its store (`checkpoint_write`/`checkpoint_read` in
//!   ledger.rs, index.rs, expiry.rs, exchange.rs and book.rs);
//! - last, the number of bytes written before it (u64).
//!
//! Every store is written as it is, in its own order: hash index tables slot by slot (only
//! occupied slots, with their slot numbers), heaps element by element, slabs as their occupied
//! slots plus the free list. The transfer id index is the exception: it is not written, and
//! the loader inserts every transfer and burned id again in position order (version 7).
//! Loading under the same capacities gives back the same tables; a hash index whose table size
//! differs (larger capacities) is rebuilt by inserting its entries in the written slot order,
//! which changes no lookup. Scratch buffers that carry nothing from one command to the next
//! (decode buffers, undo log, settlement buffers) are not written.
//!
//! Writing allocates nothing: it runs in a forked child of a multi-threaded process, where the
//! allocator's locks may be held by threads that no longer exist. The encoder fills a buffer on
//! its own stack and hands it to the writer in chunks of at most `CHUNK_SIZE` bytes.
//!
//! Loading never panics: every count is checked against the new capacities, every position and
//! link against the store it points into, every enum byte against its values. It does not prove
//! every cross-store invariant (`Engine::verify` does that, and can panic); the image is
//! protected by the checksum of the file that carries it.

use std::fmt;
use std::io;

use crate::limits::Config;
use crate::{Engine, Scratch, NO_POSITION};

/// Version of the image layout; bump on any change (documented in docs/durability.md).
///
/// Version 2 changed no bytes of the layout, only where the hash indexes place their entries
/// (index.rs probes in steps of 65 slots instead of 1). A version 1 image is still read: its
/// index entries are inserted again, as for a table of another size.
///
/// Version 3 appends the history section after the exchange's stores: a byte saying whether
/// the engine is in history mode, and if it is, its eviction state, the burn timestamps of
/// burned ids, the resolution timestamps of transfers, the id filter and the running history
/// digests (ledger/eviction.rs). Images of versions 1 and 2 are read as written without
/// history mode.
///
/// Version 4 changed no bytes either: its id filter places ids in blocks by all but their five
/// low bits (id_filter.rs, the clustered layout). A version 3 filter is read and used with the
/// layout it was written in.
///
/// Version 5 writes the id filter sparsely: each group of 64 blocks is a presence word and
/// only the blocks with a bit set (id_filter.rs). Earlier filters are read whole.
///
/// Version 6 appends the matching side's history section after the ledger's, in history mode
/// (exchange/history.rs): its eviction watermark, the fills dropped, each order's finish
/// timestamp, the dropped-order id filter and the running order and fill digests. An earlier
/// image in history mode held every order and fill in memory: they are all handed to the
/// store again after loading it.
///
/// Version 7 leaves out the transfer id index: the loader builds it again from the transfers
/// and burned ids, in position order. The index is the one large table the core writes at
/// random all the time; kept out of the image, it is kept out of the forked checkpoint writer
/// too, so the core's writes to it no longer copy its pages while a checkpoint is written
/// (`Engine::transfer_index_memory`). Earlier images are read with their index.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 7;

/// The oldest image version this build reads.
pub const CHECKPOINT_FORMAT_VERSION_MIN: u32 = 1;

/// The first version whose hash index slots can be taken as they are.
const INDEX_PLACEMENT_VERSION: u32 = 2;

/// The first version with a history section.
const HISTORY_SECTION_VERSION: u32 = 3;

/// The first version whose id filter uses the clustered layout.
const CLUSTERED_FILTER_VERSION: u32 = 4;

/// The first version whose id filter image leaves out empty blocks.
const SPARSE_FILTER_VERSION: u32 = 5;

/// The first version with the matching side's history section.
const ORDER_HISTORY_VERSION: u32 = 6;

/// The first version without the transfer id index (built again when loaded).
const TRANSFER_INDEX_REBUILT_VERSION: u32 = 7;

/// The first eight bytes of every image.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"CLCKPT\0\0";

/// The most bytes handed to the writer at once.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// Why an image could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointError {
    /// The image does not start with `CHECKPOINT_MAGIC`.
    MagicMismatch,
    /// The image was written by another layout version.
    VersionMismatch {
        /// The version in the image.
        found: u32,
    },
    /// The image ends before its last field.
    Truncated {
        /// Where the missing field starts.
        offset: u64,
    },
    /// The image's trailer does not give the bytes before it, or bytes follow the trailer.
    LengthMismatch {
        /// The image's length.
        size: u64,
        /// The length the trailer implies.
        expected: u64,
    },
    /// A store holds more than the new configuration allows.
    CapacityExceeded {
        /// The store.
        store: &'static str,
        /// What the image needs.
        count: u64,
        /// What the configuration allows.
        capacity: u64,
        /// The flag of `clearline start` that raises the capacity.
        flag: &'static str,
    },
    /// The image was written in history mode and is loaded without it, or the reverse.
    HistoryMode {
        /// Whether the image's engine was in history mode.
        image_in_history_mode: bool,
    },
    /// A value breaks an invariant the engine relies on.
    Invalid {
        /// The store.
        store: &'static str,
        /// The rule broken.
        rule: &'static str,
        /// Where the field ends.
        offset: u64,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CheckpointError::MagicMismatch => {
                write!(f, "not a checkpoint image: the magic bytes are wrong")
            }
            CheckpointError::VersionMismatch { found } => write!(
                f,
                "checkpoint image format version {found} is not supported (this build reads \
                 versions {CHECKPOINT_FORMAT_VERSION_MIN} to {CHECKPOINT_FORMAT_VERSION})"
            ),
            CheckpointError::Truncated { offset } => {
                write!(f, "checkpoint image is truncated at byte {offset}")
            }
            CheckpointError::LengthMismatch { size, expected } => write!(
                f,
                "checkpoint image is {size} bytes but its trailer says {expected}: truncated or \
                 followed by other bytes"
            ),
            CheckpointError::CapacityExceeded {
                store,
                count,
                capacity,
                flag,
            } => write!(
                f,
                "checkpoint image holds {count} {store} but the configuration allows \
                 {capacity}: raise {flag}"
            ),
            CheckpointError::HistoryMode {
                image_in_history_mode: true,
            } => write!(
                f,
                "checkpoint image was written in history mode, with part of the ledger in the \
                 history store: it can only be loaded in history mode, with that store (leave \
                 out --no-history; docs/history.md)"
            ),
            CheckpointError::HistoryMode {
                image_in_history_mode: false,
            } => write!(
                f,
                "checkpoint image was written without history mode: it cannot be loaded in \
                 history mode (start with --no-history to keep that mode; docs/history.md)"
            ),
            CheckpointError::Invalid {
                store,
                rule,
                offset,
            } => write!(
                f,
                "checkpoint image is invalid at byte {offset}: {store}: {rule}"
            ),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// Encodes fields into a buffer on the caller's stack and hands it to `out` when full.
pub(crate) struct ImageWriter<'a> {
    out: &'a mut dyn io::Write,
    buffer: &'a mut [u8; CHUNK_SIZE],
    used: usize,
    /// Bytes handed to `out` so far.
    flushed: u64,
}

impl ImageWriter<'_> {
    /// Bytes written so far, buffered ones included.
    pub(crate) fn position(&self) -> u64 {
        self.flushed + self.used as u64
    }

    pub(crate) fn bytes(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.used == CHUNK_SIZE {
                self.flush()?;
            }
            let room = CHUNK_SIZE - self.used;
            let take = room.min(bytes.len());
            self.buffer[self.used..self.used + take].copy_from_slice(&bytes[..take]);
            self.used += take;
            bytes = &bytes[take..];
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, value: u8) -> io::Result<()> {
        self.bytes(&[value])
    }

    pub(crate) fn u32(&mut self, value: u32) -> io::Result<()> {
        self.bytes(&value.to_le_bytes())
    }

    pub(crate) fn u64(&mut self, value: u64) -> io::Result<()> {
        self.bytes(&value.to_le_bytes())
    }

    pub(crate) fn u128(&mut self, value: u128) -> io::Result<()> {
        self.bytes(&value.to_le_bytes())
    }

    /// A store's length (every store holds fewer than 2^32 entries).
    pub(crate) fn count(&mut self, count: usize) -> io::Result<()> {
        assert!(count < NO_POSITION as usize);
        self.u32(count as u32)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buffer[..self.used])?;
        self.flushed += self.used as u64;
        self.used = 0;
        Ok(())
    }
}

/// The bytes `write` encodes, for tests of one store's image.
#[cfg(test)]
pub(crate) fn image_for_test(
    write: impl FnOnce(&mut ImageWriter<'_>) -> io::Result<()>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buffer = vec![0u8; CHUNK_SIZE];
    let buffer: &mut [u8; CHUNK_SIZE] = buffer.as_mut_slice().try_into().expect("chunk size");
    let mut writer = ImageWriter {
        out: &mut out,
        buffer,
        used: 0,
        flushed: 0,
    };
    write(&mut writer).expect("writes to memory");
    writer.flush().expect("writes to memory");
    out
}

/// A reader of `image` as an image of `version` would be read, for tests of one store's image.
#[cfg(test)]
pub(crate) fn reader_for_test(image: &[u8], version: u32) -> ImageReader<'_> {
    ImageReader {
        image,
        offset: 0,
        version,
    }
}

/// Reads fields of an image in order; every read fails cleanly at the end of the image.
pub(crate) struct ImageReader<'a> {
    image: &'a [u8],
    offset: usize,
    version: u32,
}

impl<'a> ImageReader<'a> {
    /// Whether hash index slots in this image are where this build would put them.
    pub(crate) fn index_placement_current(&self) -> bool {
        self.version >= INDEX_PLACEMENT_VERSION
    }

    /// Whether the image holds the transfer id index (else the loader builds it).
    pub(crate) fn transfer_index_written(&self) -> bool {
        self.version < TRANSFER_INDEX_REBUILT_VERSION
    }

    /// Whether the image's id filter uses the clustered layout.
    pub(crate) fn filter_clustered(&self) -> bool {
        self.version >= CLUSTERED_FILTER_VERSION
    }

    /// Whether the image's id filter leaves out empty blocks.
    pub(crate) fn filter_sparse(&self) -> bool {
        self.version >= SPARSE_FILTER_VERSION
    }

    fn take(&mut self, size: usize) -> Result<&'a [u8], CheckpointError> {
        let end = self
            .offset
            .checked_add(size)
            .filter(|end| *end <= self.image.len());
        let Some(end) = end else {
            return Err(CheckpointError::Truncated {
                offset: self.offset as u64,
            });
        };
        let bytes = &self.image[self.offset..end];
        self.offset = end;
        Ok(bytes)
    }

    fn array<const SIZE: usize>(&mut self) -> Result<[u8; SIZE], CheckpointError> {
        let mut array = [0u8; SIZE];
        array.copy_from_slice(self.take(SIZE)?);
        Ok(array)
    }

    /// Reads a fixed-size record.
    pub(crate) fn record<const SIZE: usize>(&mut self) -> Result<[u8; SIZE], CheckpointError> {
        self.array()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CheckpointError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn u128(&mut self) -> Result<u128, CheckpointError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    /// A store's length, checked against the capacity the new configuration gives it.
    pub(crate) fn count(
        &mut self,
        store: &'static str,
        capacity: usize,
        flag: &'static str,
    ) -> Result<usize, CheckpointError> {
        let count = self.u32()? as usize;
        if count > capacity {
            return Err(CheckpointError::CapacityExceeded {
                store,
                count: count as u64,
                capacity: capacity as u64,
                flag,
            });
        }
        Ok(count)
    }

    /// A link into a store of `len` entries: below `len`, or `NO_POSITION`.
    pub(crate) fn link(&mut self, store: &'static str, len: usize) -> Result<u32, CheckpointError> {
        let link = self.u32()?;
        if link != NO_POSITION && link as usize >= len {
            return Err(self.invalid(store, "a link points past its store"));
        }
        Ok(link)
    }

    /// A position in a store of `len` entries: below `len`.
    pub(crate) fn position(
        &mut self,
        store: &'static str,
        len: usize,
    ) -> Result<u32, CheckpointError> {
        let position = self.u32()?;
        if position as usize >= len {
            return Err(self.invalid(store, "a position points past its store"));
        }
        Ok(position)
    }

    /// The next number of a run written in strictly increasing order (slot numbers of a
    /// store's used slots); `previous` holds the last one read, and `rule` names the run in the
    /// error when the order breaks.
    pub(crate) fn increasing(
        &mut self,
        previous: &mut Option<usize>,
        store: &'static str,
        rule: &'static str,
    ) -> Result<usize, CheckpointError> {
        let number = self.u32()? as usize;
        if previous.is_some_and(|previous| number <= previous) {
            return Err(self.invalid(store, rule));
        }
        *previous = Some(number);
        Ok(number)
    }

    /// The error for a value that breaks `rule`, at the current offset.
    pub(crate) fn invalid(&self, store: &'static str, rule: &'static str) -> CheckpointError {
        CheckpointError::Invalid {
            store,
            rule,
            offset: self.offset as u64,
        }
    }
}

/// The capacities in the header, in this order.
fn config_fields(config: &Config) -> [u32; 9] {
    let Config {
        accounts_max,
        transfers_max,
        transfers_pending_max,
        account_balances_max,
        batch_events_max,
        query_results_max,
        markets_max,
        orders_max,
        fills_max,
    } = *config;
    [
        accounts_max,
        transfers_max,
        transfers_pending_max,
        account_balances_max,
        batch_events_max,
        query_results_max,
        markets_max,
        orders_max,
        fills_max,
    ]
}

impl Engine {
    /// Writes the engine's whole state to `out`, in chunks of at most 64 KiB
    /// (`CHUNK_SIZE`). Call it between commands.
    ///
    /// Allocates nothing (it may run in a forked child of a multi-threaded process): it encodes
    /// into a buffer on its own stack. `out` must not allocate either for that use.
    ///
    /// # Errors
    ///
    /// The first error of `out`.
    pub fn checkpoint_write(&self, out: &mut dyn io::Write) -> io::Result<()> {
        let Engine {
            ledger,
            exchange,
            scratch: _,
            clock,
        } = self;
        let mut buffer = [0u8; CHUNK_SIZE];
        let mut writer = ImageWriter {
            out,
            buffer: &mut buffer,
            used: 0,
            flushed: 0,
        };
        writer.bytes(&CHECKPOINT_MAGIC)?;
        writer.u32(CHECKPOINT_FORMAT_VERSION)?;
        for field in config_fields(&ledger.config) {
            writer.u32(field)?;
        }
        writer.u64(*clock)?;
        ledger.checkpoint_write(&mut writer)?;
        exchange.checkpoint_write(&mut writer)?;
        ledger.history_checkpoint_write(&mut writer)?;
        exchange.history_checkpoint_write(&mut writer)?;
        let size = writer.position();
        writer.u64(size)?;
        writer.flush()
    }

    /// Rebuilds an engine from an image written by `checkpoint_write`, under `config`, which
    /// may differ from the writer's (larger capacities, another batch size). Every store is
    /// allocated to `config`'s capacity exactly as `Engine::new` does, so nothing allocates
    /// afterwards.
    ///
    /// # Errors
    ///
    /// A wrong magic or version, a truncated image or one with trailing bytes, a store that
    /// holds more than `config` allows (naming the store, the count and the flag to raise), or
    /// a value that breaks an invariant the engine relies on (a position out of range, an
    /// unknown enum value).
    ///
    /// # Panics
    ///
    /// If `config` fails `Config::assert_valid` (as `Engine::new`).
    pub fn from_checkpoint(config: &Config, image: &[u8]) -> Result<Engine, CheckpointError> {
        Engine::from_checkpoint_inner(config, image, None)
    }

    /// As `from_checkpoint`, for an image written in history mode: the engine reads what left
    /// memory through `reader`, and its id filter must be sized for `ids_max` ids as when it
    /// was written. Records the store does not hold yet are handed out again by the next
    /// `history_drain` once `history_redrain` says from where.
    ///
    /// # Errors
    ///
    /// As `from_checkpoint`; `HistoryMode` for an image written without history mode.
    pub fn from_checkpoint_with_history(
        config: &Config,
        image: &[u8],
        reader: Box<dyn crate::history::HistoryRead>,
        ids_max: u64,
    ) -> Result<Engine, CheckpointError> {
        Engine::from_checkpoint_inner(config, image, Some((reader, ids_max)))
    }

    fn from_checkpoint_inner(
        config: &Config,
        image: &[u8],
        history: Option<(Box<dyn crate::history::HistoryRead>, u64)>,
    ) -> Result<Engine, CheckpointError> {
        config.assert_valid();
        let mut reader = ImageReader {
            image,
            offset: 0,
            version: 0,
        };
        if reader.array::<8>().ok() != Some(CHECKPOINT_MAGIC) {
            return Err(CheckpointError::MagicMismatch);
        }
        let version = reader.u32()?;
        if !(CHECKPOINT_FORMAT_VERSION_MIN..=CHECKPOINT_FORMAT_VERSION).contains(&version) {
            return Err(CheckpointError::VersionMismatch { found: version });
        }
        // The trailer first, so a truncated or extended image is named as such.
        let size = image.len() as u64;
        let expected = match image.len().checked_sub(8) {
            Some(start) => {
                let mut trailer = [0u8; 8];
                trailer.copy_from_slice(&image[start..]);
                u64::from_le_bytes(trailer).saturating_add(8)
            }
            None => 0,
        };
        if expected != size {
            return Err(CheckpointError::LengthMismatch { size, expected });
        }
        let body = ImageReader {
            image: &image[..image.len() - 8],
            offset: reader.offset,
            version,
        };
        let mut reader = body;
        // The writer's capacities: informative only, every store is checked by its own count.
        for _ in 0..config_fields(config).len() {
            reader.u32()?;
        }
        let mut engine = Engine::new(config);
        let history_wanted = history.is_some();
        if let Some((history_reader, ids_max)) = history {
            engine.enable_history(history_reader, ids_max);
        }
        let Engine {
            ledger,
            exchange,
            scratch: Scratch { .. },
            clock,
        } = &mut engine;
        *clock = reader.u64()?;
        ledger.checkpoint_read(&mut reader)?;
        exchange.checkpoint_read(&mut reader)?;
        let image_in_history_mode = version >= HISTORY_SECTION_VERSION && reader.u8()? != 0;
        if image_in_history_mode != history_wanted {
            return Err(CheckpointError::HistoryMode {
                image_in_history_mode,
            });
        }
        if image_in_history_mode {
            ledger.history_checkpoint_read(&mut reader, *clock)?;
            let present = version >= ORDER_HISTORY_VERSION;
            exchange.history_checkpoint_read(&mut reader, *clock, present)?;
        }
        if reader.offset != reader.image.len() {
            return Err(reader.invalid("image", "bytes remain after the last store"));
        }
        Ok(engine)
    }
}
