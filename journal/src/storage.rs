//! The storage trait the journal runs on: a directory of named files, segment files of fixed
//! size that are read, written and synced by range, and whole small files (checkpoints).
//!
//! Three implementations: [`crate::MmapStorage`] (production: fallocate, shared mapping, msync),
//! [`crate::FileStorage`] (plain pread/pwrite/fdatasync: read-only tools and a fallback) and
//! [`crate::sim::SimStorage`] (in-memory disk with injected faults, for tests).
//!
//! Contract every implementation keeps:
//! - `create` returns a file of exactly `size` bytes backed by real blocks (never sparse),
//!   zero-filled except `header` at offset 0, and synced; an allocation failure is an error
//!   whose `raw_os_error()` is `ENOSPC` (or kind `StorageFull`), and leaves no file behind;
//! - directory changes (create, rename, remove) are durable only after `sync_directory`;
//! - a segment is written by one owner (`&mut`), while `SegmentSync` handles may sync it from
//!   another thread.

use std::io;
use std::sync::Arc;

/// A directory of journal files.
pub trait Storage: Send {
    /// Names of the files in the directory, sorted.
    ///
    /// # Errors
    ///
    /// Any I/O error from listing.
    fn list(&mut self) -> io::Result<Vec<String>>;

    /// Creates `name` with `size` bytes of allocated, zeroed blocks, writes `header` at offset 0
    /// and syncs the file (not the directory).
    ///
    /// # Errors
    ///
    /// `ENOSPC` when the blocks cannot be allocated; any other I/O error.
    fn create(&mut self, name: &str, size: u64, header: &[u8]) -> io::Result<Box<dyn Segment>>;

    /// Opens an existing segment file for reading and (unless read-only) writing.
    ///
    /// # Errors
    ///
    /// Any I/O error from opening or mapping.
    fn open(&mut self, name: &str) -> io::Result<Box<dyn Segment>>;

    /// Reads a whole small file.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn read_file(&mut self, name: &str) -> io::Result<Vec<u8>>;

    /// Reads at most the first `len` bytes of a file, and its whole size: a checkpoint's header
    /// without its image. The default reads the whole file.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn read_file_head(&mut self, name: &str, len: usize) -> io::Result<(Vec<u8>, u64)> {
        let mut bytes = self.read_file(name)?;
        let size = bytes.len() as u64;
        bytes.truncate(len);
        Ok((bytes, size))
    }

    /// Creates (or replaces) `name` with `bytes` and syncs its data.
    ///
    /// # Errors
    ///
    /// Any I/O error, `ENOSPC` included.
    fn write_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;

    /// Renames a file inside the directory (atomically replacing `to`).
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()>;

    /// Removes a file.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn remove(&mut self, name: &str) -> io::Result<()>;

    /// Makes the directory's entries durable (fsync of the directory).
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn sync_directory(&mut self) -> io::Result<()>;

    /// A short description for messages (the directory path).
    fn describe(&self) -> String;
}

/// One open segment file.
pub trait Segment: Send {
    /// Size of the file in bytes (fixed).
    fn size(&self) -> u64;

    /// Reads `buffer.len()` bytes at `offset`.
    ///
    /// # Errors
    ///
    /// Out-of-range reads and any I/O error.
    fn read(&self, offset: u64, buffer: &mut [u8]) -> io::Result<()>;

    /// Where the first bytes at or after `offset` that may be non-zero start; everything
    /// before it reads as zeros (the file system's holes and unwritten extents). `size()` when
    /// the rest is all zeros. The default, `offset`, claims nothing.
    fn next_data(&self, offset: u64) -> u64 {
        offset
    }

    /// Advice that everything from `offset` to the end will be read soon, front to back (the
    /// recovery scan): the storage may start reading it now. The default does nothing.
    fn will_need(&self, _offset: u64) {}

    /// Writes `bytes` at `offset` (not durable until synced).
    ///
    /// # Errors
    ///
    /// Out-of-range writes, read-only storage and any I/O error.
    fn write(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;

    /// A handle that syncs ranges of this segment, usable from another thread.
    fn syncer(&self) -> Arc<dyn SegmentSync>;
}

/// Syncs ranges of one segment to the device.
pub trait SegmentSync: Send + Sync {
    /// Makes bytes `offset..offset + size` durable (msync with MS_SYNC, or fdatasync).
    ///
    /// # Errors
    ///
    /// Any I/O error; the journal treats every sync error as fatal.
    fn sync(&self, offset: u64, size: u64) -> io::Result<()>;

    /// Advice after a sync of this segment succeeded and its sequence was published: the bytes
    /// below the end of that sync are durable and the writer does not write below it again, so
    /// a storage that keeps them in the process's memory may let them go (the mapped storage
    /// unmaps their pages, in batches). It never fails and changes no byte. Default: nothing.
    fn release_durable(&self) {}

    /// Advice that nothing in this segment needs to stay in the process's memory: the writer
    /// has moved on to a later segment and all it wrote here is durable, or recovery has just
    /// read and synced the segment. It never fails and changes no byte. Default: nothing.
    fn release_all(&self) {}

    /// Advice that the writer will soon write `offset..offset + size`, never written yet: a
    /// storage that maps the file may make those pages present and writable now, on the
    /// calling thread, so that the writer's stores do not fault. It never fails and changes no
    /// byte. Default: nothing.
    fn prefault(&self, _offset: u64, _size: u64) {}
}

/// Whether `error` means the device is out of space.
pub fn is_storage_full(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    ) || error.kind() == io::ErrorKind::StorageFull
}

/// Checks that `offset..offset + size` lies within a file of `file_size` bytes.
///
/// # Errors
///
/// `InvalidInput` when it does not.
pub fn check_range(offset: u64, size: usize, file_size: u64) -> io::Result<()> {
    match offset.checked_add(size as u64) {
        Some(end) if end <= file_size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range {offset}+{size} outside a file of {file_size} bytes"),
        )),
    }
}
