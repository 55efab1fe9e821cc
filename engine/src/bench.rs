//! The step benchmark behind `vigil bench`: N streams fed synthetic frames, one batched
//! step per round, timed per step. [`BenchConfig`] in, [`BenchReport`] out.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{Engine, Result};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub streams: usize,
    pub seconds: f64,
    pub warmup_steps: usize,
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub device: String,
    pub model: String,
    pub streams: usize,
    pub threads: usize,
    pub frames: u64,
    pub frames_per_s: f64,
    pub step_ms_p50: f64,
    pub step_ms_p99: f64,
    pub state_bytes_per_stream: usize,
    /// The CPU kernels' instruction set (`scalar|avx2|avx512`, lowered by
    /// `VIGIL_CPU_ISA`); `None` on a GPU.
    pub isa: Option<&'static str>,
    /// The device is Vigil's emulated CUDA driver (kernels on the CPU): not a GPU
    /// measurement.
    pub emulated: bool,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.emulated {
            writeln!(
                f,
                "EMULATED CUDA device: the kernels ran on the CPU (vigil-cuda-emu) — not a GPU measurement"
            )?;
        }
        writeln!(f, "device                 {}", self.device)?;
        writeln!(f, "model                  {}", self.model)?;
        writeln!(f, "streams (batch)        {}", self.streams)?;
        writeln!(f, "threads                {}", self.threads)?;
        writeln!(f, "frames                 {}", self.frames)?;
        writeln!(f, "frames/s (aggregate)   {:.1}", self.frames_per_s)?;
        writeln!(
            f,
            "step p50 / p99 (ms)    {:.3} / {:.3}",
            self.step_ms_p50, self.step_ms_p99
        )?;
        writeln!(
            f,
            "state per stream       {:.2} MB",
            self.state_bytes_per_stream as f64 / 1e6
        )
    }
}

/// Run `cfg.streams` sessions in one batch for about `cfg.seconds`.
pub fn run(
    engine: &mut Engine,
    model_name: &str,
    threads: usize,
    cfg: &BenchConfig,
) -> Result<BenchReport> {
    let streams = cfg.streams.max(1);
    let sessions: Vec<_> = (0..streams)
        .map(|_| engine.open_session())
        .collect::<Result<_>>()?;
    let n = engine.model().frame_bytes();
    // distinct deterministic frames per stream
    let frames: Vec<Vec<u8>> = (0..streams)
        .map(|s| (0..n).map(|i| ((i * 7 + s * 131) % 251) as u8).collect())
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let mut logits = vec![0.0f32; streams * engine.classes()];
    for _ in 0..cfg.warmup_steps {
        engine.step(&sessions, &refs, &mut logits)?;
    }
    let mut times = Vec::new();
    let budget = Duration::from_secs_f64(cfg.seconds.max(0.0));
    let start = Instant::now();
    while times.len() < 3 || start.elapsed() < budget {
        let t0 = Instant::now();
        engine.step(&sessions, &refs, &mut logits)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let total: f64 = times.iter().sum();
    let steps = times.len();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((steps as f64 - 1.0) * p).round() as usize] * 1e3;
    let report = BenchReport {
        device: engine.device_name(),
        model: model_name.to_string(),
        streams,
        threads,
        frames: (steps * streams) as u64,
        frames_per_s: (steps * streams) as f64 / total,
        step_ms_p50: pct(0.5),
        step_ms_p99: pct(0.99),
        state_bytes_per_stream: engine.state_bytes_per_session(),
        isa: engine
            .device_name()
            .starts_with("cpu")
            .then(|| vigil_kernels::cpu::Isa::active().name()),
        emulated: engine.device_name().starts_with("cuda")
            && vigil_kernels::cuda::driver_is_emulated(),
    };
    for s in sessions {
        engine.close_session(s)?;
    }
    Ok(report)
}
