//! What the runtime publishes: [`RuntimeEvent`] — a [`LabelRecord`] per processed frame,
//! an [`EventRecord`] per event start/end, a [`StatusRecord`] per phase change, a periodic
//! [`StatsRecord`] per stream and an [`EndRecord`] when a stream is done — and [`TopK`],
//! the fixed-size top classes a label record carries (no allocation per frame).
//!
//! Records name classes by index; [`crate::output`] turns them into the JSON lines
//! `vigil watch` writes (the same JSON a service publishes), with label names.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::events::Event;
use crate::status::StreamPhase;

/// Most classes a [`TopK`] holds.
pub const MAX_TOP: usize = 20;

/// The best classes of one frame with their softmax scores, best first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopK {
    len: u8,
    entries: [(u32, f32); MAX_TOP],
}

impl Default for TopK {
    fn default() -> Self {
        TopK {
            len: 0,
            entries: [(0, 0.0); MAX_TOP],
        }
    }
}

impl TopK {
    /// The `k` (at most [`MAX_TOP`]) highest of `probs`, best first (ties: lower class).
    pub fn from_probs(probs: &[f32], k: usize) -> TopK {
        let k = k.min(MAX_TOP).min(probs.len());
        let mut t = TopK::default();
        for (c, &p) in probs.iter().enumerate() {
            let n = t.len as usize;
            if n == k && (k == 0 || p <= t.entries[n - 1].1) {
                continue;
            }
            // insertion into a sorted array of at most MAX_TOP
            let mut i = if n < k { n } else { n - 1 };
            while i > 0 && t.entries[i - 1].1 < p {
                t.entries[i] = t.entries[i - 1];
                i -= 1;
            }
            t.entries[i] = (c as u32, p);
            if n < k {
                t.len += 1;
            }
        }
        t
    }

    /// Build from (class, score) pairs, best first (at most [`MAX_TOP`] are kept).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (usize, f32)>) -> TopK {
        let mut t = TopK::default();
        for (c, s) in pairs.into_iter().take(MAX_TOP) {
            t.entries[t.len as usize] = (c as u32, s);
            t.len += 1;
        }
        t
    }

    /// (class, score), best first.
    pub fn iter(&self) -> impl Iterator<Item = (usize, f32)> + Clone + '_ {
        self.entries[..self.len as usize]
            .iter()
            .map(|&(c, s)| (c as usize, s))
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The best class and its score.
    pub fn best(&self) -> Option<(usize, f32)> {
        self.iter().next()
    }
}

/// Labels for one processed frame.
#[derive(Debug, Clone)]
pub struct LabelRecord {
    pub stream: Arc<str>,
    /// Index among the frames the resampler kept (gaps = drops).
    pub seq: u64,
    /// Presentation timestamp.
    pub pts_ns: u64,
    /// Wall-clock time the labels were produced.
    pub ts: SystemTime,
    /// From capture (live sources) or decode (files) to the labels.
    pub latency: Duration,
    /// Empty when the runtime runs without a model (ingest only).
    pub top: TopK,
    /// Raw logits, only for subscribers that asked for them.
    pub logits: Option<Arc<[f32]>>,
}

/// An event started or ended.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub stream: Arc<str>,
    pub event: Event,
    pub ts: SystemTime,
}

/// A stream changed phase (connected, reconnecting, failed, ended, removed).
#[derive(Debug, Clone)]
pub struct StatusRecord {
    pub stream: Arc<str>,
    /// The source, credentials masked.
    pub uri: Arc<str>,
    pub phase: StreamPhase,
    /// Why (errors, losses, ends), credentials masked.
    pub reason: Option<String>,
    pub frames: u64,
    pub dropped: u64,
    pub reconnects: u64,
    pub ts: SystemTime,
}

/// Periodic counters of one stream.
#[derive(Debug, Clone)]
pub struct StatsRecord {
    pub stream: Arc<str>,
    pub phase: StreamPhase,
    pub frames: u64,
    pub dropped: u64,
    /// Frames dropped since the previous stats record of this stream.
    pub dropped_since: u64,
    /// Frames processed per second over the last second.
    pub fps: f64,
    pub reconnects: u64,
    pub ts: SystemTime,
}

/// A stream is done (ended, failed, removed, or stopped by shutdown).
#[derive(Debug, Clone)]
pub struct EndRecord {
    pub stream: Arc<str>,
    pub phase: StreamPhase,
    pub frames: u64,
    pub dropped: u64,
    /// The error that ended it (credentials masked).
    pub error: Option<String>,
    /// It was stopped (shutdown or removal) before its input ended.
    pub stopped: bool,
    /// Its input ended early (a truncated file): why.
    pub incomplete: Option<String>,
    /// The logits of its last frame.
    pub last_logits: Option<Arc<[f32]>>,
    pub ts: SystemTime,
}

/// Everything a subscriber can receive.
#[derive(Debug, Clone)]
pub enum RuntimeEvent {
    Label(LabelRecord),
    Event(EventRecord),
    Status(StatusRecord),
    Stats(StatsRecord),
    End(EndRecord),
}

/// The kinds of [`RuntimeEvent`], for subscription filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Label,
    Event,
    Status,
    Stats,
    End,
}

impl RuntimeEvent {
    pub fn kind(&self) -> RecordKind {
        match self {
            RuntimeEvent::Label(_) => RecordKind::Label,
            RuntimeEvent::Event(_) => RecordKind::Event,
            RuntimeEvent::Status(_) => RecordKind::Status,
            RuntimeEvent::Stats(_) => RecordKind::Stats,
            RuntimeEvent::End(_) => RecordKind::End,
        }
    }

    /// The stream it is about.
    pub fn stream(&self) -> &str {
        match self {
            RuntimeEvent::Label(r) => &r.stream,
            RuntimeEvent::Event(r) => &r.stream,
            RuntimeEvent::Status(r) => &r.stream,
            RuntimeEvent::Stats(r) => &r.stream,
            RuntimeEvent::End(r) => &r.stream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_and_bounded() {
        let probs = [0.1, 0.4, 0.05, 0.3, 0.15];
        let t = TopK::from_probs(&probs, 3);
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            vec![(1, 0.4), (3, 0.3), (4, 0.15)]
        );
        assert_eq!(TopK::from_probs(&probs, 99).len(), 5);
        assert!(TopK::from_probs(&probs, 0).is_empty());
        let many: Vec<f32> = (0..600).map(|i| (i % 97) as f32).collect();
        let t = TopK::from_probs(&many, 50);
        assert_eq!(t.len(), MAX_TOP);
        let scores: Vec<f32> = t.iter().map(|(_, s)| s).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        assert_eq!(&scores[..7], &[96.0, 96.0, 96.0, 96.0, 96.0, 96.0, 95.0]);
        assert_eq!(t.best(), Some((96, 96.0)));
    }
}
