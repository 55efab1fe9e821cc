//! The CLIP side of `classify` and `watch`: [`ClipArgs`] (`--clip`/`--xclip`, prompts,
//! background prompts, window, stride), [`StoreArgs`] (where window embeddings go for
//! `vigil search`), turning them into an [`Analyzer`], and [`classify_reference`] — a
//! reference file of `gen_clip_fixtures.py`'s format fed through the model from its
//! `pixel_values`, one JSON line per image or clip (checkable against `transformers`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use vigil_engine::clip::{ClipModel, ClipWorkspace, ReferenceFile, XClipModel, XClipWorkspace};
use vigil_engine::{Device, EngineError};

use super::{parse_seconds, say, Outcome};
use crate::analyzer::{Analyzer, VideoClips, VideoConfig, ZeroShot, ZeroShotConfig};
use crate::serve::config::ClipFileSettings;
use crate::{PipelineError, Result};

/// Open-vocabulary labels: a CLIP or X-CLIP folder and the prompts to score.
#[derive(Debug, Clone, Args, Default)]
pub struct ClipArgs {
    /// Hugging Face CLIP folder (config.json + model.safetensors, e.g. a local copy of
    /// openai/clip-vit-base-patch32): zero-shot labels from the prompts, scored over
    /// windows of frames.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["xclip", "model"])]
    pub clip: Option<PathBuf>,
    /// Hugging Face X-CLIP folder (e.g. microsoft/xclip-base-patch32): video labels from
    /// the prompts, scored over sliding clips.
    #[arg(long, value_name = "DIR", conflicts_with = "model")]
    pub xclip: Option<PathBuf>,
    /// A prompt to score, e.g. "a person climbing a fence" (repeat for more).
    #[arg(long = "prompt", value_name = "TEXT")]
    pub prompt: Vec<String>,
    /// A file of prompts, one per line (blank lines and lines starting with # skipped).
    #[arg(long = "prompts", value_name = "FILE")]
    pub prompts_file: Option<PathBuf>,
    /// A background prompt ("an empty parking lot"): competes for probability, never
    /// reported as a label (repeat for more).
    #[arg(long, value_name = "TEXT")]
    pub background: Vec<String>,
    /// Seconds of frames one CLIP score averages (CLIP4Clip mean pooling; default 4).
    #[arg(long, value_parser = parse_seconds, value_name = "SECONDS")]
    pub window: Option<Duration>,
    /// X-CLIP: new frames between clips (default: half a clip).
    #[arg(long, value_name = "FRAMES", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub stride: Option<u32>,
}

/// Which open-vocabulary model a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipKind {
    Clip,
    XClip,
}

impl ClipArgs {
    /// The model folder and its kind, if `--clip` or `--xclip` was given.
    pub fn model(&self) -> Option<(&Path, ClipKind)> {
        match (&self.clip, &self.xclip) {
            (Some(d), _) => Some((d, ClipKind::Clip)),
            (None, Some(d)) => Some((d, ClipKind::XClip)),
            (None, None) => None,
        }
    }

    /// Fill what the command line left out from `cameras.toml` (the command line wins;
    /// `--model` on the command line keeps the config's CLIP folder out).
    pub fn with_config(&self, cfg: &crate::config::WatchConfig, cli_model: bool) -> ClipArgs {
        self.with_file(
            &ClipFileSettings {
                clip: cfg.clip.clone(),
                xclip: cfg.xclip.clone(),
                prompts: cfg.prompts.clone(),
                prompts_file: cfg.prompts_file.clone(),
                background: cfg.background.clone(),
                window: cfg.window,
                stride: cfg.stride,
            },
            cli_model,
        )
    }

    /// Fill what the command line left out from a config file's settings (`cameras.toml`
    /// or `vigil.toml`; the command line wins, `--model` keeps the file's folder out).
    pub fn with_file(&self, f: &ClipFileSettings, cli_model: bool) -> ClipArgs {
        let mut c = self.clone();
        if c.model().is_none() && !cli_model {
            c.clip = f.clip.clone();
            c.xclip = f.xclip.clone();
        }
        if c.prompt.is_empty() && c.prompts_file.is_none() {
            c.prompt = f.prompts.clone();
            c.prompts_file = f.prompts_file.clone();
        }
        if c.background.is_empty() {
            c.background = f.background.clone();
        }
        c.window = c.window.or(f.window.map(Duration::from_secs_f64));
        c.stride = c.stride.or(f.stride);
        c
    }

