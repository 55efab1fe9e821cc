//! # vigil-pipelines
//!
//! Everything between a camera and [`vigil_engine::Engine::step`]: GStreamer ingest,
//! per-stream frame rings, model-rate resampling, the cross-stream batch scheduler, event
//! detection and output formatting. The `vigil` binary (`src/main.rs`) is a thin shell over
//! [`cli`].
//!
//! Main types:
//! - [`source::SourceSpec`] — a parsed source (`rtsp://`, file, `v4l2://`, `test:`, `gst:`,
//!   fixture); [`source::build_pipeline`] builds its GStreamer pipeline and
//!   [`source::drive_bus`] runs it; [`source::run_stream`] is one stream's ingest thread
//!   with reconnects.
//! - [`frame_ring::FrameRing`] — bounded, lock-free, recycled frame buffers between a
//!   GStreamer streaming thread and the scheduler (drop-oldest for live sources,
//!   backpressure for files).
//! - [`resample::Resampler`] — keeps frames at the model's frame rate by timestamp.
//! - [`scheduler::Scheduler`] / [`scheduler::Planner`] — one frame per stream per step,
//!   batched across streams.
//! - [`events::EventDetector`] — EMA-smoothed scores with enter/exit hysteresis.
//! - [`output::Output`] — JSON lines or text, to stdout or a file.
//! - [`config::WatchConfig`] — the `cameras.toml` of `vigil watch --config`.
//! - [`ingest`] — the decode/resample/convert throughput benchmark behind
//!   `vigil bench --ingest`.
//! - [`serve`] — `vigil serve`, the sidecar: HTTP API, SSE, event history, metrics, MQTT,
//!   webhooks and a live page around the runtime.
//! - [`PipelineError`] — the one error type of this crate.

pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod frame_ring;
pub mod ingest;
pub mod output;
pub mod resample;
pub mod scheduler;
pub mod serve;
pub mod source;

pub use error::{PipelineError, Result};
