//! The in-process runtime: ingest → batched engine → labels, events and status, as a
//! library. `vigil watch`, `vigil classify` and `vigil bench --ingest` run on it, `vigil
//! serve` builds its API on it, and the tests drive it in-process.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use vigil_pipelines::runtime::*;
//! # use vigil_pipelines::source::{SourceSpec, StreamOptions};
//! # use vigil_pipelines::resample::Rate;
//! # fn main() -> vigil_pipelines::Result<()> {
//! let model = std::sync::Arc::new(vigil_engine::Model::load("k600.tflite".as_ref())?);
//! let engine = vigil_engine::Engine::new(model.clone(), &Default::default())?;
//! let rt = Runtime::start(engine, RuntimeOptions::default())?;
//! let events = rt.subscribe(SubscriptionOptions { kinds: Kinds::NO_LABELS, ..Default::default() });
//! rt.add_stream(StreamSetup {
//!     name: "yard".into(),
//!     source: SourceSpec::parse("rtsp://cam.local/stream1")?,
//!     options: StreamOptions::new(model.input_size(), Rate::Fps(5.0)),
//!     events: Some(Default::default()),
//! })?;
//! while let Ok(ev) = events.recv_timeout(Duration::from_secs(60)) { println!("{ev:?}"); }
//! println!("{:?}", rt.stream("yard"));
//! rt.remove_stream("yard")?;
//! let report = rt.shutdown()?; // drains: queued frames processed, final records sent
//! # Ok(()) }
//! ```
//!
//! ## API
//! - [`Runtime::start`] (an [`Engine`], a [`RuntimeOptions`]: batch policy, labels, top-k,
//!   stats interval, drain timeout) or [`Runtime::start_ingest_only`] (no model: decode
//!   and resample only, for ingest benchmarks). The engine and every session live on the
//!   runtime's worker thread.
//! - [`Runtime::add_stream`] ([`StreamSetup`]: name, source, options, per-stream
//!   [`EventConfig`] — enter/exit thresholds, smoothing, minimum duration, label filter),
//!   [`Runtime::remove_stream`] (its session is closed and its slot freed at once; a later
//!   stream of the same name starts from zero state), [`Runtime::stream`] /
//!   [`Runtime::streams`] ([`StreamInfo`]: name, masked uri, status, fps, frames, dropped,
//!   reconnects, latest top-k, last error), [`Runtime::snapshot`] (the latest delivered
//!   frame; frames are copied only while snapshots are being asked for),
//!   [`Runtime::metrics`] ([`MetricsSnapshot`]: step duration, batch size and frame
//!   latency histograms, for Prometheus).
//! - [`Runtime::subscribe`] ([`SubscriptionOptions`]: record kinds, one stream or all,
//!   capacity, [`Overflow`] policy) → a [`Subscription`] of [`RuntimeEvent`]s: labels per
//!   frame, event start/end, status changes, periodic stats, end of stream. A slow
//!   subscriber loses records (counted in [`Subscription::lost`]); it never slows
//!   inference.
//! - [`Runtime::wait_idle`] (every stream done), [`Runtime::shutdown`] (stop every stream,
//!   process what is queued, send the final records, close the subscriptions, join the
//!   threads; bounded by the drain timeout) and [`Runtime::stop_handle`] (a
//!   [`StopHandle`] for signal handlers: asks for the same shutdown without waiting).
//!
//! A [`Runtime`] is a cheap handle (`Clone + Send + Sync`): every method works from any
//! thread while the runtime runs. Dropping the last handle shuts it down.
//!
//! ## Inside
//! Each stream has an ingest thread ([`crate::reconnect::run_stream`]: GStreamer
//! pipeline, reconnects) feeding a lock-free [`FrameRing`]; the worker
//! (`worker`) batches ready frames across streams with the [`crate::scheduler::Planner`],
//! steps the engine, and publishes records. Control calls reach the worker through a
//! bounded command channel and wake it; queries read atomics (and a seqlock for top-k).

pub mod metrics;
pub mod record;
pub mod snapshot;
pub mod stream;
pub mod subscription;
mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Sender};
use crossbeam::sync::{Parker, Unparker};
use parking_lot::{Condvar, Mutex};
use vigil_engine::{Engine, Labels};

pub use metrics::{HistogramSnapshot, MetricsSnapshot};
pub use record::{
    EndRecord, EventRecord, LabelRecord, RecordKind, RuntimeEvent, StatsRecord, StatusRecord, TopK,
    MAX_TOP,
};
pub use snapshot::Snapshot;
pub use stream::{StreamInfo, StreamSetup, TopEntry};
pub use subscription::{Kinds, Overflow, Subscription, SubscriptionOptions};

