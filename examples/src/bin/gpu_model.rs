//! Example: the GPU performance MODEL of BENCHMARKS.md — per layer and per kernel FLOPs
//! and bytes per frame, launches and graph nodes per step, and the roofline upper bound
//! on frames/s of a MoViNet stream model on an H100 SXM at several batch sizes, compared
//! with recomputing a 32-frame clip per output. Everything printed is MODELLED from
//! datasheet peaks and stated assumptions (`vigil_engine::roofline`); nothing is measured.
//!
//! usage: `cargo run -p vigil-examples --bin gpu_model -- MODEL.tflite [--precision fp16]
//!         [--batch 1,64,1024,4096] [--detail-batch 1024] [--clip-frames 32]
//!         [--node-floor-us 1.5] [--step-fixed-us 10] [--per-node]`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use vigil_engine::roofline::{
    clip_nodes, fuse, fuse_all, state_bytes_per_stream, step_bound, step_nodes,
    workspace_bytes_per_stream, Bound, DevicePeaks, NodeKind, StepBound, StepNode, FUSED_BLOCK,
    FUSION_CANDIDATES,
};
use vigil_engine::{Model, Plan, Precision};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PrecisionArg {
    Fp16,
    Fp32,
}

#[derive(Parser, Debug)]
#[command(about = "Modelled (not measured) GPU roofline of a MoViNet stream step, as markdown")]
struct Args {
    /// A MoViNet stream `.tflite` (e.g. ../shared/models/movinet_a0_stream_cattle7_dynamic.tflite).
    model: PathBuf,
    /// Storage precision of the CUDA step.
    #[arg(long, value_enum, default_value = "fp16")]
    precision: PrecisionArg,
    /// Batch sizes (streams per step) to bound.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024,4096")]
    batch: Vec<usize>,
    /// Batch at which the per-layer and per-kernel time shares are shown.
    #[arg(long, default_value_t = 1024)]
    detail_batch: usize,
    /// Frames of the clip a clip model recomputes per output.
    #[arg(long, default_value_t = 32)]
    clip_frames: usize,
    /// ASSUMPTION: shortest time of one graph node, µs.
    #[arg(long)]
    node_floor_us: Option<f64>,
    /// ASSUMPTION: fixed cost per step (graph launch, copy latency, sync), µs.
    #[arg(long)]
    step_fixed_us: Option<f64>,
    /// Also print every node of the step.
    #[arg(long)]
    per_node: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.batch.contains(&0) || args.detail_batch == 0 || args.clip_frames == 0 {
        eprintln!("gpu_model: batch sizes and clip frames must be positive — e.g. --batch 1,64");
        return ExitCode::from(2);
    }
    let model = match Model::load(&args.model) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("gpu_model: {e} — pass a MoViNet stream .tflite, e.g. ../shared/models/movinet_a0_stream_cattle7_dynamic.tflite");
            return ExitCode::from(2);
        }
    };
    let plan = match Plan::lower(&model) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gpu_model: {e}");
            return ExitCode::from(2);
        }
    };
    let mut peaks = DevicePeaks::h100_sxm();
    if let Some(us) = args.node_floor_us {
        peaks.node_floor_s = us * 1e-6;
    }
    if let Some(us) = args.step_fixed_us {
        peaks.step_fixed_s = us * 1e-6;
    }
    let precision = match args.precision {
        PrecisionArg::Fp16 => Precision::F16,
        PrecisionArg::Fp32 => Precision::F32,
    };
    print!("{}", report(&model, &plan, precision, &peaks, &args));
    ExitCode::SUCCESS
}

fn kb(bytes: f64) -> String {
    format!("{:.1}", bytes / 1e3)
}

fn us(s: f64) -> String {
    if s >= 1e-3 {
        format!("{:.0}", s * 1e6)
    } else {
        format!("{:.1}", s * 1e6)
    }
}

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Aggregate of several nodes (one layer or one kernel) at the detail batch.
#[derive(Default)]
struct Group {
    nodes: usize,
    copies: usize,
    flops: f64,
    act: f64,
    state: f64,
    weights: f64,
    time_s: f64,
    bounds: BTreeMap<&'static str, usize>,
}

impl Group {
    fn add(&mut self, n: &StepNode, time_s: f64, bound: Bound) {
        self.nodes += 1;
        if n.kind == NodeKind::Copy {
            self.copies += 1;
        }
        self.flops += n.flops;
        self.act += n.act_read + n.act_write;
        self.state += n.state_read + n.state_write;
        self.weights += n.weight_bytes;
        self.time_s += time_s;
        *self.bounds.entry(bound.name()).or_default() += 1;
    }

