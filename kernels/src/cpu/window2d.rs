//! Windowed 2-D ops with TF `SAME` geometry: [`depthwise2d`] (the blocks' spatial
//! convolutions) and [`avg_pool2d`] (the projected skips' pooling), one output row per
//! task, both computed by one row kernel: a channel block (one vector) at a time, its
//! taps held in registers (kernels up to 7x7), over the row's pixels — interior pixels
//! without bounds tests, the one or two at each edge with them.

use super::isa::vector_dispatch;
use super::simd::{activate, vectorizes, with_act, F32Vec};
use super::tasks::for_each_chunk;
use super::Isa;
use crate::{Activation, Conv2dGeom};

/// Largest window side the row kernel holds in registers.
pub const MAX_WINDOW: usize = 7;

/// Depthwise 2-D convolution: `x [B, in_h, in_w, c]`, `w [k_h, k_w, c]`, `bias [c]` →
/// `y [B, out_h, out_w, c] = act(dwconv + bias)`. Windows up to [`MAX_WINDOW`] square.
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
    depthwise2d_on(Isa::active(), x, batch, g, c, w, bias, act, y);
}

/// [`depthwise2d`] on instruction set `isa` (clamped to the CPU).
#[allow(clippy::too_many_arguments)]
pub fn depthwise2d_on(
    isa: Isa,
    x: &[f32],
    batch: usize,
    g: &Conv2dGeom,
    c: usize,
    w: &[f32],
    bias: &[f32],
    act: Activation,
    y: &mut [f32],
) {
    assert!(w.len() >= g.k_h * g.k_w * c && bias.len() >= c);
    window_rows(isa, x, batch, g, c, Some((w, bias)), act, y);
}

/// Average pool with TF `SAME` padding; padded taps are excluded from the count (as
/// TFLite does): `x [B, in_h, in_w, c]` → `y [B, out_h, out_w, c]`.
pub fn avg_pool2d(x: &[f32], batch: usize, g: &Conv2dGeom, c: usize, y: &mut [f32]) {
    avg_pool2d_on(Isa::active(), x, batch, g, c, y);
}

/// [`avg_pool2d`] on instruction set `isa` (clamped to the CPU).
pub fn avg_pool2d_on(isa: Isa, x: &[f32], batch: usize, g: &Conv2dGeom, c: usize, y: &mut [f32]) {
    window_rows(isa, x, batch, g, c, None, Activation::None, y);
}

/// Every output row of a window op: depthwise with `Some((w, bias))`, mean without.
#[allow(clippy::too_many_arguments)]
fn window_rows(
    isa: Isa,
    x: &[f32],
    batch: usize,
    g: &Conv2dGeom,
    c: usize,
    taps: Option<(&[f32], &[f32])>,
    act: Activation,
    y: &mut [f32],
) {
    assert!(
        g.k_h <= MAX_WINDOW && g.k_w <= MAX_WINDOW,
        "window ops take windows up to {MAX_WINDOW}x{MAX_WINDOW}, not {}x{}",
        g.k_h,
        g.k_w
    );
    assert!(x.len() >= batch * g.in_pixels() * c && y.len() >= batch * g.out_pixels() * c);
    let row = g.out_w * c;
    if row == 0 {
        return;
    }
    for_each_chunk(&mut y[..batch * g.out_h * row], row, |r, yrow| {
        let (b, oy) = (r / g.out_h, r % g.out_h);
        let xb = &x[b * g.in_pixels() * c..(b + 1) * g.in_pixels() * c];
        window_row(isa, xb, g, c, taps, act, oy, yrow);
    });
}

