//! The `vigil` command line: [`Cli`] (clap derive) and [`run`], which turns parsed
//! arguments into a validated plan and executes it. `main.rs` only maps the result to an
//! exit code.
//!
//! Subcommands: `inspect` (model summary), `classify` (fixture or sources to the end),
//! `watch` (long-running, events, reconnects), `bench` (engine step benchmark, or
//! `--ingest` decode throughput).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use clap::{Args, Parser, Subcommand};
use vigil_engine::{Device, Engine, EngineConfig, Labels, Model, Precision};

use crate::config::WatchConfig;
use crate::events::{softmax_into, Event, EventConfig, EventDetector};
use crate::frame_ring::{DropPolicy, Frame, FrameRing};
use crate::output::{Format, Output};
use crate::resample::Rate;
use crate::scheduler::{BatchPolicy, FrameSink, Lane, Scheduler};
use crate::source::{
    self, Aspect, RtspTransport, SourceKind, SourceSpec, StreamCtx, StreamOptions, StreamStatus,
};
use crate::{ingest, PipelineError, Result};

/// Streaming video action recognition with causal MoViNet stream models.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a model's structure and input requirements.
    Inspect(InspectArgs),
    /// Classify a fixture or video sources to their end.
    Classify(ClassifyArgs),
    /// Watch cameras continuously and report action start/end events.
    Watch(WatchArgs),
    /// Benchmark the engine step (default) or video ingest (--ingest).
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// MoViNet stream .tflite model.
    pub model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// MoViNet stream .tflite model.
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Compute device: cpu, cuda or auto.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Worker threads for the CPU backend (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// GPU storage precision: fp16 (fp32 accumulation) or fp32 (verification mode).
    #[arg(long, default_value = "fp16", value_parser = parse_precision)]
    pub precision: Precision,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Label file (one label per line, line i = class i); default class_0, class_1…
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Include raw logits in JSON records.
    #[arg(long)]
    pub logits: bool,
    /// How many top classes to report.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub top: u16,
    /// Output format (default: jsonl; text for `watch` on a terminal).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write results to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Frames per second fed to the model, or `native` (default: the model's training rate).
    #[arg(long, value_parser = parse_rate)]
    pub fps: Option<Rate>,
    /// Fit frames to the square model input by squashing or centre-cropping.
    #[arg(long, value_enum, default_value_t = Aspect::Squash)]
    pub aspect: Aspect,
    /// Restart files at their end.
    #[arg(long = "loop")]
    pub looping: bool,
    /// RTSP transport.
    #[arg(long, value_enum, default_value_t = RtspTransport::Tcp)]
    pub rtsp_transport: RtspTransport,
    /// RTSP jitter-buffer latency in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub latency_ms: u32,
    /// Largest cross-stream batch.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_batch: u16,
    /// Longest a ready frame waits for others to fill a batch, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub max_wait_ms: u64,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Sources: a .safetensors fixture, video files, file://, rtsp://, v4l2:///dev/videoN,
    /// test:[pattern=ball,fps=30,…], gst:<fragment producing raw video>.
    #[arg(required = true)]
    pub sources: Vec<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Sources (as for classify); with --config, added to the configured streams.
    pub sources: Vec<String>,
    /// cameras.toml with [[stream]] entries (name, uri, fps, enter, exit, smoothing, labels).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Default EMA score that starts an event.
    #[arg(long, default_value_t = 0.5)]
    pub enter: f32,
    /// Default EMA score below which an event ends.
    #[arg(long, default_value_t = 0.3)]
    pub exit: f32,
    /// Default EMA weight of the newest frame.
    #[arg(long, default_value_t = 0.4)]
    pub smoothing: f32,
    /// Only print events and final lines, not every frame.
    #[arg(long)]
    pub events_only: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Concurrent streams (batch size of each step).
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Also print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// Benchmark decode + resample + convert of this source instead of the engine.
    #[arg(long)]
    pub ingest: Option<String>,
    /// Sampling rate for --ingest (default: the model's rate, else 5).
    #[arg(long, value_parser = parse_rate)]
    pub fps: Option<Rate>,
}

