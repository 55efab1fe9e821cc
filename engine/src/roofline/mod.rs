//! A GPU performance MODEL of one CUDA step — roofline arithmetic from datasheet peaks,
//! never a measurement.
//!
//! Main items:
//! - [`StepNode`] — one node of the step as the CUDA backend enqueues it (a kernel launch
//!   or a device copy): the layer and kernel it belongs to, FLOPs and bytes moved per
//!   stream (activations, carried state) and per step (weights), and the GEMM shape where
//!   tile padding matters. [`step_nodes`] lists them for a [`crate::Plan`].
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
//! Submodules: `nodes` (the plan's ops as device nodes: [`step_nodes`], [`clip_nodes`],
//! device-memory footprints) and `fusion` (the what-ifs). The node list is one exhaustive
//! `match` over [`crate::plan::Op`], like the CUDA backend's walk of the same plan
//! (launches are counted from the plan; `engine/tests/cuda_traffic.rs` checks that the
//! emulated driver counts the same kernels and copies per step).

mod fusion;
mod nodes;

pub use fusion::{fuse, fuse_all, Fusion, FUSED_BLOCK, FUSION_CANDIDATES};
pub use nodes::{clip_nodes, state_bytes_per_stream, step_nodes, workspace_bytes_per_stream};

/// Slot index (u32) + frame count (u64) a state-carrying kernel reads per stream.
const STEP_INDEX_BYTES: f64 = crate::plan::STEP_INDEX_BYTES as f64;

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
    use crate::model::Model;
    use std::path::PathBuf;
    use vigil_kernels::Precision;

    pub(super) fn shared_model(name: &str) -> Option<Model> {
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

    /// Bigger batches amortise weights and overhead: frames/s grows with the batch and
    /// never exceeds the pure HBM bound of the per-stream bytes.
    #[test]
    fn bound_behaves() {
        let Some(m) = shared_model("movinet_a0_stream_cattle7_dynamic.tflite") else {
            return;
        };
        let nodes = step_nodes(&crate::Plan::lower(&m).expect("lower"), Precision::F16);
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