/// Output columns `lo..hi` whose windows lie inside the input row (no bounds tests).
fn interior(g: &Conv2dGeom) -> (usize, usize) {
    let lo = g.pad_left.div_ceil(g.stride).min(g.out_w);
    let hi = if g.in_w + g.pad_left >= g.k_w {
        ((g.in_w + g.pad_left - g.k_w) / g.stride + 1).min(g.out_w)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// Interior output pixels computed together: their accumulators stay in registers while
/// the window's taps go by (one weight vector per tap for all of them, and independent
/// chains of multiply-adds).
const GROUP: usize = 8;

vector_dispatch! {
    /// One output row `oy` of a window op over one stream's input `xb`.
    fn window_row<V>(xb: &[f32], g: &Conv2dGeom, c: usize, taps: Option<(&[f32], &[f32])>, act: Activation, oy: usize, yrow: &mut [f32]) {
        let mut blk = Block {
            rows: [None; MAX_WINDOW],
            g,
            c,
            cb: 0,
            nc: 0,
            taps,
            act,
            y: yrow.as_mut_ptr(),
        };
        for (ky, row) in blk.rows.iter_mut().enumerate().take(g.k_h) {
            let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
            if iy >= 0 && iy < g.in_h as isize {
                *row = Some(xb[iy as usize * g.in_w * c..].as_ptr());
            }
        }
        let half = <V::Half as F32Vec>::LANES;
        while blk.cb < c {
            blk.nc = (c - blk.cb).min(V::LANES);
            // SAFETY: the callers checked xb (in_h * in_w * c), the taps (k_h * k_w * c
            // and c) and yrow (out_w * c); channels cb..cb+nc lie within c.
            unsafe {
                if blk.nc <= half && V::LANES > half {
                    // a short last block (24 channels = 16 + 8): half-width vectors
                    if blk.nc == half {
                        with_epilogue::<V::Half, false>(&blk);
                    } else {
                        with_epilogue::<V::Half, true>(&blk);
                    }
                } else if blk.nc == V::LANES {
                    with_epilogue::<V, false>(&blk);
                } else {
                    with_epilogue::<V, true>(&blk);
                }
            }
            blk.cb += V::LANES;
        }
        if !vectorizes(act) {
            act.apply_slice(yrow);
        }
    }
}

/// One row's channel block: where its inputs and outputs are.
struct Block<'a> {
    /// each window row's input row, `None` where it is padding
    rows: [Option<*const f32>; MAX_WINDOW],
    g: &'a Conv2dGeom,
    c: usize,
    /// first channel and channels of the block
    cb: usize,
    nc: usize,
    /// depthwise weights and bias; `None`: a mean
    taps: Option<(&'a [f32], &'a [f32])>,
    act: Activation,
    y: *mut f32,
}

/// `nc` values at `p` (all lanes unless `PART`).
///
/// # Safety
/// Inside code compiled for `V`; the values readable.
#[inline(always)]
unsafe fn ld<V: F32Vec, const PART: bool>(p: *const f32, nc: usize) -> V {
    // SAFETY: forwarded.
    unsafe {
        if PART {
            V::load_n(p, nc)
        } else {
            V::load(p)
        }
    }
}

/// [`block`] with its epilogue as a const: the activation's code, or [`MEAN`].
///
/// # Safety
/// As [`block`].
#[inline(always)]
unsafe fn with_epilogue<V: F32Vec, const PART: bool>(b: &Block) {
    // SAFETY: forwarded.
    unsafe {
        match b.taps {
            Some(_) => with_act!(b.act, block, [V, PART], (b)),
            None => block::<V, PART, MEAN>(b),
        }
    }
}

/// Epilogue code of a mean (past the activations' codes).
const MEAN: u8 = 4;

/// Every pixel of the row for one channel block: the interior in groups of [`GROUP`],
/// then 4, 2 and 1 (no bounds tests), the one or two pixels at each edge one at a time
/// with bounds tests.
///
/// # Safety
/// Inside code compiled for `V`; the block's inputs, taps and outputs as
/// [`window_row`] requires; `b.nc` channels (all `LANES` unless `PART`).
#[inline(always)]
unsafe fn block<V: F32Vec, const PART: bool, const E: u8>(b: &Block) {
    let (lo, hi) = interior(b.g);
    // SAFETY: interior groups' windows lie inside the row; edge pixels are checked.
    unsafe {
        for ox in 0..lo {
            pixels::<V, PART, true, E, 1>(b, ox);
        }
        let mut ox = lo;
        while ox + GROUP <= hi {
            pixels::<V, PART, false, E, GROUP>(b, ox);
            ox += GROUP;
        }
        if ox + 4 <= hi {
            pixels::<V, PART, false, E, 4>(b, ox);
            ox += 4;
        }
        if ox + 2 <= hi {
            pixels::<V, PART, false, E, 2>(b, ox);
            ox += 2;
        }
        if ox < hi {
            pixels::<V, PART, false, E, 1>(b, ox);
        }
        for ox in hi..b.g.out_w {
            pixels::<V, PART, true, E, 1>(b, ox);
        }
    }
}

/// Output pixels `ox0..ox0 + G` of the block: the window's sum (taps outside the input
/// skipped when `CHECK`, which only single pixels use), then the activation — or, for a
/// mean, the division by the taps counted.
///
/// # Safety
/// As [`block`]; without `CHECK`, every window column of these pixels is in the row;
/// `ox0 + G <= out_w`.
#[inline(always)]
unsafe fn pixels<V: F32Vec, const PART: bool, const CHECK: bool, const E: u8, const G: usize>(
    b: &Block,
    ox0: usize,
) {
    let g = b.g;
    // SAFETY: taps (ky, kx) < (k_h, k_w), channels cb..cb+nc, input columns inside the
    // row (interior or checked) and output pixels ox0..ox0+G <= out_w: in bounds.
    unsafe {
        let bias = match b.taps {
            Some((_, bias)) => ld::<V, PART>(bias.as_ptr().add(b.cb), b.nc),
            None => V::zero(),
        };
        let mut acc = [bias; G];
        let ix0 = (ox0 * g.stride) as isize - g.pad_left as isize;
        // window columns inside the row (all of them unless CHECK)
        let (kx0, kx1) = if CHECK {
            (
                (-ix0).clamp(0, g.k_w as isize) as usize,
                (g.in_w as isize - ix0).clamp(0, g.k_w as isize) as usize,
            )
        } else {
            (0, g.k_w)
        };
        let mut rows = 0usize;
        for (ky, xr) in b.rows.iter().enumerate().take(g.k_h) {
            let Some(xr) = *xr else { continue };
            rows += 1;
            let xr = xr.wrapping_offset(ix0 * b.c as isize + b.cb as isize);
            for kx in kx0..kx1 {
                let wv = match b.taps {
                    Some((w, _)) => {
                        ld::<V, PART>(w.as_ptr().add((ky * g.k_w + kx) * b.c + b.cb), b.nc)
                    }
                    None => V::splat(1.0),
                };
                let xk = xr.wrapping_add(kx * b.c);
                for (p, a) in acc.iter_mut().enumerate() {
                    *a = ld::<V, PART>(xk.wrapping_add(p * g.stride * b.c), b.nc).mul_add(wv, *a);
                }
            }
        }
        let inv = V::splat(1.0 / (rows * (kx1 - kx0)).max(1) as f32);
        for (p, &a) in acc.iter().enumerate() {
            let v = if E == MEAN {
                a.mul(inv)
            } else {
                activate::<V, E>(a)
            };
            let out = b.y.add((ox0 + p) * b.c + b.cb);
            if PART {
                v.store_n(out, b.nc);
            } else {
                v.store(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a naive window loop, outputs poisoned with NaN, in 1- and 3-thread pools.
    use super::*;
    use crate::cpu::test_util::*;

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

    /// Every window shape of the models (3x3 and 5x5, stride 1 and 2, asymmetric SAME
    /// padding) plus 7x7, non-square and tiny ones, with channel counts that leave
    /// partial vector blocks (24 = 16 + 8, 9, 5, 184 = 11.5 x 16), on every ISA.
    #[test]
    fn depthwise_and_avg_pool_match_naive_on_every_isa() {
        let mut r = Rng(11);
        for isa in isas_under_test("depthwise and avg pool") {
            for pool in pools() {
                for &(h, w, kh, kw, s, c, batch) in &[
                    (43, 43, 3, 3, 2, 80, 2),
                    (22, 22, 3, 3, 1, 5, 3),
                    (86, 86, 5, 5, 2, 24, 1),
                    (11, 7, 5, 5, 1, 9, 2),
                    (11, 11, 3, 3, 1, 184, 1),
                    (6, 6, 5, 5, 1, 40, 2),
                    (9, 13, 7, 7, 1, 20, 1),
                    (10, 12, 1, 3, 1, 17, 1),
                    (2, 3, 3, 3, 2, 33, 2),
                ] {
                    let g = Conv2dGeom::same(h, w, kh, kw, s);
                    let x = r.vec(batch * h * w * c);
                    let (wt, bias) = (r.vec(kh * kw * c), r.vec(c));
                    for act in ACTS {
                        let mut y = vec![f32::NAN; batch * g.out_pixels() * c];
                        pool.install(|| {
                            depthwise2d_on(isa, &x, batch, &g, c, &wt, &bias, act, &mut y)
                        });
                        let mut want = naive_window(
                            &x,
                            batch,
                            &g,
                            c,
                            &|ky, kx, ch| wt[(ky * kw + kx) * c + ch],
                            false,
                        );
                        for (i, v) in want.iter_mut().enumerate() {
                            *v = act.apply(*v + bias[i % c]);
                        }
                        close(
                            &y,
                            &want,
                            &format!("{isa} depthwise {h}x{w} k{kh}x{kw} s{s} c{c} {act:?}"),
                        );
                    }
                    let mut y = vec![f32::NAN; batch * g.out_pixels() * c];
                    pool.install(|| avg_pool2d_on(isa, &x, batch, &g, c, &mut y));
                    let want = naive_window(&x, batch, &g, c, &|_, _, _| 1.0, true);
                    close(
                        &y,
                        &want,
                        &format!("{isa} avg_pool {h}x{w} k{kh}x{kw} s{s} c{c}"),
                    );
                }
            }
        }
    }
}
