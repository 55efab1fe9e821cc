//! A GPU performance MODEL of one CUDA step — roofline arithmetic from datasheet peaks,
//! never a measurement.
//!
//! Main items:
//! - [`StepNode`] — one node of the step as the CUDA backend enqueues it (a kernel launch
//!   or a device copy): the layer and kernel it belongs to, FLOPs and bytes moved per
//!   stream (activations, carried state) and per step (weights), and the GEMM shape where
//!   tile padding matters. [`step_nodes`] lists them for a [`Model`].
//! - [`DevicePeaks`] — the datasheet peaks and the overhead assumptions the bound uses;
//!   [`DevicePeaks::h100_sxm`].
//! - [`step_bound`] → [`StepBound`] — the modelled step time and frames/s at a batch size:
//!   each node takes `max(bytes / HBM bandwidth, FLOPs / peak of its unit, node floor)`,
//!   nodes run one after another on one stream, plus the host link and a fixed per-step
//!   cost (graph launch, synchronisation).
//! - [`clip_nodes`] — the same network recomputed over a `T`-frame clip per output (the
//!   DeepStream action-recognition approach), for comparison.
//! - [`Fusion`], [`fuse`], [`FUSION_CANDIDATES`], [`FUSED_BLOCK`] — what-ifs: runs of
//!   nodes merged into one kernel, to model what would lift the bound.
//!
//! What the model assumes (the binary `gpu_model` prints these next to its tables):
//! every kernel reads its inputs and writes its outputs through HBM once (no reuse across
//! kernels in L2, perfect reuse inside a kernel), weights are read once per step (shared by
//! the batch), activations and state once per stream; FLOPs of the fp16 GEMM are the
//! tensor-core work the 64x64x32 tiles actually issue (padding included), other kernels
//! compute in fp32 on CUDA cores (they convert fp16 to fp32); no wave-quantisation, tail or
//! occupancy effects. It is an upper bound on frames/s, not a prediction.
//!
//! The node list mirrors `cuda.rs`'s `enqueue` today (launches are counted from that
//! kernel sequence, not yet from the emulated driver's counters). When the flat plan lands
//! (`plan.rs`), [`step_nodes`] becomes one exhaustive `match` over plan ops; nothing else
//! here depends on how the network is walked.

use vigil_kernels::{Conv2dGeom, Precision};

use crate::model::{Model, Pointwise, Skip};

/// What a node is on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// a kernel launch (graph kernel node)
    Kernel,
    /// a device-to-device copy (graph memcpy node)
    Copy,
}

/// The execution unit whose peak bounds a node's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// fp16 tensor cores (mma.sync, fp32 accumulate)
    TensorF16,
    /// fp32 FMA on CUDA cores
    CudaF32,
    /// no arithmetic (copies)
    None,
}

/// The GEMM a 1x1 convolution runs: `rows_per_stream x n`, reduction `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmShape {
    pub rows_per_stream: usize,
    pub n: usize,
    pub k: usize,
}

/// One node of a step (see the module docs). Per-stream quantities scale with the batch;
/// `weight_bytes` is read once per step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepNode {
    /// `stem`, a block name (`block0_layer0`), or `head`
    pub layer: String,
    /// what the node does in the layer (`expand`, `temporal`, `se.reduce`, ...; fused
    /// nodes join their parts' roles with `+`)
    pub role: String,
    /// kernel name as compiled (`pointwise_f16`), `memcpy2d`, or `fused` for a what-if
    pub kernel: String,
    pub kind: NodeKind,
    /// the unit the node's GEMM (if any) runs on; all other arithmetic runs on fp32
    /// CUDA cores
    pub unit: Unit,
    /// useful FLOPs per stream (multiply-add = 2), GEMM included
    pub flops: f64,
    /// activation bytes read / written per stream (step inputs such as slot indices
    /// included)
    pub act_read: f64,
    pub act_write: f64,
    /// carried-state bytes read / written per stream (stream buffers, cumulative pools)
    pub state_read: f64,
    pub state_write: f64,
    /// weights, biases and scales read per step
    pub weight_bytes: f64,
    /// the GEMM shape of a `pointwise` node
    pub gemm: Option<GemmShape>,
}

