//! 1x1 convolutions as GEMMs with fused epilogues: [`pointwise`] (plain weights, the
//! `gemm` crate) and [`pointwise_packed`] on [`PackedWeights`] packed at load time (a 6x16
//! AVX2/FMA register tile).

use rayon::prelude::*;

use super::tasks::{task_rows, SendPtr, TASKS_PER_THREAD};
use crate::Activation;

/// 1x1 convolution over all pixels of all streams as one GEMM with a fused epilogue:
/// `y[m, n] = act(sum_k x[m, k] * w[n, k] + bias[n]) + residual[m, n]`
/// with `x [M, K]`, `w [N, K]` (row-major, TFLite OHWI with H = W = 1), `y [M, N]`.
#[allow(clippy::too_many_arguments)]
pub fn pointwise(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: &[f32],
    act: Activation,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    assert!(x.len() >= m * k && w.len() >= n * k && bias.len() >= n && y.len() >= m * n);
    if let Some(r) = residual {
        assert!(r.len() >= m * n);
    }
    if m == 0 || n == 0 {
        return;
    }
    // Tiles: row blocks for tall matrices (pixels), column blocks for short ones (the
    // head's dense layers run with M = batch).
    let rows = task_rows(m, 32).min(m);
    let row_tiles = m.div_ceil(rows);
    let col_tiles = if row_tiles >= rayon::current_num_threads() * 2 {
        1
    } else {
        (rayon::current_num_threads() * TASKS_PER_THREAD / row_tiles).clamp(1, n.div_ceil(64))
    };
    let cols = n.div_ceil(col_tiles);
    let col_tiles = n.div_ceil(cols);
    let yp = SendPtr(y.as_mut_ptr());
    (0..row_tiles * col_tiles).into_par_iter().for_each(|tile| {
        let (rt, ct) = (tile / col_tiles, tile % col_tiles);
        let (r0, c0) = (rt * rows, ct * cols);
        let (mr, nc) = (rows.min(m - r0), cols.min(n - c0));
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw-pointer field
        let yp = yp;
        // Prefill the tile with bias (+ residual when no activation sits between).
        let fuse_residual = act == Activation::None;
        for i in 0..mr {
            // SAFETY: rows r0..r0+mr and columns c0..c0+nc of y belong to this tile only;
            // the asserts above keep them inside y.
            let yrow = unsafe { std::slice::from_raw_parts_mut(yp.0.add((r0 + i) * n + c0), nc) };
            yrow.copy_from_slice(&bias[c0..c0 + nc]);
            if let (true, Some(r)) = (fuse_residual, residual) {
                for (yv, &rv) in yrow.iter_mut().zip(&r[(r0 + i) * n + c0..][..nc]) {
                    *yv += rv;
                }
            }
        }
        // SAFETY: dst is this tile (rows stride n, unit column stride); lhs is rows
        // r0..r0+mr of x ([M, K] row-major); rhs is w^T restricted to columns c0..c0+nc
        // (element (kk, j) at w[(c0 + j) * k + kk]). All in bounds by the asserts above.
        unsafe {
            gemm::gemm(
                mr,
                nc,
                k,
                yp.0.add(r0 * n + c0),
                1,
                n as isize,
                true,
                x.as_ptr().add(r0 * k),
                1,
                k as isize,
                w.as_ptr().add(c0 * k),
                k as isize,
                1,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        if !fuse_residual {
            for i in 0..mr {
                // SAFETY: as for the prefill: this tile's rows and columns only.
                let yrow =
                    unsafe { std::slice::from_raw_parts_mut(yp.0.add((r0 + i) * n + c0), nc) };
                act.apply_slice(yrow);
                if let Some(r) = residual {
                    for (yv, &rv) in yrow.iter_mut().zip(&r[(r0 + i) * n + c0..][..nc]) {
                        *yv += rv;
                    }
                }
            }
        }
    });
}

/// Weights of a 1x1 convolution packed for [`pointwise_packed`]: panels of
/// [`PANEL`] output channels, `[n_panels, k, PANEL]`, zero-padded past `n`. Packing
/// once at load time spares every step the GEMM's operand packing.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    pub k: usize,
    pub n: usize,
    panels: Vec<f32>,
    /// the weights as given, `[n, k]`, for CPUs without AVX2 + FMA
    plain: Vec<f32>,
}

/// Output channels per packed panel (two 8-wide vectors).
pub const PANEL: usize = 16;

impl PackedWeights {
    /// Pack `w [n, k]` (row-major, as [`pointwise`] takes it).
    pub fn pack(w: &[f32], n: usize, k: usize) -> PackedWeights {
        let np = n.div_ceil(PANEL);
        let mut panels = vec![0.0; np * k * PANEL];
        for j in 0..n {
            let (p, jj) = (j / PANEL, j % PANEL);
            for kk in 0..k {
                panels[(p * k + kk) * PANEL + jj] = w[j * k + kk];
            }
        }
        PackedWeights {
            k,
            n,
            panels,
            plain: w[..n * k].to_vec(),
        }
    }
}

/// [`pointwise`] with weights packed by [`PackedWeights::pack`]: the same contract and
/// result (up to float rounding: fused multiply-adds), computed by a 6x16 register-tiled
/// AVX2/FMA kernel that reads activations in place. Falls back to [`pointwise`] on CPUs
/// without AVX2 and FMA.
pub fn pointwise_packed(
    x: &[f32],
    m: usize,
    pw: &PackedWeights,
    bias: &[f32],
    act: Activation,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let (k, n) = (pw.k, pw.n);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert!(x.len() >= m * k && bias.len() >= n && y.len() >= m * n);
        if let Some(r) = residual {
            assert!(r.len() >= m * n);
        }
        if m == 0 || n == 0 {
            return;
        }
        let np = n.div_ceil(PANEL);
        // row blocks (multiples of 6) for tall matrices, panel groups for short ones
        let rows = (task_rows(m, 48).div_ceil(6) * 6).min(m.div_ceil(6) * 6);
        let row_tiles = m.div_ceil(rows);
        let panel_tiles = if row_tiles >= rayon::current_num_threads() * 2 {
            1
        } else {
            (rayon::current_num_threads() * TASKS_PER_THREAD / row_tiles).clamp(1, np)
        };
        let per = np.div_ceil(panel_tiles);
        let panel_tiles = np.div_ceil(per);
        let yp = SendPtr(y.as_mut_ptr());
        (0..row_tiles * panel_tiles)
            .into_par_iter()
            .for_each(|tile| {
                let (rt, pt) = (tile / panel_tiles, tile % panel_tiles);
                let (r0, r1) = (rt * rows, ((rt + 1) * rows).min(m));
                let (p0, p1) = (pt * per, ((pt + 1) * per).min(np));
                #[allow(clippy::redundant_locals)]
                // capture the Send wrapper, not its raw-pointer field
                let yp = yp;
                for p in p0..p1 {
                    let c0 = p * PANEL;
                    let nc = PANEL.min(n - c0);
                    let mut b16 = [0.0f32; PANEL];
                    b16[..nc].copy_from_slice(&bias[c0..c0 + nc]);
                    let panel = &pw.panels[p * k * PANEL..(p + 1) * k * PANEL];
                    let mut r = r0;
                    while r < r1 {
                        let mr = 6.min(r1 - r);
                        // SAFETY: AVX2 + FMA are present (checked above); rows r..r+mr of x
                        // hold k values each (x.len() >= m * k); the panel holds k * 16
                        // values; y rows r..r+mr, columns c0..c0+nc lie in y (len >= m * n)
                        // and belong to this task's tile only.
                        unsafe {
                            avx2::tile(
                                mr,
                                x.as_ptr().add(r * k),
                                k,
                                panel.as_ptr(),
                                &b16,
                                yp.0.add(r * n + c0),
                                n,
                                nc,
                            );
                        }
                        r += mr;
                    }
                }
                // epilogue on this tile: activation, then the residual
                for i in r0..r1 {
                    let (c0, c1) = (p0 * PANEL, (p1 * PANEL).min(n));
                    // SAFETY: row i, columns c0..c1 of y belong to this tile only.
                    let yrow =
                        unsafe { std::slice::from_raw_parts_mut(yp.0.add(i * n + c0), c1 - c0) };
                    act.apply_slice(yrow);
                    if let Some(r) = residual {
                        for (v, &rv) in yrow.iter_mut().zip(&r[i * n + c0..i * n + c1]) {
                            *v += rv;
                        }
                    }
                }
            });
        return;
    }
    pointwise(x, m, k, &pw.plain, n, bias, act, residual, y);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `y[0..mr, 0..nc] = x[0..mr, :] . panel + bias` for one 16-wide panel.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `x` must point at `mr` rows of `k` floats (row
    /// stride `k`), `panel` at `k * 16` floats, `y` at `mr` rows of at least `nc` writable
    /// floats with row stride `ldy`; `mr <= 6`, `nc <= 16`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile(
        mr: usize,
        x: *const f32,
        k: usize,
        panel: *const f32,
        bias: &[f32; 16],
        y: *mut f32,
        ldy: usize,
        nc: usize,
    ) {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            match mr {
                6 => tile_n::<6>(x, k, panel, bias, y, ldy, nc),
                5 => tile_n::<5>(x, k, panel, bias, y, ldy, nc),
                4 => tile_n::<4>(x, k, panel, bias, y, ldy, nc),
                3 => tile_n::<3>(x, k, panel, bias, y, ldy, nc),
                2 => tile_n::<2>(x, k, panel, bias, y, ldy, nc),
                _ => tile_n::<1>(x, k, panel, bias, y, ldy, nc),
            }
        }
    }

    /// # Safety
    /// As [`tile`] with `mr = R`.
    #[inline(always)]
    unsafe fn tile_n<const R: usize>(
        x: *const f32,
        k: usize,
        panel: *const f32,
        bias: &[f32; 16],
        y: *mut f32,
        ldy: usize,
        nc: usize,
    ) {
        // SAFETY: all pointer offsets stay inside the ranges the caller vouches for:
        // x rows i < R, columns kk < k; panel rows kk < k, 16 columns; y rows i < R,
        // columns < nc (a full 16-wide store only when nc == 16).
        unsafe {
            let b0 = _mm256_loadu_ps(bias.as_ptr());
            let b1 = _mm256_loadu_ps(bias.as_ptr().add(8));
            let mut c0 = [b0; R];
            let mut c1 = [b1; R];
            for kk in 0..k {
                let w0 = _mm256_loadu_ps(panel.add(kk * 16));
                let w1 = _mm256_loadu_ps(panel.add(kk * 16 + 8));
                for i in 0..R {
                    let a = _mm256_broadcast_ss(&*x.add(i * k + kk));
                    c0[i] = _mm256_fmadd_ps(a, w0, c0[i]);
                    c1[i] = _mm256_fmadd_ps(a, w1, c1[i]);
                }
            }
            for i in 0..R {
                let row = y.add(i * ldy);
                if nc == 16 {
                    _mm256_storeu_ps(row, c0[i]);
                    _mm256_storeu_ps(row.add(8), c1[i]);
                } else {
                    let mut tmp = [0.0f32; 16];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), c0[i]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), c1[i]);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), row, nc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a naive GEMM, outputs poisoned with NaN, in 1- and 3-thread pools.
    use super::*;
    use crate::cpu::test_util::*;

    /// Every GEMM case both pointwise tests run: shapes from the model (tall, short,
    /// M = 1 dense layers) and odd ones, each activation, with and without a residual.
    #[allow(clippy::type_complexity)]
    fn gemm_cases(
        seed: u64,
        mut check: impl FnMut(
            &rayon::ThreadPool,
            usize,
            usize,
            usize,
            Activation,
            &[f32],
            &[f32],
            &[f32],
            Option<&[f32]>,
        ),
    ) {
        let mut r = Rng(seed);
        for pool in pools() {
            for &(m, k, n) in &[
                (1, 480, 2048),
                (3, 2048, 7),
                (7396, 8, 24),
                (130, 24, 8),
                (37, 5, 3),
                (1849, 80, 32),
                (36, 344, 104),
                (7, 33, 17),
            ] {
                for (ai, &act) in ACTS.iter().enumerate() {
                    let (x, w, bias) = (r.vec(m * k), r.vec(n * k), r.vec(n));
                    let res = (ai % 2 == 0).then(|| r.vec(m * n));
                    check(&pool, m, k, n, act, &x, &w, &bias, res.as_deref());
                }
            }
        }
    }

    #[test]
    fn pointwise_matches_naive_gemm() {
        gemm_cases(7, |pool, m, k, n, act, x, w, bias, res| {
            let mut y = vec![f32::NAN; m * n];
            pool.install(|| pointwise(x, m, k, w, n, bias, act, res, &mut y));
            let mut want = vec![0.0; m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut a = bias[j] as f64;
                    for kk in 0..k {
                        a += x[i * k + kk] as f64 * w[j * k + kk] as f64;
                    }
                    want[i * n + j] = act.apply(a as f32) + res.map_or(0.0, |r| r[i * n + j]);
                }
            }
            close(&y, &want, &format!("pointwise m{m} k{k} n{n} {act:?}"));
        });
    }

    #[test]
    fn pointwise_packed_matches_pointwise() {
        gemm_cases(17, |pool, m, k, n, act, x, w, bias, res| {
            let packed = PackedWeights::pack(w, n, k);
            let mut want = vec![f32::NAN; m * n];
            let mut got = vec![f32::NAN; m * n];
            pool.install(|| {
                pointwise(x, m, k, w, n, bias, act, res, &mut want);
                pointwise_packed(x, m, &packed, bias, act, res, &mut got);
            });
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let tol = 1e-5 * (1.0 + (k as f32).sqrt()) * (1.0 + w.abs());
                assert!(
                    (g - w).abs() <= tol,
                    "packed m{m} k{k} n{n} {act:?} [{i}]: {g} vs {w}"
                );
            }
        });
    }
}
