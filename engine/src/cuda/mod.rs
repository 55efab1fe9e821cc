//! [`CudaBackend`]: the CUDA backend — the model's weights, every slot's carried state and
//! the step's activations live on the GPU; kernels come from `vigil_kernels::cuda`; the
//! network is the model's [`Plan`], walked by one exhaustive `match` over its ops.
//!
//! Main types:
//! - [`CudaBackend`] — implements [`Backend`]; built with [`CudaBackend::new`] from a
//!   [`Model`] and a [`CudaConfig`]. Fails with [`EngineError::DeviceUnavailable`] (never
//!   panics) when libcuda, a GPU or libnvrtc is missing.
//! - [`CudaConfig`] — device ordinal, [`Precision`] (fp16 storage with fp32 accumulation,
//!   or fp32 verification mode), max batch (default [`DEFAULT_CUDA_MAX_BATCH`]),
//!   workspace reserved up front, CUDA-graph batch buckets ([`geometric_buckets`]).
//! - [`StepStats`] / [`StepNodes`] — what the last step issued (graph or eager, kernel
//!   launches and device copies, host↔device bytes), for tests against a driver's
//!   counters.
//!
//! Submodules, one concept each:
//! - `device_model` — the plan's weight table uploaded once, one allocation per tensor.
//! - `workspace` — the step's device buffers (one per plan buffer) with pinned host
//!   staging, and the device slot pool with its scratch slots for graph padding.
//! - `forward` — the plan walk: one step enqueued on one stream, launches and device
//!   copies only (the SE gate fused into the projection GEMM, `pointwise_gated`; the SE
//!   input assembled by two strided 2-D copies).
//! - `graphs` — CUDA graphs per batch bucket, captured once each, dropped when device
//!   buffers move.
//! - `runner` — one storage type's backend: a step stages inputs, replays (or enqueues),
//!   reads the logits back and synchronises once.

mod device_model;
mod forward;
mod graphs;
mod runner;
mod workspace;

use std::sync::Arc;

use vigil_kernels::cuda::{self as kc, KernelError, Precision};

pub use crate::backend::DEFAULT_CUDA_MAX_BATCH;
pub use forward::StepNodes;
pub use graphs::geometric_buckets;

use crate::backend::Backend;
use crate::model::Model;
use crate::plan::Plan;
use crate::{EngineError, Result};
use runner::Runner;

/// How to build a [`CudaBackend`].
#[derive(Debug, Clone)]
pub struct CudaConfig {
    /// CUDA device ordinal.
    pub ordinal: usize,
    /// Storage precision of weights, activations and stream buffers.
    pub precision: Precision,
    /// The largest batch (streams per step) the backend is built for: the default graph
    /// buckets reach it, and a scheduler should cap its steps there. Larger batches still
    /// run, enqueued eagerly.
    pub max_batch: usize,
    /// Batch size the workspace is allocated for up front (it grows on demand, up to the
    /// bucket of the largest batch seen).
    pub reserve_batch: usize,
    /// Batch sizes that get a captured CUDA graph; `None` = [`geometric_buckets`] up to
    /// `max_batch`; an empty list disables graphs.
    pub graph_buckets: Option<Vec<usize>>,
}

impl Default for CudaConfig {
    fn default() -> Self {
        CudaConfig {
            ordinal: 0,
            precision: Precision::F16,
            max_batch: DEFAULT_CUDA_MAX_BATCH,
            reserve_batch: 64,
            graph_buckets: None,
        }
    }
}

/// What the last step issued, as the backend counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepStats {
    /// streams in the batch
    pub batch: usize,
    /// rows the kernels ran: the batch's graph bucket (padding rows on scratch slots), or
    /// the batch itself when enqueued eagerly
    pub rows: usize,
    /// replayed from a CUDA graph (else enqueued eagerly)
    pub graph: bool,
    /// kernel launches and device copies of the step (graph nodes when replayed)
    pub nodes: StepNodes,
    /// frames, slot indices and frame counts of every row
    pub host_to_device_bytes: usize,
    /// the batch's logits
    pub device_to_host_bytes: usize,
}

pub(crate) fn backend_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Backend {
        backend: "cuda".into(),
        why: e.to_string(),
    }
}

pub(crate) fn kernel_err(e: KernelError) -> EngineError {
    match e {
        KernelError::DriverUnavailable(why) | KernelError::NvrtcUnavailable(why) => {
            EngineError::DeviceUnavailable {
                device: "cuda".into(),
                why,
            }
        }
        KernelError::IncludeNotFound { .. } => EngineError::DeviceUnavailable {
            device: "cuda".into(),
            why: e.to_string(),
        },
        other => backend_err(other),
    }
}

/// The CUDA backend (see the module docs).
pub struct CudaBackend {
    inner: Inner,
}

enum Inner {
    F16(Box<Runner<half::f16>>),
    F32(Box<Runner<f32>>),
}

/// `$r.$call` on whichever runner `$inner` holds.
macro_rules! runner {
    ($inner:expr, $r:ident => $call:expr) => {
        match $inner {
            Inner::F16($r) => $call,
            Inner::F32($r) => $call,
        }
    };
}

impl CudaBackend {
    /// Lower `model` into its plan, open device `config.ordinal`, compile the kernels
    /// (NVRTC, once per process), upload the weights and allocate the workspace for
    /// `config.reserve_batch` streams.
    pub fn new(model: Arc<Model>, config: &CudaConfig) -> Result<CudaBackend> {
        let plan = Plan::lower(&model)?;
        let size = model.input_size();
        let inner = match config.precision {
            Precision::F16 => Inner::F16(Box::new(Runner::new(plan, size, config)?)),
            Precision::F32 => Inner::F32(Box::new(Runner::new(plan, size, config)?)),
        };
        Ok(CudaBackend { inner })
    }

    /// Is a CUDA device usable here (libcuda loads and reports a device, libnvrtc loads)?
    pub fn available() -> std::result::Result<(), String> {
        kc::driver_available().map_err(|e| e.to_string())?;
        kc::nvrtc::nvrtc_available()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn precision(&self) -> Precision {
        match &self.inner {
            Inner::F16(_) => Precision::F16,
            Inner::F32(_) => Precision::F32,
        }
    }

    /// The plan this backend walks.
    pub fn plan(&self) -> &Plan {
        runner!(&self.inner, r => r.plan())
    }

    /// What the last step issued; `None` before the first step.
    pub fn last_step(&self) -> Option<StepStats> {
        runner!(&self.inner, r => r.last_step())
    }

    /// Device bytes of the uploaded weights.
    pub fn weight_bytes(&self) -> usize {
        runner!(&self.inner, r => r.weight_bytes())
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        runner!(&self.inner, r => r.name())
    }
    fn open_slot(&mut self, slot: usize) -> Result<()> {
        runner!(&mut self.inner, r => r.open_slot(slot))
    }
    fn reset_slot(&mut self, slot: usize) -> Result<()> {
        runner!(&mut self.inner, r => r.reset_slot(slot))
    }
    fn close_slot(&mut self, slot: usize) {
        runner!(&mut self.inner, r => r.close_slot(slot))
    }
    fn state_bytes_per_slot(&self) -> usize {
        runner!(&self.inner, r => r.state_bytes_per_slot())
    }
    fn max_batch(&self) -> usize {
        runner!(&self.inner, r => r.max_batch())
    }
    fn step(&mut self, slots: &[usize], frames: &[&[u8]], logits: &mut [f32]) -> Result<()> {
        runner!(&mut self.inner, r => r.step(slots, frames, logits))
    }
}
