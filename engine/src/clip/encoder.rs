//! The pre-LayerNorm transformer block every CLIP/X-CLIP encoder is built from
//! ([`EncoderLayer`]: `x += attn(LN1 x); x += fc2(act(fc1(LN2 x)))`), its parts
//! ([`Linear`] on weights packed at load, [`LayerNorm`], [`SelfAttention`] with one fused
//! QKV projection, [`Mlp`]) and the [`EncoderWorkspace`] they compute in.
//!
//! Activations are row-major `[rows, width]`, `rows = batch * sequence`. Every buffer
//! lives in a workspace that only grows, so a warm forward pass allocates nothing.

use vigil_kernels::cpu::attention::{attention, AttentionShape, Rows};
use vigil_kernels::cpu::gelu::Gelu;
use vigil_kernels::cpu::layernorm::layer_norm;
use vigil_kernels::cpu::linear::{linear, LinearWeights};

use super::weights::TensorReader;
use crate::Result;

/// Grow `v` to at least `n` values (never shrinks, so warm calls do not allocate).
pub(crate) fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// `y = x Wᵀ + b` (PyTorch `nn.Linear`), `W [out, in]` packed once for the CPU GEMM.
pub(crate) struct Linear {
    pub w: LinearWeights,
    pub b: Vec<f32>,
}

impl Linear {
    /// `prefix.weight [out, in]` and, with `bias`, `prefix.bias [out]` (else zeros).
    pub fn load(
        r: &TensorReader,
        prefix: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear> {
        let w = r.tensor(&format!("{prefix}.weight"), &[out, inp])?;
        let b = if bias {
            r.tensor(&format!("{prefix}.bias"), &[out])?
        } else {
            vec![0.0; out]
        };
        Ok(Linear::new(&w, b, out, inp))
    }

    /// From a row-major `[out, inp]` matrix and `out` biases.
    pub fn new(w: &[f32], b: Vec<f32>, out: usize, inp: usize) -> Linear {
        Linear {
            w: LinearWeights::pack(w, out, inp),
            b,
        }
    }

    /// Several Linears with the same input stacked into one (q, k, v → one GEMM).
    pub fn load_stacked(
        r: &TensorReader,
        prefixes: &[&str],
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear> {
        let (mut w, mut b) = (Vec::new(), Vec::new());
        for p in prefixes {
            w.extend(r.tensor(&format!("{p}.weight"), &[out, inp])?);
            if bias {
                b.extend(r.tensor(&format!("{p}.bias"), &[out])?);
            } else {
                b.extend(std::iter::repeat_n(0.0, out));
            }
        }
        Ok(Linear::new(&w, b, prefixes.len() * out, inp))
    }

    pub fn out_dim(&self) -> usize {
        self.w.n
    }

    /// `y [m, out] = x [m, in] Wᵀ + b (+ residual)`.
    pub fn forward(&self, x: &[f32], m: usize, residual: Option<&[f32]>, y: &mut [f32]) {
        linear(x, m, &self.w, &self.b, None, residual, y);
    }

    /// `y [m, out] = act(x [m, in] Wᵀ + b)`, the activation fused into the GEMM.
    pub fn forward_act(&self, x: &[f32], m: usize, act: Gelu, y: &mut [f32]) {
        linear(x, m, &self.w, &self.b, Some(act), None, y);
    }
}

/// PyTorch `nn.LayerNorm` over the last dimension.
pub(crate) struct LayerNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

impl LayerNorm {
    pub fn load(r: &TensorReader, prefix: &str, d: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: r.tensor(&format!("{prefix}.weight"), &[d])?,
            beta: r.tensor(&format!("{prefix}.bias"), &[d])?,
            eps,
        })
    }

    /// `y [rows, d]` from rows of `x` that start every `stride` values.
    pub fn forward(&self, x: &[f32], stride: usize, rows: usize, y: &mut [f32]) {
        let d = self.gamma.len();
        layer_norm(x, stride, rows, d, &self.gamma, &self.beta, self.eps, y);
    }
}

/// Multi-head self-attention (`q_proj`, `k_proj`, `v_proj`, `out_proj`; scale
/// `head_dim^-0.5`), q/k/v computed by one stacked GEMM.
pub(crate) struct SelfAttention {
    pub qkv: Linear,
    pub out: Linear,
    pub heads: usize,
}

impl SelfAttention {
    pub fn load(r: &TensorReader, prefix: &str, d: usize, heads: usize) -> Result<SelfAttention> {
        let names = ["q_proj", "k_proj", "v_proj"].map(|n| format!("{prefix}.{n}"));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(SelfAttention {
            qkv: Linear::load_stacked(r, &names, d, d, true)?,
            out: Linear::load(r, &format!("{prefix}.out_proj"), d, d, true)?,
            heads,
        })
    }

