//! [`ZeroShot`]: CLIP zero-shot labels on streams (CLIP4Clip's parameter-free mean
//! pooling). Per stream a [`ZeroShotStream`]: a ring of the last `window` seconds of unit
//! frame embeddings whose mean is scored by cosine × `logit_scale` against the prompts
//! (labels, then background prompts that compete in the softmax but are never reported).
//!
//! A step preprocesses the batch's frames (already centre-cropped and scaled to the image
//! size by GStreamer, so this is only rescale + normalise) into one `pixel_values` buffer,
//! encodes them in one call on the model's thread pool, and pushes each embedding into its
//! stream's window. Every frame gives a row of prompt logits; a window is flagged for the
//! search store when it does not overlap the last one stored for its stream, so stored
//! windows tile the stream's time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vigil_engine::clip::preprocess::PreprocessWorkspace;
use vigil_engine::clip::{ClipModel, ClipWorkspace, PromptSet, RgbFrame, ZeroShotStream};
use vigil_engine::Labels;

use super::{random_weights_warning, AnalyzerInfo, ClosedWindow, Session, Slots, StepOutput};
use super::{Key, WindowOut};
use crate::frame_ring::Frame;
use crate::{PipelineError, Result};

/// Default length of the window a stream's scores cover.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(4);
/// CLIP's default sampling rate per stream (frames per second).
pub const DEFAULT_FPS: f64 = 1.0;
/// Most frames a window holds (a `native`-rate stream: the oldest go first).
const MAX_WINDOW_FRAMES: usize = 1024;

/// How to run CLIP zero-shot labels.
#[derive(Debug, Clone)]
pub struct ZeroShotConfig {
    /// The prompts reported as labels.
    pub labels: Vec<String>,
    /// Prompts that compete in the softmax but are never reported ("an empty room").
    pub background: Vec<String>,
    /// Stream time the mean embedding covers.
    pub window: Duration,
    /// Threads of the encoders' pool (0: one per core).
    pub threads: usize,
}

impl Default for ZeroShotConfig {
    fn default() -> Self {
        ZeroShotConfig {
            labels: Vec::new(),
            background: Vec::new(),
            window: DEFAULT_WINDOW,
            threads: 0,
        }
    }
}

/// One stream's window and what the store has seen of it.
struct Lane {
    stream: ZeroShotStream,
    /// stream time (s) of the newest frame of the last stored window
    stored_end: Option<f64>,
    /// the newest frame's time and the gap to the one before (one frame's share)
    last_t: Option<f64>,
    dt: f64,
    /// the last window scored (what closing stores if the store has not seen it)
    last: Option<WindowOut>,
    last_mean: Vec<f32>,
}

/// CLIP zero-shot labels (see the module docs).
pub struct ZeroShot {
    model: Arc<ClipModel>,
    prompts: PromptSet,
    labels: Labels,
    window: f64,
    lanes: Slots<Lane>,
    ws: ClipWorkspace,
    pre: PreprocessWorkspace,
    pixels: Vec<f32>,
    description: String,
    warning: Option<String>,
}

impl ZeroShot {
    /// Load the CLIP folder `dir` and embed the prompts once.
    pub fn load(dir: &Path, cfg: &ZeroShotConfig) -> Result<ZeroShot> {
        let model = ClipModel::load(dir, cfg.threads).map_err(|source| PipelineError::Clip {
            path: dir.to_path_buf(),
            source,
        })?;
        ZeroShot::new(model, cfg)
    }

    /// Run `model` (loaded or random) with `cfg`'s prompts.
    pub fn new(model: ClipModel, cfg: &ZeroShotConfig) -> Result<ZeroShot> {
        let window = cfg.window.as_secs_f64();
        if !(window > 0.0 && window <= 3600.0) {
            return Err(PipelineError::usage(
                format!("window of {window} s"),
                "pass --window SECONDS from more than 0 to 3600",
            ));
        }
        let prompts = model
            .prompt_set(&cfg.labels, &cfg.background)
            .map_err(prompt_error)?;
        let labels = Labels::from_names(prompts.texts.clone());
        let c = &model.config;
        let description = format!(
            "CLIP zero-shot {} (ViT {}x{} patch {}, width {}, {} layers; joint space {}), {} prompts{}, {} s windows (mean pooling), cpu ({} threads)",
            model.dir.display(),
            c.vision.image_size,
            c.vision.image_size,
            c.vision.patch_size,
            c.vision.hidden,
            c.vision.layers,
            c.projection_dim,
            cfg.labels.len(),
            if cfg.background.is_empty() {
                String::new()
            } else {
                format!(" + {} background", cfg.background.len())
            },
            window,
            model.threads()
        );
        let warning = random_weights_warning(&model.dir, c);
        Ok(ZeroShot {
            prompts,
            labels,
            window,
            lanes: Slots::default(),
            ws: ClipWorkspace::default(),
            pre: PreprocessWorkspace::default(),
            pixels: Vec::new(),
            description,
            warning,
            model: Arc::new(model),
        })
    }

    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The model, shared (e.g. to embed search queries while the streams run).
    pub fn shared_model(&self) -> Arc<ClipModel> {
        self.model.clone()
    }

