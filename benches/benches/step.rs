//! criterion: one batched step of MoViNet-A0 on the CPU backend at batch 1, 8 and 64,
//! for both shared models (the int8 "mobile" export and the full variant).
//! Frames/s = batch / step time. Needs `../shared` (or `VIGIL_SHARED`).

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vigil_engine::{Engine, EngineConfig, Model};

fn shared() -> PathBuf {
    std::env::var_os("VIGIL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn step(c: &mut Criterion) {
    let threads: usize = std::env::var("VIGIL_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for (label, file) in [
        ("full", "models/movinet_a0_stream_cattle7_dynamic.tflite"),
        ("k600-int8", "models/movinet_a0_stream_k600_int8.tflite"),
    ] {
        let model = match Model::load(&shared().join(file)) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                eprintln!("SKIP {label}: {e}");
                continue;
            }
        };
        let mut group = c.benchmark_group(format!("step/{label}"));
        group.sample_size(20);
        for batch in [1usize, 8, 64] {
            let Ok(mut engine) = Engine::new(
                model.clone(),
                &EngineConfig {
                    threads,
                    ..Default::default()
                },
            ) else {
                return;
            };
            let sessions: Vec<_> = (0..batch)
                .filter_map(|_| engine.open_session().ok())
                .collect();
            let frames: Vec<Vec<u8>> = (0..batch)
                .map(|s| {
                    (0..model.frame_bytes())
                        .map(|i| ((i * 13 + s * 101) % 256) as u8)
                        .collect()
                })
                .collect();
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            let mut logits = vec![0.0; batch * model.classes()];
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
                b.iter(|| engine.step(&sessions, &refs, &mut logits).expect("step"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, step);
criterion_main!(benches);
