//! The ingest benchmark behind `vigil bench --ingest SOURCE`: how fast one process decodes,
//! resamples and converts a video, and (with a model) the latency from a frame (its
//! capture for live sources, its arrival at the appsink for files) to its label. Produces an [`IngestReport`].
//!
//! Files are decoded as fast as possible and restarted at their end until the time is up,
//! so short clips measure steady-state throughput. CPU time comes from `/proc/self/stat`,
//! which turns frames/s into frames per CPU-second and hence into "how many cameras at
//! their native rate one core can ingest" (decoding cost follows the native rate, not the
//! sampled one).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_engine::Engine;

use crate::frame_ring::{DropPolicy, FrameRing};
use crate::resample::Rate;
use crate::source::{
    self, Aspect, SourceSpec, StreamCtx, StreamOptions, StreamState, StreamStatus,
};
use crate::{PipelineError, Result};

/// What to measure.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub seconds: f64,
    pub rate: Rate,
    pub size: usize,
    pub aspect: Aspect,
}

/// Ingest throughput and latency.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub source: String,
    pub seconds: f64,
    pub frames_decoded: u64,
    pub decoded_fps: f64,
    pub sample_rate: String,
    pub frames_delivered: u64,
    pub delivered_fps: f64,
    pub native_fps: Option<f64>,
    pub cpu_seconds: f64,
    pub cores: usize,
    pub decoded_fps_per_core: f64,
    /// Cameras at `native_fps` one core can decode (and resample, convert, scale).
    pub cameras_per_core: Option<f64>,
    /// Same for the whole machine.
    pub cameras_per_machine: Option<f64>,
    pub cpu_includes_inference: bool,
    pub frames_inferred: u64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
}

impl std::fmt::Display for IngestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt =
            |v: Option<f64>, d: usize| v.map(|x| format!("{x:.d$}")).unwrap_or_else(|| "-".into());
        writeln!(f, "ingest benchmark: {}", self.source)?;
        writeln!(f, "  measured                {:.2} s", self.seconds)?;
        writeln!(
            f,
            "  decoded                 {} frames, {:.1} frames/s (native {} fps)",
            self.frames_decoded,
            self.decoded_fps,
            opt(self.native_fps, 2)
        )?;
        writeln!(
            f,
            "  delivered at {:<10} {} frames, {:.1} frames/s",
            self.sample_rate, self.frames_delivered, self.delivered_fps
        )?;
        writeln!(f, "  CPU                     {:.2} s over {} cores ({:.1} decoded frames per CPU-second){}", self.cpu_seconds, self.cores, self.decoded_fps_per_core, if self.cpu_includes_inference { ", includes inference" } else { "" })?;
        writeln!(
            f,
            "  cameras per core        {}",
            opt(self.cameras_per_core, 1)
        )?;
        writeln!(
            f,
            "  cameras per machine     {}",
            opt(self.cameras_per_machine, 1)
        )?;
        if self.frames_inferred > 0 {
            write!(
                f,
                "  latency frame→label     p50 {} ms, p99 {} ms ({} frames)",
                opt(self.latency_ms_p50, 2),
                opt(self.latency_ms_p99, 2),
                self.frames_inferred
            )?;
        }
        Ok(())
    }
}

/// Process CPU time (user + system) from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let Some(rest) = s.rfind(')').map(|i| &s[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[f32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i] as f64)
}

/// Run the source for `cfg.seconds` (files loop), optionally classifying every delivered
/// frame with `engine` on one session.
pub fn run(
    spec: &SourceSpec,
    cfg: &IngestConfig,
    mut engine: Option<Engine>,
    stop: Arc<AtomicBool>,
) -> Result<IngestReport> {
    let frame_bytes = cfg.size * cfg.size * 3;
    let live = spec.is_live();
    let policy = if live {
        DropPolicy::DropOldest
    } else {
        DropPolicy::Block
    };
    let parker = crossbeam::sync::Parker::new();
    let ring = Arc::new(FrameRing::new(
        4,
        frame_bytes,
        policy,
        Some(parker.unparker().clone()),
    ));
    let status = Arc::new(StreamStatus::default());
    let mut opts = StreamOptions::new(cfg.size, cfg.rate);
    opts.aspect = cfg.aspect;
    opts.looping = !live;
    let local_stop = Arc::new(AtomicBool::new(false));
    let ctx = StreamCtx {
        name: "ingest".into(),
        spec: spec.clone(),
        opts,
        ring: ring.clone(),
        status: status.clone(),
        stop: local_stop.clone(),
    };
    let (sid, mut logits) = match engine.as_mut() {
        Some(e) => (Some(e.open_session()?), vec![0f32; e.classes()]),
        None => (None, Vec::new()),
    };
    let mut latencies: Vec<f32> = Vec::with_capacity(1 << 16);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let handle = std::thread::Builder::new()
        .name("ingest-bench".into())
        .spawn(move || source::run_stream(ctx))
        .map_err(|e| PipelineError::Internal(format!("cannot start ingest thread: {e}")))?;
    let limit = Duration::from_secs_f64(cfg.seconds);
    let mut delivered = 0u64;
    let mut step_err = None;
    while t0.elapsed() < limit && !stop.load(Ordering::Acquire) {
        match ring.pop() {
            Some(frame) => {
                delivered += 1;
                if let (Some(e), Some(id)) = (engine.as_mut(), sid) {
                    if let Err(err) = e.step(&[id], &[frame.data()], &mut logits) {
                        step_err = Some(err);
                        ring.recycle(frame);
                        break;
                    }
                    if latencies.len() < latencies.capacity() {
                        latencies.push(frame.arrived.elapsed().as_secs_f32() * 1e3);
                    }
                }
                ring.recycle(frame);
            }
            None => {
                if matches!(status.state(), StreamState::Ended | StreamState::Failed) {
                    break;
                }
                parker.park_timeout(Duration::from_millis(5));
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let decoded = status.decoded.load(Ordering::Relaxed);
    local_stop.store(true, Ordering::Release);
    ring.close();
    if handle.join().is_err() {
        return Err(PipelineError::Internal("the ingest thread panicked".into()));
    }
    if let Some(e) = step_err {
        return Err(e.into());
    }
    if let Some(e) = status.take_error() {
        return Err(e);
    }
    if decoded == 0 {
        return Err(PipelineError::Stream {
            stream: "ingest".into(),
            uri: spec.raw.clone(),
            what: "no frame was decoded".into(),
            hint: "check that the source plays with gst-launch-1.0".into(),
        });
    }
    latencies.sort_by(f32::total_cmp);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let per_core = if cpu > 0.0 { decoded as f64 / cpu } else { 0.0 };
    let native = status.native_fps();
    let cams = native
        .filter(|&n| n > 0.0 && per_core > 0.0)
        .map(|n| per_core / n);
    Ok(IngestReport {
        source: spec.raw.clone(),
        seconds: wall,
        frames_decoded: decoded,
        decoded_fps: decoded as f64 / wall,
        sample_rate: cfg.rate.to_string(),
        frames_delivered: delivered,
        delivered_fps: delivered as f64 / wall,
        native_fps: native,
        cpu_seconds: cpu,
        cores,
        decoded_fps_per_core: per_core,
        cameras_per_core: cams,
        cameras_per_machine: cams.map(|c| c * cores as f64),
        cpu_includes_inference: engine.is_some(),
        frames_inferred: latencies.len() as u64,
        latency_ms_p50: percentile(&latencies, 0.5),
        latency_ms_p99: percentile(&latencies, 0.99),
    })
}
