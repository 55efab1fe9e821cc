//! `conv2d`: the full 2-D convolution of the stem (few input channels, HWIO weights),
//! one output row per task, compiled for AVX2 + FMA where the CPU has it.

use rayon::prelude::*;

use super::isa::simd_dispatch;
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
    let row = g.out_w * cout;
    y[..batch * g.out_h * row]
        .par_chunks_mut(row)
        .enumerate()
        .for_each(|(r, yrow)| {
            let (b, oy) = (r / g.out_h, r % g.out_h);
            let xb = &x[b * g.in_pixels() * cin..(b + 1) * g.in_pixels() * cin];
            conv2d_row(super::Isa::active(), xb, g, cin, w, bias, cout, act, oy, yrow);
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

#[cfg(test)]
mod tests {
    //! Against a naive loop, outputs poisoned with NaN, in 1- and 3-thread pools.
    use super::*;
    use crate::cpu::test_util::*;

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
}
