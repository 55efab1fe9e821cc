//! GPU tests: every CUDA kernel, in fp32 (verification) and fp16 mode, against its CPU
//! twin on fresh seeded random inputs, with the outputs poisoned (NaN-filled) beforehand.
//!
//! They run on CUDA device 0 of whatever driver [`vigil_cuda_emu::install`] provides: the
//! real one when it loads, else the emulated driver built from kernels/emu (the same
//! kernels/cuda sources on the CPU) — so they run in every CI run and never skip. A
//! device, NVRTC or cuda_fp16.h that cannot be set up is a failure. fp16 inputs are
//! quantized first and the CPU twin gets the same (dequantized) values, so the comparison
//! measures the kernel, not the input rounding. Tolerances (|got - want| <= atol + rtol *
//! |want|): fp32 2e-5 / 2e-5, fp16 1e-2 / 1e-2. The pre-Ampere path of `pointwise_f16`,
//! which no sm_80+ device runs, is checked on an emulated sm_75 device in a child process.

mod gpu_support;

use std::process::Command;

use gpu_support::*;
use vigil_kernels::cuda::{self, Storage};
use vigil_kernels::{cpu, Activation, Conv2dGeom};

const ACTS: [Activation; 5] = [
    Activation::None,
    Activation::Relu,
    Activation::Relu6,
    Activation::HardSwish,
    Activation::Swish,
];

// ---------------------------------------------------------------------------------------

fn preprocess_case<T: Storage>(g: &Gpu, seed: u64, batch: usize, frame_len: usize) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let frames: Vec<u8> = (0..batch * frame_len)
        .map(|_| rng.next_u64() as u8)
        .collect();
    let refs: Vec<&[u8]> = frames.chunks(frame_len).collect();
    let mut want = vec![0f32; batch * frame_len];
    cpu::preprocess_u8(&refs, &mut want);
    let d_frames = up(&s, &frames);
    let mut d_out = poisoned::<T>(&s, batch * frame_len);
    g.kernels
        .preprocess_u8::<T>(&s, &d_frames, batch, frame_len, &mut d_out)
        .expect("launch");
    let want: Vec<f32> = quant::<T>(&want).1;
    assert_close("preprocess_u8", T::PRECISION, &down(&s, &d_out), &want);
}

#[test]
fn preprocess_u8_matches_cpu() {
    let g = gpu();
    for (i, &(b, len)) in [(1, 3), (3, 17 * 13 * 3), (2, 172 * 172 * 3)]
        .iter()
        .enumerate()
    {
        preprocess_case::<f32>(g, 10 + i as u64, b, len);
        preprocess_case::<half::f16>(g, 20 + i as u64, b, len);
    }
}

fn conv2d_case<T: Storage>(
    g: &Gpu,
    seed: u64,
    batch: usize,
    geom: Conv2dGeom,
    cin: usize,
    cout: usize,
    act: Activation,
) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let fan = (geom.k_h * geom.k_w * cin) as f32;
    let (hx, x) = quant::<T>(&rng.vec(batch * geom.in_pixels() * cin, 0.0, 1.0));
    let (hw, w) = quant::<T>(
        &rng.vec(geom.k_h * geom.k_w * cin * cout, -1.0, 1.0)
            .iter()
            .map(|v| v * 2.0 / fan.sqrt())
            .collect::<Vec<_>>(),
    );
    let bias = rng.vec(cout, -0.5, 0.5);
    let n_out = batch * geom.out_pixels() * cout;
    let mut want = vec![0f32; n_out];
    cpu::conv2d(&x, batch, &geom, cin, &w, &bias, cout, act, &mut want);
    let (dx, dw, db) = (up(&s, &hx), up(&s, &hw), up(&s, &bias));
    let mut dy = poisoned::<T>(&s, n_out);
    g.kernels
        .conv2d::<T>(&s, &dx, batch, &geom, cin, &dw, &db, cout, act, &mut dy)
        .expect("launch");
    assert_close(
        &format!("conv2d {geom:?} cin={cin} cout={cout} {act:?}"),
        T::PRECISION,
        &down(&s, &dy),
        &want,
    );
}

