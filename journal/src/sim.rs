//! Simulated storage for tests: an in-memory "device" and "page cache" behind the [`Storage`]
//! trait, with every storage fault of the test matrix injectable from one seed.
//!
//! Model (the idea of SQLite's crash-test VFS and TigerBeetle's simulated storage):
//! - writes land in the cache and mark 512-byte sectors dirty; a sync copies the dirty sectors
//!   of its file to the device;
//! - a crash keeps a random subset of the dirty sectors, may tear one of them (a prefix of the
//!   new bytes over the old), and forgets directory changes that were not synced;
//! - `crash_after(n)` makes the n+1-th operation (write, sync, create, rename, remove, directory
//!   sync) fail, with a write applied only partly, and every later one fail, until `crash`;
//! - `fail_syncs(n)` makes the next n syncs fail with EIO and lose their pages (marked clean
//!   without reaching the device, as Linux does after a failed writeback);
//! - allocation failure (ENOSPC) and a space limit; bit flips, misplaced copies and restores of
//!   old blocks act on the device and the cache at once, like corruption under the cache.
//!
//! Deterministic: one seed drives every random choice. Not for production use.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{check_range, Segment, SegmentSync, Storage};

/// Sector size of the simulated device: the unit a crash keeps or loses.
pub const SECTOR_SIZE: u64 = 512;

/// A small deterministic random number generator (splitmix64).
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next_u64() % bound
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

struct SimFile {
    cache: Vec<u8>,
    device: Vec<u8>,
    dirty: BTreeSet<u64>,
}

struct SimState {
    rng: Rng,
    files: BTreeMap<u64, SimFile>,
    file_id_next: u64,
    /// The directory as the running process sees it.
    names: BTreeMap<String, u64>,
    /// The directory as the device holds it (after the last directory sync).
    names_durable: BTreeMap<String, u64>,
    operations: u64,
    operations_until_crash: Option<u64>,
    crashed: bool,
    syncs_to_fail: u64,
    allocation_fails: bool,
    space_max: Option<u64>,
    locked: bool,
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated crash: the process is dead")
}

