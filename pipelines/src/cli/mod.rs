//! The `vigil` command line: [`Cli`] (clap derive) and [`run`], which turns parsed
//! arguments into validated stream setups and runs them on the [`crate::runtime`].
//! `main.rs` only maps the [`Outcome`] to an exit code.
//!
//! Subcommands: `inspect` (model summary), `classify` (fixture or sources to the end),
//! `watch` (long-running, events, reconnects, status lines), `bench` (engine step
//! benchmark, or `--ingest` decode throughput), `search` (text search over stored
//! windows). `streams` runs a set of streams on a runtime with a writer thread and the
//! process's signal handling; `clip` holds the open-vocabulary options (`--clip`,
//! `--xclip`, prompts, the search store) and the reference-file check; `search` the
//! search command.

mod clip;
mod search;
mod streams;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use vigil_engine::{ComputePrecision, Device, Engine, EngineConfig, Labels, Model};

use crate::analyzer::Analyzer;
use crate::config::WatchConfig;
use crate::events::EventConfig;
use crate::output::{Format, Output};
use crate::resample::Rate;
use crate::runtime::{StreamSetup, MAX_TOP};
use crate::scheduler::{BatchPolicy, DEFAULT_MAX_BATCH, MAX_BATCH_LIMIT};
use crate::source::{Aspect, RtspTransport, SourceKind, SourceSpec, StreamOptions};
use crate::{ingest_bench, PipelineError, Result};

pub use clip::{read_prompt_file, ClipArgs, StoreArgs};
pub use search::SearchArgs;
pub use streams::say;
use streams::{run_streams, RunMode, StorePlan};

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
    /// Search what the cameras saw by text (windows stored by classify/watch --clip).
    Search(SearchArgs),
    /// Run as a sidecar: HTTP API, live events (SSE), history, metrics, MQTT, webhooks and
    /// a live page (see the README's "Run as a sidecar").
    Serve(ServeCmd),
}

