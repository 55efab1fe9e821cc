//! Int8-stored weights for GEMMs of a few rows: [`Int8Weights`] and [`gemv_i8`].
//!
//! The official MoViNet exports quantize their weights to int8 with one fp32 scale per
//! output channel (the float oracle dequantizes them: `w = q * scale`). A GEMM of a few
//! rows — the head's dense layers at batch 1 — does two flops per weight it reads, so
//! its time is the time to stream its weights: 8.8 MB of fp32 per frame for the K600
//! head, from L3. [`Int8Weights::exact`] finds a matrix's int8 form again — only where
//! every fp32 weight equals `q * scale` **exactly** (checked value by value, so storing
//! them this way loses nothing) — and [`gemv_i8`] multiplies in fp32 straight from the
//! int8 bytes: `y[m, n] = act(scale[n] * sum_k x[m, k] * q[n, k] + bias[n]) + residual`,
//! a quarter of the bytes for the same arithmetic up to fp32 rounding.
//!
//! Layout: panels of [`F32Vec::TILE_VECTORS`] vectors of output channels (64 at AVX-512,
//! 16 below), each `[k, width]` row-major, zero-padded past `n`, so a panel is one
//! sequential stream of bytes.

use super::aligned::AlignedVec;
use super::isa::vector_dispatch;
use super::simd::F32Vec;
use super::tasks::{for_each_task, SendPtr, TASKS_PER_THREAD};
use super::tile::{store_tile, tile_dispatch};
use super::Isa;
use crate::Activation;

/// Most rows [`gemv_i8`] takes (one register tile of rows per panel); taller GEMMs
/// reuse each weight enough that fp32 or bf16 panels win.
pub const GEMV_MAX_ROWS: usize = 4;

/// A `[n, k]` weight matrix stored as int8 with one fp32 scale per output channel,
/// packed for one instruction set (see the module doc).
#[derive(Debug, Clone)]
pub struct Int8Weights {
    pub k: usize,
    pub n: usize,
    isa: Isa,
    /// columns per panel
    width: usize,
    q: AlignedVec<i8>,
    /// `[n]`
    scale: Vec<f32>,
}

/// Output channels per panel at `isa`: one register-tile row.
fn width(isa: Isa) -> usize {
    match isa.clamp() {
        Isa::Avx512 => 64,
        _ => 16,
    }
}

/// The scale that writes every value of `row` as an int8 times it, exactly, if there
/// is one: the largest magnitude over 127 (symmetric per-channel quantization puts the
/// largest weight at ±127), or a neighbouring float, each candidate checked on every
/// value. `Some(0.0)` for an all-zero row.
fn exact_scale(row: &[f32]) -> Option<f32> {
    let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        return Some(0.0);
    }
    if !amax.is_finite() {
        return None;
    }
    let s0 = (f64::from(amax) / 127.0) as f32;
    let fits = |s: f32| {
        row.iter().all(|&v| {
            let q = (v / s).round();
            q.abs() <= 127.0 && q * s == v
        })
    };
    let bits = s0.to_bits();
    [0i64, 1, -1, 2, -2, 3, -3]
        .into_iter()
        .map(|d| f32::from_bits((i64::from(bits) + d) as u32))
        .find(|&s| s > 0.0 && s.is_finite() && fits(s))
}

impl Int8Weights {
    /// `w [n, k]` (row-major, as `pointwise` takes it) as int8 times a per-row scale,
    /// packed for `isa` (clamped to the CPU) — or `None` unless every value equals its
    /// int8 times its row's scale exactly (weights a model stored in float, or folded
    /// with another factor after dequantization, stay fp32).
    pub fn exact(isa: Isa, w: &[f32], n: usize, k: usize) -> Option<Int8Weights> {
        let isa = isa.clamp();
        let w = w.get(..n * k)?;
        if n == 0 || k == 0 {
            return None;
        }
        let scale: Vec<f32> = w.chunks_exact(k).map(exact_scale).collect::<Option<_>>()?;
        let width = width(isa);
        let mut q = AlignedVec::zeroed(n.div_ceil(width) * width * k);
        for (j, (row, &s)) in w.chunks_exact(k).zip(&scale).enumerate() {
            let (p, c) = (j / width, j % width);
            for (kk, &v) in row.iter().enumerate() {
                q[p * width * k + kk * width + c] =
                    if s == 0.0 { 0 } else { (v / s).round() as i8 };
            }
        }
        Some(Int8Weights {
            k,
            n,
            isa,
            width,
            q,
            scale,
        })
    }

    /// The instruction set these weights were packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Bytes the packed weights and scales occupy.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&self.q[..]) + std::mem::size_of_val(&self.scale[..])
    }

    /// The fp32 value of weight `[j, kk]` (`q * scale`, as the model's file defines it).
    pub fn value(&self, j: usize, kk: usize) -> f32 {
        let (p, c) = (j / self.width, j % self.width);
        f32::from(self.q[p * self.width * self.k + kk * self.width + c]) * self.scale[j]
    }
}

