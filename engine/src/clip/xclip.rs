//! [`XClipModel`]: a Hugging Face `XCLIPModel` folder — video labels from text.
//!
//! - **Cross-frame communication** ([`CrossFrameLayer`]): in every vision block, each
//!   frame's class token becomes a message token (`message_fc`); the messages of one
//!   clip's frames attend to each other (`message_ln`, `message_attn`, residual); each
//!   frame's tokens then self-attend over `[its tokens, its message]`, the message is
//!   dropped, and the MLP follows.
//! - **Multi-frame integration** (`mit`): the projected per-frame embeddings plus a
//!   learned frame position go through a small transformer; the output plus its input,
//!   averaged over frames, is the video embedding.
//! - **Video-specific prompting** (`prompts_generator`): each prompt's projected text
//!   embedding cross-attends to the clip's frame-averaged patch tokens
//!   (`prompts_visual_layernorm`, `prompts_visual_projection`); `alpha ×` the result is
//!   added to the text embedding, so every clip gets its own text embeddings.
//!
//! `logits_per_video[t, p] = logit_scale · video_embeds[t] · text_embeds[t, p]`.
//! Clips are `num_frames` frames, frame-major: pixel rows `[clips, frames, 3, S, S]`.

use std::path::{Path, PathBuf};

use vigil_kernels::cpu::attention::{attention, AttentionShape, Rows};
use vigil_kernels::cpu::layernorm::l2_normalize;

use super::config::{ClipConfig, Family, VisionConfig};
use super::encoder::{grow, EncoderLayer, EncoderWorkspace, LayerNorm, Linear, Mlp, SelfAttention};
use super::model::{thread_pool, ModelDir};
use super::preprocess::{PreprocessWorkspace, Preprocessor, RgbFrame};
use super::text::{TextTower, TextWorkspace};
use super::tokenizer::ClipTokenizer;
use super::vision::{VisionEmbeddings, VisionWorkspace};
use super::weights::TensorReader;
use crate::{EngineError, Result};

/// One X-CLIP vision block: message tokens across a clip's frames, then the usual block
/// over each frame's tokens plus its message.
pub(crate) struct CrossFrameLayer {
    message_fc: Linear,
    message_ln: LayerNorm,
    message_attn: SelfAttention,
    block: EncoderLayer,
}

/// Buffers of the cross-frame blocks beyond the encoder's.
#[derive(Default)]
pub(crate) struct CrossFrameWorkspace {
    cls: Vec<f32>,
    msg: Vec<f32>,
    msg_h: Vec<f32>,
    msg2: Vec<f32>,
    with_msg: Vec<f32>,
}

impl CrossFrameLayer {
    fn load(r: &TensorReader, prefix: &str, cfg: &VisionConfig) -> Result<CrossFrameLayer> {
        let d = cfg.hidden;
        Ok(CrossFrameLayer {
            message_fc: Linear::load(r, &format!("{prefix}.message_fc"), d, d, true)?,
            message_ln: LayerNorm::load(r, &format!("{prefix}.message_ln"), d, cfg.eps)?,
            message_attn: SelfAttention::load(r, &format!("{prefix}.message_attn"), d, cfg.heads)?,
            block: EncoderLayer::load(r, prefix, d, cfg.intermediate, cfg.heads, cfg.act, cfg.eps)?,
        })
    }

