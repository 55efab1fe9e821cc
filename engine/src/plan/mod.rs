//! [`Plan`]: the network lowered once into a flat list of ops over named activation
//! buffers — the one description of a step that every backend follows.
//!
//! Main types:
//! - [`Plan`] — built by [`Plan::lower`] from a [`crate::Model`] and checked before it is
//!   handed out (every read sees the value the op expects, no op writes a buffer it reads,
//!   every weight and state index fits its op). Printable (`{plan}`) for debugging.
//! - [`Step`] / [`Op`] — one kernel launch in contract terms, with the layer and role it
//!   implements. Op names and contracts are the kernels' (`vigil_kernels::cpu` and the
//!   `.cu` files): `preprocess_u8`, `conv2d`, `pointwise` (optional residual, optional
//!   squeeze-excitation [`Gate`]), `depthwise2d`, `avg_pool2d`, `temporal_causal`,
//!   `spatial_mean`, `cumulative_pool`, and `concat` (the SE input). The CPU backend, the
//!   CUDA backend and the GPU performance model (`roofline`) are each one exhaustive
//!   `match` over [`Op`]: an op a backend forgets does not compile.
//! - [`Buffer`] / [`BufId`] — activation buffers with their per-stream element count
//!   (the largest value any op writes there); a backend sizes its workspace as
//!   `batch x elements` per buffer and nothing else. Buffers are named by role (`x0`/`x1`
//!   ping-pong between blocks, `expanded`, `spatial`, ...) and reused layer after layer,
//!   which keeps a CPU workspace hot.
//! - [`Weight`] / [`WeightId`] / [`WeightClass`] — the weight table: each tensor once,
//!   so the CUDA backend uploads each once and the CPU backend packs each 1x1 weight once.
//! - [`OpCost`] — FLOPs and bytes moved per stream (weights per step) of an op, the
//!   input of a GPU performance model.
//! - [`split_output`] / [`Others`] — the op's output buffer, mutable, beside read access
//!   to every other buffer of a backend's buffer list (no aliasing, no unsafe).
//!
//! Submodules: `lower` ([`Plan::lower`]: the model's layers in step order), `check` (the
//! invariants a plan is checked against before it is handed out), `display` (`{plan}`).
//!
//! Adding an op (a fused kernel, say): a variant of [`Op`] stating its contract, its arms
//! in the methods of [`Op`], its place in `lower`; the compiler then lists every backend
//! `match` (CPU, CUDA, roofline) that lacks it.
//!
//! State: ops name the stream buffer ([`Op::TemporalCausal`]) or cumulative pool
//! ([`Op::CumulativePool`]) they carry by its index in [`Plan::stream_buffers`] /
//! [`Plan::cumulative_pools`]; where a stream's state lives is the backend's business.

use vigil_kernels::{Activation, Conv2dGeom};

use crate::model::StreamBufferShape;

mod check;
mod display;
mod lower;
#[cfg(test)]
mod tests;

/// Bytes of step inputs a state-carrying kernel reads per stream: its slot index (u32)
/// and frame count (u64).
pub const STEP_INDEX_BYTES: usize = 12;

/// An activation buffer of a [`Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(usize);

impl BufId {
    pub fn index(self) -> usize {
        self.0
    }
}

/// A tensor of a [`Plan`]'s weight table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightId(usize);

impl WeightId {
    pub fn index(self) -> usize {
        self.0
    }
}

/// One activation buffer: `elements` values per stream of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    pub name: &'static str,
    pub elements: usize,
}

/// How a backend stores a weight: in the step's storage type (conv and GEMM weights:
/// fp16 or fp32 on the GPU) or always as fp32 (biases, scales).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightClass {
    Storage,
    F32,
}

/// One tensor of the weight table, float32 as imported.
#[derive(Clone, PartialEq)]
pub struct Weight {
    /// e.g. `block2_layer0/expand/w`
    pub name: String,
    pub class: WeightClass,
    /// the layout the op's contract states, e.g. `[n, k]` for a 1x1 conv
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Weight({} {:?} {:?}, {} values)",
            self.name,
            self.class,
            self.shape,
            self.values.len()
        )
    }
}

