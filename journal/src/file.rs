//! Plain-file storage: the same segment files as [`crate::MmapStorage`], read and written with
//! pread/pwrite and synced with fdatasync. Used by the offline tools (`verify`, `inspect`) in
//! read-only mode under a shared lock, and available as a fallback backend for writing.
//!
//! Has no `unsafe`: the OS calls it needs (flock, fallocate) come from `crate::mmap`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::mmap::{
    create_allocated, drop_cached_pages, list_directory, lock_directory, will_need, DataMap,
};
use crate::storage::{check_range, Segment, SegmentSync, Storage};

/// Storage over plain file reads and writes.
pub struct FileStorage {
    dir: PathBuf,
    read_only: bool,
    _lock: File,
}

impl FileStorage {
    /// Creates `dir` if missing and takes its exclusive lock, for writing.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when the lock is held elsewhere; any I/O error.
    pub fn open(dir: &Path) -> io::Result<FileStorage> {
        fs::create_dir_all(dir)?;
        FileStorage::locked(dir, false)
    }

    /// Opens an existing `dir` read-only under a shared lock (so a running writer, which holds
    /// the exclusive lock, makes this fail instead of racing it).
    ///
    /// # Errors
    ///
    /// `NotFound` when `dir` does not exist, `WouldBlock` when a writer holds the lock.
    pub fn open_read_only(dir: &Path) -> io::Result<FileStorage> {
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no such journal directory",
            ));
        }
        FileStorage::locked(dir, true)
    }

    /// Takes the lock of the existing `dir`: shared when `read_only`, else exclusive.
    fn locked(dir: &Path, read_only: bool) -> io::Result<FileStorage> {
        Ok(FileStorage {
            dir: dir.to_owned(),
            read_only,
            _lock: lock_directory(dir, !read_only)?,
        })
    }

    fn refuse_if_read_only(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only storage",
            ));
        }
        Ok(())
    }
}

impl Storage for FileStorage {
    fn list(&mut self) -> io::Result<Vec<String>> {
        list_directory(&self.dir)
    }

    fn create(&mut self, name: &str, size: u64, header: &[u8]) -> io::Result<Box<dyn Segment>> {
        self.refuse_if_read_only()?;
        let file = create_allocated(&self.dir.join(name), size, header)?;
        Ok(Box::new(FileSegment::new(file, false, DataMap::live())?))
    }

    fn open(&mut self, name: &str) -> io::Result<Box<dyn Segment>> {
        let file = OpenOptions::new()
            .read(true)
            .write(!self.read_only)
            .open(self.dir.join(name))?;
        drop_cached_pages(&file);
        let data = DataMap::opened(&file, file.metadata()?.len());
        Ok(Box::new(FileSegment::new(file, self.read_only, data)?))
    }

    fn read_file(&mut self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.dir.join(name))
    }

    fn read_file_head(&mut self, name: &str, len: usize) -> io::Result<(Vec<u8>, u64)> {
        crate::file::read_head(&self.dir.join(name), len)
    }

    fn write_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.refuse_if_read_only()?;
        write_file_synced(&self.dir.join(name), bytes)
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.refuse_if_read_only()?;
        fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.refuse_if_read_only()?;
        fs::remove_file(self.dir.join(name))
    }

    fn sync_directory(&mut self) -> io::Result<()> {
        self.refuse_if_read_only()?;
        crate::mmap::sync_directory(&self.dir)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// The first `len` bytes of the file at `path` (fewer if it is shorter) and its size.
pub(crate) fn read_head(path: &Path, len: usize) -> io::Result<(Vec<u8>, u64)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut bytes = vec![0u8; len.min(usize::try_from(size).unwrap_or(usize::MAX))];
    file.read_exact_at(&mut bytes, 0)?;
    Ok((bytes, size))
}

/// Creates or replaces the file at `path` with `bytes` and syncs it (not its directory).
pub(crate) fn write_file_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all_at(bytes, 0)?;
    file.sync_all()
}

struct FileSegment {
    file: Arc<File>,
    size: u64,
    read_only: bool,
    /// Where the file held data when opened.
    data: DataMap,
}

impl FileSegment {
    fn new(file: File, read_only: bool, data: DataMap) -> io::Result<FileSegment> {
        let size = file.metadata()?.len();
        Ok(FileSegment {
            file: Arc::new(file),
            size,
            read_only,
            data,
        })
    }
}

impl Segment for FileSegment {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
        check_range(offset, buffer.len(), self.size)?;
        self.file.read_exact_at(buffer, offset)
    }

    fn next_data(&self, offset: u64) -> u64 {
        self.data.next_data(&self.file, offset, self.size)
    }

    fn will_need(&self, offset: u64) {
        will_need(&self.file, offset);
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only storage",
            ));
        }
        check_range(offset, bytes.len(), self.size)?;
        self.data.written();
        self.file.write_all_at(bytes, offset)
    }

    fn syncer(&self) -> Arc<dyn SegmentSync> {
        Arc::new(FileSync {
            file: Arc::clone(&self.file),
        })
    }
}

struct FileSync {
    file: Arc<File>,
}

impl SegmentSync for FileSync {
    fn sync(&self, _offset: u64, _size: u64) -> io::Result<()> {
        // fdatasync has no range; it covers the whole file, which includes the range.
        self.file.sync_data()
    }
}