#[test]
fn conv2d_matches_cpu() {
    let g = gpu();
    let cases = [
        (2, Conv2dGeom::same(172, 172, 3, 3, 2), 3, 8),
        (3, Conv2dGeom::same(17, 23, 3, 3, 2), 3, 8),
        (1, Conv2dGeom::same(9, 7, 3, 3, 1), 5, 13),
        (2, Conv2dGeom::valid(11, 11, 3, 3, 2), 4, 6),
        (1, Conv2dGeom::same(10, 10, 5, 5, 2), 2, 3),
    ];
    for (i, &(b, geom, cin, cout)) in cases.iter().enumerate() {
        let act = ACTS[i % ACTS.len()];
        conv2d_case::<f32>(g, 100 + i as u64, b, geom, cin, cout, act);
        conv2d_case::<half::f16>(g, 200 + i as u64, b, geom, cin, cout, act);
    }
}

#[allow(clippy::too_many_arguments)]
fn pointwise_case<T: Storage>(
    g: &Gpu,
    seed: u64,
    m: usize,
    k: usize,
    n: usize,
    act: Activation,
    with_residual: bool,
    gate_p: Option<usize>,
    misalign: bool,
) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let off = usize::from(misalign);
    let (hx, x) = quant::<T>(&rng.vec(m * k + off, -1.0, 1.0));
    let x = &x[off..];
    let (hw, w) = quant::<T>(
        &rng.vec(n * k, -1.0, 1.0)
            .iter()
            .map(|v| v * 1.7 / (k as f32).sqrt())
            .collect::<Vec<_>>(),
    );
    let bias = rng.vec(n, -0.5, 0.5);
    let (hr, r) = quant::<T>(&rng.vec(m * n, -1.0, 1.0));
    let residual = with_residual.then_some(&r[..]);
    let mut want = vec![0f32; m * n];
    let dx = up(&s, &hx);
    let dxv = dx.slice(off..);
    let (dw, db, dr) = (up(&s, &hw), up(&s, &bias), up(&s, &hr));
    let mut dy = poisoned::<T>(&s, m * n);
    let d_res =
        with_residual.then_some(&dr as &dyn vigil_kernels::cuda::cudarc::driver::DevicePtr<T>);
    let what = format!("pointwise M={m} K={k} N={n} {act:?} residual={with_residual} gate={gate_p:?} misalign={misalign}");
    match gate_p {
        None => {
            cpu::pointwise(x, m, k, &w, n, &bias, act, residual, &mut want);
            g.kernels
                .pointwise::<T>(&s, &dxv, m, k, &dw, n, &db, act, d_res, &mut dy)
                .expect("launch");
        }
        Some(p) => {
            let streams = m / p;
            let (hg, gate) = quant::<T>(&rng.vec(streams * k, 0.0, 6.0));
            let scale = 1.0 / 6.0;
            let mut scratch = vec![0f32; m * k];
            cuda::twins::pointwise_gated(
                x,
                m,
                k,
                &w,
                n,
                &bias,
                act,
                residual,
                &gate,
                p,
                scale,
                &mut scratch,
                &mut want,
            );
            let dg = up(&s, &hg);
            g.kernels
                .pointwise_gated::<T>(
                    &s, &dxv, m, k, &dw, n, &db, act, d_res, &dg, p, scale, &mut dy,
                )
                .expect("launch");
        }
    }
    assert_close(&what, T::PRECISION, &down(&s, &dy), &want);
}

#[test]
fn pointwise_matches_cpu() {
    let g = gpu();
    // (M, K, N, residual, misaligned A)
    let cases = [
        (1, 1, 1, false, false),
        (37, 13, 29, true, false),
        (130, 64, 72, false, false),
        (130, 64, 72, true, true),
        (2 * 43 * 43, 40, 96, true, false),
        (5, 480, 2048, false, false),
        (4, 2048, 600, false, false),
        (300, 200, 480, true, false),
        (65, 8, 65, false, false),
        (2 * 86 * 86, 8, 24, false, false),
    ];
    for (i, &(m, k, n, res, mis)) in cases.iter().enumerate() {
        let act = ACTS[i % ACTS.len()];
        pointwise_case::<f32>(g, 300 + i as u64, m, k, n, act, res, None, mis);
        pointwise_case::<half::f16>(g, 400 + i as u64, m, k, n, act, res, None, mis);
    }
}

#[test]
fn pointwise_gated_matches_cpu_twin() {
    let g = gpu();
    // (streams, P, K, N, residual)
    let cases = [
        (1, 1, 16, 8, false),
        (3, 121, 56, 24, true),
        (2, 36, 480, 104, true),
        (4, 29, 13, 7, false),
    ];
    for (i, &(b, p, k, n, res)) in cases.iter().enumerate() {
        let act = ACTS[(i + 2) % ACTS.len()];
        pointwise_case::<f32>(g, 500 + i as u64, b * p, k, n, act, res, Some(p), false);
        pointwise_case::<half::f16>(g, 600 + i as u64, b * p, k, n, act, res, Some(p), false);
    }
}