/// The squeeze-excitation gate of a gated [`Op::Pointwise`]: the GEMM's input row `x[b,
/// p, :]` is multiplied by `scale * gate[b, :]` first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// `[k]` per stream
    pub gate: BufId,
    pub scale: f32,
}

/// Which piece of carried state an op reads and updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRef {
    /// index into [`Plan::stream_buffers`]
    StreamBuffer(usize),
    /// index into [`Plan::cumulative_pools`]
    CumulativePool(usize),
}

/// One kernel launch of a step, in the kernels' contract terms. Shapes are per stream;
/// a backend runs every op over the whole batch (`B` streams, row-independent).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `preprocess_u8`: the step's frames (RGB u8 HWC, `len` bytes per stream) → `y =
    /// frame / 255`.
    PreprocessU8 { len: usize, y: BufId },
    /// `conv2d` (the stem): `x [in_h, in_w, cin]`, `w [k_h, k_w, cin, cout]` (HWIO),
    /// `bias [cout]` → `y [out_h, out_w, cout] = act(conv + bias)`.
    Conv2d {
        x: BufId,
        geom: Conv2dGeom,
        cin: usize,
        cout: usize,
        w: WeightId,
        bias: WeightId,
        act: Activation,
        y: BufId,
    },
    /// `pointwise`: a 1x1 conv (or dense layer) as a GEMM over `rows` rows per stream:
    /// `y [rows, n] = act(x' w^T + bias) + residual` with `x [rows, k]`, `w [n, k]`,
    /// where `x' = x`, or with a [`Gate`], `x'[p, :] = x[p, :] * scale * gate[:]`. The
    /// CUDA backend fuses the gate into the GEMM's A operand (`pointwise_gated`); the CPU
    /// backend applies `channel_gate` to `x` in place first, which is why a gated op's
    /// `x` is dead afterwards (checked by the plan).
    Pointwise {
        x: BufId,
        rows: usize,
        k: usize,
        n: usize,
        w: WeightId,
        bias: WeightId,
        act: Activation,
        residual: Option<BufId>,
        gate: Option<Gate>,
        y: BufId,
    },
    /// `depthwise2d`: `x [in_h, in_w, c]`, `w [k_h, k_w, c]`, `bias [c]` → `y [out_h,
    /// out_w, c] = act(dwconv + bias)`.
    Depthwise2d {
        x: BufId,
        geom: Conv2dGeom,
        c: usize,
        w: WeightId,
        bias: WeightId,
        act: Activation,
        y: BufId,
    },
    /// `avg_pool2d` (TF SAME, padded taps not counted): `x [in_h, in_w, c]` → `y [out_h,
    /// out_w, c]`.
    AvgPool2d {
        x: BufId,
        geom: Conv2dGeom,
        c: usize,
        y: BufId,
    },
    /// `temporal_causal`: `y [pixels, c] = act(sum_j w[j] * frame(t - kt + 1 + j) +
    /// bias)` over the stream's ring of its last `kt - 1` inputs (stream buffer `buffer`,
    /// `[kt - 1, pixels, c]`), then `x` (this frame) replaces the oldest ring entry.
    TemporalCausal {
        x: BufId,
        pixels: usize,
        c: usize,
        kt: usize,
        w: WeightId,
        bias: WeightId,
        act: Activation,
        buffer: usize,
        y: BufId,
    },
    /// `spatial_mean`: `y [c] = scale[c] * sum_p x[p, c]`.
    SpatialMean {
        x: BufId,
        pixels: usize,
        c: usize,
        scale: WeightId,
        y: BufId,
    },
    /// `cumulative_pool`: the stream's running sums (cumulative pool `pool`, `[c]`,
    /// fp32) `+= x`, then `y = sums / frames so far`.
    CumulativePool {
        x: BufId,
        c: usize,
        pool: usize,
        y: BufId,
    },
    /// `concat`: `y [first_len + second_len] = [first ; second]` (the SE input).
    Concat {
        first: BufId,
        first_len: usize,
        second: BufId,
        second_len: usize,
        y: BufId,
    },
}

