//! The network's nodes for the model: [`step_nodes`] lists a step's nodes — one exhaustive
//! `match` over the [`Plan`]'s ops, in the order the CUDA backend enqueues them — with
//! their FLOPs and bytes ([`crate::plan::Op::cost`]); [`clip_nodes`] scales them to a clip
//! model; [`state_bytes_per_stream`] / [`workspace_bytes_per_stream`] give the
//! device-memory footprint.

use vigil_kernels::Precision;

use super::{GemmShape, NodeKind, StepNode, Unit};
use crate::plan::{Op, Plan, STEP_INDEX_BYTES};

/// The nodes of one step of `plan` at `precision`, in enqueue order: one node per kernel
/// launch or device copy of the CUDA backend's walk of the same plan.
pub fn step_nodes(plan: &Plan, precision: Precision) -> Vec<StepNode> {
    let el = precision.bytes();
    let tensor = match precision {
        Precision::F16 => Unit::TensorF16,
        Precision::F32 => Unit::CudaF32,
    };
    let mut nodes = Vec::with_capacity(plan.steps().len() + 16);
    for s in plan.steps() {
        let cost = s.op.cost(plan, el);
        let kernel = format!("{}_{}", s.op.kernel(), precision.suffix());
        let mut node = StepNode::new(&s.layer, s.role, &kernel, Unit::CudaF32);
        node.flops = cost.flops;
        node.act_read = cost.act_read;
        node.act_write = cost.act_write;
        node.state_read = cost.state_read;
        node.state_write = cost.state_write;
        node.weight_bytes = cost.weight_bytes;
        match s.op {
            Op::Pointwise { rows, k, n, .. } => {
                node.unit = tensor;
                node.gemm = Some(GemmShape {
                    rows_per_stream: rows,
                    n,
                    k,
                });
                nodes.push(node);
            }
            // two strided 2-D device copies, one per half
            Op::Concat {
                first_len,
                second_len,
                ..
            } => {
                for len in [first_len, second_len] {
                    let mut copy = StepNode::new(&s.layer, s.role, "memcpy2d", Unit::None);
                    copy.kind = NodeKind::Copy;
                    copy.act_read = (len * el) as f64;
                    copy.act_write = (len * el) as f64;
                    nodes.push(copy);
                }
            }
            Op::PreprocessU8 { .. }
            | Op::Conv2d { .. }
            | Op::Depthwise2d { .. }
            | Op::AvgPool2d { .. }
            | Op::TemporalCausal { .. }
            | Op::SpatialMean { .. }
            | Op::CumulativePool { .. } => nodes.push(node),
        }
    }
    nodes
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
pub fn state_bytes_per_stream(plan: &Plan, precision: Precision) -> usize {
    let buffers: usize = plan.stream_buffers().iter().map(|s| s.values()).sum();
    let pools: usize = plan.cumulative_pools().iter().sum();
    buffers * precision.bytes() + pools * 4 + 8
}

/// Device bytes of step workspace per stream of the batch at `precision` (the CUDA
/// backend's workspace: the frame, the step indices and every plan buffer).
pub fn workspace_bytes_per_stream(plan: &Plan, precision: Precision) -> usize {
    plan.frame_len() + STEP_INDEX_BYTES + plan.workspace_values() * precision.bytes()
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
            let plan = Plan::lower(&m).expect("lower");
            let nodes = step_nodes(&plan, Precision::F32);
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

            let f16 = step_nodes(&plan, Precision::F16);
            assert_eq!(f16.len(), nodes.len());
            assert!(f16.iter().all(|n| n.kernel != "pointwise_f32"));
        }
    }
}
