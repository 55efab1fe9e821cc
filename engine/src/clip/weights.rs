//! [`Weights`]: a model folder's `model.safetensors`, read once, handing out float32
//! tensors by Hugging Face key name after checking each one's presence, dtype and shape
//! against what `config.json` implies. F16 and BF16 checkpoints are widened to float32.
//! Buffers that are not weights (`*.position_ids`) are never asked for.
//! [`TensorReader::random`] hands out seeded random tensors of the asked shapes instead —
//! real-size models for speed measurements, with meaningless outputs.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::{EngineError, Result};

/// The bytes of one `model.safetensors` and the family it should hold (for errors).
pub struct Weights {
    path: PathBuf,
    bytes: Vec<u8>,
    model: String,
}

impl Weights {
    /// Read `dir/model.safetensors`; `model` names the family in errors ("CLIP", ...).
    pub fn open(dir: &Path, model: &str) -> Result<Weights> {
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| EngineError::NotClip {
            path: dir.to_path_buf(),
            why: format!("cannot read {}: {e}", path.display()),
        })?;
        // validate the header once, so `reader` cannot fail later
        SafeTensors::deserialize(&bytes).map_err(|e| EngineError::NotClip {
            path: path.clone(),
            why: format!("not a safetensors file: {e}"),
        })?;
        Ok(Weights {
            path,
            bytes,
            model: model.to_string(),
        })
    }

    /// A reader over the tensors (borrows the file's bytes).
    pub fn reader(&self) -> Result<TensorReader<'_>> {
        let st = SafeTensors::deserialize(&self.bytes).map_err(|e| EngineError::NotClip {
            path: self.path.clone(),
            why: format!("not a safetensors file: {e}"),
        })?;
        Ok(TensorReader {
            source: Source::File { w: self, st },
        })
    }
}

enum Source<'a> {
    File { w: &'a Weights, st: SafeTensors<'a> },
    Random { seed: u64 },
}

/// Hands out tensors by name, checked against an expected shape.
pub struct TensorReader<'a> {
    source: Source<'a>,
}

impl TensorReader<'_> {
    /// Seeded random tensors of whatever shape is asked for: values uniform in ±0.05
    /// (LayerNorm weights around 1), `logit_scale` ln(100). For benchmarks only.
    pub fn random(seed: u64) -> TensorReader<'static> {
        TensorReader {
            source: Source::Random { seed },
        }
    }

    /// Tensor `name` as float32, which must have exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (w, st) = match &self.source {
            Source::File { w, st } => (*w, st),
            Source::Random { seed } => return Ok(random_tensor(*seed, name, shape)),
        };
        let view = st.tensor(name).map_err(|_| EngineError::TensorMissing {
            path: w.path.clone(),
            tensor: name.to_string(),
            model: w.model.clone(),
        })?;
        if view.shape() != shape {
            return Err(EngineError::TensorShape {
                path: w.path.clone(),
                tensor: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data = view.data();
        let words = |n: usize| data.chunks_exact(n);
        Ok(match view.dtype() {
            Dtype::F32 => words(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => words(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => words(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(EngineError::TensorDtype {
                    path: w.path.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                })
            }
        })
    }

    /// A scalar stored as shape `[]` (or `[1]`, as some exports write it).
    pub fn scalar(&self, name: &str) -> Result<f32> {
        let st = match &self.source {
            Source::File { st, .. } => st,
            Source::Random { .. } => return Ok(100f32.ln()),
        };
        let shape = st.tensor(name).map(|v| v.shape().to_vec());
        let want: &[usize] = if matches!(shape.as_deref(), Ok([1])) {
            &[1]
        } else {
            &[]
        };
        Ok(self.tensor(name, want)?[0])
    }
}

/// Seeded values for `name` (xorshift, seeded by the name's FNV hash).
fn random_tensor(seed: u64, name: &str, shape: &[usize]) -> Vec<f32> {
    let mut h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ seed, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let n: usize = shape.iter().product();
    let offset =
        if name.contains("layer_norm") || name.contains("layernorm") || name.contains("layrnorm") {
            if name.ends_with(".weight") {
                1.0
            } else {
                0.0
            }
        } else {
            0.0
        };
    (0..n)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            offset + ((h >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}
