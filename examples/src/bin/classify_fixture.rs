//! Example: run a shared fixture through one session (`--repeat` times, a fresh session
//! each) and print the time per frame and the last frame's top-1.
//!
//! usage: classify_fixture MODEL.tflite FIXTURE.safetensors [LABELS.txt] [--repeat N] [--threads T]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use vigil_engine::fixture::Fixture;
use vigil_engine::{Engine, EngineConfig, Labels, Model};

/// Run a shared fixture through one session; prints the time per frame and the last
/// frame's top-1.
#[derive(Parser)]
#[command(name = "classify_fixture")]
struct Args {
    /// The MoViNet stream model (.tflite).
    model: PathBuf,
    /// A shared fixture (.safetensors with `frames`).
    fixture: PathBuf,
    /// Class names, one a line (default: the class numbers).
    labels: Option<PathBuf>,
    /// Times to run the whole fixture, each in a fresh session.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Engine threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let repeat = a.repeat;
    let model = Arc::new(Model::load(&a.model)?);
    let labels = match &a.labels {
        Some(p) => Labels::load(p, model.classes())?,
        None => Labels::numbered(model.classes()),
    };
    let fx = Fixture::load(&a.fixture)?;
    let mut engine = Engine::new(
        model.clone(),
        &EngineConfig {
            threads: a.threads,
            ..Default::default()
        },
    )?;
    let mut logits = vec![0.0; model.classes()];
    let start = std::time::Instant::now();
    let mut top = Vec::new();
    for _ in 0..repeat {
        let s = engine.open_session()?;
        for i in 0..fx.len() {
            engine
                .step(&[s], &[fx.frame(i)], &mut logits)
                .context("step")?;
        }
        engine.close_session(s)?;
    }
    let per_frame = start.elapsed().as_secs_f64() * 1e3 / (repeat * fx.len()) as f64;
    vigil_engine::labels::softmax_top_k(&logits, 1, &mut top);
    println!(
        "{} frames x {repeat}: {:.3} ms/frame; last top-1: {} ({:.3})",
        fx.len(),
        per_frame,
        labels.name(top[0].0),
        top[0].1
    );
    Ok(())
}
