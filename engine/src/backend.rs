//! [`Backend`]: the contract every compute backend fulfils, and [`Device`], the user's
//! choice of one.
//!
//! A backend owns the per-stream state of its slots (a slot pool: host memory for the
//! CPU, device memory for CUDA). [`crate::Engine`] maps sessions to slots; a step gets the
//! batch's slot indices, so no state is gathered or copied between steps.

use crate::Result;

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The multi-threaded float32 CPU backend.
    #[default]
    Cpu,
    /// The CUDA backend (fails with a clear error when no driver or GPU is present).
    Cuda,
    /// CUDA when available, else the CPU.
    Auto,
}

impl std::str::FromStr for Device {
    type Err = crate::EngineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            other => Err(crate::EngineError::Config(format!(
                "unknown device {other:?} — use cpu, cuda or auto"
            ))),
        }
    }
}

/// The default largest batch on the CPU: beyond a few streams per thread a bigger step
/// only adds latency (BENCHMARKS.md: throughput is flat from 8 to 256 streams on 2 cores).
pub const DEFAULT_CPU_MAX_BATCH: usize = 64;

/// The default largest batch on a GPU: thousands of streams per step are what fill one
/// (issue 7); graph buckets grow geometrically up to it.
pub const DEFAULT_CUDA_MAX_BATCH: usize = 4096;

/// One batched causal step over a slot pool of stream states.
pub trait Backend: Send {
    /// Human-readable name, e.g. `cpu (4 threads)`.
    fn name(&self) -> String;
    /// Make slot `slot` hold a fresh, zero state (allocating it if needed).
    fn open_slot(&mut self, slot: usize) -> Result<()>;
    /// Zero the state of an open slot.
    fn reset_slot(&mut self, slot: usize) -> Result<()>;
    /// Release the state of a slot; its memory may be reused by a later `open_slot`.
    fn close_slot(&mut self, slot: usize);
    /// Bytes of carried state per stream.
    fn state_bytes_per_slot(&self) -> usize;
    /// The largest batch this backend is built for: what a scheduler should cap a step
    /// at. Larger batches still run (a backend may run them less efficiently).
    fn max_batch(&self) -> usize {
        DEFAULT_CPU_MAX_BATCH
    }
    /// Advance each slot in `slots` by one frame. `frames[i]` is the RGB u8 frame
    /// (model size, HWC) for `slots[i]`; `logits` receives `slots.len() * classes` values.
    fn step(&mut self, slots: &[usize], frames: &[&[u8]], logits: &mut [f32]) -> Result<()>;
}
