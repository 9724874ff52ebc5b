//! A copy of the store (`History::export` into `History::import`): the copy answers every
//! query as the original does, copies again to the same bytes, keeps ingesting, and a damaged
//! or misplaced copy is refused.

mod support;

use clearline_history::{HistoryError, COPY_ENTRY_HEADER_SIZE};
use clearline_test_support::Rng;
use support::{check_against_model, open, Generator, Model};

const SEED: u64 = 0xC0_9E;

/// The chunks of an export of `history`, at most `chunk_bytes` each.
fn export(history: &clearline_history::History, chunk_bytes: usize) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let report = history
        .export(chunk_bytes, |bytes| -> Result<(), HistoryError> {
            assert!(!bytes.is_empty() && bytes.len() <= chunk_bytes);
            chunks.push(bytes.to_vec());
            Ok(())
        })
        .expect("export");
    let total: usize = chunks.iter().map(Vec::len).sum();
    assert_eq!(report.bytes, total as u64);
    chunks
}

#[test]
fn a_copy_answers_as_the_original_and_copies_to_the_same_bytes() {
    let original_dir = tempfile::tempdir().expect("temporary directory");
    let copy_dir = tempfile::tempdir().expect("temporary directory");
    let mut generator = Generator::new(SEED);
    let mut model = Model::default();
    let original = open(original_dir.path());
    for _ in 0..3 {
        let (run, watermark) = generator.run(3_000);
        original.ingest(&run, watermark).expect("ingest");
        model.add(&run, watermark);
    }
    let chunks = export(&original, 64 << 10);
    assert!(chunks.len() > 3, "small chunks: {}", chunks.len());
    {
        let copy = open(copy_dir.path());
        let report = copy.import(chunks.clone()).expect("import");
        assert_eq!(
            report.bytes,
            chunks.iter().map(Vec::len).sum::<usize>() as u64
        );
    }
    let copy = open(copy_dir.path());
    assert_eq!(copy.watermark(), original.watermark());
    check_against_model(&copy, &model, &mut Rng::new(SEED + 1), 800);
    assert_eq!(
        export(&copy, 64 << 10),
        chunks,
        "the copy holds the same keys and values"
    );
    // The copy goes on as a store of its own.
    let (run, watermark) = generator.run(3_000);
    copy.ingest(&run, watermark).expect("ingest into the copy");
    model.add(&run, watermark);
    check_against_model(&copy, &model, &mut Rng::new(SEED + 2), 400);
}

#[test]
fn a_copy_into_a_store_that_holds_data_is_refused() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = open(directory.path());
    let (run, watermark) = Generator::new(SEED + 3).run(500);
    history.ingest(&run, watermark).expect("ingest");
    let chunks = export(&history, 1 << 20);
    let error = history.import(chunks).expect_err("refused");
    assert!(error.to_string().contains("not empty"), "{error}");
}

#[test]
fn damaged_copies_are_refused() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = open(directory.path());
    let (run, watermark) = Generator::new(SEED + 4).run(500);
    history.ingest(&run, watermark).expect("ingest");
    let chunk = export(&history, 1 << 20).remove(0);
    // The second entry's offset, to swap the first two (keys out of order).
    let first_size = COPY_ENTRY_HEADER_SIZE
        + usize::from(u16::from_le_bytes([chunk[2], chunk[3]]))
        + u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as usize;
    let second_size = COPY_ENTRY_HEADER_SIZE
        + usize::from(u16::from_le_bytes([
            chunk[first_size + 2],
            chunk[first_size + 3],
        ]))
        + u32::from_le_bytes([
            chunk[first_size + 4],
            chunk[first_size + 5],
            chunk[first_size + 6],
            chunk[first_size + 7],
        ]) as usize;
    let mut swapped = chunk[first_size..first_size + second_size].to_vec();
    swapped.extend_from_slice(&chunk[..first_size]);
    let mut unknown_space = chunk[..first_size].to_vec();
    unknown_space[0] = 200;
    let mut reserved = chunk[..first_size].to_vec();
    reserved[1] = 1;
    let cases = [
        (chunk[..chunk.len() - 1].to_vec(), "ends inside an entry"),
        (chunk[..5].to_vec(), "inside an entry's header"),
        (swapped, "out of order"),
        (unknown_space, "unknown"),
        (reserved, "reserved"),
    ];
    for (case, expected) in cases {
        let empty = tempfile::tempdir().expect("temporary directory");
        let error = open(empty.path())
            .import([case])
            .expect_err("a damaged copy is refused");
        assert!(error.to_string().contains(expected), "{expected}: {error}");
    }
}