pub use crate::events::EventConfig;
use crate::frame_ring::{DropPolicy, FrameRing};
use crate::reconnect::{run_stream, StreamCtx};
use crate::scheduler::{BatchPolicy, Planner};
use crate::status::StreamStatus;
use crate::{PipelineError, Result};
use stream::StreamEntry;
use subscription::Subscriber;
use worker::{Command, Worker};

/// How a runtime runs.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub batch: BatchPolicy,
    /// Class names for status queries (default: `class_0`, `class_1`…).
    pub labels: Option<Labels>,
    /// Classes per label record and status query (at most [`MAX_TOP`]).
    pub top_k: usize,
    /// Emit a [`StatsRecord`] per stream this often (`None`: never).
    pub stats_interval: Option<Duration>,
    /// Longest a shutdown waits for streams to drain before ending them anyway.
    pub drain_timeout: Duration,
    /// Frames a live stream's ring holds before dropping the oldest.
    pub live_ring: usize,
    /// Frames a file's ring holds before the decoder waits.
    pub file_ring: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            batch: BatchPolicy::default(),
            labels: None,
            top_k: 5,
            stats_interval: None,
            drain_timeout: Duration::from_secs(10),
            live_ring: 4,
            file_ring: 2,
        }
    }
}

/// What a shut-down runtime reports.
#[derive(Debug, Clone, Default)]
pub struct RuntimeReport {
    /// The streams still registered at shutdown.
    pub streams: Vec<StreamInfo>,
}

/// State shared by handles, the worker and the ingest threads.
pub(crate) struct Shared {
    streams: Mutex<BTreeMap<String, Arc<StreamEntry>>>,
    next_id: AtomicU64,
    commands: Sender<Command>,
    unparker: Unparker,
    closing: AtomicBool,
    labels: Labels,
    pub(crate) top_k: usize,
    frame_size: usize,
    pub(crate) stats_interval: Option<Duration>,
    pub(crate) drain_timeout: Duration,
    live_ring: usize,
    file_ring: usize,
    pub(crate) sessions: AtomicUsize,
    pub(crate) metrics: metrics::RuntimeMetrics,
    pub(crate) device: String,
    idle_lock: Mutex<()>,
    idle: Condvar,
}

impl Shared {
    pub(crate) fn notify_idle(&self) {
        let _guard = self.idle_lock.lock();
        self.idle.notify_all();
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.commands
            .send(cmd)
            .map_err(|_| PipelineError::RuntimeStopped)?;
        self.unparker.unpark();
        Ok(())
    }
}

struct Handle {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<Result<()>>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.worker.lock().is_some() {
            let _ = shutdown(&self.shared, &self.worker);
        }
    }
}

/// A running runtime (a cheap, shareable handle).
#[derive(Clone)]
pub struct Runtime {
    handle: Arc<Handle>,
}

/// Asks a runtime to shut down without waiting (for signal handlers).
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
}

impl StopHandle {
    /// Begin the drain; [`Runtime::shutdown`] or [`Runtime::wait_idle`] see it finish.
    pub fn stop(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let _ = self.shared.send(Command::Shutdown);
    }
}

/// Names must be printable: they appear in logs, JSON and URLs.
fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(PipelineError::usage(
            format!("invalid stream name {name:?}"),
            "use 1-200 printable characters",
        ));
    }
    Ok(())
}

impl Runtime {
    /// Start a runtime on `engine`.
    pub fn start(engine: Engine, options: RuntimeOptions) -> Result<Runtime> {
        let size = engine.model().input_size();
        let device = engine.device_name();
        let classes = engine.classes();
        Runtime::spawn(Some(engine), size, classes, device, options)
    }

    /// Start a runtime without a model: frames are decoded, resampled and delivered
    /// (label records with no classes), for ingest measurements.
    pub fn start_ingest_only(frame_size: usize, options: RuntimeOptions) -> Result<Runtime> {
        Runtime::spawn(None, frame_size, 0, "none (ingest only)".into(), options)
    }

