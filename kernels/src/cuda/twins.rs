//! CPU twins of the fused CUDA kernels, composed from the [`crate::cpu`] kernels so that a
//! fused GPU kernel is tested against exactly the unfused reference.
//!
//! Main items: [`pointwise_gated`] (twin of [`super::CudaKernels::pointwise_gated`]:
//! `channel_gate` prologue + `pointwise`). Nothing here allocates; scratch is passed in.

use crate::{cpu, Activation};

/// `y = pointwise(channel_gate(x, gate, scale), w, bias, act, residual)` with `x [M, K]`
/// viewed as `[M / p, p, K]`, `gate [M / p, K]`. `scratch` (at least `M * K`) receives the
/// gated copy of `x`; `x` is left untouched.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_gated(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: &[f32],
    act: Activation,
    residual: Option<&[f32]>,
    gate: &[f32],
    p: usize,
    scale: f32,
    scratch: &mut [f32],
    y: &mut [f32],
) {
    #[allow(clippy::manual_is_multiple_of)] // MSRV 1.85: is_multiple_of is 1.87+
    let whole = p > 0 && m % p == 0;
    assert!(
        whole,
        "pointwise_gated: M = {m} is not a multiple of p = {p}"
    );
    let scratch = &mut scratch[..m * k];
    scratch.copy_from_slice(&x[..m * k]);
    cpu::channel_gate(scratch, m / p, p, k, gate, scale);
    cpu::pointwise(scratch, m, k, w, n, bias, act, residual, y);
}
