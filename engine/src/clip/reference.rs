//! [`ReferenceFile`]: a CLIP/X-CLIP reference file as `gen_clip_fixtures.py` writes it
//! (safetensors with `frames_u8`, `pixel_values`, `input_ids`, the model's outputs, and
//! the prompts in `__metadata__`), read whole. `vigil classify REFERENCE --clip DIR` feeds
//! its `pixel_values`; the tests compare every output tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::{EngineError, Result};

/// One tensor's values.
#[derive(Debug, Clone)]
pub enum RefData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

/// A tensor of a reference file.
#[derive(Debug, Clone)]
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub data: RefData,
}

/// Every tensor and the metadata of one reference file.
#[derive(Debug, Clone)]
pub struct ReferenceFile {
    pub path: PathBuf,
    pub tensors: HashMap<String, RefTensor>,
    pub metadata: HashMap<String, String>,
}

impl ReferenceFile {
    pub fn load(path: &Path) -> Result<ReferenceFile> {
        let bad = |why: String| EngineError::Fixture {
            path: path.to_path_buf(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let d = view.data();
            let data = match view.dtype() {
                Dtype::F32 => RefData::F32(
                    d.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                Dtype::I64 => RefData::I64(
                    d.chunks_exact(8)
                        .map(|c| {
                            i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
                        })
                        .collect(),
                ),
                Dtype::U8 => RefData::U8(d.to_vec()),
                other => {
                    return Err(bad(format!(
                        "tensor `{name}` is {other:?}; expected F32, I64 or U8"
                    )))
                }
            };
            tensors.insert(
                name,
                RefTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(ReferenceFile {
            path: path.to_path_buf(),
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    fn get(&self, name: &str) -> Result<&RefTensor> {
        self.tensors.get(name).ok_or_else(|| EngineError::Fixture {
            path: self.path.clone(),
            why: format!("has no `{name}` tensor"),
        })
    }

    fn wrong(&self, name: &str, want: &str) -> EngineError {
        EngineError::Fixture {
            path: self.path.clone(),
            why: format!("`{name}` is not {want}"),
        }
    }

    /// A float32 tensor and its shape.
    pub fn f32(&self, name: &str) -> Result<(&[f32], &[usize])> {
        let t = self.get(name)?;
        match &t.data {
            RefData::F32(v) => Ok((v, &t.shape)),
            _ => Err(self.wrong(name, "float32")),
        }
    }

    /// An int64 id tensor as `u32` ids, and its shape.
    pub fn ids(&self, name: &str) -> Result<(Vec<u32>, &[usize])> {
        let t = self.get(name)?;
        match &t.data {
            RefData::I64(v) => Ok((
                v.iter()
                    .map(|&x| {
                        u32::try_from(x).map_err(|_| self.wrong(name, "non-negative 32-bit ids"))
                    })
                    .collect::<Result<_>>()?,
                &t.shape,
            )),
            _ => Err(self.wrong(name, "int64")),
        }
    }

    /// A u8 tensor (frames) and its shape.
    pub fn u8(&self, name: &str) -> Result<(&[u8], &[usize])> {
        let t = self.get(name)?;
        match &t.data {
            RefData::U8(v) => Ok((v, &t.shape)),
            _ => Err(self.wrong(name, "uint8")),
        }
    }

    /// The prompts the references were computed for (`__metadata__.prompts`, a JSON list).
    pub fn prompts(&self) -> Option<Vec<String>> {
        serde_json::from_str(self.metadata.get("prompts")?).ok()
    }
}
