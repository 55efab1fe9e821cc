//! Launch code of the transformer kernels (CLIP / X-CLIP encoders): [`CudaKernels::linear`]
//! (`linear.cu`), [`CudaKernels::layer_norm`] (`layernorm.cu`) and
//! [`CudaKernels::attention`] (`attention.cu`), with [`DeviceRows`] (row-strided device
//! operands, the twin of [`crate::cpu::attention::Rows`]) and [`gelu_id`].
//!
//! Each method has the name and contract of its CPU twin in [`crate::cpu`]
//! ([`crate::cpu::linear::linear`], [`crate::cpu::layernorm::layer_norm`], [`crate::cpu::attention::attention`])
//! except that weights are plain row-major device tensors (the CPU packs its linear weights
//! at load). As in `launch.rs`, a method checks lengths and 32-bit limits and enqueues
//! exactly one kernel: no allocation, no synchronisation (graph-capturable).

use std::sync::Arc;

use cudarc::driver::{
    CudaModule, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};

use super::launch::{i32_of, need, Pair};
use super::{CudaKernels, KernelError, Precision, Storage};
use crate::cpu::attention::AttentionShape;
use crate::cpu::gelu::Gelu;

/// Query rows per attention block (`ATT_QT` in attention.cu).
const ATT_QT: usize = 32;
/// Largest head_dim attention.cu takes (`ATT_HD`).
pub const ATTENTION_MAX_HEAD_DIM: usize = 128;
/// Threads per block of `layer_norm_*` (`LN_THREADS` in layernorm.cu).
const LN_THREADS: u32 = 128;
/// Threads per block of `attention_*` (`ATT_THREADS` = 4 per query row).
const ATT_THREADS: u32 = 128;

/// The kernel id of an optional GELU (`GELU_*` in linear.cu).
pub fn gelu_id(act: Option<Gelu>) -> i32 {
    match act {
        None => 0,
        Some(Gelu::Quick) => 1,
        Some(Gelu::Erf) => 2,
        Some(Gelu::Tanh) => 3,
    }
}

/// Rows of a device activation matrix: row `r` starts at element `r * stride` (e.g. the q,
/// k or v third of a fused QKV projection: a view at offset 0, `d` or `2d`, stride `3d`).
#[derive(Clone, Copy)]
pub struct DeviceRows<'a, T> {
    pub data: &'a dyn DevicePtr<T>,
    pub stride: usize,
}

/// The transformer kernels of the program.
#[derive(Debug)]
pub(super) struct TransformerFns {
    linear: Pair,
    layer_norm: Pair,
    attention: Pair,
}

impl TransformerFns {
    pub(super) fn load(module: &Arc<CudaModule>) -> Result<TransformerFns, KernelError> {
        Ok(TransformerFns {
            linear: Pair::load(module, "linear_f16", "linear_f32")?,
            layer_norm: Pair::load(module, "layer_norm_f16", "layer_norm_f32")?,
            attention: Pair::load(module, "attention_f16", "attention_f32")?,
        })
    }
}

/// Elements `rows` rows at `stride` need (the last row only `width`).
fn strided_len(rows: usize, stride: usize, width: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1) * stride + width
    }
}

fn i64_of(op: &'static str, what: &str, v: usize) -> Result<i64, KernelError> {
    i64::try_from(v).map_err(|_| KernelError::Shape {
        op,
        detail: format!("{what} = {v} exceeds i64"),
    })
}

fn grid_dim(op: &'static str, what: &str, v: usize, max: usize) -> Result<u32, KernelError> {
    if v > max {
        return Err(KernelError::Shape {
            op,
            detail: format!("{what} = {v} exceeds the grid limit {max}"),
        });
    }
    Ok(v as u32)
}

