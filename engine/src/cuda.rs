//! [`CudaBackend`]: the CUDA backend — the model's weights, every slot's carried state and
//! the step's activations live on the GPU; kernels come from `vigil_kernels::cuda`.
//!
//! Main types:
//! - [`CudaBackend`] — implements [`Backend`]; built with [`CudaBackend::new`] from a
//!   [`Model`] and a [`CudaConfig`]. Fails with [`EngineError::DeviceUnavailable`] (never
//!   panics) when libcuda, a GPU or libnvrtc is missing.
//! - [`CudaConfig`] — device ordinal, [`Precision`] (fp16 storage with fp32 accumulation,
//!   or fp32 verification mode), workspace batch, CUDA-graph batch buckets.
//!
//! Layout: a device slot pool per stream buffer (`[slots, kt-1, P, C]`, storage type) and
//! per cumulative pool (`[slots, C]`, fp32), exactly as the CPU [`crate::session`] pools;
//! host-side frame counts. The first `pad` device slots are scratch slots for graph
//! padding; engine slot `s` lives in device slot `pad + s`.
//!
//! A step: frames, slot indices and frame counts are written into pinned host buffers and
//! copied to fixed device buffers, then the whole network runs as one stream-ordered
//! sequence of kernels — replayed from a CUDA graph captured once per batch-size bucket
//! (a batch of `b` streams runs in the smallest bucket `n >= b`; rows `b..n` use scratch
//! slots, and every kernel is row-independent, so they never touch real rows), or enqueued
//! eagerly for batches above the largest bucket. Logits come back through a pinned buffer;
//! the step synchronises once, at the end. Growing the slot pool or the workspace moves
//! device buffers, so it drops the captured graphs (they are re-captured on demand).
//!
//! The squeeze-excitation gate is fused into the projection GEMM's A operand
//! (`pointwise_gated`); the SE input `[cum ; mean]` is assembled with two strided 2-D
//! device copies.

use std::collections::HashMap;
use std::sync::Arc;

use vigil_kernels::cuda::cudarc::driver::{
    sys, CudaContext, CudaGraph, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, PinnedHostSlice,
};
use vigil_kernels::cuda::{self as kc, CudaKernels, KernelError, Precision, Storage};
use vigil_kernels::{Activation, Conv2dGeom};

use crate::backend::Backend;
use crate::model::{ActivationSizes, Model, Pointwise, Skip};
use crate::{EngineError, Result};

/// How to build a [`CudaBackend`].
#[derive(Debug, Clone)]
pub struct CudaConfig {
    /// CUDA device ordinal.
    pub ordinal: usize,
    /// Storage precision of weights, activations and stream buffers.
    pub precision: Precision,
    /// Batch size the workspace is allocated for up front (it grows on demand).
    pub max_batch: usize,
    /// Batch sizes that get a captured CUDA graph; empty disables graphs.
    pub graph_buckets: Vec<usize>,
}

impl Default for CudaConfig {
    fn default() -> Self {
        CudaConfig {
            ordinal: 0,
            precision: Precision::F16,
            max_batch: 64,
            graph_buckets: vec![1, 2, 4, 8, 12, 16, 24, 32, 48, 64],
        }
    }
}

fn backend_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Backend {
        backend: "cuda".into(),
        why: e.to_string(),
    }
}

fn kernel_err(e: KernelError) -> EngineError {
    match e {
        KernelError::DriverUnavailable(why) | KernelError::NvrtcUnavailable(why) => {
            EngineError::DeviceUnavailable {
                device: "cuda".into(),
                why,
            }
        }
        KernelError::IncludeNotFound { .. } => EngineError::DeviceUnavailable {
            device: "cuda".into(),
            why: e.to_string(),
        },
        other => backend_err(other),
    }
}

/// The CUDA backend (see the module docs).
pub struct CudaBackend {
    inner: Inner,
}

enum Inner {
    F16(Box<Runner<half::f16>>),
    F32(Box<Runner<f32>>),
}

impl CudaBackend {
    /// Open device `config.ordinal`, compile the kernels (NVRTC, once per process), upload
    /// the weights and allocate the workspace for `config.max_batch` streams.
    pub fn new(model: Arc<Model>, config: &CudaConfig) -> Result<CudaBackend> {
        let inner = match config.precision {
            Precision::F16 => Inner::F16(Box::new(Runner::new(model, config)?)),
            Precision::F32 => Inner::F32(Box::new(Runner::new(model, config)?)),
        };
        Ok(CudaBackend { inner })
    }

