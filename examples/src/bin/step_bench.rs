//! Example / GStreamer-free benchmark: `vigil bench` for the engine step on any device,
//! over a sweep of stream counts — the binary to carry to a GPU machine (which has no
//! GStreamer). Prints one JSON object per stream count (the `vigil bench --json` fields).
//!
//! usage: step_bench MODEL [--device cpu|cuda|auto] [--precision auto|fp32|fp16|bf16]
//!                         [--streams 1,8,64] [--seconds S] [--threads T]

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use vigil_engine::bench::{self, BenchConfig};
use vigil_engine::{ComputePrecision, Device, Engine, EngineConfig, Model};

/// Benchmark the engine step over a sweep of stream counts; prints one JSON object per
/// stream count (the `vigil bench --json` fields).
#[derive(Parser)]
#[command(name = "step_bench")]
struct Args {
    /// The MoViNet stream model (.tflite).
    model: PathBuf,
    /// Backend: cpu, cuda (or gpu) or auto.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// Arithmetic: auto, fp32, fp16 or bf16.
    #[arg(long, default_value = "auto", value_parser = ComputePrecision::parse)]
    precision: ComputePrecision,
    /// Stream counts to sweep, comma-separated (e.g. 1,8,64,512,4096).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64", value_parser = parse_count)]
    streams: Vec<usize>,
    /// Timed seconds per stream count.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Engine threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// A count from a comma-separated list, surrounding spaces allowed (`"1, 8"`).
fn parse_count(s: &str) -> Result<usize, std::num::ParseIntError> {
    s.trim().parse()
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let threads = match a.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        t => t,
    };
    let model = Arc::new(Model::load(&a.model)?);
    let mut engine = Engine::new(
        model.clone(),
        &EngineConfig {
            device: a.device,
            threads,
            precision: a.precision,
            ..Default::default()
        },
    )?;
    for n in a.streams {
        let cfg = BenchConfig {
            streams: n,
            seconds: a.seconds,
            warmup_steps: 3,
        };
        let report = bench::run(&mut engine, &model.name, threads, &cfg)?;
        eprint!("{report}");
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
