//! The CUDA twin of [`crate::cpu`]: CUDA C++ sources (`kernels/cuda/*.cu`), compiled at
//! run time with NVRTC through cudarc, and their typed, stream-ordered launch code.
//!
//! Main types:
//! - [`CudaKernels`] — every kernel loaded into one context ([`CudaKernels::compile`]);
//!   its methods have the CPU twins' names and contracts (`preprocess_u8`, `conv2d`,
//!   `pointwise`, `pointwise_gated`, `depthwise2d`, `avg_pool2d`, `temporal_causal`,
//!   `spatial_mean`, `cumulative_pool`, `channel_gate`; the transformer ops `linear`,
//!   `layer_norm`, `attention` in [`transformer`]) and take device buffers
//!   (`CudaSlice`/`CudaView`/`CudaViewMut`) plus a `CudaStream`. They only enqueue
//!   kernels: no allocation, no synchronisation, so a step can be captured in a CUDA graph.
//! - [`Precision`] / [`Storage`] — fp16 storage with fp32 accumulation (`half::f16`,
//!   tensor cores for `pointwise`) or fp32 everywhere (verification mode). The element
//!   type of the buffers picks the kernel variant (`{op}_f16` / `{op}_f32`), so a
//!   precision/buffer mismatch cannot compile. Biases, scales and the cumulative-pool
//!   sums are always fp32; weights and activations use the storage type.
//! - [`nvrtc`] — the embedded sources, [`nvrtc::compile_only`] / [`nvrtc::nvrtc_check`]
//!   (NVRTC only, no driver/GPU: CI), library lookup and include-dir discovery.
//! - [`ptxas`] / [`occupancy`] — the static resource gate: ptxas's per-kernel registers,
//!   shared memory, stack and spills (NVRTC `-v`, no GPU) and the theoretical occupancy
//!   they give at each kernel's launch block size on sm_80/86/89/90.
//! - [`twins`] — CPU twins of the fused GPU kernels, composed from [`crate::cpu`].
//! - [`KernelError`] — the crate's one error enum.
//! - [`driver_available`] / [`open_context`] — probe libcuda without panicking;
//!   [`driver_is_emulated`] — is it Vigil's CPU emulation of a driver (vigil-cuda-emu)?

mod error;
mod launch;
pub mod nvrtc;
pub mod occupancy;
pub mod ptxas;
pub mod transformer;
pub mod twins;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

pub use cudarc;
use cudarc::driver::{CudaContext, DeviceRepr, ValidAsZeroBits};
pub use error::KernelError;
pub use launch::CudaKernels;
pub use transformer::{gelu_id, DeviceRows, ATTENTION_MAX_HEAD_DIM};

/// Storage precision of a CUDA step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// fp16 storage (activations, weights, state), fp32 accumulation, tensor cores.
    #[default]
    F16,
    /// fp32 everywhere (verification mode; compared with the CPU twins at ~1e-5).
    F32,
}

impl Precision {
    /// Kernel-name suffix: `f16` or `f32`.
    pub fn suffix(self) -> &'static str {
        match self {
            Precision::F16 => "f16",
            Precision::F32 => "f32",
        }
    }

    /// Bytes per stored element.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F16 => 2,
            Precision::F32 => 4,
        }
    }
}

/// An element type the kernels store: `half::f16` ([`Precision::F16`]) or `f32`.
pub trait Storage:
    DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + std::fmt::Debug + 'static
{
    const PRECISION: Precision;
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
}

impl Storage for half::f16 {
    const PRECISION: Precision = Precision::F16;
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

impl Storage for f32 {
    const PRECISION: Precision = Precision::F32;
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}

/// Is libcuda loadable and does it report at least one device? Never panics.
pub fn driver_available() -> Result<(), KernelError> {
    // SAFETY: `is_culib_present` only tries to dlopen candidate names.
    let present =
        catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false);
    if !present {
        return Err(KernelError::DriverUnavailable(format!(
            "no loadable libcuda among {:?}",
            cudarc::get_lib_name_candidates("cuda")
        )));
    }
    let count = catch_unwind(CudaContext::device_count)
        .map_err(|_| KernelError::DriverUnavailable("libcuda lacks a required symbol".into()))?
        .map_err(|e| {
            KernelError::DriverUnavailable(format!("cuInit/cuDeviceGetCount failed: {e}"))
        })?;
    if count < 1 {
        return Err(KernelError::DriverUnavailable(
            "the driver reports no CUDA device".into(),
        ));
    }
    Ok(())
}

/// Open (retain) the primary context of device `ordinal`, after [`driver_available`].
/// Never panics on a machine without libcuda or a GPU.
pub fn open_context(ordinal: usize) -> Result<Arc<CudaContext>, KernelError> {
    driver_available()?;
    catch_unwind(AssertUnwindSafe(|| CudaContext::new(ordinal)))
        .map_err(|_| KernelError::DriverUnavailable("CudaContext::new panicked".into()))?
        .map_err(|e| KernelError::DriverUnavailable(format!("device {ordinal}: {e}")))
}

/// Is the CUDA driver this process loaded Vigil's emulator (vigil-cuda-emu, which runs
/// these kernels on the CPU for tests)? Numbers measured on it are not GPU measurements.
/// Call it once a context is open (it looks at the loaded libcuda; false if none loads).
pub fn driver_is_emulated() -> bool {
    catch_unwind(|| {
        // SAFETY: `is_culib_present` only tries to dlopen candidate names; `culib` returns
        // the library cudarc loaded; looking a symbol up has no side effects.
        unsafe {
            cudarc::driver::sys::is_culib_present()
                && cudarc::driver::sys::culib()
                    .get::<*const ()>(b"vigilEmuVersion\0")
                    .is_ok()
        }
    })
    .unwrap_or(false)
}