    fn bound(&self) -> String {
        self.bounds
            .iter()
            .map(|(b, n)| format!("{b} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn report(
    model: &Model,
    plan: &Plan,
    precision: Precision,
    peaks: &DevicePeaks,
    args: &Args,
) -> String {
    let mut out = String::new();
    let nodes = step_nodes(plan, precision);
    let el = precision.bytes();
    let (frame, logits) = (model.frame_bytes(), model.classes() * el);
    let bound = |ns: &[StepNode], b: usize| step_bound(ns, peaks, b, frame, logits);
    let detail = bound(&nodes, args.detail_batch);
    let kernels = nodes.iter().filter(|n| n.kind == NodeKind::Kernel).count();
    let copies = nodes.len() - kernels;

    out += &format!(
        "**MODELLED, not measured.** `{}` ({}, {} variant, {} classes), {:?} storage, on an {} \
         from datasheet peaks: {:.2} TB/s HBM, {:.0} TFLOP/s dense fp16 tensor, {:.1} TFLOP/s \
         fp32 CUDA-core ({:.1} fp16 non-tensor, unused: the kernels compute in fp32), \
         {:.0} GB/s host link each way. Assumed: {} µs per graph node at least, {} µs fixed \
         per step.\n\n",
        model.name,
        model.family(),
        model.variant,
        model.classes(),
        precision,
        peaks.name,
        peaks.hbm_bytes_per_s / 1e12,
        peaks.tensor_f16_flops / 1e12,
        peaks.cuda_f32_flops / 1e12,
        peaks.cuda_f16_flops / 1e12,
        peaks.host_link_bytes_per_s / 1e9,
        peaks.node_floor_s * 1e6,
        peaks.step_fixed_s * 1e6,
    );
    out += &format!(
        "Per step: {kernels} kernel launches + {copies} device copies = {} graph nodes, \
         independent of the batch (counted from the model's plan as the CUDA backend enqueues \
         it: a launch per op, two copies per concat), plus 3 host→device copies and 1 device→host copy outside the graph.\n\n",
        nodes.len()
    );

    let state = state_bytes_per_stream(plan, precision) as f64;
    let workspace = workspace_bytes_per_stream(plan, precision) as f64;
    let weights: f64 = nodes.iter().map(|n| n.weight_bytes).sum();
    let biggest = args.batch.iter().copied().max().unwrap_or(1) as f64;
    out += &format!(
        "Device memory: {:.2} MB of carried state per stream, {:.2} MB of step workspace per \
         stream of the batch, {:.1} MB of weights: at batch {biggest} the {:.0} GB of an {} \
         hold the state of about {} streams.\n\n",
        state / 1e6,
        workspace / 1e6,
        weights / 1e6,
        peaks.memory_bytes / 1e9,
        peaks.name,
        rate(((peaks.memory_bytes - weights - biggest * workspace) / state).max(0.0))
    );

    // per layer
    let mut layers: Vec<(String, Group)> = Vec::new();
    let mut by_kernel: BTreeMap<&str, Group> = BTreeMap::new();
    for (n, t) in nodes.iter().zip(&detail.nodes) {
        if layers.last().map(|(l, _)| l != &n.layer).unwrap_or(true) {
            layers.push((n.layer.clone(), Group::default()));
        }
        if let Some((_, g)) = layers.last_mut() {
            g.add(n, t.time_s, t.bound);
        }
        by_kernel
            .entry(n.kernel.as_str())
            .or_default()
            .add(n, t.time_s, t.bound);
    }
    let b = args.detail_batch;
    out += &format!(
        "Per layer, per frame of one stream (weights: per step), modelled time at batch {b}:\n\n\
         | layer | nodes | MFLOP | activations KB | state KB | weights KB | µs at B={b} | share | bound by |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n"
    );
    let mut total = Group::default();
    for (name, g) in &layers {
        out += &format!(
            "| {name} | {} | {:.2} | {} | {} | {} | {} | {:.1}% | {} |\n",
            g.nodes,
            g.flops / 1e6,
            kb(g.act),
            kb(g.state),
            kb(g.weights),
            us(g.time_s),
            100.0 * g.time_s / detail.nodes_s,
            g.bound()
        );
        total.nodes += g.nodes;
        total.flops += g.flops;
        total.act += g.act;
        total.state += g.state;
        total.weights += g.weights;
        total.time_s += g.time_s;
    }
    out += &format!(
        "| **total** | {} | {:.2} | {} | {} | {} | {} | 100% | |\n\n",
        total.nodes,
        total.flops / 1e6,
        kb(total.act),
        kb(total.state),
        kb(total.weights),
        us(total.time_s)
    );

    // per kernel
    let mut ks: Vec<(&&str, &Group)> = by_kernel.iter().collect();
    ks.sort_by(|a, b| b.1.time_s.total_cmp(&a.1.time_s));
    out += &format!(
        "Per kernel, per frame of one stream, modelled time at batch {b}:\n\n\
         | kernel | launches / step | MFLOP | bytes KB (act + state) | weights KB | µs at B={b} | share | bound by |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n"
    );
    for (k, g) in &ks {
        out += &format!(
            "| `{k}` | {} | {:.2} | {} | {} | {} | {:.1}% | {} |\n",
            g.nodes,
            g.flops / 1e6,
            kb(g.act + g.state),
            kb(g.weights),
            us(g.time_s),
            100.0 * g.time_s / detail.nodes_s,
            g.bound()
        );
    }

    // the bound per batch, and the clip model
    let clip = clip_nodes(&nodes, args.clip_frames);
    out += &format!(
        "\nUpper bound on frames/s (modelled), this stream model vs. recomputing a {}-frame \
         clip per output:\n\n\
         | batch | HBM MB / step | GFLOP / step | memory-bound µs | compute-bound µs | node-floor µs | host link µs | step µs | **frames/s** | streams at {} fps | frames/s, copies overlapped | clip model frames/s | stream / clip |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        args.clip_frames,
        model.default_fps()
    );
    let mut bounds: Vec<StepBound> = Vec::new();
    for &batch in &args.batch {
        let s = bound(&nodes, batch);
        let c = bound(&clip, batch);
        out += &format!(
            "| {batch} | {:.1} | {:.2} | {} | {} | {} | {} | {} | **{}** | {} | {} | {} | {:.1}× |\n",
            s.bytes / 1e6,
            s.flops / 1e9,
            us(s.time_bound_by(Bound::Memory)),
            us(s.time_bound_by(Bound::Compute)),
            us(s.time_bound_by(Bound::Overhead)),
            us(s.host_link_s),
            us(s.step_s),
            rate(s.frames_per_s),
            rate(s.frames_per_s / model.default_fps()),
            rate(s.frames_per_s_overlapped(peaks)),
            rate(c.frames_per_s),
            s.frames_per_s / c.frames_per_s
        );
        bounds.push(s);
    }

    if let Some(s) = bounds.last() {
        let (tensor, cuda) = nodes.iter().fold((0.0, 0.0), |(t, c), n| {
            let (nt, nc) = n.issued_flops_split(s.batch);
            (t + nt, c + nc)
        });
        let (t_s, c_s) = (tensor / peaks.tensor_f16_flops, cuda / peaks.cuda_f32_flops);
        out += &format!(
            "\nAt batch {}, all arithmetic at peak would take {} µs ({} µs on tensor cores, {} µs \
             on CUDA cores): {:.0}% of the modelled step.\n",
            s.batch,
            us(t_s + c_s),
            us(t_s),
            us(c_s),
            100.0 * (t_s + c_s) / s.step_s
        );
    }
    let per_out = |ns: &[StepNode]| ns.iter().map(StepNode::stream_bytes).sum::<f64>();
    let work = |ns: &[StepNode]| ns.iter().map(|n| n.flops).sum::<f64>();
    out += &format!(
        "\nPer output (one new frame of one stream): this model {:.1} MFLOP and {:.2} MB of HBM \
         traffic; the {}-frame clip model {:.0} MFLOP ({:.1}×) and {:.1} MB ({:.1}×); both \
         also move {} KB over the host link (the u8 RGB frame), which is why the bound's ratio \
         is below the traffic ratio. Weights are read once per step in both.\n",
        work(&nodes) / 1e6,
        per_out(&nodes) / 1e6,
        args.clip_frames,
        work(&clip) / 1e6,
        work(&clip) / work(&nodes),
        per_out(&clip) / 1e6,
        per_out(&clip) / per_out(&nodes),
        kb(frame as f64),
    );

    // what bounds the step
    out += "\nThe node that bounds each step (largest modelled time):\n\n";
    for s in &bounds {
        let at_floor = s
            .nodes
            .iter()
            .filter(|t| t.bound == Bound::Overhead)
            .count();
        if 2.0 * s.time_bound_by(Bound::Overhead) > s.nodes_s {
            out += &format!(
                "- batch {}: node overhead dominates — {at_floor} of {} nodes take no longer \
                 than the assumed {} µs floor ({} µs of the {} µs of nodes); fewer nodes \
                 (fusion) lift it most\n",
                s.batch,
                nodes.len(),
                peaks.node_floor_s * 1e6,
                us(s.time_bound_by(Bound::Overhead)),
                us(s.nodes_s)
            );
            continue;
        }
        if let Some((n, t)) = nodes
            .iter()
            .zip(&s.nodes)
            .max_by(|a, b| a.1.time_s.total_cmp(&b.1.time_s))
        {
            let kernel_s: f64 = nodes
                .iter()
                .zip(&s.nodes)
                .filter(|(m, _)| m.kernel == n.kernel)
                .map(|(_, t)| t.time_s)
                .sum();
            out += &format!(
                "- batch {}: `{}` {} of {} ({} µs, {}-bound); all `{}` nodes: {:.0}% of the nodes' time\n",
                s.batch,
                n.kernel,
                n.role,
                n.layer,
                us(t.time_s),
                t.bound.name(),
                n.kernel,
                100.0 * kernel_s / s.nodes_s
            );
        }
    }

    // what would lift it
    let last = args
        .batch
        .iter()
        .copied()
        .max()
        .unwrap_or(args.detail_batch);
    let first = args.batch.iter().copied().min().unwrap_or(1);
    let per_frame = |ns: &[StepNode]| ns.iter().map(StepNode::stream_bytes).sum::<f64>();
    let base_bytes = per_frame(&nodes);
    let base_lo = bound(&nodes, first);
    let base_hi = bound(&nodes, last);
    out += &format!(
        "\nWhat would lift the bound (modelled what-ifs, each against today's kernels; \
         frames/s with today's serial copies):\n\n\
         | change | graph nodes / step | HBM KB / frame | frames/s at B={first} | frames/s at B={last} | gain at B={last} |\n\
         |---|---:|---:|---:|---:|---:|\n\
         | today | {} | {} | {} | {} | |\n",
        nodes.len(),
        kb(base_bytes),
        rate(base_lo.frames_per_s),
        rate(base_hi.frames_per_s)
    );
    let mut whatif = |label: &str, ns: &[StepNode]| {
        let lo = bound(ns, first);
        let hi = bound(ns, last);
        out += &format!(
            "| {label} | {} | {} | {} | {} | {:+.0}% |\n",
            ns.len(),
            kb(per_frame(ns)),
            rate(lo.frames_per_s),
            rate(hi.frames_per_s),
            100.0 * (hi.frames_per_s / base_hi.frames_per_s - 1.0)
        );
    };
    for f in FUSION_CANDIDATES {
        whatif(f.name, &fuse(&nodes, f));
    }
    let fused = fuse_all(&nodes, FUSED_BLOCK);
    whatif("all of the above", &fused);
    let fused_hi = bound(&fused, last);
    out += &format!(
        "| all of the above + copies overlapped with the previous step | {} | {} | {} | {} | {:+.0}% |\n",
        fused.len(),
        kb(per_frame(&fused)),
        rate(bound(&fused, first).frames_per_s_overlapped(peaks)),
        rate(fused_hi.frames_per_s_overlapped(peaks)),
        100.0 * (fused_hi.frames_per_s_overlapped(peaks) / base_hi.frames_per_s - 1.0)
    );

    if args.per_node {
        out += &format!(
            "\nEvery node, per frame of one stream, modelled at batch {b}:\n\n\
             | # | layer | role | kernel | MFLOP | act R KB | act W KB | state R KB | state W KB | weights KB | µs | bound |\n\
             |---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
        );
        for (i, (n, t)) in nodes.iter().zip(&detail.nodes).enumerate() {
            out += &format!(
                "| {i} | {} | {} | `{}` | {:.3} | {} | {} | {} | {} | {} | {} | {} |\n",
                n.layer,
                n.role,
                n.kernel,
                n.flops / 1e6,
                kb(n.act_read),
                kb(n.act_write),
                kb(n.state_read),
                kb(n.state_write),
                kb(n.weight_bytes),
                us(t.time_s),
                t.bound.name()
            );
        }
    }
    out
}
