//! Windowed 2-D ops with TF `SAME` geometry: [`depthwise2d`] (the blocks' spatial
//! convolutions) and [`avg_pool2d`] (the projected skips' pooling).

use rayon::prelude::*;

use super::isa::simd_dispatch;
use crate::{Activation, Conv2dGeom};

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
            depthwise_row(super::Isa::active(), xb, g, c, w, bias, act, oy, yrow);
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
}