impl SimState {
    /// Counts one operation; fails if the process has "crashed".
    fn tick(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(crashed_error());
        }
        self.operations += 1;
        if let Some(remaining) = self.operations_until_crash.as_mut() {
            if *remaining == 0 {
                self.crashed = true;
                return Err(crashed_error());
            }
            *remaining -= 1;
        }
        Ok(())
    }

    fn file(&mut self, id: u64) -> &mut SimFile {
        self.files
            .get_mut(&id)
            .expect("simulated file ids stay valid while referenced")
    }

    fn used_size(&self) -> u64 {
        self.files
            .values()
            .map(|file| file.cache.len() as u64)
            .sum()
    }

    fn write(&mut self, id: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if let Err(error) = self.tick() {
            if self.crashed && !bytes.is_empty() && self.operations_until_crash == Some(0) {
                // The crashing write lands partly: a random prefix reaches the cache.
                self.operations_until_crash = None;
                let partial = self.rng.below(bytes.len() as u64 + 1) as usize;
                self.write_cache(id, offset, &bytes[..partial]);
            }
            return Err(error);
        }
        self.write_cache(id, offset, bytes);
        Ok(())
    }

    fn write_cache(&mut self, id: u64, offset: u64, bytes: &[u8]) {
        let file = self.file(id);
        let start = offset as usize;
        file.cache[start..start + bytes.len()].copy_from_slice(bytes);
        if !bytes.is_empty() {
            let last = (offset + bytes.len() as u64 - 1) / SECTOR_SIZE;
            for sector in offset / SECTOR_SIZE..=last {
                file.dirty.insert(sector);
            }
        }
    }

    fn sync(&mut self, id: u64, offset: u64, size: u64) -> io::Result<()> {
        self.tick()?;
        let fail = self.syncs_to_fail > 0;
        if fail {
            self.syncs_to_fail -= 1;
        }
        let file = self.file(id);
        let first = offset / SECTOR_SIZE;
        let end = (offset + size).div_ceil(SECTOR_SIZE);
        let sectors: Vec<u64> = file.dirty.range(first..end).copied().collect();
        for sector in sectors {
            file.dirty.remove(&sector);
            if !fail {
                let start = (sector * SECTOR_SIZE) as usize;
                let stop = (start + SECTOR_SIZE as usize).min(file.cache.len());
                let (cache, device) = (&file.cache[start..stop], &mut file.device[start..stop]);
                device.copy_from_slice(cache);
            }
        }
        if fail {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

/// The shared handle to one simulated device; clones refer to the same device.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
}

impl SimDisk {
    /// An empty device whose random choices all come from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        let state = SimState {
            rng: Rng::new(seed),
            files: BTreeMap::new(),
            file_id_next: 1,
            names: BTreeMap::new(),
            names_durable: BTreeMap::new(),
            operations: 0,
            operations_until_crash: None,
            crashed: false,
            syncs_to_fail: 0,
            allocation_fails: false,
            space_max: None,
            locked: false,
        };
        SimDisk {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock can only come from a failed assertion in a test, which
        // already fails that test; keep going with the data as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of operations performed so far (to choose crash points).
    pub fn operations(&self) -> u64 {
        self.state().operations
    }

    /// After `operations` more operations succeed, the next one fails and so does every later
    /// one, until [`SimDisk::crash`].
    pub fn crash_after(&self, operations: u64) {
        self.state().operations_until_crash = Some(operations);
    }

    /// Whether an injected crash point has been reached.
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// Power loss: keeps a random subset of unsynced sectors (tearing one at most), forgets
    /// unsynced directory changes, and leaves the device ready for a new process.
    pub fn crash(&self) {
        let mut guard = self.state();
        let state = &mut *guard;
        let mut torn = false;
        for file in state.files.values_mut() {
            let dirty: Vec<u64> = std::mem::take(&mut file.dirty).into_iter().collect();
            for sector in dirty {
                let start = (sector * SECTOR_SIZE) as usize;
                let stop = (start + SECTOR_SIZE as usize).min(file.cache.len());
                match state.rng.below(3) {
                    0 => {}
                    1 => file.device[start..stop].copy_from_slice(&file.cache[start..stop]),
                    _ if !torn => {
                        torn = true;
                        let cut = start + state.rng.below((stop - start) as u64) as usize;
                        file.device[start..cut].copy_from_slice(&file.cache[start..cut]);
                    }
                    _ => file.device[start..stop].copy_from_slice(&file.cache[start..stop]),
                }
            }
            file.cache.clone_from(&file.device);
        }
        state.names.clone_from(&state.names_durable);
        let live: BTreeSet<u64> = state.names.values().copied().collect();
        state.files.retain(|id, _| live.contains(id));
        state.crashed = false;
        state.operations_until_crash = None;
        state.syncs_to_fail = 0;
        state.locked = false;
    }

    /// The next `count` syncs fail with EIO and lose the pages they covered.
    pub fn fail_syncs(&self, count: u64) {
        self.state().syncs_to_fail = count;
    }

    /// While true, creating a file fails with ENOSPC.
    pub fn set_allocation_fails(&self, fails: bool) {
        self.state().allocation_fails = fails;
    }

    /// Limits the total size of all files; creation beyond it fails with ENOSPC.
    pub fn set_space_max(&self, space_max: Option<u64>) {
        self.state().space_max = space_max;
    }

    /// Names of the files in the directory as the running process sees it.
    pub fn file_names(&self) -> Vec<String> {
        self.state().names.keys().cloned().collect()
    }

    /// Reads bytes of a file as the running process sees them.
    ///
    /// # Panics
    ///
    /// If the file does not exist or the range is outside it (test misuse).
    pub fn read(&self, name: &str, offset: u64, size: u64) -> Vec<u8> {
        let mut state = self.state();
        let id = state.names[name];
        let file = state.file(id);
        file.cache[offset as usize..(offset + size) as usize].to_vec()
    }

    /// Overwrites bytes on the device and in the cache at once (corruption below the cache:
    /// misdirected writes, stale blocks restored). Does not mark anything dirty.
    ///
    /// # Panics
    ///
    /// If the file does not exist or the range is outside it (test misuse).
    pub fn overwrite(&self, name: &str, offset: u64, bytes: &[u8]) {
        let mut state = self.state();
        let id = state.names[name];
        let file = state.file(id);
        let range = offset as usize..offset as usize + bytes.len();
        file.cache[range.clone()].copy_from_slice(bytes);
        file.device[range].copy_from_slice(bytes);
    }

    /// Flips one bit on the device and in the cache.
    ///
    /// # Panics
    ///
    /// If the file does not exist or the offset is outside it (test misuse).
    pub fn flip_bit(&self, name: &str, offset: u64, bit: u8) {
        let mut byte = self.read(name, offset, 1);
        byte[0] ^= 1 << (bit % 8);
        self.overwrite(name, offset, &byte);
    }
}

/// A [`Storage`] over a [`SimDisk`]; holds the device's lock while it lives.
pub struct SimStorage {
    disk: SimDisk,
}

impl SimStorage {
    /// Takes the device's lock.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when another `SimStorage` holds it.
    pub fn open(disk: &SimDisk) -> io::Result<SimStorage> {
        let mut state = disk.state();
        if state.locked {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        state.locked = true;
        drop(state);
        Ok(SimStorage { disk: disk.clone() })
    }
}

impl Drop for SimStorage {
    fn drop(&mut self) {
        self.disk.state().locked = false;
    }
}

impl Storage for SimStorage {
    fn list(&mut self) -> io::Result<Vec<String>> {
        let state = self.disk.state();
        if state.crashed {
            return Err(crashed_error());
        }
        Ok(state.names.keys().cloned().collect())
    }

    fn create(&mut self, name: &str, size: u64, header: &[u8]) -> io::Result<Box<dyn Segment>> {
        let mut state = self.disk.state();
        state.tick()?;
        if state.names.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let over_limit = state
            .space_max
            .is_some_and(|max| state.used_size() + size > max);
        if state.allocation_fails || over_limit {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        assert!(header.len() as u64 <= size);
        let mut bytes = vec![0u8; size as usize];
        bytes[..header.len()].copy_from_slice(header);
        let id = state.file_id_next;
        state.file_id_next += 1;
        let file = SimFile {
            cache: bytes.clone(),
            device: bytes,
            dirty: BTreeSet::new(),
        };
        state.files.insert(id, file);
        state.names.insert(name.to_owned(), id);
        drop(state);
        Ok(Box::new(SimSegment {
            disk: self.disk.clone(),
            id,
            size,
        }))
    }

    fn open(&mut self, name: &str) -> io::Result<Box<dyn Segment>> {
        let state = self.disk.state();
        let id = *state
            .names
            .get(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let size = state.files[&id].cache.len() as u64;
        drop(state);
        Ok(Box::new(SimSegment {
            disk: self.disk.clone(),
            id,
            size,
        }))
    }

    fn read_file(&mut self, name: &str) -> io::Result<Vec<u8>> {
        let state = self.disk.state();
        let id = *state
            .names
            .get(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(state.files[&id].cache.clone())
    }

    fn write_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.disk.state();
        state.tick()?;
        let over_limit = state
            .space_max
            .is_some_and(|max| state.used_size() + bytes.len() as u64 > max);
        if over_limit {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let id = state.file_id_next;
        state.file_id_next += 1;
        let file = SimFile {
            cache: vec![0u8; bytes.len()],
            device: vec![0u8; bytes.len()],
            dirty: BTreeSet::new(),
        };
        state.files.insert(id, file);
        if let Some(old) = state.names.insert(name.to_owned(), id) {
            if !state.names_durable.values().any(|&durable| durable == old) {
                state.files.remove(&old);
            }
        }
        state.write(id, 0, bytes)?;
        state.sync(id, 0, bytes.len() as u64)
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.disk.state();
        state.tick()?;
        let id = state
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        state.names.insert(to.to_owned(), id);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.disk.state();
        state.tick()?;
        state
            .names
            .remove(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(())
    }

    fn sync_directory(&mut self) -> io::Result<()> {
        let mut guard = self.disk.state();
        let state = &mut *guard;
        state.tick()?;
        state.names_durable.clone_from(&state.names);
        Ok(())
    }

    fn describe(&self) -> String {
        "simulated disk".to_owned()
    }
}

struct SimSegment {
    disk: SimDisk,
    id: u64,
    size: u64,
}

impl Segment for SimSegment {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
        check_range(offset, buffer.len(), self.size)?;
        let mut state = self.disk.state();
        if state.crashed {
            return Err(crashed_error());
        }
        let file = state.file(self.id);
        let start = offset as usize;
        buffer.copy_from_slice(&file.cache[start..start + buffer.len()]);
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        check_range(offset, bytes.len(), self.size)?;
        self.disk.state().write(self.id, offset, bytes)
    }

    fn syncer(&self) -> Arc<dyn SegmentSync> {
        Arc::new(SimSync {
            disk: self.disk.clone(),
            id: self.id,
            size: self.size,
        })
    }
}

struct SimSync {
    disk: SimDisk,
    id: u64,
    size: u64,
}

impl SegmentSync for SimSync {
    fn sync(&self, offset: u64, size: u64) -> io::Result<()> {
        check_range(offset, size as usize, self.size)?;
        self.disk.state().sync(self.id, offset, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk seeded with `seed` holding segment "a" (4 KiB, starting with `header`), whose
    /// directory entry is durable.
    fn segment_a(seed: u64, header: &[u8]) -> (SimDisk, SimStorage, Box<dyn Segment>) {
        let disk = SimDisk::new(seed);
        let mut storage = SimStorage::open(&disk).unwrap();
        let segment = storage.create("a", 4096, header).unwrap();
        storage.sync_directory().unwrap();
        (disk, storage, segment)
    }

    #[test]
    fn unsynced_writes_may_be_lost_and_synced_writes_survive() {
        let (disk, storage, mut segment) = segment_a(1, b"head");
        segment.write(512, &[7u8; 512]).unwrap();
        segment.syncer().sync(512, 512).unwrap();
        segment.write(1024, &[9u8; 1024]).unwrap();
        drop(segment);
        drop(storage);
        disk.crash();
        assert_eq!(disk.read("a", 0, 4), b"head");
        assert_eq!(disk.read("a", 512, 512), vec![7u8; 512]);
    }

    #[test]
    fn unsynced_directory_entries_vanish_on_crash() {
        let disk = SimDisk::new(2);
        let mut storage = SimStorage::open(&disk).unwrap();
        storage.write_file("kept", b"x").unwrap();
        storage.sync_directory().unwrap();
        storage.write_file("lost", b"y").unwrap();
        drop(storage);
        disk.crash();
        assert_eq!(disk.file_names(), vec!["kept".to_owned()]);
    }

    #[test]
    fn lock_is_exclusive() {
        let disk = SimDisk::new(3);
        let storage = SimStorage::open(&disk).unwrap();
        assert!(SimStorage::open(&disk).is_err());
        drop(storage);
        assert!(SimStorage::open(&disk).is_ok());
    }

    #[test]
    fn failed_sync_loses_its_pages() {
        let (disk, storage, mut segment) = segment_a(4, b"");
        segment.write(0, &[5u8; 512]).unwrap();
        disk.fail_syncs(1);
        assert!(segment.syncer().sync(0, 512).is_err());
        // A retry "succeeds" but the pages were marked clean: they are not on the device.
        segment.syncer().sync(0, 512).unwrap();
        drop(segment);
        drop(storage);
        disk.crash();
        assert_eq!(disk.read("a", 0, 512), vec![0u8; 512]);
    }
}