/// What an op costs per frame of one stream (weights: per step, shared by the batch).
/// Bytes count each tensor read or written once (no cache reuse across ops).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpCost {
    /// useful FLOPs per stream (multiply-add = 2)
    pub flops: f64,
    /// activation bytes read per stream, step inputs (frames, slot index, frame count)
    /// included
    pub act_read: f64,
    /// activation bytes written per stream
    pub act_write: f64,
    /// carried-state bytes read / written per stream
    pub state_read: f64,
    pub state_write: f64,
    /// weight, bias and scale bytes read per step
    pub weight_bytes: f64,
}

impl Op {
    /// The kernel family (`.cu` file / CPU twin) that executes the op.
    pub fn kernel(&self) -> &'static str {
        match self {
            Op::PreprocessU8 { .. } => "preprocess_u8",
            Op::Conv2d { .. } => "conv2d",
            Op::Pointwise { .. } => "pointwise",
            Op::Depthwise2d { .. } => "depthwise2d",
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::TemporalCausal { .. } => "temporal_causal",
            Op::SpatialMean { .. } => "spatial_mean",
            Op::CumulativePool { .. } => "cumulative_pool",
            Op::Concat { .. } => "concat",
        }
    }

    /// The buffers the op reads and how many values per stream it reads from each.
    pub fn inputs(&self) -> [Option<(BufId, usize)>; 3] {
        match *self {
            Op::PreprocessU8 { .. } => [None, None, None],
            Op::Conv2d { x, geom, cin, .. } => [Some((x, geom.in_pixels() * cin)), None, None],
            Op::Pointwise {
                x,
                rows,
                k,
                n,
                residual,
                gate,
                ..
            } => [
                Some((x, rows * k)),
                residual.map(|r| (r, rows * n)),
                gate.map(|g| (g.gate, k)),
            ],
            Op::Depthwise2d { x, geom, c, .. } | Op::AvgPool2d { x, geom, c, .. } => {
                [Some((x, geom.in_pixels() * c)), None, None]
            }
            Op::TemporalCausal { x, pixels, c, .. } | Op::SpatialMean { x, pixels, c, .. } => {
                [Some((x, pixels * c)), None, None]
            }
            Op::CumulativePool { x, c, .. } => [Some((x, c)), None, None],
            Op::Concat {
                first,
                first_len,
                second,
                second_len,
                ..
            } => [Some((first, first_len)), Some((second, second_len)), None],
        }
    }

    /// The buffer the op writes and how many values per stream.
    pub fn output(&self) -> (BufId, usize) {
        match *self {
            Op::PreprocessU8 { len, y } => (y, len),
            Op::Conv2d { geom, cout, y, .. } => (y, geom.out_pixels() * cout),
            Op::Pointwise { rows, n, y, .. } => (y, rows * n),
            Op::Depthwise2d { geom, c, y, .. } | Op::AvgPool2d { geom, c, y, .. } => {
                (y, geom.out_pixels() * c)
            }
            Op::TemporalCausal { pixels, c, y, .. } => (y, pixels * c),
            Op::SpatialMean { c, y, .. } | Op::CumulativePool { c, y, .. } => (y, c),
            Op::Concat {
                first_len,
                second_len,
                y,
                ..
            } => (y, first_len + second_len),
        }
    }

    /// The weights the op reads: id, how it is stored, and how many values it must hold.
    pub fn weights(&self) -> [Option<(WeightId, WeightClass, usize)>; 2] {
        use WeightClass::{Storage, F32};
        match *self {
            Op::PreprocessU8 { .. }
            | Op::AvgPool2d { .. }
            | Op::CumulativePool { .. }
            | Op::Concat { .. } => [None, None],
            Op::Conv2d {
                geom,
                cin,
                cout,
                w,
                bias,
                ..
            } => [
                Some((w, Storage, geom.k_h * geom.k_w * cin * cout)),
                Some((bias, F32, cout)),
            ],
            Op::Pointwise { k, n, w, bias, .. } => {
                [Some((w, Storage, n * k)), Some((bias, F32, n))]
            }
            Op::Depthwise2d {
                geom, c, w, bias, ..
            } => [
                Some((w, Storage, geom.k_h * geom.k_w * c)),
                Some((bias, F32, c)),
            ],
            Op::TemporalCausal { c, kt, w, bias, .. } => {
                [Some((w, Storage, kt * c)), Some((bias, F32, c))]
            }
            Op::SpatialMean { c, scale, .. } => [Some((scale, F32, c)), None],
        }
    }

    /// The carried state the op reads and updates, if any.
    pub fn state(&self) -> Option<StateRef> {
        match *self {
            Op::TemporalCausal { buffer, .. } => Some(StateRef::StreamBuffer(buffer)),
            Op::CumulativePool { pool, .. } => Some(StateRef::CumulativePool(pool)),
            _ => None,
        }
    }

    /// Useful FLOPs for one frame of one stream (multiply-add = 2; a mean's add and an
    /// average pool's add count 1; copies 0).
    pub fn flops(&self) -> f64 {
        let f = match *self {
            Op::PreprocessU8 { len, .. } => len,
            Op::Conv2d {
                geom, cin, cout, ..
            } => 2 * geom.k_h * geom.k_w * cin * cout * geom.out_pixels(),
            Op::Pointwise {
                rows, k, n, gate, ..
            } => 2 * rows * k * n + if gate.is_some() { 2 * rows * k } else { 0 },
            Op::Depthwise2d { geom, c, .. } => 2 * geom.k_h * geom.k_w * c * geom.out_pixels(),
            Op::AvgPool2d { geom, c, .. } => geom.k_h * geom.k_w * c * geom.out_pixels(),
            Op::TemporalCausal { pixels, c, kt, .. } => 2 * kt * c * pixels,
            Op::SpatialMean { pixels, c, .. } => pixels * c,
            Op::CumulativePool { c, .. } => 2 * c,
            Op::Concat { .. } => 0,
        };
        f as f64
    }

    /// FLOPs and bytes moved, with activations, weights and stream buffers stored in
    /// elements of `storage_bytes` (2 for fp16, 4 for fp32); biases, scales and
    /// cumulative-pool sums are fp32.
    pub fn cost(&self, plan: &Plan, storage_bytes: usize) -> OpCost {
        let el = storage_bytes as f64;
        let index = STEP_INDEX_BYTES as f64;
        let read: usize = self.inputs().iter().flatten().map(|&(_, n)| n).sum();
        let (_, written) = self.output();
        let mut c = OpCost {
            flops: self.flops(),
            act_read: read as f64 * el,
            act_write: written as f64 * el,
            ..OpCost::default()
        };
        for &(id, class, _) in self.weights().iter().flatten() {
            let bytes = match class {
                WeightClass::Storage => el,
                WeightClass::F32 => 4.0,
            };
            c.weight_bytes += plan.weight(id).values.len() as f64 * bytes;
        }
        match *self {
            // the frame is read as u8
            Op::PreprocessU8 { len, .. } => c.act_read = len as f64,
            Op::TemporalCausal {
                pixels, c: ch, kt, ..
            } => {
                c.act_read += index;
                c.state_read = ((kt - 1) * pixels * ch) as f64 * el;
                c.state_write = (pixels * ch) as f64 * el;
            }
            Op::CumulativePool { c: ch, .. } => {
                c.act_read += index;
                c.state_read = ch as f64 * 4.0;
                c.state_write = ch as f64 * 4.0;
            }
            Op::Conv2d { .. }
            | Op::Pointwise { .. }
            | Op::Depthwise2d { .. }
            | Op::AvgPool2d { .. }
            | Op::SpatialMean { .. }
            | Op::Concat { .. } => {}
        }
        c
    }
}

