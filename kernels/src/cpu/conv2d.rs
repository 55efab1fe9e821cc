//! `conv2d`: the full 2-D convolution of the stem (few input channels, HWIO weights),
//! one output row per task, on the register tile the 1x1 GEMMs use
//! ([`super::tile`]): within one input row, the windows of consecutive output pixels are
//! rows of an implicit im2col matrix, `stride * cin` apart, whose `k_w * cin` columns
//! multiply one `[k_w * cin, cout]` slice of the HWIO weights as they are stored. Each
//! window row (`ky`) adds one such product; padded rows add nothing; the one or two
//! pixels at each edge sum their valid taps one at a time.

use super::isa::vector_dispatch;
use super::simd::F32Vec;
use super::tasks::for_each_chunk;
use super::tile::{bias_tile, fma_tile, store_tile, tile_dispatch};
use super::Isa;
use crate::{Activation, Conv2dGeom};

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
    conv2d_on(Isa::active(), x, batch, g, cin, w, bias, cout, act, y);
}

/// [`conv2d`] on instruction set `isa` (clamped to the CPU).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_on(
    isa: Isa,
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
    assert!(x.len() >= batch * g.in_pixels() * cin && y.len() >= batch * g.out_pixels() * cout);
    assert!(w.len() >= g.k_h * g.k_w * cin * cout && bias.len() >= cout);
    let row = g.out_w * cout;
    if row == 0 {
        return;
    }
    for_each_chunk(&mut y[..batch * g.out_h * row], row, |r, yrow| {
        let (b, oy) = (r / g.out_h, r % g.out_h);
        let xb = &x[b * g.in_pixels() * cin..(b + 1) * g.in_pixels() * cin];
        let conv = Conv {
            xb,
            g,
            cin,
            w,
            bias,
            cout,
            act,
            oy,
        };
        conv2d_row(isa, &conv, yrow);
    });
}

/// One output row's operands.
struct Conv<'a> {
    /// one stream's input
    xb: &'a [f32],
    g: &'a Conv2dGeom,
    cin: usize,
    w: &'a [f32],
    bias: &'a [f32],
    cout: usize,
    act: Activation,
    oy: usize,
}

/// Output columns per register tile (the tile's rows).
const MR: usize = 6;

vector_dispatch! {
    /// One output row of `conv2d`, in column blocks of one tile row each.
    fn conv2d_row<V>(conv: &Conv, yrow: &mut [f32]) {
        let half = <V::Half as F32Vec>::LANES;
        let mut c0 = 0;
        while c0 < conv.cout {
            let nc = (conv.cout - c0).min(V::TILE_VECTORS * V::LANES);
            // SAFETY: the caller checked x, w, bias and y against the geometry; columns
            // c0..c0+nc lie within cout.
            unsafe {
                if nc <= half && V::LANES > half {
                    // 8-channel stems (A0): half-width vectors, full lanes
                    columns::<V::Half>(conv, c0, nc, yrow);
                } else {
                    columns::<V>(conv, c0, nc, yrow);
                }
            }
            c0 += nc;
        }
    }
}

/// Output channels `c0..c0 + nc` (at most one tile row of vectors) of the row.
///
/// # Safety
/// Inside code compiled for `V`; `conv`'s slices match its geometry (checked by
/// [`conv2d_on`]); `yrow` holds the row.
#[inline(always)]
unsafe fn columns<V: F32Vec>(conv: &Conv, c0: usize, nc: usize, yrow: &mut [f32]) {
    let g = conv.g;
    let nv = nc.div_ceil(V::LANES);
    // interior output columns: the whole window inside the row
    let lo = g.pad_left.div_ceil(g.stride).min(g.out_w);
    let hi = if g.in_w + g.pad_left >= g.k_w {
        ((g.in_w + g.pad_left - g.k_w) / g.stride + 1).min(g.out_w)
    } else {
        0
    }
    .max(lo);
    let mut ox = lo;
    // SAFETY: interior pixels' windows lie inside the input row; edge pixels go one tap
    // at a time, valid taps only; every output lies in yrow (out_w * cout).
    unsafe {
        while ox < hi {
            let mr = MR.min(hi - ox);
            tile_dispatch!(mr, nv, V::TILE_VECTORS, span::<V>(conv, c0, nc, ox, yrow));
            ox += mr;
        }
        for ox in (0..lo).chain(hi..g.out_w) {
            tile_dispatch!(1, nv, V::TILE_VECTORS, edge::<V>(conv, c0, nc, ox, yrow));
        }
    }
}

/// The input row window row `ky` reads for output row `oy`, if it is not padding.
fn input_row(conv: &Conv, ky: usize) -> Option<usize> {
    let iy = (conv.oy * conv.g.stride + ky) as isize - conv.g.pad_top as isize;
    (iy >= 0 && iy < conv.g.in_h as isize).then_some(iy as usize)
}

