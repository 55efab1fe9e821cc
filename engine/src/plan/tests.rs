//! Unit tests of the plan: both shared models lower, buffers and costs add up, the
//! checks reject bad plans.

use super::*;
use crate::model::{Model, Skip};
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

const MODELS: [&str; 2] = [
    "movinet_a0_stream_cattle7_dynamic.tflite",
    "movinet_a0_stream_k600_int8.tflite",
];

fn count(plan: &Plan, kernel: &str) -> usize {
    plan.steps()
        .iter()
        .filter(|s| s.op.kernel() == kernel)
        .count()
}

/// Both shared models lower; op counts follow from the model's structure.
#[test]
fn both_shared_models_lower_with_the_expected_ops() {
    for file in MODELS {
        let Some(m) = shared_model(file) else { return };
        let plan = Plan::lower(&m).expect("lower");
        let blocks = m.blocks.len();
        let temporal = m.blocks.iter().filter(|b| b.temporal.is_some()).count();
        let se = m.blocks.iter().filter(|b| b.se.is_some()).count();
        let projected = m
            .blocks
            .iter()
            .filter(|b| matches!(b.skip, Skip::Project { .. }))
            .count();
        let pooled = m
            .blocks
            .iter()
            .filter(|b| matches!(b.skip, Skip::Project { pool: Some(_), .. }))
            .count();
        assert_eq!(count(&plan, "preprocess_u8"), 1, "{file}");
        assert_eq!(count(&plan, "conv2d"), 1, "{file}");
        assert_eq!(count(&plan, "depthwise2d"), blocks, "{file}");
        assert_eq!(count(&plan, "temporal_causal"), temporal, "{file}");
        assert_eq!(count(&plan, "avg_pool2d"), pooled, "{file}");
        assert_eq!(count(&plan, "spatial_mean"), se + 1, "{file}");
        assert_eq!(count(&plan, "cumulative_pool"), se + 1, "{file}");
        assert_eq!(count(&plan, "concat"), se, "{file}");
        // expand + project per block, reduce + expand per SE, the skip convs, the
        // head's three
        assert_eq!(
            count(&plan, "pointwise"),
            2 * blocks + 2 * se + projected + 3,
            "{file}"
        );
        let gated = plan
            .steps()
            .iter()
            .filter(|s| matches!(s.op, Op::Pointwise { gate: Some(_), .. }))
            .count();
        assert_eq!(gated, se, "{file}");
        // every stream buffer and cumulative pool is carried by exactly one op
        for (i, _) in m.stream_buffers.iter().enumerate() {
            let n = plan
                .steps()
                .iter()
                .filter(|s| s.op.state() == Some(StateRef::StreamBuffer(i)))
                .count();
            assert_eq!(n, 1, "{file}: stream buffer {i}");
        }
        for (i, _) in m.cumulative_pools.iter().enumerate() {
            let n = plan
                .steps()
                .iter()
                .filter(|s| s.op.state() == Some(StateRef::CumulativePool(i)))
                .count();
            assert_eq!(n, 1, "{file}: cumulative pool {i}");
        }
        assert!(plan.to_string().contains("temporal_causal"));
        eprintln!(
            "{file}: {} ops, {} values of workspace per stream",
            plan.steps().len(),
            plan.workspace_values()
        );
    }
}

/// Buffers are exactly as large as the largest value written to them, every buffer
/// is used, and the ping-pong / role buffers keep the workspace small.
#[test]
fn buffers_are_sized_by_their_largest_value_and_all_live() {
    for file in MODELS {
        let Some(m) = shared_model(file) else { return };
        let plan = Plan::lower(&m).expect("lower");
        for (i, b) in plan.buffers().iter().enumerate() {
            let largest = plan
                .steps()
                .iter()
                .map(|s| s.op.output())
                .filter(|&(y, _)| y.index() == i)
                .map(|(_, n)| n)
                .max();
            assert_eq!(Some(b.elements), largest, "{file}: buffer {}", b.name);
        }
        let live = plan.live_ranges();
        assert!(live.iter().all(Option::is_some), "{file}: an unused buffer");
        // the input is dead after the stem, the logits live only in the last op
        let input = live[0].expect("input");
        assert_eq!(input, (0, 1));
        let last = plan.steps().len() - 1;
        assert_eq!(live[plan.logits().index()], Some((last, last)));
        assert_eq!(plan.buffer(plan.logits()).elements, m.classes());
        // sharing by liveness could not do better than the peak of live values
        let peak = plan.peak_live_values();
        assert!(peak <= plan.workspace_values(), "{file}");
        assert!(peak >= plan.buffers().iter().map(|b| b.elements).max().unwrap_or(0));
        eprintln!(
            "{file}: workspace {} values per stream, peak live {peak}",
            plan.workspace_values()
        );
        // role buffers: a handful, not one per layer
        assert!(
            plan.buffers().len() <= 16,
            "{file}: {} buffers",
            plan.buffers().len()
        );
    }
}

