//! [`CudaKernels`]: every kernel of the NVRTC program loaded into one CUDA context, with
//! one typed launch method per CPU twin.
//!
//! Launch methods check buffer lengths and 32-bit size limits, then enqueue exactly one
//! kernel on the given stream (no allocation, no synchronisation: graph-capturable). The
//! element type `T: Storage` of the buffers selects `{op}_f16` or `{op}_f32`. Inputs are
//! anything cudarc can read (`&CudaSlice`, `&CudaView`, `&CudaViewMut`), outputs anything
//! it can write (`&mut CudaSlice`, `&mut CudaViewMut`). Optional inputs take
//! `Option<&dyn DevicePtr<T>>` and reach the kernel as a null pointer when absent.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::nvrtc;
use super::transformer::TransformerFns;
use super::{KernelError, Precision, Storage};
use crate::{Activation, Conv2dGeom};

/// Threads per block of the 1-D grid-stride kernels.
const BLOCK_1D: u32 = 256;
/// Upper bound on grid size of the grid-stride kernels (they loop past it).
const MAX_GRID_1D: u64 = 1 << 20;

/// The f16 and f32 variant of one kernel.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    f16: CudaFunction,
    f32: CudaFunction,
    name_f16: &'static str,
    name_f32: &'static str,
}

impl Pair {
    pub(super) fn load(
        module: &Arc<CudaModule>,
        name_f16: &'static str,
        name_f32: &'static str,
    ) -> Result<Pair, KernelError> {
        Ok(Pair {
            f16: module.load_function(name_f16)?,
            f32: module.load_function(name_f32)?,
            name_f16,
            name_f32,
        })
    }

    pub(super) fn get(&self, p: Precision) -> (&CudaFunction, &'static str) {
        match p {
            Precision::F16 => (&self.f16, self.name_f16),
            Precision::F32 => (&self.f32, self.name_f32),
        }
    }
}

/// All kernels, loaded into one context. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct CudaKernels {
    ctx: Arc<CudaContext>,
    compiled: Arc<nvrtc::Compiled>,
    _module: Arc<CudaModule>,
    preprocess_u8: Pair,
    conv2d: Pair,
    pointwise: Pair,
    depthwise2d: Pair,
    avg_pool2d: Pair,
    temporal_causal: Pair,
    spatial_mean: Pair,
    cumulative_pool: Pair,
    channel_gate: Pair,
    pub(super) transformer: TransformerFns,
}

pub(super) fn i32_of(op: &'static str, what: &str, v: usize) -> Result<i32, KernelError> {
    i32::try_from(v).map_err(|_| KernelError::Shape {
        op,
        detail: format!("{what} = {v} exceeds i32"),
    })
}

pub(super) fn need(
    op: &'static str,
    what: &str,
    have: usize,
    want: usize,
) -> Result<(), KernelError> {
    if have < want {
        return Err(KernelError::Shape {
            op,
            detail: format!("{what} has {have} elements, needs {want}"),
        });
    }
    Ok(())
}

