//! [`ClipModel`]: a Hugging Face `CLIPModel` folder loaded for zero-shot labels — image
//! and text encoders, projections, `logit_scale`, the folder's preprocessing and the CLIP
//! tokenizer — plus [`ModelDir`], the loading steps CLIP and X-CLIP share, and
//! [`ClipWorkspace`], the caller-owned buffers of a forward pass (warm calls of the same
//! or smaller batch allocate nothing).

use std::path::{Path, PathBuf};

use vigil_kernels::cpu::layernorm::l2_normalize;

use super::config::{ClipConfig, Family};
use super::encoder::{grow, Linear};
use super::preprocess::{PreprocessConfig, PreprocessWorkspace, Preprocessor, RgbFrame};
use super::scoring::PromptSet;
use super::text::{TextTower, TextWorkspace};
use super::tokenizer::{ClipTokenizer, VOCAB};
use super::vision::{VisionTransformer, VisionWorkspace};
use super::weights::{TensorReader, Weights};
use crate::{EngineError, Result};

/// What CLIP and X-CLIP folders share: checked config, weights file, preprocessing,
/// tokenizer.
pub(crate) struct ModelDir {
    pub dir: PathBuf,
    pub config: ClipConfig,
    pub weights: Weights,
    pub preprocessor: Preprocessor,
    pub tokenizer: ClipTokenizer,
}

impl ModelDir {
    /// Open `dir`, which must hold a model of family `want`.
    pub fn open(dir: &Path, want: Family) -> Result<ModelDir> {
        if !dir.is_dir() {
            return Err(EngineError::NotClip {
                path: dir.to_path_buf(),
                why: "no such directory".into(),
            });
        }
        let config = ClipConfig::load(dir)?;
        if config.family != want {
            return Err(EngineError::NotClip {
                path: dir.to_path_buf(),
                why: format!(
                    "config.json describes an {} model, expected {} — use {}",
                    config.family.name(),
                    want.name(),
                    match config.family {
                        Family::Clip => "--clip",
                        Family::XClip => "--xclip",
                    }
                ),
            });
        }
        if config.text.vocab != VOCAB {
            return Err(EngineError::NotClip {
                path: dir.to_path_buf(),
                why: format!(
                    "text vocab_size {} is not the OpenAI CLIP vocabulary ({VOCAB}) the tokenizer uses",
                    config.text.vocab
                ),
            });
        }
        let size = config.vision.image_size;
        let pre = PreprocessConfig::load(dir, config.family, size)?;
        let preprocessor = Preprocessor::new(pre, size, &dir.join("preprocessor_config.json"))?;
        let tokenizer = ClipTokenizer::new(config.text.max_positions)?;
        let weights = Weights::open(dir, want.name())?;
        Ok(ModelDir {
            dir: dir.to_path_buf(),
            config,
            weights,
            preprocessor,
            tokenizer,
        })
    }
}

/// A thread pool for the encoders (`threads = 0`: one per core).
pub(crate) fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("vigil-clip-{i}"))
        .build()
        .map_err(|e| EngineError::Config(format!("cannot start {threads} CLIP threads: {e}")))
}

/// Caller-owned buffers of [`ClipModel`]'s forward passes (one per worker).
#[derive(Default)]
pub struct ClipWorkspace {
    pub(crate) vision: VisionWorkspace,
    pub(crate) text: TextWorkspace,
    pub(crate) pre: PreprocessWorkspace,
    pub(crate) pixels: Vec<f32>,
    pub(crate) image_embeds: Vec<f32>,
}

/// Per-image outputs, borrowed from the workspace.
#[derive(Debug, Clone, Copy)]
pub struct ImageEmbeddings<'a> {
    /// `post_layernorm(class token)`, `[n, vision hidden]`.
    pub pooled: &'a [f32],
    /// `l2norm(visual_projection(pooled))`, `[n, projection_dim]`.
    pub embeds: &'a [f32],
}

/// Per-prompt outputs, borrowed from the workspace.
#[derive(Debug, Clone, Copy)]
pub struct TextEmbeddings<'a> {
    /// `final_layer_norm` at EOT, `[p, text hidden]`.
    pub pooled: &'a [f32],
    /// `l2norm(text_projection(pooled))`, `[p, projection_dim]`.
    pub embeds: &'a [f32],
}

/// A loaded `CLIPModel`.
pub struct ClipModel {
    pub config: ClipConfig,
    pub dir: PathBuf,
    pub preprocessor: Preprocessor,
    pub tokenizer: ClipTokenizer,
    vision: VisionTransformer,
    text: TextTower,
    visual_projection: Linear,
    logit_scale: f32,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for ClipModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipModel")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClipModel {
    /// Load a Hugging Face CLIP folder, checking every tensor; encoders run on `threads`
    /// threads (0: one per core).
    pub fn load(dir: &Path, threads: usize) -> Result<ClipModel> {
        let md = ModelDir::open(dir, Family::Clip)?;
        let r = md.weights.reader()?;
        ClipModel::build(
            md.config,
            md.dir,
            md.preprocessor,
            md.tokenizer,
            &r,
            threads,
        )
    }