fn window_case<T: Storage>(
    g: &Gpu,
    seed: u64,
    batch: usize,
    geom: Conv2dGeom,
    c: usize,
    act: Activation,
    pool: bool,
) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let (hx, x) = quant::<T>(&rng.vec(batch * geom.in_pixels() * c, -2.0, 2.0));
    let taps = (geom.k_h * geom.k_w) as f32;
    let (hw, w) = quant::<T>(
        &rng.vec(geom.k_h * geom.k_w * c, -1.0, 1.0)
            .iter()
            .map(|v| v * 2.0 / taps.sqrt())
            .collect::<Vec<_>>(),
    );
    let bias = rng.vec(c, -0.5, 0.5);
    let n_out = batch * geom.out_pixels() * c;
    let mut want = vec![0f32; n_out];
    let dx = up(&s, &hx);
    let mut dy = poisoned::<T>(&s, n_out);
    if pool {
        cpu::avg_pool2d(&x, batch, &geom, c, &mut want);
        g.kernels
            .avg_pool2d::<T>(&s, &dx, batch, &geom, c, &mut dy)
            .expect("launch");
    } else {
        cpu::depthwise2d(&x, batch, &geom, c, &w, &bias, act, &mut want);
        let (dw, db) = (up(&s, &hw), up(&s, &bias));
        g.kernels
            .depthwise2d::<T>(&s, &dx, batch, &geom, c, &dw, &db, act, &mut dy)
            .expect("launch");
    }
    let what = if pool {
        format!("avg_pool2d {geom:?} c={c}")
    } else {
        format!("depthwise2d {geom:?} c={c} {act:?}")
    };
    assert_close(&what, T::PRECISION, &down(&s, &dy), &want);
}

#[test]
fn depthwise2d_matches_cpu() {
    let g = gpu();
    let cases = [
        (2, Conv2dGeom::same(22, 22, 3, 3, 1), 24),
        (2, Conv2dGeom::same(43, 43, 5, 5, 2), 40),
        (3, Conv2dGeom::same(11, 11, 5, 5, 2), 17),
        (1, Conv2dGeom::same(6, 6, 3, 3, 1), 3),
        (2, Conv2dGeom::same(86, 86, 5, 5, 2), 16),
        (1, Conv2dGeom::same(7, 9, 3, 3, 2), 5),
    ];
    for (i, &(b, geom, c)) in cases.iter().enumerate() {
        let act = ACTS[i % ACTS.len()];
        window_case::<f32>(g, 700 + i as u64, b, geom, c, act, false);
        window_case::<half::f16>(g, 800 + i as u64, b, geom, c, act, false);
    }
}

#[test]
fn avg_pool2d_matches_cpu() {
    let g = gpu();
    let cases = [
        (2, Conv2dGeom::same(43, 43, 3, 3, 2), 16),
        (3, Conv2dGeom::same(6, 6, 3, 3, 2), 5),
        (1, Conv2dGeom::same(22, 22, 3, 3, 2), 7),
        (2, Conv2dGeom::same(11, 11, 3, 3, 2), 33),
    ];
    for (i, &(b, geom, c)) in cases.iter().enumerate() {
        window_case::<f32>(g, 900 + i as u64, b, geom, c, Activation::None, true);
        window_case::<half::f16>(g, 1000 + i as u64, b, geom, c, Activation::None, true);
    }
}