#[derive(Debug, Args)]
pub struct ServeCmd {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub serve: crate::serve::config::ServeArgs,
    /// Open-vocabulary labels for every stream of the service (instead of --model).
    #[command(flatten)]
    pub clip: ClipArgs,
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
    /// Worker threads for the CPU backend (0 = all cores; more than the cores is capped).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Arithmetic: auto (fp16 on a GPU, fp32 on the CPU), fp32, fp16 (GPU: fp16 storage,
    /// fp32 accumulation) or bf16 (CPU with AVX-512 BF16: bf16 GEMM inputs, fp32 accumulation).
    #[arg(long, default_value = "auto", value_parser = ComputePrecision::parse)]
    pub precision: ComputePrecision,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Label file (one label per line, line i = class i); default class_0, class_1…
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Include raw logits in JSON records.
    #[arg(long)]
    pub logits: bool,
    /// How many top classes to report (at most 20).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=MAX_TOP as i64))]
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
    /// Play files at their own speed, as a camera would (default: as fast as the engine runs).
    #[arg(long)]
    pub realtime: bool,
    /// RTSP transport.
    #[arg(long, value_enum, default_value_t = RtspTransport::Tcp)]
    pub rtsp_transport: RtspTransport,
    /// RTSP jitter-buffer latency in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub latency_ms: u32,
    /// Largest cross-stream batch (default: 16 on the CPU, 4096 on a GPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_LIMIT as i64))]
    pub max_batch: Option<u32>,
    /// Longest a ready frame waits for other streams that are due, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub max_wait_ms: u64,
    /// Stop after this many seconds (the results are complete up to then).
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Sources: a .safetensors fixture, video files, file://, rtsp://, v4l2:///dev/videoN,
    /// test:[pattern=ball,fps=30,…], gst:FRAGMENT (a GStreamer fragment producing raw video).
    #[arg(required = true)]
    pub sources: Vec<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub clip: ClipArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Sources (as for classify); with --config, added to the configured streams.
    pub sources: Vec<String>,
    /// cameras.toml with `[[stream]]` entries (name, uri, fps, enter, exit, smoothing,
    /// min_duration, labels); its relative paths are relative to the file.
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
    /// Seconds the smoothed score must stay above --enter before an event starts.
    #[arg(long, value_parser = parse_seconds_or_zero, default_value = "1")]
    pub min_duration: Duration,
    /// Only report events of these labels (repeat, or separate with commas); default all.
    #[arg(long = "event-labels", value_delimiter = ',')]
    pub event_labels: Vec<String>,
    /// Seconds between per-stream stats lines (frames, drops, fps); 0 = none.
    #[arg(long, value_parser = parse_seconds_or_zero, default_value = "10")]
    pub stats_interval: Duration,
    /// Only print events, status, stats and final lines, not every frame.
    #[arg(long)]
    pub events_only: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub clip: ClipArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub store: StoreArgs,
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

fn parse_rate(s: &str) -> std::result::Result<Rate, String> {
    s.parse::<Rate>()
}

fn parse_seconds_or_zero(s: &str) -> std::result::Result<Duration, String> {
    match s.trim_end_matches('s').parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() && x < 1e9 => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

fn parse_seconds(s: &str) -> std::result::Result<Duration, String> {
    match parse_seconds_or_zero(s)? {
        d if d.is_zero() => Err("must be more than 0 seconds".into()),
        d => Ok(d),
    }
}

/// What a finished command reports to `main`.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Streams that failed (their errors were already printed).
    pub failed_streams: usize,
    /// Some results are partial (interrupted, or an input ended early): `classify`
    /// exits 3.
    pub partial: bool,
}

/// Execute parsed arguments.
pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Inspect(a) => inspect(&a),
        Command::Classify(a) => classify(&a),
        Command::Watch(a) => watch(&a),
        Command::Bench(a) => bench(&a),
        Command::Search(a) => search::run(&a),
        Command::Serve(a) => serve(&a),
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

/// `vigil serve`: validate the settings, load the model, run the sidecar until a signal.
fn serve(a: &ServeCmd) -> Result<Outcome> {
    crate::serve::run::limit_malloc_arenas();
    let settings = crate::serve::config::ServeSettings::resolve(&a.serve)?;
    // the command line's model (--model, --clip or --xclip) keeps the file's out
    let cli_model = a.engine.model.is_some();
    let clip_args = a.clip.with_file(&settings.clip, cli_model);
    clip_args.check_unused()?;
    let (analyzer, labels, rate) = if clip_args.model().is_some() {
        if settings.labels.is_some() {
            return Err(PipelineError::usage(
                "--labels names a MoViNet model's classes; with --clip/--xclip the labels are the prompts",
                "drop --labels (or `labels` in vigil.toml)",
            ));
        }
        let prompts = clip::prompts(&clip_args, None)?;
        let analyzer = clip::build_analyzer(
            &clip_args,
            prompts,
            cpu_threads(a.engine.threads),
            a.engine.device,
        )?;
        let labels = analyzer
            .labels()
            .ok_or_else(|| PipelineError::Internal("a CLIP analyzer without labels".into()))?;
        let rate = Rate::Fps(analyzer.info().default_fps);
        (analyzer, labels, rate)
    } else {
        let model_path = require_model(
            &a.engine,
            settings.model.as_ref(),
            a.serve.config.as_deref(),
        )?;
        let model = load_model(model_path)?;
        let labels = load_labels(settings.labels.as_deref(), model.classes())?;
        let rate = Rate::Fps(model.default_fps());
        (
            Analyzer::movinet(make_engine(model, &a.engine)?),
            labels,
            rate,
        )
    };
    crate::serve::run::run(settings, analyzer, labels, rate)?;
    Ok(Outcome::default())
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

/// Cores of this machine.
fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `--threads`, capped at the cores (more threads than cores only slow every step and
/// make the process slow to stop).
fn cpu_threads(requested: usize) -> usize {
    let cores = cores();
    if requested > cores {
        say(&format!(
            "--threads {requested} is more than the {cores} cores here — using {cores}"
        ));
        cores
    } else {
        requested
    }
}

fn make_engine(model: Arc<Model>, args: &EngineArgs) -> Result<Engine> {
    make_engine_for(model, args, None)
}

/// [`make_engine`] sized for batches of up to `max_batch` streams (`--max-batch`): on a
/// GPU this sets the workspace and how far the CUDA-graph buckets reach.
fn make_engine_for(model: Arc<Model>, args: &EngineArgs, max_batch: Option<u32>) -> Result<Engine> {
    let engine = Engine::new(
        model,
        &EngineConfig {
            device: args.device,
            threads: cpu_threads(args.threads),
            precision: args.precision,
            max_batch: max_batch.map_or(0, |n| n as usize),
            ..Default::default()
        },
    )?;
    tracing::info!(device = %engine.device_name(), "engine ready");
    Ok(engine)
}

/// The batch policy for `analyzer`: `--max-batch`, else 16 on the CPU and the engine's
/// default on a GPU (4096).
fn batch_policy(a: &StreamArgs, analyzer: &Analyzer) -> BatchPolicy {
    let default = match analyzer.engine() {
        Some(e) if !e.device_name().starts_with("cpu") => e.max_batch(),
        _ => DEFAULT_MAX_BATCH,
    };
    BatchPolicy {
        max_batch: a.max_batch.map_or(default, |n| n as usize),
        max_wait: Duration::from_millis(a.max_wait_ms),
    }
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

fn require_model<'a>(
    engine: &'a EngineArgs,
    fallback: Option<&'a PathBuf>,
    config: Option<&Path>,
) -> Result<&'a Path> {
    engine
        .model
        .as_deref()
        .or(fallback.map(|p| p.as_path()))
        .ok_or_else(|| match config {
            Some(c) => PipelineError::usage(
                format!("no model given and {} sets none", c.display()),
                format!(
                    "pass --model path/to/movinet_*_stream*.tflite, or add `model = \"path/to/model.tflite\"` to {} (relative to that file)",
                    c.display()
                ),
            ),
            None => PipelineError::usage(
                "no model given",
                "pass --model path/to/movinet_*_stream*.tflite",
            ),
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
    a.clip.check_unused()?;
    let (specs, bad_sources) = parse_sources(&a.sources)?;
    if specs.is_empty() {
        return Ok(Outcome {
            failed_streams: bad_sources,
            ..Default::default()
        });
    }
    if a.stream.duration.is_none() {
        if let Some(endless) = specs.iter().find(|s| s.is_endless()) {
            let hint = match endless.kind {
                SourceKind::Test { .. } => "pass --duration SECONDS or num-buffers=N (test:…,num-buffers=150), or use `vigil watch`",
                _ => "pass --duration SECONDS, or use `vigil watch` to run until Ctrl-C",
            };
            return Err(PipelineError::usage(
                format!(
                    "{} is a live source that never ends, and classify runs its sources to their end",
                    endless.shown
                ),
                hint,
            ));
        }
    }
    let fixtures = specs
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Fixture { .. }))
        .count();
    if fixtures > 0 && specs.len() > 1 {
        return Err(PipelineError::usage(
            "a fixture cannot be mixed with other sources",
            "classify one .safetensors fixture at a time",
        ));
    }
    if let SourceKind::Fixture { path } = &specs[0].kind {
        if a.clip.model().is_some() {
            let (mut w, target) = open_writer(&a.output)?;
            return clip::classify_reference(
                path,
                &a.clip,
                cpu_threads(a.engine.threads),
                a.engine.device,
                &mut *w,
                &target,
            );
        }
        let model = load_model(require_model(&a.engine, None, None)?)?;
        let labels = load_labels(a.output.labels.as_deref(), model.classes())?;
        let (mut out, _) = open_output(&a.output, Format::Jsonl, labels)?;
        return classify_fixture(path, model, &a.engine, &mut out);
    }
    let chosen = Chosen::pick(&a.engine, &a.clip, None)?;
    let labels = chosen.labels(a.output.labels.as_deref())?;
    let (mut out, _) = open_output(&a.output, Format::Jsonl, labels.clone())?;
    chosen.announce(&mut out)?;
    let rate = a.stream.fps.unwrap_or(chosen.default_rate());
    let names = unique_names(specs.iter().map(|s| s.default_name()));
    let setups = specs
        .into_iter()
        .zip(names)
        .map(|(source, name)| {
            let mut options = stream_options(&a.stream, chosen.frame_size(), rate);
            options.reconnect_on_eos = false;
            options.retry_initial = false;
            StreamSetup {
                name,
                source,
                options,
                events: None,
            }
        })
        .collect();
    let store = chosen.store_plan(&a.clip, &a.store)?;
    let analyzer = chosen.into_analyzer(&a.engine, a.stream.max_batch)?;
    let mode = RunMode {
        labels_out: true,
        logits: a.output.logits,
        stats_interval: None,
        duration: a.stream.duration,
        partial_is_failure: true,
        top_k: a.output.top as usize,
        store,
    };
    let batch = batch_policy(&a.stream, &analyzer);
    let mut outcome = run_streams(analyzer, labels, batch, setups, out, Vec::new(), &mode)?;
    outcome.failed_streams += bad_sources;
    Ok(outcome)
}

/// The analyzer a classify/watch run uses, chosen (and, for CLIP, loaded with its
/// prompts) before its streams are set up.
enum Chosen {
    Movinet(Arc<Model>),
    Clip(Box<Analyzer>),
}

impl Chosen {
    /// `--model` (or the config's `model`), or `--clip`/`--xclip` with the prompts.
    fn pick(
        engine: &EngineArgs,
        clip: &ClipArgs,
        config: Option<(&Path, &WatchConfig)>,
    ) -> Result<Chosen> {
        if clip.model().is_some() {
            let labels = clip::prompts(clip, None)?;
            let a = clip::build_analyzer(clip, labels, cpu_threads(engine.threads), engine.device)?;
            return Ok(Chosen::Clip(Box::new(a)));
        }
        let model_path = require_model(
            engine,
            config.and_then(|(_, c)| c.model.as_ref()),
            config.map(|(p, _)| p),
        )?;
        Ok(Chosen::Movinet(load_model(model_path)?))
    }

    fn frame_size(&self) -> usize {
        match self {
            Chosen::Movinet(m) => m.input_size(),
            Chosen::Clip(a) => a.frame_fit().size,
        }
    }

    fn default_rate(&self) -> Rate {
        Rate::Fps(match self {
            Chosen::Movinet(m) => m.default_fps(),
            Chosen::Clip(a) => a.info().default_fps,
        })
    }

    /// Names of the outputs: the label file's (MoViNet), the prompts (CLIP).
    fn labels(&self, label_file: Option<&Path>) -> Result<Labels> {
        match self {
            Chosen::Movinet(m) => load_labels(label_file, m.classes()),
            Chosen::Clip(a) => {
                if label_file.is_some() {
                    return Err(PipelineError::usage(
                        "--labels names a MoViNet model's classes; with --clip/--xclip the labels are the prompts",
                        "drop --labels (or `labels` in the config)",
                    ));
                }
                a.labels()
                    .ok_or_else(|| PipelineError::Internal("a CLIP analyzer without labels".into()))
            }
        }
    }

    /// The labels events may be restricted to (not background prompts).
    fn event_labels(&self, labels: &Labels) -> Labels {
        match self {
            Chosen::Movinet(_) => labels.clone(),
            Chosen::Clip(a) => Labels::from_names(
                (0..a.info().reported)
                    .map(|i| labels.name(i).to_string())
                    .collect(),
            ),
        }
    }

    /// CLIP: a first line describing the model (and its warning); scores over the label
    /// prompts only.
    fn announce(&self, out: &mut Output) -> Result<()> {
        if let Chosen::Clip(a) = self {
            let info = a.info();
            out.set_reported(info.reported);
            out.analyzer(&info)?;
        }
        Ok(())
    }

    /// Where windows are stored (CLIP family, unless `--no-store`).
    fn store_plan(&self, clip: &ClipArgs, store: &StoreArgs) -> Result<Option<StorePlan>> {
        let (Chosen::Clip(_), Some((dir, kind))) = (self, clip.model()) else {
            return Ok(None);
        };
        if store.no_store {
            return Ok(None);
        }
        let kind = match kind {
            clip::ClipKind::Clip => "clip",
            clip::ClipKind::XClip => "xclip",
        };
        Ok(Some(StorePlan {
            dir: store.data_dir.clone(),
            snapshots: store.snapshots,
            model_key: crate::search::model_key(dir, kind)?,
        }))
    }

    fn into_analyzer(self, engine: &EngineArgs, max_batch: Option<u32>) -> Result<Analyzer> {
        match self {
            Chosen::Movinet(m) => Ok(Analyzer::movinet(make_engine_for(m, engine, max_batch)?)),
            Chosen::Clip(a) => Ok(*a),
        }
    }
}

/// `--out FILE` or stdout as a plain writer, and its name for errors.
fn open_writer(args: &OutputArgs) -> Result<(Box<dyn Write + Send>, String)> {
    match &args.out {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|source| PipelineError::Output {
                target: p.display().to_string(),
                source,
            })?;
            Ok((
                Box::new(std::io::BufWriter::new(f)),
                p.display().to_string(),
            ))
        }
        None => Ok((Box::new(std::io::stdout()), "stdout".into())),
    }
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

/// Class indices of `names` in `labels`; `what` says where they came from.
fn resolve_labels(
    names: &[String],
    labels: &Labels,
    bad: impl Fn(String) -> PipelineError,
) -> Result<Vec<usize>> {
    names
        .iter()
        .map(|n| {
            let n = n.trim();
            (0..labels.len())
                .find(|&i| labels.name(i) == n)
                .ok_or_else(|| bad(format!("label {n:?} is not in the label file")))
        })
        .collect()
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
    let clip_args = match &config {
        Some((_, cfg)) => a.clip.with_config(cfg, a.engine.model.is_some()),
        None => a.clip.clone(),
    };
    clip_args.check_unused()?;
    let (cli_specs, bad_sources) = parse_sources(&a.sources)?;
    let chosen = Chosen::pick(
        &a.engine,
        &clip_args,
        config.as_ref().map(|(p, c)| (p.as_path(), c)),
    )?;
    let labels_path = a.output.labels.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|(_, c)| c.labels.clone())
            .filter(|_| matches!(chosen, Chosen::Movinet(_)))
    });
    let labels = chosen.labels(labels_path.as_deref())?;
    let event_labels = chosen.event_labels(&labels);
    let default_rate = a.stream.fps.unwrap_or(chosen.default_rate());
    let cli_classes = if a.event_labels.is_empty() {
        None
    } else {
        Some(resolve_labels(&a.event_labels, &event_labels, |why| {
            PipelineError::usage(
                format!("--event-labels: {why}"),
                "use labels exactly as written in the label file (and pass --labels), or a --prompt's text",
            )
        })?)
    };
    let default_events = EventConfig {
        enter: a.enter,
        exit: a.exit,
        alpha: a.smoothing,
        min_duration: a.min_duration,
        classes: cli_classes.clone(),
    };
    default_events.validate().map_err(|why| {
        PipelineError::usage(why, "adjust --enter/--exit/--smoothing/--min-duration")
    })?;
    let size = chosen.frame_size();

    let mut setups = Vec::new();
    // streams whose source cannot even be parsed: reported, the others run
    let mut unusable: Vec<(String, String, String)> = Vec::new();
    if let Some((path, cfg)) = &config {
        for s in &cfg.streams {
            let classes = match &s.labels {
                None => cli_classes.clone(),
                Some(names) => Some(resolve_labels(names, &event_labels, |why| {
                    PipelineError::Config {
                        path: path.clone(),
                        why: format!("stream {:?}: {why}", s.name),
                        hint: "use labels exactly as written in the label file (and pass --labels), or a prompt's text"
                            .into(),
                    }
                })?),
            };
            let ev = EventConfig {
                enter: s.enter.unwrap_or(a.enter),
                exit: s.exit.unwrap_or(a.exit),
                alpha: s.smoothing.unwrap_or(a.smoothing),
                min_duration: s.min_duration().unwrap_or(a.min_duration),
                classes,
            };
            ev.validate().map_err(|why| PipelineError::Config {
                path: path.clone(),
                why: format!("stream {:?}: {why}", s.name),
                hint: "fix enter/exit/smoothing/min_duration".into(),
            })?;
            let rate = s.rate(path)?.unwrap_or(default_rate);
            match SourceSpec::parse(&s.uri) {
                Ok(source) => setups.push(StreamSetup {
                    name: s.name.clone(),
                    source,
                    options: stream_options(&a.stream, size, rate),
                    events: Some(ev),
                }),
                Err(e) => {
                    let why = format!("config {}: stream {:?}: {e}", path.display(), s.name);
                    unusable.push((s.name.clone(), crate::redact::redact(&s.uri), why));
                }
            }
        }
    }
    let taken: Vec<String> = setups.iter().map(|p| p.name.clone()).collect();
    let names = unique_names(
        taken
            .iter()
            .cloned()
            .chain(cli_specs.iter().map(|s| s.default_name())),
    );
    for (source, name) in cli_specs
        .into_iter()
        .zip(names.into_iter().skip(taken.len()))
    {
        setups.push(StreamSetup {
            name,
            source,
            options: stream_options(&a.stream, size, default_rate),
            events: Some(default_events.clone()),
        });
    }
    for s in &mut setups {
        s.options.reconnect_on_eos = true;
        s.options.retry_initial = true;
    }
    let tty_default = if a.output.out.is_none() && std::io::stdout().is_terminal() {
        Format::Text
    } else {
        Format::Jsonl
    };
    let (mut out, tty) = open_output(&a.output, tty_default, labels.clone())?;
    chosen.announce(&mut out)?;
    if tty && !a.events_only {
        let names: Vec<String> = setups.iter().map(|s| s.name.clone()).collect();
        out.live(&names, None);
    }
    let store = chosen.store_plan(&clip_args, &a.store)?;
    let analyzer = chosen.into_analyzer(&a.engine, a.stream.max_batch)?;
    let mode = RunMode {
        labels_out: !a.events_only,
        logits: a.output.logits,
        stats_interval: Some(a.stats_interval).filter(|d| !d.is_zero()),
        duration: a.stream.duration,
        partial_is_failure: false,
        top_k: a.output.top as usize,
        store,
    };
    let batch = batch_policy(&a.stream, &analyzer);
    let mut outcome = run_streams(analyzer, labels, batch, setups, out, unusable, &mode)?;
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
                say(&e.to_string());
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
    o.realtime = a.realtime;
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

