//! [`temporal_causal`]: the causal temporal depthwise convolution over each stream's
//! ring buffer of past inputs, read and updated where it lives in the slot pool, in one
//! pass: each pixel's output is computed from the ring and the current frame, and the
//! current frame is written over the oldest ring entry right after it was read.

use super::isa::vector_dispatch;
use super::simd::{activate, vectorizes, with_act, F32Vec};
use super::tasks::{for_each_chunk, task_rows, SendPtr};
use super::tile::{load_cols, store_cols};
use super::Isa;
use crate::Activation;

/// Longest temporal kernel (frames) the kernel takes.
pub const MAX_KT: usize = 8;

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
/// `slots` must be pairwise distinct (the engine guarantees it); `2 <= kt <= MAX_KT`.
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
    temporal_causal_on(
        Isa::active(),
        cur,
        p,
        c,
        kt,
        w,
        bias,
        act,
        slots,
        t,
        state,
        y,
    );
}

/// [`temporal_causal`] on instruction set `isa` (clamped to the CPU).
#[allow(clippy::too_many_arguments)]
pub fn temporal_causal_on(
    isa: Isa,
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
    assert!(
        (2..=MAX_KT).contains(&kt),
        "temporal_causal takes 2 <= kt <= {MAX_KT}, not {kt}"
    );
    let frame = p * c;
    let slot_len = (kt - 1) * frame;
    let batch = slots.len();
    assert!(t.len() >= batch && cur.len() >= batch * frame && y.len() >= batch * frame);
    assert!(w.len() >= kt * c && bias.len() >= c);
    if frame == 0 {
        return;
    }
    let chunk = task_rows(p, 16) * c;
    for (b, (&slot, &tb)) in slots.iter().zip(t).enumerate() {
        let ring = &mut state[slot * slot_len..(slot + 1) * slot_len];
        let cur_b = &cur[b * frame..(b + 1) * frame];
        let head = (tb % (kt as u64 - 1)) as usize;
        let ring = SendPtr(ring.as_mut_ptr());
        for_each_chunk(&mut y[b * frame..(b + 1) * frame], chunk, |ci, ych| {
            // SAFETY: the ring holds kt - 1 frames of `frame` values (sliced above);
            // this task alone touches elements ci*chunk.. ci*chunk + ych.len() of each.
            unsafe {
                temporal_span(
                    isa,
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
                )
            };
        });
    }
}

/// Pixels computed together: their accumulators stay in registers while the frames go by.
const GROUP: usize = 4;

vector_dispatch! {
    /// Elements `off..off + ych.len()` (whole pixels) of one stream's step.
    ///
    /// # Safety
    /// `ring` points at `kt - 1` frames of `frame` values, whose elements
    /// `off..off + ych.len()` no other thread touches meanwhile; `cur` holds a frame.
    unsafe fn temporal_span<V>(ring: SendPtr, cur: &[f32], frame: usize, c: usize, kt: usize, head: usize, w: &[f32], bias: &[f32], act: Activation, off: usize, ych: &mut [f32]) {
        let mut s = Span {
            frames: [std::ptr::null_mut(); MAX_KT],
            cur: cur[off..].as_ptr(),
            y: ych.as_mut_ptr(),
            kt,
            c,
            cb: 0,
            nc: 0,
            w: w.as_ptr(),
            bias: bias.as_ptr(),
        };
        // frame j (oldest first) of the window: ring position (head + j) % (kt - 1)
        for (j, f) in s.frames.iter_mut().enumerate().take(kt - 1) {
            *f = ring.0.wrapping_add(((head + j) % (kt - 1)) * frame + off);
        }
        // SAFETY: the span's pixels are this call's (contract); w and bias hold kt * c and
        // c values (asserted by the caller).
        unsafe { with_act!(act, span_blocks, [V], (&mut s, ych.len() / c)) };
        if !vectorizes(act) {
            act.apply_slice(ych);
        }
    }
}

/// Every pixel group (four pixels, then single ones) and channel block of the span,
/// with activation code `A`.
///
/// # Safety
/// Inside code compiled for `V`; `s` describes `npx` pixels of this call's span.
#[inline(always)]
unsafe fn span_blocks<V: F32Vec, const A: u8>(s: &mut Span, npx: usize) {
    let half = <V::Half as F32Vec>::LANES;
    let mut px = 0;
    while px < npx {
        let full = px + GROUP <= npx;
        s.cb = 0;
        while s.cb < s.c {
            s.nc = (s.c - s.cb).min(V::LANES);
            // SAFETY: pixels px..px+GROUP (or px alone), channels cb..cb+nc are inside
            // the span.
            unsafe {
                match (s.nc <= half && V::LANES > half, full) {
                    (true, true) => pixels::<V::Half, GROUP, A>(s, px),
                    (true, false) => pixels::<V::Half, 1, A>(s, px),
                    (false, true) => pixels::<V, GROUP, A>(s, px),
                    (false, false) => pixels::<V, 1, A>(s, px),
                }
            }
            s.cb += V::LANES;
        }
        px += if full { GROUP } else { 1 };
    }
}

