//! CPU twins: the float32 reference kernels of a batched causal MoViNet step.
//!
//! Each function here is one kernel contract; the CUDA kernel of the same name computes
//! the same thing (fp16 storage / fp32 accumulation, or fp32 in verification mode) and is
//! tested against it. Work is split with rayon over output rows (and, for small matrices,
//! output columns), so these run in whatever pool the caller installs; a one-thread pool
//! runs them sequentially. Nothing here allocates.
//!
//! Layouts: activations `[B, H, W, C]` (or `[B, P, C]` with `P = H * W`), C contiguous;
//! state pools `[slots, ...]` indexed by the batch's slot numbers; `t` = frames the stream
//! has already processed (0 for its first frame).

use rayon::prelude::*;

use crate::{Activation, Conv2dGeom};

/// Pointer wrapper to hand disjoint output tiles to rayon tasks.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used to write disjoint tiles of one output buffer, see `pointwise`.
unsafe impl Send for SendPtr {}
// SAFETY: as above; tasks never touch the same element.
unsafe impl Sync for SendPtr {}

/// How many tasks to aim for per worker thread (load balance vs. scheduling cost).
const TASKS_PER_THREAD: usize = 4;

fn task_rows(total: usize, min_rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    total
        .div_ceil(threads * TASKS_PER_THREAD)
        .max(min_rows)
        .max(1)
}

/// Compiles a row kernel twice — for the baseline target and with AVX2 + FMA — and picks
/// one at run time, so the inner channel loops vectorize 8 wide where the CPU allows.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($a: $t),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($a: $t),*) {
                    imp($($a),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($a),*) };
                }
            }
            imp($($a),*)
        }
    };
}

/// `u8` RGB frames (HWC) to float32 in `[0, 1]`: `out[b] = frames[b] as f32 / 255`.
pub fn preprocess_u8(frames: &[&[u8]], out: &mut [f32]) {
    let Some(first) = frames.first() else { return };
    let len = first.len();
    out[..frames.len() * len]
        .par_chunks_mut(len)
        .zip(frames.par_iter())
        .for_each(|(o, f)| {
            for (o, &v) in o.iter_mut().zip(f.iter()) {
                *o = v as f32 / 255.0;
            }
        });
}

/// Full 2-D convolution (the stem): `x [B, in_h, in_w, cin]`, weights `w [k_h, k_w, cin,
/// cout]` (HWIO), `bias [cout]` → `y [B, out_h, out_w, cout] = act(conv + bias)`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    batch: usize,
    g: &Conv2dGeom,
    cin: usize,
    w: &[f32],
    bias: &[f32],
    cout: usize,
    act: Activation,
    y: &mut [f32],
) {
    let row = g.out_w * cout;
    y[..batch * g.out_h * row]
        .par_chunks_mut(row)
        .enumerate()
        .for_each(|(r, yrow)| {
            let (b, oy) = (r / g.out_h, r % g.out_h);
            let xb = &x[b * g.in_pixels() * cin..(b + 1) * g.in_pixels() * cin];
            conv2d_row(xb, g, cin, w, bias, cout, act, oy, yrow);
        });
}

simd_dispatch! {
    /// One output row of `conv2d`.
    fn conv2d_row(xb: &[f32], g: &Conv2dGeom, cin: usize, w: &[f32], bias: &[f32], cout: usize, act: Activation, oy: usize, yrow: &mut [f32]) {
        // Stems have 8 or 16 output channels (A0 / A1-A5): a fixed-width accumulator
        // keeps them in one or two vector registers.
        match cout {
            8 => conv2d_row_n::<8>(xb, g, cin, w, bias, oy, yrow),
            16 => conv2d_row_n::<16>(xb, g, cin, w, bias, oy, yrow),
            _ => conv2d_row_any(xb, g, cin, w, bias, cout, oy, yrow),
        }
        act.apply_slice(yrow);
    }
}