/// Interior output pixels `ox..ox + R`, channels `c0..c0 + nc`: per window row, one
/// `R x k_w*cin` by `k_w*cin x nc` product on the tile.
///
/// # Safety
/// As [`columns`]; pixels `ox..ox + R` are interior.
#[inline(always)]
unsafe fn span<V: F32Vec, const R: usize, const NV: usize>(
    conv: &Conv,
    c0: usize,
    nc: usize,
    ox: usize,
    yrow: &mut [f32],
) {
    let (g, cin, cout) = (conv.g, conv.cin, conv.cout);
    let kw = g.k_w * cin;
    // SAFETY: window columns (ox + i) * stride - pad_left .. + k_w lie in the row for
    // interior pixels; weight rows ky * kw .. + kw, columns c0..c0+nc are in w.
    unsafe {
        let mut acc = bias_tile::<V, R, NV>(conv.bias.as_ptr().add(c0), nc);
        for ky in 0..g.k_h {
            let Some(iy) = input_row(conv, ky) else {
                continue;
            };
            let a = conv
                .xb
                .as_ptr()
                .add((iy * g.in_w + ox * g.stride - g.pad_left) * cin);
            let w = conv.w.as_ptr().add(ky * kw * cout + c0);
            fma_tile(&mut acc, a, g.stride * cin, kw, w, cout);
        }
        let y = yrow.as_mut_ptr().add(ox * cout + c0);
        store_tile(&acc, y, cout, nc, conv.act, None);
    }
}

/// One edge output pixel `ox`: its valid taps, one `1 x cin` by `cin x nc` product each.
///
/// # Safety
/// As [`columns`]; `R == 1`.
#[inline(always)]
unsafe fn edge<V: F32Vec, const R: usize, const NV: usize>(
    conv: &Conv,
    c0: usize,
    nc: usize,
    ox: usize,
    yrow: &mut [f32],
) {
    let (g, cin, cout) = (conv.g, conv.cin, conv.cout);
    // SAFETY: only taps inside the input are read; weights (ky, kx) < (k_h, k_w).
    unsafe {
        let mut acc = bias_tile::<V, R, NV>(conv.bias.as_ptr().add(c0), nc);
        for ky in 0..g.k_h {
            let Some(iy) = input_row(conv, ky) else {
                continue;
            };
            for kx in 0..g.k_w {
                let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                if ix < 0 || ix >= g.in_w as isize {
                    continue;
                }
                let a = conv.xb.as_ptr().add((iy * g.in_w + ix as usize) * cin);
                let w = conv.w.as_ptr().add((ky * g.k_w + kx) * cin * cout + c0);
                fma_tile(&mut acc, a, cin, cin, w, cout);
            }
        }
        let y = yrow.as_mut_ptr().add(ox * cout + c0);
        store_tile(&acc, y, cout, nc, conv.act, None);
    }
}

#[cfg(test)]
mod tests {
    //! Against a naive loop, outputs poisoned with NaN, in 1- and 3-thread pools.
    use super::*;
    use crate::cpu::test_util::*;

    /// The A0 stem (3x3 s2, 3 -> 8, even size: padding after only), odd sizes (padding
    /// both sides), 16- and 24-channel and odd-width outputs, stride 1, 5x5, on every ISA.
    #[test]
    fn stem_conv_matches_naive_on_every_isa() {
        let mut r = Rng(5);
        for isa in isas_under_test("stem conv") {
            for &(h, wd, k, s, cin, cout, batch) in &[
                (30, 30, 3, 2, 3, 8, 2),
                (17, 23, 3, 2, 3, 16, 1),
                (9, 11, 5, 1, 2, 24, 2),
                (8, 7, 3, 1, 4, 7, 1),
                (13, 13, 3, 2, 3, 72, 1),
            ] {
                let g = Conv2dGeom::same(h, wd, k, k, s);
                let (x, w, bias) = (
                    r.vec(batch * h * wd * cin),
                    r.vec(k * k * cin * cout),
                    r.vec(cout),
                );
                for pool in pools() {
                    let act = ACTS[(h + cout) % ACTS.len()];
                    let mut y = vec![f32::NAN; batch * g.out_pixels() * cout];
                    pool.install(|| {
                        conv2d_on(isa, &x, batch, &g, cin, &w, &bias, cout, act, &mut y)
                    });
                    let mut want = vec![0.0; y.len()];
                    for b in 0..batch {
                        for o in 0..cout {
                            // one output channel = sum over input channels of a windowed sum
                            let mut acc = vec![0.0f32; g.out_pixels()];
                            for ci in 0..cin {
                                let plane: Vec<f32> = (0..h * wd)
                                    .map(|p| x[(b * h * wd + p) * cin + ci])
                                    .collect();
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
                                want[(b * g.out_pixels() + p) * cout + o] = act.apply(a + bias[o]);
                            }
                        }
                    }
                    close(
                        &y,
                        &want,
                        &format!("{isa} conv2d {h}x{wd} k{k} s{s} {cin}->{cout}"),
                    );
                }
            }
        }
    }
}
