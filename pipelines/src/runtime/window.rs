//! Window embeddings for text search: [`WindowRecord`] (one stream's window — CLIP's mean
//! of the frames of `window` seconds, or an X-CLIP clip — with its times, unit embedding
//! and optionally its newest frame) and [`WindowSubscription`], the channel they arrive
//! on ([`super::Runtime::subscribe_windows`]).
//!
//! A channel of its own, beside the record subscriptions: only CLIP-family analyzers
//! make windows, and only the search store wants them. Windows come at most once per
//! window length per stream (they tile the stream's time), so building one — an
//! `Arc<[f32]>`, and a frame copy when snapshots are asked for — is not per-frame work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};

use super::snapshot::Snapshot;
use super::subscription::{send_with, Delivery, Overflow};

/// One window of one stream.
#[derive(Debug, Clone)]
pub struct WindowRecord {
    pub stream: Arc<str>,
    /// Stream time (PTS) of the window's first and last frame.
    pub start_pts_ns: u64,
    pub end_pts_ns: u64,
    /// Wall-clock time of the window's first and last frame (capture for live sources,
    /// decode for files).
    pub start: SystemTime,
    pub end: SystemTime,
    pub frames: usize,
    /// The window's embedding, unit length (compare by dot product with unit text
    /// embeddings of the same model).
    pub embedding: Arc<[f32]>,
    /// The window's newest frame (when the subscription asked for snapshots and the
    /// window was scored on a frame; a window closed with its stream has none).
    pub snapshot: Option<Snapshot>,
}

/// How to subscribe to windows.
#[derive(Debug, Clone)]
pub struct WindowOptions {
    /// Windows buffered before the overflow policy applies.
    pub capacity: usize,
    pub overflow: Overflow,
    /// Attach each window's newest frame (a copy per window).
    pub snapshots: bool,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions {
            capacity: 256,
            overflow: Overflow::DropNewest,
            snapshots: false,
        }
    }
}

/// The receiving end; dropping it unsubscribes. After shutdown the buffered windows can
/// still be read, then `recv` returns `None`.
pub struct WindowSubscription {
    rx: Receiver<WindowRecord>,
    lost: Arc<AtomicU64>,
}

impl WindowSubscription {
    pub fn recv(&self) -> Option<WindowRecord> {
        self.rx.recv().ok()
    }

    /// `Err(true)`: the runtime has shut down; `Err(false)`: nothing within `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<WindowRecord, bool> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => false,
            RecvTimeoutError::Disconnected => true,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = WindowRecord> + '_ {
        self.rx.iter()
    }

    /// Windows dropped because this subscription was full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// The runtime's end.
pub(crate) struct WindowSubscriber {
    tx: Sender<WindowRecord>,
    lost: Arc<AtomicU64>,
    gone: AtomicBool,
    pub(crate) options: WindowOptions,
}

impl WindowSubscriber {
    pub(crate) fn new(options: WindowOptions) -> (WindowSubscriber, WindowSubscription) {
        let (tx, rx) = channel::bounded(options.capacity.max(1));
        let lost = Arc::new(AtomicU64::new(0));
        (
            WindowSubscriber {
                tx,
                lost: lost.clone(),
                gone: AtomicBool::new(false),
                options,
            },
            WindowSubscription { rx, lost },
        )
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    pub(crate) fn deliver(&self, w: WindowRecord, give_up_at: Option<Instant>) {
        if send_with(&self.tx, w, self.options.overflow, &self.lost, give_up_at) == Delivery::Gone {
            self.gone.store(true, Ordering::Relaxed);
        }
    }
}
