//! Example: run a shared fixture through one session and print the top-1 per frame.
//!
//! usage: classify_fixture MODEL.tflite FIXTURE.safetensors [LABELS.txt] [--repeat N] [--threads T]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use vigil_engine::fixture::Fixture;
use vigil_engine::{Engine, EngineConfig, Labels, Model};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
    };
    let repeat: usize = flag("--repeat").unwrap_or(1);
    let threads: usize = flag("--threads").unwrap_or(0);
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(model), Some(fixture)) = (pos.first(), pos.get(1)) else {
        anyhow::bail!("usage: classify_fixture MODEL FIXTURE [LABELS] [--repeat N] [--threads T]");
    };
    let model = Arc::new(Model::load(&PathBuf::from(model))?);
    let labels = match pos.get(2) {
        Some(p) if !p.chars().all(|c| c.is_ascii_digit()) => {
            Labels::load(&PathBuf::from(p), model.classes())?
        }
        _ => Labels::numbered(model.classes()),
    };
    let fx = Fixture::load(&PathBuf::from(fixture))?;
    let mut engine = Engine::new(
        model.clone(),
        &EngineConfig {
            threads,
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
