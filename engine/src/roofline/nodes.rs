//! The one walk of the network for the model: [`step_nodes`] lists a step's nodes in the
//! CUDA backend's enqueue order with their FLOPs and bytes; [`clip_nodes`] scales them to
//! a clip model; [`state_bytes_per_stream`] / [`workspace_bytes_per_stream`] give the
//! device-memory footprint. This is the file that becomes a `match` over plan ops.

use vigil_kernels::{Conv2dGeom, Precision};

use super::{GemmShape, NodeKind, StepNode, Unit, STEP_INDEX_BYTES};
use crate::model::{Model, Pointwise, Skip};

/// Sizes in bytes of the stored types.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// storage element (activations, weights, stream buffers): 2 (fp16) or 4
    el: f64,
    /// fp32 (biases, scales, cumulative-pool sums)
    f32: f64,
}

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

#[cfg(test)]
mod tests {
    use super::super::tests::shared_model;
    use super::*;

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
}