fn parse_device(s: &str) -> std::result::Result<Device, String> {
    s.parse::<Device>().map_err(|e| e.to_string())
}

fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    match s {
        "fp16" | "f16" => Ok(Precision::F16),
        "fp32" | "f32" => Ok(Precision::F32),
        other => Err(format!("unknown precision {other:?} — use fp16 or fp32")),
    }
}

fn parse_rate(s: &str) -> std::result::Result<Rate, String> {
    s.parse::<Rate>()
}

/// What a finished command reports to `main`.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Streams that failed (their errors were already printed).
    pub failed_streams: usize,
}

/// Set by Ctrl-C (SIGINT) or SIGTERM; a second signal exits at once.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    if let Some(s) = STOP.get() {
        return Ok(s.clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = stop.clone();
    ctrlc::set_handler(move || {
        if handler_stop.swap(true, Ordering::AcqRel) {
            std::process::exit(130);
        }
        eprintln!("vigil: interrupted — draining (Ctrl-C again to quit at once)");
    })
    .map_err(|e| PipelineError::Internal(format!("cannot install the Ctrl-C handler: {e}")))?;
    Ok(STOP.get_or_init(|| stop).clone())
}

/// Execute parsed arguments.
pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Inspect(a) => inspect(&a),
        Command::Classify(a) => classify(&a),
        Command::Watch(a) => watch(&a),
        Command::Bench(a) => bench(&a),
    }
}

pub fn load_model(path: &Path) -> Result<Arc<Model>> {
    Model::load(path)
        .map(Arc::new)
        .map_err(|source| PipelineError::Model {
            path: path.to_path_buf(),
            source,
        })
}

fn load_labels(path: Option<&Path>, classes: usize) -> Result<Labels> {
    match path {
        Some(p) => Labels::load(p, classes).map_err(|source| PipelineError::Labels {
            path: p.to_path_buf(),
            source,
        }),
        None => Ok(Labels::numbered(classes)),
    }
}

fn make_engine(model: Arc<Model>, args: &EngineArgs) -> Result<Engine> {
    let engine = Engine::new(
        model,
        &EngineConfig {
            device: args.device,
            threads: args.threads,
            precision: args.precision,
            ..Default::default()
        },
    )?;
    tracing::info!(device = %engine.device_name(), "engine ready");
    Ok(engine)
}

fn open_output(args: &OutputArgs, default: Format, labels: Labels) -> Result<(Output, bool)> {
    let format = args.format.unwrap_or(default);
    match &args.out {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|source| PipelineError::Output {
                target: p.display().to_string(),
                source,
            })?;
            let w: Box<dyn Write + Send> = Box::new(std::io::BufWriter::new(f));
            Ok((
                Output::new(
                    w,
                    &p.display().to_string(),
                    format,
                    labels,
                    args.top as usize,
                    args.logits,
                ),
                false,
            ))
        }
        None => {
            let tty = std::io::stdout().is_terminal();
            Ok((
                Output::new(
                    Box::new(std::io::stdout()),
                    "stdout",
                    format,
                    labels,
                    args.top as usize,
                    args.logits,
                ),
                tty,
            ))
        }
    }
}

fn require_model<'a>(engine: &'a EngineArgs, fallback: Option<&'a PathBuf>) -> Result<&'a Path> {
    engine
        .model
        .as_deref()
        .or(fallback.map(|p| p.as_path()))
        .ok_or_else(|| {
            PipelineError::usage(
                "no model given",
                "pass --model path/to/movinet_*_stream*.tflite",
            )
        })
}

fn inspect(a: &InspectArgs) -> Result<Outcome> {
    let model = load_model(&a.model)?;
    let summary = model.summary();
    let mut out = std::io::stdout().lock();
    let r = if a.json {
        let s = serde_json::to_string_pretty(&summary)
            .map_err(|e| PipelineError::Internal(e.to_string()))?;
        writeln!(out, "{s}")
    } else {
        writeln!(out, "{summary}")
    };
    r.map_err(|source| PipelineError::Output {
        target: "stdout".into(),
        source,
    })?;
    Ok(Outcome::default())
}

