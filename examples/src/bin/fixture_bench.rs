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
//! `cpu_ms_per_frame` is the process's CPU time (all threads) over the timed steps per
//! frame: on a machine shared with other jobs it does not count time spent descheduled.
//!
//! usage: fixture_bench MODEL FIXTURE [--streams N] [--threads T] [--rounds R] [--micro-batch M] [--precision P] [--accuracy]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use vigil_engine::fixture::Fixture;
use vigil_engine::{ComputePrecision, Engine, EngineConfig, Model};

/// Time the engine on a fixture's real frames; prints one JSON object.
#[derive(Parser)]
#[command(name = "fixture_bench")]
struct Args {
    /// The MoViNet stream model (.tflite).
    model: PathBuf,
    /// A shared fixture (.safetensors with `frames`).
    fixture: PathBuf,
    /// Streams, batched one frame each per step.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Engine threads (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed steps (0 = the fixture's length).
    #[arg(long, default_value_t = 0)]
    rounds: usize,
    /// Streams per micro-batch (0 = the engine's default).
    #[arg(long, default_value_t = 0)]
    micro_batch: usize,
    /// Arithmetic: auto, fp32, fp16 or bf16.
    #[arg(long, default_value = "auto", value_parser = ComputePrecision::parse)]
    precision: ComputePrecision,
    /// First compare one stream's logits with the fixture's float oracle.
    #[arg(long)]
    accuracy: bool,
}

/// CPU time this process has used, all threads, in milliseconds.
fn process_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID is always
    // available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 * 1e-6
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let (streams, threads) = (a.streams, a.threads);
    let model = Arc::new(Model::load(&a.model)?);
    let fx = Fixture::load(&a.fixture)?;
    let mut engine = Engine::new(
        model.clone(),
        &EngineConfig {
            threads,
            micro_batch: a.micro_batch,
            precision: a.precision,
            ..Default::default()
        },
    )?;
    let accuracy = if a.accuracy {
        oracle_agreement(&mut engine, &fx, model.classes())?
    } else {
        String::new()
    };
    let sessions: Vec<_> = (0..streams)
        .map(|_| engine.open_session())
        .collect::<Result<_, _>>()?;
    let mut logits = vec![0.0; streams * model.classes()];
    let rounds = if a.rounds == 0 { fx.len() } else { a.rounds };
    let mut frames: Vec<&[u8]> = Vec::with_capacity(streams);
    // warm-up: a few steps grow the workspace
    for r in 0..3 {
        frames.clear();
        frames.extend((0..streams).map(|s| fx.frame((r + s * 7) % fx.len())));
        engine.step(&sessions, &frames, &mut logits)?;
    }
    let mut times = Vec::with_capacity(rounds);
    let cpu0 = process_cpu_ms();
    let start = Instant::now();
    for r in 0..rounds {
        frames.clear();
        frames.extend((0..streams).map(|s| fx.frame((r + s * 7) % fx.len())));
        let t0 = Instant::now();
        engine.step(&sessions, &frames, &mut logits)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let total = start.elapsed().as_secs_f64();
    let cpu = process_cpu_ms() - cpu0;
    times.sort_by(f64::total_cmp);
    let n = (rounds * streams) as f64;
    println!(
        "{{\"engine\":\"vigil\",\"device\":{:?},\"isa\":\"{}\",\"streams\":{streams},\"threads\":{threads},\"rounds\":{rounds},\"frames_per_s\":{:.2},\"step_ms_p50\":{:.3},\"ms_per_frame\":{:.3},\"cpu_ms_per_frame\":{:.3}{accuracy}}}",
        engine.device_name(),
        vigil_kernels::cpu::Isa::active(),
        n / total,
        times[times.len() / 2],
        total * 1e3 / n,
        cpu / n
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
