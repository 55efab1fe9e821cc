//! [`VideoClips`]: X-CLIP video labels on streams. Per stream a [`SlidingClip`]: the last
//! `num_frames` sampled frames, preprocessed on arrival, handed out as one clip every
//! `stride` frames. A step pushes each frame into its stream's clip; the clips due are
//! copied side by side into one `pixel_values` batch, encoded together (cross-frame
//! vision transformer, multi-frame integration) and scored against the prompts
//! conditioned on each clip (the video-specific prompt generator): a row of
//! `logits_per_video` for each stream whose clip was due, none for the others. Every
//! scored clip is a window for the search store (its video embedding).

use std::path::Path;
use std::sync::Arc;

use vigil_engine::clip::preprocess::PreprocessWorkspace;
use vigil_engine::clip::{RgbFrame, SlidingClip, VideoPromptSet, XClipModel, XClipWorkspace};
use vigil_engine::Labels;

use super::zero_shot::{prompt_error, DEFAULT_FPS};
use super::{random_weights_warning, AnalyzerInfo, ClosedWindow, Key, Session, Slots};
use super::{StepOutput, WindowOut};
use crate::frame_ring::Frame;
use crate::{PipelineError, Result};

/// How to run X-CLIP video labels.
#[derive(Debug, Clone, Default)]
pub struct VideoConfig {
    pub labels: Vec<String>,
    pub background: Vec<String>,
    /// New frames between clips (0: half a clip, so clips overlap by half).
    pub stride: usize,
    /// Threads of the encoders' pool (0: one per core).
    pub threads: usize,
}

struct Lane {
    clip: SlidingClip,
    pre: PreprocessWorkspace,
    last_t: Option<f64>,
}

/// X-CLIP video labels (see the module docs).
pub struct VideoClips {
    model: Arc<XClipModel>,
    prompts: VideoPromptSet,
    labels: Labels,
    stride: usize,
    lanes: Slots<Lane>,
    ws: XClipWorkspace,
    /// `[due clips, frames, 3, S, S]`
    pixels: Vec<f32>,
    /// (row, clip start s, clip end s) of the clips due this step
    due: Vec<(usize, f64, f64)>,
    logits: Vec<f32>,
    probs: Vec<f32>,
    video: Vec<f32>,
    description: String,
    warning: Option<String>,
}

impl VideoClips {
    /// Load the X-CLIP folder `dir` and project the prompts once.
    pub fn load(dir: &Path, cfg: &VideoConfig) -> Result<VideoClips> {
        let model = XClipModel::load(dir, cfg.threads).map_err(|source| PipelineError::Clip {
            path: dir.to_path_buf(),
            source,
        })?;
        VideoClips::new(model, cfg)
    }

    pub fn new(model: XClipModel, cfg: &VideoConfig) -> Result<VideoClips> {
        let frames = model.num_frames();
        let stride = match cfg.stride {
            0 => (frames / 2).max(1),
            s if s <= 1024 => s,
            s => {
                return Err(PipelineError::usage(
                    format!("--stride {s}"),
                    "pass a stride from 1 to 1024 frames",
                ))
            }
        };
        let prompts = model
            .prompt_set(&cfg.labels, &cfg.background)
            .map_err(prompt_error)?;
        let labels = Labels::from_names(prompts.texts.clone());
        let c = &model.config;
        let description = format!(
            "X-CLIP video {} (ViT {}x{} patch {}, width {}, {} layers; {} frames per clip, a clip every {stride} frames), {} prompts{}, cpu ({} threads)",
            model.dir.display(),
            c.vision.image_size,
            c.vision.image_size,
            c.vision.patch_size,
            c.vision.hidden,
            c.vision.layers,
            frames,
            cfg.labels.len(),
            if cfg.background.is_empty() {
                String::new()
            } else {
                format!(" + {} background", cfg.background.len())
            },
            model.threads()
        );
        let warning = random_weights_warning(&model.dir, c);
        Ok(VideoClips {
            prompts,
            labels,
            stride,
            lanes: Slots::default(),
            ws: XClipWorkspace::default(),
            pixels: Vec::new(),
            due: Vec::new(),
            logits: Vec::new(),
            probs: Vec::new(),
            video: Vec::new(),
            description,
            warning,
            model: Arc::new(model),
        })
    }

