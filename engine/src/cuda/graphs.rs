//! CUDA graphs per batch bucket: [`GraphCache`] holds the buckets and the graph captured
//! for each (on its first use), [`capture`] records one step into a graph, and
//! [`geometric_buckets`] is the default bucket ladder.
//!
//! A batch of `b` streams runs in the smallest bucket `n >= b`; rows `b..n` are padding
//! rows on scratch slots (every kernel is row-independent, so they never touch real
//! rows). A graph holds the addresses of the workspace and the slot pool: when either
//! moves, the cache is cleared and graphs are re-captured on demand.

use std::collections::HashMap;
use std::sync::Arc;

use vigil_kernels::cuda::cudarc::driver::{sys, CudaGraph, CudaStream};
use vigil_kernels::cuda::KernelError;

use super::forward::StepNodes;

/// Graph buckets for batches up to `max_batch`: 1, 2, 3, then four per octave — `m x 2^e`
/// for `m` in 4, 5, 6, 7 (4, 5, 6, 7, 8, 10, 12, 14, 16, 20, …, 3584, 4096) — and
/// `max_batch` itself.
///
/// Why four per octave (a ratio of about 2^(1/4) = 1.19 between buckets): the padding
/// rows of a batch cost compute (at most a quarter of the batch: `4 x 2^e + 1` streams
/// pad to `5 x 2^e`; about a tenth on average) and scratch state (the largest gap below
/// a bucket, `bucket / 8` slots: 511 scratch slots for 4096, ~0.7 GB of fp16 A0 state
/// beside the 5.4 GB the 4096 streams carry), while every bucket is one more graph to
/// capture (about 45 up to 4096, each captured the first time a batch needs it). Powers
/// of two would waste up to half a step and need `bucket / 2` scratch slots; finer
/// ladders buy little and capture more graphs. From 8 up every bucket is a multiple of
/// 2 or 4 streams, at 32 and beyond a multiple of 8.
pub fn geometric_buckets(max_batch: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [1, 2, 3].into_iter().filter(|&b| b <= max_batch).collect();
    let mut scale = 1usize;
    'ladder: loop {
        for m in 4usize..8 {
            let Some(b) = m.checked_mul(scale) else {
                break 'ladder;
            };
            if b > max_batch {
                break 'ladder;
            }
            v.push(b);
        }
        scale = match scale.checked_mul(2) {
            Some(s) => s,
            None => break,
        };
    }
    if max_batch > 0 && v.last() != Some(&max_batch) {
        v.push(max_batch);
    }
    v
}

/// A `CudaGraph` (and what it holds) that may move between threads.
struct SendGraph(CudaGraph, StepNodes);
// SAFETY: a CUDA graph exec may be used from any thread as long as calls on it are
// serialized; it is only reached through `&mut` of the backend that owns it, so they are.
unsafe impl Send for SendGraph {}

/// The buckets and the graphs captured so far (see the module docs).
pub(super) struct GraphCache {
    /// sorted, distinct, > 0; empty = graphs disabled
    buckets: Vec<usize>,
    graphs: HashMap<usize, SendGraph>,
}

impl GraphCache {
    pub(super) fn new(buckets: &[usize]) -> GraphCache {
        let mut buckets: Vec<usize> = buckets.iter().copied().filter(|&b| b > 0).collect();
        buckets.sort_unstable();
        buckets.dedup();
        GraphCache {
            buckets,
            graphs: HashMap::new(),
        }
    }

    /// The bucket a batch of `b` streams runs in; `None` (run eagerly) above the largest.
    pub(super) fn bucket(&self, b: usize) -> Option<usize> {
        self.buckets.iter().copied().find(|&n| n >= b)
    }

    /// The most padding rows any bucket can have (0 without graphs).
    pub(super) fn max_padding(&self) -> usize {
        self.buckets
            .iter()
            .map(|&b| self.padding(b))
            .max()
            .unwrap_or(0)
    }

    /// The most padding rows a batch in bucket `n` can have: the gap to the bucket below.
    pub(super) fn padding(&self, n: usize) -> usize {
        let below = self.buckets.iter().copied().filter(|&b| b < n).max();
        n - below.unwrap_or(0) - 1
    }

    /// The graph captured for bucket `n` and its nodes, if any.
    pub(super) fn get(&self, n: usize) -> Option<(&CudaGraph, StepNodes)> {
        self.graphs.get(&n).map(|g| (&g.0, g.1))
    }

    pub(super) fn insert(&mut self, n: usize, graph: CudaGraph, nodes: StepNodes) {
        self.graphs.insert(n, SendGraph(graph, nodes));
    }

    /// Drop every graph (device buffers they reference moved).
    pub(super) fn clear(&mut self) {
        self.graphs.clear();
    }
}

/// Capture what `enqueue` enqueues on `stream` into an instantiated graph, uploaded to
/// the device (nothing runs during capture). The capture is always ended, even when
/// `enqueue` fails, so the stream stays usable.
pub(super) fn capture<R>(
    stream: &Arc<CudaStream>,
    enqueue: impl FnOnce() -> Result<R, KernelError>,
) -> Result<(CudaGraph, R), KernelError> {
    stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
    let enqueued = enqueue();
    let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0));
    let r = enqueued?;
    let graph = graph?.ok_or_else(|| KernelError::Shape {
        op: "graph capture",
        detail: "stream capture produced no graph".into(),
    })?;
    graph.upload()?;
    Ok((graph, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_four_per_octave_up_to_the_max() {
        let b = geometric_buckets(4096);
        assert_eq!(
            &b[..20],
            &[1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64]
        );
        assert_eq!(b.last(), Some(&4096));
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        assert!(b.len() < 48, "{} graphs", b.len());
        // a bucket is at most 1.25x the batch just above the bucket below it
        for w in b.windows(2) {
            assert!(w[1] as f64 <= 1.25 * (w[0] + 1) as f64 + 1.0, "{w:?}");
        }
        assert_eq!(geometric_buckets(100).last(), Some(&100));
        assert_eq!(geometric_buckets(1), vec![1]);
        assert!(geometric_buckets(0).is_empty());
    }

    #[test]
    fn scratch_padding_covers_the_largest_gap() {
        let c = GraphCache::new(&geometric_buckets(4096));
        assert_eq!(c.bucket(1), Some(1));
        assert_eq!(c.bucket(9), Some(10));
        assert_eq!(c.bucket(3585), Some(4096));
        assert_eq!(c.bucket(4097), None);
        assert_eq!(c.padding(1), 0);
        assert_eq!(c.padding(10), 1);
        assert_eq!(c.padding(4096), 511);
        assert_eq!(c.max_padding(), 511);
        for b in 1..=4096 {
            let n = c.bucket(b).expect("bucket");
            assert!(n - b <= c.padding(n), "batch {b} in bucket {n}");
        }
        let none = GraphCache::new(&[]);
        assert_eq!(none.bucket(1), None);
    }
}
