//! GPU tests of the transformer kernels (CLIP / X-CLIP encoders: `linear.cu`,
//! `layernorm.cu`, `attention.cu`) against their CPU twins (`cpu::linear::linear`,
//! `cpu::layernorm::layer_norm`, `cpu::attention::attention`), in fp32 (verification) and
//! fp16 mode, on fresh seeded random inputs — fixed shapes with every kind of tail plus
//! seeded random shapes — with the outputs poisoned (NaN-filled) beforehand.
//!
//! Like `gpu_twins`, they run on CUDA device 0 of whatever driver `vigil_cuda_emu::install`
//! provides (the real one when it loads, else the emulated driver: in every CI run, never
//! skipped). fp16 inputs are quantized first and the CPU twin gets the same values, so only
//! the kernel is measured. Tolerances (|got - want| <= atol + rtol * |want|):
//! - fp32: 2e-5 / 2e-5 (summation order of the GEMM and dot products; `expf`/`erff` against
//!   the CPU's own `exp`/`erf`, both within a few ulp);
//! - fp16: 1e-3 / 1e-3. Every kernel accumulates and normalises in fp32 and rounds once to
//!   fp16 on the way out (half an ulp: 2^-12 ≈ 2.4e-4 relative), so this is ~4 output ulps,
//!   ten times tighter than the MoViNet kernels' 1e-2.
//!
//! Shapes stay small: the emulator runs every CUDA thread on the CPU. The pre-Ampere
//! path of `linear_f16` is gemm.cuh's main loop, shared with `pointwise_f16` and run on an
//! emulated sm_75 by `gpu_twins` (the epilogue does not depend on the architecture).

mod gpu_support;

use gpu_support::*;
use vigil_kernels::cpu::attention::{attention, AttentionShape, Rows};
use vigil_kernels::cpu::gelu::Gelu;
use vigil_kernels::cpu::layernorm::layer_norm;
use vigil_kernels::cpu::linear::{linear, LinearWeights};
use vigil_kernels::cuda::cudarc::driver::DevicePtr;
use vigil_kernels::cuda::{DeviceRows, Precision, Storage, ATTENTION_MAX_HEAD_DIM};

const ACTS: [Option<Gelu>; 4] = [None, Some(Gelu::Quick), Some(Gelu::Erf), Some(Gelu::Tanh)];

fn tol(p: Precision) -> (f32, f32) {
    match p {
        Precision::F32 => (2e-5, 2e-5),
        Precision::F16 => (1e-3, 1e-3),
    }
}

// ---------------------------------------------------------------------------------------

/// `linear` on `x [m, k]` (starting one element into its buffer when `misalign`: the
/// kernel's unaligned staging path) against the CPU GEMM on packed weights.
#[allow(clippy::too_many_arguments)]
fn linear_case<T: Storage>(
    g: &Gpu,
    seed: u64,
    m: usize,
    k: usize,
    n: usize,
    act: Option<Gelu>,
    with_residual: bool,
    misalign: bool,
) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let off = usize::from(misalign);
    let (hx, x) = quant::<T>(&rng.vec(m * k + off, -1.5, 1.5));
    let x = &x[off..];
    let scale = 1.7 / (k as f32).sqrt();
    let (hw, w) = quant::<T>(
        &rng.vec(n * k, -1.0, 1.0)
            .iter()
            .map(|v| v * scale)
            .collect::<Vec<_>>(),
    );
    let bias = rng.vec(n, -0.5, 0.5);
    let (hr, r) = quant::<T>(&rng.vec(m * n, -1.0, 1.0));
    let mut want = vec![0f32; m * n];
    linear(
        x,
        m,
        &LinearWeights::pack(&w, n, k),
        &bias,
        act,
        with_residual.then_some(&r[..]),
        &mut want,
    );
    let dx = up(&s, &hx);
    let (dw, db, dr) = (up(&s, &hw), up(&s, &bias), up(&s, &hr));
    let mut dy = poisoned::<T>(&s, m * n);
    let d_res = with_residual.then_some(&dr as &dyn DevicePtr<T>);
    g.kernels
        .linear::<T>(&s, &dx.slice(off..), m, k, &dw, n, &db, act, d_res, &mut dy)
        .expect("launch");
    let what =
        format!("linear M={m} K={k} N={n} {act:?} residual={with_residual} misalign={misalign}");
    let p = T::PRECISION;
    assert_within(&what, p, tol(p), &down(&s, &dy), &want);
}

