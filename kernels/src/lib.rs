//! # vigil-kernels
//!
//! The compute kernels of a batched causal MoViNet step, in two twins with the same names
//! and contracts:
//! - [`cpu`] — float32 reference implementations, multi-threaded with rayon (they run in
//!   whatever rayon pool the caller installs). They are the engine's CPU backend and the
//!   numerical twin every CUDA kernel is tested against.
//! - `cuda` — the CUDA C++ sources (`kernels/cuda/*.cu`, compiled at run time with NVRTC
//!   through cudarc) and their launch code.
//!
//! Shared vocabulary: [`Activation`], [`Conv2dGeom`] (TF `SAME` geometry, asymmetric at
//! stride 2). All tensors are NHWC, batch-major: `[B, H, W, C]` with C contiguous.
//! Per-stream state lives in slot pools (`[slots, ...]`); kernels receive the batch's
//! slot indices and each stream's frame index `t` (frames already processed), so state is
//! read and written where it lives.

pub mod cpu;
pub mod cuda;

pub use cuda::{CudaKernels, KernelError, Precision, Storage};

/// Element-wise activation applied in a kernel's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    Relu6,
    /// `x * relu6(x + 3) / 6`
    HardSwish,
    /// `x * sigmoid(x)`
    Swish,
}

impl Activation {
    /// Apply to one value.
    // max/min rather than clamp: the same result for finite inputs, and it vectorizes.
    #[allow(clippy::manual_clamp)]
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.max(0.0).min(6.0),
            Activation::HardSwish => x * (x + 3.0).max(0.0).min(6.0) * (1.0 / 6.0),
            Activation::Swish => x / (1.0 + (-x).exp()),
        }
    }

    /// Apply to every value of `xs` (the match is outside the loop, so it vectorizes).
    #[allow(clippy::manual_clamp)]
    #[inline(always)]
    pub fn apply_slice(self, xs: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
            Activation::Relu6 => xs.iter_mut().for_each(|x| *x = x.max(0.0).min(6.0)),
            Activation::HardSwish => xs
                .iter_mut()
                .for_each(|x| *x = *x * (*x + 3.0).max(0.0).min(6.0) * (1.0 / 6.0)),
            Activation::Swish => xs.iter_mut().for_each(|x| *x /= 1.0 + (-*x).exp()),
        }
    }

    /// Stable numeric id used by the CUDA kernels (`ACT_*` in `common.cuh`).
    pub fn id(self) -> i32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 2,
            Activation::HardSwish => 3,
            Activation::Swish => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::HardSwish => "hard-swish",
            Activation::Swish => "swish",
        }
    }
}

/// Geometry of a 2-D window op (conv, depthwise, pool) with TF padding resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Conv2dGeom {
    /// TF `SAME`: out = ceil(in / stride); total pad = max((out-1)*s + k - in, 0),
    /// before = total / 2 (floor), after = the rest.
    pub fn same(in_h: usize, in_w: usize, k_h: usize, k_w: usize, stride: usize) -> Conv2dGeom {
        let out_h = in_h.div_ceil(stride);
        let out_w = in_w.div_ceil(stride);
        let pad_h = ((out_h - 1) * stride + k_h).saturating_sub(in_h);
        let pad_w = ((out_w - 1) * stride + k_w).saturating_sub(in_w);
        Conv2dGeom {
            in_h,
            in_w,
            out_h,
            out_w,
            k_h,
            k_w,
            stride,
            pad_top: pad_h / 2,
            pad_left: pad_w / 2,
        }
    }

    /// TF `VALID`: no padding.
    pub fn valid(in_h: usize, in_w: usize, k_h: usize, k_w: usize, stride: usize) -> Conv2dGeom {
        Conv2dGeom {
            in_h,
            in_w,
            out_h: (in_h - k_h) / stride + 1,
            out_w: (in_w - k_w) / stride + 1,
            k_h,
            k_w,
            stride,
            pad_top: 0,
            pad_left: 0,
        }
    }

    pub fn in_pixels(&self) -> usize {
        self.in_h * self.in_w
    }

    pub fn out_pixels(&self) -> usize {
        self.out_h * self.out_w
    }
}