/// `y[m, n] = act(sum_k x[m, k] * w[n, k] + bias[n]) + residual[m, n]` for `m <=`
/// [`GEMV_MAX_ROWS`] rows with `w` stored as [`Int8Weights`]: output panels split across
/// the pool's threads (a plain loop in a one-thread pool).
#[allow(clippy::too_many_arguments)]
pub fn gemv_i8(
    x: &[f32],
    m: usize,
    w: &Int8Weights,
    bias: &[f32],
    act: Activation,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let (k, n) = (w.k, w.n);
    assert!(
        m <= GEMV_MAX_ROWS,
        "gemv_i8 takes up to {GEMV_MAX_ROWS} rows, not {m}"
    );
    assert!(x.len() >= m * k && bias.len() >= n && y.len() >= m * n);
    if let Some(r) = residual {
        assert!(r.len() >= m * n);
    }
    if m == 0 {
        return;
    }
    let g = Gemv {
        x,
        m,
        w,
        bias,
        act,
        residual,
        y: SendPtr(y.as_mut_ptr()),
    };
    let np = n.div_ceil(w.width);
    let tasks = (rayon::current_num_threads() * TASKS_PER_THREAD).clamp(1, np);
    let per = np.div_ceil(tasks);
    for_each_task(np.div_ceil(per), |t| {
        let pans = (t * per, ((t + 1) * per).min(np));
        // SAFETY: the asserts above keep x, bias, residual and y in bounds for m rows and
        // n columns; this task writes only the columns of panels `pans`.
        unsafe { panels_i8(w.isa, &g, pans) }
    });
}

/// One [`gemv_i8`] call's operands, shared by its tasks.
#[derive(Clone, Copy)]
struct Gemv<'a> {
    x: &'a [f32],
    m: usize,
    w: &'a Int8Weights,
    bias: &'a [f32],
    act: Activation,
    residual: Option<&'a [f32]>,
    y: SendPtr,
}

vector_dispatch! {
    /// Panels `pans` of a [`gemv_i8`] call.
    ///
    /// # Safety
    /// `g` as [`gemv_i8`] checked it; `g.w` packed for this ISA; this call alone writes
    /// the panels' columns of `g.y`.
    unsafe fn panels_i8<V>(g: &Gemv, pans: (usize, usize)) {
        let w = g.w;
        for p in pans.0..pans.1 {
            let (c0, nc) = (p * w.width, w.width.min(w.n - p * w.width));
            let nv = nc.div_ceil(V::LANES);
            // SAFETY: the panel's k rows of `width` bytes, scale and bias columns
            // c0..c0+nc and y / residual rows < m, columns c0..c0+nc are in bounds.
            unsafe { tile_dispatch!(g.m, nv, V::TILE_VECTORS, tile_i8::<V>(g, p, c0, nc)) }
        }
    }
}

/// Rows `0..R` x one panel: per `k`, `NV` weight vectors converted from int8 and one
/// broadcast activation per row, fp32 multiply-adds; then scale, bias and the epilogue.
///
/// # Safety
/// As [`panels_i8`], for panel `p` (columns `c0..c0 + nc`), `R = g.m`,
/// `NV = ceil(nc / LANES)`.
#[inline(always)]
unsafe fn tile_i8<V: F32Vec, const R: usize, const NV: usize>(
    g: &Gemv,
    p: usize,
    c0: usize,
    nc: usize,
) {
    let (w, k) = (g.w, g.w.k);
    // SAFETY: panel p holds k rows of `width >= NV * LANES` bytes; x rows < R hold k
    // values; scale, bias, y and residual columns c0..c0+nc exist (contract).
    unsafe {
        let q = w.q.as_ptr().add(p * w.width * k);
        let x = g.x.as_ptr();
        // two sets of accumulators (even and odd k) so one row still has 2 * NV
        // independent chains of multiply-adds in flight
        let mut even = [[V::zero(); NV]; R];
        let mut odd = [[V::zero(); NV]; R];
        let mut kk = 0;
        while kk + 2 <= k {
            rank1(&mut even, q, w.width, x, k, kk);
            rank1(&mut odd, q, w.width, x, k, kk + 1);
            kk += 2;
        }
        if kk < k {
            rank1(&mut even, q, w.width, x, k, kk);
        }
        let mut scale = [V::zero(); NV];
        let mut bias = [V::zero(); NV];
        for v in 0..NV {
            let cols = nc - v * V::LANES;
            scale[v] = super::tile::load_cols(w.scale.as_ptr().add(c0 + v * V::LANES), cols);
            bias[v] = super::tile::load_cols(g.bias.as_ptr().add(c0 + v * V::LANES), cols);
        }
        for (e, o) in even.iter_mut().zip(&odd) {
            for v in 0..NV {
                e[v] = e[v].add(o[v]).mul_add(scale[v], bias[v]);
            }
        }
        store_tile(
            &even,
            g.y.0.add(c0),
            w.n,
            nc,
            g.act,
            g.residual.map(|r| r.as_ptr().add(c0)),
        );
    }
}