impl StepNode {
    fn new(layer: &str, role: &str, kernel: &str, unit: Unit) -> StepNode {
        StepNode {
            layer: layer.to_string(),
            role: role.to_string(),
            kernel: kernel.to_string(),
            kind: NodeKind::Kernel,
            unit,
            flops: 0.0,
            act_read: 0.0,
            act_write: 0.0,
            state_read: 0.0,
            state_write: 0.0,
            weight_bytes: 0.0,
            gemm: None,
        }
    }

    /// Bytes moved per stream (activations and state).
    pub fn stream_bytes(&self) -> f64 {
        self.act_read + self.act_write + self.state_read + self.state_write
    }

    /// Bytes moved by a step of `batch` streams.
    pub fn bytes(&self, batch: usize) -> f64 {
        self.weight_bytes + batch as f64 * self.stream_bytes()
    }

    /// FLOPs a step of `batch` streams issues on tensor cores and on CUDA cores: a
    /// tensor-core GEMM issues whole 64x64x32 tiles (`pointwise.cu`: padding included),
    /// everything else is the useful FLOPs.
    pub fn issued_flops_split(&self, batch: usize) -> (f64, f64) {
        let b = batch as f64;
        match (self.unit, self.gemm) {
            (Unit::TensorF16, Some(g)) => {
                let pad = |x: usize, t: usize| (x.div_ceil(t) * t) as f64;
                let useful = 2.0 * (g.rows_per_stream * g.n * g.k) as f64;
                let tiles = 2.0 * pad(batch * g.rows_per_stream, 64) * pad(g.n, 64) * pad(g.k, 32);
                (tiles, (self.flops - useful).max(0.0) * b)
            }
            _ => (0.0, self.flops * b),
        }
    }

    /// All FLOPs a step of `batch` streams issues.
    pub fn issued_flops(&self, batch: usize) -> f64 {
        let (tensor, cuda) = self.issued_flops_split(batch);
        tensor + cuda
    }

    /// Seconds of arithmetic for a step of `batch` streams at `peaks`.
    pub fn compute_s(&self, batch: usize, peaks: &DevicePeaks) -> f64 {
        let (tensor, cuda) = self.issued_flops_split(batch);
        tensor / peaks.tensor_f16_flops + cuda / peaks.cuda_f32_flops
    }
}

/// Sizes in bytes of the stored types.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// storage element (activations, weights, stream buffers): 2 (fp16) or 4
    el: f64,
    /// fp32 (biases, scales, cumulative-pool sums)
    f32: f64,
}

/// Slot index (u32) + frame count (u64) a state-carrying kernel reads per stream.
const STEP_INDEX_BYTES: f64 = 12.0;

struct Walk {
    nodes: Vec<StepNode>,
    z: Sizes,
    tensor: Unit,
    pointwise: &'static str,
}

impl Walk {
    fn push(&mut self, n: StepNode) {
        self.nodes.push(n);
    }

    /// `pointwise` over `rows` pixels per stream, with a residual and/or an SE gate.
    fn pointwise(
        &mut self,
        layer: &str,
        role: &str,
        p: &Pointwise,
        rows: usize,
        residual: bool,
        gated: bool,
    ) {
        let z = self.z;
        let (m, k, n) = (rows as f64, p.cin as f64, p.cout as f64);
        let mut node = StepNode::new(layer, role, self.pointwise, self.tensor);
        node.flops = 2.0 * m * k * n + if gated { 2.0 * m * k } else { 0.0 };
        node.act_read = m * k * z.el
            + if residual { m * n * z.el } else { 0.0 }
            + if gated { k * z.el } else { 0.0 };
        node.act_write = m * n * z.el;
        node.weight_bytes = n * k * z.el + n * z.f32;
        node.gemm = Some(GemmShape {
            rows_per_stream: rows,
            n: p.cout,
            k: p.cin,
        });
        self.push(node);
    }

