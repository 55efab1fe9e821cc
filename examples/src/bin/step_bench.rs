//! Example / GStreamer-free benchmark: `vigil bench` for the engine step on any device,
//! over a sweep of stream counts — the binary to carry to a GPU machine (which has no
//! GStreamer). Prints one JSON object per stream count (the `vigil bench --json` fields).
//!
//! usage: step_bench MODEL [--device cpu|cuda|auto] [--precision auto|fp32|fp16|bf16]
//!                         [--streams 1,8,64,512,4096] [--seconds S] [--threads T]

use std::path::PathBuf;
use std::sync::Arc;

use vigil_engine::bench::{self, BenchConfig};
use vigil_engine::{ComputePrecision, Device, Engine, EngineConfig, Model};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(model_path) = args.first().filter(|a| !a.starts_with("--")) else {
        anyhow::bail!("usage: step_bench MODEL [--device cpu|cuda|auto] [--precision auto|fp32|fp16|bf16] [--streams 1,8,64] [--seconds S] [--threads T]");
    };
    let device: Device = flag("--device").as_deref().unwrap_or("cpu").parse()?;
    let precision = ComputePrecision::parse(flag("--precision").as_deref().unwrap_or("auto"))
        .map_err(anyhow::Error::msg)?;
    let seconds: f64 = flag("--seconds")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3.0);
    let threads: usize = match flag("--threads").map(|s| s.parse()).transpose()? {
        Some(t) if t > 0 => t,
        _ => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let streams: Vec<usize> = flag("--streams")
        .unwrap_or_else(|| "1,8,64".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let model = Arc::new(Model::load(&PathBuf::from(model_path))?);
    let mut engine = Engine::new(
        model.clone(),
        &EngineConfig {
            device,
            threads,
            precision,
            ..Default::default()
        },
    )?;
    for n in streams {
        let cfg = BenchConfig {
            streams: n,
            seconds,
            warmup_steps: 3,
        };
        let report = bench::run(&mut engine, &model.name, threads, &cfg)?;
        eprint!("{report}");
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
