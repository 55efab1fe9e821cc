//! Multi-head scaled dot-product attention, batched: [`attention`] computes
//! `softmax(q kᵀ · scale [+ causal mask]) v` per batch item and head, reading q, k and v
//! in place from row-strided buffers (e.g. one fused QKV projection `[B·S, 3·D]`), with
//! the [`AttentionShape`] saying how many. Work is split across the caller's rayon pool by
//! (batch item, head, block of query rows); scores live on the stack, nothing allocates.

use rayon::prelude::*;

use super::isa::simd_dispatch;
use super::mathfn::exp;
use super::tasks::{task_rows, SendPtr};
use super::Isa;

/// Longest key/value sequence [`attention`] takes (scores live on the stack). ViT-L/14
/// at 336 px has 577 tokens.
pub const MAX_KV: usize = 1024;

/// Sizes of one batched multi-head attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Independent sequences.
    pub batch: usize,
    pub heads: usize,
    /// Query rows per sequence.
    pub q_len: usize,
    /// Key/value rows per sequence (`<= MAX_KV`).
    pub kv_len: usize,
    /// Values per head; a row holds `heads * head_dim` values.
    pub head_dim: usize,
    /// Query `i` sees keys `0..=i` only (text encoders); needs `q_len <= kv_len`.
    pub causal: bool,
}

/// Rows of an activation matrix inside a larger buffer: row `r` starts at `r * stride`.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub stride: usize,
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

/// `f`-fold of `xs` in eight independent lanes (vectorizes).
#[inline(always)]
fn lane_fold(xs: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] = f(acc[l], c[l]);
        }
    }
    let mut r = f(
        f(f(acc[0], acc[4]), f(acc[1], acc[5])),
        f(f(acc[2], acc[6]), f(acc[3], acc[7])),
    );
    for &v in tail {
        r = f(r, v);
    }
    r
}

simd_dispatch! {
    /// One query row of one head: `out = softmax(q · K[..kv]ᵀ · scale) V[..kv]`.
    fn attend_row(
        q: &[f32],
        k: &[f32],
        k_stride: usize,
        v: &[f32],
        v_stride: usize,
        kv: usize,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let hd = q.len();
        let scores = &mut scores[..kv];
        for (j, s) in scores.iter_mut().enumerate() {
            *s = dot(q, &k[j * k_stride..j * k_stride + hd]) * scale;
        }
        // max, exp and sum as separate passes: each vectorizes (a running sum next to
        // the exp would keep the whole loop scalar)
        let max = lane_fold(scores, f32::NEG_INFINITY, f32::max);
        scores.iter_mut().for_each(|s| *s = exp(*s - max));
        let sum = lane_fold(scores, 0.0, |a, b| a + b);
        let inv = 1.0 / sum;
        out.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            let p = p * inv;
            for (o, &vv) in out.iter_mut().zip(&v[j * v_stride..j * v_stride + hd]) {
                *o += p * vv;
            }
        }
    }
}