/// `acc[i] += x[i, kk] * w[kk, ..]` for the `NV` vectors of the panel row `kk` (int8 at
/// `q + kk * width`, converted to f32).
///
/// # Safety
/// Inside code compiled for `V`; `NV * LANES` bytes readable at `q + kk * width`, and
/// `x + i * k + kk` for `i < R`.
#[inline(always)]
unsafe fn rank1<V: F32Vec, const R: usize, const NV: usize>(
    acc: &mut [[V; NV]; R],
    q: *const i8,
    width: usize,
    x: *const f32,
    k: usize,
    kk: usize,
) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        let mut wv = [V::zero(); NV];
        for (v, wr) in wv.iter_mut().enumerate() {
            *wr = V::load_i8(q.add(kk * width + v * V::LANES));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let xv = V::broadcast(x.add(i * k + kk));
            for v in 0..NV {
                row[v] = xv.mul_add(wv[v], row[v]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a naive GEMM on the dequantized weights, outputs poisoned with NaN, in 1-
    //! and 3-thread pools, on every ISA; and the exactness check itself.
    use super::*;
    use crate::cpu::test_util::*;

    /// `[n, k]` weights that are int8 times a per-row scale, as an int8 export's are.
    fn quantized(r: &mut Rng, n: usize, k: usize) -> Vec<f32> {
        let scales: Vec<f32> = (0..n).map(|_| 0.001 + r.vec(1)[0].abs() * 0.01).collect();
        let mut w = Vec::with_capacity(n * k);
        for s in &scales {
            let mut q: Vec<i8> = (0..k)
                .map(|_| (r.vec(1)[0] * 127.0).round().clamp(-127.0, 127.0) as i8)
                .collect();
            q[k / 2] = if q[k / 2] < 0 { -127 } else { 127 };
            w.extend(q.iter().map(|&q| f32::from(q) * s));
        }
        w
    }

    #[test]
    fn exact_finds_int8_weights_and_refuses_float_ones() {
        let mut r = Rng(5);
        let (n, k) = (70, 33);
        let w = quantized(&mut r, n, k);
        let q = Int8Weights::exact(Isa::active(), &w, n, k).expect("int8 weights found");
        for j in 0..n {
            for kk in 0..k {
                assert_eq!(q.value(j, kk), w[j * k + kk], "weight [{j}, {kk}]");
            }
        }
        // an all-zero row is exact too
        let mut z = w.clone();
        z[..k].fill(0.0);
        assert!(Int8Weights::exact(Isa::active(), &z, n, k).is_some());
        // one weight off the grid, or float weights, stay fp32
        let mut off = w.clone();
        off[3 * k + 4] *= 1.0001;
        assert!(Int8Weights::exact(Isa::active(), &off, n, k).is_none());
        assert!(Int8Weights::exact(Isa::active(), &r.vec(n * k), n, k).is_none());
        let mut inf = w;
        inf[0] = f32::INFINITY;
        assert!(Int8Weights::exact(Isa::active(), &inf, n, k).is_none());
    }

    #[test]
    fn gemv_i8_matches_naive_on_every_isa() {
        let mut r = Rng(9);
        for isa in isas_under_test("gemv_i8") {
            for pool in pools() {
                for &(m, k, n) in &[
                    (1, 480, 2048),
                    (1, 2048, 600),
                    (1, 2048, 7),
                    (2, 33, 70),
                    (3, 1, 17),
                    (4, 64, 129),
                    (1, 5, 1),
                ] {
                    let w = quantized(&mut r, n, k);
                    let q = Int8Weights::exact(isa, &w, n, k).expect("int8 weights");
                    let (x, bias, res) = (r.vec(m * k), r.vec(n), r.vec(m * n));
                    for act in ACTS {
                        for residual in [None, Some(&res[..])] {
                            let mut y = vec![f32::NAN; m * n];
                            pool.install(|| gemv_i8(&x, m, &q, &bias, act, residual, &mut y));
                            for i in 0..m {
                                for j in 0..n {
                                    // f64 sum, and the sum of magnitudes fp32 rounding
                                    // scales with
                                    let (mut a, mut mag) = (f64::from(bias[j]), 0.0f64);
                                    for kk in 0..k {
                                        let t = f64::from(x[i * k + kk]) * f64::from(w[j * k + kk]);
                                        a += t;
                                        mag += t.abs();
                                    }
                                    let want = act.apply(a as f32)
                                        + residual.map_or(0.0, |res| res[i * n + j]);
                                    let got = y[i * n + j];
                                    assert!(
                                        (got - want).abs() as f64 <= 1e-6 * (1.0 + mag),
                                        "{isa} gemv_i8 m{m} k{k} n{n} {act:?} residual {}: [{i}, {j}] got {got}, want {want}",
                                        residual.is_some()
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
