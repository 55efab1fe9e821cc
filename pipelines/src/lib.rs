//! # vigil-pipelines
//!
//! Everything between a camera and [`vigil_engine::Engine::step`], and the runtime that
//! runs it: GStreamer ingest, per-stream frame rings, model-rate resampling, cross-stream
//! batching, event detection, status and output formatting. The `vigil` binary
//! (`src/main.rs`) is a thin shell over [`cli`], which is a thin shell over [`runtime`].
//!
//! Main types:
//! - [`runtime::Runtime`] — the in-process runtime: start it on an engine, add and remove
//!   streams, query their status, subscribe to labels/events/status, take snapshots, shut
//!   it down (draining). Everything else serves it.
//! - [`source::SourceSpec`] — a parsed source (`rtsp://`, file, `v4l2://`, `test:`, `gst:`,
//!   fixture), shown with credentials masked ([`redact`]).
//! - [`pipeline::build_pipeline`] (GStreamer pipeline building), [`frame_path`] (resampling
//!   probe and appsink copy), [`bus::drive_bus`] (bus handling, error messages),
//!   [`reconnect::run_stream`] (one stream's ingest thread with reconnects).
//! - [`status::StreamPhase`] / [`status::StreamStatus`] — a stream's life cycle as its
//!   ingest thread reports it.
//! - [`frame_ring::FrameRing`] — bounded, lock-free, recycled frame buffers between a
//!   GStreamer streaming thread and the runtime (drop-oldest for live sources,
//!   backpressure for files).
//! - [`resample::Resampler`] — keeps frames at the model's frame rate by timestamp.
//! - [`scheduler::Planner`] / [`scheduler::Cadence`] — pure batching decisions: one frame
//!   per stream per step, waiting only for streams that are due.
//! - [`events::EventDetector`] — EMA-smoothed scores with enter/exit hysteresis and a
//!   minimum duration.
//! - [`output::Output`] — JSON lines or text, to stdout or a file ([`output::write_json`]
//!   for services).
//! - [`config::WatchConfig`] — the `cameras.toml` of `vigil watch --config`.
//! - [`ingest_bench`] — the decode/resample/convert benchmark behind `vigil bench --ingest`.
//! - [`PipelineError`] — the one error type of this crate.

pub mod bus;
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod frame_path;
pub mod frame_ring;
pub mod ingest_bench;
pub mod output;
pub mod pipeline;
pub mod reconnect;
pub mod redact;
pub mod resample;
pub mod runtime;
pub mod scheduler;
pub mod source;
pub mod status;

pub use error::{PipelineError, Result};
