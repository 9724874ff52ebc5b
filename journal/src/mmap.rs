//! The only module of the project with `unsafe` code: the memory-mapped segment storage and the
//! few operating-system calls the journal needs (flock, fallocate, posix_fadvise, madvise,
//! sync_file_range, setpriority and ioprio_set for background threads, and fork, prctl,
//! getppid, waitpid, kill and _exit for the checkpoint child), and the process's allocator,
//! which advises huge pages for large allocations so that fork copies fewer page-table entries.
//!
//! Soundness rests on two facts, kept here and nowhere else:
//! - the directory lock (`flock` on `DIR/lock`) is held for as long as any mapping lives, so no
//!   cooperating process writes or truncates a segment under us (an uncooperative one can still
//!   truncate the file; the process then dies by SIGBUS, which is the documented outcome of
//!   test matrix row 13, and restart treats the short file as corruption);
//! - segment files are allocated with `fallocate` before they are mapped, so every mapped byte
//!   has a real block and a full disk shows up as `ENOSPC` at creation, never as SIGBUS on a
//!   store into a hole.
//!
//! Inside the process a mapping is reached only through one [`MmapSegment`] owner: writes need
//! `&mut`, reads `&`, so the borrow checker rules out data races between them; the syncer thread
//! only calls msync, and madvise to release durable pages, neither of which touches the bytes
//! from Rust or changes them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw, UncheckedAdvice};

use crate::storage::{check_range, Segment, SegmentSync, Storage};

/// Name of the lock file inside a journal directory.
pub const LOCK_FILE: &str = "lock";

