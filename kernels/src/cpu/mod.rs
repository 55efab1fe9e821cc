//! CPU twins: the float32 reference kernels of a batched causal MoViNet step.
//!
//! Each function here is one kernel contract; the CUDA kernel of the same name computes
//! the same thing (fp16 storage / fp32 accumulation, or fp32 in verification mode) and is
//! tested against it. Work is split with rayon over output rows (and, for small matrices,
//! output columns), so these run in whatever pool the caller installs; a one-thread pool
//! runs them sequentially. Nothing here allocates.
//!
//! Layouts: activations `[B, H, W, C]` (or `[B, P, C]` with `P = H * W`), C contiguous;
//! state pools `[slots, ...]` indexed by the batch's slot numbers; `t` = frames the stream
//! has already processed (0 for its first frame).
//!
//! One module per kernel family, like the `.cu` files: [`preprocess`], [`conv2d`],
//! [`pointwise`] (with [`gemv`] for int8-stored weights), [`window2d`], [`temporal`], [`reduce`]; [`tasks`] and [`isa`] hold how
//! work is split across threads and instruction sets.

mod aligned;
pub mod isa;
pub(crate) mod simd;
mod tasks;
pub(crate) mod tile;

pub mod conv2d;
pub mod gemv;
pub mod pointwise;
pub mod preprocess;
pub mod reduce;
pub mod temporal;
pub mod window2d;
// transformer kernels (CLIP / X-CLIP): attention, GELU family, layer/L2 norms, blocked linear, exp/erf
pub mod attention;
pub mod gelu;
pub mod layernorm;
pub mod linear;
pub mod mathfn;

#[cfg(test)]
mod test_util;

pub use aligned::AlignedVec;
pub use conv2d::{conv2d, conv2d_on};
pub use gemv::{gemv_i8, Int8Weights, GEMV_MAX_ROWS};
pub use isa::Isa;
pub use pointwise::{
    panel_width, pointwise, pointwise_packed, GemmPrecision, PackedWeights, BF16_MIN_K,
};
pub use preprocess::{preprocess_u8, preprocess_u8_on};
pub use reduce::{channel_gate, channel_gate_on, cumulative_pool, spatial_mean, spatial_mean_on};
pub use temporal::{temporal_causal, temporal_causal_on};
pub use window2d::{avg_pool2d, avg_pool2d_on, depthwise2d, depthwise2d_on};
