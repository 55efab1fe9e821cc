//! # vigil-engine
//!
//! Causal MoViNet stream models on a per-stream state, batched across streams.
//! No GStreamer here: this crate and its tests run anywhere.
//!
//! Main types:
//! - [`Model`] — a MoViNet stream model imported from an official streaming TFLite
//!   export ([`tflite`] parses the flatbuffer, [`model`] recognises stem, blocks, skips,
//!   squeeze-excitation and head from the op graph and dequantizes the weights once).
//! - [`Plan`] — the model lowered once into a flat list of ops over named activation
//!   buffers ([`plan`]); the CPU backend, the CUDA backend and the GPU performance model
//!   each walk it with one exhaustive `match`, so they cannot drift apart.
//! - [`Engine`] — owns a [`Backend`] and a slot pool of per-stream sessions; one
//!   [`Engine::step`] advances one frame for each of B sessions at once.
//! - [`session`] — what a stream carries: [`session::StreamBuffer`] rings for the causal
//!   temporal convolutions and [`session::CumulativePool`] running sums.
//! - [`cpu::CpuBackend`] — the multi-threaded float32 backend, also the numerical twin of
//!   every GPU kernel; AVX-512 or AVX2 kernels picked at run time, bf16 GEMMs on CPUs
//!   with AVX-512 BF16.
//! - [`ComputePrecision`] — what `--precision auto|fp32|fp16|bf16` asks of a backend
//!   ([`precision`]).
//! - `cuda::CudaBackend` (feature `cuda`, on by default) — the CUDA backend: device-side
//!   slot pool, fp16 storage with fp32 accumulation (or fp32), CUDA graphs per batch bucket.
//! - [`labels::Labels`], [`fixture::Fixture`] — label files and reference fixtures.
//! - [`bench`](mod@bench) — the step benchmark behind `vigil bench`.
//! - [`roofline`] — a GPU performance MODEL of the CUDA step (datasheet roofline, per
//!   layer and kernel), behind the `gpu_model` example; never a measurement.
//! - [`clip`] — CLIP / X-CLIP encoders from Hugging Face folders for open-vocabulary
//!   labels and text search ([`clip::ClipModel`], [`clip::XClipModel`]).
//! - [`EngineError`] — the one error type of this crate.

pub mod backend;
pub mod bench;
pub mod clip;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod engine;
pub mod error;
pub mod fixture;
pub mod labels;
pub mod model;
pub mod plan;
pub mod precision;
pub mod roofline;
pub mod session;
pub mod tflite;

pub use backend::{Backend, Device, DEFAULT_CPU_MAX_BATCH, DEFAULT_CUDA_MAX_BATCH};
pub use engine::{Engine, EngineConfig, SessionId};
pub use error::{EngineError, Result};
pub use labels::Labels;
pub use model::Model;
pub use plan::Plan;
pub use precision::ComputePrecision;
pub use vigil_kernels::Precision;