/// Takes a non-blocking flock on `file`: exclusive or shared.
///
/// # Errors
///
/// `WouldBlock` when another open file description holds a conflicting lock; any other error of
/// `flock`.
pub fn lock(file: &File, exclusive: bool) -> io::Result<()> {
    let operation = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    // SAFETY: flock takes a file descriptor that `file` keeps open for the duration of the call
    // and an integer operation; it touches no memory of ours.
    let result = unsafe { libc::flock(file.as_raw_fd(), operation) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Allocates real blocks for bytes `0..size` of `file` (not a sparse `set_len`).
///
/// # Errors
///
/// `ENOSPC` when the file system is full; `EOPNOTSUPP` on file systems without fallocate.
pub fn allocate(file: &File, size: u64) -> io::Result<()> {
    let size = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment size too large"))?;
    loop {
        // SAFETY: fallocate takes a file descriptor that `file` keeps open and plain integers;
        // mode 0 allocates blocks and extends the file size, touching no memory of ours.
        let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size) };
        if result == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Asks the kernel to drop clean cached pages of `file`, so that the next reads come from the
/// device (rule J6: after a failed sync the page cache may hold data the device does not).
/// Best effort: the result is ignored because correctness does not depend on it.
pub fn drop_cached_pages(file: &File) {
    // SAFETY: posix_fadvise takes a file descriptor that `file` keeps open and integers; it is
    // advice only and touches no memory of ours.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// How many bytes of `file` the page cache holds, in whole pages (`mincore` over a read-only
/// mapping of the file; the mapping itself brings no page in). For tests and diagnostics of
/// `drop_cached_pages`.
///
/// # Errors
///
/// The file's length cannot be read, or the mapping or `mincore` fails.
pub fn cached_bytes(file: &File) -> io::Result<u64> {
    let length = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
    if length == 0 {
        return Ok(0);
    }
    // A raw mapping: no reference into it is made, and mincore reads no byte of it.
    let map = MmapOptions::new().len(length).map_raw_read_only(file)?;
    let page = page_size() as usize;
    let mut residency = vec![0u8; length.div_ceil(page)];
    // SAFETY: the range is the mapping's own, and `residency` has one byte per page of it.
    let result = unsafe { libc::mincore(map.as_mut_ptr().cast(), length, residency.as_mut_ptr()) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    let pages = residency.iter().filter(|byte| *byte & 1 != 0).count();
    Ok((pages * page) as u64)
}

/// Write-behind for a file written front to back: starts the device write of
/// `[offset, offset + length)`, then waits until the window before it, `[offset - length,
/// offset)`, is on the device. A writer that calls this after each window keeps at most two
/// windows queued at the device, so a sync of another file (the journal's, which replies wait
/// for) queues behind little of this one. Durability still needs a sync at the end: this
/// writes data, not metadata. Best effort: errors are ignored (the final sync reports them).
/// A plain system call, safe in a forked child.
pub fn write_behind(file: &File, offset: u64, length: u64) {
    let (Ok(start), Ok(count)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(length),
    ) else {
        return;
    };
    let fd = file.as_raw_fd();
    // SAFETY: sync_file_range takes a descriptor that `file` keeps open and integers; it
    // touches no memory of ours.
    unsafe {
        libc::sync_file_range(fd, start, count, libc::SYNC_FILE_RANGE_WRITE);
        if start >= count {
            libc::sync_file_range(
                fd,
                start - count,
                count,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
    }
}

/// Asks the kernel to read the data of `file` from `offset` up to the first hole after it (a
/// preallocated segment's never written rest counts as one) into the page cache now
/// (`POSIX_FADV_WILLNEED`), so that a scan front to back finds it there instead of faulting in
/// a small read-ahead window at a time. Best effort: the results are ignored.
pub fn will_need(file: &File, offset: u64) {
    let Ok(start) = libc::off_t::try_from(offset) else {
        return;
    };
    let fd = file.as_raw_fd();
    // SAFETY: lseek and posix_fadvise take a descriptor that `file` keeps open and integers;
    // they touch no memory of ours, and the descriptor's position is used by no read or write
    // of the journal (they are positional or go through the mapping).
    unsafe {
        let hole = libc::lseek(fd, start, libc::SEEK_HOLE);
        if hole > start {
            libc::posix_fadvise(fd, start, hole - start, libc::POSIX_FADV_WILLNEED);
        }
    }
}

/// Most data ranges `DataMap::opened` keeps; a file with more is asked live instead.
const DATA_RANGES_MAX: usize = 4096;

/// Where a segment file held data when it was opened, kept until its first write: what
/// `Segment::next_data` answers during recovery.
///
/// Asking the file system live is not enough there: reading a never written (preallocated)
/// range leaves zero-filled pages in the page cache, `SEEK_DATA` then counts that range as
/// data, and read-ahead behind each read of it reaches further. Recovery's look past the end of
/// the valid log would zero-fill and read the whole rest of the last segment and all of the
/// spare (up to 2 GiB of page cache at the default segment size, seconds of a restart on a
/// small machine). Taken at open, before anything was read, the ranges are exact: written
/// extents, and never written ones whose pages a previous process left in the page cache.
pub(crate) struct DataMap {
    /// `None`: ask the file system (the file was written since it was opened, or the map
    /// could not be taken).
    opened: Option<Vec<(u64, u64)>>,
}

impl DataMap {
    /// The ranges of `file` (of `size` bytes) that hold data now.
    pub(crate) fn opened(file: &File, size: u64) -> DataMap {
        DataMap {
            opened: data_ranges(file, size),
        }
    }

    /// A map that always asks the file system.
    pub(crate) fn live() -> DataMap {
        DataMap { opened: None }
    }

    /// The file was written: its data no longer matches what was opened.
    pub(crate) fn written(&mut self) {
        self.opened = None;
    }

    /// As [`next_data`], from the ranges taken at open while there are any.
    pub(crate) fn next_data(&self, file: &File, offset: u64, size: u64) -> u64 {
        let Some(ranges) = &self.opened else {
            return next_data(file, offset, size);
        };
        ranges
            .iter()
            .find(|(_, end)| *end > offset)
            .map_or(size, |(start, _)| (*start).max(offset))
    }
}

/// The data ranges of `file`, from `SEEK_DATA` and `SEEK_HOLE`; `None` if the file system
/// cannot tell, or there are more than [`DATA_RANGES_MAX`].
fn data_ranges(file: &File, size: u64) -> Option<Vec<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut offset = 0u64;
    while offset < size {
        let at = libc::off_t::try_from(offset).ok()?;
        // SAFETY: lseek takes a descriptor that `file` keeps open and integers; it touches no
        // memory of ours, and the descriptor's position is used by no read or write of the
        // journal (they are positional or go through the mapping).
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            return match io::Error::last_os_error().raw_os_error() {
                Some(libc::ENXIO) => Some(ranges),
                _ => None,
            };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < data || ranges.len() == DATA_RANGES_MAX {
            return None;
        }
        ranges.push((data as u64, (hole as u64).min(size)));
        offset = hole as u64;
    }
    Some(ranges)
}

/// The start of the first region at or after `offset` where `file` (of `size` bytes) may hold
/// non-zero bytes, as the file system reports it (`lseek` with `SEEK_DATA`): holes and
/// allocated but never written extents read as zeros and are skipped. `size` when nothing after
/// `offset` holds data. A file system that cannot tell answers `offset`, so the caller reads
/// everything as before.
pub fn next_data(file: &File, offset: u64, size: u64) -> u64 {
    let Ok(start) = libc::off_t::try_from(offset) else {
        return offset;
    };
    // SAFETY: lseek takes a file descriptor that `file` keeps open and integers; it touches no
    // memory of ours. The descriptor's position is not used by any read or write of the
    // journal (they are positional or go through the mapping).
    let found = unsafe { libc::lseek(file.as_raw_fd(), start, libc::SEEK_DATA) };
    if found >= 0 {
        return (found as u64).clamp(offset, size);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) => size,
        _ => offset,
    }
}

/// How long `lock_directory` waits for a lock another process holds. A checkpoint child of a
/// server killed a moment ago shares the server's lock until its first step, closing the
/// descriptors it inherited, which a busy machine may delay by some milliseconds: a restart
/// right after the kill would otherwise be refused. A server that is really running holds the
/// lock for longer than this.
const LOCK_WAIT_MAX: Duration = Duration::from_secs(2);

/// Between two tries of a lock another process holds.
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// Opens (creating if needed) the lock file of `dir` and locks it, waiting up to
/// `LOCK_WAIT_MAX` while another process holds it.
///
/// # Errors
///
/// `WouldBlock` when another process still holds the lock after that, or any I/O error.
pub fn lock_directory(dir: &Path, exclusive: bool) -> io::Result<File> {
    let file = if exclusive {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))?
    } else {
        match File::open(dir.join(LOCK_FILE)) {
            Ok(file) => file,
            // A read-only tool on a directory that never had a writer: lock the directory itself.
            Err(error) if error.kind() == io::ErrorKind::NotFound => File::open(dir)?,
            Err(error) => return Err(error),
        }
    };
    let started = Instant::now();
    loop {
        match lock(&file, exclusive) {
            Ok(()) => return Ok(file),
            Err(error)
                if error.kind() == io::ErrorKind::WouldBlock
                    && started.elapsed() < LOCK_WAIT_MAX =>
            {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Syncs the directory entry list of `dir`.
///
/// # Errors
///
/// Any I/O error.
pub fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Lists the regular file names of `dir`, sorted.
///
/// # Errors
///
/// Any I/O error.
pub fn list_directory(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Creates `path` with `size` allocated bytes, `header` at offset 0, synced. Removes the file
/// again if allocation fails, so a full disk leaves nothing behind.
///
/// # Errors
///
/// `ENOSPC` and any other I/O error.
pub fn create_allocated(path: &Path, size: u64, header: &[u8]) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    let result = allocate(&file, size)
        .and_then(|()| file.write_all_at(header, 0))
        .and_then(|()| file.sync_all());
    match result {
        Ok(()) => Ok(file),
        Err(error) => {
            drop(file);
            let _ = fs::remove_file(path);
            Err(error)
        }
    }
}

/// Maps all of `file` shared and writable.
///
/// # Safety
///
/// The caller must hold the journal's exclusive directory lock for as long as the mapping lives,
/// and the file must have been allocated to its full size (never truncated afterwards);
/// otherwise reads can see bytes changing underneath or fault with SIGBUS.
unsafe fn map(file: &File) -> io::Result<MmapRaw> {
    // map_raw itself is a safe function because it hands out only raw pointers; the contract
    // above is what makes dereferencing those pointers sound later.
    MmapOptions::new().map_raw(file)
}

/// Production storage: segment files preallocated with fallocate and mapped shared.
pub struct MmapStorage {
    dir: PathBuf,
    _lock: File,
}

impl MmapStorage {
    /// Creates `dir` if missing and takes its exclusive lock.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when another process (or another open journal) holds the lock; any I/O
    /// error creating the directory or the lock file.
    pub fn open(dir: &Path) -> io::Result<MmapStorage> {
        fs::create_dir_all(dir)?;
        let lock = lock_directory(dir, true)?;
        Ok(MmapStorage {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    fn segment(&self, file: File, data: DataMap) -> io::Result<Box<dyn Segment>> {
        let size = file.metadata()?.len();
        // SAFETY: `self` holds the exclusive directory lock (taken in `open`) and every segment
        // is allocated to its full size at creation and never truncated by the journal. The
        // lock outlives the mapping because each mapping is dropped with the journal, which
        // drops the storage (and its lock) last.
        let map = unsafe { map(&file)? };
        assert_eq!(map.len() as u64, size);
        Ok(Box::new(MmapSegment {
            map: Arc::new(Mapping {
                raw: map,
                page_size: page_size(),
                progress: Mutex::new(Progress::default()),
            }),
            size,
            file,
            data,
        }))
    }
}

impl Storage for MmapStorage {
    fn list(&mut self) -> io::Result<Vec<String>> {
        list_directory(&self.dir)
    }

    fn create(&mut self, name: &str, size: u64, header: &[u8]) -> io::Result<Box<dyn Segment>> {
        let file = create_allocated(&self.dir.join(name), size, header)?;
        self.segment(file, DataMap::live())
    }

    fn open(&mut self, name: &str) -> io::Result<Box<dyn Segment>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(name))?;
        drop_cached_pages(&file);
        let data = DataMap::opened(&file, file.metadata()?.len());
        self.segment(file, data)
    }

    fn read_file(&mut self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.dir.join(name))
    }

    fn read_file_head(&mut self, name: &str, len: usize) -> io::Result<(Vec<u8>, u64)> {
        crate::file::read_head(&self.dir.join(name), len)
    }

    fn write_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        crate::file::write_file_synced(&self.dir.join(name), bytes)
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))
    }

    fn sync_directory(&mut self) -> io::Result<()> {
        sync_directory(&self.dir)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Newly durable bytes of a segment after which the durable pages are released again: the batch
/// of [`SegmentSync::release_durable`]. Releasing costs a TLB shootdown on every core that runs
/// a thread of the process, so it is done once per this many bytes rather than after every
/// sync; a segment being written keeps at most about this much of itself resident.
const RELEASE_BATCH_SIZE: u64 = 64 << 20;

/// The system's page size (4 KiB where it cannot be read).
fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer name and touches no memory of ours.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|size| size.is_power_of_two())
        .unwrap_or(4096)
}

/// A segment's mapping, shared by its owner and its sync handle.
struct Mapping {
    /// Covers the whole file.
    raw: MmapRaw,
    page_size: u64,
    progress: Mutex<Progress>,
}

/// What the sync handle knows of a segment, for releasing its pages.
#[derive(Default)]
struct Progress {
    /// End of the last successful sync. Syncs follow the writer, so everything below it is
    /// durable (recovery syncs whole segments before any write).
    synced_end: u64,
    /// Page-aligned end of the last release of durable pages (0 after a whole release): the
    /// next one waits until [`RELEASE_BATCH_SIZE`] more bytes are durable.
    released_end: u64,
}

impl Mapping {
    /// Drops the process's mapping of the pages in `0..end` (`end` page-aligned, within the
    /// mapping). Advice only: an error is ignored, because it changes only how much of the file
    /// the process keeps resident, never what it reads.
    fn release(&self, end: u64) {
        assert_eq!(
            end % self.page_size,
            0,
            "release end {end} not page-aligned"
        );
        assert!(end <= self.raw.len() as u64);
        if end == 0 {
            return;
        }
        // SAFETY: MADV_DONTNEED on a shared file mapping unmaps the pages from this process
        // only; it does not change the contents of the memory. The pages belong to the file's
        // page cache: a dirty page is marked dirty there and written back like any other (the
        // kernel discards data only for private and anonymous mappings), and the next access
        // faults the same bytes in again, from the page cache or the file. The pages released
        // are normally durable already (the journal asks after a successful msync), and are
        // clean. No Rust reference into the mapping exists (reads and writes copy through raw
        // pointers), so nothing observes a change; a concurrent copy into or out of a released
        // page faults the page back in and sees the same bytes. A forked checkpoint child has
        // its own page tables and is not affected.
        let _ = unsafe {
            self.raw
                .unchecked_advise_range(UncheckedAdvice::DontNeed, 0, end as usize)
        };
    }
}

/// One mapped segment file.
struct MmapSegment {
    /// Covers the whole file; `map.raw.len() == size`.
    map: Arc<Mapping>,
    size: u64,
    /// Keeps the descriptor open as long as the mapping (not required by mmap, but it makes the
    /// file's lifetime obvious); also asked where data lies (`next_data`).
    file: File,
    /// Where the file held data when opened.
    data: DataMap,
}

impl Segment for MmapSegment {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
        check_range(offset, buffer.len(), self.size)?;
        // SAFETY: the range is inside the mapping (checked above, and the mapping covers the
        // whole preallocated file); no Rust code writes it concurrently because writes need
        // `&mut self`; other processes are excluded by the directory lock (see `map`).
        unsafe {
            let source = self.map.raw.as_ptr().add(offset as usize);
            std::ptr::copy_nonoverlapping(source, buffer.as_mut_ptr(), buffer.len());
        }
        Ok(())
    }

    fn next_data(&self, offset: u64) -> u64 {
        self.data.next_data(&self.file, offset, self.size)
    }

    fn will_need(&self, offset: u64) {
        will_need(&self.file, offset);
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        check_range(offset, bytes.len(), self.size)?;
        self.data.written();
        // SAFETY: the range is inside the mapping (checked above); `&mut self` guarantees no
        // other Rust reference reads or writes the mapping meanwhile; `bytes` cannot overlap the
        // mapping's range being written because no shared slice of the mapping is ever handed
        // out (reads copy out).
        unsafe {
            let target = self.map.raw.as_mut_ptr().add(offset as usize);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), target, bytes.len());
        }
        Ok(())
    }

    fn syncer(&self) -> Arc<dyn SegmentSync> {
        Arc::new(MmapSync {
            map: Arc::clone(&self.map),
            size: self.size,
        })
    }
}