    /// `depthwise2d` (`weights`) or `avg_pool2d` (no weights) over `c` channels.
    fn window(&mut self, layer: &str, role: &str, g: &Conv2dGeom, c: usize, pool: bool) {
        let z = self.z;
        let (kernel, taps) = if pool {
            (name(self.z, "avg_pool2d"), 1.0)
        } else {
            (name(self.z, "depthwise2d"), 2.0)
        };
        let mut node = StepNode::new(layer, role, kernel, Unit::CudaF32);
        let (c, out_px) = (c as f64, g.out_pixels() as f64);
        node.flops = taps * (g.k_h * g.k_w) as f64 * c * out_px;
        node.act_read = g.in_pixels() as f64 * c * z.el;
        node.act_write = out_px * c * z.el;
        if !pool {
            node.weight_bytes = (g.k_h * g.k_w) as f64 * c * z.el + c * z.f32;
        }
        self.push(node);
    }

    /// `spatial_mean` then `cumulative_pool` over `c` channels of `pixels` pixels.
    fn means(&mut self, layer: &str, roles: [&str; 2], pixels: usize, c: usize) {
        let z = self.z;
        let (p, c) = (pixels as f64, c as f64);
        let mut mean = StepNode::new(layer, roles[0], name(z, "spatial_mean"), Unit::CudaF32);
        mean.flops = p * c;
        mean.act_read = p * c * z.el;
        mean.act_write = c * z.el;
        mean.weight_bytes = c * z.f32;
        self.push(mean);
        let mut pool = StepNode::new(layer, roles[1], name(z, "cumulative_pool"), Unit::CudaF32);
        pool.flops = 2.0 * c;
        pool.act_read = c * z.el + STEP_INDEX_BYTES;
        pool.act_write = c * z.el;
        pool.state_read = c * z.f32;
        pool.state_write = c * z.f32;
        self.push(pool);
    }
}