fn bench(a: &BenchArgs) -> Result<Outcome> {
    let threads = match cpu_threads(a.engine.threads) {
        0 => cores(),
        n => n,
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
        let cfg = ingest_bench::IngestConfig {
            seconds: a.seconds,
            rate,
            size,
            aspect: Aspect::Squash,
        };
        let stop = streams::install_signals()?;
        let report = ingest_bench::run(&spec, &cfg, engine, stop)?;
        print_report(&report, a.json)?;
        return Ok(Outcome::default());
    }
    if a.streams == 0 {
        return Err(PipelineError::usage(
            "--streams 0",
            "bench at least one stream",
        ));
    }
    let model_path = require_model(&a.engine, None, None)?;
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
    use crate::events::DEFAULT_MIN_DURATION;

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
        assert!(Cli::try_parse_from(["vigil", "classify", "a.mp4", "--top", "21"]).is_err());
    }

    #[test]
    fn max_batch_goes_to_thousands_for_gpus() {
        let c = Cli::try_parse_from(["vigil", "watch", "test:", "--max-batch", "4096"]).unwrap();
        let Command::Watch(a) = c.command else {
            panic!()
        };
        assert_eq!(a.stream.max_batch, Some(4096));
        assert!(Cli::try_parse_from(["vigil", "watch", "test:", "--max-batch", "0"]).is_err());
    }

    #[test]
    fn watch_event_flags_parse() {
        let c = Cli::try_parse_from([
            "vigil",
            "watch",
            "test:",
            "--event-labels",
            "arm wrestling,archery",
            "--event-labels",
            "abseiling",
            "--min-duration",
            "0.5",
        ])
        .unwrap();
        let Command::Watch(a) = c.command else {
            panic!()
        };
        assert_eq!(a.event_labels, ["arm wrestling", "archery", "abseiling"]);
        assert_eq!(a.min_duration, Duration::from_millis(500));
        assert_eq!(a.stats_interval, Duration::from_secs(10));
        let d = Cli::try_parse_from(["vigil", "watch", "test:"]).unwrap();
        let Command::Watch(d) = d.command else {
            panic!()
        };
        assert_eq!(d.min_duration, DEFAULT_MIN_DURATION);
    }

    #[test]
    fn names_unique() {
        assert_eq!(
            unique_names(["a", "a", "b", "a"].into_iter().map(String::from)),
            vec!["a", "a#2", "b", "a#3"]
        );
    }
}
