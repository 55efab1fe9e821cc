//! Shared by the engine's CUDA tests: a CUDA engine on device 0 of whatever driver
//! `vigil_cuda_emu::install` provides — the real one when it loads, else the emulated
//! driver built from kernels/emu (the same kernels/cuda sources, run on the CPU). A device
//! that cannot be set up FAILS the test; nothing here skips.
#![allow(dead_code)]

use std::sync::{Arc, Once};

use vigil_engine::cuda::{CudaBackend, CudaConfig};
use vigil_engine::{Device, Engine, EngineConfig, Model};
use vigil_kernels::Precision;

/// Install the CUDA driver (real, else the emulator) and say which, once per process.
pub fn driver() -> &'static vigil_cuda_emu::Driver {
    static SAY: Once = Once::new();
    let d = vigil_cuda_emu::install()
        .unwrap_or_else(|e| panic!("no CUDA driver, real or emulated: {e}"));
    SAY.call_once(|| eprintln!("CUDA tests on the {d}"));
    d
}

/// A CUDA engine for `model`; `graphs: false` disables CUDA graphs (every step enqueued
/// eagerly), `true` keeps the default batch buckets. Panics when the device cannot be
/// initialised.
pub fn cuda_engine(model: &Arc<Model>, precision: Precision, graphs: bool) -> Engine {
    let d = driver();
    let built = if graphs {
        Engine::new(
            model.clone(),
            &EngineConfig {
                device: Device::Cuda,
                precision: precision.into(),
                ..Default::default()
            },
        )
    } else {
        CudaBackend::new(
            model.clone(),
            &CudaConfig {
                precision,
                graph_buckets: Some(Vec::new()),
                ..Default::default()
            },
        )
        .map(|b| Engine::with_backend(model.clone(), Box::new(b)))
    };
    built
        .unwrap_or_else(|e| panic!("the CUDA engine cannot be created on device 0 of the {d}: {e}"))
}