fn name(z: Sizes, op: &'static str) -> &'static str {
    let f16 = z.el == 2.0;
    match (op, f16) {
        ("preprocess_u8", true) => "preprocess_u8_f16",
        ("preprocess_u8", false) => "preprocess_u8_f32",
        ("conv2d", true) => "conv2d_f16",
        ("conv2d", false) => "conv2d_f32",
        ("pointwise", true) => "pointwise_f16",
        ("pointwise", false) => "pointwise_f32",
        ("depthwise2d", true) => "depthwise2d_f16",
        ("depthwise2d", false) => "depthwise2d_f32",
        ("avg_pool2d", true) => "avg_pool2d_f16",
        ("avg_pool2d", false) => "avg_pool2d_f32",
        ("temporal_causal", true) => "temporal_causal_f16",
        ("temporal_causal", false) => "temporal_causal_f32",
        ("spatial_mean", true) => "spatial_mean_f16",
        ("spatial_mean", false) => "spatial_mean_f32",
        ("cumulative_pool", true) => "cumulative_pool_f16",
        ("cumulative_pool", false) => "cumulative_pool_f32",
        _ => op,
    }
}

/// The nodes of one step of `model` at `precision`, in enqueue order — the kernel
/// sequence of `cuda.rs` `enqueue` (one `StepNode` per launch or device copy).
pub fn step_nodes(model: &Model, precision: Precision) -> Vec<StepNode> {
    let z = Sizes {
        el: precision.bytes() as f64,
        f32: 4.0,
    };
    let (tensor, pointwise) = match precision {
        Precision::F16 => (Unit::TensorF16, "pointwise_f16"),
        Precision::F32 => (Unit::CudaF32, "pointwise_f32"),
    };
    let mut w = Walk {
        nodes: Vec::new(),
        z,
        tensor,
        pointwise,
    };

    let st = &model.stem;
    let g = &st.geom;
    let frame = model.frame_bytes() as f64;
    let mut pre = StepNode::new(
        "stem",
        "preprocess",
        name(z, "preprocess_u8"),
        Unit::CudaF32,
    );
    pre.flops = frame;
    pre.act_read = frame;
    pre.act_write = frame * z.el;
    w.push(pre);
    let mut stem = StepNode::new("stem", "conv", name(z, "conv2d"), Unit::CudaF32);
    stem.flops = 2.0 * (g.k_h * g.k_w * st.cin * st.cout * g.out_pixels()) as f64;
    stem.act_read = (g.in_pixels() * st.cin) as f64 * z.el;
    stem.act_write = (g.out_pixels() * st.cout) as f64 * z.el;
    stem.weight_bytes = (g.k_h * g.k_w * st.cin * st.cout) as f64 * z.el + st.cout as f64 * z.f32;
    w.push(stem);

    for b in &model.blocks {
        let layer = b.name.as_str();
        let (in_px, out_px, c) = (b.in_pixels(), b.out_pixels(), b.in_c);
        // the residual (x itself, or its projection) is read by the block's projection
        if let Skip::Project { pool, conv } = &b.skip {
            if let Some(pg) = pool {
                w.window(layer, "skip.pool", pg, c, true);
            }
            w.pointwise(layer, "skip.project", conv, out_px, false, false);
        }
        w.pointwise(layer, "expand", &b.expand, in_px, false, false);
        let sp = &b.spatial;
        w.window(layer, "spatial", &sp.geom, sp.c, false);
        if let Some(t) = &b.temporal {
            let mut node =
                StepNode::new(layer, "temporal", name(z, "temporal_causal"), Unit::CudaF32);
            let (p, ch, kt) = (t.pixels as f64, t.c as f64, t.kt as f64);
            node.flops = 2.0 * kt * ch * p;
            node.act_read = p * ch * z.el + STEP_INDEX_BYTES;
            node.act_write = p * ch * z.el;
            node.state_read = (kt - 1.0) * p * ch * z.el;
            node.state_write = p * ch * z.el;
            node.weight_bytes = kt * ch * z.el + ch * z.f32;
            w.push(node);
        }
        match &b.se {
            Some(se) => {
                w.means(layer, ["se.mean", "se.pool"], out_px, sp.c);
                // [cum ; mean] assembled by two strided 2-D copies
                for _ in 0..2 {
                    let mut copy = StepNode::new(layer, "se.concat", "memcpy2d", Unit::None);
                    copy.kind = NodeKind::Copy;
                    copy.act_read = sp.c as f64 * z.el;
                    copy.act_write = sp.c as f64 * z.el;
                    w.push(copy);
                }
                w.pointwise(layer, "se.reduce", &se.reduce, 1, false, false);
                w.pointwise(layer, "se.expand", &se.expand, 1, false, false);
                w.pointwise(layer, "project+gate", &b.project, out_px, true, true);
            }
            None => w.pointwise(layer, "project", &b.project, out_px, true, false),
        }
    }

    let h = &model.head;
    w.pointwise("head", "project", &h.project, h.pixels, false, false);
    w.means("head", ["mean", "pool"], h.pixels, h.project.cout);
    w.pointwise("head", "dense1", &h.dense1, 1, false, false);
    w.pointwise("head", "dense2", &h.dense2, 1, false, false);
    w.nodes
}

/// The same network recomputed over a `frames`-frame clip for every output (a clip model
/// with this model's per-frame cost, e.g. DeepStream's 3D action-recognition sample at
/// stride 1): every node after preprocessing does `frames` times the per-stream FLOPs and
/// activation traffic; no state is carried (a temporal convolution over the clip reads
/// each frame once); weights are still read once per step; preprocessing converts only
/// the new frame.
pub fn clip_nodes(nodes: &[StepNode], frames: usize) -> Vec<StepNode> {
    let t = frames as f64;
    nodes
        .iter()
        .map(|n| {
            let mut c = n.clone();
            if n.role != "preprocess" {
                c.flops *= t;
                c.act_read *= t;
                c.act_write *= t;
                c.state_read = 0.0;
                c.state_write = 0.0;
                c.gemm = n.gemm.map(|g| GemmShape {
                    rows_per_stream: g.rows_per_stream * frames,
                    ..g
                });
            }
            c
        })
        .collect()
}

/// A what-if: a run of consecutive nodes of one layer executed as one kernel, so the
/// intermediate tensors between them stay on chip and the run costs one graph node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fusion {
    pub name: &'static str,
    /// roles of the run, in order (an earlier fusion's result has its parts' roles joined
    /// with `+`)
    pub roles: &'static [&'static str],
    /// the run's intermediate results are still needed after it: they are still written,
    /// only their re-reads inside the run disappear (a reduction in a producer's epilogue)
    pub keeps_intermediates: bool,
}

