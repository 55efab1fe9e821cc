//! [`CpuBackend`]: the multi-threaded CPU backend — one exhaustive `match` over the ops of
//! the model's [`Plan`]. Its kernels run at the CPU's instruction set ([`Isa::active`]:
//! AVX-512, AVX2 or portable, `VIGIL_CPU_ISA` lowers it); the 1x1 GEMMs multiply in fp32
//! or, on AVX-512 BF16, in bf16 with fp32 accumulation ([`GemmPrecision`]); everything
//! else (depthwise, temporal, pools, state) stays fp32.
//!
//! A step splits the batch into micro-batches of a few streams, and runs the
//! micro-batches in parallel, each one op by op through the whole plan: pointwise
//! convolutions are GEMMs over the micro-batch's pixels (weights packed once, at load, per
//! weight of the plan's table), depthwise and pooling kernels split output rows across
//! whatever threads are idle (see `vigil_kernels::cpu`). Small micro-batches keep
//! activations in cache; one stream alone still uses every thread. State stays in the
//! [`SlotPool`] (the batch's states are moved out for the step and put back); activations
//! live in one `Workspace` per concurrent micro-batch — one vector per plan buffer,
//! sized from the plan on first use — so a warm step allocates nothing.

use std::sync::Arc;

use vigil_kernels::cpu::{self as kernels, GemmPrecision, Isa, PackedWeights};

use crate::backend::Backend;
use crate::model::Model;
use crate::plan::{split_output, BufId, Op, Others, Plan, WeightId};
use crate::session::{SlotPool, StreamState};
use crate::{EngineError, Result};

/// Activation buffers for one micro-batch size, one per plan buffer, grown on demand,
/// never shrunk. The logits buffer stays empty: the last op writes the caller's logits.
#[derive(Default)]
struct Workspace {
    batch: usize,
    bufs: Vec<Vec<f32>>,
}

impl Workspace {
    fn ensure(&mut self, batch: usize, plan: &Plan) {
        if batch <= self.batch && self.bufs.len() == plan.buffers().len() {
            return;
        }
        self.bufs.resize_with(plan.buffers().len(), Vec::new);
        for (i, (v, b)) in self.bufs.iter_mut().zip(plan.buffers()).enumerate() {
            let n = if i == plan.logits().index() {
                0
            } else {
                b.elements
            };
            v.resize(batch * n, 0.0);
        }
        self.batch = batch;
    }
}

/// The plan's 1x1 weights packed for `pointwise_packed`, by weight id: each weight that
/// a pointwise op reads, packed once when the backend is built; weights of one-row ops
/// (the head's dense layers) also as int8 where that is exact ([`PackedWeights::attach_int8`]).
fn pack(plan: &Plan, isa: Isa, gemm: GemmPrecision) -> Result<Vec<Option<PackedWeights>>> {
    let mut packed: Vec<Option<PackedWeights>> = vec![None; plan.weights().len()];
    for s in plan.steps() {
        if let Op::Pointwise { w, k, n, rows, .. } = s.op {
            let slot = &mut packed[w.index()];
            if slot.is_none() {
                let mut p =
                    PackedWeights::pack_for(isa, gemm, plan.values(w), n, k).map_err(|e| {
                        EngineError::Precision {
                            precision: gemm.name(),
                            device: "cpu".into(),
                            why: e.to_string(),
                            hint: "use --precision fp32",
                        }
                    })?;
                if rows == 1 {
                    // the head's dense layers: a few rows per step, bound by the bytes
                    // of weights they stream — int8 where the export stored int8
                    p.attach_int8(plan.values(w));
                }
                *slot = Some(p);
            }
        }
    }
    Ok(packed)
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
    plan: Plan,
    /// packed 1x1 weights by weight id
    packed: Vec<Option<PackedWeights>>,
    /// instruction set of the kernels, precision of the 1x1 GEMMs
    isa: Isa,
    gemm: GemmPrecision,
}

impl CpuBackend {
    /// An fp32 backend: `threads = 0` uses one thread per core; `micro_batch = 0` uses
    /// [`DEFAULT_MICRO_BATCH`].
    pub fn new(model: Arc<Model>, threads: usize, micro_batch: usize) -> Result<CpuBackend> {
        CpuBackend::with_precision(model, threads, micro_batch, GemmPrecision::F32)
    }