    pub fn model(&self) -> &XClipModel {
        &self.model
    }

    /// The model, shared (e.g. to embed search queries while the streams run).
    pub fn shared_model(&self) -> Arc<XClipModel> {
        self.model.clone()
    }

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

    /// Frames between clips.
    pub fn stride(&self) -> usize {
        self.stride
    }

    pub(crate) fn info(&self) -> AnalyzerInfo {
        AnalyzerInfo {
            kind: "xclip",
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

    pub(crate) fn open_session(&mut self) -> Result<u32> {
        let clip = SlidingClip::new(
            self.model.preprocessor.output_len(),
            self.model.num_frames(),
            self.stride,
        )
        .map_err(PipelineError::Engine)?;
        Ok(self.lanes.insert(Lane {
            clip,
            pre: PreprocessWorkspace::default(),
            last_t: None,
        }))
    }

    pub(crate) fn reset_session(&mut self, slot: usize) -> Result<()> {
        let lane = self.lanes.get_mut(slot)?;
        lane.clip.clear();
        lane.last_t = None;
        Ok(())
    }

    pub(crate) fn close_session(&mut self, slot: usize) -> Result<Option<ClosedWindow>> {
        self.lanes.remove(slot)?;
        Ok(None) // every scored clip was already a window; a partial clip is not one
    }

    pub(crate) fn step(
        &mut self,
        sessions: &[Session],
        frames: &[Frame],
        out: &mut StepOutput,
    ) -> Result<()> {
        let size = self.image_size();
        let fr = self.model.num_frames();
        let per = self.model.preprocessor.output_len() * fr;
        self.due.clear();
        for (k, (s, f)) in sessions.iter().zip(frames).enumerate() {
            let Key::Slot(slot) = s.0 else {
                return Err(super::wrong_session());
            };
            let lane = self.lanes.get_mut(slot as usize)?;
            let t = f.pts_ns as f64 / 1e9;
            if lane.last_t.is_some_and(|prev| t < prev) {
                lane.clip.clear(); // time went back without a restart
            }
            lane.last_t = Some(t);
            let rgb = RgbFrame::packed(f.data(), size, size);
            let due = lane
                .clip
                .push(&self.model.preprocessor, rgb, t, &mut lane.pre)
                .map_err(PipelineError::Engine)?;
            if !due {
                continue;
            }
            let c = self.due.len();
            if self.pixels.len() < (c + 1) * per {
                self.pixels.resize((c + 1) * per, 0.0); // grows to the largest batch once
            }
            if let Some((start, end)) = lane.clip.write_clip(&mut self.pixels[c * per..]) {
                self.due.push((k, start, end));
            }
        }
        let clips = self.due.len();
        if clips == 0 {
            return Ok(());
        }
        let (dim, count) = (self.embed_dim(), self.prompts.len());
        let v = self
            .model
            .encode_pixels(&self.pixels[..clips * per], clips, &mut self.ws)
            .map_err(PipelineError::Engine)?;
        if self.video.len() < clips * dim {
            self.video.resize(clips * dim, 0.0);
            self.logits.resize(clips * count, 0.0);
            self.probs.resize(clips * count, 0.0);
        }
        self.video[..clips * dim].copy_from_slice(&v.video_embeds[..clips * dim]);
        self.model
            .score_clips(
                clips,
                &self.prompts,
                &mut self.ws,
                &mut self.logits,
                &mut self.probs,
            )
            .map_err(PipelineError::Engine)?;
        for (c, &(k, start, end)) in self.due.iter().enumerate() {
            out.logits[k * out.width..(k + 1) * out.width]
                .copy_from_slice(&self.logits[c * count..(c + 1) * count]);
            out.embeds[k * dim..(k + 1) * dim].copy_from_slice(&self.video[c * dim..(c + 1) * dim]);
            out.scored[k] = true;
            out.windows[k] = Some(WindowOut {
                start_ns: (start * 1e9).round() as u64,
                end_ns: (end * 1e9).round() as u64,
                frames: fr,
                store: true,
            });
        }
        Ok(())
    }
}
