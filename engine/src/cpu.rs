//! [`CpuBackend`]: the float32 multi-threaded backend.
//!
//! One step runs the model layer by layer over the whole batch: pointwise convolutions
//! are GEMMs over every stream's pixels at once, depthwise and pooling kernels split
//! output rows across threads (see `vigil_kernels::cpu`). State stays in the
//! [`SlotPool`]; activations live in a [`Workspace`] sized for the largest batch seen, so
//! a warm step allocates nothing.

use std::sync::Arc;

use vigil_kernels::cpu as k;

use crate::backend::Backend;
use crate::model::{Model, Skip};
use crate::session::SlotPool;
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
    frames_before: Vec<u64>,
}

/// Per-stream sizes of each workspace role, from the model.
#[derive(Debug, Default, Clone, Copy)]
struct Sizes {
    input: usize,
    x: usize,
    skip: usize,
    pooled: usize,
    e: usize,
    d: usize,
    t: usize,
    vec: usize,
    se_in: usize,
    se_mid: usize,
    head_mid: usize,
}

impl Sizes {
    fn of(model: &Model) -> Sizes {
        let mut s = Sizes { input: model.frame_bytes(), ..Default::default() };
        let g = &model.stem.geom;
        s.x = g.out_pixels() * model.stem.cout;
        for b in &model.blocks {
            s.x = s.x.max(b.out_pixels() * b.out_c());
            s.e = s.e.max(b.in_pixels() * b.expand.cout);
            s.d = s.d.max(b.out_pixels() * b.spatial.c);
            if b.temporal.is_some() {
                s.t = s.t.max(b.out_pixels() * b.spatial.c);
            }
            if let Some(se) = &b.se {
                s.vec = s.vec.max(se.c);
                s.se_in = s.se_in.max(2 * se.c);
                s.se_mid = s.se_mid.max(se.reduce.cout);
            }
            if let Skip::Project { pool, conv } = &b.skip {
                s.skip = s.skip.max(b.out_pixels() * conv.cout);
                if let Some(p) = pool {
                    s.pooled = s.pooled.max(p.out_pixels() * conv.cin);
                }
            }
        }
        let h = &model.head;
        s.e = s.e.max(h.pixels * h.project.cout);
        s.vec = s.vec.max(h.project.cout);
        s.head_mid = h.dense1.cout;
        s
    }
}

impl Workspace {
    fn ensure(&mut self, batch: usize, s: &Sizes) {
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
        self.frames_before.reserve(batch);
        self.batch = batch;
    }
}

/// The CPU backend: a rayon pool, the slot pool of stream states, a workspace.
pub struct CpuBackend {
    model: Arc<Model>,
    pool: rayon::ThreadPool,
    threads: usize,
    state: SlotPool,
    ws: Workspace,
    sizes: Sizes,
    /// `1 / pixels` per channel for each SE block's spatial mean
    se_scales: Vec<Vec<f32>>,
}