fn classify(a: &ClassifyArgs) -> Result<Outcome> {
    let (specs, bad_sources) = parse_sources(&a.sources)?;
    if specs.is_empty() {
        return Ok(Outcome {
            failed_streams: bad_sources,
        });
    }
    let model_path = require_model(&a.engine, None)?;
    let model = load_model(model_path)?;
    let labels = load_labels(a.output.labels.as_deref(), model.classes())?;
    let fixtures = specs
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Fixture { .. }))
        .count();
    if fixtures > 0 {
        if specs.len() > 1 {
            return Err(PipelineError::usage(
                "a fixture cannot be mixed with other sources",
                "classify one .safetensors fixture at a time",
            ));
        }
        if let SourceKind::Fixture { path } = &specs[0].kind {
            let (mut out, _) = open_output(&a.output, Format::Jsonl, labels)?;
            return classify_fixture(path, model, &a.engine, &mut out);
        }
    }
    let (out, _) = open_output(&a.output, Format::Jsonl, labels)?;
    let rate = a.stream.fps.unwrap_or(Rate::Fps(model.default_fps()));
    let names = unique_names(specs.iter().map(|s| s.default_name()));
    let plans = specs
        .into_iter()
        .zip(names)
        .map(|(spec, name)| {
            let mut opts = stream_options(&a.stream, model.input_size(), rate);
            opts.reconnect_on_eos = false;
            opts.retry_initial = false;
            StreamPlan {
                name,
                spec,
                opts,
                events: None,
            }
        })
        .collect();
    let engine = make_engine(model, &a.engine)?;
    let mut outcome = run_streams(engine, plans, out, &a.stream, false)?;
    outcome.failed_streams += bad_sources;
    Ok(outcome)
}

fn classify_fixture(
    path: &Path,
    model: Arc<Model>,
    args: &EngineArgs,
    out: &mut Output,
) -> Result<Outcome> {
    let fx =
        vigil_engine::fixture::Fixture::load(path).map_err(|source| PipelineError::Fixture {
            path: path.to_path_buf(),
            source,
        })?;
    if fx.size() != model.input_size() {
        return Err(PipelineError::usage(
            format!(
                "fixture {} has {}x{} frames but the model takes {}x{}",
                path.display(),
                fx.size(),
                fx.size(),
                model.input_size(),
                model.input_size()
            ),
            "use a fixture made for this model's input size",
        ));
    }
    let classes = model.classes();
    let mut engine = make_engine(model, args)?;
    let sid = engine.open_session()?;
    let mut logits = vec![0f32; classes];
    let span = tracing::info_span!("fixture", path = %path.display(), frames = fx.len());
    let _enter = span.enter();
    for i in 0..fx.len() {
        engine.step(&[sid], &[fx.frame(i)], &mut logits)?;
        out.fixture_frame(i, &logits)?;
    }
    out.fixture_final(fx.len(), (!fx.is_empty()).then_some(logits.as_slice()))?;
    engine.close_session(sid)?;
    Ok(Outcome::default())
}