fn grid_1d(total: usize) -> LaunchConfig {
    let blocks = (total as u64)
        .div_ceil(BLOCK_1D as u64)
        .clamp(1, MAX_GRID_1D) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK_1D, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The `Conv2dGeom` fields as kernel ints, checked.
struct GeomI32 {
    in_h: i32,
    in_w: i32,
    out_h: i32,
    out_w: i32,
    k_h: i32,
    k_w: i32,
    stride: i32,
    pad_top: i32,
    pad_left: i32,
}

fn geom_i32(op: &'static str, g: &Conv2dGeom) -> Result<GeomI32, KernelError> {
    if g.stride == 0 || g.k_h == 0 || g.k_w == 0 {
        return Err(KernelError::Shape {
            op,
            detail: format!("degenerate geometry {g:?}"),
        });
    }
    Ok(GeomI32 {
        in_h: i32_of(op, "in_h", g.in_h)?,
        in_w: i32_of(op, "in_w", g.in_w)?,
        out_h: i32_of(op, "out_h", g.out_h)?,
        out_w: i32_of(op, "out_w", g.out_w)?,
        k_h: i32_of(op, "k_h", g.k_h)?,
        k_w: i32_of(op, "k_w", g.k_w)?,
        stride: i32_of(op, "stride", g.stride)?,
        pad_top: i32_of(op, "pad_top", g.pad_top)?,
        pad_left: i32_of(op, "pad_left", g.pad_left)?,
    })
}

impl CudaKernels {
    /// Compile every source with NVRTC for this device (once per process and target, see
    /// [`nvrtc::compile_cached`]) and load all kernels into `ctx`.
    pub fn compile(ctx: &Arc<CudaContext>) -> Result<CudaKernels, KernelError> {
        let (major, minor) = ctx.compute_capability()?;
        let arch = nvrtc::target_for(major, minor)?;
        let compiled = nvrtc::compile_cached(&arch)?;
        let module = ctx.load_module(Ptx::from_binary(compiled.image.clone()))?;
        Ok(CudaKernels {
            ctx: ctx.clone(),
            compiled,
            preprocess_u8: Pair::load(&module, "preprocess_u8_f16", "preprocess_u8_f32")?,
            conv2d: Pair::load(&module, "conv2d_f16", "conv2d_f32")?,
            pointwise: Pair::load(&module, "pointwise_f16", "pointwise_f32")?,
            depthwise2d: Pair::load(&module, "depthwise2d_f16", "depthwise2d_f32")?,
            avg_pool2d: Pair::load(&module, "avg_pool2d_f16", "avg_pool2d_f32")?,
            temporal_causal: Pair::load(&module, "temporal_causal_f16", "temporal_causal_f32")?,
            spatial_mean: Pair::load(&module, "spatial_mean_f16", "spatial_mean_f32")?,
            cumulative_pool: Pair::load(&module, "cumulative_pool_f16", "cumulative_pool_f32")?,
            channel_gate: Pair::load(&module, "channel_gate_f16", "channel_gate_f32")?,
            transformer: TransformerFns::load(&module)?,
            _module: module,
        })
    }

    /// The context the kernels are loaded in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The NVRTC target (`sm_XY` or `compute_XY`) the kernels were built for.
    pub fn arch(&self) -> &str {
        &self.compiled.arch
    }

    /// NVRTC's compile log (warnings), kept for diagnostics.
    pub fn compile_log(&self) -> &str {
        &self.compiled.log
    }

    /// `u8` RGB frames to `T` in `[0, 1]`: `out[i] = frames[i] / 255` over
    /// `batch * frame_len` elements (`frames` packed `[B, H, W, 3]`).
    pub fn preprocess_u8<T: Storage>(
        &self,
        stream: &CudaStream,
        frames: &impl DevicePtr<u8>,
        batch: usize,
        frame_len: usize,
        out: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "preprocess_u8";
        let n = batch * frame_len;
        need(OP, "frames", frames.len(), n)?;
        need(OP, "out", out.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let (f, name) = self.preprocess_u8.get(T::PRECISION);
        let n64 = n as i64;
        let (fp, _gf) = frames.device_ptr(stream);
        let (op, _go) = out.device_ptr_mut(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&fp).arg(&op).arg(&n64);
        // SAFETY: argument list matches `preprocess_u8_{f16,f32}(const u8*, T*, long long)`;
        // both buffers hold at least n elements (checked above).
        unsafe { b.launch(grid_1d(n)) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("B={batch} frame_len={frame_len}"),
            source: e,
        })?;
        Ok(())
    }

    /// Full 2-D convolution (the stem), see [`crate::cpu::conv2d`]: `x [B, in_h, in_w,
    /// cin]`, `w [k_h, k_w, cin, cout]` (HWIO), `bias [cout]` f32 → `y [B, out_h, out_w,
    /// cout] = act(conv + bias)`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        batch: usize,
        g: &Conv2dGeom,
        cin: usize,
        w: &impl DevicePtr<T>,
        bias: &impl DevicePtr<f32>,
        cout: usize,
        act: Activation,
        y: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "conv2d";
        let gi = geom_i32(OP, g)?;
        need(OP, "x", x.len(), batch * g.in_pixels() * cin)?;
        need(OP, "w", w.len(), g.k_h * g.k_w * cin * cout)?;
        need(OP, "bias", bias.len(), cout)?;
        let total = batch * g.out_pixels() * cout;
        need(OP, "y", y.len(), total)?;
        if total == 0 {
            return Ok(());
        }
        let (bi, ci, co, ai) = (
            i32_of(OP, "batch", batch)?,
            i32_of(OP, "cin", cin)?,
            i32_of(OP, "cout", cout)?,
            act.id(),
        );
        let (f, name) = self.conv2d.get(T::PRECISION);
        let (xp, _gx) = x.device_ptr(stream);
        let (wp, _gw) = w.device_ptr(stream);
        let (bp, _gb) = bias.device_ptr(stream);
        let (yp, _gy) = y.device_ptr_mut(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&xp).arg(&wp).arg(&bp).arg(&yp);
        b.arg(&bi)
            .arg(&gi.in_h)
            .arg(&gi.in_w)
            .arg(&ci)
            .arg(&gi.out_h)
            .arg(&gi.out_w)
            .arg(&co);
        b.arg(&gi.k_h)
            .arg(&gi.k_w)
            .arg(&gi.stride)
            .arg(&gi.pad_top)
            .arg(&gi.pad_left)
            .arg(&ai);
        // SAFETY: arguments match `conv2d_{f16,f32}` (CONV2D_ARGS in conv2d.cu); every
        // buffer was length-checked against the geometry above.
        unsafe { b.launch(grid_1d(total)) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("B={batch} {g:?} cin={cin} cout={cout}"),
            source: e,
        })?;
        Ok(())
    }

    /// 1x1 convolution as one GEMM, see [`crate::cpu::pointwise`]: `x [M, K]`, `w [N, K]`,
    /// `bias [N]` f32, optional `residual [M, N]` → `y [M, N] = act(x w^T + bias) +
    /// residual`. fp16: tensor cores (mma.sync, fp32 accumulate).
    #[allow(clippy::too_many_arguments)]
    pub fn pointwise<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        m: usize,
        k: usize,
        w: &impl DevicePtr<T>,
        n: usize,
        bias: &impl DevicePtr<f32>,
        act: Activation,
        residual: Option<&dyn DevicePtr<T>>,
        y: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        self.pointwise_impl(stream, x, m, k, w, n, bias, act, residual, None, y)
    }

    /// [`pointwise`](Self::pointwise) with the squeeze-excitation gate fused into the A
    /// operand: `x[m, k]` is multiplied by `gate[m / p, k] * scale` (`gate [B, K]`, `p`
    /// pixels per stream) before the GEMM. CPU twin: [`super::twins::pointwise_gated`].
    #[allow(clippy::too_many_arguments)]
    pub fn pointwise_gated<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        m: usize,
        k: usize,
        w: &impl DevicePtr<T>,
        n: usize,
        bias: &impl DevicePtr<f32>,
        act: Activation,
        residual: Option<&dyn DevicePtr<T>>,
        gate: &impl DevicePtr<T>,
        p: usize,
        scale: f32,
        y: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        self.pointwise_impl(
            stream,
            x,
            m,
            k,
            w,
            n,
            bias,
            act,
            residual,
            Some((gate as &dyn DevicePtr<T>, p, scale)),
            y,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn pointwise_impl<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        m: usize,
        k: usize,
        w: &impl DevicePtr<T>,
        n: usize,
        bias: &impl DevicePtr<f32>,
        act: Activation,
        residual: Option<&dyn DevicePtr<T>>,
        gate: Option<(&dyn DevicePtr<T>, usize, f32)>,
        y: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "pointwise";
        need(OP, "x", x.len(), m * k)?;
        need(OP, "w", w.len(), n * k)?;
        need(OP, "bias", bias.len(), n)?;
        need(OP, "y", y.len(), m * n)?;
        if let Some(r) = residual {
            need(OP, "residual", r.len(), m * n)?;
        }
        if let Some((g, p, _)) = gate {
            if p == 0 {
                return Err(KernelError::Shape {
                    op: OP,
                    detail: "gate with p = 0 pixels per stream".into(),
                });
            }
            need(OP, "gate", g.len(), m.div_ceil(p) * k)?;
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (mi, ni, ki, ai) = (
            i32_of(OP, "M", m)?,
            i32_of(OP, "N", n)?,
            i32_of(OP, "K", k)?,
            act.id(),
        );
        let (f, name) = self.pointwise.get(T::PRECISION);
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
        let (gp, _gg, gate_p, gate_scale) = match gate {
            Some((g, p, s)) => {
                let (ptr, guard) = g.device_ptr(stream);
                (ptr, Some(guard), i32_of(OP, "gate p", p)?, s)
            }
            None => (null, None, 1i32, 1.0f32),
        };
        let (yp, _gy) = y.device_ptr_mut(stream);
        let block = match T::PRECISION {
            Precision::F16 => 128,
            Precision::F32 => 256,
        };
        let cfg = LaunchConfig {
            grid_dim: (m.div_ceil(64) as u32, n.div_ceil(64) as u32, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        };
        if n.div_ceil(64) > 65535 {
            return Err(KernelError::Shape {
                op: OP,
                detail: format!("N = {n} needs more than 65535 column tiles"),
            });
        }
        let mut b = stream.launch_builder(f);
        b.arg(&xp)
            .arg(&wp)
            .arg(&bp)
            .arg(&rp)
            .arg(&gp)
            .arg(&gate_scale)
            .arg(&gate_p);
        b.arg(&yp).arg(&mi).arg(&ni).arg(&ki).arg(&ai);
        // SAFETY: arguments match `pointwise_{f16,f32}` in pointwise.cu; x, w, bias, y,
        // residual and gate were length-checked for M, N, K, p above; absent optional
        // operands are null pointers, which the kernel tests before use.
        unsafe { b.launch(cfg) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!(
                "M={m} N={n} K={k} residual={} gate={}",
                residual.is_some(),
                gate.is_some()
            ),
            source: e,
        })?;
        Ok(())
    }

    /// Depthwise 2-D convolution, see [`crate::cpu::depthwise2d`]: `x [B, in_h, in_w, c]`,
    /// `w [k_h, k_w, c]`, `bias [c]` f32 → `y [B, out_h, out_w, c]`.
    #[allow(clippy::too_many_arguments)]
    pub fn depthwise2d<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        batch: usize,
        g: &Conv2dGeom,
        c: usize,
        w: &impl DevicePtr<T>,
        bias: &impl DevicePtr<f32>,
        act: Activation,
        y: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "depthwise2d";
        let gi = geom_i32(OP, g)?;
        need(OP, "x", x.len(), batch * g.in_pixels() * c)?;
        need(OP, "w", w.len(), g.k_h * g.k_w * c)?;
        need(OP, "bias", bias.len(), c)?;
        let total = batch * g.out_pixels() * c;
        need(OP, "y", y.len(), total)?;
        if total == 0 {
            return Ok(());
        }
        let (bi, ci, ai) = (i32_of(OP, "batch", batch)?, i32_of(OP, "c", c)?, act.id());
        let (f, name) = self.depthwise2d.get(T::PRECISION);
        let (xp, _gx) = x.device_ptr(stream);
        let (wp, _gw) = w.device_ptr(stream);
        let (bp, _gb) = bias.device_ptr(stream);
        let (yp, _gy) = y.device_ptr_mut(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&xp).arg(&wp).arg(&bp).arg(&yp);
        b.arg(&bi)
            .arg(&gi.in_h)
            .arg(&gi.in_w)
            .arg(&ci)
            .arg(&gi.out_h)
            .arg(&gi.out_w);
        b.arg(&gi.k_h)
            .arg(&gi.k_w)
            .arg(&gi.stride)
            .arg(&gi.pad_top)
            .arg(&gi.pad_left)
            .arg(&ai);
        // SAFETY: arguments match `depthwise2d_{f16,f32}` (DW_ARGS in window2d.cu); every
        // buffer was length-checked against the geometry above.
        unsafe { b.launch(grid_1d(total)) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("B={batch} {g:?} c={c}"),
            source: e,
        })?;
        Ok(())
    }

    /// Average pool, TF `SAME`, padded taps not counted, see [`crate::cpu::avg_pool2d`].
    pub fn avg_pool2d<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        batch: usize,
        g: &Conv2dGeom,
        c: usize,
        y: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "avg_pool2d";
        let gi = geom_i32(OP, g)?;
        need(OP, "x", x.len(), batch * g.in_pixels() * c)?;
        let total = batch * g.out_pixels() * c;
        need(OP, "y", y.len(), total)?;
        if total == 0 {
            return Ok(());
        }
        let (bi, ci) = (i32_of(OP, "batch", batch)?, i32_of(OP, "c", c)?);
        let (f, name) = self.avg_pool2d.get(T::PRECISION);
        let (xp, _gx) = x.device_ptr(stream);
        let (yp, _gy) = y.device_ptr_mut(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&xp)
            .arg(&yp)
            .arg(&bi)
            .arg(&gi.in_h)
            .arg(&gi.in_w)
            .arg(&ci)
            .arg(&gi.out_h)
            .arg(&gi.out_w);
        b.arg(&gi.k_h)
            .arg(&gi.k_w)
            .arg(&gi.stride)
            .arg(&gi.pad_top)
            .arg(&gi.pad_left);
        // SAFETY: arguments match `avg_pool2d_{f16,f32}` (POOL_ARGS in window2d.cu); both
        // buffers were length-checked against the geometry above.
        unsafe { b.launch(grid_1d(total)) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("B={batch} {g:?} c={c}"),
            source: e,
        })?;
        Ok(())
    }

    /// Causal temporal depthwise convolution over the per-stream ring in the slot pool
    /// `state [slots, kt-1, p, c]`, updated in place; see [`crate::cpu::temporal_causal`].
    /// `slots [>= batch]` u32 and `t [>= batch]` u64 are device arrays; slot indices must
    /// be pairwise distinct and `< state.len() / ((kt-1) * p * c)` (not checkable here:
    /// they live on the device). `y` may be the same memory as `cur`.
    #[allow(clippy::too_many_arguments)]
    pub fn temporal_causal<T: Storage>(
        &self,
        stream: &CudaStream,
        cur: &impl DevicePtr<T>,
        batch: usize,
        p: usize,
        c: usize,
        kt: usize,
        w: &impl DevicePtr<T>,
        bias: &impl DevicePtr<f32>,
        act: Activation,
        slots: &impl DevicePtr<u32>,
        t: &impl DevicePtr<u64>,
        state: &mut impl DevicePtrMut<T>,
        y: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "temporal_causal";
        if kt < 2 {
            return Err(KernelError::Shape {
                op: OP,
                detail: format!("kt = {kt}, needs kt >= 2"),
            });
        }
        let frame = p * c;
        need(OP, "cur", cur.len(), batch * frame)?;
        need(OP, "w", w.len(), kt * c)?;
        need(OP, "bias", bias.len(), c)?;
        need(OP, "slots", slots.len(), batch)?;
        need(OP, "t", t.len(), batch)?;
        need(OP, "state", state.len(), (kt - 1) * frame)?;
        need(OP, "y", y.len(), batch * frame)?;
        if batch == 0 || frame == 0 {
            return Ok(());
        }
        let (bi, pi, ci, ki, ai) = (
            i32_of(OP, "batch", batch)?,
            i32_of(OP, "p", p)?,
            i32_of(OP, "c", c)?,
            i32_of(OP, "kt", kt)?,
            act.id(),
        );
        let (f, name) = self.temporal_causal.get(T::PRECISION);
        let (cp, _gc) = cur.device_ptr(stream);
        let (wp, _gw) = w.device_ptr(stream);
        let (bp, _gb) = bias.device_ptr(stream);
        let (sp, _gs) = state.device_ptr_mut(stream);
        let (yp, _gy) = y.device_ptr_mut(stream);
        let (slp, _gsl) = slots.device_ptr(stream);
        let (tp, _gt) = t.device_ptr(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&cp)
            .arg(&wp)
            .arg(&bp)
            .arg(&sp)
            .arg(&yp)
            .arg(&slp)
            .arg(&tp);
        b.arg(&bi).arg(&pi).arg(&ci).arg(&ki).arg(&ai);
        // SAFETY: arguments match `temporal_causal_{f16,f32}` (TEMPORAL_ARGS in
        // temporal.cu); cur, w, bias, y, slots and t were length-checked; the caller
        // guarantees the slot indices address whole rings inside `state`.
        unsafe { b.launch(grid_1d(batch * frame)) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("B={batch} P={p} C={c} kt={kt}"),
            source: e,
        })?;
        Ok(())
    }

    /// Per-stream spatial reduction `out[b, ch] = scale[ch] * sum_p x[b, p, ch]`, see
    /// [`crate::cpu::spatial_mean`]; `scale [c]` f32.
    #[allow(clippy::too_many_arguments)]
    pub fn spatial_mean<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        batch: usize,
        p: usize,
        c: usize,
        scale: &impl DevicePtr<f32>,
        out: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "spatial_mean";
        need(OP, "x", x.len(), batch * p * c)?;
        need(OP, "scale", scale.len(), c)?;
        need(OP, "out", out.len(), batch * c)?;
        if batch == 0 || c == 0 {
            return Ok(());
        }
        if batch > 65535 {
            return Err(KernelError::Shape {
                op: OP,
                detail: format!("batch = {batch} exceeds 65535"),
            });
        }
        let (pi, ci) = (i32_of(OP, "p", p)?, i32_of(OP, "c", c)?);
        i32_of(OP, "B*P*C", batch * p * c)?;
        let (f, name) = self.spatial_mean.get(T::PRECISION);
        let (xp, _gx) = x.device_ptr(stream);
        let (sp, _gs) = scale.device_ptr(stream);
        let (op, _go) = out.device_ptr_mut(stream);
        let cfg = LaunchConfig {
            grid_dim: (c.div_ceil(32) as u32, batch as u32, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        let mut b = stream.launch_builder(f);
        b.arg(&xp).arg(&sp).arg(&op).arg(&pi).arg(&ci);
        // SAFETY: arguments match `spatial_mean_{f16,f32}` in reduce.cu; grid.y = batch and
        // every buffer was length-checked above.
        unsafe { b.launch(cfg) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("B={batch} P={p} C={c}"),
            source: e,
        })?;
        Ok(())
    }

    /// Cumulative (causal global) average pool over the fp32 sums pool `sums [slots, c]`,
    /// see [`crate::cpu::cumulative_pool`]: `sums[slots[b]] += x[b]`, `out[b] =
    /// sums[slots[b]] / (t[b] + 1)`. Slot indices must be distinct and in range.
    #[allow(clippy::too_many_arguments)]
    pub fn cumulative_pool<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<T>,
        batch: usize,
        c: usize,
        slots: &impl DevicePtr<u32>,
        t: &impl DevicePtr<u64>,
        sums: &mut impl DevicePtrMut<f32>,
        out: &mut impl DevicePtrMut<T>,
    ) -> Result<(), KernelError> {
        const OP: &str = "cumulative_pool";
        need(OP, "x", x.len(), batch * c)?;
        need(OP, "slots", slots.len(), batch)?;
        need(OP, "t", t.len(), batch)?;
        need(OP, "sums", sums.len(), c)?;
        need(OP, "out", out.len(), batch * c)?;
        if batch == 0 || c == 0 {
            return Ok(());
        }
        let (bi, ci) = (i32_of(OP, "batch", batch)?, i32_of(OP, "c", c)?);
        let (f, name) = self.cumulative_pool.get(T::PRECISION);
        let (xp, _gx) = x.device_ptr(stream);
        let (slp, _gsl) = slots.device_ptr(stream);
        let (tp, _gt) = t.device_ptr(stream);
        let (sp, _gs) = sums.device_ptr_mut(stream);
        let (op, _go) = out.device_ptr_mut(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&xp)
            .arg(&slp)
            .arg(&tp)
            .arg(&sp)
            .arg(&op)
            .arg(&bi)
            .arg(&ci);
        // SAFETY: arguments match `cumulative_pool_{f16,f32}` (CUMPOOL_ARGS in reduce.cu);
        // buffers were length-checked; the caller guarantees slot indices are in range.
        unsafe { b.launch(grid_1d(batch * c)) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("B={batch} C={c}"),
            source: e,
        })?;
        Ok(())
    }

    /// Squeeze-excitation apply in place: `x[b, p, ch] *= gate[b, ch] * scale`, see
    /// [`crate::cpu::channel_gate`].
    #[allow(clippy::too_many_arguments)]
    pub fn channel_gate<T: Storage>(
        &self,
        stream: &CudaStream,
        x: &mut impl DevicePtrMut<T>,
        batch: usize,
        p: usize,
        c: usize,
        gate: &impl DevicePtr<T>,
        scale: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "channel_gate";
        need(OP, "x", x.len(), batch * p * c)?;
        need(OP, "gate", gate.len(), batch * c)?;
        if batch * p * c == 0 {
            return Ok(());
        }
        let (bi, pi, ci) = (
            i32_of(OP, "batch", batch)?,
            i32_of(OP, "p", p)?,
            i32_of(OP, "c", c)?,
        );
        let (f, name) = self.channel_gate.get(T::PRECISION);
        let (xp, _gx) = x.device_ptr_mut(stream);
        let (gp, _gg) = gate.device_ptr(stream);
        let mut b = stream.launch_builder(f);
        b.arg(&xp).arg(&gp).arg(&scale).arg(&bi).arg(&pi).arg(&ci);
        // SAFETY: arguments match `channel_gate_{f16,f32}` in reduce.cu; x and gate were
        // length-checked above.
        unsafe { b.launch(grid_1d(batch * p * c)) }.map_err(|e| KernelError::Launch {
            kernel: name,
            shape: format!("B={batch} P={p} C={c}"),
            source: e,
        })?;
        Ok(())
    }
}
