//! Row normalisations of transformer activations: [`layer_norm`] (PyTorch `LayerNorm`
//! semantics: biased variance, `eps` inside the square root, affine weight and bias) and
//! [`l2_normalize`] (CLIP's embedding normalisation). Rows are split across the caller's
//! rayon pool; nothing allocates.

use rayon::prelude::*;

use super::isa::simd_dispatch;
use super::tasks::{task_rows, SendPtr};
use super::Isa;

/// Sum of `xs` in eight independent lanes (vectorizes; a sequential sum would not).
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] += f(c[l]);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in tail {
        s += f(v);
    }
    s
}

simd_dispatch! {
    fn norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
        let d = x.len() as f32;
        let mean = lane_sum(x, |v| v) / d;
        let var = lane_sum(x, |v| (v - mean) * (v - mean)) / d;
        let rstd = 1.0 / (var + eps).sqrt();
        for (((o, &v), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (v - mean) * rstd * g + b;
        }
    }
}

/// `y[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta` for `rows` rows of `d` values;
/// row `r` of `x` starts at `r * x_stride` (`x_stride >= d`, e.g. every image's class
/// token), `y` is contiguous `[rows, d]`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    x: &[f32],
    x_stride: usize,
    rows: usize,
    d: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
) {
    assert!(x_stride >= d && gamma.len() >= d && beta.len() >= d && y.len() >= rows * d);
    if rows == 0 {
        return;
    }
    assert!(x.len() >= (rows - 1) * x_stride + d);
    let chunk = task_rows(rows, (4096 / d.max(1)).max(1));
    y[..rows * d]
        .par_chunks_mut(chunk * d)
        .enumerate()
        .for_each(|(ci, ys)| {
            for (i, yr) in ys.chunks_exact_mut(d).enumerate() {
                let r = ci * chunk + i;
                norm_row(
                    Isa::active(),
                    &x[r * x_stride..r * x_stride + d],
                    &gamma[..d],
                    &beta[..d],
                    eps,
                    yr,
                );
            }
        });
}

simd_dispatch! {
    fn scale_row(x: &mut [f32]) {
        let n = lane_sum(x, |v| v * v).sqrt();
        let inv = 1.0 / n;
        x.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Each of `rows` rows of `d` values divided by its L2 norm, in place (a zero row becomes
/// NaN, as in PyTorch's `x / x.norm()`).
pub fn l2_normalize(x: &mut [f32], rows: usize, d: usize) {
    assert!(x.len() >= rows * d);
    if rows == 0 || d == 0 {
        return;
    }
    let chunk = task_rows(rows, (4096 / d).max(1));
    let xp = SendPtr(x.as_mut_ptr());
    (0..rows.div_ceil(chunk)).into_par_iter().for_each(|ci| {
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its field
        let xp = xp;
        for r in ci * chunk..((ci + 1) * chunk).min(rows) {
            // SAFETY: row r (d values) lies inside x (asserted above) and belongs to this
            // task only.
            let row = unsafe { std::slice::from_raw_parts_mut(xp.0.add(r * d), d) };
            scale_row(Isa::active(), row);
        }
    });
}

#[cfg(test)]
mod tests {
    //! Against float64 loops, outputs poisoned with NaN, in 1- and 3-thread pools.
    use super::*;
    use crate::cpu::test_util::*;

    #[test]
    fn layer_norm_matches_naive() {
        let mut r = Rng(5);
        for pool in pools() {
            for &(rows, d, stride) in &[(1, 64, 64), (50, 768, 768), (7, 33, 50), (130, 5, 9)] {
                let x: Vec<f32> = (0..rows * stride).map(|_| r.next() * 3.0 + 0.7).collect();
                let (g, b) = (r.vec(d), r.vec(d));
                let mut y = vec![f32::NAN; rows * d + 3];
                pool.install(|| layer_norm(&x, stride, rows, d, &g, &b, 1e-5, &mut y));
                let mut want = vec![0.0f32; rows * d];
                for i in 0..rows {
                    let row = &x[i * stride..i * stride + d];
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                    let var =
                        row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                    for j in 0..d {
                        want[i * d + j] = ((row[j] as f64 - mean) / (var + 1e-5).sqrt()
                            * g[j] as f64
                            + b[j] as f64) as f32;
                    }
                }
                close(
                    &y[..rows * d],
                    &want,
                    &format!("layer_norm {rows}x{d}/{stride}"),
                );
                assert!(
                    y[rows * d..].iter().all(|v| v.is_nan()),
                    "wrote past the rows"
                );
            }
        }
    }

    #[test]
    fn l2_normalize_matches_naive() {
        let mut r = Rng(6);
        for pool in pools() {
            for &(rows, d) in &[(1, 512), (17, 32), (5, 3)] {
                let x = r.vec(rows * d);
                let mut y = x.clone();
                pool.install(|| l2_normalize(&mut y, rows, d));
                let want: Vec<f32> = x
                    .chunks(d)
                    .flat_map(|row| {
                        let n = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                        row.iter().map(move |&v| (v as f64 / n) as f32)
                    })
                    .collect();
                close(&y, &want, &format!("l2_normalize {rows}x{d}"));
            }
        }
    }
}