fn watch(a: &WatchArgs) -> Result<Outcome> {
    let config = match &a.config {
        Some(p) => Some((p.clone(), WatchConfig::load(p)?)),
        None => None,
    };
    if a.sources.is_empty() && config.is_none() {
        return Err(PipelineError::usage(
            "no sources to watch",
            "pass sources (rtsp://…, files, test:) or --config cameras.toml",
        ));
    }
    let (cli_specs, bad_sources) = parse_sources(&a.sources)?;
    let model_path = require_model(
        &a.engine,
        config.as_ref().and_then(|(_, c)| c.model.as_ref()),
    )?;
    let model = load_model(model_path)?;
    let labels_path = a
        .output
        .labels
        .clone()
        .or_else(|| config.as_ref().and_then(|(_, c)| c.labels.clone()));
    let labels = load_labels(labels_path.as_deref(), model.classes())?;
    let default_rate = a.stream.fps.unwrap_or(Rate::Fps(model.default_fps()));
    let default_events = EventConfig {
        enter: a.enter,
        exit: a.exit,
        alpha: a.smoothing,
        classes: None,
    };
    default_events
        .validate()
        .map_err(|why| PipelineError::usage(why, "adjust --enter/--exit/--smoothing"))?;

    let mut plans = Vec::new();
    if let Some((path, cfg)) = &config {
        for s in &cfg.streams {
            let spec = SourceSpec::parse(&s.uri).map_err(|e| PipelineError::Config {
                path: path.clone(),
                why: format!("stream {:?}: {e}", s.name),
                hint: "fix its uri".into(),
            })?;
            let classes = match &s.labels {
                None => None,
                Some(names) => Some(
                    names
                        .iter()
                        .map(|n| {
                            (0..model.classes()).find(|&i| labels.name(i) == n).ok_or_else(|| PipelineError::Config {
                                path: path.clone(),
                                why: format!("stream {:?}: label {n:?} is not in the label file", s.name),
                                hint: "use labels exactly as written in the label file (and pass --labels)".into(),
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                ),
            };
            let ev = EventConfig {
                enter: s.enter.unwrap_or(a.enter),
                exit: s.exit.unwrap_or(a.exit),
                alpha: s.smoothing.unwrap_or(a.smoothing),
                classes,
            };
            ev.validate().map_err(|why| PipelineError::Config {
                path: path.clone(),
                why: format!("stream {:?}: {why}", s.name),
                hint: "fix enter/exit/smoothing".into(),
            })?;
            let rate = s.rate(path)?.unwrap_or(default_rate);
            plans.push(StreamPlan {
                name: s.name.clone(),
                spec,
                opts: stream_options(&a.stream, model.input_size(), rate),
                events: Some(ev),
            });
        }
    }
    let taken: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let names = unique_names(
        taken
            .iter()
            .cloned()
            .chain(cli_specs.iter().map(|s| s.default_name())),
    );
    for (spec, name) in cli_specs
        .into_iter()
        .zip(names.into_iter().skip(taken.len()))
    {
        plans.push(StreamPlan {
            name,
            spec,
            opts: stream_options(&a.stream, model.input_size(), default_rate),
            events: Some(default_events.clone()),
        });
    }
    for p in &mut plans {
        p.opts.reconnect_on_eos = true;
        p.opts.retry_initial = true;
    }
    let tty_default = if a.output.out.is_none() && std::io::stdout().is_terminal() {
        Format::Text
    } else {
        Format::Jsonl
    };
    let (mut out, tty) = open_output(&a.output, tty_default, labels)?;
    if tty && !a.events_only {
        out.live(plans.len());
    }
    let engine = make_engine(model, &a.engine)?;
    let mut outcome = run_streams(engine, plans, out, &a.stream, a.events_only)?;
    outcome.failed_streams += bad_sources;
    Ok(outcome)
}

/// Parse source arguments. With one source a bad one is the command's error; with
/// several, each bad one is reported (`vigil: …`) and counted while the others run.
fn parse_sources(sources: &[String]) -> Result<(Vec<SourceSpec>, usize)> {
    if sources.len() == 1 {
        return Ok((vec![SourceSpec::parse(&sources[0])?], 0));
    }
    let mut specs = Vec::with_capacity(sources.len());
    let mut bad = 0;
    for s in sources {
        match SourceSpec::parse(s) {
            Ok(spec) => specs.push(spec),
            Err(e) => {
                eprintln!("vigil: {e}");
                bad += 1;
            }
        }
    }
    Ok((specs, bad))
}

fn stream_options(a: &StreamArgs, size: usize, rate: Rate) -> StreamOptions {
    let mut o = StreamOptions::new(size, rate);
    o.aspect = a.aspect;
    o.looping = a.looping;
    o.rtsp_transport = a.rtsp_transport;
    o.latency_ms = a.latency_ms;
    o
}

/// Make names unique by suffixing `#2`, `#3`… to repeats.
fn unique_names(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let mut candidate = n.clone();
        let mut k = 2;
        while out.contains(&candidate) {
            candidate = format!("{n}#{k}");
            k += 1;
        }
        out.push(candidate);
    }
    out
}

struct StreamPlan {
    name: String,
    spec: SourceSpec,
    opts: StreamOptions,
    events: Option<EventConfig>,
}

/// Start one ingest thread per plan, schedule them all on `engine` until every stream ended
/// (or Ctrl-C), then join the threads.
fn run_streams(
    mut engine: Engine,
    plans: Vec<StreamPlan>,
    out: Output,
    sargs: &StreamArgs,
    events_only: bool,
) -> Result<Outcome> {
    source::init_gstreamer()?;
    let stop = stop_flag()?;
    let policy = BatchPolicy {
        max_batch: sargs.max_batch as usize,
        max_wait: std::time::Duration::from_millis(sargs.max_wait_ms),
    };
    let mut scheduler = Scheduler::new(policy);
    let frame_bytes = engine.model().frame_bytes();
    let classes = engine.classes();
    let mut lanes = Vec::with_capacity(plans.len());
    let mut threads = Vec::with_capacity(plans.len());
    let mut detectors = Vec::with_capacity(plans.len());
    for plan in plans {
        let live = plan.spec.is_live();
        let (capacity, policy) = if live {
            (4, DropPolicy::DropOldest)
        } else {
            (2, DropPolicy::Block)
        };
        let ring = Arc::new(FrameRing::new(
            capacity,
            frame_bytes,
            policy,
            Some(scheduler.unparker()),
        ));
        let status = Arc::new(StreamStatus::default());
        tracing::info!(stream = %plan.name, source = %plan.spec.raw, rate = %plan.opts.rate, live, "starting stream");
        let ctx = StreamCtx {
            name: plan.name.clone(),
            spec: plan.spec,
            opts: plan.opts,
            ring: ring.clone(),
            status: status.clone(),
            stop: stop.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("ingest-{}", plan.name))
            .spawn(move || source::run_stream(ctx))
            .map_err(|e| PipelineError::Internal(format!("cannot start ingest thread: {e}")))?;
        threads.push(handle);
        detectors.push(plan.events.map(|cfg| EventDetector::new(cfg, classes)));
        lanes.push(Lane::new(plan.name, ring, status));
    }
    let mut reporter = Reporter {
        out,
        detectors,
        probs: Vec::with_capacity(classes),
        events: Vec::with_capacity(16),
        last_logits: (0..lanes.len()).map(|_| vec![0f32; classes]).collect(),
        has_logits: vec![false; lanes.len()],
        last_pts: vec![0; lanes.len()],
        failed: 0,
        events_only,
    };
    let result = scheduler.run(&mut engine, &mut lanes, &mut reporter);
    if result.is_err() {
        stop.store(true, Ordering::Release);
        for lane in &lanes {
            lane.ring.close();
        }
    }
    for t in threads {
        if t.join().is_err() {
            return Err(PipelineError::Internal("an ingest thread panicked".into()));
        }
    }
    result?;
    Ok(Outcome {
        failed_streams: reporter.failed,
    })
}

/// The [`FrameSink`] of classify/watch: output records, events, final lines.
struct Reporter {
    out: Output,
    detectors: Vec<Option<EventDetector>>,
    probs: Vec<f32>,
    events: Vec<Event>,
    last_logits: Vec<Vec<f32>>,
    has_logits: Vec<bool>,
    last_pts: Vec<u64>,
    failed: usize,
    events_only: bool,
}

impl Reporter {
    fn flush_events(&mut self, name: &str, pts: u64) -> Result<()> {
        for i in 0..self.events.len() {
            let ev = self.events[i];
            self.out.event(name, &ev, pts)?;
        }
        self.events.clear();
        Ok(())
    }
}

impl FrameSink for Reporter {
    fn on_frame(&mut self, lane: usize, name: &str, frame: &Frame, logits: &[f32]) -> Result<()> {
        let latency_ms = frame.arrived.elapsed().as_secs_f64() * 1e3;
        if !self.events_only {
            self.out
                .frame(lane, name, frame.seq, frame.pts_ns, latency_ms, logits)?;
        }
        if let Some(Some(det)) = self.detectors.get_mut(lane) {
            softmax_into(logits, &mut self.probs);
            det.update(&self.probs, &mut self.events);
        }
        self.flush_events(name, frame.pts_ns)?;
        self.last_logits[lane].copy_from_slice(logits);
        self.has_logits[lane] = true;
        self.last_pts[lane] = frame.pts_ns;
        Ok(())
    }

    fn on_reset(&mut self, lane: usize, name: &str) -> Result<()> {
        if let Some(Some(det)) = self.detectors.get_mut(lane) {
            det.reset(&mut self.events);
        }
        let pts = self.last_pts[lane];
        self.flush_events(name, pts)
    }

    fn on_end(
        &mut self,
        lane: usize,
        name: &str,
        frames: u64,
        dropped: u64,
        error: Option<PipelineError>,
    ) -> Result<()> {
        if let Some(Some(det)) = self.detectors.get_mut(lane) {
            det.finish(&mut self.events);
        }
        let pts = self.last_pts[lane];
        self.flush_events(name, pts)?;
        if let Some(e) = &error {
            self.failed += 1;
            eprintln!("vigil: {e}");
        }
        if error.is_none() || frames > 0 {
            let logits = self.has_logits[lane].then(|| self.last_logits[lane].as_slice());
            self.out.stream_final(name, frames, dropped, logits)?;
        }
        tracing::info!(stream = name, frames, dropped, "stream finished");
        Ok(())
    }
}

fn bench(a: &BenchArgs) -> Result<Outcome> {
    let threads = if a.engine.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        a.engine.threads
    };
    if !(a.seconds > 0.0 && a.seconds.is_finite()) {
        return Err(PipelineError::usage(
            format!("--seconds {} is not a positive duration", a.seconds),
            "e.g. --seconds 5",
        ));
    }
    if let Some(src) = &a.ingest {
        let spec = SourceSpec::parse(src)?;
        let model = match &a.engine.model {
            Some(p) => Some(load_model(p)?),
            None => None,
        };
        let rate = a
            .fps
            .unwrap_or_else(|| Rate::Fps(model.as_ref().map(|m| m.default_fps()).unwrap_or(5.0)));
        let size = model.as_ref().map(|m| m.input_size()).unwrap_or(172);
        let engine = match model {
            Some(m) => Some(make_engine(m, &a.engine)?),
            None => None,
        };
        source::init_gstreamer()?;
        let stop = stop_flag()?;
        let cfg = ingest::IngestConfig {
            seconds: a.seconds,
            rate,
            size,
            aspect: Aspect::Squash,
        };
        let report = ingest::run(&spec, &cfg, engine, stop)?;
        print_report(&report, a.json)?;
        return Ok(Outcome::default());
    }
    if a.streams == 0 {
        return Err(PipelineError::usage(
            "--streams 0",
            "bench at least one stream",
        ));
    }
    let model_path = require_model(&a.engine, None)?;
    let model = load_model(model_path)?;
    let name = model_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut engine = make_engine(model, &a.engine)?;
    let cfg = vigil_engine::bench::BenchConfig {
        streams: a.streams,
        seconds: a.seconds,
        warmup_steps: a.warmup,
    };
    let report = vigil_engine::bench::run(&mut engine, &name, threads, &cfg)?;
    print_report(&report, a.json)?;
    Ok(Outcome::default())
}

fn print_report<R: std::fmt::Display + serde::Serialize>(report: &R, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let r = writeln!(out, "{report}").and_then(|_| {
        if json {
            let s = serde_json::to_string(report).map_err(std::io::Error::other)?;
            writeln!(out, "{s}")?;
        }
        out.flush()
    });
    r.map_err(|source| PipelineError::Output {
        target: "stdout".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "vigil", "classify", "a.mp4", "--model", "m.tflite", "--fps", "native", "--top", "3",
        ])
        .unwrap();
        let Command::Classify(a) = c.command else {
            panic!()
        };
        assert_eq!(a.stream.fps, Some(Rate::Native));
        assert_eq!(a.output.top, 3);
        assert!(Cli::try_parse_from(["vigil", "classify", "a.mp4", "--device", "tpu"]).is_err());
        assert!(Cli::try_parse_from(["vigil", "classify", "a.mp4", "--fps", "-1"]).is_err());
    }

    #[test]
    fn names_unique() {
        assert_eq!(
            unique_names(["a", "a", "b", "a"].into_iter().map(String::from)),
            vec!["a", "a#2", "b", "a#3"]
        );
    }
}
