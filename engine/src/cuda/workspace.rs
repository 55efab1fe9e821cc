//! Device memory of a step and of the streams:
//! - [`Workspace`] — one device buffer per plan buffer (`batch x elements`, storage
//!   type), the step's inputs (frames, slot indices, frame counts) and their pinned host
//!   staging, plus the pinned logits read-back. Sized from the [`Plan`] for a batch size;
//!   replaced by a larger one when a bigger batch arrives.
//! - [`DeviceSlots`] — the device slot pool: per stream buffer `[slots, kt-1, P, C]`
//!   (storage type) and per cumulative pool `[slots, C]` (fp32), exactly as the CPU
//!   [`crate::session`] pools. Device slot `s` holds engine slot `s`; the scratch slots
//!   that the padding rows of a graph bucket run on come after the engine's slots.

use std::sync::Arc;

use vigil_kernels::cuda::cudarc::driver::{
    sys, CudaContext, CudaSlice, CudaStream, PinnedHostSlice,
};
use vigil_kernels::cuda::{KernelError, Storage};

use crate::plan::Plan;

/// Device activations for `batch` streams (storage type), plus the step's inputs.
pub(super) struct Workspace<T> {
    pub(super) batch: usize,
    pub(super) frames: CudaSlice<u8>,
    pub(super) slots: CudaSlice<u32>,
    pub(super) t: CudaSlice<u64>,
    /// one per plan buffer, indexed by `BufId`
    pub(super) bufs: Vec<CudaSlice<T>>,
    /// pinned host staging
    pub(super) h_frames: PinnedHostSlice<u8>,
    pub(super) h_slots: PinnedHostSlice<u32>,
    pub(super) h_t: PinnedHostSlice<u64>,
    pub(super) h_logits: PinnedHostSlice<T>,
}

impl<T: Storage> Workspace<T> {
    pub(super) fn new(
        ctx: &Arc<CudaContext>,
        s: &Arc<CudaStream>,
        batch: usize,
        plan: &Plan,
    ) -> Result<Self, KernelError> {
        let n = batch.max(1);
        let (frame, classes) = (plan.frame_len(), plan.classes());
        // SAFETY: pinned host allocations of element types for which all-zero bytes are
        // valid values (u8, u32, u64, T: ValidAsZeroBits); each is zero-filled through its
        // raw pointer, over exactly its own length, before any reference to it exists.
        let (h_frames, h_slots, h_t, h_logits) = unsafe {
            let mut f =
                ctx.alloc_pinned_with_flags::<u8>(n * frame, sys::CU_MEMHOSTALLOC_WRITECOMBINED)?;
            let mut sl = ctx.alloc_pinned_with_flags::<u32>(n, 0)?;
            let mut t = ctx.alloc_pinned_with_flags::<u64>(n, 0)?;
            let mut l = ctx.alloc_pinned_with_flags::<T>(n * classes, 0)?;
            std::ptr::write_bytes(f.as_mut_ptr()?, 0, f.len());
            std::ptr::write_bytes(sl.as_mut_ptr()?, 0, sl.len());
            std::ptr::write_bytes(t.as_mut_ptr()?, 0, t.len());
            std::ptr::write_bytes(l.as_mut_ptr()?, 0, l.len());
            (f, sl, t, l)
        };
        let bufs = plan
            .buffers()
            .iter()
            .map(|b| s.alloc_zeros::<T>((n * b.elements).max(1)))
            .collect::<Result<_, _>>()?;
        Ok(Workspace {
            batch: n,
            frames: s.alloc_zeros::<u8>(n * frame)?,
            slots: s.alloc_zeros::<u32>(n)?,
            t: s.alloc_zeros::<u64>(n)?,
            bufs,
            h_frames,
            h_slots,
            h_t,
            h_logits,
        })
    }
}