    fn spawn(
        engine: Option<Engine>,
        frame_size: usize,
        classes: usize,
        device: String,
        options: RuntimeOptions,
    ) -> Result<Runtime> {
        crate::pipeline::init_gstreamer()?;
        let labels = match options.labels {
            Some(l) if l.len() == classes || classes == 0 => l,
            Some(l) => {
                return Err(PipelineError::usage(
                    format!("{} labels for a model of {classes} classes", l.len()),
                    "pass the label file that belongs to the model",
                ))
            }
            None => Labels::numbered(classes),
        };
        let (tx, rx) = channel::bounded(4096);
        let parker = Parker::new();
        let shared = Arc::new(Shared {
            streams: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            commands: tx,
            unparker: parker.unparker().clone(),
            closing: AtomicBool::new(false),
            labels,
            top_k: options.top_k.clamp(1, MAX_TOP),
            frame_size,
            stats_interval: options.stats_interval.filter(|d| !d.is_zero()),
            drain_timeout: options.drain_timeout,
            live_ring: options.live_ring.max(1),
            file_ring: options.file_ring.max(1),
            sessions: AtomicUsize::new(0),
            metrics: Default::default(),
            device,
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        });
        let worker = Worker::new(
            shared.clone(),
            engine,
            Planner::new(options.batch),
            parker,
            rx,
        );
        let join = std::thread::Builder::new()
            .name("vigil-runtime".into())
            .spawn(move || {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
                    Ok(r) => r,
                    Err(p) => Err(PipelineError::Internal(format!(
                        "the runtime worker panicked: {}",
                        crate::reconnect::panic_message(&p)
                    ))),
                }
            })
            .map_err(|e| PipelineError::Internal(format!("cannot start the runtime: {e}")))?;
        Ok(Runtime {
            handle: Arc::new(Handle {
                shared,
                worker: Mutex::new(Some(join)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Class names.
    pub fn labels(&self) -> &Labels {
        &self.shared().labels
    }

    /// Side of the square RGB frames the model takes.
    pub fn frame_size(&self) -> usize {
        self.shared().frame_size
    }

    /// The engine's device, e.g. `cpu (2 threads)`.
    pub fn device(&self) -> &str {
        &self.shared().device
    }

    /// Engine sessions open now (one per stream being processed).
    pub fn sessions(&self) -> usize {
        self.shared().sessions.load(Ordering::Relaxed)
    }

    /// Step duration, batch size and frame latency histograms, steps, sessions, streams.
    pub fn metrics(&self) -> MetricsSnapshot {
        let shared = self.shared();
        let streams = shared.streams.lock().len();
        shared.metrics.snapshot(self.sessions(), streams)
    }

    /// Add a stream and start it. Errors: a duplicate or invalid name, a stopped
    /// runtime, an engine that cannot open another session.
    pub fn add_stream(&self, setup: StreamSetup) -> Result<StreamInfo> {
        let shared = self.shared();
        check_name(&setup.name)?;
        if shared.closing.load(Ordering::Acquire) {
            return Err(PipelineError::RuntimeStopped);
        }
        if matches!(setup.source.kind, crate::source::SourceKind::Fixture { .. }) {
            return Err(PipelineError::BadSource {
                source_str: setup.source.shown.clone(),
                why: "a fixture is not a video stream".into(),
                hint: "classify fixtures with `vigil classify FIXTURE`".into(),
            });
        }
        if let Some(ev) = &setup.events {
            ev.validate()
                .map_err(|why| PipelineError::usage(why, "fix the stream's event settings"))?;
        }
        let live = setup.source.is_live();
        let (capacity, policy) = if live {
            (shared.live_ring, DropPolicy::DropOldest)
        } else {
            (shared.file_ring, DropPolicy::Block)
        };
        let frame_bytes = shared.frame_size * shared.frame_size * 3;
        let entry = Arc::new(StreamEntry {
            id: shared.next_id.fetch_add(1, Ordering::Relaxed),
            name: Arc::from(setup.name.as_str()),
            shown: Arc::from(setup.source.shown.as_str()),
            live,
            status: Arc::new(StreamStatus::default()),
            ring: Arc::new(FrameRing::new(
                capacity,
                frame_bytes,
                policy,
                Some(shared.unparker.clone()),
            )),
            stop: Arc::new(AtomicBool::new(false)),
            frames: AtomicU64::new(0),
            fps_bits: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            top: Default::default(),
            snapshot: Default::default(),
            thread: Mutex::new(None),
        });
        {
            // the name is taken here; the lock is not held while the worker answers
            let mut streams = shared.streams.lock();
            if streams.contains_key(&setup.name) {
                return Err(PipelineError::DuplicateStream { name: setup.name });
            }
            streams.insert(setup.name.clone(), entry.clone());
        }
        let release = |e: PipelineError| {
            let mut streams = shared.streams.lock();
            if streams.get(&setup.name).is_some_and(|x| x.id == entry.id) {
                streams.remove(&setup.name);
            }
            e
        };
        let (ack_tx, ack_rx) = channel::bounded(1);
        shared
            .send(Command::Add {
                entry: entry.clone(),
                events: setup.events.clone(),
                ack: ack_tx,
            })
            .map_err(release)?;
        match ack_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(release(e)),
            Err(_) => {
                return Err(release(PipelineError::Internal(
                    "the runtime did not answer".into(),
                )))
            }
        }
        let mut options = setup.options.clone();
        options.size = shared.frame_size;
        let ctx = StreamCtx {
            name: setup.name.clone(),
            spec: setup.source.clone(),
            opts: options,
            ring: entry.ring.clone(),
            status: entry.status.clone(),
            stop: entry.stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("ingest-{}", setup.name))
            .spawn(move || run_stream(ctx));
        match thread {
            Ok(t) => *entry.thread.lock() = Some(t),
            Err(e) => entry.status.fail(PipelineError::Internal(format!(
                "cannot start the ingest thread: {e}"
            ))),
        }
        Ok(entry.info(&shared.labels))
    }

    /// Remove a stream: it stops, its open events end (`"stream removed"`), its session is
    /// closed and its slot freed before this returns. Its name may be reused at once.
    pub fn remove_stream(&self, name: &str) -> Result<()> {
        let shared = self.shared();
        let entry =
            shared
                .streams
                .lock()
                .remove(name)
                .ok_or_else(|| PipelineError::UnknownStream {
                    name: name.to_string(),
                })?;
        entry.removed.store(true, Ordering::Release);
        entry.stop.store(true, Ordering::Release);
        let (ack_tx, ack_rx) = channel::bounded(1);
        if shared
            .send(Command::Remove {
                id: entry.id,
                ack: ack_tx,
            })
            .is_ok()
        {
            let _ = ack_rx.recv_timeout(Duration::from_secs(30));
        }
        Ok(())
    }

    /// One stream's status.
    pub fn stream(&self, name: &str) -> Option<StreamInfo> {
        let shared = self.shared();
        let entry = shared.streams.lock().get(name).cloned()?;
        Some(entry.info(&shared.labels))
    }

    /// Every stream's status, by name.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let shared = self.shared();
        let entries: Vec<Arc<StreamEntry>> = shared.streams.lock().values().cloned().collect();
        entries.iter().map(|e| e.info(&shared.labels)).collect()
    }

    /// Subscribe to records (see [`SubscriptionOptions`]). Records from before the call are
    /// not replayed.
    pub fn subscribe(&self, options: SubscriptionOptions) -> Subscription {
        let (sub, rx) = Subscriber::new(options);
        // a stopped runtime drops `sub`: the subscription then reports the end at once
        let _ = self.shared().send(Command::Subscribe(sub));
        rx
    }

    /// The latest frame `name` delivered (model-sized RGB), waiting up to `timeout` for
    /// a fresh one. `Ok(None)`: no frame yet.
    pub fn snapshot(&self, name: &str, timeout: Duration) -> Result<Option<Snapshot>> {
        let shared = self.shared();
        let entry = shared.streams.lock().get(name).cloned().ok_or_else(|| {
            PipelineError::UnknownStream {
                name: name.to_string(),
            }
        })?;
        Ok(entry.snapshot.take(name, shared.frame_size, timeout))
    }

    /// Wait until every stream is done (ended, failed or removed) or the runtime stopped;
    /// `false` when `timeout` passed first.
    pub fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        let shared = self.shared();
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let busy = shared
                .streams
                .lock()
                .values()
                .any(|e| !e.finished.load(Ordering::Acquire));
            let stopped = self
                .handle
                .worker
                .lock()
                .as_ref()
                .is_none_or(|w| w.is_finished());
            if !busy || stopped {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            // woken when a stream finishes; at least every 100 ms (a notification may
            // slip between the check above and this wait)
            let until = Instant::now() + Duration::from_millis(100);
            let until = deadline.map_or(until, |d| d.min(until));
            let mut guard = shared.idle_lock.lock();
            shared.idle.wait_until(&mut guard, until);
        }
    }

    /// A handle that starts the shutdown from anywhere (a signal handler) without waiting.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: self.handle.shared.clone(),
        }
    }

    /// Stop every stream, process what is queued, send the final records, close the
    /// subscriptions and join the threads (bounded by the drain timeout). Idempotent.
    pub fn shutdown(&self) -> Result<RuntimeReport> {
        shutdown(&self.handle.shared, &self.handle.worker)
    }
}

fn shutdown(
    shared: &Arc<Shared>,
    worker: &Mutex<Option<JoinHandle<Result<()>>>>,
) -> Result<RuntimeReport> {
    shared.closing.store(true, Ordering::Release);
    let _ = shared.send(Command::Shutdown);
    let join = worker.lock().take();
    let result = match join {
        Some(j) => j.join().unwrap_or_else(|_| {
            Err(PipelineError::Internal(
                "the runtime worker panicked".into(),
            ))
        }),
        None => Ok(()),
    };
    let entries: Vec<Arc<StreamEntry>> = shared.streams.lock().values().cloned().collect();
    let report = RuntimeReport {
        streams: entries.iter().map(|e| e.info(&shared.labels)).collect(),
    };
    result.map(|()| report)
}
