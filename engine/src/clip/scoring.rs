//! Zero-shot scoring over a window of frames, CLIP4Clip's parameter-free "mean pooling":
//! per stream an [`EmbeddingWindow`] (a ring of recent unit frame embeddings with their
//! times), its mean embedding re-normalised, scored by cosine × `logit_scale` against a
//! [`PromptSet`] and turned into probabilities by a softmax over every prompt — the user's
//! and, optionally, "background" prompts that compete for probability but are not
//! reported as labels. [`ZeroShotStream`] puts the two together for one stream without
//! allocating per frame. [`scaled_cosines`] is also CLIP's `logits_per_image`.

use vigil_kernels::cpu::mathfn::exp;

use crate::{EngineError, Result};

/// `out[i, j] = scale · a[i] · b[j]` for `a [n, d]`, `b [p, d]` (`out [n, p]`).
pub fn scaled_cosines(a: &[f32], b: &[f32], d: usize, scale: f32, out: &mut [f32]) {
    let p = b.len() / d.max(1);
    for (ai, row) in a.chunks_exact(d).zip(out.chunks_exact_mut(p.max(1))) {
        for (bj, o) in b.chunks_exact(d).zip(row.iter_mut()) {
            let dot: f32 = ai.iter().zip(bj).map(|(x, y)| x * y).sum();
            *o = dot * scale;
        }
    }
}

/// In-place softmax of one row of logits (max-subtracted).
pub fn softmax(xs: &mut [f32]) {
    let max = xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in xs.iter_mut() {
        *x = exp(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    xs.iter_mut().for_each(|x| *x *= inv);
}

/// Labels then background prompts, trimmed; an error if there is no label or a prompt is
/// empty.
pub fn prompt_texts<S: AsRef<str>>(labels: &[S], background: &[S]) -> Result<Vec<String>> {
    if labels.is_empty() {
        return Err(EngineError::Config(
            "give at least one prompt to score against".into(),
        ));
    }
    let texts: Vec<String> = labels
        .iter()
        .chain(background)
        .map(|t| t.as_ref().trim().to_string())
        .collect();
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(EngineError::Config(format!(
            "prompt {} is empty — give each prompt some text",
            i + 1
        )));
    }
    Ok(texts)
}

/// The prompts a stream is scored against: the user's labels first, then the background
/// prompts, each with its unit text embedding.
#[derive(Debug, Clone)]
pub struct PromptSet {
    /// Prompt texts, labels then background.
    pub texts: Vec<String>,
    /// How many of `texts` (from the front) are labels; the rest are background.
    pub labels: usize,
    /// `[texts.len(), dim]` unit embeddings.
    pub embeds: Vec<f32>,
    pub dim: usize,
    /// `exp(logit_scale)` of the model that embedded them.
    pub logit_scale: f32,
}

impl PromptSet {
    /// From texts and their embeddings (`labels` of them are labels, the rest background).
    pub fn new(
        texts: Vec<String>,
        labels: usize,
        embeds: Vec<f32>,
        dim: usize,
        logit_scale: f32,
    ) -> Result<PromptSet> {
        if labels == 0 || labels > texts.len() || embeds.len() != texts.len() * dim {
            return Err(EngineError::Config(format!(
                "a prompt set needs at least one label prompt ({} texts, {labels} labels, {} values of {dim})",
                texts.len(),
                embeds.len()
            )));
        }
        Ok(PromptSet {
            texts,
            labels,
            embeds,
            dim,
            logit_scale,
        })
    }

    /// Number of prompts, labels and background.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Score one unit (or any) video embedding: `logits[j] = scale · cos(e, prompt j)`,
    /// `probs` their softmax over all prompts (both `[len()]`).
    pub fn score(&self, embedding: &[f32], logits: &mut [f32], probs: &mut [f32]) {
        let n = norm(embedding);
        let inv = if n > 0.0 { 1.0 / n } else { 0.0 };
        scaled_cosines(
            embedding,
            &self.embeds,
            self.dim,
            self.logit_scale * inv,
            logits,
        );
        probs[..self.len()].copy_from_slice(&logits[..self.len()]);
        softmax(&mut probs[..self.len()]);
    }
}

fn norm(x: &[f32]) -> f32 {
    x.iter().map(|v| v * v).sum::<f32>().sqrt()
}

/// The frames one window mean covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSpan {
    /// Time of the oldest and newest frame in it (the caller's clock, seconds).
    pub start: f64,
    pub end: f64,
    pub frames: usize,
}

