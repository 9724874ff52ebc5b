//! `Segment::next_data` on real files: whatever it skips reads as zeros, and it never skips
//! bytes that were written, on both backends (mmap and plain file), before and after a sync
//! and after the file is opened again; a segment opened from disk keeps reporting as holes the
//! never written ranges that reading it filled into the page cache.

use clearline_journal::{FileStorage, MmapStorage, Segment, Storage};
use tempfile::TempDir;

const SIZE: u64 = 8 << 20;

/// Checks the contract at every probe offset: `offset <= next <= size`, everything in
/// `offset..next` is zero, and no write lies inside it.
fn check(segment: &dyn Segment, writes: &[(u64, usize)], context: &str) {
    let mut probes: Vec<u64> = (0..SIZE).step_by(256 * 1024).collect();
    for &(at, length) in writes {
        probes.extend([at.saturating_sub(4096), at, at + length as u64 - 1]);
    }
    let mut bytes = vec![0u8; SIZE as usize];
    segment.read(0, &mut bytes).unwrap();
    for offset in probes {
        let next = segment.next_data(offset);
        assert!(
            (offset..=SIZE).contains(&next),
            "{context}: next_data({offset}) = {next} outside {offset}..={SIZE}"
        );
        let skipped = &bytes[offset as usize..next as usize];
        assert!(
            skipped.iter().all(|&byte| byte == 0),
            "{context}: next_data({offset}) = {next} skips non-zero bytes"
        );
        for &(at, length) in writes {
            let end = at + length as u64;
            assert!(
                !(offset < next && offset < end && at < next),
                "{context}: next_data({offset}) = {next} skips the write at {at}"
            );
        }
    }
}

fn exercise(open: &dyn Fn() -> Box<dyn Storage>) {
    let mut storage = open();
    let header = [0xA5u8; 64];
    let mut segment = storage.create("segment", SIZE, &header).unwrap();
    // A fresh preallocated file holds only its header: the rest may be skipped whole.
    check(&*segment, &[(0, header.len())], "fresh");
    let writes = [
        (0, header.len()),
        (1 << 20, 100),
        ((3 << 20) + 12_345, 70_000),
        (SIZE - 10, 10),
    ];
    for &(at, length) in &writes[1..] {
        segment.write(at, &vec![7u8; length]).unwrap();
    }
    check(&*segment, &writes, "written, not synced");
    segment.syncer().sync(0, SIZE).unwrap();
    check(&*segment, &writes, "synced");
    drop(segment);
    // The directory lock is exclusive: the first storage goes before the second opens.
    drop(storage);
    let segment = open().open("segment").unwrap();
    check(&*segment, &writes, "opened again");
}

#[test]
fn next_data_skips_only_zeros_on_mapped_segments() {
    let dir = TempDir::new().unwrap();
    exercise(&|| Box::new(MmapStorage::open(dir.path()).unwrap()));
}

#[test]
fn next_data_skips_only_zeros_on_plain_files() {
    let dir = TempDir::new().unwrap();
    exercise(&|| Box::new(FileStorage::open(dir.path()).unwrap()));
}

/// A fresh preallocated segment is mostly unwritten: on a file system that reports holes
/// (ext4, xfs, tmpfs) the scan past the log end skips it. Where it cannot tell, the answer is
/// the offset itself, and this checks nothing more than the contract above.
#[test]
fn next_data_reports_the_unwritten_rest_of_a_fresh_segment() {
    let dir = TempDir::new().unwrap();
    let mut storage = MmapStorage::open(dir.path()).unwrap();
    let segment = storage.create("segment", SIZE, &[1u8; 64]).unwrap();
    let next = segment.next_data(1 << 20);
    assert!(next == 1 << 20 || next == SIZE, "next_data = {next}");
}

/// Reading a never written range leaves zero-filled pages in the page cache, and the file
/// system then reports that range as data. A segment opened from disk answers from where it
/// held data when it was opened, so recovery's look past the end of the log is not drawn into
/// the rest of the file; a write after the open makes it ask the file system again.
fn opened_segment_keeps_its_holes(open: &dyn Fn() -> Box<dyn Storage>) {
    let mut storage = open();
    let mut segment = storage.create("segment", SIZE, &[1u8; 64]).unwrap();
    // Whether this file system reports never written space at all (see the test above).
    let reports_holes = segment.next_data(1 << 20) == SIZE;
    segment.write(4096, &vec![9u8; 1 << 20]).unwrap();
    segment.syncer().sync(0, SIZE).unwrap();
    drop(segment);
    drop(storage);

    let mut storage = open();
    let mut segment = storage.open("segment").unwrap();
    let mut bytes = vec![0u8; SIZE as usize];
    segment.read(0, &mut bytes).unwrap();
    let written = writes_end();
    let next = segment.next_data(written);
    if reports_holes {
        assert_eq!(
            next, SIZE,
            "the unwritten rest stays a hole after it was read"
        );
    } else {
        assert!(next == written || next == SIZE, "next_data = {next}");
    }
    let late = 5 << 20;
    segment.write(late, &[3u8; 100]).unwrap();
    let next = segment.next_data(written);
    assert!(
        next <= late,
        "a write after the open is never skipped: next_data = {next}"
    );
}

/// The end of what `opened_segment_keeps_its_holes` wrote before reopening, page aligned.
fn writes_end() -> u64 {
    4096 + (1 << 20)
}

#[test]
fn an_opened_mapped_segment_keeps_its_holes_after_they_are_read() {
    let dir = TempDir::new().unwrap();
    opened_segment_keeps_its_holes(&|| Box::new(MmapStorage::open(dir.path()).unwrap()));
}

#[test]
fn an_opened_plain_segment_keeps_its_holes_after_they_are_read() {
    let dir = TempDir::new().unwrap();
    opened_segment_keeps_its_holes(&|| Box::new(FileStorage::open(dir.path()).unwrap()));
}