/// One span of one stream's temporal step: where its frames, weights and outputs are.
struct Span {
    /// the window's past frames, oldest first, at the span's first element
    frames: [*mut f32; MAX_KT],
    cur: *const f32,
    y: *mut f32,
    kt: usize,
    c: usize,
    /// first channel and channels of the block in progress
    cb: usize,
    nc: usize,
    w: *const f32,
    bias: *const f32,
}

/// Pixels `px..px + G`, channels `cb..cb + nc`: outputs, then the current frame written
/// over the oldest.
///
/// # Safety
/// Inside code compiled for `V`; those pixels and channels are inside the span.
#[inline(always)]
unsafe fn pixels<V: F32Vec, const G: usize, const A: u8>(s: &Span, px: usize) {
    let nc = s.nc;
    // SAFETY: every offset is pixel (px + g) < span pixels, channel < cb + nc <= c.
    unsafe {
        let mut acc = [load_cols::<V>(s.bias.add(s.cb), nc); G];
        for j in 0..s.kt - 1 {
            let wj = load_cols::<V>(s.w.add(j * s.c + s.cb), nc);
            for (g, a) in acc.iter_mut().enumerate() {
                let x = load_cols::<V>(s.frames[j].add((px + g) * s.c + s.cb), nc);
                *a = x.mul_add(wj, *a);
            }
        }
        let wl = load_cols::<V>(s.w.add((s.kt - 1) * s.c + s.cb), nc);
        for (g, a) in acc.iter().enumerate() {
            let at = (px + g) * s.c + s.cb;
            let x = load_cols::<V>(s.cur.add(at), nc);
            store_cols(activate::<V, A>(x.mul_add(wl, *a)), s.y.add(at), nc);
            // the oldest frame (j = 0) was read above: the current one replaces it
            store_cols(x, s.frames[0].add(at), nc);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a naive history kept per stream, outputs poisoned with NaN.
    use super::*;
    use crate::cpu::test_util::*;

    /// Seven steps of three streams in scattered slots, against a naive per-stream
    /// history, for kernel lengths 2, 3 and 5 and channel counts that leave partial
    /// vector blocks, on every ISA, in 1- and 3-thread pools.
    #[test]
    fn temporal_causal_carries_the_ring_per_slot_on_every_isa() {
        let mut r = Rng(3);
        for isa in isas_under_test("temporal conv") {
            for &(p, c, kt) in &[
                (10, 6, 4),
                (37, 24, 3),
                (9, 184, 5),
                (5, 37, 2),
                (121, 16, 3),
            ] {
                let (w, bias) = (r.vec(kt * c), r.vec(c));
                for pool in pools() {
                    check(isa, &pool, &mut r, p, c, kt, &w, &bias);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        isa: Isa,
        pool: &rayon::ThreadPool,
        r: &mut Rng,
        p: usize,
        c: usize,
        kt: usize,
        w: &[f32],
        bias: &[f32],
    ) {
        let slots_n = 5;
        let mut state = vec![0.0; slots_n * (kt - 1) * p * c];
        // three streams in slots 4, 0, 2; history kept naively
        let slots = [4usize, 0, 2];
        let mut history: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 3];
        for step in 0..7u64 {
            let cur = r.vec(3 * p * c);
            let t = [step, step, step];
            let mut y = vec![f32::NAN; 3 * p * c];
            let act = ACTS[step as usize % ACTS.len()];
            pool.install(|| {
                temporal_causal_on(
                    isa, &cur, p, c, kt, w, bias, act, &slots, &t, &mut state, &mut y,
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
                    want[e] = act.apply(a);
                }
                close(
                    &y[b * p * c..(b + 1) * p * c],
                    &want,
                    &format!("{isa} temporal p{p} c{c} kt{kt} step {step} stream {b}"),
                );
            }
        }
        let slot_len = (kt - 1) * p * c;
        for unused in [1, 3] {
            assert!(
                state[unused * slot_len..(unused + 1) * slot_len]
                    .iter()
                    .all(|&v| v == 0.0),
                "unused slot {unused} untouched"
            );
        }
    }
}
