//! The CUDA step's design, measured by the emulated driver's counters (they count what the
//! device executed): with a graph bucket, a step is ONE graph launch and no eager kernel;
//! host→device traffic is the batch rows' frames, slot indices and frame counts and
//! nothing else; device→host is the logits; no carried state ever crosses the bus, nothing
//! is allocated, freed or memset per step. Eagerly, the same kernels are launched one by
//! one. Always on the emulator (the counters are its own); the only test in this binary,
//! so the process-wide counters see nothing else.
#![cfg(feature = "cuda")]

mod common;
mod cuda_common;
use common::*;

use vigil_engine::cuda::{CudaBackend, CudaConfig};
use vigil_engine::roofline::{self, NodeKind};
use vigil_engine::Backend;
use vigil_kernels::Precision;

#[test]
fn a_step_is_one_graph_launch_and_moves_only_inputs_and_logits() {
    vigil_cuda_emu::install_emulator().unwrap_or_else(|e| panic!("{e}"));
    cuda_common::driver();
    let m = model(K600);
    let fx = fixture("k600__arm_wrestling_5fps.safetensors");
    let (fb, classes) = (m.frame_bytes(), m.classes());
    let steps = 2u64;
    let mut graph_kernels = None;
    for graphs in [true, false] {
        let cfg = CudaConfig {
            precision: Precision::F16,
            graph_buckets: if graphs { None } else { Some(Vec::new()) },
            ..Default::default()
        };
        let mut b =
            CudaBackend::new(m.clone(), &cfg).unwrap_or_else(|e| panic!("CUDA backend: {e}"));
        let slots = [0, 1, 2];
        for s in slots {
            b.open_slot(s).unwrap();
        }
        let frames = [fx.frame(0), fx.frame(1), fx.frame(2)];
        let mut logits = vec![0.0f32; 3 * classes];
        b.step(&slots, &frames, &mut logits).unwrap(); // captures the bucket's graph
        let before = vigil_cuda_emu::counters().expect("emulator counters");
        for _ in 0..steps {
            b.step(&slots, &frames, &mut logits).unwrap();
        }
        let d = vigil_cuda_emu::counters().unwrap().since(&before);
        eprintln!("{steps} steps of 3 streams, graphs {graphs}: {d:?}");
        // The batch's rows: 3, or its graph bucket (padding rows run on scratch slots).
        let rows = b.last_step().expect("step stats").rows as u64;
        assert!(rows >= 3);
        let row_inputs = fb as u64 + 4 + 8; // frame, slot index (u32), frame count (u64)
        assert_eq!(
            d.htod_copies,
            3 * steps,
            "frames, slots and counts: three copies a step"
        );
        assert_eq!(
            d.htod_bytes,
            rows * row_inputs * steps,
            "host->device: only the rows' inputs"
        );
        assert_eq!(d.dtoh_copies, steps, "one read-back a step");
        assert_eq!(
            d.dtoh_bytes,
            3 * classes as u64 * 2 * steps,
            "device->host: only the fp16 logits"
        );
        assert_eq!(
            d.dtod_bytes, 0,
            "the K600 model has no squeeze-excitation copies"
        );
        assert_eq!(
            (d.memsets, d.allocations, d.frees, d.host_memory_kernel_args),
            (0, 0, 0, 0),
            "the frame path allocates, frees and zeroes nothing, and reads no host memory"
        );
        assert_eq!(d.synchronizations, steps, "one synchronisation a step");
        let per_step = d.kernel_launches / steps;
        assert!(per_step > 60, "{per_step} kernels a step");
        let walked = b.last_step().expect("step stats").nodes;
        assert_eq!(
            (per_step, d.dtod_copies / steps),
            (walked.kernels as u64, walked.copies as u64),
            "the device executed exactly the kernels and copies the plan's walk enqueued"
        );
        let modelled = roofline::step_nodes(b.plan(), Precision::F16);
        let count = |k: NodeKind| modelled.iter().filter(|n| n.kind == k).count() as u64;
        assert_eq!(
            (per_step, d.dtod_copies / steps),
            (count(NodeKind::Kernel), count(NodeKind::Copy)),
            "the performance model's nodes per step are the ones the device executed"
        );
        if graphs {
            assert_eq!(
                d.graph_launches, steps,
                "the whole step is one graph launch"
            );
            assert_eq!(d.eager_kernel_launches, 0);
            assert_eq!(d.graph_kernel_nodes, d.kernel_launches);
            assert_eq!(
                d.graph_nodes, d.graph_kernel_nodes,
                "graph nodes are all kernels"
            );
            graph_kernels = Some(per_step);
        } else {
            assert_eq!(d.graph_launches, 0);
            assert_eq!(d.eager_kernel_launches, d.kernel_launches);
            assert_eq!(
                Some(per_step),
                graph_kernels,
                "the same kernels as the graph"
            );
        }
        assert!(
            d.htod_bytes + d.dtoh_bytes < b.state_bytes_per_slot() as u64,
            "far less than one stream's state crosses the bus per step"
        );
    }
}
