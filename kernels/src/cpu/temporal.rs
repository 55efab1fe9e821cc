//! [`temporal_causal`]: the causal temporal depthwise convolution over each stream's
//! ring buffer of past inputs, read and updated where it lives in the slot pool.

use rayon::prelude::*;

use super::isa::simd_dispatch;
use super::tasks::task_rows;
use crate::Activation;

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
                temporal_chunk(super::Isa::active(),
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

#[cfg(test)]
mod tests {
    //! Against a naive history kept per stream, outputs poisoned with NaN.
    use super::*;
    use crate::cpu::test_util::*;

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
}
