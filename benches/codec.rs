//! Criterion benchmarks: codec.

use criterion::{criterion_group, criterion_main, Criterion};

fn placeholder(c: &mut Criterion) {
    c.bench_function("placeholder", |b| b.iter(|| criterion::black_box(1u64) + 1));
}

criterion_group!(benches, placeholder);
criterion_main!(benches);
