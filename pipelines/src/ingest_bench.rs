//! The ingest benchmark behind `vigil bench --ingest SOURCE`: how fast one process decodes,
//! resamples and converts a video, and (with a model) the latency from a frame (its
//! capture for live sources, its arrival at the appsink for files) to its label. Produces an [`IngestReport`].
//!
//! Files are decoded as fast as possible and restarted at their end until the time is up,
//! so short clips measure steady-state throughput. The timed window opens at the first
//! decoded frame; start-up (plugins, connecting, preroll) is reported on its own. CPU time comes from `/proc/self/stat`,
//! which turns frames/s into frames per CPU-second and hence into "how many cameras at
//! their native rate one core can ingest" (decoding cost follows the native rate, not the
//! sampled one).
//!
//! It runs on the [`Runtime`] like every other command: one stream, and a subscription to
//! its label records (the latency measurement) and its end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_engine::Engine;

use crate::resample::Rate;
use crate::runtime::{
    Kinds, Overflow, Runtime, RuntimeEvent, RuntimeOptions, StreamSetup, SubscriptionOptions,
};
use crate::source::{Aspect, SourceSpec, StreamOptions};
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
    /// From adding the stream to its first decoded frame (not part of the timed window).
    pub startup_seconds: f64,
    /// The timed window, from the first decoded frame.
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
        writeln!(
            f,
            "  measured                {:.2} s (after {:.2} s of start-up)",
            self.seconds, self.startup_seconds
        )?;
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

/// How long the source may take to decode its first frame.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

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
/// frame with `engine`. `stop` ends the measurement early (a signal).
pub fn run(
    spec: &SourceSpec,
    cfg: &IngestConfig,
    engine: Option<Engine>,
    stop: &AtomicBool,
) -> Result<IngestReport> {
    let live = spec.is_live();
    let with_engine = engine.is_some();
    let options = RuntimeOptions {
        batch: crate::scheduler::BatchPolicy {
            max_batch: 1,
            max_wait: Duration::ZERO,
        },
        file_ring: 4,
        ..Default::default()
    };
    let rt = match engine {
        Some(e) => Runtime::start(e, options)?,
        None => Runtime::start_ingest_only(cfg.size, options)?,
    };
    let sub = rt.subscribe(SubscriptionOptions {
        kinds: Kinds {
            labels: true,
            ends: true,
            ..Kinds::NONE
        },
        capacity: 4096,
        overflow: Overflow::Block,
        ..Default::default()
    });
    let mut opts = StreamOptions::new(cfg.size, cfg.rate);
    opts.aspect = cfg.aspect;
    opts.looping = !live;
    let mut latencies: Vec<f32> = Vec::with_capacity(1 << 16);
    let started = Instant::now();
    rt.add_stream(StreamSetup {
        name: "ingest".into(),
        source: spec.clone(),
        options: opts,
        events: None,
    })?;
    let decoded_now = || rt.stream("ingest").map_or(0, |i| i.decoded);
    // Start-up (plugin loading, connecting, the first decoded frame) is reported apart
    // and not timed: the window opens at the first decoded frame.
    let mut end_error = None;
    let mut ended = false;
    while decoded_now() == 0 && !stop.load(Ordering::Acquire) {
        if started.elapsed() > STARTUP_LIMIT {
            rt.shutdown()?;
            return Err(PipelineError::Stream {
                stream: "ingest".into(),
                uri: spec.shown.clone(),
                what: format!("no frame was decoded in {} s", STARTUP_LIMIT.as_secs()),
                hint: "check that the source plays with gst-launch-1.0".into(),
            });
        }
        match sub.recv_timeout(Duration::from_millis(10)) {
            Ok(RuntimeEvent::End(e)) => {
                end_error = e.error;
                ended = true;
                break;
            }
            Ok(_) | Err(false) => {}
            Err(true) => {
                ended = true;
                break;
            }
        }
    }
    let startup = started.elapsed().as_secs_f64();
    let cpu0 = cpu_seconds();
    let decoded0 = decoded_now();
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(cfg.seconds);
    let mut delivered = 0u64;
    while !ended && t0.elapsed() < limit && !stop.load(Ordering::Acquire) {
        match sub.recv_timeout(Duration::from_millis(20)) {
            Ok(RuntimeEvent::Label(l)) => {
                delivered += 1;
                if with_engine && latencies.len() < latencies.capacity() {
                    latencies.push(l.latency.as_secs_f32() * 1e3);
                }
            }
            Ok(RuntimeEvent::End(e)) => {
                end_error = e.error;
                break;
            }
            Ok(_) | Err(false) => {}
            Err(true) => break,
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let info = rt.stream("ingest");
    drop(sub);
    rt.shutdown()?;
    let (decoded, native) = info
        .map(|i| (i.decoded.saturating_sub(decoded0), i.native_fps))
        .unwrap_or((0, None));
    if let Some(e) = end_error {
        return Err(PipelineError::StreamFailed(e));
    }
    if decoded == 0 {
        return Err(PipelineError::Stream {
            stream: "ingest".into(),
            uri: spec.shown.clone(),
            what: "no frame was decoded".into(),
            hint: "check that the source plays with gst-launch-1.0".into(),
        });
    }
    latencies.sort_by(f32::total_cmp);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let per_core = if cpu > 0.0 { decoded as f64 / cpu } else { 0.0 };
    let cams = native
        .filter(|&n| n > 0.0 && per_core > 0.0)
        .map(|n| per_core / n);
    Ok(IngestReport {
        source: spec.shown.clone(),
        startup_seconds: startup,
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
        cpu_includes_inference: with_engine,
        frames_inferred: latencies.len() as u64,
        latency_ms_p50: percentile(&latencies, 0.5),
        latency_ms_p99: percentile(&latencies, 0.99),
    })
}
