//! Example: time Vigil's CLIP image encoder — by default a real-size ViT-B/32
//! (openai/clip-vit-base-patch32 geometry: width 768, 12 layers, 12 heads, MLP 3072,
//! patch 32, 224 px) with seeded random weights, which is all a speed measurement needs.
//! Encodes batches of `--batch` images on `--threads` threads for `--seconds`, after a
//! warm-up, and prints one JSON line (median and best batch time, ms per frame, frames/s).
//! `benches/clip_side_by_side.py` runs it alternately with ONNX Runtime.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use vigil_engine::clip::{ClipConfig, ClipModel, ClipWorkspace};

#[derive(Parser)]
#[command(about = "Time the CLIP image encoder (random ViT-B/32 unless --model is given)")]
struct Args {
    /// Hugging Face CLIP folder to time instead of the random ViT-B/32.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Encoder threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Images per encoder call (frames from several streams batched together).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seconds of timed calls (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Untimed calls first (grow the workspace, warm the caches).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let model = match &a.model {
        Some(dir) => ClipModel::load(dir, a.threads)?,
        None => {
            // every field left out takes transformers' default: openai/clip-vit-base-patch32
            let cfg = ClipConfig::parse(
                std::path::Path::new("vit-b-32"),
                r#"{"model_type": "clip"}"#,
            )?;
            ClipModel::random(cfg, a.threads)?
        }
    };
    let per = model.preprocessor.output_len();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let pixels: Vec<f32> = (0..a.batch * per)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    let mut ws = ClipWorkspace::default();
    for _ in 0..a.warmup {
        model.encode_pixels(&pixels, a.batch, &mut ws)?;
    }
    let mut times = Vec::new();
    let cpu0 = process_cpu_seconds();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs_f64(a.seconds) || times.len() < 3 {
        let t = Instant::now();
        let e = model.encode_pixels(&pixels, a.batch, &mut ws)?;
        std::hint::black_box(e.embeds);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu_ms = (process_cpu_seconds() - cpu0) * 1e3;
    let frames = (times.len() * a.batch) as f64;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let v = &model.config.vision;
    println!(
        "{}",
        serde_json::json!({
            "engine": "vigil",
            "model": format!("ViT-{}/{} {}px, width {}, {} layers", if v.hidden == 768 { "B" } else { "?" }, v.patch_size, v.image_size, v.hidden, v.layers),
            "threads": model.threads(),
            "batch": a.batch,
            "calls": times.len(),
            "ms_per_batch_median": median,
            "ms_per_batch_best": times[0],
            "ms_per_frame": median / a.batch as f64,
            "frames_per_s": a.batch as f64 * 1e3 / median,
            // CPU time of the whole process per frame: what the encoder costs when the
            // machine is shared (time spent descheduled is not counted)
            "cpu_ms_per_frame": cpu_ms / frames,
        })
    );
    Ok(())
}

/// CPU seconds used by this process so far (all threads), from `/proc/self/stat`.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the parenthesised command name; utime and stime are the 12th and 13th
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // /proc reports clock ticks of USER_HZ, which Linux fixes at 100 for user space
    (ticks(11) + ticks(12)) / 100.0
}
