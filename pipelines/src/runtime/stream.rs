//! One stream inside a runtime: [`StreamSetup`] (what to add), [`StreamInfo`] (what a
//! status query returns) and the state shared between the caller's threads, the
//! stream's ingest thread and the worker (`StreamEntry`, with `TopBoard`, a seqlock
//! holding the latest top classes so queries never take a lock the worker needs).

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use serde::Serialize;

use super::record::{TopK, MAX_TOP};
use super::snapshot::SnapshotSlot;
use crate::events::EventConfig;
use crate::frame_ring::FrameRing;
use crate::source::{SourceSpec, StreamOptions};
use crate::status::{StreamPhase, StreamStatus};

/// A stream to add to a runtime.
#[derive(Debug, Clone)]
pub struct StreamSetup {
    /// Unique among the runtime's streams (a removed stream's name may be reused).
    pub name: String,
    pub source: SourceSpec,
    /// Rate, aspect, RTSP transport, reconnect policy (`size` is the runtime's).
    pub options: StreamOptions,
    /// Event detection for this stream (`None`: labels only).
    pub events: Option<EventConfig>,
}

/// One class and its score, with its label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopEntry {
    pub label: String,
    pub index: usize,
    pub score: f32,
}

/// A stream's status, as a query returns it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    pub name: String,
    /// The source, credentials masked.
    pub uri: String,
    pub status: StreamPhase,
    /// Frames processed per second (over the last second).
    pub fps: f64,
    /// Frames processed by the engine.
    pub frames: u64,
    /// Frames dropped (live sources, when inference was behind; or stale at a loss).
    pub dropped: u64,
    pub reconnects: u64,
    /// Frames decoded (before resampling to the model's rate).
    pub decoded: u64,
    /// The source's own frame rate, estimated from timestamps.
    pub native_fps: Option<f64>,
    /// Latest top classes.
    pub top: Vec<TopEntry>,
    /// The latest error or loss reason (credentials masked).
    pub last_error: Option<String>,
    /// A live source (drops the oldest frame when behind) rather than a file.
    pub live: bool,
}

impl Serialize for StreamPhase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The latest [`TopK`] of a stream: written by the worker every frame, read by queries,
/// no lock (a seqlock: readers retry while a write is in progress).
pub(crate) struct TopBoard {
    seq: AtomicU64,
    len: AtomicU32,
    classes: [AtomicU32; MAX_TOP],
    scores: [AtomicU32; MAX_TOP],
}

impl Default for TopBoard {
    fn default() -> Self {
        TopBoard {
            seq: AtomicU64::new(0),
            len: AtomicU32::new(0),
            classes: std::array::from_fn(|_| AtomicU32::new(0)),
            scores: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl TopBoard {
    /// Single writer (the worker).
    pub(crate) fn store(&self, top: &TopK) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, (c, p)) in top.iter().enumerate() {
            self.classes[i].store(c as u32, Ordering::Relaxed);
            self.scores[i].store(p.to_bits(), Ordering::Relaxed);
        }
        self.len.store(top.len() as u32, Ordering::Relaxed);
        self.seq.store(s + 2, Ordering::Release);
    }

    /// A consistent copy.
    pub(crate) fn load(&self) -> TopK {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let n = (self.len.load(Ordering::Relaxed) as usize).min(MAX_TOP);
            let top = TopK::from_pairs((0..n).map(|i| {
                (
                    self.classes[i].load(Ordering::Relaxed) as usize,
                    f32::from_bits(self.scores[i].load(Ordering::Relaxed)),
                )
            }));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return top;
            }
        }
    }
}

/// Shared by the caller's threads, the stream's ingest thread and the worker.
pub(crate) struct StreamEntry {
    /// Never reused: a re-added name is a new stream.
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) shown: Arc<str>,
    pub(crate) live: bool,
    pub(crate) status: Arc<StreamStatus>,
    pub(crate) ring: Arc<FrameRing>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Frames processed (written by the worker).
    pub(crate) frames: AtomicU64,
    /// f64 bits of the processed rate (written by the worker once a second).
    pub(crate) fps_bits: AtomicU64,
    pub(crate) removed: AtomicBool,
    /// The worker is done with it (final records sent, session closed).
    pub(crate) finished: AtomicBool,
    pub(crate) top: TopBoard,
    pub(crate) snapshot: SnapshotSlot,
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
}

impl StreamEntry {
    pub(crate) fn phase(&self) -> StreamPhase {
        if self.removed.load(Ordering::Acquire) {
            StreamPhase::Removed
        } else {
            self.status.phase()
        }
    }

    pub(crate) fn info(&self, labels: &vigil_engine::Labels) -> StreamInfo {
        StreamInfo {
            name: self.name.to_string(),
            uri: self.shown.to_string(),
            status: self.phase(),
            fps: f64::from_bits(self.fps_bits.load(Ordering::Relaxed)),
            frames: self.frames.load(Ordering::Relaxed),
            dropped: self.ring.dropped(),
            reconnects: self.status.reconnects.load(Ordering::Relaxed),
            decoded: self.status.decoded.load(Ordering::Relaxed),
            native_fps: self.status.native_fps(),
            top: self
                .top
                .load()
                .iter()
                .map(|(c, s)| TopEntry {
                    label: labels.name(c).to_string(),
                    index: c,
                    score: s,
                })
                .collect(),
            last_error: self.status.last_reason(),
            live: self.live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_board_reads_whole_writes_only() {
        let board = Arc::new(TopBoard::default());
        let writer = {
            let board = board.clone();
            std::thread::spawn(move || {
                for k in 0..20_000u32 {
                    // every write is k repeated: a torn read would mix two values
                    let v = (k % 100) as f32;
                    board.store(&TopK::from_pairs((0..5).map(|i| (k as usize + i, v))));
                }
            })
        };
        for _ in 0..20_000 {
            let t = board.load();
            let scores: Vec<f32> = t.iter().map(|(_, s)| s).collect();
            assert!(
                scores.windows(2).all(|w| w[0] == w[1]),
                "torn read {scores:?}"
            );
            if let Some((c0, _)) = t.best() {
                assert!(t.iter().enumerate().all(|(i, (c, _))| c == c0 + i));
            }
        }
        writer.join().unwrap();
    }
}
