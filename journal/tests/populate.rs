//! `populate` backs a range with memory ahead of its first write and changes no byte of it;
//! `keep_from_fork` changes what a fork copies, and no byte either.

use clearline_journal::{keep_from_fork, populate};

/// The error madvise gives for a range that is not mapped.
const ENOMEM: i32 = 12;

/// Resident kibibytes of the mapping of this process that contains `address`, from
/// `/proc/self/smaps`.
fn resident_kib_of_mapping(address: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                inside = (start..end).contains(&address);
                continue;
            }
        }
        if inside {
            if let Some(rest) = line.strip_prefix("Rss:") {
                let kib = rest.trim().trim_end_matches("kB").trim();
                return kib.parse().expect("Rss value");
            }
        }
    }
    panic!("no mapping holds {address:#x}");
}

#[test]
fn populating_makes_an_unwritten_buffer_resident() {
    const SIZE: usize = 64 << 20;
    // An allocation this large is a mapping of its own, and nothing has written it yet.
    let buffer: Vec<u8> = Vec::with_capacity(SIZE);
    let address = buffer.as_ptr() as usize;
    let before = resident_kib_of_mapping(address);
    assert!(
        before < 16 << 10,
        "the fresh buffer is already resident: {before} KiB"
    );
    populate(address, SIZE).expect("populate");
    let after = resident_kib_of_mapping(address);
    assert!(
        after >= (SIZE as u64 >> 10) - 8,
        "after populate only {after} KiB of {} KiB are resident",
        SIZE >> 10
    );
    drop(buffer);
}

#[test]
fn populating_changes_no_value() {
    let values: Vec<u64> = (0..(4u64 << 20)).map(|value| value * 7 + 1).collect();
    let address = values.as_ptr() as usize;
    populate(address, values.len() * 8).expect("populate");
    // A range that starts or ends inside a page is rounded inward, so its neighbours' partial
    // pages are left alone.
    populate(address + 100, 10_000).expect("populate a range inside pages");
    assert!(values
        .iter()
        .enumerate()
        .all(|(index, value)| *value == index as u64 * 7 + 1));
}

#[test]
fn populating_an_unmapped_range_fails_and_changes_nothing() {
    // The first pages of the address space are never mapped.
    let error = populate(4096, 4096 * 4).expect_err("page 1 is not mapped");
    assert_eq!(error.raw_os_error(), Some(ENOMEM));
    // A range smaller than a page holds no whole page: nothing to do.
    populate(4096 + 1, 100).expect("no whole page");
}

#[test]
fn keeping_memory_from_forks_and_giving_it_back_changes_no_value() {
    let values: Vec<u64> = (0..(1u64 << 20)).map(|value| value ^ 0x5A5A).collect();
    let range = [(values.as_ptr() as usize, values.len() * 8)];
    keep_from_fork(&range, true).expect("keep from forks");
    keep_from_fork(&range, false).expect("give back to forks");
    assert!(values
        .iter()
        .enumerate()
        .all(|(index, value)| *value == index as u64 ^ 0x5A5A));
    // An unmapped range is refused; a range inside one page holds no whole page.
    let error = keep_from_fork(&[(4096, 4096)], true).expect_err("page 1 is not mapped");
    assert_eq!(error.raw_os_error(), Some(ENOMEM));
    keep_from_fork(&[(4096 + 1, 100)], true).expect("no whole page");
}
