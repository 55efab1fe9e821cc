//! The CLIP image encoder: [`VisionEmbeddings`] (32×32 patches through the bias-free
//! patch convolution as one GEMM, the class token first, learned positions) and
//! [`VisionTransformer`] (pre-LN `pre_layrnorm`, encoder blocks, `post_layernorm` of the
//! class token). X-CLIP reuses the embeddings with its own blocks (see `xclip`).
//!
//! Input: `pixel_values [n, channels, size, size]` float32 (channel-first, as
//! transformers takes it); batches of images from any mix of streams.

use super::config::VisionConfig;
use super::encoder::{grow, EncoderLayer, EncoderWorkspace, LayerNorm, Linear};
use super::weights::TensorReader;
use crate::Result;

/// Patch embedding, class token and position embeddings of a ViT.
pub(crate) struct VisionEmbeddings {
    patch: Linear,
    class: Vec<f32>,
    positions: Vec<f32>,
    cfg: VisionConfig,
}

impl VisionEmbeddings {
    pub fn load(r: &TensorReader, prefix: &str, cfg: &VisionConfig) -> Result<VisionEmbeddings> {
        let (d, p, c) = (cfg.hidden, cfg.patch_size, cfg.channels);
        let w = r.tensor(&format!("{prefix}.patch_embedding.weight"), &[d, c, p, p])?;
        Ok(VisionEmbeddings {
            patch: Linear::new(&w, vec![0.0; d], d, c * p * p),
            class: r.tensor(&format!("{prefix}.class_embedding"), &[d])?,
            positions: r.tensor(
                &format!("{prefix}.position_embedding.weight"),
                &[cfg.tokens(), d],
            )?,
            cfg: cfg.clone(),
        })
    }

    /// `x [n * tokens, d]` = `[class; patches Wᵀ] + positions` for `n` images.
    pub fn forward(&self, pixels: &[f32], n: usize, ws: &mut VisionWorkspace, x: &mut [f32]) {
        let cfg = &self.cfg;
        let (d, p, g, c) = (cfg.hidden, cfg.patch_size, cfg.grid(), cfg.channels);
        let (size, np, pd, t) = (cfg.image_size, cfg.patches(), cfg.patch_dim(), cfg.tokens());
        // im2col: patch (gy, gx) of image b → row b*np + gy*g + gx, values in the
        // convolution weight's (channel, ky, kx) order
        let patches = grow(&mut ws.patches, n * np * pd);
        for b in 0..n {
            for ch in 0..c {
                let plane = &pixels[(b * c + ch) * size * size..][..size * size];
                for (y, row) in plane.chunks_exact(size).enumerate() {
                    let (gy, ky) = (y / p, y % p);
                    for gx in 0..g {
                        let dst = (b * np + gy * g + gx) * pd + (ch * p + ky) * p;
                        patches[dst..dst + p].copy_from_slice(&row[gx * p..(gx + 1) * p]);
                    }
                }
            }
        }
        let embedded = grow(&mut ws.embedded, n * np * d);
        self.patch.forward(patches, n * np, None, embedded);
        for b in 0..n {
            let img = &mut x[b * t * d..(b + 1) * t * d];
            for ((o, &cv), &pv) in img[..d]
                .iter_mut()
                .zip(&self.class)
                .zip(&self.positions[..d])
            {
                *o = cv + pv;
            }
            for ((o, &e), &pv) in img[d..]
                .iter_mut()
                .zip(&embedded[b * np * d..(b + 1) * np * d])
                .zip(&self.positions[d..])
            {
                *o = e + pv;
            }
        }
    }
}

/// Scratch of the image encoders.
#[derive(Default)]
pub struct VisionWorkspace {
    pub(crate) patches: Vec<f32>,
    pub(crate) embedded: Vec<f32>,
    /// the residual stream `[n * tokens, d]`
    pub(crate) x: Vec<f32>,
    pub(crate) encoder: EncoderWorkspace,
    /// `post_layernorm(class token)` `[n, d]`
    pub(crate) pooled: Vec<f32>,
}

/// CLIP's vision transformer up to the pooled class token.
pub(crate) struct VisionTransformer {
    pub embeddings: VisionEmbeddings,
    pub pre_ln: LayerNorm,
    pub layers: Vec<EncoderLayer>,
    pub post_ln: LayerNorm,
    pub cfg: VisionConfig,
}

impl VisionTransformer {
    /// `vision_model.*` of a `CLIPModel` (`pre_layrnorm`, sic).
    pub fn load(r: &TensorReader, cfg: &VisionConfig) -> Result<VisionTransformer> {
        let d = cfg.hidden;
        let layers = (0..cfg.layers)
            .map(|i| {
                EncoderLayer::load(
                    r,
                    &format!("vision_model.encoder.layers.{i}"),
                    d,
                    cfg.intermediate,
                    cfg.heads,
                    cfg.act,
                    cfg.eps,
                )
            })
            .collect::<Result<_>>()?;
        Ok(VisionTransformer {
            embeddings: VisionEmbeddings::load(r, "vision_model.embeddings", cfg)?,
            pre_ln: LayerNorm::load(r, "vision_model.pre_layrnorm", d, cfg.eps)?,
            layers,
            post_ln: LayerNorm::load(r, "vision_model.post_layernorm", d, cfg.eps)?,
            cfg: cfg.clone(),
        })
    }

    /// `ws.pooled [n, d]` = post-LN class tokens of `n` images.
    pub fn forward(&self, pixels: &[f32], n: usize, ws: &mut VisionWorkspace) {
        let (d, t) = (self.cfg.hidden, self.cfg.tokens());
        let mut x = std::mem::take(&mut ws.x);
        let mut emb = std::mem::take(&mut ws.encoder.alt);
        self.embeddings
            .forward(pixels, n, ws, grow(&mut emb, n * t * d));
        self.pre_ln.forward(&emb, d, n * t, grow(&mut x, n * t * d));
        ws.encoder.alt = emb;
        for layer in &self.layers {
            layer.forward(&mut x, n, t, false, &mut ws.encoder);
        }
        self.post_ln
            .forward(&x, t * d, n, grow(&mut ws.pooled, n * d));
        ws.x = x;
    }
}