    /// `y = residual + out_proj(attention(h))` for `batch` sequences of `seq` rows of `h`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        h: &[f32],
        batch: usize,
        seq: usize,
        causal: bool,
        residual: &[f32],
        ws: &mut EncoderWorkspace,
        y: &mut [f32],
    ) {
        let d = self.out.out_dim();
        let rows = batch * seq;
        let qkv = grow(&mut ws.qkv, rows * 3 * d);
        self.qkv.forward(h, rows, None, qkv);
        let ctx = grow(&mut ws.ctx, rows * d);
        let shape = AttentionShape {
            batch,
            heads: self.heads,
            q_len: seq,
            kv_len: seq,
            head_dim: d / self.heads,
            causal,
        };
        let rows_at = |off: usize| Rows {
            data: &qkv[off..],
            stride: 3 * d,
        };
        let scale = ((d / self.heads) as f32).powf(-0.5);
        attention(rows_at(0), rows_at(d), rows_at(2 * d), &shape, scale, ctx);
        self.out.forward(ctx, rows, Some(residual), y);
    }
}

/// `fc2(act(fc1(x)))`.
pub(crate) struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Gelu,
}

impl Mlp {
    /// Hugging Face names the two layers `fc1`/`fc2` (encoders) or `0`/`3` (X-CLIP's
    /// prompt generator, an `nn.Sequential`).
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        r: &TensorReader,
        prefix: &str,
        names: [&str; 2],
        d: usize,
        hidden: usize,
        act: Gelu,
    ) -> Result<Mlp> {
        Ok(Mlp {
            fc1: Linear::load(r, &format!("{prefix}.{}", names[0]), hidden, d, true)?,
            fc2: Linear::load(r, &format!("{prefix}.{}", names[1]), d, hidden, true)?,
            act,
        })
    }

    /// `y = residual + mlp(h)` for `rows` rows.
    pub fn forward(
        &self,
        h: &[f32],
        rows: usize,
        residual: &[f32],
        ws: &mut EncoderWorkspace,
        y: &mut [f32],
    ) {
        let mid = grow(&mut ws.mid, rows * self.fc1.out_dim());
        self.fc1.forward_act(h, rows, self.act, mid);
        self.fc2.forward(mid, rows, Some(residual), y);
    }
}

/// Scratch of the encoder blocks.
#[derive(Default)]
pub struct EncoderWorkspace {
    pub(crate) h: Vec<f32>,
    pub(crate) qkv: Vec<f32>,
    pub(crate) ctx: Vec<f32>,
    pub(crate) mid: Vec<f32>,
    /// the residual stream's second buffer (blocks write here, then swap)
    pub(crate) alt: Vec<f32>,
}

/// One pre-LN transformer block (`layer_norm1`, `self_attn`, `layer_norm2`, `mlp`).
pub(crate) struct EncoderLayer {
    pub ln1: LayerNorm,
    pub attn: SelfAttention,
    pub ln2: LayerNorm,
    pub mlp: Mlp,
}

impl EncoderLayer {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        r: &TensorReader,
        prefix: &str,
        d: usize,
        hidden: usize,
        heads: usize,
        act: Gelu,
        eps: f32,
    ) -> Result<EncoderLayer> {
        Ok(EncoderLayer {
            ln1: LayerNorm::load(r, &format!("{prefix}.layer_norm1"), d, eps)?,
            attn: SelfAttention::load(r, &format!("{prefix}.self_attn"), d, heads)?,
            ln2: LayerNorm::load(r, &format!("{prefix}.layer_norm2"), d, eps)?,
            mlp: Mlp::load(r, &format!("{prefix}.mlp"), ["fc1", "fc2"], d, hidden, act)?,
        })
    }

    /// The attention half, `x ← x + attn(LN1 x)`, on `batch` sequences of `seq` rows.
    pub fn attention_half(
        &self,
        x: &mut Vec<f32>,
        batch: usize,
        seq: usize,
        causal: bool,
        ws: &mut EncoderWorkspace,
    ) {
        let d = self.ln1.gamma.len();
        let rows = batch * seq;
        let mut h = std::mem::take(&mut ws.h);
        let mut alt = std::mem::take(&mut ws.alt);
        self.ln1.forward(x, d, rows, grow(&mut h, rows * d));
        self.attn.forward(
            &h[..rows * d],
            batch,
            seq,
            causal,
            &x[..rows * d],
            ws,
            grow(&mut alt, rows * d),
        );
        std::mem::swap(x, &mut alt);
        ws.h = h;
        ws.alt = alt;
    }

    /// The MLP half, `x ← x + mlp(LN2 x)`, on `rows` rows.
    pub fn mlp_half(&self, x: &mut Vec<f32>, rows: usize, ws: &mut EncoderWorkspace) {
        let d = self.ln1.gamma.len();
        let mut h = std::mem::take(&mut ws.h);
        let mut alt = std::mem::take(&mut ws.alt);
        self.ln2.forward(x, d, rows, grow(&mut h, rows * d));
        self.mlp.forward(
            &h[..rows * d],
            rows,
            &x[..rows * d],
            ws,
            grow(&mut alt, rows * d),
        );
        std::mem::swap(x, &mut alt);
        ws.h = h;
        ws.alt = alt;
    }

    /// The whole block on `batch` sequences of `seq` rows of `x` (`[batch * seq, d]`).
    pub fn forward(
        &self,
        x: &mut Vec<f32>,
        batch: usize,
        seq: usize,
        causal: bool,
        ws: &mut EncoderWorkspace,
    ) {
        self.attention_half(x, batch, seq, causal, ws);
        self.mlp_half(x, batch * seq, ws);
    }
}
