//! Criterion benchmarks of the frame codec: header encode, decode and validation (its CRC-32C
//! over 60 bytes), and the body checksum over the largest body, each next to a plain copy of the
//! same bytes as the floor.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use clearline_engine::Operation;
use clearline_net::{
    check_request, check_request_header, checksum, Header, BODY_SIZE_MAX, HEADER_SIZE,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn header(c: &mut Criterion) {
    let body = vec![0x5Au8; 128];
    let header = Header::request(Operation::CreateTransfers, 42, &body);
    let bytes = header.encode();
    let mut group = c.benchmark_group("codec_header");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_copy_64", |b| {
        b.iter(|| {
            let copy: [u8; HEADER_SIZE] = *black_box(&bytes);
            black_box(copy)
        })
    });
    group.bench_function("encode", |b| {
        b.iter(|| black_box(black_box(&header).encode()))
    });
    group.bench_function("decode", |b| {
        b.iter(|| black_box(Header::decode(black_box(&bytes))))
    });
    group.bench_function("seal_header", |b| {
        b.iter(|| {
            let mut sealed = *black_box(&header);
            sealed.seal_header();
            black_box(sealed)
        })
    });
    group.bench_function("check_request_header", |b| {
        b.iter(|| black_box(check_request_header(black_box(&bytes))))
    });
    group.finish();
}

fn body(c: &mut Criterion) {
    // The largest request: 8,191 transfers, a 1 MiB frame.
    let body: Vec<u8> = (0..BODY_SIZE_MAX - 64)
        .map(|index| (index * 7) as u8)
        .collect();
    let header = Header::request(Operation::CreateTransfers, 42, &body);
    let mut frame = header.encode().to_vec();
    frame.extend_from_slice(&body);
    let mut target = vec![0u8; body.len()];
    let mut group = c.benchmark_group("codec_body_1mib");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            target.copy_from_slice(black_box(&body));
            black_box(&target);
        })
    });
    group.bench_function("checksum", |b| {
        b.iter(|| black_box(checksum(black_box(&body))))
    });
    group.bench_function("check_request", |b| {
        b.iter(|| black_box(check_request(black_box(&frame))))
    });
    group.bench_function("encode_request", |b| {
        b.iter(|| {
            black_box(Header::request(
                Operation::CreateTransfers,
                42,
                black_box(&body),
            ))
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = header, body
}
criterion_main!(benches);