    /// A backend whose 1x1 GEMMs multiply in `gemm` (bf16 needs AVX-512 BF16 at
    /// [`Isa::active`]; an error otherwise).
    pub fn with_precision(
        model: Arc<Model>,
        threads: usize,
        micro_batch: usize,
        gemm: GemmPrecision,
    ) -> Result<CpuBackend> {
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
        let plan = Plan::lower(&model)?;
        let isa = Isa::active();
        Ok(CpuBackend {
            state: SlotPool::default(),
            packed: pack(&plan, isa, gemm)?,
            isa,
            gemm,
            plan,
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
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The instruction set the kernels run at.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// What the 1x1 GEMMs multiply in.
    pub fn gemm_precision(&self) -> GemmPrecision {
        self.gemm
    }

    /// Names of the weights kept as int8 x per-channel scale for few-row GEMMs
    /// ([`PackedWeights::attach_int8`]), e.g. `head/dense1/w`.
    pub fn int8_weights(&self) -> Vec<&str> {
        self.packed
            .iter()
            .zip(self.plan.weights())
            .filter(|(p, _)| p.as_ref().is_some_and(|p| p.int8().is_some()))
            .map(|(_, w)| w.name.as_str())
            .collect()
    }

    /// The plan this backend walks.
    pub fn plan(&self) -> &Plan {
        &self.plan
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
            ws.ensure(mb, &self.plan);
        }
        self.batch.reserve(batch);
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!(
            "cpu ({} threads, {}, {})",
            self.threads,
            self.isa,
            self.gemm.name()
        )
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
            pool,
            workspaces,
            plan,
            packed,
            ..
        } = self;
        let (plan, packed): (&Plan, &[Option<PackedWeights>]) = (plan, packed);
        let ran = pool.install(|| {
            use rayon::prelude::*;
            batch
                .par_chunks_mut(per_group)
                .zip(frames.par_chunks(per_group))
                .zip(logits.par_chunks_mut(per_group * classes))
                .zip(workspaces.par_iter_mut())
                .try_for_each(|(((states, frames), logits), ws)| {
                    for ((states, frames), logits) in states
                        .chunks_mut(mb)
                        .zip(frames.chunks(mb))
                        .zip(logits.chunks_mut(mb * classes))
                    {
                        let _span =
                            tracing::trace_span!("micro_batch", streams = states.len()).entered();
                        run_step(plan, packed, states, ws, frames, logits)?;
                    }
                    Ok(())
                })
        });
        let advance = ran.is_ok() as u64;
        for (mut st, &s) in batch.drain(..).zip(slots) {
            st.frames += advance;
            self.state.put(s, st);
        }
        self.batch = batch;
        ran
    }
}

/// One micro-batch through the whole plan: one exhaustive `match` over its ops. Per-stream
/// state is touched one stream at a time (`temporal_causal` / `cumulative_pool` with a
/// one-slot pool: the stream's own).
fn run_step(
    plan: &Plan,
    packed: &[Option<PackedWeights>],
    states: &mut [StreamState],
    ws: &mut Workspace,
    frames: &[&[u8]],
    logits: &mut [f32],
) -> Result<()> {
    let b = states.len();
    let bufs = &mut ws.bufs;
    for (i, step) in plan.steps().iter().enumerate() {
        let _span = tracing::trace_span!("op", layer = %step.layer, role = step.role).entered();
        let bad = |why: &str| EngineError::Backend {
            backend: "cpu".into(),
            why: format!("plan op {i} ({}/{}): {why}", step.layer, step.role),
        };
        let w = |id: WeightId| plan.values(id);
        match step.op {
            Op::PreprocessU8 { y, .. } => {
                let (_, y) = io(plan, bufs, &mut *logits, y).ok_or_else(|| bad("no output"))?;
                kernels::preprocess_u8(frames, y);
            }
            Op::Conv2d {
                x,
                ref geom,
                cin,
                cout,
                w: wt,
                bias,
                act,
                y,
            } => {
                let (o, y) = io(plan, bufs, &mut *logits, y).ok_or_else(|| bad("no output"))?;
                kernels::conv2d(
                    read(&o, x, &bad)?,
                    b,
                    geom,
                    cin,
                    w(wt),
                    w(bias),
                    cout,
                    act,
                    y,
                );
            }
            Op::Pointwise {
                x,
                rows,
                k,
                w: wt,
                bias,
                act,
                residual,
                gate,
                y,
                ..
            } => {
                if let Some(g) = gate {
                    // channel_gate in place: the plan guarantees x is dead after this op
                    let (o, xs) = split_output(bufs, x).ok_or_else(|| bad("input out of range"))?;
                    kernels::channel_gate(xs, b, rows, k, read(&o, g.gate, &bad)?, g.scale);
                }
                let pw = packed
                    .get(wt.index())
                    .and_then(Option::as_ref)
                    .ok_or_else(|| bad("weights not packed"))?;
                let (o, y) = io(plan, bufs, &mut *logits, y).ok_or_else(|| bad("no output"))?;
                let residual = match residual {
                    Some(r) => Some(read(&o, r, &bad)?),
                    None => None,
                };
                kernels::pointwise_packed(
                    read(&o, x, &bad)?,
                    b * rows,
                    pw,
                    w(bias),
                    act,
                    residual,
                    y,
                );
            }
            Op::Depthwise2d {
                x,
                ref geom,
                c,
                w: wt,
                bias,
                act,
                y,
            } => {
                let (o, y) = io(plan, bufs, &mut *logits, y).ok_or_else(|| bad("no output"))?;
                kernels::depthwise2d(read(&o, x, &bad)?, b, geom, c, w(wt), w(bias), act, y);
            }
            Op::AvgPool2d { x, ref geom, c, y } => {
                let (o, y) = io(plan, bufs, &mut *logits, y).ok_or_else(|| bad("no output"))?;
                kernels::avg_pool2d(read(&o, x, &bad)?, b, geom, c, y);
            }
            Op::TemporalCausal {
                x,
                pixels,
                c,
                kt,
                w: wt,
                bias,
                act,
                buffer,
                y,
            } => {
                let (o, y) = io(plan, bufs, &mut *logits, y).ok_or_else(|| bad("no output"))?;
                let (x, n) = (read(&o, x, &bad)?, pixels * c);
                for (s, st) in states.iter_mut().enumerate() {
                    let ring = &mut st
                        .buffers
                        .get_mut(buffer)
                        .ok_or_else(|| bad("no such stream buffer"))?
                        .data;
                    kernels::temporal_causal(
                        &x[s * n..(s + 1) * n],
                        pixels,
                        c,
                        kt,
                        w(wt),
                        w(bias),
                        act,
                        &[0],
                        &[st.frames],
                        ring,
                        &mut y[s * n..(s + 1) * n],
                    );
                }
            }
            Op::SpatialMean {
                x,
                pixels,
                c,
                scale,
                y,
            } => {
                let (o, y) = io(plan, bufs, &mut *logits, y).ok_or_else(|| bad("no output"))?;
                kernels::spatial_mean(read(&o, x, &bad)?, b, pixels, c, w(scale), y);
            }
            Op::CumulativePool { x, c, pool, y } => {
                let (o, y) = io(plan, bufs, &mut *logits, y).ok_or_else(|| bad("no output"))?;
                let x = read(&o, x, &bad)?;
                for (s, st) in states.iter_mut().enumerate() {
                    let sums = &mut st
                        .pools
                        .get_mut(pool)
                        .ok_or_else(|| bad("no such cumulative pool"))?
                        .sums;
                    let r = s * c..(s + 1) * c;
                    kernels::cumulative_pool(&x[r.clone()], c, &[0], &[st.frames], sums, &mut y[r]);
                }
            }
            Op::Concat {
                first,
                first_len,
                second,
                second_len,
                y,
            } => {
                let (o, y) = io(plan, bufs, &mut *logits, y).ok_or_else(|| bad("no output"))?;
                let (a, z) = (read(&o, first, &bad)?, read(&o, second, &bad)?);
                let row = first_len + second_len;
                for (s, out) in y[..b * row].chunks_exact_mut(row).enumerate() {
                    out[..first_len].copy_from_slice(&a[s * first_len..(s + 1) * first_len]);
                    out[first_len..].copy_from_slice(&z[s * second_len..(s + 1) * second_len]);
                }
            }
        }
    }
    Ok(())
}

/// The op's output — the caller's logits for the plan's logits buffer — beside read access
/// to every other buffer; `None` when `y` is out of range.
fn io<'a>(
    plan: &Plan,
    bufs: &'a mut [Vec<f32>],
    logits: &'a mut [f32],
    y: BufId,
) -> Option<(Others<'a, Vec<f32>>, &'a mut [f32])> {
    let (others, out) = split_output(bufs, y)?;
    Some((
        others,
        if y == plan.logits() {
            logits
        } else {
            out.as_mut_slice()
        },
    ))
}

/// Buffer `x` among the `others` of an op (an op never reads its own output).
fn read<'a>(
    others: &Others<'a, Vec<f32>>,
    x: BufId,
    bad: &impl Fn(&str) -> EngineError,
) -> Result<&'a [f32]> {
    others
        .get(x)
        .map(Vec::as_slice)
        .ok_or_else(|| bad("reads its own output"))
}