/// A stream's recent frame embeddings: a fixed-capacity ring, entries older than `window`
/// seconds before the newest one dropped. Allocates only when built.
#[derive(Debug, Clone)]
pub struct EmbeddingWindow {
    dim: usize,
    window: f64,
    data: Vec<f32>,
    times: Vec<f64>,
    /// index of the oldest entry, and how many there are
    head: usize,
    len: usize,
}

impl EmbeddingWindow {
    /// Room for `capacity` frames of `dim` values covering `window` seconds.
    pub fn new(dim: usize, capacity: usize, window: f64) -> EmbeddingWindow {
        let capacity = capacity.max(1);
        EmbeddingWindow {
            dim,
            window,
            data: vec![0.0; capacity * dim],
            times: vec![0.0; capacity],
            head: 0,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.times.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget every frame (a stream restarted).
    pub fn clear(&mut self) {
        self.len = 0;
        self.head = 0;
    }

    /// Add the embedding of the frame at time `t` (seconds, non-decreasing), evicting the
    /// oldest when full and every frame older than `t - window`.
    pub fn push(&mut self, t: f64, embedding: &[f32]) {
        let cap = self.capacity();
        if self.len == cap {
            self.head = (self.head + 1) % cap;
            self.len -= 1;
        }
        let slot = (self.head + self.len) % cap;
        self.data[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(&embedding[..self.dim]);
        self.times[slot] = t;
        self.len += 1;
        while self.len > 1 && self.times[self.head] < t - self.window {
            self.head = (self.head + 1) % cap;
            self.len -= 1;
        }
    }

    /// The mean of the window's embeddings into `out` (not re-normalised; [`PromptSet::score`]
    /// scores by cosine), or `None` when empty.
    pub fn mean(&self, out: &mut [f32]) -> Option<WindowSpan> {
        if self.len == 0 {
            return None;
        }
        let cap = self.capacity();
        let out = &mut out[..self.dim];
        out.fill(0.0);
        for i in 0..self.len {
            let s = (self.head + i) % cap;
            for (o, &v) in out
                .iter_mut()
                .zip(&self.data[s * self.dim..(s + 1) * self.dim])
            {
                *o += v;
            }
        }
        let inv = 1.0 / self.len as f32;
        out.iter_mut().for_each(|o| *o *= inv);
        Some(WindowSpan {
            start: self.times[self.head],
            end: self.times[(self.head + self.len - 1) % cap],
            frames: self.len,
        })
    }
}

/// One stream's zero-shot state: its [`EmbeddingWindow`] and the buffers of a scoring.
#[derive(Debug, Clone)]
pub struct ZeroShotStream {
    window: EmbeddingWindow,
    mean: Vec<f32>,
    logits: Vec<f32>,
    probs: Vec<f32>,
}

/// Scores of one window, borrowed from the stream.
#[derive(Debug, Clone, Copy)]
pub struct WindowScores<'a> {
    pub span: WindowSpan,
    /// The window's mean embedding (what text search stores; compare by cosine).
    pub embedding: &'a [f32],
    /// `logit_scale · cos` per prompt, labels then background.
    pub logits: &'a [f32],
    /// Softmax of `logits` over every prompt; the first `PromptSet::labels` are labels.
    pub probs: &'a [f32],
}

impl ZeroShotStream {
    /// A stream scored against `prompts`, keeping `capacity` frames of at most
    /// `window` seconds (e.g. 4 s at 1 frame/s: capacity 4, or more for bursts).
    pub fn new(prompts: &PromptSet, capacity: usize, window: f64) -> ZeroShotStream {
        ZeroShotStream {
            window: EmbeddingWindow::new(prompts.dim, capacity, window),
            mean: vec![0.0; prompts.dim],
            logits: vec![0.0; prompts.len()],
            probs: vec![0.0; prompts.len()],
        }
    }

    /// Add the unit embedding of the frame at `t` seconds and score the window.
    pub fn push(
        &mut self,
        t: f64,
        embedding: &[f32],
        prompts: &PromptSet,
    ) -> Option<WindowScores<'_>> {
        if embedding.len() != prompts.dim || self.logits.len() != prompts.len() {
            return None;
        }
        self.window.push(t, embedding);
        let span = self.window.mean(&mut self.mean)?;
        prompts.score(&self.mean, &mut self.logits, &mut self.probs);
        Some(WindowScores {
            span,
            embedding: &self.mean,
            logits: &self.logits,
            probs: &self.probs,
        })
    }

    /// Forget the window (the stream restarted or jumped).
    pub fn reset(&mut self) {
        self.window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keeps_recent_frames_and_means_them() {
        let mut w = EmbeddingWindow::new(2, 3, 4.0);
        let mut m = [f32::NAN; 2];
        assert_eq!(w.mean(&mut m), None);
        w.push(0.0, &[1.0, 0.0]);
        w.push(1.0, &[0.0, 1.0]);
        let s = w.mean(&mut m).unwrap();
        assert_eq!((s.start, s.end, s.frames), (0.0, 1.0, 2));
        assert_eq!(m, [0.5, 0.5]);
        // capacity 3: the oldest goes when a fourth arrives
        w.push(2.0, &[1.0, 1.0]);
        w.push(3.0, &[3.0, 3.0]);
        let s = w.mean(&mut m).unwrap();
        assert_eq!((s.start, s.frames), (1.0, 3));
        assert!((m[0] - 4.0 / 3.0).abs() < 1e-6 && (m[1] - 5.0 / 3.0).abs() < 1e-6);
        // older than 4 s before the newest: dropped
        w.push(7.5, &[2.0, 0.0]);
        let s = w.mean(&mut m).unwrap();
        assert_eq!((s.start, s.end, s.frames), (7.5, 7.5, 1));
        assert_eq!(m, [2.0, 0.0]);
        w.clear();
        assert!(w.is_empty());
    }

    #[test]
    fn prompt_scores_are_scaled_cosines_and_a_softmax() {
        let set = PromptSet::new(
            vec!["a".into(), "b".into(), "background".into()],
            2,
            vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8],
            2,
            100.0,
        )
        .unwrap();
        let (mut logits, mut probs) = ([0.0; 3], [0.0; 3]);
        // not unit length: scored by cosine
        set.score(&[2.0, 0.0], &mut logits, &mut probs);
        for (l, want) in logits.iter().zip([100.0, 0.0, 60.0]) {
            assert!((l - want).abs() < 1e-4, "{logits:?}");
        }
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(probs[0] > 0.99 && probs[1] < 1e-20);
        assert!(PromptSet::new(vec!["x".into()], 0, vec![1.0], 1, 1.0).is_err());
        // a stream of frames: the window mean drifts from "a" to "b"
        let mut s = ZeroShotStream::new(&set, 4, 4.0);
        let first = s.push(0.0, &[1.0, 0.0], &set).unwrap().probs[0];
        assert!(first > 0.99);
        for t in 1..=3 {
            s.push(t as f64, &[0.0, 1.0], &set);
        }
        let w = s.push(4.0, &[0.0, 1.0], &set).unwrap();
        assert_eq!(w.span.frames, 4);
        assert!(w.probs[1] > 0.99, "{:?}", w.probs);
        assert!(
            s.push(5.0, &[1.0], &set).is_none(),
            "wrong width is refused"
        );
    }
}