    /// Is a CUDA device usable here (libcuda loads and reports a device, libnvrtc loads)?
    pub fn available() -> std::result::Result<(), String> {
        kc::driver_available().map_err(|e| e.to_string())?;
        kc::nvrtc::nvrtc_available()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn precision(&self) -> Precision {
        match &self.inner {
            Inner::F16(_) => Precision::F16,
            Inner::F32(_) => Precision::F32,
        }
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        match &self.inner {
            Inner::F16(r) => r.name(),
            Inner::F32(r) => r.name(),
        }
    }
    fn open_slot(&mut self, slot: usize) -> Result<()> {
        match &mut self.inner {
            Inner::F16(r) => r.open_slot(slot),
            Inner::F32(r) => r.open_slot(slot),
        }
    }
    fn reset_slot(&mut self, slot: usize) -> Result<()> {
        match &mut self.inner {
            Inner::F16(r) => r.reset_slot(slot),
            Inner::F32(r) => r.reset_slot(slot),
        }
    }
    fn close_slot(&mut self, slot: usize) {
        match &mut self.inner {
            Inner::F16(r) => r.close_slot(slot),
            Inner::F32(r) => r.close_slot(slot),
        }
    }
    fn state_bytes_per_slot(&self) -> usize {
        match &self.inner {
            Inner::F16(r) => r.state_bytes_per_slot(),
            Inner::F32(r) => r.state_bytes_per_slot(),
        }
    }
    fn step(&mut self, slots: &[usize], frames: &[&[u8]], logits: &mut [f32]) -> Result<()> {
        match &mut self.inner {
            Inner::F16(r) => r.step(slots, frames, logits),
            Inner::F32(r) => r.step(slots, frames, logits),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Device-side model.

struct DPw<T> {
    cin: usize,
    cout: usize,
    w: CudaSlice<T>,
    bias: CudaSlice<f32>,
    act: Activation,
}

struct DStem<T> {
    geom: Conv2dGeom,
    cin: usize,
    cout: usize,
    w: CudaSlice<T>,
    bias: CudaSlice<f32>,
    act: Activation,
}

struct DDepthwise<T> {
    geom: Conv2dGeom,
    c: usize,
    w: CudaSlice<T>,
    bias: CudaSlice<f32>,
    act: Activation,
}

struct DTemporal<T> {
    kt: usize,
    pixels: usize,
    c: usize,
    w: CudaSlice<T>,
    bias: CudaSlice<f32>,
    act: Activation,
    buffer: usize,
}

struct DSe<T> {
    reduce: DPw<T>,
    expand: DPw<T>,
    gate_scale: f32,
    cumulative_first: bool,
    pool: usize,
    /// `1 / out_pixels` per channel (the spatial mean's scale)
    mean_scale: CudaSlice<f32>,
}

#[allow(clippy::large_enum_variant)] // one per block, a few dozen per model
enum DSkip<T> {
    Identity,
    Project {
        pool: Option<Conv2dGeom>,
        conv: DPw<T>,
    },
}

struct DBlock<T> {
    in_pixels: usize,
    out_pixels: usize,
    in_c: usize,
    expand: DPw<T>,
    spatial: DDepthwise<T>,
    temporal: Option<DTemporal<T>>,
    se: Option<DSe<T>>,
    project: DPw<T>,
    skip: DSkip<T>,
}

struct DHead<T> {
    pixels: usize,
    project: DPw<T>,
    pool_scale: CudaSlice<f32>,
    pool: usize,
    dense1: DPw<T>,
    dense2: DPw<T>,
}

struct DModel<T> {
    stem: DStem<T>,
    blocks: Vec<DBlock<T>>,
    head: DHead<T>,
}

fn up_t<T: Storage>(s: &Arc<CudaStream>, v: &[f32]) -> Result<CudaSlice<T>> {
    let host: Vec<T> = v.iter().map(|&x| T::from_f32(x)).collect();
    s.clone_htod(&host).map_err(backend_err)
}

fn up_f32(s: &Arc<CudaStream>, v: &[f32]) -> Result<CudaSlice<f32>> {
    s.clone_htod(v).map_err(backend_err)
}

fn up_pw<T: Storage>(s: &Arc<CudaStream>, p: &Pointwise) -> Result<DPw<T>> {
    Ok(DPw {
        cin: p.cin,
        cout: p.cout,
        w: up_t(s, &p.w)?,
        bias: up_f32(s, &p.bias)?,
        act: p.act,
    })
}

fn upload<T: Storage>(s: &Arc<CudaStream>, m: &Model) -> Result<DModel<T>> {
    let st = &m.stem;
    let stem = DStem {
        geom: st.geom,
        cin: st.cin,
        cout: st.cout,
        w: up_t(s, &st.w)?,
        bias: up_f32(s, &st.bias)?,
        act: st.act,
    };
    let mut blocks = Vec::with_capacity(m.blocks.len());
    for b in &m.blocks {
        let sp = &b.spatial;
        let temporal = match &b.temporal {
            Some(t) => Some(DTemporal {
                kt: t.kt,
                pixels: t.pixels,
                c: t.c,
                w: up_t(s, &t.w)?,
                bias: up_f32(s, &t.bias)?,
                act: t.act,
                buffer: t.buffer,
            }),
            None => None,
        };
        let se = match &b.se {
            Some(se) => Some(DSe {
                reduce: up_pw(s, &se.reduce)?,
                expand: up_pw(s, &se.expand)?,
                gate_scale: se.gate_scale,
                cumulative_first: se.cumulative_first,
                pool: se.pool,
                mean_scale: up_f32(s, &vec![1.0 / b.out_pixels() as f32; se.c])?,
            }),
            None => None,
        };
        let skip = match &b.skip {
            Skip::Identity => DSkip::Identity,
            Skip::Project { pool, conv } => DSkip::Project {
                pool: *pool,
                conv: up_pw(s, conv)?,
            },
        };
        blocks.push(DBlock {
            in_pixels: b.in_pixels(),
            out_pixels: b.out_pixels(),
            in_c: b.in_c,
            expand: up_pw(s, &b.expand)?,
            spatial: DDepthwise {
                geom: sp.geom,
                c: sp.c,
                w: up_t(s, &sp.w)?,
                bias: up_f32(s, &sp.bias)?,
                act: sp.act,
            },
            temporal,
            se,
            project: up_pw(s, &b.project)?,
            skip,
        });
    }
    let h = &m.head;
    let head = DHead {
        pixels: h.pixels,
        project: up_pw(s, &h.project)?,
        pool_scale: up_f32(s, &h.pool_scale)?,
        pool: h.pool,
        dense1: up_pw(s, &h.dense1)?,
        dense2: up_pw(s, &h.dense2)?,
    };
    Ok(DModel { stem, blocks, head })
}

// ---------------------------------------------------------------------------------------
// Workspace, state, I/O.

/// Device activations for `batch` streams (storage type), plus the step's inputs.
struct Workspace<T> {
    batch: usize,
    frames: CudaSlice<u8>,
    slots: CudaSlice<u32>,
    t: CudaSlice<u64>,
    input: CudaSlice<T>,
    x: CudaSlice<T>,
    x_next: CudaSlice<T>,
    skip: CudaSlice<T>,
    pooled: CudaSlice<T>,
    e: CudaSlice<T>,
    d: CudaSlice<T>,
    t_out: CudaSlice<T>,
    mean: CudaSlice<T>,
    cum: CudaSlice<T>,
    se_in: CudaSlice<T>,
    se_mid: CudaSlice<T>,
    gate: CudaSlice<T>,
    head_mid: CudaSlice<T>,
    logits: CudaSlice<T>,
    /// pinned host staging
    h_frames: PinnedHostSlice<u8>,
    h_slots: PinnedHostSlice<u32>,
    h_t: PinnedHostSlice<u64>,
    h_logits: PinnedHostSlice<T>,
}

impl<T: Storage> Workspace<T> {
    fn new(
        ctx: &Arc<CudaContext>,
        s: &Arc<CudaStream>,
        batch: usize,
        z: &ActivationSizes,
    ) -> std::result::Result<Self, KernelError> {
        let n = batch.max(1);
        let a = |len: usize| s.alloc_zeros::<T>((n * len).max(1));
        // SAFETY: pinned host allocations of element types for which all-zero bytes are
        // valid values (u8, u32, u64, T: ValidAsZeroBits); each is zero-filled through its
        // raw pointer, over exactly its own length, before any reference to it exists.
        let (h_frames, h_slots, h_t, h_logits) = unsafe {
            let mut f =
                ctx.alloc_pinned_with_flags::<u8>(n * z.input, sys::CU_MEMHOSTALLOC_WRITECOMBINED)?;
            let mut sl = ctx.alloc_pinned_with_flags::<u32>(n, 0)?;
            let mut t = ctx.alloc_pinned_with_flags::<u64>(n, 0)?;
            let mut l = ctx.alloc_pinned_with_flags::<T>(n * z.classes, 0)?;
            std::ptr::write_bytes(f.as_mut_ptr()?, 0, f.len());
            std::ptr::write_bytes(sl.as_mut_ptr()?, 0, sl.len());
            std::ptr::write_bytes(t.as_mut_ptr()?, 0, t.len());
            std::ptr::write_bytes(l.as_mut_ptr()?, 0, l.len());
            (f, sl, t, l)
        };
        Ok(Workspace {
            batch: n,
            frames: s.alloc_zeros::<u8>(n * z.input)?,
            slots: s.alloc_zeros::<u32>(n)?,
            t: s.alloc_zeros::<u64>(n)?,
            input: a(z.input)?,
            x: a(z.x)?,
            x_next: a(z.x)?,
            skip: a(z.skip)?,
            pooled: a(z.pooled)?,
            e: a(z.e)?,
            d: a(z.d)?,
            t_out: a(z.t)?,
            mean: a(z.vec)?,
            cum: a(z.vec)?,
            se_in: a(z.se_in)?,
            se_mid: a(z.se_mid)?,
            gate: a(z.vec)?,
            head_mid: a(z.head_mid)?,
            logits: a(z.classes)?,
            h_frames,
            h_slots,
            h_t,
            h_logits,
        })
    }
}

/// Device slot pools: one per stream buffer (storage type) and per cumulative pool (f32).
struct DeviceState<T> {
    /// device slots (scratch pads included)
    capacity: usize,
    buffers: Vec<CudaSlice<T>>,
    buffer_values: Vec<usize>,
    pools: Vec<CudaSlice<f32>>,
    pool_c: Vec<usize>,
}

/// A `CudaGraph` that may move between threads.
struct SendGraph(CudaGraph);
// SAFETY: a CUDA graph exec may be used from any thread as long as calls on it are
// serialized; it is only reached through `&mut Runner`, so they are.
unsafe impl Send for SendGraph {}

/// The backend for one storage type.
struct Runner<T: Storage> {
    model: Arc<Model>,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: CudaKernels,
    dm: DModel<T>,
    sizes: ActivationSizes,
    ws: Workspace<T>,
    state: DeviceState<T>,
    /// scratch device slots 0..pad used for graph padding
    pad: usize,
    frames: Vec<u64>,
    open: Vec<bool>,
    buckets: Vec<usize>,
    graphs: HashMap<usize, SendGraph>,
    device_name: String,
}

impl<T: Storage> Runner<T> {
    fn new(model: Arc<Model>, cfg: &CudaConfig) -> Result<Runner<T>> {
        let ctx = kc::open_context(cfg.ordinal).map_err(kernel_err)?;
        // One stream, no cross-stream hazards: cudarc's per-buffer event tracking would
        // only add event calls (which must not appear inside graph capture).
        // SAFETY: called before any buffer of this backend exists; all work of this
        // backend is ordered on `stream`.
        unsafe { ctx.disable_event_tracking() };
        kc::nvrtc::nvrtc_available().map_err(kernel_err)?;
        let kernels = CudaKernels::compile(&ctx).map_err(kernel_err)?;
        let stream = ctx.new_stream().map_err(backend_err)?;
        let dm = upload::<T>(&stream, &model)?;
        let sizes = model.activation_sizes();
        let ws = Workspace::new(&ctx, &stream, cfg.max_batch, &sizes).map_err(kernel_err)?;
        let mut buckets: Vec<usize> = cfg
            .graph_buckets
            .iter()
            .copied()
            .filter(|&b| b > 0)
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        // largest padding any bucket needs
        let pad = buckets
            .windows(2)
            .map(|w| w[1] - w[0] - 1)
            .max()
            .unwrap_or(0)
            .max(buckets.first().map_or(0, |&b| b - 1));
        let buffer_values: Vec<usize> = model.stream_buffers.iter().map(|s| s.values()).collect();
        let pool_c = model.cumulative_pools.clone();
        let state = DeviceState {
            capacity: 0,
            buffers: buffer_values
                .iter()
                .map(|_| stream.alloc_zeros::<T>(1))
                .collect::<std::result::Result<_, _>>()
                .map_err(backend_err)?,
            buffer_values,
            pools: pool_c
                .iter()
                .map(|_| stream.alloc_zeros::<f32>(1))
                .collect::<std::result::Result<_, _>>()
                .map_err(backend_err)?,
            pool_c,
        };
        let device_name = ctx
            .name()
            .unwrap_or_else(|_| format!("device {}", cfg.ordinal));
        let mut r = Runner {
            model,
            ctx,
            stream,
            kernels,
            dm,
            sizes,
            ws,
            state,
            pad,
            frames: Vec::new(),
            open: Vec::new(),
            buckets,
            graphs: HashMap::new(),
            device_name,
        };
        r.grow_state(4)?;
        r.stream.synchronize().map_err(backend_err)?;
        Ok(r)
    }

    fn name(&self) -> String {
        format!(
            "cuda ({}, {}, {:?})",
            self.device_name,
            self.kernels.arch(),
            T::PRECISION
        )
    }

    fn state_bytes_per_slot(&self) -> usize {
        self.state.buffer_values.iter().sum::<usize>() * std::mem::size_of::<T>()
            + self.state.pool_c.iter().sum::<usize>() * std::mem::size_of::<f32>()
            + std::mem::size_of::<u64>()
    }

    /// Make room for `user_slots` engine slots (plus the scratch pads), keeping contents.
    fn grow_state(&mut self, user_slots: usize) -> Result<()> {
        let cap = self.pad + user_slots;
        if cap <= self.state.capacity {
            return Ok(());
        }
        let old = self.state.capacity;
        let s = &self.stream;
        for (buf, &n) in self.state.buffers.iter_mut().zip(&self.state.buffer_values) {
            let mut new = s.alloc_zeros::<T>(cap * n).map_err(backend_err)?;
            if old > 0 {
                s.memcpy_dtod(&buf.slice(..old * n), &mut new.slice_mut(..old * n))
                    .map_err(backend_err)?;
            }
            *buf = new;
        }
        for (pool, &c) in self.state.pools.iter_mut().zip(&self.state.pool_c) {
            let mut new = s.alloc_zeros::<f32>(cap * c).map_err(backend_err)?;
            if old > 0 {
                s.memcpy_dtod(&pool.slice(..old * c), &mut new.slice_mut(..old * c))
                    .map_err(backend_err)?;
            }
            *pool = new;
        }
        self.state.capacity = cap;
        self.frames.resize(user_slots, 0);
        self.open.resize(user_slots, false);
        // captured graphs hold the old pool addresses
        self.graphs.clear();
        Ok(())
    }

    fn zero_slot(&mut self, slot: usize) -> Result<()> {
        let dev = self.pad + slot;
        let s = &self.stream;
        for (buf, &n) in self.state.buffers.iter_mut().zip(&self.state.buffer_values) {
            s.memset_zeros(&mut buf.slice_mut(dev * n..(dev + 1) * n))
                .map_err(backend_err)?;
        }
        for (pool, &c) in self.state.pools.iter_mut().zip(&self.state.pool_c) {
            s.memset_zeros(&mut pool.slice_mut(dev * c..(dev + 1) * c))
                .map_err(backend_err)?;
        }
        self.frames[slot] = 0;
        Ok(())
    }

    fn open_slot(&mut self, slot: usize) -> Result<()> {
        if slot >= self.open.len() {
            let want = (slot + 1).max(self.open.len() * 2).max(4);
            self.grow_state(want)?;
        }
        self.open[slot] = true;
        self.zero_slot(slot)
    }

    fn reset_slot(&mut self, slot: usize) -> Result<()> {
        if !self.open.get(slot).copied().unwrap_or(false) {
            return Err(EngineError::NoSession(slot as u64));
        }
        self.zero_slot(slot)
    }

    fn close_slot(&mut self, slot: usize) {
        if let Some(o) = self.open.get_mut(slot) {
            *o = false;
        }
    }

    fn step(&mut self, slots: &[usize], frames: &[&[u8]], logits: &mut [f32]) -> Result<()> {
        let b = slots.len();
        if b == 0 {
            return Ok(());
        }
        if let Some(&s) = slots
            .iter()
            .find(|&&s| !self.open.get(s).copied().unwrap_or(false))
        {
            return Err(EngineError::NoSession(s as u64));
        }
        let (fb, classes) = (self.sizes.input, self.sizes.classes);
        if frames.len() != b || logits.len() < b * classes {
            return Err(EngineError::Batch(format!(
                "{b} slots, {} frames, {} logits (need {})",
                frames.len(),
                logits.len(),
                b * classes
            )));
        }
        for (i, f) in frames.iter().enumerate() {
            if f.len() != fb {
                return Err(EngineError::FrameSize {
                    index: i,
                    found: f.len(),
                    expected: fb,
                    size: self.model.input_size,
                });
            }
        }
        let bucket = self.buckets.iter().copied().find(|&n| n >= b);
        let n = bucket.unwrap_or(b);
        if n > self.ws.batch {
            self.ws =
                Workspace::new(&self.ctx, &self.stream, n, &self.sizes).map_err(kernel_err)?;
            self.graphs.clear();
        }
        // Stage the inputs (rows b..n: scratch slots, t = 0, stale frame bytes).
        {
            let hf = self.ws.h_frames.as_mut_slice().map_err(backend_err)?;
            for (i, f) in frames.iter().enumerate() {
                hf[i * fb..(i + 1) * fb].copy_from_slice(f);
            }
            let hs = self.ws.h_slots.as_mut_slice().map_err(backend_err)?;
            let ht = self.ws.h_t.as_mut_slice().map_err(backend_err)?;
            for (i, &s) in slots.iter().enumerate() {
                hs[i] = (self.pad + s) as u32;
                ht[i] = self.frames[s];
            }
            for i in b..n {
                hs[i] = (i - b) as u32;
                ht[i] = 0;
            }
        }
        let s = self.stream.clone();
        {
            let ws = &mut self.ws;
            let hf = ws.h_frames.as_slice().map_err(backend_err)?;
            s.memcpy_htod(&hf[..n * fb], &mut ws.frames.slice_mut(..n * fb))
                .map_err(backend_err)?;
            let hs = ws.h_slots.as_slice().map_err(backend_err)?;
            s.memcpy_htod(&hs[..n], &mut ws.slots.slice_mut(..n))
                .map_err(backend_err)?;
            let ht = ws.h_t.as_slice().map_err(backend_err)?;
            s.memcpy_htod(&ht[..n], &mut ws.t.slice_mut(..n))
                .map_err(backend_err)?;
        }
        match bucket {
            Some(n) => {
                if !self.graphs.contains_key(&n) {
                    let graph = self.capture(n)?;
                    self.graphs.insert(n, SendGraph(graph));
                }
                let g = self
                    .graphs
                    .get(&n)
                    .ok_or_else(|| backend_err("graph vanished"))?;
                g.0.launch().map_err(backend_err)?;
            }
            None => enqueue(
                &self.kernels,
                &s,
                &self.dm,
                &mut self.ws,
                &mut self.state,
                n,
            )
            .map_err(kernel_err)?,
        }
        {
            let ws = &mut self.ws;
            let hl = ws.h_logits.as_mut_slice().map_err(backend_err)?;
            s.memcpy_dtoh(&ws.logits.slice(..b * classes), &mut hl[..b * classes])
                .map_err(backend_err)?;
        }
        s.synchronize().map_err(backend_err)?;
        let hl = self.ws.h_logits.as_slice().map_err(backend_err)?;
        for (o, v) in logits[..b * classes].iter_mut().zip(&hl[..b * classes]) {
            *o = v.to_f32();
        }
        for &sl in slots {
            self.frames[sl] += 1;
        }
        Ok(())
    }

    /// Capture the step for batch `n` into a graph (nothing runs during capture).
    fn capture(&mut self, n: usize) -> Result<CudaGraph> {
        let s = self.stream.clone();
        s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(backend_err)?;
        let enq = enqueue(
            &self.kernels,
            &s,
            &self.dm,
            &mut self.ws,
            &mut self.state,
            n,
        );
        // Always end the capture, even when enqueueing failed, so the stream is usable.
        let graph = s.end_capture(sys::CUgraphInstantiate_flags(0));
        enq.map_err(kernel_err)?;
        let graph = graph
            .map_err(backend_err)?
            .ok_or_else(|| backend_err("stream capture produced no graph"))?;
        graph.upload().map_err(backend_err)?;
        Ok(graph)
    }
}

/// `dst[r, off .. off + width] = src[r, 0 .. width]` for `rows` rows (row pitch of dst
/// `dst_pitch`, of src `width`), one strided device-to-device copy (graph-capturable).
fn copy_rows<T: Storage>(
    s: &CudaStream,
    src: &CudaSlice<T>,
    rows: usize,
    width: usize,
    dst: &mut CudaSlice<T>,
    dst_pitch: usize,
    off: usize,
) -> std::result::Result<(), KernelError> {
    let el = std::mem::size_of::<T>();
    if src.len() < rows * width || dst.len() < rows * dst_pitch || off + width > dst_pitch {
        return Err(KernelError::Shape {
            op: "copy_rows",
            detail: format!("rows={rows} width={width} pitch={dst_pitch} off={off}"),
        });
    }
    let (sp, _gs) = src.device_ptr(s);
    let (dp, _gd) = dst.device_ptr_mut(s);
    let desc = sys::CUDA_MEMCPY2D {
        srcXInBytes: 0,
        srcY: 0,
        srcMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_DEVICE,
        srcHost: std::ptr::null(),
        srcDevice: sp,
        srcArray: std::ptr::null_mut(),
        srcPitch: width * el,
        dstXInBytes: off * el,
        dstY: 0,
        dstMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_DEVICE,
        dstHost: std::ptr::null_mut(),
        dstDevice: dp,
        dstArray: std::ptr::null_mut(),
        dstPitch: dst_pitch * el,
        WidthInBytes: width * el,
        Height: rows,
    };
    // SAFETY: both regions were bounds-checked above (rows x width elements of src,
    // rows x pitch of dst, with off + width <= pitch); `desc` outlives the call, which
    // only reads it to enqueue the copy on `s`.
    unsafe { sys::cuMemcpy2DAsync_v2(&desc, s.cu_stream()) }.result()?;
    Ok(())
}

/// Enqueue one step for `n` streams (inputs already in `ws.frames/slots/t`): the same
/// layer sequence as the CPU backend's `run_step`, on `s`. Only kernel launches and
/// device copies: graph-capturable.
fn enqueue<T: Storage>(
    k: &CudaKernels,
    s: &CudaStream,
    dm: &DModel<T>,
    ws: &mut Workspace<T>,
    state: &mut DeviceState<T>,
    n: usize,
) -> std::result::Result<(), KernelError> {
    let Workspace {
        frames,
        slots,
        t,
        input,
        x,
        x_next,
        skip,
        pooled,
        e,
        d,
        t_out,
        mean,
        cum,
        se_in,
        se_mid,
        gate,
        head_mid,
        logits,
        ..
    } = ws;
    let st = &dm.stem;
    k.preprocess_u8::<T>(s, frames, n, st.geom.in_pixels() * st.cin, input)?;
    k.conv2d::<T>(
        s, input, n, &st.geom, st.cin, &st.w, &st.bias, st.cout, st.act, x,
    )?;
    for blk in &dm.blocks {
        let (in_px, out_px, c) = (blk.in_pixels, blk.out_pixels, blk.in_c);
        // residual path
        let projected = match &blk.skip {
            DSkip::Identity => false,
            DSkip::Project { pool, conv } => {
                match pool {
                    Some(g) => {
                        k.avg_pool2d::<T>(s, x, n, g, c, pooled)?;
                        k.pointwise::<T>(
                            s,
                            pooled,
                            n * out_px,
                            c,
                            &conv.w,
                            conv.cout,
                            &conv.bias,
                            conv.act,
                            None,
                            skip,
                        )?;
                    }
                    None => k.pointwise::<T>(
                        s,
                        x,
                        n * out_px,
                        c,
                        &conv.w,
                        conv.cout,
                        &conv.bias,
                        conv.act,
                        None,
                        skip,
                    )?,
                }
                true
            }
        };
        let ex = &blk.expand;
        k.pointwise::<T>(
            s,
            x,
            n * in_px,
            c,
            &ex.w,
            ex.cout,
            &ex.bias,
            ex.act,
            None,
            e,
        )?;
        let sp = &blk.spatial;
        k.depthwise2d::<T>(s, e, n, &sp.geom, sp.c, &sp.w, &sp.bias, sp.act, d)?;
        let ce = sp.c;
        let f: &CudaSlice<T> = match &blk.temporal {
            Some(tl) => {
                let ring = &mut state.buffers[tl.buffer];
                k.temporal_causal::<T>(
                    s, d, n, tl.pixels, tl.c, tl.kt, &tl.w, &tl.bias, tl.act, slots, t, ring, t_out,
                )?;
                t_out
            }
            None => d,
        };
        let residual: &CudaSlice<T> = if projected { skip } else { x };
        let pj = &blk.project;
        match &blk.se {
            Some(se) => {
                k.spatial_mean::<T>(s, f, n, out_px, ce, &se.mean_scale, mean)?;
                k.cumulative_pool::<T>(s, mean, n, ce, slots, t, &mut state.pools[se.pool], cum)?;
                let (first, second) = if se.cumulative_first {
                    (&*cum, &*mean)
                } else {
                    (&*mean, &*cum)
                };
                copy_rows(s, first, n, ce, se_in, 2 * ce, 0)?;
                copy_rows(s, second, n, ce, se_in, 2 * ce, ce)?;
                let (r, x2) = (&se.reduce, &se.expand);
                k.pointwise::<T>(
                    s, se_in, n, r.cin, &r.w, r.cout, &r.bias, r.act, None, se_mid,
                )?;
                k.pointwise::<T>(
                    s, se_mid, n, x2.cin, &x2.w, x2.cout, &x2.bias, x2.act, None, gate,
                )?;
                k.pointwise_gated::<T>(
                    s,
                    f,
                    n * out_px,
                    ce,
                    &pj.w,
                    pj.cout,
                    &pj.bias,
                    pj.act,
                    Some(residual),
                    gate,
                    out_px,
                    se.gate_scale,
                    x_next,
                )?;
            }
            None => k.pointwise::<T>(
                s,
                f,
                n * out_px,
                ce,
                &pj.w,
                pj.cout,
                &pj.bias,
                pj.act,
                Some(residual),
                x_next,
            )?,
        }
        std::mem::swap(x, x_next);
    }
    let h = &dm.head;
    let p = &h.project;
    k.pointwise::<T>(
        s,
        x,
        n * h.pixels,
        p.cin,
        &p.w,
        p.cout,
        &p.bias,
        p.act,
        None,
        e,
    )?;
    k.spatial_mean::<T>(s, e, n, h.pixels, p.cout, &h.pool_scale, mean)?;
    k.cumulative_pool::<T>(s, mean, n, p.cout, slots, t, &mut state.pools[h.pool], cum)?;
    let d1 = &h.dense1;
    k.pointwise::<T>(
        s, cum, n, d1.cin, &d1.w, d1.cout, &d1.bias, d1.act, None, head_mid,
    )?;
    let d2 = &h.dense2;
    k.pointwise::<T>(
        s, head_mid, n, d2.cin, &d2.w, d2.cout, &d2.bias, d2.act, None, logits,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The CUDA backend against the CPU backend on a small synthetic model that has every
    //! layer kind (stem, temporal, SE with fused gate, pooled/projected and identity skips,
    //! head); several steps over shuffled slot subsets, with graphs and without. Skips with
    //! a printed notice without a GPU.

    use super::*;
    use crate::cpu::CpuBackend;
    use crate::model::{
        Block, Depthwise, Head, SqueezeExcite, Stem, StreamBufferShape, Temporal, Variant,
    };
    use std::path::PathBuf;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn f(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
        }
        fn v(&mut self, n: usize, scale: f32) -> Vec<f32> {
            (0..n).map(|_| self.f(-scale, scale)).collect()
        }
    }

    fn pw(r: &mut Rng, cin: usize, cout: usize, act: Activation) -> Pointwise {
        Pointwise {
            cin,
            cout,
            w: r.v(cin * cout, 1.5 / (cin as f32).sqrt()),
            bias: r.v(cout, 0.3),
            act,
        }
    }

    fn tiny_model() -> Model {
        let r = &mut Rng(7);
        let size = 17;
        let sg = Conv2dGeom::same(size, size, 3, 3, 2); // 9x9
        let stem = Stem {
            geom: sg,
            cin: 3,
            cout: 8,
            w: r.v(27 * 8, 0.4),
            bias: r.v(8, 0.2),
            act: Activation::HardSwish,
        };
        let g1 = Conv2dGeom::same(9, 9, 3, 3, 2); // 5x5
        let mut expand_se = pw(r, 8, 16, Activation::Relu6);
        for b in &mut expand_se.bias {
            *b += 3.0; // hard-sigmoid = relu6(x + 3) / 6
        }
        let b1 = Block {
            name: "block0_layer0".into(),
            in_h: 9,
            in_w: 9,
            in_c: 8,
            expand: pw(r, 8, 16, Activation::HardSwish),
            spatial: Depthwise {
                geom: g1,
                c: 16,
                w: r.v(9 * 16, 0.5),
                bias: r.v(16, 0.2),
                act: Activation::HardSwish,
            },
            temporal: Some(Temporal {
                kt: 3,
                pixels: 25,
                c: 16,
                w: r.v(3 * 16, 0.6),
                bias: r.v(16, 0.2),
                act: Activation::None,
                buffer: 0,
            }),
            se: Some(SqueezeExcite {
                c: 16,
                reduce: pw(r, 32, 8, Activation::Swish),
                expand: expand_se,
                gate_scale: 1.0 / 6.0,
                cumulative_first: true,
                pool: 0,
            }),
            project: pw(r, 16, 12, Activation::None),
            skip: Skip::Project {
                pool: Some(Conv2dGeom::same(9, 9, 3, 3, 2)),
                conv: pw(r, 8, 12, Activation::None),
            },
        };
        let g2 = Conv2dGeom::same(5, 5, 5, 5, 1);
        let b2 = Block {
            name: "block1_layer0".into(),
            in_h: 5,
            in_w: 5,
            in_c: 12,
            expand: pw(r, 12, 24, Activation::Swish),
            spatial: Depthwise {
                geom: g2,
                c: 24,
                w: r.v(25 * 24, 0.3),
                bias: r.v(24, 0.2),
                act: Activation::Swish,
            },
            temporal: Some(Temporal {
                kt: 5,
                pixels: 25,
                c: 24,
                w: r.v(5 * 24, 0.5),
                bias: r.v(24, 0.2),
                act: Activation::Relu,
                buffer: 1,
            }),
            se: None,
            project: pw(r, 24, 12, Activation::None),
            skip: Skip::Identity,
        };
        let head = Head {
            pixels: 25,
            project: pw(r, 12, 32, Activation::HardSwish),
            pool_scale: vec![1.0 / 25.0; 32],
            pool: 1,
            dense1: pw(r, 32, 40, Activation::Swish),
            dense2: pw(r, 40, 7, Activation::None),
        };
        Model {
            name: "tiny".into(),
            path: PathBuf::from("tiny.tflite"),
            variant: Variant::Full,
            weights: "synthetic float32".into(),
            input_size: size,
            stem,
            blocks: vec![b1, b2],
            head,
            stream_buffers: vec![
                StreamBufferShape {
                    frames: 2,
                    pixels: 25,
                    c: 16,
                },
                StreamBufferShape {
                    frames: 4,
                    pixels: 25,
                    c: 24,
                },
            ],
            cumulative_pools: vec![16, 32],
        }
    }

    fn compare(precision: Precision, buckets: Vec<usize>, tol: f32) {
        // Only a missing driver/GPU skips; with a GPU, a missing NVRTC fails in `new`.
        if let Err(why) = kc::driver_available() {
            eprintln!("SKIP: no CUDA driver/GPU ({why})");
            return;
        }
        let model = Arc::new(tiny_model());
        let cfg = CudaConfig {
            precision,
            max_batch: 2,
            graph_buckets: buckets,
            ..Default::default()
        };
        let mut gpu = CudaBackend::new(model.clone(), &cfg).expect("cuda backend");
        let mut cpu = CpuBackend::new(model.clone(), 2, 0).expect("cpu backend");
        let classes = model.classes();
        let fb = model.frame_bytes();
        let r = &mut Rng(99);
        for s in 0..6 {
            gpu.open_slot(s).expect("open");
            cpu.open_slot(s).expect("open");
        }
        for step in 0..8 {
            let mut slots: Vec<usize> = (0..6).collect();
            for i in (1..slots.len()).rev() {
                slots.swap(i, (r.next() % (i as u64 + 1)) as usize);
            }
            slots.truncate(1 + (r.next() % 6) as usize);
            if step == 5 {
                gpu.reset_slot(slots[0]).expect("reset");
                cpu.reset_slot(slots[0]).expect("reset");
            }
            let frames: Vec<Vec<u8>> = slots
                .iter()
                .map(|_| (0..fb).map(|_| r.next() as u8).collect())
                .collect();
            let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
            let mut want = vec![0f32; slots.len() * classes];
            let mut got = vec![f32::NAN; slots.len() * classes];
            cpu.step(&slots, &refs, &mut want).expect("cpu step");
            gpu.step(&slots, &refs, &mut got).expect("gpu step");
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol * (1.0 + w.abs()),
                    "{precision:?} step {step} slots {slots:?}: logit {i} got {g}, want {w}"
                );
            }
        }
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --include-ignored (the staged device run does)"]
    fn cuda_f32_matches_cpu_with_graphs() {
        compare(Precision::F32, vec![1, 2, 4, 8], 1e-4);
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --include-ignored (the staged device run does)"]
    fn cuda_f32_matches_cpu_eager() {
        compare(Precision::F32, Vec::new(), 1e-4);
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --include-ignored (the staged device run does)"]
    fn cuda_f16_matches_cpu() {
        compare(Precision::F16, vec![1, 2, 4, 8], 5e-2);
    }
}