fn linear_cases(g: &Gpu, seed: u64, cases: &[(usize, usize, usize, bool, bool)]) {
    for (i, &(m, k, n, res, mis)) in cases.iter().enumerate() {
        let act = ACTS[i % ACTS.len()];
        linear_case::<f32>(g, seed + 2 * i as u64, m, k, n, act, res, mis);
        linear_case::<half::f16>(g, seed + 2 * i as u64 + 1, m, k, n, act, res, mis);
    }
}

#[test]
fn linear_matches_cpu() {
    let g = gpu();
    // (M, K, N, residual, misaligned x): single element; ViT-like 50 tokens x 2 frames
    // with the fused QKV (N = 3 x 32) and MLP shapes; tails in every dimension; K not a
    // multiple of 8 (element staging); misaligned x; several k tiles.
    let mut cases = vec![
        (1, 1, 1, false, false),
        (100, 32, 96, false, false),
        (100, 32, 128, true, false),
        (100, 128, 32, true, false),
        (37, 13, 29, true, false),
        (65, 72, 65, false, true),
        (3, 200, 70, true, false),
        (130, 40, 8, false, false),
    ];
    // seeded random shapes
    let mut rng = Rng::new(7100);
    for _ in 0..4 {
        let (m, k, n) = (1 + rng.below(140), 1 + rng.below(160), 1 + rng.below(140));
        cases.push((m, k, n, rng.below(2) == 1, rng.below(2) == 1));
    }
    linear_cases(g, 7000, &cases);
}

// ---------------------------------------------------------------------------------------

fn layer_norm_case<T: Storage>(g: &Gpu, seed: u64, rows: usize, d: usize, stride: usize) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let len = if rows == 0 {
        0
    } else {
        (rows - 1) * stride + d
    };
    // an offset mean and a spread like a residual stream's
    let (hx, x) = quant::<T>(&rng.vec(len, -2.0, 3.0));
    let gamma = rng.vec(d, 0.5, 1.5);
    let beta = rng.vec(d, -0.5, 0.5);
    let eps = 1e-5;
    let mut want = vec![0f32; rows * d];
    layer_norm(&x, stride, rows, d, &gamma, &beta, eps, &mut want);
    let (dx, dg, dbeta) = (up(&s, &hx), up(&s, &gamma), up(&s, &beta));
    let mut dy = poisoned::<T>(&s, rows * d);
    g.kernels
        .layer_norm::<T>(&s, &dx, stride, rows, d, &dg, &dbeta, eps, &mut dy)
        .expect("launch");
    let p = T::PRECISION;
    let what = format!("layer_norm rows={rows} d={d} stride={stride}");
    assert_within(&what, p, tol(p), &down(&s, &dy), &want);
}

#[test]
fn layer_norm_matches_cpu() {
    let g = gpu();
    // (rows, d, x_stride): one value; ViT tokens; the class token of each of 3 images
    // (stride = 50 tokens x width); d not a multiple of the block; d > 7 x block.
    let mut cases = vec![
        (1, 1, 1),
        (100, 64, 64),
        (3, 96, 50 * 96),
        (17, 130, 131),
        (4, 1000, 1000),
    ];
    let mut rng = Rng::new(7200);
    for _ in 0..3 {
        let (rows, d) = (1 + rng.below(40), 1 + rng.below(400));
        cases.push((rows, d, d + rng.below(3)));
    }
    for (i, &(rows, d, stride)) in cases.iter().enumerate() {
        layer_norm_case::<f32>(g, 7300 + 2 * i as u64, rows, d, stride);
        layer_norm_case::<half::f16>(g, 7301 + 2 * i as u64, rows, d, stride);
    }
}

// ---------------------------------------------------------------------------------------

