//! Transformer linear layers as one cache-blocked GEMM with a fused epilogue:
//! [`linear`] computes `y = gelu?(x Wᵀ + b) + residual?` (PyTorch `nn.Linear`, `W [n, k]`)
//! on [`LinearWeights`] packed once at load.
//!
//! Packing: `W` is cut into blocks of [`KC`] input values and panels of [`NR`] = 32
//! output columns, stored `[k block][panel][kc][32]` (zero-padded), so a block of all
//! panels is one contiguous stream and a panel's slice of it (16 KiB) stays in L1 while
//! every row tile of the batch uses it; the batch's `[m, kc]` slice of `x` stays in L2.
//! This is what keeps a batch of frames (m = 50 tokens × frames) at full speed, where an
//! unblocked kernel re-streams `x` from L3 for every panel.
//!
//! Micro-kernels, picked at run time: AVX-512F 12×32 (24 zmm accumulators), AVX2+FMA
//! 6×16 (each half of a panel), and a portable loop. Tasks split the output columns
//! (panel ranges) and, for tall batches, the rows, across the caller's rayon pool.

use rayon::prelude::*;

use super::gelu::Gelu;
use super::isa::simd_dispatch;
use super::tasks::{SendPtr, TASKS_PER_THREAD};
use super::Isa as CpuIsa;

/// Output columns per packed panel.
pub const NR: usize = 32;
/// Input values per packed block.
pub const KC: usize = 128;

/// `W [n, k]` packed for [`linear`].
#[derive(Debug, Clone)]
pub struct LinearWeights {
    pub n: usize,
    pub k: usize,
    data: Vec<f32>,
}