impl CpuBackend {
    /// `threads = 0` uses one thread per core.
    pub fn new(model: Arc<Model>, threads: usize) -> Result<CpuBackend> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("vigil-cpu-{i}"))
            .build()
            .map_err(|e| EngineError::Backend { backend: "cpu".into(), why: format!("thread pool: {e}") })?;
        let se_scales = model
            .blocks
            .iter()
            .map(|b| vec![1.0 / b.out_pixels() as f32; b.se.as_ref().map(|s| s.c).unwrap_or(0)])
            .collect();
        Ok(CpuBackend {
            state: SlotPool::new(&model),
            sizes: Sizes::of(&model),
            model,
            pool,
            threads,
            ws: Workspace::default(),
            se_scales,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Preallocate the workspace for batches up to `batch` streams.
    pub fn reserve_batch(&mut self, batch: usize) {
        self.ws.ensure(batch, &self.sizes);
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn open_slot(&mut self, slot: usize) -> Result<()> {
        self.state.open(slot);
        Ok(())
    }

    fn reset_slot(&mut self, slot: usize) -> Result<()> {
        if !self.state.is_open(slot) {
            return Err(EngineError::NoSession(slot as u64));
        }
        self.state.reset(slot);
        Ok(())
    }

    fn close_slot(&mut self, slot: usize) {
        self.state.close(slot);
    }

    fn state_bytes_per_slot(&self) -> usize {
        self.state.values_per_slot() * std::mem::size_of::<f32>() + std::mem::size_of::<u64>()
    }

    fn step(&mut self, slots: &[usize], frames: &[&[u8]], logits: &mut [f32]) -> Result<()> {
        let b = slots.len();
        if b == 0 {
            return Ok(());
        }
        if let Some(&s) = slots.iter().find(|&&s| !self.state.is_open(s)) {
            return Err(EngineError::NoSession(s as u64));
        }
        self.ws.ensure(b, &self.sizes);
        let CpuBackend { model, pool, state, ws, se_scales, .. } = self;
        ws.frames_before.clear();
        ws.frames_before.extend(slots.iter().map(|&s| state.frames[s]));
        pool.install(|| run_step(model, se_scales, state, ws, slots, frames, logits));
        for &s in slots {
            state.frames[s] += 1;
        }
        Ok(())
    }
}

fn run_step(
    model: &Model,
    se_scales: &[Vec<f32>],
    state: &mut SlotPool,
    ws: &mut Workspace,
    slots: &[usize],
    frames: &[&[u8]],
    logits: &mut [f32],
) {
    let b = slots.len();
    let Workspace { input, x, x_next, skip, pooled, e, d, t, mean, cum, se_in, se_mid, gate, head_mid, frames_before, .. } =
        ws;
    let tb: &[u64] = frames_before;
    k::preprocess_u8(frames, input);
    let stem = &model.stem;
    k::conv2d(input, b, &stem.geom, stem.cin, &stem.w, &stem.bias, stem.cout, stem.act, x);

    for (bi, blk) in model.blocks.iter().enumerate() {
        let _span = tracing::trace_span!("block", name = %blk.name, batch = b).entered();
        let (in_px, out_px, c) = (blk.in_pixels(), blk.out_pixels(), blk.in_c);
        // residual path
        let residual: &[f32] = match &blk.skip {
            Skip::Identity => x,
            Skip::Project { pool, conv } => {
                match pool {
                    Some(g) => {
                        k::avg_pool2d(x, b, g, c, pooled);
                        k::pointwise(pooled, b * out_px, c, &conv.w, conv.cout, &conv.bias, conv.act, None, skip);
                    }
                    None => k::pointwise(x, b * out_px, c, &conv.w, conv.cout, &conv.bias, conv.act, None, skip),
                }
                skip
            }
        };
        let ex = &blk.expand;
        k::pointwise(x, b * in_px, c, &ex.w, ex.cout, &ex.bias, ex.act, None, e);
        let sp = &blk.spatial;
        k::depthwise2d(e, b, &sp.geom, sp.c, &sp.w, &sp.bias, sp.act, d);
        let ce = sp.c;
        let f: &mut Vec<f32> = match &blk.temporal {
            Some(tl) => {
                let buf = &mut state.buffers[tl.buffer].data;
                k::temporal_causal(d, tl.pixels, tl.c, tl.kt, &tl.w, &tl.bias, tl.act, slots, tb, buf, t);
                t
            }
            None => d,
        };
        if let Some(se) = &blk.se {
            k::spatial_mean(f, b, out_px, ce, &se_scales[bi], mean);
            k::cumulative_pool(mean, ce, slots, tb, &mut state.pools[se.pool].sums, cum);
            for s in 0..b {
                let row = &mut se_in[s * 2 * ce..(s + 1) * 2 * ce];
                let (first, second) = if se.cumulative_first { (&*cum, &*mean) } else { (&*mean, &*cum) };
                row[..ce].copy_from_slice(&first[s * ce..(s + 1) * ce]);
                row[ce..].copy_from_slice(&second[s * ce..(s + 1) * ce]);
            }
            let (r, x2) = (&se.reduce, &se.expand);
            k::pointwise(se_in, b, r.cin, &r.w, r.cout, &r.bias, r.act, None, se_mid);
            k::pointwise(se_mid, b, x2.cin, &x2.w, x2.cout, &x2.bias, x2.act, None, gate);
            k::channel_gate(f, b, out_px, ce, gate, se.gate_scale);
        }
        let pj = &blk.project;
        k::pointwise(f, b * out_px, ce, &pj.w, pj.cout, &pj.bias, pj.act, Some(residual), x_next);
        std::mem::swap(x, x_next);
    }

    let h = &model.head;
    let p = &h.project;
    k::pointwise(x, b * h.pixels, p.cin, &p.w, p.cout, &p.bias, p.act, None, e);
    k::spatial_mean(e, b, h.pixels, p.cout, &h.pool_scale, mean);
    k::cumulative_pool(mean, p.cout, slots, tb, &mut state.pools[h.pool].sums, cum);
    let d1 = &h.dense1;
    k::pointwise(cum, b, d1.cin, &d1.w, d1.cout, &d1.bias, d1.act, None, head_mid);
    let d2 = &h.dense2;
    k::pointwise(head_mid, b, d2.cin, &d2.w, d2.cout, &d2.bias, d2.act, None, logits);
}