/// `out[b, i, h] = Σ_j softmax_j(q[b, i, h] · k[b, j, h] · scale) v[b, j, h]` where
/// `x[b, i, h]` is the `head_dim` values of head `h` in row `b * len + i` of `x`
/// (`len` = `q_len` for q and out, `kv_len` for k and v). `out` is contiguous
/// `[batch * q_len, heads * head_dim]`. With `causal`, query `i` attends to keys `0..=i`
/// (PyTorch's additive `-inf` mask above the diagonal, without computing the masked
/// scores).
pub fn attention(
    q: Rows<'_>,
    k: Rows<'_>,
    v: Rows<'_>,
    shape: &AttentionShape,
    scale: f32,
    out: &mut [f32],
) {
    let AttentionShape {
        batch,
        heads,
        q_len,
        kv_len,
        head_dim: hd,
        causal,
    } = *shape;
    let d = heads * hd;
    assert!(
        kv_len <= MAX_KV,
        "attention over {kv_len} keys (max {MAX_KV})"
    );
    assert!(!causal || q_len <= kv_len);
    assert!(q.stride >= d && k.stride >= d && v.stride >= d && out.len() >= batch * q_len * d);
    if batch == 0 || q_len == 0 || heads == 0 {
        return;
    }
    assert!(q.data.len() >= (batch * q_len - 1) * q.stride + d);
    assert!(kv_len > 0);
    assert!(k.data.len() >= (batch * kv_len - 1) * k.stride + d);
    assert!(v.data.len() >= (batch * kv_len - 1) * v.stride + d);
    let rows = task_rows(batch * heads * q_len, 8).min(q_len);
    let blocks = q_len.div_ceil(rows);
    let op = SendPtr(out.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    let fma = Isa::active() >= Isa::Avx2; // AVX2 + FMA, unless VIGIL_CPU_ISA lowers it
    (0..batch * heads * blocks)
        .into_par_iter()
        .for_each(|task| {
            #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its field
            let op = op;
            let (bh, blk) = (task / blocks, task % blocks);
            let (b, h) = (bh / heads, bh % heads);
            let kb = &k.data[b * kv_len * k.stride + h * hd..];
            let vb = &v.data[b * kv_len * v.stride + h * hd..];
            let mut scores = [0.0f32; MAX_KV];
            for i in blk * rows..((blk + 1) * rows).min(q_len) {
                let r = b * q_len + i;
                let qi = &q.data[r * q.stride + h * hd..r * q.stride + (h + 1) * hd];
                let kv = if causal { i + 1 } else { kv_len };
                // SAFETY: row r, columns h*hd..(h+1)*hd of out lie inside out (asserted
                // above) and belong to this task only (one task per batch item, head and
                // block of query rows).
                let o = unsafe { std::slice::from_raw_parts_mut(op.0.add(r * d + h * hd), hd) };
                #[cfg(target_arch = "x86_64")]
                if fma && hd % 8 == 0 {
                    // SAFETY: AVX2 and FMA are present (Isa::active, once per call); q, k and
                    // v hold hd values per row at the strides given, kv rows each
                    // (asserted above); scores holds MAX_KV >= kv values.
                    unsafe {
                        x86::attend_row(qi, kb, k.stride, vb, v.stride, kv, scale, &mut scores, o)
                    };
                    continue;
                }
                attend_row(
                    Isa::active(),
                    qi,
                    kb,
                    k.stride,
                    vb,
                    v.stride,
                    kv,
                    scale,
                    &mut scores,
                    o,
                );
            }
        });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{exp, lane_fold};

    /// [`super::attend_row`] with explicit AVX2/FMA: four keys' dot products at a time
    /// (one horizontal reduction per four), the weighted sum of values in registers.
    ///
    /// # Safety
    /// AVX2 and FMA available; `q.len() % 8 == 0`; `k` and `v` hold `kv` rows of
    /// `q.len()` values at strides `k_stride` / `v_stride`; `scores.len() >= kv`;
    /// `out.len() == q.len()`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attend_row(
        q: &[f32],
        k: &[f32],
        k_stride: usize,
        v: &[f32],
        v_stride: usize,
        kv: usize,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let hd = q.len();
        let scores = &mut scores[..kv];
        // SAFETY: every offset below stays inside the rows the contract promises.
        unsafe {
            let (qp, kp, vp) = (q.as_ptr(), k.as_ptr(), v.as_ptr());
            let mut j = 0;
            while j + 4 <= kv {
                let mut acc = [_mm256_setzero_ps(); 4];
                for c in (0..hd).step_by(8) {
                    let qv = _mm256_loadu_ps(qp.add(c));
                    for (u, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(
                            qv,
                            _mm256_loadu_ps(kp.add((j + u) * k_stride + c)),
                            *a,
                        );
                    }
                }
                let h = _mm256_hadd_ps(
                    _mm256_hadd_ps(acc[0], acc[1]),
                    _mm256_hadd_ps(acc[2], acc[3]),
                );
                let four = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
                _mm_storeu_ps(
                    scores.as_mut_ptr().add(j),
                    _mm_mul_ps(four, _mm_set1_ps(scale)),
                );
                j += 4;
            }
            for (jj, s) in scores.iter_mut().enumerate().skip(j) {
                let mut a = _mm256_setzero_ps();
                for c in (0..hd).step_by(8) {
                    a = _mm256_fmadd_ps(
                        _mm256_loadu_ps(qp.add(c)),
                        _mm256_loadu_ps(kp.add(jj * k_stride + c)),
                        a,
                    );
                }
                let mut t = [0.0f32; 8];
                _mm256_storeu_ps(t.as_mut_ptr(), a);
                *s = (((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]))) * scale;
            }
            let max = lane_fold(scores, f32::NEG_INFINITY, f32::max);
            scores.iter_mut().for_each(|s| *s = exp(*s - max));
            let inv = 1.0 / lane_fold(scores, 0.0, |a, b| a + b);
            // out = Σ_j p_j v_j, 64 columns (8 registers) at a time
            for c0 in (0..hd).step_by(64) {
                let w = (hd - c0).min(64) / 8;
                let mut acc = [_mm256_setzero_ps(); 8];
                for (jj, &p) in scores.iter().enumerate() {
                    let pv = _mm256_set1_ps(p * inv);
                    let row = vp.add(jj * v_stride + c0);
                    for (u, a) in acc.iter_mut().enumerate().take(w) {
                        *a = _mm256_fmadd_ps(pv, _mm256_loadu_ps(row.add(8 * u)), *a);
                    }
                }
                for (u, a) in acc.iter().enumerate().take(w) {
                    _mm256_storeu_ps(out.as_mut_ptr().add(c0 + 8 * u), *a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a float64 loop over every score, outputs poisoned with NaN, in 1- and
    //! 3-thread pools; q, k and v read from one fused QKV buffer as the encoders do.
    use super::*;
    use crate::cpu::test_util::*;

    #[test]
    fn attention_matches_naive() {
        let mut r = Rng(9);
        for pool in pools() {
            for &(batch, heads, q_len, kv_len, hd, causal) in &[
                (2, 12, 50, 50, 64, false),
                (3, 4, 9, 9, 16, true),
                (2, 4, 5, 49, 8, false),
                (1, 1, 1, 1, 3, false),
                (4, 2, 8, 8, 13, true),
            ] {
                let d = heads * hd;
                let (qs, ks) = (3 * d + 1, 2 * d + 5);
                let qbuf: Vec<f32> = (0..batch * q_len * qs).map(|_| r.next() * 2.0).collect();
                let kvbuf: Vec<f32> = (0..batch * kv_len * ks).map(|_| r.next() * 2.0).collect();
                let shape = AttentionShape {
                    batch,
                    heads,
                    q_len,
                    kv_len,
                    head_dim: hd,
                    causal,
                };
                let scale = (hd as f32).powf(-0.5);
                let mut out = vec![f32::NAN; batch * q_len * d];
                pool.install(|| {
                    attention(
                        Rows {
                            data: &qbuf[1..],
                            stride: qs,
                        },
                        Rows {
                            data: &kvbuf,
                            stride: ks,
                        },
                        Rows {
                            data: &kvbuf[d + 3..],
                            stride: ks,
                        },
                        &shape,
                        scale,
                        &mut out,
                    )
                });
                let mut want = vec![0.0f32; out.len()];
                for b in 0..batch {
                    for h in 0..heads {
                        for i in 0..q_len {
                            let n = if causal { i + 1 } else { kv_len };
                            let qrow = &qbuf[1 + (b * q_len + i) * qs + h * hd..][..hd];
                            let s: Vec<f64> = (0..n)
                                .map(|j| {
                                    let krow = &kvbuf[(b * kv_len + j) * ks + h * hd..][..hd];
                                    qrow.iter()
                                        .zip(krow)
                                        .map(|(&a, &c)| a as f64 * c as f64)
                                        .sum::<f64>()
                                        * scale as f64
                                })
                                .collect();
                            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                            let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                            let z: f64 = e.iter().sum();
                            for c in 0..hd {
                                let acc: f64 = (0..n)
                                    .map(|j| {
                                        e[j] / z
                                            * kvbuf[d + 3 + (b * kv_len + j) * ks + h * hd + c]
                                                as f64
                                    })
                                    .sum();
                                want[(b * q_len + i) * d + h * hd + c] = acc as f32;
                            }
                        }
                    }
                }
                close(&out, &want, &format!("attention {shape:?}"));
            }
        }
    }
}
