//! The CLIP text encoder ([`TextTransformer`]): token and position embeddings, causal
//! pre-LN blocks, `final_layer_norm`, pooled at the end-of-text token as transformers
//! does (the first EOS id, or `argmax(ids)` for configs with `eos_token_id 2` and X-CLIP).
//!
//! Because attention is causal, the pooled state depends on positions `0..=eot` only:
//! the encoder runs on the batch's longest prompt up to its EOT instead of all 77
//! positions (padding never changes an output, exactly as in transformers).

use vigil_kernels::cpu::layernorm::l2_normalize;

use super::config::{TextConfig, TextPooling};
use super::encoder::{grow, EncoderLayer, EncoderWorkspace, LayerNorm, Linear};
use super::tokenizer::ClipTokenizer;
use super::weights::TensorReader;
use crate::{EngineError, Result};

/// Scratch of the text encoder.
#[derive(Default)]
pub struct TextWorkspace {
    pub(crate) x: Vec<f32>,
    pub(crate) encoder: EncoderWorkspace,
    pub(crate) pool_at: Vec<usize>,
    /// `final_layer_norm` at each prompt's EOT, `[prompts, d]`
    pub(crate) pooled: Vec<f32>,
    /// `text_projection(pooled)` (unit length for CLIP), `[prompts, projection_dim]`
    pub(crate) projected: Vec<f32>,
    pub(crate) ids: Vec<u32>,
}

/// The text encoder and its projection into the joint space (CLIP and X-CLIP alike).
pub(crate) struct TextTower {
    pub transformer: TextTransformer,
    pub projection: Linear,
}

impl TextTower {
    pub fn load(r: &TensorReader, cfg: &TextConfig, projection_dim: usize) -> Result<TextTower> {
        Ok(TextTower {
            transformer: TextTransformer::load(r, cfg)?,
            projection: Linear::load(r, "text_projection", projection_dim, cfg.hidden, false)?,
        })
    }

    /// `ws.pooled` and `ws.projected` for `count` rows of ids (`normalize`: unit length).
    pub fn encode(
        &self,
        ids: &[u32],
        count: usize,
        normalize: bool,
        ws: &mut TextWorkspace,
    ) -> Result<()> {
        self.transformer.forward(ids, count, ws)?;
        let p = self.projection.out_dim();
        let e = grow(&mut ws.projected, count * p);
        self.projection.forward(&ws.pooled, count, None, e);
        if normalize {
            l2_normalize(e, count, p);
        }
        Ok(())
    }

    /// Tokenize `prompts` (into `ws.ids`) and [`Self::encode`] them.
    pub fn encode_prompts<S: AsRef<str>>(
        &self,
        tokenizer: &ClipTokenizer,
        prompts: &[S],
        normalize: bool,
        ws: &mut TextWorkspace,
    ) -> Result<()> {
        let mut ids = std::mem::take(&mut ws.ids);
        ids.clear();
        for t in prompts {
            tokenizer.encode_into(t.as_ref(), &mut ids);
        }
        let r = self.encode(&ids, prompts.len(), normalize, ws);
        ws.ids = ids;
        r
    }

    /// `(pooled, projected)` of the last `count` prompts encoded in `ws`.
    pub fn outputs<'w>(&self, count: usize, ws: &'w TextWorkspace) -> (&'w [f32], &'w [f32]) {
        (
            &ws.pooled[..count * self.transformer.cfg.hidden],
            &ws.projected[..count * self.projection.out_dim()],
        )
    }
}

pub(crate) struct TextTransformer {
    token_embedding: Vec<f32>,
    positions: Vec<f32>,
    layers: Vec<EncoderLayer>,
    final_ln: LayerNorm,
    pub cfg: TextConfig,
}

