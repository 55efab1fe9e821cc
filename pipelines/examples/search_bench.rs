//! Brute-force text search over stored windows: how fast `vigil search` scans.
//!
//! Fills a fresh store (a temp data dir) with `--windows` random unit embeddings of
//! `--dim` values (f16, as `vigil watch` stores them), then runs `--queries` searches and
//! reports windows scanned per second, ms per query and bytes per window on disk.
//!
//! `cargo run --release -p vigil-pipelines --example search_bench -- --windows 1000000`
//! (README's "Text search" quotes its numbers). The store lives in a temporary directory
//! (~1.4 KB per 512-dim window) that is deleted at the end.

use std::time::Instant;

use clap::Parser;
use vigil_pipelines::search::store::NewWindow;
use vigil_pipelines::search::{search, WindowFilter, WindowStore};

#[derive(Parser)]
struct Args {
    /// Windows stored.
    #[arg(long, default_value_t = 200_000)]
    windows: usize,
    /// Embedding width (512: ViT-B/32 and ViT-B/16; 768: ViT-L/14).
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Searches timed.
    #[arg(long, default_value_t = 5)]
    queries: usize,
    /// Results per search.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// xorshift64*: reproducible noise without a dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self, out: &mut [f32]) {
        for v in out.iter_mut() {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
            *v = (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        let n = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        out.iter_mut().for_each(|v| *v /= n);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut store = WindowStore::open(dir.path())?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let streams = ["yard", "gate", "lobby", "garage"];
    let started = Instant::now();
    let chunk = 10_000;
    let mut embeds = vec![0f32; chunk * a.dim];
    let mut done = 0;
    while done < a.windows {
        let n = chunk.min(a.windows - done);
        for e in embeds.chunks_exact_mut(a.dim).take(n) {
            rng.unit(e);
        }
        let rows: Vec<NewWindow> = (0..n)
            .map(|i| {
                let t = ((done + i) as i64) * 4000;
                NewWindow {
                    stream: streams[(done + i) % streams.len()],
                    start_ms: t,
                    end_ms: t + 4000,
                    start_pts_ms: t as f64,
                    end_pts_ms: t as f64 + 4000.0,
                    frames: 4,
                    embedding: &embeds[i * a.dim..(i + 1) * a.dim],
                    snapshot: None,
                }
            })
            .collect();
        store.insert("bench", &rows)?;
        done += n;
    }
    let insert_s = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(store.path())?.len()
        + std::fs::metadata(dir.path().join("vigil.db-wal")).map_or(0, |m| m.len());
    let mut q = vec![0f32; a.dim];
    let mut times = Vec::new();
    for _ in 0..a.queries {
        rng.unit(&mut q);
        let t = Instant::now();
        let (hits, scanned) = search(&store, "bench", &q, &WindowFilter::default(), a.top)?;
        times.push(t.elapsed().as_secs_f64());
        assert_eq!((hits.len(), scanned), (a.top.min(a.windows), a.windows));
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{} windows x {} dims: stored in {:.1} s ({:.0} windows/s), {:.0} bytes/window on disk",
        a.windows,
        a.dim,
        insert_s,
        a.windows as f64 / insert_s,
        bytes as f64 / a.windows as f64
    );
    println!(
        "search (top {}): median {:.1} ms, min {:.1} ms over {} queries — {:.2} M windows/s scanned",
        a.top,
        median * 1e3,
        times[0] * 1e3,
        times.len(),
        a.windows as f64 / median / 1e6
    );
    Ok(())
}
