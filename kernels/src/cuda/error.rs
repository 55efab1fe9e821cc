//! [`KernelError`]: the one error enum of the kernels crate. Variants name the kernel or
//! operation and the shape that broke; cudarc's driver and NVRTC errors are wrapped with
//! `#[from]`, and a failed NVRTC compile carries the full compile log.

use cudarc::driver::DriverError;
use cudarc::nvrtc::result::NvrtcError;

/// Everything that can go wrong in the kernels crate (almost all of it in the CUDA half).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// libnvrtc could not be loaded (or lacks a symbol): see [`crate::cuda::nvrtc`] for
    /// the library names searched and how to put the library on the search path.
    #[error("NVRTC is not available: {0} — put the directory holding libnvrtc.so.12 on LD_LIBRARY_PATH (e.g. the nvidia-cuda-nvrtc-cu12 wheel's nvidia/cuda_nvrtc/lib)")]
    NvrtcUnavailable(String),
    /// libcuda could not be loaded, or it reports no usable device.
    #[error("CUDA driver/GPU is not available: {0}")]
    DriverUnavailable(String),
    /// `cuda_fp16.h` was not found in any candidate include directory.
    #[error("cannot find cuda_fp16.h (looked in: {searched}) — set VIGIL_CUDA_INCLUDE to a CUDA include dir, e.g. the nvidia-cuda-runtime-cu12 wheel's nvidia/cuda_runtime/include")]
    IncludeNotFound { searched: String },
    /// NVRTC rejected the sources; `log` is NVRTC's full program log.
    #[error(
        "NVRTC failed to compile {program} for {arch} ({status}); options {options:?}; log:\n{log}"
    )]
    Compile {
        program: String,
        arch: String,
        status: String,
        options: Vec<String>,
        log: String,
    },
    /// The device's compute capability has no NVRTC target.
    #[error("no NVRTC target for compute capability {major}.{minor} (this NVRTC supports {supported:?})")]
    UnsupportedArch {
        major: i32,
        minor: i32,
        supported: Vec<i32>,
    },
    /// A launch argument has the wrong length or an out-of-range size.
    #[error("{op}: bad shape: {detail}")]
    Shape { op: &'static str, detail: String },
    /// The driver refused a launch.
    #[error("{kernel}: launch failed for {shape}: {source}")]
    Launch {
        kernel: &'static str,
        shape: String,
        #[source]
        source: DriverError,
    },
    /// Any other CUDA driver error (allocation, copy, module load, synchronisation).
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// A CPU kernel variant needs an instruction-set feature that this CPU, at the level
    /// in use (`VIGIL_CPU_ISA` can lower it), lacks.
    #[error("{what} need {needs}, which this CPU lacks at the instruction set in use ({isa})")]
    CpuFeature {
        what: &'static str,
        needs: &'static str,
        isa: &'static str,
    },
    /// Any other NVRTC API error.
    #[error("NVRTC call failed: {0:?}")]
    Nvrtc(#[from] NvrtcError),
}