const fn fusion(
    name: &'static str,
    roles: &'static [&'static str],
    keeps_intermediates: bool,
) -> Fusion {
    Fusion {
        name,
        roles,
        keeps_intermediates,
    }
}

/// The fusions worth modelling one at a time.
pub const FUSION_CANDIDATES: &[Fusion] = &[
    fusion(
        "u8→fp16 conversion inside the stem conv",
        &["preprocess", "conv"],
        false,
    ),
    fusion(
        "expand 1x1 + depthwise (expanded tensor stays on chip)",
        &["expand", "spatial"],
        false,
    ),
    fusion(
        "depthwise + temporal (depthwise output stays on chip)",
        &["spatial", "temporal"],
        false,
    ),
    fusion(
        "SE spatial mean in the temporal conv's epilogue",
        &["temporal", "se.mean"],
        true,
    ),
    fusion(
        "SE gate (pool, concat, reduce, expand) as one kernel",
        &[
            "se.pool",
            "se.concat",
            "se.concat",
            "se.reduce",
            "se.expand",
        ],
        false,
    ),
];

/// All of [`FUSION_CANDIDATES`] together, applied in this order: one kernel for each
/// block's expand → depthwise → temporal → SE mean, one for its SE gate.
pub const FUSED_BLOCK: &[Fusion] = &[
    fusion("stem", &["preprocess", "conv"], false),
    fusion("expand+spatial", &["expand", "spatial"], false),
    fusion("+temporal", &["expand+spatial", "temporal"], false),
    fusion("+mean", &["expand+spatial+temporal", "se.mean"], true),
    fusion("+mean (no temporal)", &["expand+spatial", "se.mean"], true),
    fusion(
        "se gate",
        &[
            "se.pool",
            "se.concat",
            "se.concat",
            "se.reduce",
            "se.expand",
        ],
        false,
    ),
];

fn merge(run: &[StepNode], keeps_intermediates: bool) -> StepNode {
    let roles: Vec<&str> = run.iter().map(|n| n.role.as_str()).collect();
    let gemm_node = run.iter().find(|n| n.gemm.is_some());
    let mut m = StepNode::new(
        &run[0].layer,
        &roles.join("+"),
        "fused",
        gemm_node.map_or(Unit::CudaF32, |n| n.unit),
    );
    m.gemm = gemm_node.and_then(|n| n.gemm);
    let mut reads_saved = 0.0;
    let mut writes_saved = 0.0;
    for (i, n) in run.iter().enumerate() {
        m.flops += n.flops;
        m.act_read += n.act_read;
        m.act_write += n.act_write;
        m.state_read += n.state_read;
        m.state_write += n.state_write;
        m.weight_bytes += n.weight_bytes;
        if i > 0 {
            reads_saved += n.act_read.min(run[i - 1].act_write);
        }
        if i + 1 < run.len() && !keeps_intermediates {
            writes_saved += n.act_write;
        }
    }
    m.act_read -= reads_saved;
    m.act_write -= writes_saved;
    m
}

