//! [`Engine`]: sessions over a backend's slot pool, and the batched [`Engine::step`].
//!
//! A session is one stream's carried state. Sessions can be opened, reset and closed at
//! any time; their ids are never reused, so a stale id is an error, not another stream.

use std::sync::Arc;

use vigil_kernels::cpu::Isa;

use crate::backend::{Backend, Device};
use crate::cpu::CpuBackend;
use crate::model::Model;
use crate::precision::ComputePrecision;
use crate::{EngineError, Result};

/// Identifies one stream's session in an [`Engine`]: its slot and the slot's generation,
/// so an id from a closed session never aliases the slot's next occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    slot: u32,
    generation: u32,
}

impl SessionId {
    /// A stable number for logs and errors.
    pub fn as_u64(self) -> u64 {
        ((self.generation as u64) << 32) | self.slot as u64
    }
    /// The slot this session's state lives in.
    pub fn slot(self) -> usize {
        self.slot as usize
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.slot, self.generation)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    generation: u32,
    open: bool,
    /// step counter value when this slot was last put in a batch (duplicate check)
    stamp: u64,
}

/// How to build an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub device: Device,
    /// Worker threads for the CPU backend; 0 = one per core.
    pub threads: usize,
    /// Largest micro-batch the CPU backend runs through the model at once; 0 = default.
    pub micro_batch: usize,
    /// The arithmetic to run in: `Auto` is fp16 storage on a GPU and fp32 on the CPU;
    /// fp16 is GPU-only, bf16 CPU-only (AVX-512 BF16). See [`ComputePrecision`].
    pub precision: ComputePrecision,
    /// Largest batch (streams per step) a scheduler should form; 0 = the device's
    /// default ([`crate::DEFAULT_CPU_MAX_BATCH`] on the CPU, [`crate::DEFAULT_CUDA_MAX_BATCH`] on a GPU,
    /// where it also sets how far the CUDA-graph buckets reach). [`Engine::max_batch`]
    /// reports the value in force.
    pub max_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            device: Device::Cpu,
            threads: 0,
            micro_batch: 0,
            precision: ComputePrecision::Auto,
            max_batch: 0,
        }
    }
}

/// A model, a backend and the sessions it carries.
pub struct Engine {
    model: Arc<Model>,
    backend: Box<dyn Backend>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    steps: u64,
    /// scratch for a step's slot list, reused (no allocation per step once warm)
    batch_slots: Vec<usize>,
    max_batch: usize,
}

impl Engine {
    /// Build an engine for `model` on the configured device.
    pub fn new(model: Arc<Model>, config: &EngineConfig) -> Result<Engine> {
        let precision = config.precision;
        let cpu = |model: &Arc<Model>| -> Result<Box<dyn Backend>> {
            let gemm = precision.for_cpu(Isa::active())?;
            Ok(Box::new(CpuBackend::with_precision(
                model.clone(),
                config.threads,
                config.micro_batch,
                gemm,
            )?))
        };
        let backend: Box<dyn Backend> = match config.device {
            Device::Cpu => cpu(&model)?,
            Device::Cuda => cuda_backend(&model, config, precision.for_gpu()?)?,
            // bf16 runs on the CPU only: no GPU to try
            Device::Auto if precision == ComputePrecision::Bf16 => cpu(&model)?,
            Device::Auto => match cuda_backend(&model, config, precision.for_gpu()?) {
                Ok(b) => b,
                Err(e) if precision == ComputePrecision::Fp16 => {
                    return Err(EngineError::Precision {
                        precision: "fp16",
                        device: "the CPU".into(),
                        why: format!("fp16 is GPU-only and no GPU is usable ({e})"),
                        hint: "use --precision auto or fp32",
                    });
                }
                Err(e) => {
                    tracing::info!("no usable GPU ({e}); running on the CPU");
                    cpu(&model)?
                }
            },
        };
        let mut engine = Engine::with_backend(model, backend);
        if config.max_batch > 0 {
            engine.max_batch = config.max_batch;
        }
        Ok(engine)
    }

    /// Build an engine over an explicit backend (max batch: the backend's).
    pub fn with_backend(model: Arc<Model>, backend: Box<dyn Backend>) -> Engine {
        Engine {
            max_batch: backend.max_batch(),
            model,
            backend,
            slots: Vec::new(),
            free: Vec::new(),
            steps: 0,
            batch_slots: Vec::new(),
        }
    }

    /// The largest batch a scheduler should form for this engine: [`EngineConfig::max_batch`],
    /// or the backend's default ([`crate::DEFAULT_CPU_MAX_BATCH`], [`crate::DEFAULT_CUDA_MAX_BATCH`]).
    /// [`Engine::step`] accepts larger batches; they may run less efficiently.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Name of the backend, e.g. `cpu (2 threads)`.
    pub fn device_name(&self) -> String {
        self.backend.name()
    }

