//! [`Runner`]: the CUDA backend for one storage type — the plan, its uploaded weights,
//! the device slot pool, the workspace, the graphs, and the step that ties them together.
//!
//! A step: frames, slot indices and frame counts are written into pinned host buffers and
//! copied to fixed device buffers; the plan runs as one stream-ordered sequence of
//! kernels, replayed from the graph of the batch's bucket (captured the first time that
//! bucket runs) or enqueued eagerly above the largest bucket; the logits come back
//! through a pinned buffer; the step synchronises once, at the end. No carried state
//! crosses the bus: it lives in the device slot pool from open to close.

use std::sync::Arc;

use vigil_kernels::cuda::cudarc::driver::{CudaContext, CudaStream};
use vigil_kernels::cuda::{self as kc, CudaKernels, Storage};

use super::device_model::DeviceWeights;
use super::forward::{enqueue, StepNodes};
use super::graphs::{capture, geometric_buckets, GraphCache};
use super::workspace::{DeviceSlots, Workspace};
use super::{backend_err, kernel_err, CudaConfig, StepStats};
use crate::plan::Plan;
use crate::{EngineError, Result};

pub(super) struct Runner<T: Storage> {
    plan: Plan,
    input_size: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: CudaKernels,
    weights: DeviceWeights<T>,
    ws: Workspace<T>,
    slots: DeviceSlots<T>,
    /// frames processed per engine slot (host side: staged as `t` each step)
    frames: Vec<u64>,
    open: Vec<bool>,
    graphs: GraphCache,
    max_batch: usize,
    device_name: String,
    last: Option<StepStats>,
}

impl<T: Storage> Runner<T> {
    pub(super) fn new(plan: Plan, input_size: usize, cfg: &CudaConfig) -> Result<Runner<T>> {
        let ctx = kc::open_context(cfg.ordinal).map_err(kernel_err)?;
        // One stream, no cross-stream hazards: cudarc's per-buffer event tracking would
        // only add event calls (which must not appear inside graph capture).
        // SAFETY: called before any buffer of this backend exists; all work of this
        // backend is ordered on `stream`.
        unsafe { ctx.disable_event_tracking() };
        kc::nvrtc::nvrtc_available().map_err(kernel_err)?;
        let kernels = CudaKernels::compile(&ctx).map_err(kernel_err)?;
        let stream = ctx.new_stream().map_err(backend_err)?;
        let weights = DeviceWeights::upload(&stream, &plan).map_err(backend_err)?;
        let max_batch = cfg.max_batch.max(1);
        let reserve = cfg.reserve_batch.clamp(1, max_batch);
        let ws = Workspace::new(&ctx, &stream, reserve, &plan).map_err(kernel_err)?;
        let mut slots = DeviceSlots::new(&stream, &plan).map_err(kernel_err)?;
        slots.grow(&stream, 4, 0).map_err(kernel_err)?;
        let buckets = match &cfg.graph_buckets {
            Some(b) => b.clone(),
            None => geometric_buckets(max_batch),
        };
        let device_name = ctx
            .name()
            .unwrap_or_else(|_| format!("device {}", cfg.ordinal));
        stream.synchronize().map_err(backend_err)?;
        Ok(Runner {
            plan,
            input_size,
            ctx,
            stream,
            kernels,
            weights,
            ws,
            slots,
            frames: vec![0; 4],
            open: vec![false; 4],
            graphs: GraphCache::new(&buckets),
            max_batch,
            device_name,
            last: None,
        })
    }

    pub(super) fn name(&self) -> String {
        format!(
            "cuda ({}, {}, {:?})",
            self.device_name,
            self.kernels.arch(),
            T::PRECISION
        )
    }

    pub(super) fn plan(&self) -> &Plan {
        &self.plan
    }

    pub(super) fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub(super) fn last_step(&self) -> Option<StepStats> {
        self.last
    }

    pub(super) fn weight_bytes(&self) -> usize {
        self.weights.bytes()
    }

    pub(super) fn state_bytes_per_slot(&self) -> usize {
        self.slots.bytes_per_slot() + std::mem::size_of::<u64>()
    }

    /// Make room for `engine` engine slots and `scratch` scratch slots.
    fn grow(&mut self, engine: usize, scratch: usize) -> Result<()> {
        if self
            .slots
            .grow(&self.stream, engine, scratch)
            .map_err(kernel_err)?
        {
            // captured graphs hold the old slot pool addresses
            self.graphs.clear();
        }
        let engine = self.slots.engine_slots();
        self.frames.resize(engine, 0);
        self.open.resize(engine, false);
        Ok(())
    }