    /// Prompt texts, labels then background.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    pub fn image_size(&self) -> usize {
        self.model.config.vision.image_size
    }

    pub fn embed_dim(&self) -> usize {
        self.model.embed_dim()
    }

    pub fn threads(&self) -> usize {
        self.model.threads()
    }

    pub(crate) fn info(&self) -> AnalyzerInfo {
        AnalyzerInfo {
            kind: "clip",
            description: self.description.clone(),
            warning: self.warning.clone(),
            outputs: self.prompts.len(),
            reported: self.prompts.labels,
            default_fps: DEFAULT_FPS,
            embed_dim: self.embed_dim(),
        }
    }

    pub(crate) fn session_count(&self) -> usize {
        self.lanes.len()
    }

    /// A stream sampled at up to `fps` frames per second (`None`: its native rate).
    pub(crate) fn open_session(&mut self, fps: Option<f64>) -> u32 {
        let fps = fps.unwrap_or(30.0).max(DEFAULT_FPS);
        let capacity = ((self.window * fps).ceil() as usize + 2).min(MAX_WINDOW_FRAMES);
        self.lanes.insert(Lane {
            stream: ZeroShotStream::new(&self.prompts, capacity, self.window),
            stored_end: None,
            last_t: None,
            dt: 0.0,
            last: None,
            last_mean: vec![0.0; self.embed_dim()],
        })
    }

    pub(crate) fn reset_session(&mut self, slot: usize) -> Result<()> {
        let lane = self.lanes.get_mut(slot)?;
        lane.stream.reset();
        lane.stored_end = None;
        lane.last_t = None;
        lane.last = None;
        Ok(())
    }

    /// Close a stream: its last window is stored when no window was, or when at least half
    /// a window of its frames came after the last one stored (the tail of a file).
    pub(crate) fn close_session(&mut self, slot: usize) -> Result<Option<ClosedWindow>> {
        let lane = self.lanes.remove(slot)?;
        let half = self.window / 2.0;
        Ok(lane.last.and_then(|w| {
            let end = w.end_ns as f64 / 1e9;
            lane.stored_end
                .is_none_or(|e| end - e >= half)
                .then_some(ClosedWindow {
                    window: WindowOut { store: true, ..w },
                    embedding: lane.last_mean,
                })
        }))
    }

    pub(crate) fn step(
        &mut self,
        sessions: &[Session],
        frames: &[Frame],
        out: &mut StepOutput,
    ) -> Result<()> {
        let n = frames.len();
        let per = self.model.preprocessor.output_len();
        let size = self.image_size();
        if self.pixels.len() < n * per {
            self.pixels.resize(n * per, 0.0); // grows to the largest batch once
        }
        for (f, px) in frames.iter().zip(self.pixels.chunks_exact_mut(per)) {
            let rgb = RgbFrame::packed(f.data(), size, size);
            self.model
                .preprocessor
                .run(rgb, &mut self.pre, px)
                .map_err(PipelineError::Engine)?;
        }
        let dim = self.embed_dim();
        let width = out.width;
        let emb = self
            .model
            .encode_pixels(&self.pixels[..n * per], n, &mut self.ws)
            .map_err(PipelineError::Engine)?;
        for (k, (s, f)) in sessions.iter().zip(frames).enumerate() {
            let Key::Slot(slot) = s.0 else {
                return Err(super::wrong_session());
            };
            let lane = self.lanes.get_mut(slot as usize)?;
            let t = f.pts_ns as f64 / 1e9;
            match lane.last_t {
                // time went back without a restart (a source resetting its clock)
                Some(prev) if t < prev => {
                    lane.stream.reset();
                    lane.stored_end = None;
                    lane.dt = 0.0;
                }
                Some(prev) if t > prev => lane.dt = t - prev,
                _ => {}
            }
            lane.last_t = Some(t);
            let Some(w) = lane
                .stream
                .push(t, &emb.embeds[k * dim..(k + 1) * dim], &self.prompts)
            else {
                continue;
            };
            out.logits[k * width..(k + 1) * width].copy_from_slice(w.logits);
            out.embeds[k * dim..(k + 1) * dim].copy_from_slice(w.embedding);
            lane.last_mean.copy_from_slice(w.embedding);
            out.scored[k] = true;
            // the time the window covers, each frame counting for its own interval
            let covered = w.span.end - w.span.start + lane.dt;
            let store =
                covered >= self.window * 0.999 && lane.stored_end.is_none_or(|e| w.span.start > e);
            if store {
                lane.stored_end = Some(w.span.end);
            }
            let window = WindowOut {
                start_ns: (w.span.start * 1e9).round() as u64,
                end_ns: (w.span.end * 1e9).round() as u64,
                frames: w.span.frames,
                store,
            };
            lane.last = Some(window);
            out.windows[k] = Some(window);
        }
        Ok(())
    }
}

/// A prompt set the model refused (no prompt, an empty one) is the user's to fix.
pub(crate) fn prompt_error(e: vigil_engine::EngineError) -> PipelineError {
    match e {
        vigil_engine::EngineError::Config(why) => PipelineError::usage(
            format!("prompts: {why}"),
            "pass --prompt TEXT (repeatable) or --prompts FILE (one prompt per line)",
        ),
        other => PipelineError::Engine(other),
    }
}
