//! [`CpuBackend`]: the float32 multi-threaded backend.
//!
//! A step splits the batch into micro-batches of a few streams, and runs the
//! micro-batches in parallel, each one layer by layer through the whole model: pointwise
//! convolutions are GEMMs over the micro-batch's pixels, depthwise and pooling kernels
//! split output rows across whatever threads are idle (see `vigil_kernels::cpu`). Small
//! micro-batches keep activations in cache; one stream alone still uses every thread.
//! State stays in the [`SlotPool`] (the batch's states are moved out for the step and put
//! back); activations live in one [`Workspace`] per concurrent micro-batch, sized on
//! first use, so a warm step allocates nothing.

use std::sync::Arc;

use vigil_kernels::cpu::{self as k, PackedWeights};

use crate::backend::Backend;
use crate::model::{ActivationSizes, Model, Pointwise, Skip};
use crate::session::{SlotPool, StreamState};
use crate::{EngineError, Result};

/// Activation buffers for one batch size, grown on demand, never shrunk.
#[derive(Default)]
struct Workspace {
    batch: usize,
    input: Vec<f32>,
    x: Vec<f32>,
    x_next: Vec<f32>,
    skip: Vec<f32>,
    pooled: Vec<f32>,
    e: Vec<f32>,
    d: Vec<f32>,
    t: Vec<f32>,
    mean: Vec<f32>,
    cum: Vec<f32>,
    se_in: Vec<f32>,
    se_mid: Vec<f32>,
    gate: Vec<f32>,
    head_mid: Vec<f32>,
}

impl Workspace {
    fn ensure(&mut self, batch: usize, s: &ActivationSizes) {
        if batch <= self.batch {
            return;
        }
        let grow = |v: &mut Vec<f32>, n: usize| v.resize(batch * n, 0.0);
        grow(&mut self.input, s.input);
        grow(&mut self.x, s.x);
        grow(&mut self.x_next, s.x);
        grow(&mut self.skip, s.skip);
        grow(&mut self.pooled, s.pooled);
        grow(&mut self.e, s.e);
        grow(&mut self.d, s.d);
        grow(&mut self.t, s.t);
        grow(&mut self.mean, s.vec);
        grow(&mut self.cum, s.vec);
        grow(&mut self.se_in, s.se_in);
        grow(&mut self.se_mid, s.se_mid);
        grow(&mut self.gate, s.vec);
        grow(&mut self.head_mid, s.head_mid);
        self.batch = batch;
    }
}

/// The model's 1x1 convolutions with weights packed for `pointwise_packed`, in the
/// model's order (packed once, when the backend is built).
struct Packed {
    blocks: Vec<PackedBlock>,
    head: [PackedWeights; 3],
}

struct PackedBlock {
    expand: PackedWeights,
    project: PackedWeights,
    skip: Option<PackedWeights>,
    se: Option<[PackedWeights; 2]>,
}

fn pack(p: &Pointwise) -> PackedWeights {
    PackedWeights::pack(&p.w, p.cout, p.cin)
}

impl Packed {
    fn of(model: &Model) -> Packed {
        Packed {
            blocks: model
                .blocks
                .iter()
                .map(|b| PackedBlock {
                    expand: pack(&b.expand),
                    project: pack(&b.project),
                    skip: match &b.skip {
                        Skip::Project { conv, .. } => Some(pack(conv)),
                        Skip::Identity => None,
                    },
                    se: b.se.as_ref().map(|se| [pack(&se.reduce), pack(&se.expand)]),
                })
                .collect(),
            head: [
                pack(&model.head.project),
                pack(&model.head.dense1),
                pack(&model.head.dense2),
            ],
        }
    }
}

/// Default largest micro-batch. Measured on a 2-core x86 machine (BENCHMARKS.md): one
/// stream per micro-batch keeps the early layers' activations (~0.7 MB) in L2 and was
/// fastest; larger micro-batches amortise GEMM packing but spill the caches.
pub const DEFAULT_MICRO_BATCH: usize = 1;

/// The CPU backend: a rayon pool, the slot pool of stream states, a workspace.
pub struct CpuBackend {
    model: Arc<Model>,
    pool: rayon::ThreadPool,
    threads: usize,
    state: SlotPool,
    workspaces: Vec<Workspace>,
    micro_batch: usize,
    /// the batch's states, moved out of the pool for one step (capacity reused)
    batch: Vec<StreamState>,
    sizes: ActivationSizes,
    packed: Packed,
    /// `1 / pixels` per channel for each SE block's spatial mean
    se_scales: Vec<Vec<f32>>,
}

