//! [`SlidingClip`]: one stream's sliding X-CLIP clip — the last `num_frames` sampled
//! frames, preprocessed once on arrival into a ring, handed out in time order as one
//! `pixel_values` clip every `stride` new frames. Clips of several streams are copied
//! side by side into one batch for [`super::XClipModel::encode_pixels`].

use super::preprocess::{PreprocessWorkspace, Preprocessor, RgbFrame};
use crate::{EngineError, Result};

/// A ring of the last `frames` preprocessed frames of one stream.
#[derive(Debug, Clone)]
pub struct SlidingClip {
    per: usize,
    frames: usize,
    stride: usize,
    data: Vec<f32>,
    times: Vec<f64>,
    /// slot of the next frame, frames held, frames since the last clip
    next: usize,
    len: usize,
    since: usize,
}

impl SlidingClip {
    /// Clips of `frames` frames of `per` values each (the preprocessor's output), one
    /// every `stride` frames once full (`stride = frames`: back-to-back clips).
    pub fn new(per: usize, frames: usize, stride: usize) -> Result<SlidingClip> {
        if frames == 0 || stride == 0 || per == 0 {
            return Err(EngineError::Config(format!(
                "a sliding clip needs frames, a stride and a frame size ({frames}, {stride}, {per})"
            )));
        }
        Ok(SlidingClip {
            per,
            frames,
            stride,
            data: vec![0.0; frames * per],
            times: vec![0.0; frames],
            next: 0,
            len: 0,
            since: 0,
        })
    }

    /// Preprocess the frame at `t` seconds into the ring; `true` when a clip is due (the
    /// ring is full and `stride` frames arrived since the last clip).
    pub fn push(
        &mut self,
        pre: &Preprocessor,
        frame: RgbFrame<'_>,
        t: f64,
        ws: &mut PreprocessWorkspace,
    ) -> Result<bool> {
        let slot = self.next;
        pre.run(
            frame,
            ws,
            &mut self.data[slot * self.per..(slot + 1) * self.per],
        )?;
        self.times[slot] = t;
        self.next = (slot + 1) % self.frames;
        self.len = (self.len + 1).min(self.frames);
        self.since += 1;
        if self.len == self.frames && self.since >= self.stride {
            self.since = 0;
            return Ok(true);
        }
        Ok(false)
    }

    /// Copy the current clip, oldest frame first, into `out [frames * per]`; returns the
    /// times of its first and last frames (`None` until the ring is full).
    pub fn write_clip(&self, out: &mut [f32]) -> Option<(f64, f64)> {
        if self.len < self.frames || out.len() < self.frames * self.per {
            return None;
        }
        for i in 0..self.frames {
            let slot = (self.next + i) % self.frames;
            out[i * self.per..(i + 1) * self.per]
                .copy_from_slice(&self.data[slot * self.per..(slot + 1) * self.per]);
        }
        let last = (self.next + self.frames - 1) % self.frames;
        Some((self.times[self.next], self.times[last]))
    }

    /// Forget the frames (the stream restarted).
    pub fn clear(&mut self) {
        self.len = 0;
        self.since = 0;
        self.next = 0;
    }
}