/// Attention over q, k, v taken from one fused QKV buffer `[batch * len, 3 * d]` (self
/// attention, `fused`), or from three separate contiguous buffers (cross attention:
/// `q_len != kv_len` allowed).
fn attention_case<T: Storage>(g: &Gpu, seed: u64, shape: AttentionShape, fused: bool) {
    let s = stream(g);
    let mut rng = Rng::new(seed);
    let AttentionShape {
        batch,
        heads,
        q_len,
        kv_len,
        head_dim,
        ..
    } = shape;
    let d = heads * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let n_out = batch * q_len * d;
    let mut want = vec![0f32; n_out];
    let mut dout = poisoned::<T>(&s, n_out);
    let what = format!("attention {shape:?} fused={fused}");
    if fused {
        assert_eq!(q_len, kv_len);
        let (hqkv, qkv) = quant::<T>(&rng.vec(batch * q_len * 3 * d, -2.0, 2.0));
        let rows = |o: usize| Rows {
            data: &qkv[o..],
            stride: 3 * d,
        };
        attention(rows(0), rows(d), rows(2 * d), &shape, scale, &mut want);
        let dqkv = up(&s, &hqkv);
        let (vq, vk, vv) = (dqkv.slice(0..), dqkv.slice(d..), dqkv.slice(2 * d..));
        let dr = |v| DeviceRows {
            data: v,
            stride: 3 * d,
        };
        g.kernels
            .attention::<T>(&s, dr(&vq), dr(&vk), dr(&vv), &shape, scale, &mut dout)
            .expect("launch");
    } else {
        let (hq, q) = quant::<T>(&rng.vec(batch * q_len * d, -2.0, 2.0));
        let (hk, k) = quant::<T>(&rng.vec(batch * kv_len * d, -2.0, 2.0));
        let (hv, v) = quant::<T>(&rng.vec(batch * kv_len * d, -2.0, 2.0));
        let rows = |data| Rows { data, stride: d };
        attention(rows(&q), rows(&k), rows(&v), &shape, scale, &mut want);
        let (dq, dk, dv) = (up(&s, &hq), up(&s, &hk), up(&s, &hv));
        let (rq, rk, rv) = (
            DeviceRows {
                data: &dq,
                stride: d,
            },
            DeviceRows {
                data: &dk,
                stride: d,
            },
            DeviceRows {
                data: &dv,
                stride: d,
            },
        );
        g.kernels
            .attention::<T>(&s, rq, rk, rv, &shape, scale, &mut dout)
            .expect("launch");
    }
    let p = T::PRECISION;
    assert_within(&what, p, tol(p), &down(&s, &dout), &want);
}

fn shape(b: usize, h: usize, q: usize, kv: usize, hd: usize, causal: bool) -> AttentionShape {
    AttentionShape {
        batch: b,
        heads: h,
        q_len: q,
        kv_len: kv,
        head_dim: hd,
        causal,
    }
}

#[test]
fn attention_matches_cpu() {
    let g = gpu();
    // (shape, fused QKV): one token; ViT-like 50 tokens (2 query blocks, 4 key tiles);
    // text-like causal 77 tokens; cross attention with q_len < kv_len, causal and not;
    // the largest head_dim; an odd head_dim; a key count below one tile.
    let mut cases = vec![
        (shape(1, 1, 1, 1, 1, false), true),
        (shape(2, 3, 50, 50, 16, false), true),
        (shape(1, 2, 77, 77, 32, true), true),
        (shape(2, 2, 5, 37, 24, false), false),
        (shape(1, 1, 33, 40, 64, true), false),
        (shape(1, 1, 20, 20, ATTENTION_MAX_HEAD_DIM, false), true),
        (shape(1, 2, 17, 17, 13, true), true),
        (shape(3, 1, 9, 3, 8, false), false),
    ];
    let mut rng = Rng::new(7400);
    for _ in 0..3 {
        let (q, hd) = (1 + rng.below(70), 1 + rng.below(64));
        let causal = rng.below(2) == 1;
        cases.push((
            shape(1 + rng.below(2), 1 + rng.below(3), q, q, hd, causal),
            true,
        ));
    }
    for (i, &(sh, fused)) in cases.iter().enumerate() {
        attention_case::<f32>(g, 7500 + 2 * i as u64, sh, fused);
        attention_case::<half::f16>(g, 7501 + 2 * i as u64, sh, fused);
    }
}

// ---------------------------------------------------------------------------------------

/// Bad shapes are a `KernelError::Shape` naming the op, never a launch.
#[test]
fn transformer_shape_errors_name_the_op() {
    let g = gpu();
    let s = stream(g);
    let buf = s.alloc_zeros::<f32>(64).expect("alloc");
    let mut y = s.alloc_zeros::<f32>(3).expect("alloc");
    let err = g
        .kernels
        .linear::<f32>(&s, &buf, 5, 2, &buf, 2, &buf, None, None, &mut y)
        .expect_err("short y");
    assert!(err.to_string().contains("linear"), "{err}");
    let err = g
        .kernels
        .layer_norm::<f32>(&s, &buf, 4, 2, 8, &buf, &buf, 1e-5, &mut y)
        .expect_err("stride < d");
    assert!(err.to_string().contains("layer_norm"), "{err}");
    let rows = DeviceRows {
        data: &buf,
        stride: ATTENTION_MAX_HEAD_DIM + 1,
    };
    let mut out = s.alloc_zeros::<f32>(1024).expect("alloc");
    for bad in [
        shape(1, 1, 1, 1, ATTENTION_MAX_HEAD_DIM + 1, false),
        shape(1, 1, 3, 2, 4, true),
    ] {
        let err = g
            .kernels
            .attention::<f32>(&s, rows, rows, rows, &bad, 1.0, &mut out)
            .expect_err("bad attention shape");
        assert!(err.to_string().contains("attention"), "{err}");
    }
}