impl LinearWeights {
    /// Pack a row-major `w [n, k]` (PyTorch's Linear layout).
    pub fn pack(w: &[f32], n: usize, k: usize) -> LinearWeights {
        assert!(w.len() >= n * k);
        let np = n.div_ceil(NR);
        let mut data = vec![0.0; np * NR * k];
        for kb in (0..k).step_by(KC) {
            let kc = KC.min(k - kb);
            for p in 0..np {
                let base = kb * np * NR + p * kc * NR;
                for kk in 0..kc {
                    for j in 0..NR.min(n - p * NR) {
                        data[base + kk * NR + j] = w[(p * NR + j) * k + kb + kk];
                    }
                }
            }
        }
        LinearWeights { n, k, data }
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Block `kb`'s slice of panel `p`: `[kc][NR]`.
    fn block(&self, kb: usize, p: usize) -> &[f32] {
        let kc = KC.min(self.k - kb);
        let base = kb * self.panels() * NR + p * kc * NR;
        &self.data[base..base + kc * NR]
    }
}

/// `y [m, n] = act(x [m, k] Wᵀ + bias) + residual` with `act` a GELU or none,
/// `residual [m, n]` optional (added after the activation).
#[allow(clippy::too_many_arguments)]
pub fn linear(
    x: &[f32],
    m: usize,
    w: &LinearWeights,
    bias: &[f32],
    act: Option<Gelu>,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    linear_on(Isa::detect(), x, m, w, bias, act, residual, y)
}

#[allow(clippy::too_many_arguments)]
fn linear_on(
    isa: Isa,
    x: &[f32],
    m: usize,
    w: &LinearWeights,
    bias: &[f32],
    act: Option<Gelu>,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let (n, k) = (w.n, w.k);
    assert!(x.len() >= m * k && bias.len() >= n && y.len() >= m * n);
    if let Some(r) = residual {
        assert!(r.len() >= m * n);
    }
    if m == 0 || n == 0 {
        return;
    }
    let mr = isa.rows();
    let np = w.panels();
    // Tasks: tall batches split rows (x is packed once in all), short ones (one frame's
    // tokens) split columns (each task packs the few rows itself, weights are streamed
    // once in all); one thread runs one task.
    let threads = rayon::current_num_threads().max(1);
    let row_tiles = m.div_ceil(mr);
    let (col_tasks, row_tasks) = if threads == 1 {
        (1, 1)
    } else if row_tiles >= 2 * threads {
        (1, row_tiles.min(threads * TASKS_PER_THREAD))
    } else {
        ((2 * threads).min(np), 1)
    };
    let per_col = np.div_ceil(col_tasks);
    let col_tasks = np.div_ceil(per_col);
    let per_row = row_tiles.div_ceil(row_tasks) * mr;
    let row_tasks = m.div_ceil(per_row);
    let yp = SendPtr(y.as_mut_ptr());
    (0..col_tasks * row_tasks).into_par_iter().for_each(|t| {
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its field
        let yp = yp;
        let (ct, rt) = (t / row_tasks, t % row_tasks);
        let (p0, p1) = (ct * per_col, ((ct + 1) * per_col).min(np));
        let (r0, r1) = (rt * per_row, ((rt + 1) * per_row).min(m));
        let (c0, c1) = (p0 * NR, (p1 * NR).min(n));
        // A block: up to MB rows of x for one k block, k-major per row tile
        // ([tile][kc][MR]), so the micro-kernel's broadcasts read it sequentially (rows of x
        // a power-of-two apart would fight over the same L1 sets); each panel's k block
        // (16 KiB) then serves every row tile of the block from L1.
        let mut a = [0.0f32; MB * KC];
        let block_rows = MB / MR * mr;
        for rb in (r0..r1).step_by(block_rows) {
            let rb1 = (rb + block_rows).min(r1);
            for kb in (0..k).step_by(KC) {
                let kc = KC.min(k - kb);
                // balanced tiles (50 rows: five of 10, not four of 12 and one of 2, whose
                // few accumulators could not hide the FMA latency)
                let tiles = (rb1 - rb).div_ceil(mr);
                let tile_rows = |ti: usize| {
                    let (q, rem) = ((rb1 - rb) / tiles, (rb1 - rb) % tiles);
                    (rb + ti * q + ti.min(rem), q + usize::from(ti < rem))
                };
                for ti in 0..tiles {
                    let (tr, rows) = tile_rows(ti);
                    let tile = &mut a[ti * KC * MR..(ti + 1) * KC * MR];
                    for i in 0..rows {
                        for (kk, &v) in x[(tr + i) * k + kb..(tr + i) * k + kb + kc]
                            .iter()
                            .enumerate()
                        {
                            tile[kk * MR + i] = v;
                        }
                    }
                }
                for p in p0..p1 {
                    let col = p * NR;
                    let nc = NR.min(n - col);
                    for ti in 0..tiles {
                        let (tr, rows) = tile_rows(ti);
                        let tile = Tile {
                            a: &a[ti * KC * MR..(ti + 1) * KC * MR],
                            kc,
                            panel: w.block(kb, p),
                            bias: &bias[col..col + nc],
                            // SAFETY: row tr, column col of y is inside y (asserted above).
                            y: unsafe { yp.0.add(tr * n + col) },
                            ldy: n,
                            nc,
                            first: kb == 0,
                        };
                        // SAFETY: rows tr..tr+rows, columns col..col+nc of y lie inside y and
                        // belong to this task only (tasks split rows and panels).
                        unsafe { isa.run(&tile, rows) };
                    }
                }
            }
        }
        // epilogue on this task's block of y: activation, then the residual
        if act.is_some() || residual.is_some() {
            for i in r0..r1 {
                // SAFETY: row i, columns c0..c1 of y belong to this task only.
                let row = unsafe { std::slice::from_raw_parts_mut(yp.0.add(i * n + c0), c1 - c0) };
                if let Some(g) = act {
                    gelu_row(CpuIsa::active(), row, g);
                }
                if let Some(res) = residual {
                    for (v, &rv) in row.iter_mut().zip(&res[i * n + c0..i * n + c1]) {
                        *v += rv;
                    }
                }
            }
        }
    });
}

/// Rows of the packed A tile (the largest micro-kernel's).
const MR: usize = 12;
/// Rows of x packed per k block (eight row tiles: 96 rows, 48 KiB, for AVX-512).
const MB: usize = 96;

simd_dispatch! {
    fn gelu_row(xs: &mut [f32], g: Gelu) {
        match g {
            Gelu::Quick => xs.iter_mut().for_each(|x| *x = Gelu::Quick.apply(*x)),
            Gelu::Erf => xs.iter_mut().for_each(|x| *x = Gelu::Erf.apply(*x)),
            Gelu::Tanh => xs.iter_mut().for_each(|x| *x = Gelu::Tanh.apply(*x)),
        }
    }
}

/// One micro-tile: `y[0..rows, 0..nc] (+)= a · panel` (`y` starts from the bias on the
/// first k block).
struct Tile<'a> {
    /// `[kc][MR]` rows of x
    a: &'a [f32],
    kc: usize,
    /// `[kc][NR]`
    panel: &'a [f32],
    bias: &'a [f32],
    y: *mut f32,
    ldy: usize,
    nc: usize,
    first: bool,
}

