//! [`EngineError`]: the one error enum of the engine. Variants name the file, layer,
//! tensor, shape or stream that broke, and say what to do about it.

use std::path::PathBuf;

/// Result alias for the engine crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a TFLite model: {why} — pass an official MoViNet streaming .tflite export"
    )]
    NotTflite { path: PathBuf, why: String },
    #[error("{path} is not a MoViNet stream export: {why}")]
    NotMovinet { path: PathBuf, why: String },
    #[error("unsupported in {layer}: {why}")]
    Unsupported { layer: String, why: String },
    #[error("label file {path} has {found} labels but the model has {expected} classes — use the label file that belongs to this model")]
    LabelCount {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error("frame {index} has {found} bytes, the model takes {expected} ({size}x{size} RGB u8) — scale frames to the model's input size")]
    FrameSize {
        index: usize,
        found: usize,
        expected: usize,
        size: usize,
    },
    #[error("fixture {path}: {why}")]
    Fixture { path: PathBuf, why: String },
    #[error("session {0} does not exist (closed, or never opened)")]
    NoSession(u64),
    #[error(
        "session {0} appears twice in one batch: a stream advances at most one frame per step"
    )]
    DuplicateSession(u64),
    #[error("batch mismatch: {0}")]
    Batch(String),
    #[error("device {device} is not available: {why} — check the NVIDIA driver, or use --device cpu (or auto, which falls back to the CPU)")]
    DeviceUnavailable { device: String, why: String },
    #[error("--precision {precision} cannot run on {device}: {why} — {hint}")]
    Precision {
        precision: &'static str,
        device: String,
        why: String,
        hint: &'static str,
    },
    #[error("backend {backend} failed: {why}")]
    Backend { backend: String, why: String },
    #[error("cannot lower the model into a plan at {layer}: {why} — its layers do not fit together (a hand-built Model, or a bug in import)")]
    Plan { layer: String, why: String },
    #[error("{path} is not a usable CLIP model: {why} — pass a Hugging Face CLIP or X-CLIP folder (config.json + model.safetensors), e.g. a local copy of openai/clip-vit-base-patch32")]
    NotClip { path: PathBuf, why: String },
    #[error("{path}: tensor `{tensor}` is missing ({model}) — model.safetensors does not match config.json; re-download the model folder")]
    TensorMissing {
        path: PathBuf,
        tensor: String,
        model: String,
    },
    #[error("{path}: tensor `{tensor}` has shape {found:?}, config.json implies {expected:?} — config.json and model.safetensors belong to different models")]
    TensorShape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: tensor `{tensor}` is {dtype} — CLIP weights must be F32, F16 or BF16")]
    TensorDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error("CLIP input: {0}")]
    ClipInput(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}
