//! A stream's life cycle as its ingest thread reports it: [`StreamPhase`] (connecting,
//! connected, reconnecting, ended, failed, removed) and [`StreamStatus`], the atomics
//! shared by the ingest thread, its GStreamer callbacks and the runtime.
//!
//! Every phase change is also queued as a [`PhaseChange`] with its reason, so the runtime
//! reports each transition exactly once even when a camera drops and comes back between
//! two of its passes. The queue is bounded (oldest change dropped first); the current phase
//! is always exact.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;

use crate::PipelineError;

/// Where a stream is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StreamPhase {
    /// Opening the source for the first time.
    Connecting = 0,
    /// Frames are flowing (or the pipeline is up and about to deliver them).
    Connected = 1,
    /// The source was lost (or never came up) and is being retried.
    Reconnecting = 2,
    /// The source ended (end of file, or the runtime stopped it).
    Ended = 3,
    /// The source failed for good; the error says why.
    Failed = 4,
    /// Removed from the runtime.
    Removed = 5,
}

impl StreamPhase {
    /// The name used in JSON output and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamPhase::Connecting => "connecting",
            StreamPhase::Connected => "connected",
            StreamPhase::Reconnecting => "reconnecting",
            StreamPhase::Ended => "ended",
            StreamPhase::Failed => "failed",
            StreamPhase::Removed => "removed",
        }
    }

    /// Ended, failed or removed: no more frames will come.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StreamPhase::Ended | StreamPhase::Failed | StreamPhase::Removed
        )
    }

    fn from_u8(v: u8) -> StreamPhase {
        match v {
            0 => StreamPhase::Connecting,
            1 => StreamPhase::Connected,
            2 => StreamPhase::Reconnecting,
            3 => StreamPhase::Ended,
            4 => StreamPhase::Failed,
            _ => StreamPhase::Removed,
        }
    }
}

impl std::fmt::Display for StreamPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reported transition.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseChange {
    pub phase: StreamPhase,
    /// Why (credentials already masked), for losses, failures and ends.
    pub reason: Option<String>,
}

/// Transitions kept for the runtime between two of its passes.
const CHANGES: usize = 32;

/// Shared between a stream's ingest thread, its GStreamer callbacks and the runtime.
#[derive(Debug)]
pub struct StreamStatus {
    phase: AtomicU8,
    changes: ArrayQueue<PhaseChange>,
    generation: AtomicU64,
    error: Mutex<Option<PipelineError>>,
    last_reason: Mutex<Option<String>>,
    incomplete: Mutex<Option<String>>,
    stopped: AtomicBool,
    epoch: Instant,
    last_activity_ms: AtomicU64,
    /// Frames out of the decoder (before resampling).
    pub decoded: AtomicU64,
    /// Frames kept by the resampler.
    pub sampled: AtomicU64,
    pub reconnects: AtomicU64,
    last_pts: AtomicU64,
    pts_span_ns: AtomicU64,
    pts_intervals: AtomicU64,
}

impl Default for StreamStatus {
    fn default() -> Self {
        StreamStatus {
            phase: AtomicU8::new(StreamPhase::Connecting as u8),
            changes: ArrayQueue::new(CHANGES),
            generation: AtomicU64::new(0),
            error: Mutex::new(None),
            last_reason: Mutex::new(None),
            incomplete: Mutex::new(None),
            stopped: AtomicBool::new(false),
            epoch: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_pts: AtomicU64::new(u64::MAX),
            pts_span_ns: AtomicU64::new(0),
            pts_intervals: AtomicU64::new(0),
        }
    }
}

