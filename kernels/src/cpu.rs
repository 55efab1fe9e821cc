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
    total.div_ceil(threads * TASKS_PER_THREAD).max(min_rows).max(1)
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
            for ox in 0..g.out_w {
                let acc = &mut yrow[ox * cout..(ox + 1) * cout];
                acc.copy_from_slice(bias);
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
                            let wrow = &wk[ci * cout..(ci + 1) * cout];
                            for (a, &wv) in acc.iter_mut().zip(wrow) {
                                *a += wv * xv;
                            }
                        }
                    }
                }
                for a in acc.iter_mut() {
                    *a = act.apply(*a);
                }
            }
        });
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
                let yrow = unsafe { std::slice::from_raw_parts_mut(yp.0.add((r0 + i) * n + c0), nc) };
                for v in yrow.iter_mut() {
                    *v = act.apply(*v);
                }
                if let Some(r) = residual {
                    for (yv, &rv) in yrow.iter_mut().zip(&r[(r0 + i) * n + c0..][..nc]) {
                        *yv += rv;
                    }
                }
            }
        }
    });
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
            for ox in 0..g.out_w {
                let acc = &mut yrow[ox * c..(ox + 1) * c];
                acc.copy_from_slice(&bias[..c]);
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
                        let px = &xb[(iy as usize * g.in_w + ix as usize) * c..][..c];
                        let wk = &w[(ky * g.k_w + kx) * c..][..c];
                        for ((a, &xv), &wv) in acc.iter_mut().zip(px).zip(wk) {
                            *a += wv * xv;
                        }
                    }
                }
                for a in acc.iter_mut() {
                    *a = act.apply(*a);
                }
            }
        });
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
    let chunk = task_rows(frame, 1024);
    for (b, (&slot, &tb)) in slots.iter().zip(t).enumerate() {
        let ring = &mut state[slot * slot_len..(slot + 1) * slot_len];
        let cur_b = &cur[b * frame..(b + 1) * frame];
        let y_b = &mut y[b * frame..(b + 1) * frame];
        let head = (tb % (kt as u64 - 1)) as usize;
        {
            let ring: &[f32] = ring;
            y_b.par_chunks_mut(chunk).enumerate().for_each(|(ci, ych)| {
                let off = ci * chunk;
                for (i, yv) in ych.iter_mut().enumerate() {
                    let e = off + i;
                    let ch = e % c;
                    let mut acc = bias[ch];
                    for j in 0..kt - 1 {
                        let pos = (head + j) % (kt - 1);
                        acc += w[j * c + ch] * ring[pos * frame + e];
                    }
                    acc += w[(kt - 1) * c + ch] * cur_b[e];
                    *yv = act.apply(acc);
                }
            });
        }
        ring[head * frame..(head + 1) * frame].copy_from_slice(cur_b);
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
        for ((sv, &xv), o) in s.iter_mut().zip(&x[b * c..(b + 1) * c]).zip(&mut out[b * c..(b + 1) * c]) {
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