    /// Prompts given without a model to score them.
    pub fn check_unused(&self) -> Result<()> {
        if self.model().is_none()
            && (!self.prompt.is_empty()
                || self.prompts_file.is_some()
                || !self.background.is_empty())
        {
            return Err(PipelineError::usage(
                "prompts given without a model to score them",
                "add --clip DIR (a Hugging Face CLIP folder) or --xclip DIR",
            ));
        }
        Ok(())
    }
}

/// Where `classify`/`watch` keep window embeddings for `vigil search`.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Data directory: window embeddings (SQLite `vigil.db`) and snapshots for `vigil search`.
    #[arg(long, value_name = "DIR", default_value = "vigil-data")]
    pub data_dir: PathBuf,
    /// Do not store window embeddings.
    #[arg(long)]
    pub no_store: bool,
    /// Also keep a JPEG of each stored window's newest frame (shown by `vigil search`).
    #[arg(long)]
    pub snapshots: bool,
}

/// The prompts of a file: one per line, trimmed; blank lines and lines starting with `#`
/// skipped (as `gen_clip_fixtures.py` reads them).
pub fn read_prompt_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PipelineError::usage(
            format!("cannot read prompts file {}: {e}", path.display()),
            "pass a UTF-8 text file with one prompt per line",
        )
    })?;
    let prompts: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if prompts.is_empty() {
        return Err(PipelineError::usage(
            format!("prompts file {} has no prompt", path.display()),
            "write one prompt per line",
        ));
    }
    Ok(prompts)
}

/// `--prompt`s then the `--prompts` file's lines; `fallback` when neither was given.
pub fn prompts(args: &ClipArgs, fallback: Option<Vec<String>>) -> Result<Vec<String>> {
    let mut p = args.prompt.clone();
    if let Some(f) = &args.prompts_file {
        p.extend(read_prompt_file(f)?);
    }
    if p.is_empty() {
        if let Some(f) = fallback {
            return Ok(f);
        }
        return Err(PipelineError::usage(
            "no prompts to score",
            "pass --prompt TEXT (repeatable) or --prompts FILE (one prompt per line)",
        ));
    }
    Ok(p)
}

/// CLIP and X-CLIP run on the CPU backend (their CUDA kernels are not written yet).
fn check_device(device: Device) -> Result<()> {
    if device == Device::Cuda {
        return Err(PipelineError::usage(
            "--clip/--xclip run on the CPU only for now",
            "drop --device cuda (or use --device auto)",
        ));
    }
    Ok(())
}

/// The analyzer `args` ask for, with `labels` (and `args.background`) as prompts.
pub fn build_analyzer(
    args: &ClipArgs,
    labels: Vec<String>,
    threads: usize,
    device: Device,
) -> Result<Analyzer> {
    check_device(device)?;
    let Some((dir, kind)) = args.model() else {
        return Err(PipelineError::Internal("no CLIP model given".into()));
    };
    let analyzer = match kind {
        ClipKind::Clip => Analyzer::ZeroShot(Box::new(ZeroShot::load(
            dir,
            &ZeroShotConfig {
                labels,
                background: args.background.clone(),
                window: args
                    .window
                    .unwrap_or(crate::analyzer::zero_shot::DEFAULT_WINDOW),
                threads,
            },
        )?)),
        ClipKind::XClip => Analyzer::VideoClips(Box::new(VideoClips::load(
            dir,
            &VideoConfig {
                labels,
                background: args.background.clone(),
                stride: args.stride.map_or(0, |s| s as usize),
                threads,
            },
        )?)),
    };
    let info = analyzer.info();
    tracing::info!(analyzer = info.kind, "{}", info.description);
    if let Some(w) = &info.warning {
        say(&format!("warning: {w}"));
    }
    Ok(analyzer)
}

fn reference_error(path: &Path) -> impl Fn(EngineError) -> PipelineError + '_ {
    move |source| PipelineError::Reference {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize)]
struct ImageLine<'a> {
    frame: usize,
    image_embeds: &'a [f32],
    logits: &'a [f32],
}