#[derive(Debug, Clone, Copy)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Isa {
    /// The crate's run-time level ([`CpuIsa::active`]: detected, lowered by
    /// `VIGIL_CPU_ISA`); its AVX-512 level includes the AVX-512F this kernel needs.
    fn detect() -> Isa {
        match CpuIsa::active() {
            #[cfg(target_arch = "x86_64")]
            CpuIsa::Avx512 => Isa::Avx512,
            #[cfg(target_arch = "x86_64")]
            CpuIsa::Avx2 => Isa::Avx2,
            _ => Isa::Portable,
        }
    }

    fn rows(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 12,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => 6,
            Isa::Portable => 4,
        }
    }

    /// # Safety
    /// `t.y` must point at `rows` rows (stride `t.ldy`) of `t.nc` floats that nobody else
    /// accesses meanwhile; `rows <= self.rows()`, `t.kc <= KC`, `t.nc <= NR`,
    /// `t.panel.len() >= t.kc * NR`.
    unsafe fn run(self, t: &Tile<'_>, rows: usize) {
        assert!(
            t.kc <= KC
                && t.nc <= NR
                && t.panel.len() >= t.kc * NR
                && rows <= MR
                && t.a.len() >= t.kc * MR
        );
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F is present (detected); the rest is this function's contract.
            Isa::Avx512 => unsafe { x86::avx512(t, rows) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA are present (detected); as above.
            Isa::Avx2 => unsafe { x86::avx2(t, rows) },
            Isa::Portable => {
                for i in 0..rows {
                    // SAFETY: row i of the tile is inside y (contract).
                    let y = unsafe { std::slice::from_raw_parts_mut(t.y.add(i * t.ldy), t.nc) };
                    if t.first {
                        y.copy_from_slice(t.bias);
                    }
                    for kk in 0..t.kc {
                        let av = t.a[kk * MR + i];
                        for (c, &wv) in y.iter_mut().zip(&t.panel[kk * NR..kk * NR + t.nc]) {
                            *c += av * wv;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Tile, MR, NR};

    /// AVX-512F: up to 12 rows × 32 columns in 24 zmm accumulators.
    ///
    /// # Safety
    /// AVX-512F available; `Isa::run`'s contract.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(t: &Tile<'_>, rows: usize) {
        // SAFETY: forwarded.
        unsafe {
            match rows {
                12 => kernel512::<12>(t),
                11 => kernel512::<11>(t),
                10 => kernel512::<10>(t),
                9 => kernel512::<9>(t),
                8 => kernel512::<8>(t),
                7 => kernel512::<7>(t),
                6 => kernel512::<6>(t),
                5 => kernel512::<5>(t),
                4 => kernel512::<4>(t),
                3 => kernel512::<3>(t),
                2 => kernel512::<2>(t),
                _ => kernel512::<1>(t),
            }
        }
    }

    #[inline(always)]
    unsafe fn kernel512<const R: usize>(t: &Tile<'_>) {
        // SAFETY: masked loads/stores touch columns < nc of rows < R of y only; a and the
        // panel hold kc * MR and kc * NR values (checked by `Isa::run`).
        unsafe {
            let m0: __mmask16 = if t.nc >= 16 {
                0xffff
            } else {
                (1u16 << t.nc) - 1
            };
            let m1: __mmask16 = if t.nc >= 32 {
                0xffff
            } else if t.nc > 16 {
                (1u16 << (t.nc - 16)) - 1
            } else {
                0
            };
            let mut c0 = [_mm512_setzero_ps(); R];
            let mut c1 = [_mm512_setzero_ps(); R];
            let (b0, b1) = if t.first {
                (
                    _mm512_maskz_loadu_ps(m0, t.bias.as_ptr()),
                    _mm512_maskz_loadu_ps(m1, t.bias.as_ptr().wrapping_add(16)),
                )
            } else {
                (_mm512_setzero_ps(), _mm512_setzero_ps())
            };
            for i in 0..R {
                if t.first {
                    c0[i] = b0;
                    c1[i] = b1;
                } else {
                    let row = t.y.add(i * t.ldy);
                    c0[i] = _mm512_maskz_loadu_ps(m0, row);
                    c1[i] = _mm512_maskz_loadu_ps(m1, row.wrapping_add(16));
                }
            }
            let (a, w) = (t.a.as_ptr(), t.panel.as_ptr());
            for kk in 0..t.kc {
                let w0 = _mm512_loadu_ps(w.add(kk * NR));
                let w1 = _mm512_loadu_ps(w.add(kk * NR + 16));
                for i in 0..R {
                    let av = _mm512_set1_ps(*a.add(kk * MR + i));
                    c0[i] = _mm512_fmadd_ps(av, w0, c0[i]);
                    c1[i] = _mm512_fmadd_ps(av, w1, c1[i]);
                }
            }
            for i in 0..R {
                let row = t.y.add(i * t.ldy);
                _mm512_mask_storeu_ps(row, m0, c0[i]);
                _mm512_mask_storeu_ps(row.wrapping_add(16), m1, c1[i]);
            }
        }
    }

    /// AVX2 + FMA: up to 6 rows × 16 columns, each half of the 32-wide panel in turn.
    ///
    /// # Safety
    /// AVX2 and FMA available; `Isa::run`'s contract.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(t: &Tile<'_>, rows: usize) {
        // SAFETY: forwarded.
        unsafe {
            for half in [0, 16] {
                if half >= t.nc {
                    break;
                }
                match rows {
                    6 => kernel256::<6>(t, half),
                    5 => kernel256::<5>(t, half),
                    4 => kernel256::<4>(t, half),
                    3 => kernel256::<3>(t, half),
                    2 => kernel256::<2>(t, half),
                    _ => kernel256::<1>(t, half),
                }
            }
        }
    }

    /// Lane mask of the first `n` (0..=8) of 8 lanes.
    #[inline(always)]
    unsafe fn mask8(n: usize) -> __m256i {
        // SAFETY: plain integer vector arithmetic.
        unsafe {
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
        }
    }

    #[inline(always)]
    unsafe fn kernel256<const R: usize>(t: &Tile<'_>, half: usize) {
        // SAFETY: as `kernel512`, for columns half..half + 16 (masked to nc).
        unsafe {
            let left = t.nc - half;
            let (m0, m1) = (mask8(left.min(8)), mask8(left.saturating_sub(8).min(8)));
            let mut c0 = [_mm256_setzero_ps(); R];
            let mut c1 = [_mm256_setzero_ps(); R];
            for i in 0..R {
                let src = if t.first {
                    t.bias.as_ptr().add(half)
                } else {
                    t.y.add(i * t.ldy + half)
                };
                c0[i] = _mm256_maskload_ps(src, m0);
                c1[i] = _mm256_maskload_ps(src.wrapping_add(8), m1);
            }
            let (a, w) = (t.a.as_ptr(), t.panel.as_ptr().add(half));
            for kk in 0..t.kc {
                let w0 = _mm256_loadu_ps(w.add(kk * NR));
                let w1 = _mm256_loadu_ps(w.add(kk * NR + 8));
                for i in 0..R {
                    let av = _mm256_broadcast_ss(&*a.add(kk * MR + i));
                    c0[i] = _mm256_fmadd_ps(av, w0, c0[i]);
                    c1[i] = _mm256_fmadd_ps(av, w1, c1[i]);
                }
            }
            for i in 0..R {
                let row = t.y.add(i * t.ldy + half);
                _mm256_maskstore_ps(row, m0, c0[i]);
                _mm256_maskstore_ps(row.wrapping_add(8), m1, c1[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a float64 naive GEMM, outputs poisoned with NaN, in 1- and 3-thread pools,
    //! for every micro-kernel this CPU has (the portable one always).
    use super::*;
    use crate::cpu::test_util::*;

    /// Every micro-kernel this CPU can run.
    fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            } else {
                eprintln!("skipped: linear at avx512 — this CPU lacks AVX-512F");
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
        }
        v
    }

    #[test]
    fn linear_matches_naive_gemm() {
        let mut r = Rng(21);
        for pool in pools() {
            for &(m, k, n) in &[
                (50, 64, 192),
                (400, 300, 96),
                (1, 768, 40),
                (13, 5, 3),
                (37, 129, 33),
                (8, 256, 512),
            ] {
                for (ci, (act, res)) in [
                    (None, false),
                    (Some(Gelu::Quick), false),
                    (None, true),
                    (Some(Gelu::Erf), true),
                ]
                .into_iter()
                .enumerate()
                {
                    let (x, w, b) = (r.vec(m * k), r.vec(n * k), r.vec(n));
                    let residual = res.then(|| r.vec(m * n));
                    let packed = LinearWeights::pack(&w, n, k);
                    let mut want = vec![0.0f32; m * n];
                    for i in 0..m {
                        for j in 0..n {
                            let mut a = b[j] as f64;
                            for kk in 0..k {
                                a += x[i * k + kk] as f64 * w[j * k + kk] as f64;
                            }
                            let v = act.map_or(a as f32, |g| g.apply(a as f32));
                            want[i * n + j] = v + residual.as_ref().map_or(0.0, |rr| rr[i * n + j]);
                        }
                    }
                    for isa in available() {
                        let mut y = vec![f32::NAN; m * n + 5];
                        pool.install(|| {
                            linear_on(isa, &x, m, &packed, &b, act, residual.as_deref(), &mut y)
                        });
                        for (i, (g, w)) in y.iter().zip(&want).enumerate() {
                            let tol = 2e-5 * (1.0 + (k as f32).sqrt()) * (1.0 + w.abs());
                            assert!(
                                (g - w).abs() <= tol,
                                "m{m} k{k} n{n} case {ci} [{i}]: {g} vs {w}"
                            );
                        }
                        assert!(y[m * n..].iter().all(|v| v.is_nan()), "wrote past y");
                    }
                }
            }
        }
    }
}
