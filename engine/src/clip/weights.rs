//! [`Weights`]: a model folder's `model.safetensors`, read once, handing out float32
//! tensors by Hugging Face key name after checking each one's presence, dtype and shape
//! against what `config.json` implies. F16 and BF16 checkpoints are widened to float32.
//! Buffers that are not weights (`*.position_ids`) are never asked for.

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
        Ok(TensorReader { w: self, st })
    }
}

/// Hands out tensors by name, checked against an expected shape.
pub struct TensorReader<'a> {
    w: &'a Weights,
    st: SafeTensors<'a>,
}

impl TensorReader<'_> {
    /// Tensor `name` as float32, which must have exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let view = self
            .st
            .tensor(name)
            .map_err(|_| EngineError::TensorMissing {
                path: self.w.path.clone(),
                tensor: name.to_string(),
                model: self.w.model.clone(),
            })?;
        if view.shape() != shape {
            return Err(EngineError::TensorShape {
                path: self.w.path.clone(),
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
                    path: self.w.path.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                })
            }
        })
    }

    /// A scalar stored as shape `[]` (or `[1]`, as some exports write it).
    pub fn scalar(&self, name: &str) -> Result<f32> {
        let shape = self.st.tensor(name).map(|v| v.shape().to_vec());
        let want: &[usize] = if matches!(shape.as_deref(), Ok([1])) {
            &[1]
        } else {
            &[]
        };
        Ok(self.tensor(name, want)?[0])
    }
}
