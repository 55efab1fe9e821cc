//! `preprocess_u8`: camera frames (RGB u8, HWC) to the model's float input.

use rayon::prelude::*;

/// `u8` RGB frames (HWC) to float32 in `[0, 1]`: `out[b] = frames[b] as f32 / 255`.
pub fn preprocess_u8(frames: &[&[u8]], out: &mut [f32]) {
    let Some(first) = frames.first() else { return };
    let len = first.len();
    out[..frames.len() * len]
        .par_chunks_mut(len)
        .zip(frames.par_iter())
        .for_each(|(o, f)| {
            for (o, &v) in o.iter_mut().zip(f.iter()) {
                *o = v as f32 / 255.0;
            }
        });
}