/// Syncs ranges of a mapping with msync(MS_SYNC), and releases the process's mapping of the
/// durable pages so that they stop counting as its resident memory.
struct MmapSync {
    map: Arc<Mapping>,
    size: u64,
}

impl SegmentSync for MmapSync {
    /// `MADV_POPULATE_WRITE` on the range (see [`populate`]); best effort.
    fn prefault(&self, offset: u64, size: u64) {
        if check_range(offset, size as usize, self.size).is_err() {
            return;
        }
        let _ = populate(
            self.map.raw.as_ptr() as usize + offset as usize,
            size as usize,
        );
    }

    fn sync(&self, offset: u64, size: u64) -> io::Result<()> {
        check_range(offset, size as usize, self.size)?;
        self.map.raw.flush_range(offset as usize, size as usize)?;
        lock_progress(&self.map.progress).synced_end = offset + size;
        Ok(())
    }

    /// Releases the pages below the one that holds the end of the last sync (the writer's next
    /// append goes there), once [`RELEASE_BATCH_SIZE`] more bytes are durable than at the last
    /// release. Releases from the start of the segment each time: pages that a replay faulted
    /// in again go too, and walking page-table entries that are already empty costs little.
    fn release_durable(&self) {
        let mut progress = lock_progress(&self.map.progress);
        let end = progress.synced_end / self.map.page_size * self.map.page_size;
        if end >= progress.released_end + RELEASE_BATCH_SIZE {
            self.map.release(end);
            progress.released_end = end;
        }
    }

