//! Helpers of the GPU twin tests (`gpu_twins`, `gpu_twins_transformer`): CUDA device 0 of
//! the driver [`vigil_cuda_emu::install`] provides, with every kernel loaded ([`gpu`]); a
//! seeded [`Rng`]; fp16/fp32 quantisation of inputs ([`quant`]); NaN-poisoned outputs
//! ([`poisoned`]); and the element-wise comparison ([`assert_close`], [`assert_within`]).
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use vigil_kernels::cuda::cudarc::driver::{CudaContext, CudaSlice, CudaStream, DeviceRepr};
use vigil_kernels::cuda::{self, nvrtc, CudaKernels, Precision, Storage};

pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub kernels: CudaKernels,
}

/// CUDA device 0 with every kernel loaded; panics (fails the test) when it cannot be set up.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let driver = vigil_cuda_emu::install()
            .unwrap_or_else(|e| panic!("no CUDA driver, real or emulated: {e}"));
        let ctx = cuda::open_context(0)
            .unwrap_or_else(|e| panic!("CUDA device 0 of the {driver} cannot be initialised: {e}"));
        nvrtc::nvrtc_available().unwrap_or_else(|e| panic!("NVRTC is not available: {e}"));
        let kernels = CudaKernels::compile(&ctx)
            .unwrap_or_else(|e| panic!("CudaKernels::compile failed: {e}"));
        eprintln!(
            "GPU tests on {} ({driver}), kernels built by NVRTC for {}",
            ctx.name().unwrap_or_default(),
            kernels.arch()
        );
        Gpu { ctx, kernels }
    })
}

/// SplitMix64: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Quantize to the storage type: (device-side host data, the exact values as f32).
pub fn quant<T: Storage>(v: &[f32]) -> (Vec<T>, Vec<f32>) {
    let q: Vec<T> = v.iter().map(|&x| T::from_f32(x)).collect();
    let back = q.iter().map(|&x| x.to_f32()).collect();
    (q, back)
}

pub fn tol(p: Precision) -> (f32, f32) {
    match p {
        Precision::F32 => (2e-5, 2e-5),
        Precision::F16 => (1e-2, 1e-2),
    }
}

pub fn stream(g: &Gpu) -> Arc<CudaStream> {
    g.ctx.new_stream().expect("new stream")
}

pub fn up<T: DeviceRepr>(s: &Arc<CudaStream>, v: &[T]) -> CudaSlice<T> {
    s.clone_htod(v).expect("htod")
}

pub fn poisoned<T: Storage>(s: &Arc<CudaStream>, n: usize) -> CudaSlice<T> {
    up(s, &vec![T::from_f32(f32::NAN); n])
}

pub fn down<T: Storage>(s: &Arc<CudaStream>, d: &CudaSlice<T>) -> Vec<f32> {
    s.clone_dtoh(d)
        .expect("dtoh")
        .into_iter()
        .map(|x| x.to_f32())
        .collect()
}

#[track_caller]
pub fn assert_close(what: &str, p: Precision, got: &[f32], want: &[f32]) {
    assert_within(what, p, tol(p), got, want)
}

/// `|got - want| <= atol + rtol * |want|` for every element, `(atol, rtol) = tol`; a
/// non-finite `got` (an unwritten, poisoned output) always fails.
#[track_caller]
pub fn assert_within(what: &str, p: Precision, tol: (f32, f32), got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (atol, rtol) = tol;
    let mut bad = 0usize;
    let mut first = None;
    let mut worst = 0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        if !g.is_finite() || err > atol + rtol * w.abs() {
            bad += 1;
            first.get_or_insert((i, g, w));
        }
        if err.is_finite() {
            worst = worst.max(err);
        }
    }
    if let Some((i, g, w)) = first {
        panic!("{what} [{p:?}]: {bad}/{} elements off (first at {i}: got {g}, want {w}); max abs err {worst}", got.len());
    }
}