    pub(super) fn open_slot(&mut self, slot: usize) -> Result<()> {
        if slot >= self.open.len() {
            let want = (slot + 1).max(self.open.len() * 2).max(4);
            self.grow(want, self.slots.scratch_slots())?;
        }
        self.zero_slot(slot)?;
        self.open[slot] = true;
        Ok(())
    }

    fn zero_slot(&mut self, slot: usize) -> Result<()> {
        self.slots.zero(&self.stream, slot).map_err(kernel_err)?;
        self.frames[slot] = 0;
        Ok(())
    }

    pub(super) fn reset_slot(&mut self, slot: usize) -> Result<()> {
        if !self.open.get(slot).copied().unwrap_or(false) {
            return Err(EngineError::NoSession(slot as u64));
        }
        self.zero_slot(slot)
    }

    pub(super) fn close_slot(&mut self, slot: usize) {
        if let Some(o) = self.open.get_mut(slot) {
            *o = false;
        }
    }

    pub(super) fn step(
        &mut self,
        slots: &[usize],
        frames: &[&[u8]],
        logits: &mut [f32],
    ) -> Result<()> {
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
        let (fb, classes) = (self.plan.frame_len(), self.plan.classes());
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
                    size: self.input_size,
                });
            }
        }
        let bucket = self.graphs.bucket(b);
        let n = bucket.unwrap_or(b);
        // Growth doubles (up to what the largest bucket needs), so streams joining one by
        // one reallocate a logarithmic number of times, not at every new bucket.
        if let Some(nb) = bucket {
            // scratch slots for the padding rows of this bucket
            let pad = self.graphs.padding(nb);
            let have = self.slots.scratch_slots();
            if pad > have {
                let most = self.graphs.max_padding();
                self.grow(self.slots.engine_slots(), pad.max(2 * have).min(most))?;
            }
        }
        if n > self.ws.batch {
            let size = n.max(2 * self.ws.batch).min(self.max_batch.max(n));
            self.ws =
                Workspace::new(&self.ctx, &self.stream, size, &self.plan).map_err(kernel_err)?;
            // captured graphs hold the old workspace addresses
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
                hs[i] = s as u32;
                ht[i] = self.frames[s];
            }
            for i in b..n {
                hs[i] = self.slots.scratch_slot(i - b) as u32;
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
        let nodes = match bucket {
            Some(n) => self.replay(n)?,
            None => self.enqueue(n)?,
        };
        let out = self.plan.logits().index();
        {
            let ws = &mut self.ws;
            let hl = ws.h_logits.as_mut_slice().map_err(backend_err)?;
            let dl = ws
                .bufs
                .get(out)
                .ok_or_else(|| backend_err("no logits buffer"))?;
            s.memcpy_dtoh(&dl.slice(..b * classes), &mut hl[..b * classes])
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
        self.last = Some(StepStats {
            batch: b,
            rows: n,
            graph: bucket.is_some(),
            nodes,
            host_to_device_bytes: n
                * (fb + std::mem::size_of::<u32>() + std::mem::size_of::<u64>()),
            device_to_host_bytes: b * classes * std::mem::size_of::<T>(),
        });
        Ok(())
    }

    /// Enqueue the step for `n` rows eagerly.
    fn enqueue(&mut self, n: usize) -> Result<StepNodes> {
        enqueue(
            &self.kernels,
            &self.stream,
            &self.plan,
            &self.weights,
            &mut self.ws,
            &mut self.slots,
            n,
        )
        .map_err(kernel_err)
    }

    /// Launch bucket `n`'s graph, capturing it first if this bucket has none yet.
    fn replay(&mut self, n: usize) -> Result<StepNodes> {
        if self.graphs.get(n).is_none() {
            let Runner {
                kernels,
                stream,
                plan,
                weights,
                ws,
                slots,
                ..
            } = self;
            let (graph, nodes) = capture(stream, || {
                enqueue(kernels, stream, plan, weights, ws, slots, n)
            })
            .map_err(kernel_err)?;
            self.graphs.insert(n, graph, nodes);
        }
        let (graph, nodes) = self
            .graphs
            .get(n)
            .ok_or_else(|| backend_err("graph vanished"))?;
        graph.launch().map_err(backend_err)?;
        Ok(nodes)
    }
}