    fn release_all(&self) {
        let mut progress = lock_progress(&self.map.progress);
        self.map
            .release(self.size / self.map.page_size * self.map.page_size);
        progress.released_end = 0;
    }
}

/// Locks the release progress; a panic while it was held cannot leave it inconsistent (two
/// plain integers), so a poisoned lock is used as is.
fn lock_progress(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A child process started by [`fork_child`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildProcess {
    pid: libc::pid_t,
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildExit {
    /// It called `_exit` with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// Exit code of a checkpoint child whose parent was gone before it could arm PDEATHSIG.
pub const EXIT_PARENT_GONE: i32 = 90;
/// Exit code of a checkpoint child that panicked.
pub const EXIT_PANIC: i32 = 91;

impl ChildProcess {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Whether the child has ended, without blocking (waitpid with WNOHANG). Once it returns
    /// `Some`, the child is reaped and must not be polled or killed again.
    ///
    /// # Errors
    ///
    /// Any error of waitpid (ECHILD when the child was already reaped).
    pub fn poll(&self) -> io::Result<Option<ChildExit>> {
        self.wait_with(libc::WNOHANG)
    }

    /// Waits for the child to end and reaps it.
    ///
    /// # Errors
    ///
    /// Any error of waitpid.
    pub fn wait(&self) -> io::Result<ChildExit> {
        loop {
            if let Some(exit) = self.wait_with(0)? {
                return Ok(exit);
            }
        }
    }

    /// Sends SIGKILL (the child is not reaped; call [`ChildProcess::wait`] after).
    pub fn kill(&self) {
        // SAFETY: kill takes a process id and a signal number and touches no memory of ours;
        // the pid is our own unreaped child, so it cannot have been reused by another process.
        let _ = unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }

    fn wait_with(&self, options: libc::c_int) -> io::Result<Option<ChildExit>> {
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: waitpid writes the status into the integer we pass a valid pointer to;
            // the pid is our own child.
            let result = unsafe { libc::waitpid(self.pid, &mut status, options) };
            if result == 0 {
                return Ok(None);
            }
            if result == self.pid {
                if libc::WIFEXITED(status) {
                    return Ok(Some(ChildExit::Code(libc::WEXITSTATUS(status))));
                }
                if libc::WIFSIGNALED(status) {
                    return Ok(Some(ChildExit::Signal(libc::WTERMSIG(status))));
                }
                // Stopped or continued: not an end; keep waiting (or report running).
                if options & libc::WNOHANG != 0 {
                    return Ok(None);
                }
                continue;
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// Forks a child process that runs `child` and exits with the code it returns; returns the
/// child and how long the fork took (the caller's pause). The child closes every inherited
/// file descriptor except 0, 1, 2 and `keep` (the file it writes) before `child` runs.
///
/// In the child only the calling thread exists, and other threads may have held locks (the
/// allocator's among them) at the moment of the fork. So `child` must not allocate, lock, print
/// or unwind into the caller: it runs under `catch_unwind`, and the child leaves through
/// `_exit`, which runs no destructor and no exit handler, so nothing of the parent's state (the
/// journal's mappings, buffered output, temporary directories of tests) is touched on the way
/// out. Before `child` runs, the child asks the kernel to SIGKILL it when the parent dies
/// (PR_SET_PDEATHSIG), and exits with [`EXIT_PARENT_GONE`] if the parent is already gone: a
/// child never outlives its parent. Closing the inherited descriptors means it does not hold
/// the directory lock, a listening socket or another journal's files even while it runs (a lock
/// taken with flock stays with the parent's descriptor).
///
/// # Errors
///
/// Any error of fork (EAGAIN, ENOMEM).
pub fn fork_child(
    keep: &File,
    child: &mut dyn FnMut() -> i32,
) -> io::Result<(ChildProcess, Duration)> {
    let keep = keep.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let started = Instant::now();
    // SAFETY: fork has no memory-safety preconditions of its own; what makes the child sound is
    // that it only runs `child` (which by this function's contract neither allocates nor locks)
    // and async-signal-safe calls, then `_exit`s without returning into the caller.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        child_main(parent, keep, child);
    }
    Ok((ChildProcess { pid }, started.elapsed()))
}

fn child_main(parent: libc::pid_t, keep: libc::c_int, child: &mut dyn FnMut() -> i32) -> ! {
    close_descriptors_except(keep);
    // The image is background work: the parent's core thread runs first on a small machine.
    // setpriority is a plain system call, async-signal-safe.
    lower_thread_priority(BACKGROUND_NICE);
    // SAFETY: prctl with PR_SET_PDEATHSIG takes integer arguments only and is
    // async-signal-safe; getppid has no preconditions.
    let armed = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } == 0
        && unsafe { libc::getppid() } == parent;
    let code = if armed {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(EXIT_PANIC)
    } else {
        EXIT_PARENT_GONE
    };
    // SAFETY: _exit ends the process at once without running destructors or exit handlers,
    // which is exactly what a forked child of a multi-threaded process must do.
    unsafe { libc::_exit(code) }
}

/// Closes every file descriptor above 2 except `keep` (in a forked child: close_range is a
/// plain system call, async-signal-safe). Falls back to closing one by one up to 4096 on
/// kernels without close_range.
fn close_descriptors_except(keep: libc::c_int) {
    let close_range = |first: libc::c_int, last: libc::c_uint| -> bool {
        if first < 0 || first.unsigned_abs() > last {
            return true;
        }
        // SAFETY: close_range takes integers and closes descriptors; the child uses none of
        // them afterwards (it writes only through `keep`), and no Rust object in the child is
        // dropped later (the child leaves through _exit), so nothing closes them again.
        unsafe { libc::syscall(libc::SYS_close_range, first.unsigned_abs(), last, 0) == 0 }
    };
    let below = keep > 3 && close_range(3, (keep - 1).unsigned_abs());
    let above = close_range(keep + 1, libc::c_uint::MAX);
    if (keep > 3 && !below) || !above {
        for fd in 3..4096 {
            if fd != keep {
                // SAFETY: as above; closing a descriptor that is not open only returns EBADF.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// Bytes populated per call of [`populate`]: the kernel holds the process's memory map lock
/// (shared) for the whole call, and the fork that starts a checkpoint waits for it.
const POPULATE_STEP: usize = HUGE_PAGE_SIZE;

/// Backs the whole pages of `size` bytes at `address` with memory now, as a first write would
/// (`MADV_POPULATE_WRITE`), without writing anything: the contents stay as they are, and pages
/// already present are left alone. For a background thread that touches a store's memory
/// before the core first writes it, so that the core does not stop to have the kernel zero
/// each new page. The address is only a number here: any range may be given, and a range that
/// is not mapped writable (or a kernel older than 5.14) returns the error and changes nothing.
///
/// # Errors
///
/// The error of the first call that failed.
pub fn populate(address: usize, size: usize) -> std::io::Result<()> {
    let page = usize::try_from(page_size()).unwrap_or(4096);
    let mut start = address.next_multiple_of(page);
    let end = address.saturating_add(size) & !(page - 1);
    while start < end {
        let step = POPULATE_STEP.min(end - start);
        // SAFETY: MADV_POPULATE_WRITE reads and writes no byte of the range: it only makes
        // the kernel back its pages, zero-filled where none was present, exactly as the first
        // write to each would, and leaves present pages and their contents unchanged. It takes
        // no pointer of ours to dereference; an unmapped or read-only range fails with an
        // error. So no value the program holds can change through this call.
        let result =
            unsafe { libc::madvise(start as *mut libc::c_void, step, libc::MADV_POPULATE_WRITE) };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
        start += step;
    }
    Ok(())
}

/// Keeps the whole pages of each `(address, size)` range out of the processes this process
/// forks from now on (`keep` true: `MADV_DONTFORK`), or lets forks copy them again (`keep`
/// false: `MADV_DOFORK`). For memory a forked checkpoint writer never reads and the core writes
/// while it runs: a page shared with a child is copied on its first write, and one the child
/// does not have is not. The contents and this process's mappings stay as they are; a child
/// that touched a kept page would fault, so only ranges the child never reads may be given.
/// Ranges are rounded inward to whole pages, so a page that also holds memory the child reads
/// is never kept from it.
///
/// # Errors
///
/// The error of the first call that failed; the ranges before it were changed.
pub fn keep_from_fork(ranges: &[(usize, usize)], keep: bool) -> std::io::Result<()> {
    let page = usize::try_from(page_size()).unwrap_or(4096);
    let advice = if keep {
        libc::MADV_DONTFORK
    } else {
        libc::MADV_DOFORK
    };
    for &(address, size) in ranges {
        let start = address.next_multiple_of(page);
        let end = address.saturating_add(size) & !(page - 1);
        if end <= start {
            continue;
        }
        // SAFETY: MADV_DONTFORK and MADV_DOFORK change only whether a later fork copies the
        // pages of `start..end` into the child; they read and write no byte of the range and
        // leave this process's mappings as they are, so no value the program holds changes.
        // An unmapped range fails with an error.
        let result = unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Size of a transparent huge page on x86-64 and of the ranges advised for them.
const HUGE_PAGE_SIZE: usize = 2 << 20;

/// The process's allocator: the system allocator, plus advice to back every allocation of at
/// least [`HUGE_PAGE_SIZE`] with transparent huge pages. The engine's stores are such
/// allocations; with huge pages the process has about 512 times fewer page-table entries, and
/// the fork that starts a checkpoint, which copies them, pauses the core for that much less.
/// Where the kernel has transparent huge pages off, the advice is ignored.
#[derive(Debug, Default, Clone, Copy)]
pub struct HugePageAllocator;

/// Advises the kernel to back the whole huge pages inside `size` bytes at `start` with
/// transparent huge pages. Best effort: an error changes nothing.
fn advise_huge_pages(start: *mut u8, size: usize) {
    if size < HUGE_PAGE_SIZE {
        return;
    }
    let first = (start as usize).next_multiple_of(HUGE_PAGE_SIZE);
    let end = (start as usize + size) & !(HUGE_PAGE_SIZE - 1);
    if end > first {
        // SAFETY: madvise with MADV_HUGEPAGE only changes how the kernel backs the pages of
        // `first..end`, which lies inside an allocation just returned by the system allocator;
        // it neither reads nor writes the memory and cannot invalidate any pointer.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

// SAFETY: every call forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; the added advice touches no memory.
unsafe impl std::alloc::GlobalAlloc for HugePageAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        let pointer = unsafe { std::alloc::System.alloc(layout) };
        if !pointer.is_null() {
            advise_huge_pages(pointer, layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract for `layout`.
        let pointer = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            advise_huge_pages(pointer, layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller passes a pointer this allocator returned for `layout`, which came
        // from `System`.
        unsafe { std::alloc::System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract; the pointer came from `System`.
        let resized = unsafe { std::alloc::System.realloc(pointer, layout, size) };
        if !resized.is_null() {
            advise_huge_pages(resized, size);
        }
        resized
    }
}

/// The nice value of background work: checkpoint writers and the history writer. At 19 (the
/// lowest priority) a ready thread of default priority gets about seventy times its share of
/// a contended core; idle cores still run it at full speed.
pub const BACKGROUND_NICE: i32 = 19;

/// `ioprio_set` arguments (linux/ioprio.h): the calling thread, and the idle class shifted into
/// place (the class's level is ignored).
const IOPRIO_WHO_PROCESS: libc::c_long = 1;
const IOPRIO_CLASS_IDLE: libc::c_long = 3;
const IOPRIO_CLASS_SHIFT: u32 = 13;

/// Lowers the calling thread's scheduling priority to `nice`, and its I/O priority to the idle
/// class (Linux: `setpriority` with `PRIO_PROCESS` and `ioprio_set` with `IOPRIO_WHO_PROCESS`,
/// both with id 0, act on the calling thread only; threads it starts later inherit both). For
/// background threads that share a small machine's cores and disk with the engine: the
/// scheduler runs the core whenever it is ready, and an I/O scheduler that honours classes
/// (mq-deadline, bfq) serves the journal's syncs first, the idle class still within seconds.
/// Best effort: the results are ignored, because only timing depends on them.
pub fn lower_thread_priority(nice: i32) {
    // SAFETY: setpriority and ioprio_set take integers only and touch no memory of ours.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        );
    }
}
