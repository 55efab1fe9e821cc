//! The CUDA backend against the CPU backend on a small synthetic model that has every
//! layer kind (stem, temporal, SE with fused gate, pooled/projected and identity skips,
//! head); several steps over shuffled slot subsets, with graphs and without; what a step
//! issues (launches, copies, host↔device bytes) against the plan. They run on every
//! `cargo test`: on the real driver when one loads, else on the emulated driver
//! (vigil-cuda-emu); a device that cannot be set up fails the test, nothing skips.
#![cfg(feature = "cuda")]

mod cuda_common;

use std::path::PathBuf;
use std::sync::Arc;

use vigil_engine::cpu::CpuBackend;
use vigil_engine::cuda::{CudaBackend, CudaConfig, StepNodes, StepStats};
use vigil_engine::model::{
    Block, Depthwise, Head, Model, Pointwise, Skip, SqueezeExcite, Stem, StreamBufferShape,
    Temporal, Variant,
};
use vigil_engine::plan::{Op, Plan};
use vigil_engine::Backend;
use vigil_kernels::{Activation, Conv2dGeom, Precision};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn v(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f(-scale, scale)).collect()
    }
}

fn pw(r: &mut Rng, cin: usize, cout: usize, act: Activation) -> Pointwise {
    Pointwise {
        cin,
        cout,
        w: r.v(cin * cout, 1.5 / (cin as f32).sqrt()),
        bias: r.v(cout, 0.3),
        act,
    }
}

fn tiny_model() -> Model {
    let r = &mut Rng(7);
    let size = 17;
    let sg = Conv2dGeom::same(size, size, 3, 3, 2); // 9x9
    let stem = Stem {
        geom: sg,
        cin: 3,
        cout: 8,
        w: r.v(27 * 8, 0.4),
        bias: r.v(8, 0.2),
        act: Activation::HardSwish,
    };
    let g1 = Conv2dGeom::same(9, 9, 3, 3, 2); // 5x5
    let mut expand_se = pw(r, 8, 16, Activation::Relu6);
    for b in &mut expand_se.bias {
        *b += 3.0; // hard-sigmoid = relu6(x + 3) / 6
    }
    let b1 = Block {
        name: "block0_layer0".into(),
        in_h: 9,
        in_w: 9,
        in_c: 8,
        expand: pw(r, 8, 16, Activation::HardSwish),
        spatial: Depthwise {
            geom: g1,
            c: 16,
            w: r.v(9 * 16, 0.5),
            bias: r.v(16, 0.2),
            act: Activation::HardSwish,
        },
        temporal: Some(Temporal {
            kt: 3,
            pixels: 25,
            c: 16,
            w: r.v(3 * 16, 0.6),
            bias: r.v(16, 0.2),
            act: Activation::None,
            buffer: 0,
        }),
        se: Some(SqueezeExcite {
            c: 16,
            reduce: pw(r, 32, 8, Activation::Swish),
            expand: expand_se,
            gate_scale: 1.0 / 6.0,
            cumulative_first: true,
            pool: 0,
        }),
        project: pw(r, 16, 12, Activation::None),
        skip: Skip::Project {
            pool: Some(Conv2dGeom::same(9, 9, 3, 3, 2)),
            conv: pw(r, 8, 12, Activation::None),
        },
    };
    let g2 = Conv2dGeom::same(5, 5, 5, 5, 1);
    let b2 = Block {
        name: "block1_layer0".into(),
        in_h: 5,
        in_w: 5,
        in_c: 12,
        expand: pw(r, 12, 24, Activation::Swish),
        spatial: Depthwise {
            geom: g2,
            c: 24,
            w: r.v(25 * 24, 0.3),
            bias: r.v(24, 0.2),
            act: Activation::Swish,
        },
        temporal: Some(Temporal {
            kt: 5,
            pixels: 25,
            c: 24,
            w: r.v(5 * 24, 0.5),
            bias: r.v(24, 0.2),
            act: Activation::Relu,
            buffer: 1,
        }),
        se: None,
        project: pw(r, 24, 12, Activation::None),
        skip: Skip::Identity,
    };
    let head = Head {
        pixels: 25,
        project: pw(r, 12, 32, Activation::HardSwish),
        pool_scale: vec![1.0 / 25.0; 32],
        pool: 1,
        dense1: pw(r, 32, 40, Activation::Swish),
        dense2: pw(r, 40, 7, Activation::None),
    };
    Model {
        name: "tiny".into(),
        path: PathBuf::from("tiny.tflite"),
        variant: Variant::Full,
        weights: "synthetic float32".into(),
        input_size: size,
        stem,
        blocks: vec![b1, b2],
        head,
        stream_buffers: vec![
            StreamBufferShape {
                frames: 2,
                pixels: 25,
                c: 16,
            },
            StreamBufferShape {
                frames: 4,
                pixels: 25,
                c: 24,
            },
        ],
        cumulative_pools: vec![16, 32],
    }
}

/// The CUDA device, one test at a time (installs the driver; panics without one).
fn device() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    cuda_common::driver();
    turn
}