    /// `x [clips * frames * tokens, d]` through the block.
    fn forward(
        &self,
        x: &mut Vec<f32>,
        clips: usize,
        frames: usize,
        tokens: usize,
        ws: &mut EncoderWorkspace,
        xf: &mut CrossFrameWorkspace,
    ) {
        let d = self.message_ln.gamma.len();
        let n = clips * frames;
        // message tokens from the class tokens, exchanged across each clip's frames
        let cls = grow(&mut xf.cls, n * d);
        for f in 0..n {
            cls[f * d..(f + 1) * d].copy_from_slice(&x[f * tokens * d..f * tokens * d + d]);
        }
        let msg = grow(&mut xf.msg, n * d);
        self.message_fc.forward(cls, n, None, msg);
        let h = grow(&mut xf.msg_h, n * d);
        self.message_ln.forward(msg, d, n, h);
        let msg2 = grow(&mut xf.msg2, n * d);
        self.message_attn
            .forward(h, clips, frames, false, msg, ws, msg2);
        // each frame: [its tokens, its message] → attention half → drop the message
        let t1 = tokens + 1;
        let mut with_msg = std::mem::take(&mut xf.with_msg);
        let wm = grow(&mut with_msg, n * t1 * d);
        for f in 0..n {
            wm[f * t1 * d..(f * t1 + tokens) * d]
                .copy_from_slice(&x[f * tokens * d..(f + 1) * tokens * d]);
            wm[(f * t1 + tokens) * d..(f + 1) * t1 * d].copy_from_slice(&msg2[f * d..(f + 1) * d]);
        }
        self.block.attention_half(&mut with_msg, n, t1, false, ws);
        for f in 0..n {
            x[f * tokens * d..(f + 1) * tokens * d]
                .copy_from_slice(&with_msg[f * t1 * d..(f * t1 + tokens) * d]);
        }
        xf.with_msg = with_msg;
        self.block.mlp_half(x, n * tokens, ws);
    }
}

/// X-CLIP's prompt generator layer: `t += cross_attn(norm1 t, visual)`,
/// `t += mlp(norm3 t)`.
struct PromptLayer {
    norm1: LayerNorm,
    q: Linear,
    kv: Linear,
    proj: Linear,
    heads: usize,
    norm3: LayerNorm,
    mlp: Mlp,
}

/// Caller-owned buffers of [`XClipModel`]'s forward passes.
#[derive(Default)]
pub struct XClipWorkspace {
    pub(crate) vision: VisionWorkspace,
    cross: CrossFrameWorkspace,
    pub(crate) text: TextWorkspace,
    pre: PreprocessWorkspace,
    pixels: Vec<f32>,
    frame_embeds: Vec<f32>,
    mit: Vec<f32>,
    mit_ws: EncoderWorkspace,
    video_pooled: Vec<f32>,
    video_embeds: Vec<f32>,
    patches: Vec<f32>,
    patch_proj: Vec<f32>,
    prompt_visual: Vec<f32>,
    // prompt generator
    visual_ln: Vec<f32>,
    t: Vec<f32>,
    t_h: Vec<f32>,
    q: Vec<f32>,
    kv: Vec<f32>,
    ctx: Vec<f32>,
    prompt_ws: EncoderWorkspace,
    prompt_delta: Vec<f32>,
    text_embeds: Vec<f32>,
}

/// Per-clip outputs of [`XClipModel::encode_pixels`], borrowed from the workspace.
#[derive(Debug, Clone, Copy)]
pub struct VideoEmbeddings<'a> {
    /// `post_layernorm(class token)` per frame, `[clips * frames, vision hidden]`.
    pub frame_pooled: &'a [f32],
    /// `visual_projection(frame_pooled)`, the MIT input, `[clips * frames, dim]`.
    pub frame_embeds: &'a [f32],
    /// mean over frames of `MIT(frame_embeds + position) + frame_embeds`, `[clips, dim]`.
    pub video_pooled: &'a [f32],
    /// `l2norm(video_pooled)`, `[clips, dim]`.
    pub video_embeds: &'a [f32],
    /// frame mean of `prompts_visual_layernorm(patch tokens) @ prompts_visual_projection`,
    /// `[clips, patches, dim]`.
    pub prompt_visual: &'a [f32],
}

/// Per-prompt text outputs (before video conditioning).
#[derive(Debug, Clone, Copy)]
pub struct XClipText<'a> {
    /// `final_layer_norm` at EOT, `[p, text hidden]`.
    pub pooled: &'a [f32],
    /// `text_projection(pooled)`, `[p, dim]`.
    pub projected: &'a [f32],
}

