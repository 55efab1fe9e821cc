//! # Open-vocabulary labels: CLIP and X-CLIP from Hugging Face folders
//!
//! Bring-your-own-weights encoders for zero-shot labels and text search, numerically
//! matched to `transformers` (float32):
//! - [`ClipModel`] — `CLIPModel`: image and text encoders, `logits_per_image`.
//! - [`XClipModel`] — `XCLIPModel`: cross-frame video encoder, multi-frame integration,
//!   video-conditioned prompts, `logits_per_video`.
//! - [`ClipTokenizer`] — CLIP's BPE (OpenAI vocabulary), rows padded to 77.
//! - [`Preprocessor`] — RGB u8 frames to `pixel_values`, Pillow's resampling bit for bit.
//! - [`scoring`] — CLIP4Clip mean pooling on a stream: [`ZeroShotStream`]
//!   ([`EmbeddingWindow`] + [`PromptSet`]).
//! - [`SlidingClip`] — X-CLIP on a stream: the last `num_frames` frames as a clip every
//!   `stride` frames; [`XClipModel::score_clips`] against a [`VideoPromptSet`].
//! - [`ReferenceFile`] — reference tensors written by `gen_clip_fixtures.py`.
//! - [`ClipConfig`] / [`weights`] — `config.json` and `model.safetensors`, every tensor
//!   checked by name and shape ([`crate::EngineError::TensorMissing`],
//!   [`crate::EngineError::TensorShape`], [`crate::EngineError::NotClip`]).
//!
//! The encoders are one pre-LN transformer block ([`encoder`]) on the CPU kernels of
//! `vigil_kernels::cpu` (packed GEMM, attention, layer norm, GELU), batched over images
//! from any mix of streams, in caller-owned workspaces ([`ClipWorkspace`],
//! [`XClipWorkspace`]) that make warm calls allocation-free.

pub mod config;
pub mod encoder;
pub mod model;
pub mod preprocess;
pub mod reference;
pub mod scoring;
pub mod sliding;
pub mod text;
pub mod tokenizer;
pub mod vision;
pub mod weights;
pub mod xclip;

pub use config::{ClipConfig, Family};
pub use model::{ClipModel, ClipWorkspace, ImageEmbeddings, TextEmbeddings};
pub use preprocess::{PreprocessConfig, Preprocessor, Resample, RgbFrame};
pub use reference::ReferenceFile;
pub use scoring::{EmbeddingWindow, PromptSet, WindowScores, WindowSpan, ZeroShotStream};
pub use sliding::SlidingClip;
pub use tokenizer::ClipTokenizer;
pub use xclip::{
    ConditionedText, VideoEmbeddings, VideoPromptSet, XClipModel, XClipText, XClipWorkspace,
};