impl CudaKernels {
    /// Transformer linear layer, see [`crate::cpu::linear::linear`]: `x [M, K]`, `w [N, K]`
    /// (PyTorch Linear's `[out, in]`, row-major, not packed), `bias [N]` f32, optional
    /// `residual [M, N]` → `y [M, N] = act(x wᵀ + bias) + residual`, `act` a GELU or none.
    /// fp16: tensor cores (mma.sync, fp32 accumulate), the epilogue fused.
    #[allow(clippy::too_many_arguments)]
    pub fn linear<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        m: usize,
        k: usize,
        w: &impl DevicePtr<T>,
        n: usize,
        bias: &impl DevicePtr<f32>,
        act: Option<Gelu>,
        residual: Option<&dyn DevicePtr<T>>,
        y: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "linear";
        need(OP, "x", x.len(), m * k)?;
        need(OP, "w", w.len(), n * k)?;
        need(OP, "bias", bias.len(), n)?;
        need(OP, "y", y.len(), m * n)?;
        if let Some(r) = residual {
            need(OP, "residual", r.len(), m * n)?;
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (mi, ni, ki, ai) = (
            i32_of(OP, "M", m)?,
            i32_of(OP, "N", n)?,
            i32_of(OP, "K", k)?,
            gelu_id(act),
        );
        i32_of(OP, "M*N", m * n)?;
        let cfg = LaunchConfig {
            grid_dim: (
                grid_dim(OP, "M/64", m.div_ceil(64), (1 << 31) - 1)?,
                grid_dim(OP, "N/64", n.div_ceil(64), 65535)?,
                1,
            ),
            block_dim: (linear_block(T::PRECISION), 1, 1),
            shared_mem_bytes: 0,
        };
        let (f, name) = self.transformer.linear.get(T::PRECISION);
        let null: u64 = 0;
        let (xp, _gx) = x.device_ptr(stream);
        let (wp, _gw) = w.device_ptr(stream);
        let (bp, _gb) = bias.device_ptr(stream);
        let (rp, _gr) = match residual {
            Some(r) => {
                let (p, g) = r.device_ptr(stream);
                (p, Some(g))
            }
            None => (null, None),
        };
        let (yp, _gy) = y.device_ptr_mut(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&xp).arg(&wp).arg(&bp).arg(&rp).arg(&yp);
        b.arg(&mi).arg(&ni).arg(&ki).arg(&ai);
        // SAFETY: arguments match `linear_{f16,f32}` in linear.cu; x, w, bias, y and the
        // residual were length-checked for M, N, K above; an absent residual is a null
        // pointer, which the kernel tests before use.
        unsafe { b.launch(cfg) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!(
                "M={m} N={n} K={k} act={act:?} residual={}",
                residual.is_some()
            ),
            source: e,
        })?;
        Ok(())
    }

    /// LayerNorm over `rows` rows of `d` values, see [`crate::cpu::layernorm::layer_norm`]: row `r`
    /// of `x` at `r * x_stride`, `gamma`/`beta [d]` f32 → `y [rows, d]` contiguous; mean
    /// and variance in fp32.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        x_stride: usize,
        rows: usize,
        d: usize,
        gamma: &impl DevicePtr<f32>,
        beta: &impl DevicePtr<f32>,
        eps: f32,
        y: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "layer_norm";
        if x_stride < d {
            return Err(KernelError::Shape {
                op: OP,
                detail: format!("x_stride = {x_stride} < d = {d}"),
            });
        }
        need(OP, "x", x.len(), strided_len(rows, x_stride, d))?;
        need(OP, "gamma", gamma.len(), d)?;
        need(OP, "beta", beta.len(), d)?;
        need(OP, "y", y.len(), rows * d)?;
        if rows == 0 || d == 0 {
            return Ok(());
        }
        let (si, di) = (i64_of(OP, "x_stride", x_stride)?, i32_of(OP, "d", d)?);
        let cfg = LaunchConfig {
            grid_dim: (grid_dim(OP, "rows", rows, (1 << 31) - 1)?, 1, 1),
            block_dim: (LN_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (f, name) = self.transformer.layer_norm.get(T::PRECISION);
        let (xp, _gx) = x.device_ptr(stream);
        let (gp, _gg) = gamma.device_ptr(stream);
        let (bp, _gb) = beta.device_ptr(stream);
        let (yp, _gy) = y.device_ptr_mut(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&xp)
            .arg(&si)
            .arg(&gp)
            .arg(&bp)
            .arg(&eps)
            .arg(&yp)
            .arg(&di);
        // SAFETY: arguments match `layer_norm_{f16,f32}` in layernorm.cu; x holds `rows`
        // rows at `x_stride`, gamma/beta `d` values and y `rows * d` (checked above).
        unsafe { b.launch(cfg) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("rows={rows} d={d} x_stride={x_stride}"),
            source: e,
        })?;
        Ok(())
    }

    /// Fused multi-head scaled dot-product attention, see [`crate::cpu::attention::attention`]:
    /// `out[b, i, h] = Σ_j softmax_j(q[b, i, h] · k[b, j, h] · scale) v[b, j, h]` (causal:
    /// keys `0..=i`), q/k/v rows strided ([`DeviceRows`]), `out [batch * q_len, heads *
    /// head_dim]` contiguous. Softmax and accumulation in fp32; `head_dim <=`
    /// [`ATTENTION_MAX_HEAD_DIM`].
    #[allow(clippy::too_many_arguments)]
    pub fn attention<T: Storage>(
        &self,
        stream: &CudaStream,
        q: DeviceRows<'_, T>,
        k: DeviceRows<'_, T>,
        v: DeviceRows<'_, T>,
        shape: &AttentionShape,
        scale: f32,
        out: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "attention";
        let AttentionShape {
            batch,
            heads,
            q_len,
            kv_len,
            head_dim: hd,
            causal,
        } = *shape;
        let d = heads * hd;
        let bad = |detail: String| Err(KernelError::Shape { op: OP, detail });
        if hd > ATTENTION_MAX_HEAD_DIM {
            return bad(format!("head_dim = {hd} exceeds {ATTENTION_MAX_HEAD_DIM}"));
        }
        if causal && q_len > kv_len {
            return bad(format!("causal with q_len = {q_len} > kv_len = {kv_len}"));
        }
        for (what, r) in [("q", &q), ("k", &k), ("v", &v)] {
            if r.stride < d {
                return bad(format!(
                    "{what} stride = {} < heads * head_dim = {d}",
                    r.stride
                ));
            }
        }
        if batch == 0 || q_len == 0 || d == 0 {
            return Ok(());
        }
        if kv_len == 0 {
            return bad("kv_len = 0".into());
        }
        need(
            OP,
            "q",
            q.data.len(),
            strided_len(batch * q_len, q.stride, d),
        )?;
        need(
            OP,
            "k",
            k.data.len(),
            strided_len(batch * kv_len, k.stride, d),
        )?;
        need(
            OP,
            "v",
            v.data.len(),
            strided_len(batch * kv_len, v.stride, d),
        )?;
        need(OP, "out", out.len(), batch * q_len * d)?;
        let cfg = LaunchConfig {
            grid_dim: (
                grid_dim(OP, "q_len/32", q_len.div_ceil(ATT_QT), (1 << 31) - 1)?,
                grid_dim(OP, "heads", heads, 65535)?,
                grid_dim(OP, "batch", batch, 65535)?,
            ),
            block_dim: (ATT_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (qs, ks, vs) = (
            i64_of(OP, "q stride", q.stride)?,
            i64_of(OP, "k stride", k.stride)?,
            i64_of(OP, "v stride", v.stride)?,
        );
        let (hi, qi, kvi, hdi, ci) = (
            i32_of(OP, "heads", heads)?,
            i32_of(OP, "q_len", q_len)?,
            i32_of(OP, "kv_len", kv_len)?,
            i32_of(OP, "head_dim", hd)?,
            i32::from(causal),
        );
        let (f, name) = self.transformer.attention.get(T::PRECISION);
        let (qp, _gq) = q.data.device_ptr(stream);
        let (kp, _gk) = k.data.device_ptr(stream);
        let (vp, _gv) = v.data.device_ptr(stream);
        let (op, _go) = out.device_ptr_mut(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&qp)
            .arg(&qs)
            .arg(&kp)
            .arg(&ks)
            .arg(&vp)
            .arg(&vs)
            .arg(&op);
        b.arg(&hi).arg(&qi).arg(&kvi).arg(&hdi).arg(&ci).arg(&scale);
        // SAFETY: arguments match `attention_{f16,f32}` in attention.cu; q, k and v hold
        // batch * len rows at their strides, out batch * q_len * heads * head_dim elements,
        // head_dim <= ATT_HD (all checked above).
        unsafe { b.launch(cfg) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("{shape:?}"),
            source: e,
        })?;
        Ok(())
    }
}

/// Threads per block of `linear_*` (the GEMM tiles of gemm.cuh).
fn linear_block(p: Precision) -> u32 {
    match p {
        Precision::F16 => 128,
        Precision::F32 => 256,
    }
}
