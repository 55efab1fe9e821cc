//! Per-stream reductions and gates: [`spatial_mean`], [`cumulative_pool`] (the causal
//! global pool carried in the slot pool) and [`channel_gate`] (squeeze-excitation).

use super::isa::simd_dispatch;
use super::tasks::{for_each_chunk, task_rows};
use super::Isa;

/// Per-stream spatial reduction: `out[b, ch] = scale[ch] * sum_p x[b, p, ch]`
/// (`scale = 1 / P` for a mean; the head's pool reads its own constant from the graph).
pub fn spatial_mean(x: &[f32], batch: usize, p: usize, c: usize, scale: &[f32], out: &mut [f32]) {
    spatial_mean_on(Isa::active(), x, batch, p, c, scale, out);
}

/// [`spatial_mean`] on instruction set `isa` (clamped to the CPU).
pub fn spatial_mean_on(
    isa: Isa,
    x: &[f32],
    batch: usize,
    p: usize,
    c: usize,
    scale: &[f32],
    out: &mut [f32],
) {
    if c == 0 {
        return;
    }
    for_each_chunk(&mut out[..batch * c], c, |b, o| {
        channel_sums(isa, &x[b * p * c..(b + 1) * p * c], &scale[..c], o);
    });
}

simd_dispatch! {
    /// One stream: `o = scale * sum over pixels of x` (pixels of `o.len()` channels).
    fn channel_sums(x: &[f32], scale: &[f32], o: &mut [f32]) {
        o.fill(0.0);
        for px in x.chunks_exact(o.len()) {
            for (a, &v) in o.iter_mut().zip(px) {
                *a += v;
            }
        }
        for (a, &s) in o.iter_mut().zip(scale) {
            *a *= s;
        }
    }
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
    channel_gate_on(Isa::active(), x, batch, p, c, gate, scale);
}

/// [`channel_gate`] on instruction set `isa` (clamped to the CPU).
pub fn channel_gate_on(
    isa: Isa,
    x: &mut [f32],
    batch: usize,
    p: usize,
    c: usize,
    gate: &[f32],
    scale: f32,
) {
    if c == 0 || p == 0 {
        return;
    }
    let chunk = task_rows(p, 16) * c;
    let frame = p * c;
    for_each_chunk(&mut x[..batch * frame], chunk, |i, xs| {
        // a chunk may straddle two streams: split it at the frame boundary
        let mut start = i * chunk;
        let mut xs = xs;
        while !xs.is_empty() {
            let b = start / frame;
            let n = xs.len().min((b + 1) * frame - start);
            let (now, rest) = xs.split_at_mut(n);
            scale_pixels(isa, now, &gate[b * c..(b + 1) * c], scale);
            start += n;
            xs = rest;
        }
    });
}

simd_dispatch! {
    /// Whole pixels of one stream: `x[px, ch] *= gate[ch] * scale`.
    fn scale_pixels(x: &mut [f32], gate: &[f32], scale: f32) {
        for px in x.chunks_exact_mut(gate.len()) {
            for (v, &g) in px.iter_mut().zip(gate) {
                *v *= g * scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::*;

    /// Means, the carried pool and the gate, on every ISA; 37 channels leave partial
    /// vectors, and the gate's chunks straddle streams.
    #[test]
    fn pools_and_gate_match_their_contracts_on_every_isa() {
        let mut r = Rng(9);
        for isa in isas_under_test("pools and gate") {
            for pool in pools() {
                for &(batch, p, c) in &[(3, 7, 5), (2, 121, 37), (1, 36, 480)] {
                    let x = r.vec(batch * p * c);
                    let scale: Vec<f32> = (0..c).map(|i| 0.1 * (i + 1) as f32).collect();
                    let mut m = vec![f32::NAN; batch * c];
                    pool.install(|| spatial_mean_on(isa, &x, batch, p, c, &scale, &mut m));
                    for b in 0..batch {
                        for ch in 0..c {
                            let s: f32 = (0..p).map(|i| x[(b * p + i) * c + ch]).sum();
                            let want = s * scale[ch];
                            assert!((m[b * c + ch] - want).abs() < 1e-5 * (1.0 + want.abs()));
                        }
                    }
                    let mut sums = vec![0.0; 4 * c];
                    let mut out = vec![f32::NAN; batch * c];
                    let slots = &[3, 1, 0][..batch];
                    cumulative_pool(&m, c, slots, &[0, 0, 0], &mut sums, &mut out);
                    cumulative_pool(&m, c, slots, &[1, 1, 1], &mut sums, &mut out);
                    close(&out, &m, "cumulative mean of two equal frames");
                    assert!(
                        sums[2 * c..3 * c].iter().all(|&v| v == 0.0),
                        "unused slot untouched"
                    );
                    let gate = r.vec(batch * c);
                    let mut g = x.clone();
                    pool.install(|| channel_gate_on(isa, &mut g, batch, p, c, &gate, 0.5));
                    for (i, v) in g.iter().enumerate() {
                        let (b, ch) = (i / (p * c), i % c);
                        assert!((v - x[i] * gate[b * c + ch] * 0.5).abs() < 1e-6);
                    }
                }
            }
        }
    }
}