/// The device slot pool (see the module docs): `engine` engine slots, then `scratch`
/// scratch slots.
pub(super) struct DeviceSlots<T> {
    engine: usize,
    scratch: usize,
    /// per stream buffer, `[engine + scratch, values]`
    pub(super) buffers: Vec<CudaSlice<T>>,
    buffer_values: Vec<usize>,
    /// per cumulative pool, `[engine + scratch, c]`
    pub(super) pools: Vec<CudaSlice<f32>>,
    pool_c: Vec<usize>,
}

impl<T: Storage> DeviceSlots<T> {
    /// An empty pool for `plan`'s state (grow it before use).
    pub(super) fn new(s: &Arc<CudaStream>, plan: &Plan) -> Result<Self, KernelError> {
        let buffer_values: Vec<usize> = plan.stream_buffers().iter().map(|b| b.values()).collect();
        let pool_c = plan.cumulative_pools().to_vec();
        Ok(DeviceSlots {
            engine: 0,
            scratch: 0,
            buffers: buffer_values
                .iter()
                .map(|_| s.alloc_zeros::<T>(1))
                .collect::<Result<_, _>>()?,
            buffer_values,
            pools: pool_c
                .iter()
                .map(|_| s.alloc_zeros::<f32>(1))
                .collect::<Result<_, _>>()?,
            pool_c,
        })
    }

    /// Engine slots the pool holds.
    pub(super) fn engine_slots(&self) -> usize {
        self.engine
    }

    /// Scratch slots after the engine slots.
    pub(super) fn scratch_slots(&self) -> usize {
        self.scratch
    }

    /// The device slot of scratch slot `i` (`i < scratch_slots()`).
    pub(super) fn scratch_slot(&self, i: usize) -> usize {
        self.engine + i
    }

    /// Device bytes of one slot's state.
    pub(super) fn bytes_per_slot(&self) -> usize {
        self.buffer_values.iter().sum::<usize>() * std::mem::size_of::<T>()
            + self.pool_c.iter().sum::<usize>() * std::mem::size_of::<f32>()
    }

    /// Make room for at least `engine` engine slots and `scratch` scratch slots, keeping
    /// the engine slots' state (scratch contents are never kept: padding rows only
    /// write there). Returns true when device buffers moved (captured graphs hold the old
    /// addresses and must be dropped).
    pub(super) fn grow(
        &mut self,
        s: &Arc<CudaStream>,
        engine: usize,
        scratch: usize,
    ) -> Result<bool, KernelError> {
        let (engine, scratch) = (engine.max(self.engine), scratch.max(self.scratch));
        if (engine, scratch) == (self.engine, self.scratch) {
            return Ok(false);
        }
        let (old, cap) = (self.engine, engine + scratch);
        for (buf, &n) in self.buffers.iter_mut().zip(&self.buffer_values) {
            let mut new = s.alloc_zeros::<T>((cap * n).max(1))?;
            if old > 0 && n > 0 {
                s.memcpy_dtod(&buf.slice(..old * n), &mut new.slice_mut(..old * n))?;
            }
            *buf = new;
        }
        for (pool, &c) in self.pools.iter_mut().zip(&self.pool_c) {
            let mut new = s.alloc_zeros::<f32>((cap * c).max(1))?;
            if old > 0 && c > 0 {
                s.memcpy_dtod(&pool.slice(..old * c), &mut new.slice_mut(..old * c))?;
            }
            *pool = new;
        }
        self.engine = engine;
        self.scratch = scratch;
        Ok(true)
    }

    /// Zero engine slot `slot`'s state (`slot < engine_slots()`).
    pub(super) fn zero(&mut self, s: &Arc<CudaStream>, slot: usize) -> Result<(), KernelError> {
        if slot >= self.engine {
            return Err(KernelError::Shape {
                op: "zero_slot",
                detail: format!("slot {slot} of {}", self.engine),
            });
        }
        for (buf, &n) in self.buffers.iter_mut().zip(&self.buffer_values) {
            s.memset_zeros(&mut buf.slice_mut(slot * n..(slot + 1) * n))?;
        }
        for (pool, &c) in self.pools.iter_mut().zip(&self.pool_c) {
            s.memset_zeros(&mut pool.slice_mut(slot * c..(slot + 1) * c))?;
        }
        Ok(())
    }
}