impl StreamStatus {
    /// The current phase.
    pub fn phase(&self) -> StreamPhase {
        StreamPhase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Move to `phase` and queue the change (no-op when already there without a reason).
    pub fn set_phase(&self, phase: StreamPhase, reason: Option<String>) {
        let old = StreamPhase::from_u8(self.phase.swap(phase as u8, Ordering::AcqRel));
        if old == phase && reason.is_none() {
            return;
        }
        if let Some(r) = &reason {
            if let Ok(mut last) = self.last_reason.lock() {
                *last = Some(r.clone());
            }
        }
        // a full queue loses its oldest change; the phase itself is always current
        let _ = self.changes.force_push(PhaseChange { phase, reason });
    }

    /// The next queued transition, oldest first.
    pub fn next_change(&self) -> Option<PhaseChange> {
        self.changes.pop()
    }

    /// The latest reason given with a change (the last error, masked).
    pub fn last_reason(&self) -> Option<String> {
        self.last_reason.lock().ok().and_then(|r| r.clone())
    }

    /// Current connection generation (bumped on reconnect and loop).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Start a new generation (the next frames belong to a new connection or loop).
    pub fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Record the error that ended the stream and mark it failed.
    pub fn fail(&self, e: PipelineError) {
        let reason = e.to_string();
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(e);
        }
        self.set_phase(StreamPhase::Failed, Some(reason));
    }

    /// Take the error that ended the stream, if any.
    pub fn take_error(&self) -> Option<PipelineError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// The stream ended because it was asked to stop, not because its input ended.
    pub fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// See [`Self::mark_stopped`].
    pub fn was_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The input ended early (a truncated file): why, for the final record.
    pub fn set_incomplete(&self, why: String) {
        if let Ok(mut slot) = self.incomplete.lock() {
            *slot = Some(why);
        }
    }

    /// See [`Self::set_incomplete`].
    pub fn incomplete(&self) -> Option<String> {
        self.incomplete.lock().ok().and_then(|s| s.clone())
    }

    /// A frame left the decoder (GStreamer streaming thread; atomics only).
    pub(crate) fn touch(&self, pts: Option<u64>) {
        self.last_activity_ms.store(
            self.epoch.elapsed().as_millis() as u64 + 1,
            Ordering::Relaxed,
        );
        self.decoded.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = pts {
            // frame intervals, skipping loops, reconnects and jumps of a second or more
            let last = self.last_pts.swap(p, Ordering::Relaxed);
            if last != u64::MAX && p > last && p - last < 1_000_000_000 {
                self.pts_span_ns.fetch_add(p - last, Ordering::Relaxed);
                self.pts_intervals.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// PTS of the last decoded frame, in nanoseconds.
    pub fn last_pts_ns(&self) -> Option<u64> {
        match self.last_pts.load(Ordering::Relaxed) {
            u64::MAX => None,
            p => Some(p),
        }
    }

    /// Time since the decoder last produced a frame (`None` before the first one).
    pub(crate) fn idle(&self) -> Option<Duration> {
        let last = self.last_activity_ms.load(Ordering::Relaxed);
        if last == 0 {
            return None;
        }
        Some(
            self.epoch
                .elapsed()
                .saturating_sub(Duration::from_millis(last - 1)),
        )
    }

    /// The source's frame rate estimated from decoded timestamps.
    pub fn native_fps(&self) -> Option<f64> {
        let span = self.pts_span_ns.load(Ordering::Relaxed);
        let n = self.pts_intervals.load(Ordering::Relaxed);
        if span == 0 || n == 0 {
            return None;
        }
        Some(n as f64 * 1e9 / span as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_is_queued_once_with_its_reason() {
        let s = StreamStatus::default();
        s.set_phase(StreamPhase::Connected, None);
        s.set_phase(StreamPhase::Connected, None); // no change
        s.set_phase(StreamPhase::Reconnecting, Some("lost".into()));
        s.set_phase(StreamPhase::Connected, None);
        let got: Vec<_> = std::iter::from_fn(|| s.next_change()).collect();
        assert_eq!(
            got.iter().map(|c| c.phase).collect::<Vec<_>>(),
            vec![
                StreamPhase::Connected,
                StreamPhase::Reconnecting,
                StreamPhase::Connected
            ]
        );
        assert_eq!(got[1].reason.as_deref(), Some("lost"));
        assert_eq!(s.phase(), StreamPhase::Connected);
        assert_eq!(s.last_reason().as_deref(), Some("lost"));
    }
}