/// `nodes` with every run matching `f` (same layer, roles in order) merged into one.
pub fn fuse(nodes: &[StepNode], f: &Fusion) -> Vec<StepNode> {
    let len = f.roles.len();
    let mut out = Vec::with_capacity(nodes.len());
    let mut i = 0;
    while i < nodes.len() {
        let run = nodes.get(i..i + len);
        match run {
            Some(run)
                if run
                    .iter()
                    .zip(f.roles)
                    .all(|(n, r)| n.role == *r && n.layer == run[0].layer) =>
            {
                out.push(merge(run, f.keeps_intermediates));
                i += len;
            }
            _ => {
                out.push(nodes[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// `nodes` with each of `fusions` applied in turn.
pub fn fuse_all(nodes: &[StepNode], fusions: &[Fusion]) -> Vec<StepNode> {
    fusions.iter().fold(nodes.to_vec(), |acc, f| fuse(&acc, f))
}

/// Datasheet peaks and the overhead assumptions of the bound.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePeaks {
    pub name: &'static str,
    /// HBM bandwidth, bytes/s
    pub hbm_bytes_per_s: f64,
    /// dense fp16 tensor-core FLOP/s
    pub tensor_f16_flops: f64,
    /// fp32 CUDA-core FLOP/s (FMA = 2)
    pub cuda_f32_flops: f64,
    /// fp16 CUDA-core (non-tensor, half2) FLOP/s — for reference; the kernels compute in
    /// fp32, so the bound uses `cuda_f32_flops`
    pub cuda_f16_flops: f64,
    /// host link, bytes/s per direction
    pub host_link_bytes_per_s: f64,
    /// device memory, bytes
    pub memory_bytes: f64,
    /// ASSUMPTION: the shortest a node of a replayed CUDA graph takes, start to start
    /// (launch latency + ramp-up and drain of a tiny kernel)
    pub node_floor_s: f64,
    /// ASSUMPTION: fixed cost of a step outside its nodes (graph launch, the copies'
    /// latency, the final synchronisation)
    pub step_fixed_s: f64,
}

impl DevicePeaks {
    /// NVIDIA H100 SXM5 80 GB, datasheet: 3.35 TB/s HBM3, 989 TFLOP/s dense fp16 tensor
    /// (1979 with sparsity), 67 TFLOP/s fp32; Hopper whitepaper: 134 TFLOP/s fp16
    /// non-tensor; PCIe Gen5 x16 (128 GB/s both directions = 64 GB/s each way). Node floor
    /// 1.5 µs and step fixed cost 10 µs are assumptions, not datasheet values.
    pub fn h100_sxm() -> DevicePeaks {
        DevicePeaks {
            name: "H100 SXM5 80GB",
            hbm_bytes_per_s: 3.35e12,
            tensor_f16_flops: 989.4e12,
            cuda_f32_flops: 66.9e12,
            cuda_f16_flops: 133.8e12,
            host_link_bytes_per_s: 64e9,
            memory_bytes: 80e9,
            node_floor_s: 1.5e-6,
            step_fixed_s: 10e-6,
        }
    }
}

/// Device bytes one stream's carried state occupies at `precision`: stream buffers in
/// the storage type, cumulative-pool sums in fp32, its frame count (the CUDA backend's
/// slot pools).
pub fn state_bytes_per_stream(model: &Model, precision: Precision) -> usize {
    let buffers: usize = model.stream_buffers.iter().map(|s| s.values()).sum();
    let pools: usize = model.cumulative_pools.iter().sum();
    buffers * precision.bytes() + pools * 4 + 8
}

/// Device bytes of step workspace per stream of the batch at `precision` (the CUDA
/// backend's `Workspace`: the frame, the step indices and every activation buffer).
pub fn workspace_bytes_per_stream(model: &Model, precision: Precision) -> usize {
    let z = model.activation_sizes();
    let values = z.input
        + 2 * z.x
        + z.skip
        + z.pooled
        + z.e
        + z.d
        + z.t
        + 3 * z.vec
        + z.se_in
        + z.se_mid
        + z.head_mid
        + z.classes;
    z.input + 12 + values * precision.bytes()
}

/// Which term bounds a node's modelled time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Memory,
    Compute,
    /// the node floor (launch / graph-node overhead)
    Overhead,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Memory => "memory",
            Bound::Compute => "compute",
            Bound::Overhead => "overhead",
        }
    }
}

/// One node's modelled time at a batch size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeTime {
    pub memory_s: f64,
    pub compute_s: f64,
    /// `max(memory_s, compute_s, node floor)`
    pub time_s: f64,
    pub bound: Bound,
}

/// The modelled step at one batch size (an upper bound on throughput).
#[derive(Debug, Clone, PartialEq)]
pub struct StepBound {
    pub batch: usize,
    /// per node, in [`step_nodes`] order
    pub nodes: Vec<NodeTime>,
    /// bytes moved through HBM by the step
    pub bytes: f64,
    /// FLOPs issued by the step
    pub flops: f64,
    /// host→device (frames, slot indices, frame counts) + device→host (logits), seconds
    pub host_link_s: f64,
    /// sum of the nodes' times
    pub nodes_s: f64,
    /// `nodes_s + host_link_s + step_fixed_s`
    pub step_s: f64,
    pub frames_per_s: f64,
}

impl StepBound {
    /// Time of the nodes bound by `b`.
    pub fn time_bound_by(&self, b: Bound) -> f64 {
        self.nodes
            .iter()
            .filter(|n| n.bound == b)
            .fold(0.0, |acc, n| acc + n.time_s)
    }

    /// Frames/s if the host-link copies of one step overlapped the previous step's nodes
    /// (double-buffered inputs on a second stream; not what the backend does today).
    pub fn frames_per_s_overlapped(&self, peaks: &DevicePeaks) -> f64 {
        self.batch as f64 / (self.nodes_s + peaks.step_fixed_s).max(self.host_link_s)
    }
}

/// The modelled step of `batch` streams over `nodes` on `peaks` (see the module docs).
/// `frame_bytes` / `logit_bytes` per stream cross the host link (serially today: the
/// step copies in, replays, copies out, then synchronises).
pub fn step_bound(
    nodes: &[StepNode],
    peaks: &DevicePeaks,
    batch: usize,
    frame_bytes: usize,
    logit_bytes: usize,
) -> StepBound {
    let times: Vec<NodeTime> = nodes
        .iter()
        .map(|n| {
            let memory_s = n.bytes(batch) / peaks.hbm_bytes_per_s;
            let compute_s = n.compute_s(batch, peaks);
            let (time_s, bound) = if memory_s >= compute_s && memory_s >= peaks.node_floor_s {
                (memory_s, Bound::Memory)
            } else if compute_s >= peaks.node_floor_s {
                (compute_s, Bound::Compute)
            } else {
                (peaks.node_floor_s, Bound::Overhead)
            };
            NodeTime {
                memory_s,
                compute_s,
                time_s,
                bound,
            }
        })
        .collect();
    let host = batch as f64 * (frame_bytes as f64 + STEP_INDEX_BYTES + logit_bytes as f64);
    let host_link_s = host / peaks.host_link_bytes_per_s;
    let nodes_s: f64 = times.iter().map(|t| t.time_s).sum();
    let step_s = nodes_s + host_link_s + peaks.step_fixed_s;
    StepBound {
        batch,
        bytes: nodes.iter().map(|n| n.bytes(batch)).sum(),
        flops: nodes.iter().map(|n| n.issued_flops(batch)).sum(),
        nodes: times,
        host_link_s,
        nodes_s,
        step_s,
        frames_per_s: batch as f64 / step_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn shared_model(name: &str) -> Option<Model> {
        let dir = std::env::var_os("VIGIL_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("../shared"));
        let path = dir.join("models").join(name);
        if !path.is_file() {
            eprintln!("SKIP: {} not found (set VIGIL_SHARED)", path.display());
            return None;
        }
        Some(Model::load(&path).expect("load model"))
    }

    /// The node list accounts for exactly the model's weights and carried state, and for
    /// its FLOPs up to the small reductions `flops_per_frame` leaves out.
    #[test]
    fn nodes_account_for_the_whole_model() {
        for file in [
            "movinet_a0_stream_cattle7_dynamic.tflite",
            "movinet_a0_stream_k600_int8.tflite",
        ] {
            let Some(m) = shared_model(file) else { return };
            let nodes = step_nodes(&m, Precision::F32);
            let se_scales: usize = m
                .blocks
                .iter()
                .filter_map(|b| b.se.as_ref())
                .map(|s| s.c)
                .sum();
            let weights: f64 = nodes.iter().map(|n| n.weight_bytes).sum();
            let want = 4.0 * (m.parameters() + se_scales + m.head.pool_scale.len()) as f64;
            assert_eq!(weights, want, "{file}: weight bytes");

            let state_read: f64 = nodes.iter().map(|n| n.state_read).sum();
            let buffers: usize = m.stream_buffers.iter().map(|s| s.values()).sum();
            let pools: usize = m.cumulative_pools.iter().sum();
            assert_eq!(
                state_read,
                4.0 * (buffers + pools) as f64,
                "{file}: state read"
            );

            let flops: f64 = nodes.iter().map(|n| n.flops).sum();
            let model_flops = m.flops_per_frame();
            assert!(
                flops >= model_flops && flops <= model_flops * 1.02,
                "{file}: nodes {flops} vs model {model_flops}"
            );

            let f16 = step_nodes(&m, Precision::F16);
            assert_eq!(f16.len(), nodes.len());
            assert!(f16.iter().all(|n| n.kernel != "pointwise_f32"));
        }
    }

    /// Bigger batches amortise weights and overhead: frames/s grows with the batch and
    /// never exceeds the pure HBM bound of the per-stream bytes.
    #[test]
    fn bound_behaves() {
        let Some(m) = shared_model("movinet_a0_stream_cattle7_dynamic.tflite") else {
            return;
        };
        let nodes = step_nodes(&m, Precision::F16);
        let peaks = DevicePeaks::h100_sxm();
        let per_stream: f64 = nodes.iter().map(|n| n.stream_bytes()).sum();
        let mut last = 0.0;
        for b in [1, 64, 1024, 4096] {
            let s = step_bound(&nodes, &peaks, b, m.frame_bytes(), 2 * m.classes());
            assert!(s.frames_per_s > last, "batch {b}");
            assert!(s.frames_per_s <= peaks.hbm_bytes_per_s / per_stream);
            last = s.frames_per_s;
        }
        let b1 = step_bound(&nodes, &peaks, 1, m.frame_bytes(), 2 * m.classes());
        assert!(b1.time_bound_by(Bound::Overhead) > 0.5 * b1.nodes_s);

        // A 32-frame clip does 32x the work after preprocessing; its bound is lower, by
        // less than 32x because both pay the same host link and the stream model also
        // moves its state.
        let clip = clip_nodes(&nodes, 32);
        let work = |ns: &[StepNode]| -> f64 { ns[1..].iter().map(|n| n.flops).sum() };
        assert!((work(&clip) / work(&nodes) - 32.0).abs() < 1e-9);
        let s = step_bound(&nodes, &peaks, 1024, m.frame_bytes(), 2 * m.classes());
        let c = step_bound(&clip, &peaks, 1024, m.frame_bytes(), 2 * m.classes());
        let ratio = s.frames_per_s / c.frames_per_s;
        assert!(ratio > 10.0 && ratio < 32.0, "clip ratio {ratio}");
    }

    #[test]
    fn fusion_keeps_work_and_drops_intermediate_traffic() {
        let Some(m) = shared_model("movinet_a0_stream_cattle7_dynamic.tflite") else {
            return;
        };
        let nodes = step_nodes(&m, Precision::F16);
        let sum = |ns: &[StepNode], f: fn(&StepNode) -> f64| ns.iter().map(f).sum::<f64>();
        let fused = fuse_all(&nodes, FUSED_BLOCK);
        assert!(fused.len() < nodes.len());
        for f in [
            (|n: &StepNode| n.flops) as fn(&StepNode) -> f64,
            |n| n.weight_bytes,
            |n| n.state_read,
            |n| n.state_write,
        ] {
            assert!((sum(&fused, f) - sum(&nodes, f)).abs() < 1e-6 * sum(&nodes, f).max(1.0));
        }
        let act = |n: &StepNode| n.act_read + n.act_write;
        assert!(sum(&fused, act) < sum(&nodes, act));
        // expand + depthwise: the expanded tensor is neither written nor read
        let one = fuse(&nodes, &FUSION_CANDIDATES[1]);
        let e: f64 = nodes
            .iter()
            .filter(|n| n.role == "expand")
            .map(|n| 2.0 * n.act_write)
            .sum();
        assert!((sum(&nodes, act) - sum(&one, act) - e).abs() < 1.0);
        assert_eq!(one.len(), nodes.len() - m.blocks.len());
    }

    #[test]
    fn tensor_tiles_pad_the_gemm() {
        let mut n = StepNode::new("l", "expand", "pointwise_f16", Unit::TensorF16);
        n.flops = 2.0 * 10.0 * 16.0 * 40.0;
        n.gemm = Some(GemmShape {
            rows_per_stream: 10,
            n: 40,
            k: 16,
        });
        // batch 3: M = 30 → 64, N = 40 → 64, K = 16 → 32
        assert_eq!(n.issued_flops(3), 2.0 * 64.0 * 64.0 * 32.0);
        n.unit = Unit::CudaF32;
        assert_eq!(n.issued_flops(3), 3.0 * 2.0 * 10.0 * 16.0 * 40.0);
    }
}
