//! Example: time the engine on a fixture's real frames, for the side-by-side comparison
//! with TFLite (`benches/side_by_side.py`). N streams each replay the fixture (offset so
//! they see different frames), one batched step per round; prints one JSON object.
//!
//! usage: fixture_bench MODEL FIXTURE [--streams N] [--threads T] [--rounds R] [--micro-batch M]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use vigil_engine::fixture::Fixture;
use vigil_engine::{Engine, EngineConfig, Model};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
    };
    let streams: usize = flag("--streams").unwrap_or(1);
    let threads: usize = flag("--threads").unwrap_or(1);
    let rounds: usize = flag("--rounds").unwrap_or(0);
    let micro_batch: usize = flag("--micro-batch").unwrap_or(0);
    let pos: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .map(|(_, a)| a)
        .collect();
    let (Some(model_path), Some(fixture)) = (pos.first(), pos.get(1)) else {
        anyhow::bail!(
            "usage: fixture_bench MODEL FIXTURE [--streams N] [--threads T] [--rounds R] [--micro-batch M]"
        );
    };
    let model = Arc::new(Model::load(&PathBuf::from(model_path))?);
    let fx = Fixture::load(&PathBuf::from(fixture))?;
    let mut engine = Engine::new(
        model.clone(),
        &EngineConfig {
            threads,
            micro_batch,
            ..Default::default()
        },
    )?;
    let sessions: Vec<_> = (0..streams)
        .map(|_| engine.open_session())
        .collect::<Result<_, _>>()?;
    let mut logits = vec![0.0; streams * model.classes()];
    let rounds = if rounds == 0 { fx.len() } else { rounds };
    let mut frames: Vec<&[u8]> = Vec::with_capacity(streams);
    // warm-up: a few steps grow the workspace
    for r in 0..3 {
        frames.clear();
        frames.extend((0..streams).map(|s| fx.frame((r + s * 7) % fx.len())));
        engine.step(&sessions, &frames, &mut logits)?;
    }
    let mut times = Vec::with_capacity(rounds);
    let start = Instant::now();
    for r in 0..rounds {
        frames.clear();
        frames.extend((0..streams).map(|s| fx.frame((r + s * 7) % fx.len())));
        let t0 = Instant::now();
        engine.step(&sessions, &frames, &mut logits)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let total = start.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"engine\":\"vigil\",\"device\":{:?},\"streams\":{streams},\"threads\":{threads},\"rounds\":{rounds},\"frames_per_s\":{:.2},\"step_ms_p50\":{:.3},\"ms_per_frame\":{:.3}}}",
        engine.device_name(),
        (rounds * streams) as f64 / total,
        times[times.len() / 2],
        total * 1e3 / (rounds * streams) as f64
    );
    Ok(())
}