fn compare(precision: Precision, buckets: Vec<usize>, tol: f32) {
    let _device = device();
    let model = Arc::new(tiny_model());
    let cfg = CudaConfig {
        precision,
        reserve_batch: 2,
        graph_buckets: Some(buckets),
        ..Default::default()
    };
    let mut gpu = CudaBackend::new(model.clone(), &cfg).expect("cuda backend");
    let mut cpu = CpuBackend::new(model.clone(), 2, 0).expect("cpu backend");
    let classes = model.classes();
    let fb = model.frame_bytes();
    let r = &mut Rng(99);
    for s in 0..6 {
        gpu.open_slot(s).expect("open");
        cpu.open_slot(s).expect("open");
    }
    for step in 0..8 {
        let mut slots: Vec<usize> = (0..6).collect();
        for i in (1..slots.len()).rev() {
            slots.swap(i, (r.next() % (i as u64 + 1)) as usize);
        }
        slots.truncate(1 + (r.next() % 6) as usize);
        if step == 5 {
            gpu.reset_slot(slots[0]).expect("reset");
            cpu.reset_slot(slots[0]).expect("reset");
        }
        let frames: Vec<Vec<u8>> = slots
            .iter()
            .map(|_| (0..fb).map(|_| r.next() as u8).collect())
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        let mut want = vec![0f32; slots.len() * classes];
        let mut got = vec![f32::NAN; slots.len() * classes];
        cpu.step(&slots, &refs, &mut want).expect("cpu step");
        gpu.step(&slots, &refs, &mut got).expect("gpu step");
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{precision:?} step {step} slots {slots:?}: logit {i} got {g}, want {w}"
            );
        }
    }
}

#[test]
fn cuda_f32_matches_cpu_with_graphs() {
    compare(Precision::F32, vec![1, 2, 4, 8], 1e-4);
}

#[test]
fn cuda_f32_matches_cpu_eager() {
    compare(Precision::F32, Vec::new(), 1e-4);
}

#[test]
fn cuda_f16_matches_cpu() {
    compare(Precision::F16, vec![1, 2, 4, 8], 5e-2);
}

/// What a step issues follows from the plan: one launch per op, two device copies per
/// `concat` (graph or eager alike); host→device carries every row's frame, slot index and
/// frame count, device→host only the batch's logits.
#[test]
fn cuda_step_stats_follow_the_plan() {
    let _device = device();
    let model = Arc::new(tiny_model());
    let plan = Plan::lower(&model).expect("lower");
    let concats = plan
        .steps()
        .iter()
        .filter(|s| matches!(s.op, Op::Concat { .. }))
        .count();
    let want_nodes = StepNodes {
        kernels: plan.steps().len() - concats,
        copies: 2 * concats,
    };
    for (buckets, graph) in [(Some(vec![1, 2, 4, 8]), true), (Some(Vec::new()), false)] {
        let cfg = CudaConfig {
            precision: Precision::F32,
            graph_buckets: buckets,
            ..Default::default()
        };
        let mut gpu = CudaBackend::new(model.clone(), &cfg).expect("cuda backend");
        assert!(gpu.last_step().is_none());
        for s in 0..3 {
            gpu.open_slot(s).expect("open");
        }
        let fb = model.frame_bytes();
        let frames = vec![vec![7u8; fb]; 3];
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        let mut logits = vec![0f32; 3 * model.classes()];
        gpu.step(&[0, 1, 2], &refs, &mut logits).expect("step"); // captures, sizes the workspace
        let before = vigil_cuda_emu::counters();
        gpu.step(&[0, 1, 2], &refs, &mut logits).expect("step");
        let executed = vigil_cuda_emu::counters();
        let st = gpu.last_step().expect("stats");
        let rows = if graph { 4 } else { 3 };
        assert_eq!(
            st,
            StepStats {
                batch: 3,
                rows,
                graph,
                nodes: want_nodes,
                host_to_device_bytes: rows * (fb + 4 + 8),
                device_to_host_bytes: 3 * model.classes() * 4,
            }
        );
        // What the device executed, as the emulated driver counted it (a real driver has
        // no counters): exactly what the backend says it issued.
        if let (Some(b), Some(a)) = (before, executed) {
            let d = a.since(&b);
            assert_eq!(
                d.kernel_launches as usize, st.nodes.kernels,
                "kernels executed"
            );
            assert_eq!(
                d.dtod_copies as usize, st.nodes.copies,
                "device copies executed"
            );
            assert_eq!(d.graph_launches, u64::from(graph), "graph launches");
            assert_eq!(
                d.eager_kernel_launches,
                if graph { 0 } else { d.kernel_launches }
            );
            assert_eq!(
                d.htod_bytes as usize, st.host_to_device_bytes,
                "host->device bytes"
            );
            assert_eq!(
                d.dtoh_bytes as usize, st.device_to_host_bytes,
                "device->host bytes"
            );
            assert_eq!(
                (d.memsets, d.allocations, d.frees),
                (0, 0, 0),
                "nothing allocated per step"
            );
        }
    }
}

/// The synthetic model above lowers into a valid plan and runs on the CPU (no GPU
/// needed), so a failure of the GPU tests is the CUDA backend's.
#[test]
fn tiny_model_lowers_and_runs_on_the_cpu() {
    let model = Arc::new(tiny_model());
    let plan = Plan::lower(&model).expect("lower");
    let kernels: Vec<&str> = plan.steps().iter().map(|s| s.op.kernel()).collect();
    for k in [
        "preprocess_u8",
        "conv2d",
        "avg_pool2d",
        "pointwise",
        "depthwise2d",
        "temporal_causal",
        "spatial_mean",
        "cumulative_pool",
        "concat",
    ] {
        assert!(kernels.contains(&k), "the tiny model exercises {k}");
    }
    let mut cpu = CpuBackend::new(model.clone(), 2, 0).expect("cpu backend");
    cpu.open_slot(0).expect("open");
    let frame = vec![100u8; model.frame_bytes()];
    let mut logits = vec![f32::NAN; model.classes()];
    for _ in 0..3 {
        cpu.step(&[0], &[&frame], &mut logits).expect("step");
        assert!(logits.iter().all(|v| v.is_finite()), "{logits:?}");
    }
}
