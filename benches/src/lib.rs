//! Benchmarks live in `benches/` (criterion) and the side-by-side scripts beside them.
