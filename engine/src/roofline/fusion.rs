//! Fusion what-ifs: a [`Fusion`] names a run of consecutive nodes of one layer that one
//! kernel could execute, so their intermediate tensors stay on chip; [`fuse`] /
//! [`fuse_all`] rewrite a node list accordingly. [`FUSION_CANDIDATES`] are modelled one at
//! a time, [`FUSED_BLOCK`] all together.

use super::{StepNode, Unit};

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

#[cfg(test)]
mod tests {
    use super::super::step_nodes;
    use super::super::tests::shared_model;
    use super::*;
    use vigil_kernels::Precision;

    #[test]
    fn fusion_keeps_work_and_drops_intermediate_traffic() {
        let Some(m) = shared_model("movinet_a0_stream_cattle7_dynamic.tflite") else {
            return;
        };
        let nodes = step_nodes(&crate::Plan::lower(&m).expect("lower"), Precision::F16);
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
}
