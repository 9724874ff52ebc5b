//! Checkpoints and allocation: writing the image of a populated engine makes no heap allocation
//! (it runs in a forked child of a multi-threaded process), and an engine loaded from an image
//! applies further requests without allocating, like one made by `Engine::new`. A per-thread
//! counting allocator (allocation-counter) proves both.

mod checkpoint_workload;

use std::io;

use clearline_engine::Engine;

use checkpoint_workload::{apply, config, requests, REPLY_SIZE};

/// Heap allocations (reallocations included) that `run` makes on this thread.
fn allocations(run: impl FnOnce()) -> u64 {
    allocation_counter::measure(run).count_total
}

/// A writer that keeps nothing and allocates nothing: it counts the bytes and chunks it is
/// given and folds them into a checksum, so the image's bytes are still compared.
struct CountingSink {
    bytes: u64,
    chunks: u32,
    chunk_size_max: usize,
    checksum: u64,
}

impl io::Write for CountingSink {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.bytes += buffer.len() as u64;
        self.chunks += 1;
        self.chunk_size_max = self.chunk_size_max.max(buffer.len());
        for byte in buffer {
            self.checksum = (self.checksum ^ u64::from(*byte)).wrapping_mul(0x100_0000_01B3);
        }
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn writing_an_image_and_running_a_loaded_engine_allocate_nothing() {
    let config = config();
    let requests = requests(0xA110C);
    let split = requests.len() / 2;
    let mut reply = vec![0u8; REPLY_SIZE];
    let mut engine = Engine::new(&config);
    apply(&mut engine, &requests[..split], &mut reply);
    assert!(engine.transfers_count() > 1000, "a populated engine");
    let mut image = Vec::new();
    engine
        .checkpoint_write(&mut image)
        .expect("a Vec never fails");
    assert!(image.len() > 64 * 1024, "the image spans several chunks");

    let mut sink = CountingSink {
        bytes: 0,
        chunks: 0,
        chunk_size_max: 0,
        checksum: 0xCBF2_9CE4_8422_2325,
    };
    let mut written = Ok(());
    let made = allocations(|| written = engine.checkpoint_write(&mut sink));
    assert!(written.is_ok());
    assert_eq!(made, 0, "checkpoint_write allocated {made} times");
    assert_eq!(sink.bytes, image.len() as u64);
    assert!(sink.chunks >= 2);
    assert!(
        sink.chunk_size_max <= 64 * 1024,
        "{} bytes",
        sink.chunk_size_max
    );
    let mut check = CountingSink {
        checksum: 0xCBF2_9CE4_8422_2325,
        ..sink
    };
    io::Write::write_all(&mut check, &image).expect("never fails");
    assert_eq!(
        check.checksum, sink.checksum,
        "the sink saw the image's bytes"
    );

    // The rest of the workload, on the loaded engine: no allocation per request.
    let mut loaded = match Engine::from_checkpoint(&config, &image) {
        Ok(loaded) => loaded,
        Err(error) => panic!("the image does not load: {error}"),
    };
    let rest = &requests[split..];
    let mut replied = 0usize;
    let made = allocations(|| {
        for request in rest {
            replied += loaded.execute(
                request.operation,
                request.timestamp,
                &request.body,
                &mut reply,
            );
        }
    });
    assert_eq!(made, 0, "the loaded engine allocated {made} times");
    assert!(replied > 0);
    // The same requests on the original engine end in the same state.
    apply(&mut engine, rest, &mut reply);
    assert_eq!(loaded.state_hash(), engine.state_hash());
}