    /// A model of `config`'s geometry with seeded random weights — for speed
    /// measurements; its scores are meaningless.
    pub fn random(config: ClipConfig, threads: usize) -> Result<ClipModel> {
        let dir = PathBuf::from("(random weights)");
        if config.family != Family::Clip {
            return Err(EngineError::Config(
                "ClipModel::random needs a CLIP config".into(),
            ));
        }
        let size = config.vision.image_size;
        let pre = Preprocessor::new(
            PreprocessConfig::default_for(Family::Clip, size),
            size,
            &dir,
        )?;
        let tok = ClipTokenizer::new(config.text.max_positions)?;
        ClipModel::build(config, dir, pre, tok, &TensorReader::random(1), threads)
    }

    fn build(
        config: ClipConfig,
        dir: PathBuf,
        preprocessor: Preprocessor,
        tokenizer: ClipTokenizer,
        r: &TensorReader,
        threads: usize,
    ) -> Result<ClipModel> {
        let c = &config;
        let p = c.projection_dim;
        Ok(ClipModel {
            vision: VisionTransformer::load(r, &c.vision)?,
            text: TextTower::load(r, &c.text, p)?,
            visual_projection: Linear::load(r, "visual_projection", p, c.vision.hidden, false)?,
            logit_scale: r.scalar("logit_scale")?.exp(),
            pool: thread_pool(threads)?,
            config,
            dir,
            preprocessor,
            tokenizer,
        })
    }

    /// Width of the joint embedding space.
    pub fn embed_dim(&self) -> usize {
        self.config.projection_dim
    }

    /// `exp(logit_scale)` (100 for the released models).
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// Threads of the encoders' pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Encode `n` images given as `pixel_values [n, 3, size, size]`.
    pub fn encode_pixels<'w>(
        &self,
        pixels: &[f32],
        n: usize,
        ws: &'w mut ClipWorkspace,
    ) -> Result<ImageEmbeddings<'w>> {
        let per = self.preprocessor.output_len();
        if pixels.len() != n * per {
            return Err(EngineError::ClipInput(format!(
                "{} pixel values for {n} images of {per}",
                pixels.len()
            )));
        }
        let p = self.embed_dim();
        self.pool.install(|| {
            self.vision.forward(pixels, n, &mut ws.vision);
            let e = grow(&mut ws.image_embeds, n * p);
            self.visual_projection
                .forward(&ws.vision.pooled, n, None, e);
            l2_normalize(e, n, p);
        });
        Ok(ImageEmbeddings {
            pooled: &ws.vision.pooled[..n * self.config.vision.hidden],
            embeds: &ws.image_embeds[..n * p],
        })
    }

    /// Preprocess and encode RGB frames (any size; see [`Preprocessor`]).
    pub fn encode_frames<'w>(
        &self,
        frames: &[RgbFrame<'_>],
        ws: &'w mut ClipWorkspace,
    ) -> Result<ImageEmbeddings<'w>> {
        let per = self.preprocessor.output_len();
        let mut pixels = std::mem::take(&mut ws.pixels);
        let buf = grow(&mut pixels, frames.len() * per);
        for (f, out) in frames.iter().zip(buf.chunks_exact_mut(per)) {
            self.preprocessor.run(*f, &mut ws.pre, out)?;
        }
        // encode_pixels borrows ws for its result; the pixels go back first
        let n = frames.len();
        let result = self.encode_pixels(&pixels[..n * per], n, ws).map(|_| ());
        ws.pixels = pixels;
        result?;
        let (h, p) = (self.config.vision.hidden, self.embed_dim());
        Ok(ImageEmbeddings {
            pooled: &ws.vision.pooled[..n * h],
            embeds: &ws.image_embeds[..n * p],
        })
    }

    /// Encode `count` rows of token ids (`ids.len() / count` each, at most the context).
    pub fn encode_ids<'w>(
        &self,
        ids: &[u32],
        count: usize,
        ws: &'w mut ClipWorkspace,
    ) -> Result<TextEmbeddings<'w>> {
        self.pool
            .install(|| self.text.encode(ids, count, true, &mut ws.text))?;
        let (pooled, embeds) = self.text.outputs(count, &ws.text);
        Ok(TextEmbeddings { pooled, embeds })
    }

    /// Tokenize and encode prompts.
    pub fn encode_prompts<'w, S: AsRef<str> + Sync>(
        &self,
        prompts: &[S],
        ws: &'w mut ClipWorkspace,
    ) -> Result<TextEmbeddings<'w>> {
        self.pool.install(|| {
            self.text
                .encode_prompts(&self.tokenizer, prompts, true, &mut ws.text)
        })?;
        let (pooled, embeds) = self.text.outputs(prompts.len(), &ws.text);
        Ok(TextEmbeddings { pooled, embeds })
    }

    /// The prompt set a stream is scored against: `labels` (the user's prompts) and
    /// `background` prompts (compete in the softmax, never reported), embedded once.
    pub fn prompt_set<S: AsRef<str> + Sync>(
        &self,
        labels: &[S],
        background: &[S],
    ) -> Result<PromptSet> {
        let texts = super::scoring::prompt_texts(labels, background)?;
        let mut ws = ClipWorkspace::default();
        let embeds = self.encode_prompts(&texts, &mut ws)?.embeds.to_vec();
        PromptSet::new(
            texts,
            labels.len(),
            embeds,
            self.embed_dim(),
            self.logit_scale,
        )
    }

    /// `logits_per_image [n, p] = logit_scale · image_embeds · text_embedsᵀ`.
    pub fn logits(&self, image_embeds: &[f32], text_embeds: &[f32], out: &mut [f32]) {
        super::scoring::scaled_cosines(
            image_embeds,
            text_embeds,
            self.embed_dim(),
            self.logit_scale,
            out,
        );
    }
}