    /// Open a new session with zero state.
    pub fn open_session(&mut self) -> Result<SessionId> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.slots.len() >= u32::MAX as usize {
                    return Err(EngineError::Config("too many sessions".into()));
                }
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        if let Err(e) = self.backend.open_slot(slot) {
            self.free.push(slot);
            return Err(e);
        }
        let entry = &mut self.slots[slot];
        entry.open = true;
        let id = SessionId {
            slot: slot as u32,
            generation: entry.generation,
        };
        tracing::debug!(session = %id, "session opened");
        Ok(id)
    }

    /// Zero a session's state: the next frame is treated as the first of a new stream.
    pub fn reset_session(&mut self, id: SessionId) -> Result<()> {
        let slot = self.slot_of(id)?;
        self.backend.reset_slot(slot)
    }

    /// Close a session and release its state.
    pub fn close_session(&mut self, id: SessionId) -> Result<()> {
        let slot = self.slot_of(id)?;
        self.backend.close_slot(slot);
        let entry = &mut self.slots[slot];
        entry.open = false;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        tracing::debug!(session = %id, "session closed");
        Ok(())
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.slots.iter().filter(|s| s.open).count()
    }

    /// Bytes of carried state per session on this backend.
    pub fn state_bytes_per_session(&self) -> usize {
        self.backend.state_bytes_per_slot()
    }

    /// Number of classes (length of one stream's logits).
    pub fn classes(&self) -> usize {
        self.model.classes()
    }

    /// Advance each session in `batch` by one frame. `frames[i]` is `batch[i]`'s RGB u8
    /// frame at the model's input size; `logits` receives `batch.len() * classes` values,
    /// stream i at `[i * classes..(i + 1) * classes]`. A stream's logits do not depend
    /// on which other streams share its batch.
    pub fn step(
        &mut self,
        batch: &[SessionId],
        frames: &[&[u8]],
        logits: &mut [f32],
    ) -> Result<()> {
        if batch.len() != frames.len() {
            return Err(EngineError::Batch(format!(
                "{} sessions but {} frames",
                batch.len(),
                frames.len()
            )));
        }
        let classes = self.model.classes();
        if logits.len() != batch.len() * classes {
            return Err(EngineError::Batch(format!(
                "logits buffer holds {} values, {} streams x {} classes need {}",
                logits.len(),
                batch.len(),
                classes,
                batch.len() * classes
            )));
        }
        let expected = self.model.frame_bytes();
        for (i, f) in frames.iter().enumerate() {
            if f.len() != expected {
                return Err(EngineError::FrameSize {
                    index: i,
                    found: f.len(),
                    expected,
                    size: self.model.input_size(),
                });
            }
        }
        self.steps += 1;
        let stamp = self.steps;
        let mut slots = std::mem::take(&mut self.batch_slots);
        slots.clear();
        for &id in batch {
            let slot = match self.slot_of(id) {
                Ok(s) => s,
                Err(e) => {
                    self.batch_slots = slots;
                    return Err(e);
                }
            };
            if self.slots[slot].stamp == stamp {
                self.batch_slots = slots;
                return Err(EngineError::DuplicateSession(id.as_u64()));
            }
            self.slots[slot].stamp = stamp;
            slots.push(slot);
        }
        let span = tracing::trace_span!("step", batch = batch.len());
        let _enter = span.enter();
        let r = self.backend.step(&slots, frames, logits);
        self.batch_slots = slots;
        r
    }

    fn slot_of(&self, id: SessionId) -> Result<usize> {
        match self.slots.get(id.slot()) {
            Some(s) if s.open && s.generation == id.generation => Ok(id.slot()),
            _ => Err(EngineError::NoSession(id.as_u64())),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_backend(
    model: &Arc<Model>,
    config: &EngineConfig,
    precision: vigil_kernels::Precision,
) -> Result<Box<dyn Backend>> {
    let max_batch = match config.max_batch {
        0 => crate::backend::DEFAULT_CUDA_MAX_BATCH,
        n => n,
    };
    let cfg = crate::cuda::CudaConfig {
        precision,
        max_batch,
        reserve_batch: max_batch.min(64),
        ..Default::default()
    };
    Ok(Box::new(crate::cuda::CudaBackend::new(
        model.clone(),
        &cfg,
    )?))
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend(
    _model: &Arc<Model>,
    _config: &EngineConfig,
    _precision: vigil_kernels::Precision,
) -> Result<Box<dyn Backend>> {
    Err(EngineError::DeviceUnavailable {
        device: "cuda".into(),
        why: "this build has no CUDA backend (built without the `cuda` feature)".into(),
    })
}