impl TextTransformer {
    /// `text_model.*`.
    pub fn load(r: &TensorReader, cfg: &TextConfig) -> Result<TextTransformer> {
        let d = cfg.hidden;
        let layers = (0..cfg.layers)
            .map(|i| {
                EncoderLayer::load(
                    r,
                    &format!("text_model.encoder.layers.{i}"),
                    d,
                    cfg.intermediate,
                    cfg.heads,
                    cfg.act,
                    cfg.eps,
                )
            })
            .collect::<Result<_>>()?;
        Ok(TextTransformer {
            token_embedding: r.tensor(
                "text_model.embeddings.token_embedding.weight",
                &[cfg.vocab, d],
            )?,
            positions: r.tensor(
                "text_model.embeddings.position_embedding.weight",
                &[cfg.max_positions, d],
            )?,
            layers,
            final_ln: LayerNorm::load(r, "text_model.final_layer_norm", d, cfg.eps)?,
            cfg: cfg.clone(),
        })
    }

    /// Where prompt `ids` pools.
    fn pool_position(&self, ids: &[u32]) -> Option<usize> {
        match self.cfg.pooling {
            TextPooling::FirstId(eos) => ids.iter().position(|&t| t == eos),
            // the first maximum, like torch.argmax
            TextPooling::ArgmaxId => ids
                .iter()
                .enumerate()
                .fold(None, |best: Option<(usize, u32)>, (i, &t)| match best {
                    Some((_, bt)) if bt >= t => best,
                    _ => Some((i, t)),
                })
                .map(|(i, _)| i),
        }
    }

    /// `ws.pooled [count, d]` for `count` prompts of `ids.len() / count` token ids each.
    pub fn forward(&self, ids: &[u32], count: usize, ws: &mut TextWorkspace) -> Result<()> {
        let d = self.cfg.hidden;
        if count == 0 {
            return Ok(());
        }
        let len = ids.len() / count;
        if len == 0 || len * count != ids.len() || len > self.cfg.max_positions {
            return Err(EngineError::ClipInput(format!(
                "{} token ids for {count} prompts: each prompt needs the same length, at most {}",
                ids.len(),
                self.cfg.max_positions
            )));
        }
        ws.pool_at.clear();
        for (i, row) in ids.chunks_exact(len).enumerate() {
            if let Some(&bad) = row.iter().find(|&&t| t as usize >= self.cfg.vocab) {
                return Err(EngineError::ClipInput(format!(
                    "prompt {i}: token id {bad} is outside the vocabulary of {}",
                    self.cfg.vocab
                )));
            }
            let at = self.pool_position(row).ok_or_else(|| {
                EngineError::ClipInput(format!("prompt {i} has no end-of-text token"))
            })?;
            ws.pool_at.push(at);
        }
        let seq = ws.pool_at.iter().max().map_or(1, |&m| m + 1);
        let x = grow(&mut ws.x, count * seq * d);
        for (p, row) in ids.chunks_exact(len).enumerate() {
            for (s, &tok) in row[..seq].iter().enumerate() {
                let dst = &mut x[(p * seq + s) * d..(p * seq + s + 1) * d];
                let emb = &self.token_embedding[tok as usize * d..(tok as usize + 1) * d];
                let pos = &self.positions[s * d..(s + 1) * d];
                for ((o, &e), &q) in dst.iter_mut().zip(emb).zip(pos) {
                    *o = e + q;
                }
            }
        }
        let mut x = std::mem::take(&mut ws.x);
        for layer in &self.layers {
            layer.forward(&mut x, count, seq, true, &mut ws.encoder);
        }
        // final_layer_norm of the pooled rows only (it is per-row)
        let pooled = grow(&mut ws.pooled, count * d);
        for (p, &at) in ws.pool_at.iter().enumerate() {
            let r = p * seq + at;
            self.final_ln.forward(
                &x[r * d..(r + 1) * d],
                d,
                1,
                &mut pooled[p * d..(p + 1) * d],
            );
        }
        ws.x = x;
        Ok(())
    }
}
