//! A copy of the whole store as a stream of entries: how a primary hands its store to a backup
//! that catches up from a checkpoint (docs/replication.md, "Catching up from a checkpoint").
//!
//! The stream is a sequence of chunks, each holding whole entries. An entry is an 8-byte
//! header, then the key, then the value:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | key space number (its place in `History::all_key_spaces`, `meta` last) |
//! | 1 | reserved, zero |
//! | 2..4 | key size, little-endian u16 |
//! | 4..8 | value size, little-endian u32 |
//!
//! Invariants:
//! - an export reads one fjall snapshot: every key space as it was at one instant, so the
//!   watermark it carries never claims more than the records beside it (an ingest writes its
//!   tables before its watermark);
//! - key spaces come in their numbered order and keys in increasing order within one, which is
//!   the order fjall's ingestion of sorted input needs on the other side;
//! - an import writes only into a store that holds nothing, and refuses an entry out of order,
//!   a key space number it does not know, or a chunk that ends inside an entry, before writing
//!   that entry.

use crate::error::HistoryError;
use crate::store::History;
use fjall::Readable;

/// Size of an entry's header in a copy of the store.
pub const COPY_ENTRY_HEADER_SIZE: usize = 8;

/// How much a copy of the store held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Entries (keys with their values).
    pub entries: u64,
    /// Bytes of the entries, headers included.
    pub bytes: u64,
}

fn corrupt(detail: String) -> HistoryError {
    HistoryError::Corrupt {
        what: "store copy",
        detail,
    }
}

impl History {
    /// Hands the whole store, read from one snapshot, to `send` in chunks of whole entries of
    /// at most `chunk_bytes_max` bytes each (at least one entry per chunk).
    ///
    /// # Errors
    ///
    /// What `send` returns, and store errors (converted with `From`); an entry larger than
    /// `chunk_bytes_max` or with a key above 64 KiB is `Corrupt`.
    pub fn export<E: From<HistoryError>>(
        &self,
        chunk_bytes_max: usize,
        mut send: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<CopyReport, E> {
        let snapshot = self.database().snapshot();
        let mut chunk = Vec::with_capacity(chunk_bytes_max);
        let mut report = CopyReport::default();
        for (number, (name, key_space)) in self.all_key_spaces().into_iter().enumerate() {
            for guard in snapshot.iter(key_space) {
                let (key, value) = guard
                    .into_inner()
                    .map_err(|error| HistoryError::fjall(name, self.directory().into(), error))?;
                let size = COPY_ENTRY_HEADER_SIZE + key.len() + value.len();
                let key_size = u16::try_from(key.len()).ok();
                let value_size = u32::try_from(value.len()).ok();
                let (Some(key_size), Some(value_size)) = (key_size, value_size) else {
                    return Err(corrupt(format!("a key of {name} too large to copy")).into());
                };
                if size > chunk_bytes_max {
                    return Err(corrupt(format!(
                        "an entry of {name} of {size} bytes, above the chunk size \
                         {chunk_bytes_max}"
                    ))
                    .into());
                }
                if chunk.len() + size > chunk_bytes_max {
                    send(&chunk)?;
                    chunk.clear();
                }
                chunk.push(u8::try_from(number).expect("eleven key spaces"));
                chunk.push(0);
                chunk.extend_from_slice(&key_size.to_le_bytes());
                chunk.extend_from_slice(&value_size.to_le_bytes());
                chunk.extend_from_slice(&key);
                chunk.extend_from_slice(&value);
                report.entries += 1;
                report.bytes += size as u64;
            }
        }
        if !chunk.is_empty() {
            send(&chunk)?;
        }
        Ok(report)
    }

    /// Loads a copy made by [`History::export`] into this store, which must be empty, chunk
    /// by chunk as `chunks` yields them; each key space is written with fjall's ingestion of
    /// sorted input and is durable once the next one starts (or the call returns). Reopen the
    /// store afterwards to read what was loaded.
    ///
    /// # Errors
    ///
    /// `Corrupt` when the store is not empty or the copy breaks a rule of the module's
    /// invariants; fjall errors.
    pub fn import(
        &self,
        chunks: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<CopyReport, HistoryError> {
        let key_spaces = self.all_key_spaces();
        let snapshot = self.database().snapshot();
        if let Some((name, _)) = key_spaces
            .iter()
            .find(|(_, key_space)| snapshot.iter(*key_space).next().is_some())
        {
            return Err(corrupt(format!(
                "{}: key space {name} is not empty: a copy loads only into an empty store",
                self.directory().display()
            )));
        }
        drop(snapshot);
        let mut report = CopyReport::default();
        // The key space being written, its ingestion and the last key written to it.
        let mut writing: Option<(usize, _, Vec<u8>)> = None;
        for chunk in chunks {
            let mut at = 0;
            while at < chunk.len() {
                let header = chunk
                    .get(at..at + COPY_ENTRY_HEADER_SIZE)
                    .ok_or_else(|| corrupt("a chunk ends inside an entry's header".into()))?;
                let number = usize::from(header[0]);
                let key_size = usize::from(u16::from_le_bytes([header[2], header[3]]));
                let value_size =
                    u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
                if header[1] != 0 {
                    return Err(corrupt("an entry's reserved byte is not zero".into()));
                }
                let key_start = at + COPY_ENTRY_HEADER_SIZE;
                let value_start = key_start + key_size;
                let end = value_start + value_size;
                if end > chunk.len() {
                    return Err(corrupt("a chunk ends inside an entry".into()));
                }
                let Some(&(name, key_space)) = key_spaces.get(number) else {
                    return Err(corrupt(format!("key space number {number} is unknown")));
                };
                let key = &chunk[key_start..value_start];
                let value = &chunk[value_start..end];
                let fjall_error = |error| HistoryError::fjall(name, self.directory().into(), error);
                match &writing {
                    Some((current, _, last)) if *current == number => {
                        if key <= last.as_slice() {
                            return Err(corrupt(format!("keys of {name} out of order")));
                        }
                    }
                    Some((current, _, _)) if *current > number => {
                        return Err(corrupt(format!("key space {name} after a later one")));
                    }
                    _ => {
                        let next = key_space.start_ingestion().map_err(fjall_error)?;
                        if let Some((previous, ingestion, _)) =
                            writing.replace((number, next, Vec::new()))
                        {
                            let previous_name = key_spaces[previous].0;
                            ingestion.finish().map_err(|error| {
                                HistoryError::fjall(previous_name, self.directory().into(), error)
                            })?;
                        }
                    }
                }
                let (_, ingestion, last) = writing.as_mut().expect("an ingestion is open");
                ingestion.write(key, value).map_err(fjall_error)?;
                last.clear();
                last.extend_from_slice(key);
                report.entries += 1;
                report.bytes += (end - at) as u64;
                at = end;
            }
        }
        if let Some((number, ingestion, _)) = writing {
            let name = key_spaces[number].0;
            ingestion
                .finish()
                .map_err(|error| HistoryError::fjall(name, self.directory().into(), error))?;
        }
        Ok(report)
    }
}
