//! `preprocess_u8`: camera frames (RGB u8, HWC) to the model's float input.

use super::isa::simd_dispatch;
use super::tasks::for_each_chunk;
use super::Isa;

/// `u8` RGB frames (HWC) to float32 in `[0, 1]`: `out[b] = frames[b] as f32 / 255`.
pub fn preprocess_u8(frames: &[&[u8]], out: &mut [f32]) {
    preprocess_u8_on(Isa::active(), frames, out);
}

/// [`preprocess_u8`] on instruction set `isa` (clamped to the CPU).
pub fn preprocess_u8_on(isa: Isa, frames: &[&[u8]], out: &mut [f32]) {
    let Some(first) = frames.first() else { return };
    let len = first.len();
    if len == 0 {
        return;
    }
    for_each_chunk(&mut out[..frames.len() * len], len, |b, o| {
        to_unit(isa, frames[b], o);
    });
}

simd_dispatch! {
    /// One frame: bytes to floats in [0, 1] (a true division, as the oracle's input).
    fn to_unit(frame: &[u8], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(frame) {
            *o = v as f32 / 255.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{isas_under_test, pools};

    #[test]
    fn preprocess_divides_by_255_on_every_isa() {
        let frames: Vec<Vec<u8>> = (0..3)
            .map(|f| (0..1000).map(|i| ((i * 7 + f * 13) % 256) as u8).collect())
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        for isa in isas_under_test("preprocess") {
            for pool in pools() {
                let mut out = vec![f32::NAN; 3000];
                pool.install(|| preprocess_u8_on(isa, &refs, &mut out));
                for (o, v) in out.iter().zip(frames.iter().flatten()) {
                    assert_eq!(*o, *v as f32 / 255.0, "{isa}");
                }
            }
        }
    }
}