/// Video-conditioned text embeddings.
#[derive(Debug, Clone, Copy)]
pub struct ConditionedText<'a> {
    /// `prompts_generator(text, visual)` = `alpha × decoder output`, `[clips, p, dim]`.
    pub prompt_delta: &'a [f32],
    /// `l2norm(projected + prompt_delta)`, `[clips, p, dim]`.
    pub text_embeds: &'a [f32],
}

/// A loaded `XCLIPModel`.
pub struct XClipModel {
    pub config: ClipConfig,
    pub dir: PathBuf,
    pub preprocessor: Preprocessor,
    pub tokenizer: ClipTokenizer,
    embeddings: VisionEmbeddings,
    pre_ln: LayerNorm,
    layers: Vec<CrossFrameLayer>,
    post_ln: LayerNorm,
    visual_projection: Linear,
    mit_position: Vec<f32>,
    mit: Vec<EncoderLayer>,
    text: TextTower,
    prompts_visual_ln: LayerNorm,
    prompts_visual_projection: Linear,
    prompt_ln: LayerNorm,
    prompt_layers: Vec<PromptLayer>,
    alpha: Vec<f32>,
    logit_scale: f32,
    num_frames: usize,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for XClipModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XClipModel")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl XClipModel {
    /// Load a Hugging Face X-CLIP folder, checking every tensor; encoders run on
    /// `threads` threads (0: one per core).
    pub fn load(dir: &Path, threads: usize) -> Result<XClipModel> {
        let md = ModelDir::open(dir, Family::XClip)?;
        let r = md.weights.reader()?;
        let c = &md.config;
        let x = c.xclip.clone().ok_or_else(|| EngineError::NotClip {
            path: dir.to_path_buf(),
            why: "config.json lacks X-CLIP settings".into(),
        })?;
        let (v, p) = (&c.vision, c.projection_dim);
        let layers = (0..v.layers)
            .map(|i| CrossFrameLayer::load(&r, &format!("vision_model.encoder.layers.{i}"), v))
            .collect::<Result<_>>()?;
        let mit = (0..x.mit_layers)
            .map(|i| {
                EncoderLayer::load(
                    &r,
                    &format!("mit.encoder.layers.{i}"),
                    x.mit_hidden,
                    x.mit_intermediate,
                    x.mit_heads,
                    v.act,
                    v.eps,
                )
            })
            .collect::<Result<_>>()?;
        let te = c.text.eps;
        let prompt_layers = (0..x.prompt_layers)
            .map(|i| {
                let pre = format!("prompts_generator.decoder.{i}");
                let ca = format!("{pre}.cross_attn");
                Ok(PromptLayer {
                    norm1: LayerNorm::load(&r, &format!("{pre}.norm1"), p, te)?,
                    q: Linear::load(&r, &format!("{ca}.q_proj"), p, p, false)?,
                    kv: Linear::load_stacked(
                        &r,
                        &[&format!("{ca}.k_proj"), &format!("{ca}.v_proj")],
                        p,
                        p,
                        false,
                    )?,
                    proj: Linear::load(&r, &format!("{ca}.proj"), p, p, true)?,
                    heads: x.prompt_heads,
                    norm3: LayerNorm::load(&r, &format!("{pre}.norm3"), p, te)?,
                    mlp: Mlp::load(
                        &r,
                        &format!("{pre}.mlp"),
                        ["0", "3"],
                        p,
                        4 * p,
                        x.prompt_act,
                    )?,
                })
            })
            .collect::<Result<_>>()?;
        // a bare [vision hidden, dim] matrix used as `x @ P`: a Linear with W = Pᵀ
        let pv = r.tensor("prompts_visual_projection", &[v.hidden, p])?;
        let mut pvt = vec![0.0; p * v.hidden];
        for i in 0..v.hidden {
            for j in 0..p {
                pvt[j * v.hidden + i] = pv[i * p + j];
            }
        }
        Ok(XClipModel {
            embeddings: VisionEmbeddings::load(&r, "vision_model.embeddings", v)?,
            pre_ln: LayerNorm::load(&r, "vision_model.pre_layernorm", v.hidden, v.eps)?,
            layers,
            post_ln: LayerNorm::load(&r, "vision_model.post_layernorm", v.hidden, v.eps)?,
            visual_projection: Linear::load(&r, "visual_projection", p, v.hidden, false)?,
            mit_position: r.tensor("mit.position_embedding", &[1, x.num_frames, x.mit_hidden])?,
            mit,
            text: TextTower::load(&r, &c.text, p)?,
            prompts_visual_ln: LayerNorm::load(&r, "prompts_visual_layernorm", v.hidden, v.eps)?,
            prompts_visual_projection: Linear::new(&pvt, vec![0.0; p], p, v.hidden),
            prompt_ln: LayerNorm::load(&r, "prompts_generator.layernorm", p, v.eps)?,
            prompt_layers,
            alpha: r.tensor("prompts_generator.alpha", &[p])?,
            logit_scale: r.scalar("logit_scale")?.exp(),
            num_frames: x.num_frames,
            pool: thread_pool(threads)?,
            config: md.config.clone(),
            dir: md.dir,
            preprocessor: md.preprocessor,
            tokenizer: md.tokenizer,
        })
    }