#[derive(Serialize)]
struct ClipLine<'a> {
    clip: usize,
    video_embeds: &'a [f32],
    logits: &'a [f32],
}

/// `vigil classify REFERENCE.safetensors --clip DIR|--xclip DIR [--prompts FILE]`: the
/// file's `pixel_values` (not its frames) through the model, the prompts tokenized here;
/// one JSON line per image (`{"frame","image_embeds","logits"}`, logits =
/// `logits_per_image` row) or per clip (`{"clip","video_embeds","logits"}`, logits =
/// `logits_per_video` row). Without prompts, the file's own (`__metadata__.prompts`).
pub fn classify_reference(
    path: &Path,
    args: &ClipArgs,
    threads: usize,
    device: Device,
    out: &mut dyn Write,
    target: &str,
) -> Result<Outcome> {
    check_device(device)?;
    let Some((dir, kind)) = args.model() else {
        return Err(PipelineError::Internal("no CLIP model given".into()));
    };
    let bad = reference_error(path);
    let reference = ReferenceFile::load(path).map_err(&bad)?;
    let labels = prompts(args, reference.prompts())?;
    let (pix, shape) = reference.f32("pixel_values").map_err(&bad)?;
    let shape = shape.to_vec();
    let load_err = |source| PipelineError::Clip {
        path: dir.to_path_buf(),
        source,
    };
    let span = tracing::info_span!("reference", path = %path.display());
    let _enter = span.enter();
    let write_err = |source| PipelineError::Output {
        target: target.to_string(),
        source,
    };
    match kind {
        ClipKind::Clip => {
            let model = ClipModel::load(dir, threads).map_err(load_err)?;
            let s = model.config.vision.image_size;
            if shape.len() != 4 || shape[1..] != [3, s, s] {
                return Err(bad(EngineError::ClipInput(format!(
                    "pixel_values has shape {shape:?}; this CLIP model takes [N, 3, {s}, {s}]"
                ))));
            }
            let set = model
                .prompt_set(&labels, &args.background)
                .map_err(crate::analyzer::zero_shot::prompt_error)?;
            let n = shape[0];
            let mut ws = ClipWorkspace::default();
            let img = model.encode_pixels(pix, n, &mut ws).map_err(&bad)?;
            let (d, p) = (model.embed_dim(), set.len());
            let mut logits = vec![0f32; n * p];
            model.logits(img.embeds, &set.embeds, &mut logits);
            for i in 0..n {
                let line = ImageLine {
                    frame: i,
                    image_embeds: &img.embeds[i * d..(i + 1) * d],
                    logits: &logits[i * p..(i + 1) * p],
                };
                write_line(out, &line).map_err(write_err)?;
            }
        }
        ClipKind::XClip => {
            let model = XClipModel::load(dir, threads).map_err(load_err)?;
            let (s, f) = (model.config.vision.image_size, model.num_frames());
            if shape.len() != 5 || shape[1..] != [f, 3, s, s] {
                return Err(bad(EngineError::ClipInput(format!(
                    "pixel_values has shape {shape:?}; this X-CLIP model takes clips [T, {f}, 3, {s}, {s}]"
                ))));
            }
            let set = model
                .prompt_set(&labels, &args.background)
                .map_err(crate::analyzer::zero_shot::prompt_error)?;
            let (t, d, p) = (shape[0], model.embed_dim(), set.len());
            let mut ws = XClipWorkspace::default();
            let video = model
                .encode_pixels(pix, t, &mut ws)
                .map_err(&bad)?
                .video_embeds
                .to_vec();
            let (mut logits, mut probs) = (vec![0f32; t * p], vec![0f32; t * p]);
            model
                .score_clips(t, &set, &mut ws, &mut logits, &mut probs)
                .map_err(&bad)?;
            for i in 0..t {
                let line = ClipLine {
                    clip: i,
                    video_embeds: &video[i * d..(i + 1) * d],
                    logits: &logits[i * p..(i + 1) * p],
                };
                write_line(out, &line).map_err(write_err)?;
            }
        }
    }
    out.flush().map_err(write_err)?;
    Ok(Outcome::default())
}

fn write_line<T: Serialize>(out: &mut dyn Write, line: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}