/// One op of the plan with the layer and role it implements.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `stem`, a block name (`block0_layer0`) or `head`
    pub layer: String,
    /// what the op does in its layer: `preprocess`, `conv`, `skip.pool`, `skip.project`,
    /// `expand`, `spatial`, `temporal`, `se.mean`, `se.pool`, `se.concat`, `se.reduce`,
    /// `se.expand`, `project`, `project+gate`, `mean`, `pool`, `dense1`, `dense2`
    pub role: &'static str,
    pub op: Op,
}

/// A model lowered into ops over buffers (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    steps: Vec<Step>,
    buffers: Vec<Buffer>,
    weights: Vec<Weight>,
    stream_buffers: Vec<StreamBufferShape>,
    cumulative_pools: Vec<usize>,
    frame_len: usize,
    logits: BufId,
    classes: usize,
}

impl Plan {
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn buffers(&self) -> &[Buffer] {
        &self.buffers
    }

    pub fn buffer(&self, id: BufId) -> &Buffer {
        &self.buffers[id.0]
    }

    pub fn weights(&self) -> &[Weight] {
        &self.weights
    }

    pub fn weight(&self, id: WeightId) -> &Weight {
        &self.weights[id.0]
    }

    /// The values of weight `id`.
    pub fn values(&self, id: WeightId) -> &[f32] {
        &self.weights[id.0].values
    }