/// The weight table holds every parameter once (plus the mean scales), each op's
/// FLOPs add up to the model's count, and the costs cover the carried state.
#[test]
fn weights_flops_and_state_account_for_the_model() {
    for file in MODELS {
        let Some(m) = shared_model(file) else { return };
        let plan = Plan::lower(&m).expect("lower");
        let se_scales: usize = m
            .blocks
            .iter()
            .filter_map(|b| b.se.as_ref())
            .map(|s| s.c)
            .sum();
        let values: usize = plan.weights().iter().map(|w| w.values.len()).sum();
        assert_eq!(
            values,
            m.parameters() + se_scales + m.head.pool_scale.len(),
            "{file}"
        );
        let flops = plan.flops_per_frame();
        let model = m.flops_per_frame();
        assert!(
            flops >= model && flops <= model * 1.02,
            "{file}: plan {flops} vs model {model}"
        );
        let costs: Vec<OpCost> = plan.steps().iter().map(|s| s.op.cost(&plan, 2)).collect();
        let state_read: f64 = costs.iter().map(|c| c.state_read).sum();
        let buffers: usize = m.stream_buffers.iter().map(|s| s.values()).sum();
        let pools: usize = m.cumulative_pools.iter().sum();
        assert_eq!(state_read, (2 * buffers + 4 * pools) as f64, "{file}");
        let weight_bytes: f64 = costs.iter().map(|c| c.weight_bytes).sum();
        let storage: usize = plan
            .weights()
            .iter()
            .filter(|w| w.class == WeightClass::Storage)
            .map(|w| w.values.len())
            .sum();
        assert_eq!(weight_bytes, (2 * storage + 4 * (values - storage)) as f64);
    }
}

/// A hand-built model whose layers do not fit together is an error, not a panic.
#[test]
fn an_inconsistent_model_is_an_error() {
    let Some(mut m) = shared_model(MODELS[0]) else {
        return;
    };
    m.blocks[1].expand.w.pop();
    let err = Plan::lower(&m).unwrap_err();
    assert!(err.to_string().contains("expand"), "{err}");
    let Some(mut m) = shared_model(MODELS[0]) else {
        return;
    };
    if let Some(t) = m.blocks.iter_mut().find_map(|b| b.temporal.as_mut()) {
        t.buffer = 999;
    }
    let err = Plan::lower(&m).unwrap_err();
    assert!(err.to_string().contains("stream buffer"), "{err}");
}

/// The checks catch the dataflow mistakes a hand edit of a plan would make.
#[test]
fn validation_rejects_bad_dataflow() {
    let Some(m) = shared_model(MODELS[0]) else {
        return;
    };
    let good = Plan::lower(&m).expect("lower");
    let project = good
        .steps()
        .iter()
        .position(|s| s.role == "project+gate")
        .expect("a gated projection");

    // an op that reads the gated (clobbered) input after the gated projection
    let mut p = good.clone();
    let Op::Pointwise { x, .. } = p.steps[project].op else {
        panic!("the gated projection is a pointwise")
    };
    let mut bad = p.steps[project + 1].clone();
    bad.op = Op::SpatialMean {
        x,
        pixels: 1,
        c: 1,
        scale: WeightId(0),
        y: p.logits,
    };
    p.steps.insert(project + 1, bad);
    let err = p.validate().unwrap_err().to_string();
    assert!(err.contains("gated in place"), "{err}");

    // an op writing its own input
    let mut p = good.clone();
    if let Op::Pointwise { x, y, .. } = &mut p.steps[project].op {
        *y = *x;
    }
    assert!(p
        .validate()
        .unwrap_err()
        .to_string()
        .contains("reads and writes"));

    // a read before any write
    let mut p = good.clone();
    p.steps.swap(0, 1);
    let err = p.validate().unwrap_err().to_string();
    assert!(err.contains("before it is written"), "{err}");
}

#[test]
fn split_output_gives_every_other_buffer() {
    let mut v = vec![0, 1, 2, 3];
    let (others, out) = split_output(&mut v, BufId(2)).expect("in range");
    *out = 20;
    assert_eq!(others.get(BufId(0)), Some(&0));
    assert_eq!(others.get(BufId(3)), Some(&3));
    assert_eq!(others.get(BufId(2)), None);
    assert_eq!(others.get(BufId(4)), None);
    assert!(split_output(&mut v, BufId(4)).is_none());
    assert_eq!(v, [0, 1, 20, 3]);
}