#[inline(always)]
fn conv2d_row_n<const N: usize>(
    xb: &[f32],
    g: &Conv2dGeom,
    cin: usize,
    w: &[f32],
    bias: &[f32],
    oy: usize,
    yrow: &mut [f32],
) {
    let bias: [f32; N] = std::array::from_fn(|j| bias[j]);
    for (ox, out) in yrow.chunks_exact_mut(N).enumerate().take(g.out_w) {
        let mut acc = bias;
        for ky in 0..g.k_h {
            let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
            if iy < 0 || iy >= g.in_h as isize {
                continue;
            }
            for kx in 0..g.k_w {
                let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                if ix < 0 || ix >= g.in_w as isize {
                    continue;
                }
                let px = &xb[(iy as usize * g.in_w + ix as usize) * cin..][..cin];
                let wk = &w[(ky * g.k_w + kx) * cin * N..][..cin * N];
                for (&xv, wrow) in px.iter().zip(wk.chunks_exact(N)) {
                    for j in 0..N {
                        acc[j] += wrow[j] * xv;
                    }
                }
            }
        }
        out.copy_from_slice(&acc);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn conv2d_row_any(
    xb: &[f32],
    g: &Conv2dGeom,
    cin: usize,
    w: &[f32],
    bias: &[f32],
    cout: usize,
    oy: usize,
    yrow: &mut [f32],
) {
    for ox in 0..g.out_w {
        let acc = &mut yrow[ox * cout..(ox + 1) * cout];
        acc.copy_from_slice(&bias[..cout]);
        for ky in 0..g.k_h {
            let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
            if iy < 0 || iy >= g.in_h as isize {
                continue;
            }
            for kx in 0..g.k_w {
                let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                if ix < 0 || ix >= g.in_w as isize {
                    continue;
                }
                let px = &xb[(iy as usize * g.in_w + ix as usize) * cin..][..cin];
                let wk = &w[(ky * g.k_w + kx) * cin * cout..][..cin * cout];
                for (ci, &xv) in px.iter().enumerate() {
                    for (a, &wv) in acc.iter_mut().zip(&wk[ci * cout..(ci + 1) * cout]) {
                        *a += wv * xv;
                    }
                }
            }
        }
    }
}

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

/// Depthwise 2-D convolution: `x [B, in_h, in_w, c]`, `w [k_h, k_w, c]`, `bias [c]` →
/// `y [B, out_h, out_w, c] = act(dwconv + bias)`.
#[allow(clippy::too_many_arguments)]
pub fn depthwise2d(
    x: &[f32],
    batch: usize,
    g: &Conv2dGeom,
    c: usize,
    w: &[f32],
    bias: &[f32],
    act: Activation,
    y: &mut [f32],
) {
    let row = g.out_w * c;
    y[..batch * g.out_h * row]
        .par_chunks_mut(row)
        .enumerate()
        .for_each(|(r, yrow)| {
            let (b, oy) = (r / g.out_h, r % g.out_h);
            let xb = &x[b * g.in_pixels() * c..(b + 1) * g.in_pixels() * c];
            depthwise_row(xb, g, c, w, bias, act, oy, yrow);
        });
}

simd_dispatch! {
    /// One output row of `depthwise2d`: taps outermost, so each tap is one pass over the
    /// contiguous range of output pixels it reaches (no per-pixel bounds tests).
    fn depthwise_row(xb: &[f32], g: &Conv2dGeom, c: usize, w: &[f32], bias: &[f32], act: Activation, oy: usize, yrow: &mut [f32]) {
        let bias = &bias[..c];
        for px in yrow.chunks_exact_mut(c) {
            px.copy_from_slice(bias);
        }
        for ky in 0..g.k_h {
            let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
            if iy < 0 || iy >= g.in_h as isize {
                continue;
            }
            let xrow = &xb[iy as usize * g.in_w * c..(iy as usize + 1) * g.in_w * c];
            for kx in 0..g.k_w {
                let wk = &w[(ky * g.k_w + kx) * c..][..c];
                // output columns whose input column ox*s + kx - pad_left is inside the row
                let lo = g.pad_left.saturating_sub(kx).div_ceil(g.stride);
                let hi = ((g.in_w + g.pad_left).saturating_sub(kx)).div_ceil(g.stride).min(g.out_w);
                for ox in lo..hi {
                    let ix = ox * g.stride + kx - g.pad_left;
                    let src = &xrow[ix * c..(ix + 1) * c];
                    let dst = &mut yrow[ox * c..(ox + 1) * c];
                    for ((a, &xv), &wv) in dst.iter_mut().zip(src).zip(wk) {
                        *a += wv * xv;
                    }
                }
            }
        }
        act.apply_slice(yrow);
    }
}

/// Average pool with TF `SAME` padding; padded taps are excluded from the count (as
/// TFLite does): `x [B, in_h, in_w, c]` → `y [B, out_h, out_w, c]`.
pub fn avg_pool2d(x: &[f32], batch: usize, g: &Conv2dGeom, c: usize, y: &mut [f32]) {
    let row = g.out_w * c;
    y[..batch * g.out_h * row]
        .par_chunks_mut(row)
        .enumerate()
        .for_each(|(r, yrow)| {
            let (b, oy) = (r / g.out_h, r % g.out_h);
            let xb = &x[b * g.in_pixels() * c..(b + 1) * g.in_pixels() * c];
            for ox in 0..g.out_w {
                let acc = &mut yrow[ox * c..(ox + 1) * c];
                acc.fill(0.0);
                let mut count = 0usize;
                for ky in 0..g.k_h {
                    let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                    if iy < 0 || iy >= g.in_h as isize {
                        continue;
                    }
                    for kx in 0..g.k_w {
                        let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                        if ix < 0 || ix >= g.in_w as isize {
                            continue;
                        }
                        count += 1;
                        let px = &xb[(iy as usize * g.in_w + ix as usize) * c..][..c];
                        for (a, &xv) in acc.iter_mut().zip(px) {
                            *a += xv;
                        }
                    }
                }
                let inv = count.max(1) as f32;
                for a in acc.iter_mut() {
                    *a /= inv;
                }
            }
        });
}

/// Causal temporal depthwise convolution over a per-stream ring of the last `kt - 1`
/// inputs (the stream buffer), updated in place.
///
/// - `cur [B, P, c]`: this frame's input; `w [kt, c]` (`w[kt-1]` multiplies the current
///   frame, `w[0]` the oldest); `bias [c]`.
/// - `state [slots, kt - 1, P, c]`: ring of past inputs; stream `b` lives in slot
///   `slots[b]` and has processed `t[b]` frames. Frame `f` sits at ring position
///   `f % (kt - 1)`; frames before the stream's start are the zero state.
/// - `y [B, P, c] = act(sum_j w[j] * frame(t - (kt - 1) + j) + bias)`, then the ring
///   position of the oldest frame is overwritten with `cur`.
///
/// `slots` must be pairwise distinct (the engine guarantees it).
#[allow(clippy::too_many_arguments)]
pub fn temporal_causal(
    cur: &[f32],
    p: usize,
    c: usize,
    kt: usize,
    w: &[f32],
    bias: &[f32],
    act: Activation,
    slots: &[usize],
    t: &[u64],
    state: &mut [f32],
    y: &mut [f32],
) {
    assert!(kt >= 2, "temporal_causal needs kt >= 2");
    let frame = p * c;
    let slot_len = (kt - 1) * frame;
    let chunk = task_rows(p, 16) * c;
    for (b, (&slot, &tb)) in slots.iter().zip(t).enumerate() {
        let ring = &mut state[slot * slot_len..(slot + 1) * slot_len];
        let cur_b = &cur[b * frame..(b + 1) * frame];
        let y_b = &mut y[b * frame..(b + 1) * frame];
        let head = (tb % (kt as u64 - 1)) as usize;
        {
            let ring: &[f32] = ring;
            y_b.par_chunks_mut(chunk).enumerate().for_each(|(ci, ych)| {
                temporal_chunk(
                    ring,
                    cur_b,
                    frame,
                    c,
                    kt,
                    head,
                    w,
                    bias,
                    act,
                    ci * chunk,
                    ych,
                );
            });
        }
        ring[head * frame..(head + 1) * frame].copy_from_slice(cur_b);
    }
}

simd_dispatch! {
    /// Elements `off..off + ych.len()` (whole pixels) of one stream's `temporal_causal`.
    fn temporal_chunk(ring: &[f32], cur: &[f32], frame: usize, c: usize, kt: usize, head: usize, w: &[f32], bias: &[f32], act: Activation, off: usize, ych: &mut [f32]) {
        for (i, ypx) in ych.chunks_exact_mut(c).enumerate() {
            let e = off + i * c;
            ypx.copy_from_slice(&bias[..c]);
            for j in 0..kt - 1 {
                let pos = (head + j) % (kt - 1);
                let src = &ring[pos * frame + e..][..c];
                for ((a, &v), &wv) in ypx.iter_mut().zip(src).zip(&w[j * c..(j + 1) * c]) {
                    *a += wv * v;
                }
            }
            for ((a, &v), &wv) in ypx.iter_mut().zip(&cur[e..e + c]).zip(&w[(kt - 1) * c..kt * c]) {
                *a += wv * v;
            }
        }
        act.apply_slice(ych);
    }
}

/// Per-stream spatial reduction: `out[b, ch] = scale[ch] * sum_p x[b, p, ch]`
/// (`scale = 1 / P` for a mean; the head's pool reads its own constant from the graph).
pub fn spatial_mean(x: &[f32], batch: usize, p: usize, c: usize, scale: &[f32], out: &mut [f32]) {
    out[..batch * c]
        .par_chunks_mut(c)
        .enumerate()
        .for_each(|(b, o)| {
            o.fill(0.0);
            for px in x[b * p * c..(b + 1) * p * c].chunks_exact(c) {
                for (a, &v) in o.iter_mut().zip(px) {
                    *a += v;
                }
            }
            for (a, &s) in o.iter_mut().zip(scale) {
                *a *= s;
            }
        });
}

/// Cumulative (causal global) average pool: `sums [slots, c] += x[b]`, then
/// `out[b] = sums[slots[b]] / (t[b] + 1)`, the mean over every frame so far.
pub fn cumulative_pool(
    x: &[f32],
    c: usize,
    slots: &[usize],
    t: &[u64],
    sums: &mut [f32],
    out: &mut [f32],
) {
    for (b, (&slot, &tb)) in slots.iter().zip(t).enumerate() {
        let s = &mut sums[slot * c..(slot + 1) * c];
        let n = (tb + 1) as f32;
        for ((sv, &xv), o) in s
            .iter_mut()
            .zip(&x[b * c..(b + 1) * c])
            .zip(&mut out[b * c..(b + 1) * c])
        {
            *sv += xv;
            *o = *sv / n;
        }
    }
}

/// Squeeze-excitation apply: `x[b, p, ch] *= gate[b, ch] * scale` in place.
pub fn channel_gate(x: &mut [f32], batch: usize, p: usize, c: usize, gate: &[f32], scale: f32) {
    let chunk = task_rows(p, 16) * c;
    let frame = p * c;
    x[..batch * frame]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, xs)| {
            let start = i * chunk;
            for (j, px) in xs.chunks_exact_mut(c).enumerate() {
                let b = (start + j * c) / frame;
                let g = &gate[b * c..(b + 1) * c];
                for (v, &gv) in px.iter_mut().zip(g) {
                    *v *= gv * scale;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    //! Each kernel against a naive loop written straight from its contract, on fresh
    //! seeded inputs, outputs poisoned with NaN beforehand, in 1- and 3-thread pools.
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.next()).collect()
        }
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    fn pools() -> Vec<rayon::ThreadPool> {
        [1, 3]
            .iter()
            .map(|&n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap()
            })
            .collect()
    }

    const ACTS: [Activation; 5] = [
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::HardSwish,
        Activation::Swish,
    ];

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

    fn naive_window(
        x: &[f32],
        batch: usize,
        g: &Conv2dGeom,
        c: usize,
        tap: &dyn Fn(usize, usize, usize) -> f32,
        mean: bool,
    ) -> Vec<f32> {
        let mut y = vec![0.0; batch * g.out_pixels() * c];
        for b in 0..batch {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    for ch in 0..c {
                        let (mut a, mut n) = (0.0f64, 0);
                        for ky in 0..g.k_h {
                            for kx in 0..g.k_w {
                                let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                                if iy >= 0
                                    && ix >= 0
                                    && (iy as usize) < g.in_h
                                    && (ix as usize) < g.in_w
                                {
                                    let v = x[((b * g.in_h + iy as usize) * g.in_w + ix as usize)
                                        * c
                                        + ch];
                                    a += (v * tap(ky, kx, ch)) as f64;
                                    n += 1;
                                }
                            }
                        }
                        y[((b * g.out_h + oy) * g.out_w + ox) * c + ch] = if mean {
                            (a / n as f64) as f32
                        } else {
                            a as f32
                        };
                    }
                }
            }
        }
        y
    }

    #[test]
    fn same_padding_is_asymmetric_at_stride_2() {
        let g = Conv2dGeom::same(172, 172, 3, 3, 2);
        assert_eq!((g.out_h, g.pad_top), (86, 0));
        let g = Conv2dGeom::same(43, 43, 3, 3, 2);
        assert_eq!((g.out_h, g.pad_top), (22, 1));
        let g = Conv2dGeom::same(86, 86, 5, 5, 2);
        assert_eq!((g.out_h, g.pad_top), (43, 1));
        let g = Conv2dGeom::same(11, 11, 3, 3, 2);
        assert_eq!((g.out_h, g.pad_top), (6, 1));
    }

    #[test]
    fn depthwise_and_avg_pool_match_naive() {
        let mut r = Rng(11);
        for pool in pools() {
            for &(h, w, k, s, c, batch) in &[
                (43, 43, 3, 2, 80, 2),
                (22, 22, 3, 1, 5, 3),
                (86, 86, 5, 2, 24, 1),
                (11, 7, 5, 1, 9, 2),
            ] {
                let g = Conv2dGeom::same(h, w, k, k, s);
                let x = r.vec(batch * h * w * c);
                let (wt, bias) = (r.vec(k * k * c), r.vec(c));
                for act in ACTS {
                    let mut y = vec![f32::NAN; batch * g.out_pixels() * c];
                    pool.install(|| depthwise2d(&x, batch, &g, c, &wt, &bias, act, &mut y));
                    let mut want = naive_window(
                        &x,
                        batch,
                        &g,
                        c,
                        &|ky, kx, ch| wt[(ky * k + kx) * c + ch],
                        false,
                    );
                    for (i, v) in want.iter_mut().enumerate() {
                        *v = act.apply(*v + bias[i % c]);
                    }
                    close(
                        &y,
                        &want,
                        &format!("depthwise {h}x{w} k{k} s{s} c{c} {act:?}"),
                    );
                }
                let mut y = vec![f32::NAN; batch * g.out_pixels() * c];
                pool.install(|| avg_pool2d(&x, batch, &g, c, &mut y));
                let want = naive_window(&x, batch, &g, c, &|_, _, _| 1.0, true);
                close(&y, &want, &format!("avg_pool {h}x{w} k{k} s{s}"));
            }
        }
    }

    #[test]
    fn stem_conv_matches_naive() {
        let mut r = Rng(5);
        let (h, k, cin, cout, batch) = (30, 3, 3, 8, 2);
        let g = Conv2dGeom::same(h, h, k, k, 2);
        let (x, w, bias) = (
            r.vec(batch * h * h * cin),
            r.vec(k * k * cin * cout),
            r.vec(cout),
        );
        for pool in pools() {
            let mut y = vec![f32::NAN; batch * g.out_pixels() * cout];
            pool.install(|| {
                conv2d(
                    &x,
                    batch,
                    &g,
                    cin,
                    &w,
                    &bias,
                    cout,
                    Activation::HardSwish,
                    &mut y,
                )
            });
            let mut want = vec![0.0; y.len()];
            for b in 0..batch {
                for o in 0..cout {
                    // one output channel = sum over input channels of a windowed sum
                    let mut acc = vec![0.0f32; g.out_pixels()];
                    for ci in 0..cin {
                        let plane: Vec<f32> =
                            (0..h * h).map(|p| x[(b * h * h + p) * cin + ci]).collect();
                        let part = naive_window(
                            &plane,
                            1,
                            &g,
                            1,
                            &|ky, kx, _| w[((ky * k + kx) * cin + ci) * cout + o],
                            false,
                        );
                        acc.iter_mut().zip(part).for_each(|(a, p)| *a += p);
                    }
                    for (p, a) in acc.iter().enumerate() {
                        want[(b * g.out_pixels() + p) * cout + o] =
                            Activation::HardSwish.apply(a + bias[o]);
                    }
                }
            }
            close(&y, &want, "stem conv");
        }
    }

    #[test]
    fn temporal_causal_carries_the_ring_per_slot() {
        let mut r = Rng(3);
        let (p, c, kt, slots_n) = (10, 6, 4, 5);
        let (w, bias) = (r.vec(kt * c), r.vec(c));
        for pool in pools() {
            let mut state = vec![0.0; slots_n * (kt - 1) * p * c];
            // three streams in slots 4, 0, 2; history kept naively
            let slots = [4usize, 0, 2];
            let mut history: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 3];
            for step in 0..7u64 {
                let cur = r.vec(3 * p * c);
                let t = [step, step, step];
                let mut y = vec![f32::NAN; 3 * p * c];
                pool.install(|| {
                    temporal_causal(
                        &cur,
                        p,
                        c,
                        kt,
                        &w,
                        &bias,
                        Activation::Relu6,
                        &slots,
                        &t,
                        &mut state,
                        &mut y,
                    )
                });
                for b in 0..3 {
                    history[b].push(cur[b * p * c..(b + 1) * p * c].to_vec());
                    let hist = &history[b];
                    let mut want = vec![0.0; p * c];
                    for e in 0..p * c {
                        let mut a = bias[e % c];
                        for j in 0..kt {
                            // frame index step - (kt-1) + j; negative = zero state
                            let f = step as i64 - (kt as i64 - 1) + j as i64;
                            if f >= 0 {
                                a += w[j * c + e % c] * hist[f as usize][e];
                            }
                        }
                        want[e] = Activation::Relu6.apply(a);
                    }
                    close(
                        &y[b * p * c..(b + 1) * p * c],
                        &want,
                        &format!("temporal step {step} stream {b}"),
                    );
                }
            }
        }
    }

    #[test]
    fn pools_and_gate_match_their_contracts() {
        let mut r = Rng(9);
        let (batch, p, c) = (3, 7, 5);
        let x = r.vec(batch * p * c);
        let scale: Vec<f32> = (0..c).map(|i| 0.1 * (i + 1) as f32).collect();
        let mut m = vec![f32::NAN; batch * c];
        spatial_mean(&x, batch, p, c, &scale, &mut m);
        for b in 0..batch {
            for ch in 0..c {
                let s: f32 = (0..p).map(|i| x[(b * p + i) * c + ch]).sum();
                assert!((m[b * c + ch] - s * scale[ch]).abs() < 1e-5);
            }
        }
        let mut sums = vec![0.0; 4 * c];
        let mut out = vec![f32::NAN; batch * c];
        cumulative_pool(&m, c, &[3, 1, 0], &[0, 0, 0], &mut sums, &mut out);
        cumulative_pool(&m, c, &[3, 1, 0], &[1, 1, 1], &mut sums, &mut out);
        close(&out, &m, "cumulative mean of two equal frames");
        assert!(
            sums[2 * c..3 * c].iter().all(|&v| v == 0.0),
            "unused slot untouched"
        );
        let gate = r.vec(batch * c);
        let mut g = x.clone();
        channel_gate(&mut g, batch, p, c, &gate, 0.5);
        for (i, v) in g.iter().enumerate() {
            let (b, ch) = (i / (p * c), i % c);
            assert!((v - x[i] * gate[b * c + ch] * 0.5).abs() < 1e-6);
        }
    }
}