impl CpuBackend {
    /// `threads = 0` uses one thread per core; `micro_batch = 0` uses
    /// [`DEFAULT_MICRO_BATCH`].
    pub fn new(model: Arc<Model>, threads: usize, micro_batch: usize) -> Result<CpuBackend> {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("vigil-cpu-{i}"))
            .build()
            .map_err(|e| EngineError::Backend {
                backend: "cpu".into(),
                why: format!("thread pool: {e}"),
            })?;
        let se_scales = model
            .blocks
            .iter()
            .map(|b| vec![1.0 / b.out_pixels() as f32; b.se.as_ref().map(|s| s.c).unwrap_or(0)])
            .collect();
        Ok(CpuBackend {
            state: SlotPool::default(),
            sizes: model.activation_sizes(),
            packed: Packed::of(&model),
            model,
            pool,
            threads,
            workspaces: Vec::new(),
            micro_batch: if micro_batch == 0 {
                DEFAULT_MICRO_BATCH
            } else {
                micro_batch
            },
            batch: Vec::new(),
            se_scales,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How a batch of `b` streams is split: `(streams per group, streams per micro-batch)`.
    /// One group per thread (contiguous streams, one workspace each, reused micro-batch
    /// after micro-batch so it stays hot); micro-batches of at most `self.micro_batch`.
    fn split(&self, b: usize) -> (usize, usize) {
        let per_group = b.div_ceil(self.threads).max(1);
        (per_group, per_group.min(self.micro_batch).max(1))
    }

    /// Preallocate workspaces for batches up to `batch` streams.
    pub fn reserve_batch(&mut self, batch: usize) {
        let (per_group, mb) = self.split(batch);
        let groups = batch.div_ceil(per_group);
        if self.workspaces.len() < groups {
            self.workspaces.resize_with(groups, Workspace::default);
        }
        for ws in &mut self.workspaces[..groups] {
            ws.ensure(mb, &self.sizes);
        }
        self.batch.reserve(batch);
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn open_slot(&mut self, slot: usize) -> Result<()> {
        self.state.open(slot, &self.model);
        Ok(())
    }

    fn reset_slot(&mut self, slot: usize) -> Result<()> {
        if !self.state.reset(slot) {
            return Err(EngineError::NoSession(slot as u64));
        }
        Ok(())
    }

    fn close_slot(&mut self, slot: usize) {
        self.state.close(slot);
    }

    fn state_bytes_per_slot(&self) -> usize {
        self.model.state_values() * std::mem::size_of::<f32>() + std::mem::size_of::<u64>()
    }

    fn step(&mut self, slots: &[usize], frames: &[&[u8]], logits: &mut [f32]) -> Result<()> {
        let b = slots.len();
        if b == 0 {
            return Ok(());
        }
        if let Some(&s) = slots.iter().find(|&&s| !self.state.is_open(s)) {
            return Err(EngineError::NoSession(s as u64));
        }
        self.reserve_batch(b);
        let (per_group, mb) = self.split(b);
        let classes = self.model.classes();
        let mut batch = std::mem::take(&mut self.batch);
        for &s in slots {
            // open (checked above) and distinct (the engine checks), so always Some
            if let Some(st) = self.state.take(s) {
                batch.push(st);
            }
        }
        if batch.len() != b {
            for (st, &s) in batch.drain(..).zip(slots) {
                self.state.put(s, st);
            }
            self.batch = batch;
            return Err(EngineError::Batch(
                "a slot appears twice in the batch".into(),
            ));
        }
        let CpuBackend {
            model,
            pool,
            workspaces,
            se_scales,
            packed,
            ..
        } = self;
        let (model, se_scales, packed): (&Model, &[Vec<f32>], &Packed) = (model, se_scales, packed);
        pool.install(|| {
            use rayon::prelude::*;
            batch
                .par_chunks_mut(per_group)
                .zip(frames.par_chunks(per_group))
                .zip(logits.par_chunks_mut(per_group * classes))
                .zip(workspaces.par_iter_mut())
                .for_each(|(((states, frames), logits), ws)| {
                    for ((states, frames), logits) in states
                        .chunks_mut(mb)
                        .zip(frames.chunks(mb))
                        .zip(logits.chunks_mut(mb * classes))
                    {
                        let _span =
                            tracing::trace_span!("micro_batch", streams = states.len()).entered();
                        run_step(model, packed, se_scales, states, ws, frames, logits);
                    }
                });
        });
        for (mut st, &s) in batch.drain(..).zip(slots) {
            st.frames += 1;
            self.state.put(s, st);
        }
        self.batch = batch;
        Ok(())
    }
}

/// One micro-batch through the whole model. Per-stream state is touched one stream at a
/// time (`temporal_causal` / `cumulative_pool` with a one-slot pool: the stream's own).
fn run_step(
    model: &Model,
    packed: &Packed,
    se_scales: &[Vec<f32>],
    states: &mut [StreamState],
    ws: &mut Workspace,
    frames: &[&[u8]],
    logits: &mut [f32],
) {
    let b = states.len();
    let Workspace {
        input,
        x,
        x_next,
        skip,
        pooled,
        e,
        d,
        t,
        mean,
        cum,
        se_in,
        se_mid,
        gate,
        head_mid,
        ..
    } = ws;
    k::preprocess_u8(frames, input);
    let stem = &model.stem;
    k::conv2d(
        input, b, &stem.geom, stem.cin, &stem.w, &stem.bias, stem.cout, stem.act, x,
    );

    for (bi, (blk, pk)) in model.blocks.iter().zip(&packed.blocks).enumerate() {
        let _span = tracing::trace_span!("block", name = %blk.name, batch = b).entered();
        let (in_px, out_px, c) = (blk.in_pixels(), blk.out_pixels(), blk.in_c);
        // residual path
        let residual: &[f32] = match (&blk.skip, &pk.skip) {
            (Skip::Project { pool, conv }, Some(pconv)) => {
                let src: &[f32] = match pool {
                    Some(g) => {
                        k::avg_pool2d(x, b, g, c, pooled);
                        pooled
                    }
                    None => x,
                };
                conv1x1(conv, pconv, src, b * out_px, None, skip);
                skip
            }
            _ => x,
        };
        conv1x1(&blk.expand, &pk.expand, x, b * in_px, None, e);
        let sp = &blk.spatial;
        k::depthwise2d(e, b, &sp.geom, sp.c, &sp.w, &sp.bias, sp.act, d);
        let ce = sp.c;
        let f: &mut Vec<f32> = match &blk.temporal {
            Some(tl) => {
                let n = tl.pixels * tl.c;
                for (s, st) in states.iter_mut().enumerate() {
                    let buf = &mut st.buffers[tl.buffer].data;
                    let (cur, out) = (&d[s * n..(s + 1) * n], &mut t[s * n..(s + 1) * n]);
                    let frames = [st.frames];
                    k::temporal_causal(
                        cur,
                        tl.pixels,
                        tl.c,
                        tl.kt,
                        &tl.w,
                        &tl.bias,
                        tl.act,
                        &[0],
                        &frames,
                        buf,
                        out,
                    );
                }
                t
            }
            None => d,
        };
        if let (Some(se), Some([preduce, pexpand])) = (&blk.se, &pk.se) {
            k::spatial_mean(f, b, out_px, ce, &se_scales[bi], mean);
            cumulative(states, se.pool, ce, mean, cum);
            for s in 0..b {
                let row = &mut se_in[s * 2 * ce..(s + 1) * 2 * ce];
                let (first, second) = if se.cumulative_first {
                    (&*cum, &*mean)
                } else {
                    (&*mean, &*cum)
                };
                row[..ce].copy_from_slice(&first[s * ce..(s + 1) * ce]);
                row[ce..].copy_from_slice(&second[s * ce..(s + 1) * ce]);
            }
            conv1x1(&se.reduce, preduce, se_in, b, None, se_mid);
            conv1x1(&se.expand, pexpand, se_mid, b, None, gate);
            k::channel_gate(f, b, out_px, ce, gate, se.gate_scale);
        }
        conv1x1(
            &blk.project,
            &pk.project,
            f,
            b * out_px,
            Some(residual),
            x_next,
        );
        std::mem::swap(x, x_next);
    }

    let h = &model.head;
    let [pproject, pdense1, pdense2] = &packed.head;
    conv1x1(&h.project, pproject, x, b * h.pixels, None, e);
    k::spatial_mean(e, b, h.pixels, h.project.cout, &h.pool_scale, mean);
    cumulative(states, h.pool, h.project.cout, mean, cum);
    conv1x1(&h.dense1, pdense1, cum, b, None, head_mid);
    conv1x1(&h.dense2, pdense2, head_mid, b, None, logits);
}

/// One 1x1 convolution (or dense layer) over `m` rows with its packed weights.
fn conv1x1(
    layer: &Pointwise,
    packed: &PackedWeights,
    x: &[f32],
    m: usize,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    k::pointwise_packed(x, m, packed, &layer.bias, layer.act, residual, y);
}

/// `cumulative_pool` for each stream of a micro-batch, on its own pool `pool`.
fn cumulative(states: &mut [StreamState], pool: usize, c: usize, mean: &[f32], cum: &mut [f32]) {
    for (s, st) in states.iter_mut().enumerate() {
        let range = s * c..(s + 1) * c;
        k::cumulative_pool(
            &mean[range.clone()],
            c,
            &[0],
            &[st.frames],
            &mut st.pools[pool].sums,
            &mut cum[range],
        );
    }
}
