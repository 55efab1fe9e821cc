//! [`StreamControl`]: the narrow interface between the sidecar and what runs the streams —
//! add, remove, list, snapshot, readiness, engine metrics. The HTTP API, the metrics scrape
//! and the restart logic talk only to this trait; [`RuntimeControl`] implements it on the
//! in-process [`Runtime`], and tests that check the service itself (not the engine) use a
//! scripted implementation.
//!
//! Main types: [`StreamDef`] (a stream as a client defines it and the store keeps it),
//! [`RuntimeControl`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::events::EventConfig;
use crate::resample::Rate;
use crate::runtime::{MetricsSnapshot, Runtime, StreamInfo, StreamSetup};
use crate::source::{SourceKind, SourceSpec, StreamOptions};
use crate::{PipelineError, Result};

/// A stream as added through the API and kept in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDef {
    pub name: String,
    /// The source as given (may hold credentials: only ever shown redacted).
    pub uri: String,
    /// Rate fed to the model; `None` = the model's training rate.
    pub fps: Option<Rate>,
    /// EMA score that starts an event; `None` = the service default.
    pub enter: Option<f32>,
    /// EMA score below which an event ends; `None` = the service default.
    pub exit: Option<f32>,
}

impl StreamDef {
    /// The event settings of this stream over the service's `defaults`.
    pub fn events(&self, defaults: &EventConfig) -> EventConfig {
        EventConfig {
            enter: self.enter.unwrap_or(defaults.enter),
            exit: self.exit.unwrap_or(defaults.exit),
            ..defaults.clone()
        }
    }
}

/// What the sidecar needs from the runtime. Called from blocking threads, several at once.
pub trait StreamControl: Send + Sync + 'static {
    /// The model is loaded and the engine runs (`/readyz`).
    fn ready(&self) -> bool;
    /// Every stream, in the order they were added.
    fn streams(&self) -> Vec<StreamInfo>;
    /// One stream.
    fn stream(&self, name: &str) -> Option<StreamInfo>;
    /// Start a stream with its resolved event settings. The caller has checked the name;
    /// a bad source is a user error ([`PipelineError::is_user_error`]).
    fn add(&self, def: &StreamDef, events: &EventConfig) -> Result<()>;
    /// Stop a stream and free its slot; `false` if no stream has that name.
    fn remove(&self, name: &str) -> Result<bool>;
    /// The latest frame the stream delivered, as JPEG; `None` before the first.
    fn snapshot_jpeg(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// The engine's step, batch and latency histograms.
    fn engine_metrics(&self) -> Option<MetricsSnapshot>;
}

/// [`StreamControl`] on the in-process runtime.
#[derive(Clone)]
pub struct RuntimeControl {
    runtime: Runtime,
    /// The model's training rate: a stream's rate when its definition has none.
    default_rate: Rate,
    stopping: Arc<AtomicBool>,
}

/// How long a snapshot request waits for a fresh frame.
const SNAPSHOT_WAIT: Duration = Duration::from_millis(1500);

impl RuntimeControl {
    pub fn new(runtime: Runtime, default_rate: Rate) -> RuntimeControl {
        RuntimeControl {
            runtime,
            default_rate,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on `/readyz` says 503: the runtime is draining.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}

impl StreamControl for RuntimeControl {
    fn ready(&self) -> bool {
        // a RuntimeControl exists only once the model loaded and the engine started
        !self.stopping.load(Ordering::Acquire)
    }

    fn streams(&self) -> Vec<StreamInfo> {
        self.runtime.streams()
    }

    fn stream(&self, name: &str) -> Option<StreamInfo> {
        self.runtime.stream(name)
    }

    fn add(&self, def: &StreamDef, events: &EventConfig) -> Result<()> {
        let source = SourceSpec::parse(&def.uri)?;
        if matches!(source.kind, SourceKind::Fixture { .. }) {
            return Err(PipelineError::usage(
                "a fixture is not a stream",
                "use `vigil classify` for fixtures; streams are rtsp://, files, v4l2://, test: or gst:",
            ));
        }
        let mut options = StreamOptions::new(
            self.runtime.frame_size(),
            def.fps.unwrap_or(self.default_rate),
        );
        // a service's cameras come back: retry a source that is down at start, reconnect
        // after its end; a file plays as a looping camera, at its own speed
        options.retry_initial = true;
        options.reconnect_on_eos = true;
        options.looping = true;
        options.realtime = true;
        self.runtime
            .add_stream(StreamSetup {
                name: def.name.clone(),
                source,
                options,
                events: Some(events.clone()),
            })
            .map(|_| ())
    }

    fn remove(&self, name: &str) -> Result<bool> {
        match self.runtime.remove_stream(name) {
            Ok(()) => Ok(true),
            Err(PipelineError::UnknownStream { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn snapshot_jpeg(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.runtime.snapshot(name, SNAPSHOT_WAIT)? {
            Some(snap) => snap.to_jpeg(80).map(Some),
            None => Ok(None),
        }
    }

    fn engine_metrics(&self) -> Option<MetricsSnapshot> {
        Some(self.runtime.metrics())
    }
}
