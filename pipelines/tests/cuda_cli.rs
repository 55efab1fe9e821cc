//! The `vigil` binary on the CUDA backend, on whatever CUDA driver this machine has: the
//! real one when it loads, else Vigil's emulated driver (`vigil_cuda_emu`, the same
//! `kernels/cuda/*.cu` run on the CPU), put first on the child's library path as
//! `scripts/emulated-gpu.sh` does. What the README's one-liner promises: `classify
//! --device cuda` gives the CPU backend's logits (fp32 ≤ 1e-4 relative L2 per frame, fp16
//! ≤ 1e-2 with top-1 agreement ≥ 99 %), and `bench --device cuda` flags an emulated
//! device as one. Nothing here skips: no driver at all fails.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(300);

/// `vigil` with the emulator's directory first on LD_LIBRARY_PATH when this machine has
/// no real driver.
fn vigil_on_cuda(args: &[&str]) -> Run {
    let driver = vigil_cuda_emu::install()
        .unwrap_or_else(|e| panic!("no CUDA driver, real or emulated: {e}"));
    eprintln!("CUDA CLI tests on the {driver}");
    let mut cmd = vigil();
    cmd.args(args);
    if let vigil_cuda_emu::Driver::Emulated { library } = driver {
        let dir = library.parent().expect("the emulator's directory");
        let path = match std::env::var("LD_LIBRARY_PATH") {
            Ok(p) if !p.is_empty() => format!("{}:{p}", dir.display()),
            _ => dir.display().to_string(),
        };
        cmd.env("LD_LIBRARY_PATH", path);
    }
    run_command(cmd, LIMIT)
}

fn logits(run: &Run) -> Vec<Vec<f32>> {
    run.lines()
        .iter()
        .filter_map(|v| v["logits"].as_array())
        .map(|a| a.iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn classify_on_cuda_matches_the_cpu_backend() {
    let fixture = shared().join("fixtures/k600__arm_wrestling_5fps.safetensors");
    let fixture = fixture.to_str().unwrap();
    let model = k600_model();
    let cpu = run_vigil(
        &[
            "classify", fixture, "--model", &model, "--device", "cpu", "--logits",
        ],
        LIMIT,
    );
    assert_eq!(cpu.code, Some(0), "{}", cpu.stderr);
    let cpu = logits(&cpu);
    assert_eq!(cpu.len(), 50);
    for (precision, bound) in [("fp32", 1e-4), ("fp16", 1e-2)] {
        let run = vigil_on_cuda(&[
            "classify",
            fixture,
            "--model",
            &model,
            "--device",
            "cuda",
            "--precision",
            precision,
            "--logits",
        ]);
        assert_eq!(run.code, Some(0), "{precision}: {}", run.stderr);
        let cuda = logits(&run);
        assert_eq!(cuda.len(), cpu.len(), "{precision}: one line per frame");
        let mut worst = 0f64;
        let mut agree = 0;
        for (c, g) in cpu.iter().zip(&cuda) {
            worst = worst.max(rel_l2(c, g));
            agree += usize::from(argmax(c) == argmax(g));
        }
        eprintln!(
            "classify --device cuda --precision {precision}: worst rel L2 {worst:.2e}, top-1 {agree}/{}",
            cpu.len()
        );
        assert!(
            worst <= bound,
            "{precision}: worst rel L2 {worst:.3e} > {bound}"
        );
        assert!(
            agree * 100 >= cpu.len() * 99,
            "{precision}: top-1 {agree}/{}",
            cpu.len()
        );
    }
}

#[test]
fn bench_on_cuda_names_an_emulated_device_as_one() {
    let model = k600_model();
    let run = vigil_on_cuda(&[
        "bench",
        "--model",
        &model,
        "--device",
        "cuda",
        "--seconds",
        "1",
        "--warmup",
        "1",
        "--json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let json: Value = run
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a JSON report on the last line");
    let emulated = vigil_cuda_emu::install().unwrap().is_emulated();
    assert_eq!(json["emulated"], emulated, "{json}");
    if emulated {
        assert!(
            run.stdout.contains("EMULATED CUDA device") || run.stderr.contains("EMULATED"),
            "the report says the device is emulated:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}