/// Several steps over a slot pool with a shuffled subset of streams each step; checks the
/// outputs every step and the whole ring pool at the end.
fn temporal_case<T: Storage>(g: &Gpu, seed: u64, p: usize, c: usize, kt: usize, act: Activation) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let n_slots = 6;
    let frame = p * c;
    let slot_len = (kt - 1) * frame;
    let (hw, w) = quant::<T>(&rng.vec(kt * c, -1.0, 1.0));
    let bias = rng.vec(c, -0.5, 0.5);
    let (dw, db) = (up(&s, &hw), up(&s, &bias));
    let mut cpu_state = vec![0f32; n_slots * slot_len];
    let mut d_state = s.alloc_zeros::<T>(n_slots * slot_len).expect("alloc");
    let mut frames_done = vec![0u64; n_slots];
    for step in 0..9 {
        let mut slots: Vec<usize> = (0..n_slots).collect();
        rng.shuffle(&mut slots);
        let batch = 1 + rng.below(n_slots);
        let slots = &slots[..batch];
        let t: Vec<u64> = slots.iter().map(|&sl| frames_done[sl]).collect();
        let (hcur, cur) = quant::<T>(&rng.vec(batch * frame, -2.0, 2.0));
        let mut want = vec![0f32; batch * frame];
        cpu::temporal_causal(
            &cur,
            p,
            c,
            kt,
            &w,
            &bias,
            act,
            slots,
            &t,
            &mut cpu_state,
            &mut want,
        );
        let slots_u32: Vec<u32> = slots.iter().map(|&v| v as u32).collect();
        let (dslots, dt, dcur) = (up(&s, &slots_u32), up(&s, &t), up(&s, &hcur));
        let mut dy = poisoned::<T>(&s, batch * frame);
        g.kernels
            .temporal_causal::<T>(
                &s,
                &dcur,
                batch,
                p,
                c,
                kt,
                &dw,
                &db,
                act,
                &dslots,
                &dt,
                &mut d_state,
                &mut dy,
            )
            .expect("launch");
        assert_close(
            &format!("temporal_causal p={p} c={c} kt={kt} step {step} slots {slots:?} t {t:?}"),
            T::PRECISION,
            &down(&s, &dy),
            &want,
        );
        for &sl in slots {
            frames_done[sl] += 1;
        }
    }
    assert_close(
        &format!("temporal_causal ring pool p={p} c={c} kt={kt}"),
        T::PRECISION,
        &down(&s, &d_state),
        &cpu_state,
    );
}

#[test]
fn temporal_causal_ring_matches_cpu() {
    let g = gpu();
    let cases = [(13, 7, 3), (13, 7, 5), (36, 16, 3), (1, 1, 2), (121, 24, 5)];
    for (i, &(p, c, kt)) in cases.iter().enumerate() {
        let act = ACTS[(i + 1) % ACTS.len()];
        temporal_case::<f32>(g, 1100 + i as u64, p, c, kt, act);
        temporal_case::<half::f16>(g, 1200 + i as u64, p, c, kt, act);
    }
}

fn spatial_mean_case<T: Storage>(g: &Gpu, seed: u64, batch: usize, p: usize, c: usize) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let (hx, x) = quant::<T>(&rng.vec(batch * p * c, -1.0, 2.0));
    let scale: Vec<f32> = (0..c).map(|_| rng.uniform(0.5, 1.5) / p as f32).collect();
    let mut want = vec![0f32; batch * c];
    cpu::spatial_mean(&x, batch, p, c, &scale, &mut want);
    let (dx, ds) = (up(&s, &hx), up(&s, &scale));
    let mut dout = poisoned::<T>(&s, batch * c);
    g.kernels
        .spatial_mean::<T>(&s, &dx, batch, p, c, &ds, &mut dout)
        .expect("launch");
    assert_close(
        &format!("spatial_mean B={batch} P={p} C={c}"),
        T::PRECISION,
        &down(&s, &dout),
        &want,
    );
}

#[test]
fn spatial_mean_matches_cpu() {
    let g = gpu();
    for (i, &(b, p, c)) in [
        (3, 43 * 43, 37),
        (2, 1, 480),
        (1, 7, 1),
        (4, 86 * 86, 16),
        (2, 36, 65),
    ]
    .iter()
    .enumerate()
    {
        spatial_mean_case::<f32>(g, 1300 + i as u64, b, p, c);
        spatial_mean_case::<half::f16>(g, 1400 + i as u64, b, p, c);
    }
}

