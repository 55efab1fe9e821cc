//! Example: time the engine on a fixture's real frames, for the side-by-side comparison
//! with TFLite and OpenVINO (`benches/side_by_side.py`). N streams each replay the fixture
//! (offset so they see different frames), one batched step per round; prints one JSON
//! object. With `--accuracy`, one stream first runs the fixture in order and its logits
//! are compared with the fixture's float oracle (top-1 agreement, worst relative L2).
//! `VIGIL_CPU_ISA=scalar|avx2|avx512` forces the CPU kernels' instruction set.
//!
//! `--precision` picks the engine's arithmetic (`auto|fp32|fp16|bf16`, see
//! `ComputePrecision`).
//!
//! usage: fixture_bench MODEL FIXTURE [--streams N] [--threads T] [--rounds R] [--micro-batch M] [--precision P] [--accuracy]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use vigil_engine::fixture::Fixture;
use vigil_engine::{ComputePrecision, Engine, EngineConfig, Model};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
    };
    const VALUED: [&str; 5] = [
        "--streams",
        "--threads",
        "--rounds",
        "--micro-batch",
        "--precision",
    ];
    if let Some(bad) = args
        .iter()
        .find(|a| a.starts_with("--") && !VALUED.contains(&a.as_str()) && *a != "--accuracy")
    {
        anyhow::bail!("fixture_bench: unknown option {bad}");
    }
    let streams: usize = flag("--streams").unwrap_or(1);
    let threads: usize = flag("--threads").unwrap_or(1);
    let rounds: usize = flag("--rounds").unwrap_or(0);
    let micro_batch: usize = flag("--micro-batch").unwrap_or(0);
    let precision = match args.iter().position(|a| a == "--precision") {
        Some(i) => ComputePrecision::parse(args.get(i + 1).map_or("", |s| s.as_str()))
            .map_err(anyhow::Error::msg)?,
        None => ComputePrecision::Auto,
    };
    let pos: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .map(|(_, a)| a)
        .collect();
    let (Some(model_path), Some(fixture)) = (pos.first(), pos.get(1)) else {
        anyhow::bail!(
            "usage: fixture_bench MODEL FIXTURE [--streams N] [--threads T] [--rounds R] [--micro-batch M] [--precision P] [--accuracy]"
        );
    };
    let model = Arc::new(Model::load(&PathBuf::from(model_path))?);
    let fx = Fixture::load(&PathBuf::from(fixture))?;
    let mut engine = Engine::new(
        model.clone(),
        &EngineConfig {
            threads,
            micro_batch,
            precision,
            ..Default::default()
        },
    )?;
    let accuracy = if args.iter().any(|a| a == "--accuracy") {
        oracle_agreement(&mut engine, &fx, model.classes())?
    } else {
        String::new()
    };
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
        "{{\"engine\":\"vigil\",\"device\":{:?},\"isa\":\"{}\",\"streams\":{streams},\"threads\":{threads},\"rounds\":{rounds},\"frames_per_s\":{:.2},\"step_ms_p50\":{:.3},\"ms_per_frame\":{:.3}{accuracy}}}",
        engine.device_name(),
        vigil_kernels::cpu::Isa::active(),
        (rounds * streams) as f64 / total,
        times[times.len() / 2],
        total * 1e3 / (rounds * streams) as f64
    );
    Ok(())
}

/// One fresh session through every frame in order, against the fixture's float oracle:
/// `,"top1_agreement":…,"worst_rel_l2":…` for the JSON line.
fn oracle_agreement(engine: &mut Engine, fx: &Fixture, classes: usize) -> anyhow::Result<String> {
    let Some((oracle, n)) = fx.logits("float_oracle") else {
        anyhow::bail!("the fixture has no float_oracle logits — --accuracy needs them");
    };
    anyhow::ensure!(
        n == classes,
        "the fixture's oracle has {n} classes, the model {classes}"
    );
    let s = engine.open_session()?;
    let mut logits = vec![0.0; classes];
    let (mut agree, mut worst) = (0usize, 0.0f64);
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |e| e.0)
    };
    for i in 0..fx.len() {
        engine.step(&[s], &[fx.frame(i)], &mut logits)?;
        let o = &oracle[i * classes..(i + 1) * classes];
        let num: f64 = logits
            .iter()
            .zip(o)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let den: f64 = o.iter().map(|b| (*b as f64).powi(2)).sum();
        worst = worst.max((num / den.max(1e-30)).sqrt());
        agree += usize::from(argmax(&logits) == argmax(o));
    }
    engine.close_session(s)?;
    Ok(format!(
        ",\"top1_agreement\":{:.4},\"worst_rel_l2\":{:.3e}",
        agree as f64 / fx.len() as f64,
        worst
    ))
}
