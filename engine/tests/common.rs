//! Shared helpers for the engine's integration tests: where `../shared` is, loading
//! models and fixtures, comparing logits.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use vigil_engine::fixture::Fixture;
use vigil_engine::{Engine, EngineConfig, Model};

/// `VIGIL_SHARED`, default `../shared` beside the workspace root.
pub fn shared() -> PathBuf {
    match std::env::var_os("VIGIL_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

pub const K600: &str = "models/movinet_a0_stream_k600_int8.tflite";
pub const CATTLE: &str = "models/movinet_a0_stream_cattle7_dynamic.tflite";

pub fn model(rel: &str) -> Arc<Model> {
    Arc::new(Model::load(&shared().join(rel)).expect("load model"))
}

pub fn fixture(name: &str) -> Fixture {
    Fixture::load(&shared().join("fixtures").join(name)).expect("load fixture")
}

pub fn engine(model: &Arc<Model>, threads: usize) -> Engine {
    Engine::new(
        model.clone(),
        &EngineConfig {
            threads,
            ..Default::default()
        },
    )
    .expect("engine")
}

/// Relative L2 error ||a - b|| / ||b||.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|e| e.0)
        .unwrap_or(0)
}

/// Run every frame of `fx` through one session; returns logits `[N, classes]`.
pub fn run_single(engine: &mut Engine, fx: &Fixture) -> Vec<f32> {
    let c = engine.classes();
    let s = engine.open_session().expect("session");
    let mut out = vec![f32::NAN; fx.len() * c];
    for i in 0..fx.len() {
        engine
            .step(&[s], &[fx.frame(i)], &mut out[i * c..(i + 1) * c])
            .expect("step");
    }
    engine.close_session(s).expect("close");
    out
}

/// Run `fx` as stream 5 of a batch of 17 (the others fed `other` at various offsets) and
/// check every frame's logits against `alone` (the single-stream run) to `bound`.
/// Returns the batch's sessions and the worst relative error.
pub fn batch_of_17(
    engine: &mut Engine,
    fx: &Fixture,
    other: &Fixture,
    alone: &[f32],
    bound: f64,
) -> (Vec<vigil_engine::SessionId>, f64) {
    batch_of_17_frames(engine, fx, other, alone, bound, fx.len())
}

/// [`batch_of_17`] over the first `count` frames of `fx`.
pub fn batch_of_17_frames(
    engine: &mut Engine,
    fx: &Fixture,
    other: &Fixture,
    alone: &[f32],
    bound: f64,
    count: usize,
) -> (Vec<vigil_engine::SessionId>, f64) {
    let c = engine.classes();
    let sessions: Vec<_> = (0..17)
        .map(|_| engine.open_session().expect("session"))
        .collect();
    let mut logits = vec![f32::NAN; 17 * c];
    let mut worst = 0.0f64;
    for i in 0..count.min(fx.len()) {
        let frames: Vec<&[u8]> = (0..17)
            .map(|s| {
                if s == 5 {
                    fx.frame(i)
                } else {
                    other.frame((i * 3 + s * 7) % other.len())
                }
            })
            .collect();
        engine.step(&sessions, &frames, &mut logits).expect("step");
        let err = rel_l2(&logits[5 * c..6 * c], &alone[i * c..(i + 1) * c]);
        worst = worst.max(err);
        assert!(
            err <= bound,
            "frame {i}: batched vs single relative error {err:.3e}"
        );
    }
    (sessions, worst)
}
