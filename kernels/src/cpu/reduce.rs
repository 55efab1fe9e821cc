//! Per-stream reductions and gates: [`spatial_mean`], [`cumulative_pool`] (the causal
//! global pool carried in the slot pool) and [`channel_gate`] (squeeze-excitation).

use rayon::prelude::*;

use super::tasks::task_rows;

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
    use super::*;
    use crate::cpu::test_util::*;

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
