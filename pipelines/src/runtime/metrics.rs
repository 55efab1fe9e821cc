//! Runtime-wide metrics for monitoring (Prometheus and the like): [`RuntimeMetrics`] —
//! histograms of step duration, batch size and frame latency (capture or decode to
//! labels) and a count of steps — kept in atomics the worker bumps without a lock, read as
//! a [`MetricsSnapshot`] by [`super::Runtime::metrics`]. Per-stream counters are in
//! [`super::StreamInfo`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the step-duration buckets, in seconds.
pub const STEP_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds of the batch-size buckets, in streams.
pub const BATCH_SIZE: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];
/// Upper bounds of the frame-latency buckets, in seconds.
pub const LATENCY_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket histogram in atomics (one writer, any readers).
pub struct Histogram {
    bounds: &'static [f64],
    /// per bucket (not cumulative); the last is `+Inf`
    counts: Vec<AtomicU64>,
    /// sum of observations in millionths
    sum_micros: AtomicU64,
}

/// A histogram as read at one moment (Prometheus shape: cumulative buckets).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations <= bound)`, cumulative; `+Inf` is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Record one observation (no allocation, no lock).
    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v.max(0.0) * 1e6).round() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, &b) in self.bounds.iter().enumerate() {
            acc += self.counts[i].load(Ordering::Relaxed);
            buckets.push((b, acc));
        }
        let count = acc + self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count,
        }
    }
}

/// The runtime's histograms and counters.
pub struct RuntimeMetrics {
    pub step_seconds: Histogram,
    pub batch_size: Histogram,
    pub frame_latency_seconds: Histogram,
}

impl Default for RuntimeMetrics {
    fn default() -> Self {
        RuntimeMetrics {
            step_seconds: Histogram::new(STEP_SECONDS),
            batch_size: Histogram::new(BATCH_SIZE),
            frame_latency_seconds: Histogram::new(LATENCY_SECONDS),
        }
    }
}

/// [`RuntimeMetrics`] as read at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Engine steps (batches) run.
    pub steps: u64,
    pub step_seconds: HistogramSnapshot,
    pub batch_size: HistogramSnapshot,
    pub frame_latency_seconds: HistogramSnapshot,
    /// Open engine sessions.
    pub sessions: usize,
    /// Streams registered (any status).
    pub streams: usize,
}

impl RuntimeMetrics {
    pub(crate) fn snapshot(&self, sessions: usize, streams: usize) -> MetricsSnapshot {
        let step_seconds = self.step_seconds.snapshot();
        MetricsSnapshot {
            steps: step_seconds.count,
            step_seconds,
            batch_size: self.batch_size.snapshot(),
            frame_latency_seconds: self.frame_latency_seconds.snapshot(),
            sessions,
            streams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 2.0, 4.0]);
        for v in [0.5, 1.0, 1.5, 3.0, 9.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1.0, 2), (2.0, 3), (4.0, 4)]);
        assert_eq!(s.count, 5);
        assert!((s.sum - 15.0).abs() < 1e-9);
    }
}