    /// Shapes of the stream buffers the [`Op::TemporalCausal`] ops carry.
    pub fn stream_buffers(&self) -> &[StreamBufferShape] {
        &self.stream_buffers
    }

    /// Channel counts of the cumulative pools the [`Op::CumulativePool`] ops carry.
    pub fn cumulative_pools(&self) -> &[usize] {
        &self.cumulative_pools
    }

    /// Bytes of one input frame (RGB u8).
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// The buffer the last op writes the logits to (`classes` values per stream).
    pub fn logits(&self) -> BufId {
        self.logits
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Activation values per stream over all buffers (a backend's workspace per stream).
    pub fn workspace_values(&self) -> usize {
        self.buffers.iter().map(|b| b.elements).sum()
    }

    /// Sum of [`Op::flops`] over the step.
    pub fn flops_per_frame(&self) -> f64 {
        self.steps.iter().map(|s| s.op.flops()).sum()
    }

    /// Per buffer, the steps `(first write, last read)` between which it holds a live
    /// value; `None` for a buffer no op touches.
    pub fn live_ranges(&self) -> Vec<Option<(usize, usize)>> {
        let mut r: Vec<Option<(usize, usize)>> = vec![None; self.buffers.len()];
        for (i, s) in self.steps.iter().enumerate() {
            let (y, _) = s.op.output();
            let e = &mut r[y.0];
            *e = Some(e.map_or((i, i), |(a, b)| (a, b.max(i))));
            for &(x, _) in s.op.inputs().iter().flatten() {
                let e = &mut r[x.0];
                *e = Some(e.map_or((i, i), |(a, _)| (a, i)));
            }
        }
        r
    }

    /// The most activation values per stream live at once: at each op, the values it
    /// reads and writes plus every value written earlier and read later. What a workspace
    /// that shared memory between values by liveness would need (the role buffers of
    /// [`Plan::workspace_values`] keep each role in its own buffer instead).
    pub fn peak_live_values(&self) -> usize {
        // each op's output value lives from the op to its last read
        let mut last_read: Vec<usize> = (0..self.steps.len()).collect();
        let mut writer: Vec<Option<usize>> = vec![None; self.buffers.len()];
        for (i, s) in self.steps.iter().enumerate() {
            for &(x, _) in s.op.inputs().iter().flatten() {
                if let Some(w) = writer[x.0] {
                    last_read[w] = i;
                }
            }
            writer[s.op.output().0 .0] = Some(i);
        }
        let sizes: Vec<usize> = self.steps.iter().map(|s| s.op.output().1).collect();
        (0..self.steps.len())
            .map(|i| {
                (0..=i)
                    .filter(|&w| last_read[w] >= i)
                    .map(|w| sizes[w])
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0)
    }
}

/// Read access to every buffer of a backend's list except the op's output.
pub struct Others<'a, B> {
    before: &'a [B],
    after: &'a [B],
}

impl<'a, B> Others<'a, B> {
    /// Buffer `id`; `None` for the output buffer itself (or an id out of range).
    pub fn get(&self, id: BufId) -> Option<&'a B> {
        let i = id.0;
        match i.cmp(&self.before.len()) {
            std::cmp::Ordering::Less => self.before.get(i),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => self.after.get(i - self.before.len() - 1),
        }
    }
}

/// Split a backend's buffers (indexed by [`BufId`]) into the op's output `y`, mutable,
/// and read access to all the others; `None` when `y` is out of range.
pub fn split_output<B>(bufs: &mut [B], y: BufId) -> Option<(Others<'_, B>, &mut B)> {
    if y.0 >= bufs.len() {
        return None;
    }
    let (before, rest) = bufs.split_at_mut(y.0);
    let (out, after) = rest.split_first_mut()?;
    Some((
        Others {
            before: &*before,
            after: &*after,
        },
        out,
    ))
}