fn cumulative_pool_case<T: Storage>(g: &Gpu, seed: u64, c: usize) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let n_slots = 5;
    let mut cpu_sums = vec![0f32; n_slots * c];
    let mut d_sums = s.alloc_zeros::<f32>(n_slots * c).expect("alloc");
    let mut frames_done = vec![0u64; n_slots];
    for step in 0..7 {
        let mut slots: Vec<usize> = (0..n_slots).collect();
        rng.shuffle(&mut slots);
        let batch = 1 + rng.below(n_slots);
        let slots = &slots[..batch];
        let t: Vec<u64> = slots.iter().map(|&sl| frames_done[sl]).collect();
        let (hx, x) = quant::<T>(&rng.vec(batch * c, -1.0, 3.0));
        let mut want = vec![0f32; batch * c];
        cpu::cumulative_pool(&x, c, slots, &t, &mut cpu_sums, &mut want);
        let slots_u32: Vec<u32> = slots.iter().map(|&v| v as u32).collect();
        let (dslots, dt, dx) = (up(&s, &slots_u32), up(&s, &t), up(&s, &hx));
        let mut dout = poisoned::<T>(&s, batch * c);
        g.kernels
            .cumulative_pool::<T>(&s, &dx, batch, c, &dslots, &dt, &mut d_sums, &mut dout)
            .expect("launch");
        assert_close(
            &format!("cumulative_pool C={c} step {step}"),
            T::PRECISION,
            &down(&s, &dout),
            &want,
        );
        for &sl in slots {
            frames_done[sl] += 1;
        }
    }
    let got = s.clone_dtoh(&d_sums).expect("dtoh");
    assert_close(
        &format!("cumulative_pool sums C={c}"),
        T::PRECISION,
        &got,
        &cpu_sums,
    );
}

#[test]
fn cumulative_pool_matches_cpu() {
    let g = gpu();
    for (i, &c) in [1usize, 37, 480, 2048].iter().enumerate() {
        cumulative_pool_case::<f32>(g, 1500 + i as u64, c);
        cumulative_pool_case::<half::f16>(g, 1600 + i as u64, c);
    }
}

fn channel_gate_case<T: Storage>(g: &Gpu, seed: u64, batch: usize, p: usize, c: usize) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let (hx, mut want) = quant::<T>(&rng.vec(batch * p * c, -2.0, 2.0));
    let (hg, gate) = quant::<T>(&rng.vec(batch * c, 0.0, 6.0));
    let scale = 1.0 / 6.0;
    cpu::channel_gate(&mut want, batch, p, c, &gate, scale);
    let mut dx = up(&s, &hx);
    let dg = up(&s, &hg);
    g.kernels
        .channel_gate::<T>(&s, &mut dx, batch, p, c, &dg, scale)
        .expect("launch");
    assert_close(
        &format!("channel_gate B={batch} P={p} C={c}"),
        T::PRECISION,
        &down(&s, &dx),
        &want,
    );
}

#[test]
fn channel_gate_matches_cpu() {
    let g = gpu();
    for (i, &(b, p, c)) in [(3, 29, 19), (2, 22 * 22, 48), (1, 1, 1), (4, 6 * 6, 480)]
        .iter()
        .enumerate()
    {
        channel_gate_case::<f32>(g, 1700 + i as u64, b, p, c);
        channel_gate_case::<half::f16>(g, 1800 + i as u64, b, p, c);
    }
}

/// `pointwise_f16` has a scalar fallback for devices before sm_80 (same accumulator
/// ownership as the mma fragments). No sm_80+ GPU runs it, so the two pointwise tests run
/// again in a child process (this binary) on the emulated driver built as an sm_75 device:
/// NVRTC builds sm_75, and the emulator runs the kernels with `__CUDA_ARCH__` = 750.
#[test]
fn pointwise_pre_ampere_path_matches_cpu_on_an_emulated_sm75() {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args([
            "--exact",
            "pointwise_matches_cpu",
            "pointwise_gated_matches_cpu_twin",
            "--nocapture",
        ])
        .env("VIGIL_CUDA_DRIVER", "emulated")
        .env("VIGIL_EMU_SM", "75")
        .output()
        .expect("run the child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the sm_75 run failed:\n{text}");
    assert!(
        text.contains("kernels built by NVRTC for sm_75"),
        "not an sm_75 device:\n{text}"
    );
    assert!(text.contains("2 passed"), "{text}");
}

/// A too-short buffer is a `KernelError::Shape` naming the op, not a launch.
#[test]
fn shape_errors_name_the_op() {
    let g = gpu();
    let s = stream(g);
    let x = s.alloc_zeros::<f32>(10).expect("alloc");
    let w = s.alloc_zeros::<f32>(4).expect("alloc");
    let b = s.alloc_zeros::<f32>(2).expect("alloc");
    let mut y = s.alloc_zeros::<f32>(3).expect("alloc");
    let err = g
        .kernels
        .pointwise::<f32>(&s, &x, 5, 2, &w, 2, &b, Activation::None, None, &mut y)
        .expect_err("short y");
    assert!(err.to_string().contains("pointwise"), "{err}");
}