    /// Frames per clip.
    pub fn num_frames(&self) -> usize {
        self.num_frames
    }

    pub fn embed_dim(&self) -> usize {
        self.config.projection_dim
    }

    /// `exp(logit_scale)`.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Encode `clips` clips given as `pixel_values [clips, frames, 3, S, S]`.
    pub fn encode_pixels<'w>(
        &self,
        pixels: &[f32],
        clips: usize,
        ws: &'w mut XClipWorkspace,
    ) -> Result<VideoEmbeddings<'w>> {
        let per = self.preprocessor.output_len();
        let fr = self.num_frames;
        if pixels.len() != clips * fr * per {
            return Err(EngineError::ClipInput(format!(
                "{} pixel values for {clips} clips of {fr} frames of {per}",
                pixels.len()
            )));
        }
        self.pool.install(|| self.video_forward(pixels, clips, ws));
        Ok(self.video_outputs(clips, ws))
    }

    fn video_outputs<'w>(&self, clips: usize, ws: &'w XClipWorkspace) -> VideoEmbeddings<'w> {
        let (n, dv, p) = (
            clips * self.num_frames,
            self.config.vision.hidden,
            self.embed_dim(),
        );
        let np = self.config.vision.patches();
        VideoEmbeddings {
            frame_pooled: &ws.vision.pooled[..n * dv],
            frame_embeds: &ws.frame_embeds[..n * p],
            video_pooled: &ws.video_pooled[..clips * p],
            video_embeds: &ws.video_embeds[..clips * p],
            prompt_visual: &ws.prompt_visual[..clips * np * p],
        }
    }

    fn video_forward(&self, pixels: &[f32], clips: usize, ws: &mut XClipWorkspace) {
        let v = &self.config.vision;
        let (fr, d, t, p, np) = (
            self.num_frames,
            v.hidden,
            v.tokens(),
            self.embed_dim(),
            v.patches(),
        );
        let n = clips * fr;
        // cross-frame vision encoder
        let mut x = std::mem::take(&mut ws.vision.x);
        let mut emb = std::mem::take(&mut ws.vision.encoder.alt);
        self.embeddings
            .forward(pixels, n, &mut ws.vision, grow(&mut emb, n * t * d));
        self.pre_ln.forward(&emb, d, n * t, grow(&mut x, n * t * d));
        ws.vision.encoder.alt = emb;
        for layer in &self.layers {
            layer.forward(&mut x, clips, fr, t, &mut ws.vision.encoder, &mut ws.cross);
        }
        let pooled = grow(&mut ws.vision.pooled, n * d);
        self.post_ln.forward(&x, t * d, n, pooled);
        let fe = grow(&mut ws.frame_embeds, n * p);
        self.visual_projection.forward(pooled, n, None, fe);
        // multi-frame integration transformer, residual around the stack, frame mean
        let mit = grow(&mut ws.mit, n * p);
        for (f, row) in mit.chunks_exact_mut(p).enumerate() {
            let pos = &self.mit_position[(f % fr) * p..(f % fr + 1) * p];
            for ((o, &e), &q) in row.iter_mut().zip(&fe[f * p..(f + 1) * p]).zip(pos) {
                *o = e + q;
            }
        }
        for layer in &self.mit {
            layer.forward(&mut ws.mit, clips, fr, false, &mut ws.mit_ws);
        }
        let vp = grow(&mut ws.video_pooled, clips * p);
        vp.fill(0.0);
        for f in 0..n {
            let c = f / fr;
            for j in 0..p {
                vp[c * p + j] += ws.mit[f * p + j] + ws.frame_embeds[f * p + j];
            }
        }
        let inv = 1.0 / fr as f32;
        vp.iter_mut().for_each(|v| *v *= inv);
        let ve = grow(&mut ws.video_embeds, clips * p);
        ve.copy_from_slice(vp);
        l2_normalize(ve, clips, p);
        // the prompt generator's visual input: patch tokens (no post_layernorm), frame mean
        let patches = grow(&mut ws.patches, n * t * d);
        self.prompts_visual_ln.forward(&x, d, n * t, patches);
        let proj = grow(&mut ws.patch_proj, n * t * p);
        self.prompts_visual_projection
            .forward(patches, n * t, None, proj);
        let pv = grow(&mut ws.prompt_visual, clips * np * p);
        pv.fill(0.0);
        for f in 0..n {
            let c = f / fr;
            let src = &proj[(f * t + 1) * p..(f + 1) * t * p];
            for (o, &s) in pv[c * np * p..(c + 1) * np * p].iter_mut().zip(src) {
                *o += s;
            }
        }
        pv.iter_mut().for_each(|v| *v *= inv);
        ws.vision.x = x;
    }

    /// Preprocess and encode `frames.len() / num_frames` clips of RGB frames.
    pub fn encode_frames<'w>(
        &self,
        frames: &[RgbFrame<'_>],
        ws: &'w mut XClipWorkspace,
    ) -> Result<VideoEmbeddings<'w>> {
        let fr = self.num_frames;
        if frames.is_empty() || !frames.len().is_multiple_of(fr) {
            return Err(EngineError::ClipInput(format!(
                "{} frames do not make whole clips of {fr}",
                frames.len()
            )));
        }
        let per = self.preprocessor.output_len();
        let buf = grow(&mut ws.pixels, frames.len() * per);
        for (f, out) in frames.iter().zip(buf.chunks_exact_mut(per)) {
            self.preprocessor.run(*f, &mut ws.pre, out)?;
        }
        let clips = frames.len() / fr;
        let pixels = std::mem::take(&mut ws.pixels);
        self.pool
            .install(|| self.video_forward(&pixels[..frames.len() * per], clips, ws));
        ws.pixels = pixels;
        Ok(self.video_outputs(clips, ws))
    }

    /// Encode `count` rows of token ids: pooled and projected text features.
    pub fn encode_ids<'w>(
        &self,
        ids: &[u32],
        count: usize,
        ws: &'w mut XClipWorkspace,
    ) -> Result<XClipText<'w>> {
        self.pool
            .install(|| self.text.encode(ids, count, false, &mut ws.text))?;
        let (pooled, projected) = self.text.outputs(count, &ws.text);
        Ok(XClipText { pooled, projected })
    }

    /// Tokenize and encode prompts.
    pub fn encode_prompts<'w, S: AsRef<str> + Sync>(
        &self,
        prompts: &[S],
        ws: &'w mut XClipWorkspace,
    ) -> Result<XClipText<'w>> {
        self.pool.install(|| {
            self.text
                .encode_prompts(&self.tokenizer, prompts, false, &mut ws.text)
        })?;
        let (pooled, projected) = self.text.outputs(prompts.len(), &ws.text);
        Ok(XClipText { pooled, projected })
    }

    /// Condition `count` projected prompt embeddings (`[count, dim]`) on each of `clips`
    /// clips' `prompt_visual` (`[clips, patches, dim]`, from [`Self::encode_pixels`]).
    pub fn condition_text<'w>(
        &self,
        prompt_visual: &[f32],
        projected: &[f32],
        clips: usize,
        count: usize,
        ws: &'w mut XClipWorkspace,
    ) -> Result<ConditionedText<'w>> {
        let (p, np) = (self.embed_dim(), self.config.vision.patches());
        if prompt_visual.len() != clips * np * p || projected.len() != count * p {
            return Err(EngineError::ClipInput(format!(
                "prompt conditioning: {} visual values for {clips} clips of {np}x{p}, {} text values for {count} prompts of {p}",
                prompt_visual.len(),
                projected.len()
            )));
        }
        self.pool
            .install(|| self.prompt_forward(prompt_visual, projected, clips, count, ws));
        Ok(ConditionedText {
            prompt_delta: &ws.prompt_delta[..clips * count * p],
            text_embeds: &ws.text_embeds[..clips * count * p],
        })
    }

    fn prompt_forward(
        &self,
        visual: &[f32],
        projected: &[f32],
        clips: usize,
        count: usize,
        ws: &mut XClipWorkspace,
    ) {
        let (p, np) = (self.embed_dim(), self.config.vision.patches());
        let rows = clips * count;
        let vis = grow(&mut ws.visual_ln, clips * np * p);
        self.prompt_ln.forward(visual, p, clips * np, vis);
        let mut t = std::mem::take(&mut ws.t);
        let tt = grow(&mut t, rows * p);
        for c in 0..clips {
            tt[c * count * p..(c + 1) * count * p].copy_from_slice(projected);
        }
        for layer in &self.prompt_layers {
            let h = grow(&mut ws.t_h, rows * p);
            layer.norm1.forward(&t, p, rows, h);
            let q = grow(&mut ws.q, rows * p);
            layer.q.forward(h, rows, None, q);
            let kv = grow(&mut ws.kv, clips * np * 2 * p);
            layer
                .kv
                .forward(&ws.visual_ln[..clips * np * p], clips * np, None, kv);
            let ctx = grow(&mut ws.ctx, rows * p);
            let shape = AttentionShape {
                batch: clips,
                heads: layer.heads,
                q_len: count,
                kv_len: np,
                head_dim: p / layer.heads,
                causal: false,
            };
            let scale = ((p / layer.heads) as f32).powf(-0.5);
            attention(
                Rows { data: q, stride: p },
                Rows {
                    data: kv,
                    stride: 2 * p,
                },
                Rows {
                    data: &kv[p..],
                    stride: 2 * p,
                },
                &shape,
                scale,
                ctx,
            );
            let t2 = grow(&mut ws.prompt_ws.alt, rows * p);
            layer.proj.forward(ctx, rows, Some(&t[..rows * p]), t2);
            std::mem::swap(&mut t, &mut ws.prompt_ws.alt);
            let h = grow(&mut ws.t_h, rows * p);
            layer.norm3.forward(&t, p, rows, h);
            let mut out = std::mem::take(&mut ws.prompt_ws.h);
            layer.mlp.forward(
                h,
                rows,
                &t[..rows * p],
                &mut ws.prompt_ws,
                grow(&mut out, rows * p),
            );
            std::mem::swap(&mut t, &mut out);
            ws.prompt_ws.h = out;
        }
        let delta = grow(&mut ws.prompt_delta, rows * p);
        for (row, src) in delta.chunks_exact_mut(p).zip(t.chunks_exact(p)) {
            for ((o, &s), &a) in row.iter_mut().zip(src).zip(&self.alpha) {
                *o = a * s;
            }
        }
        let te = grow(&mut ws.text_embeds, rows * p);
        for (r, row) in te.chunks_exact_mut(p).enumerate() {
            let base = &projected[(r % count) * p..(r % count + 1) * p];
            for ((o, &b), &dl) in row.iter_mut().zip(base).zip(&delta[r * p..(r + 1) * p]) {
                *o = b + dl;
            }
        }
        l2_normalize(te, rows, p);
        ws.t = t;
    }

    /// `logits_per_video [clips, count]` from `video_embeds [clips, dim]` and the
    /// conditioned `text_embeds [clips, count, dim]`.
    pub fn logits(
        &self,
        video_embeds: &[f32],
        text_embeds: &[f32],
        clips: usize,
        count: usize,
        out: &mut [f32],
    ) {
        let p = self.embed_dim();
        for c in 0..clips {
            super::scoring::scaled_cosines(
                &video_embeds[c * p..(c + 1) * p],
                &text_embeds[c * count * p..(c + 1) * count * p],
                p,
                self.logit_scale,
                &mut out[c * count..(c + 1) * count],
            );
        }
    }

    /// The prompts clips are scored against: `labels` and `background` prompts (compete
    /// in the softmax, never reported), tokenized and projected once; conditioning on
    /// each clip happens in [`Self::score_clips`].
    pub fn prompt_set<S: AsRef<str> + Sync>(
        &self,
        labels: &[S],
        background: &[S],
    ) -> Result<VideoPromptSet> {
        let texts = super::scoring::prompt_texts(labels, background)?;
        let mut ws = XClipWorkspace::default();
        let projected = self.encode_prompts(&texts, &mut ws)?.projected.to_vec();
        Ok(VideoPromptSet {
            texts,
            labels: labels.len(),
            projected,
        })
    }

    /// Score the `clips` clips last encoded in `ws` ([`Self::encode_pixels`] /
    /// [`Self::encode_frames`]) against `prompts`: `logits [clips, prompts]` as
    /// `logits_per_video`, `probs` their softmax per clip. Allocates nothing once warm.
    pub fn score_clips(
        &self,
        clips: usize,
        prompts: &VideoPromptSet,
        ws: &mut XClipWorkspace,
        logits: &mut [f32],
        probs: &mut [f32],
    ) -> Result<()> {
        let (p, np, count) = (
            self.embed_dim(),
            self.config.vision.patches(),
            prompts.len(),
        );
        if ws.prompt_visual.len() < clips * np * p || ws.video_embeds.len() < clips * p {
            return Err(EngineError::ClipInput(format!(
                "score_clips: the workspace holds no {clips} encoded clips"
            )));
        }
        if logits.len() < clips * count || probs.len() < clips * count {
            return Err(EngineError::ClipInput(format!(
                "score_clips: output buffers need {} values",
                clips * count
            )));
        }
        let visual = std::mem::take(&mut ws.prompt_visual);
        self.pool.install(|| {
            self.prompt_forward(
                &visual[..clips * np * p],
                &prompts.projected,
                clips,
                count,
                ws,
            )
        });
        ws.prompt_visual = visual;
        self.logits(&ws.video_embeds, &ws.text_embeds, clips, count, logits);
        probs[..clips * count].copy_from_slice(&logits[..clips * count]);
        for row in probs[..clips * count].chunks_exact_mut(count) {
            super::scoring::softmax(row);
        }
        Ok(())
    }
}

/// X-CLIP prompts, projected once (labels first, then background).
#[derive(Debug, Clone)]
pub struct VideoPromptSet {
    pub texts: Vec<String>,
    /// How many of `texts` are labels; the rest are background.
    pub labels: usize,
    /// `text_projection` of each prompt, `[texts.len(), dim]`.
    pub projected: Vec<f32>,
}

impl VideoPromptSet {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}
