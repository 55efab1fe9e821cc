//! [`Fixture`]: reference data in safetensors: `frames` u8 `[N, H, W, 3]` (exact model
//! inputs) and `logits.<name>` f32 `[N, classes]` per reference model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::{EngineError, Result};

/// Frames and reference logits of one clip.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub path: PathBuf,
    frames: Vec<u8>,
    count: usize,
    size: usize,
    logits: HashMap<String, (Vec<f32>, usize)>,
}

impl Fixture {
    pub fn load(path: &Path) -> Result<Fixture> {
        let err = |why: String| EngineError::Fixture {
            path: path.to_path_buf(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let frames = st
            .tensor("frames")
            .map_err(|_| err("has no `frames` tensor".into()))?;
        let shape = frames.shape().to_vec();
        if frames.dtype() != Dtype::U8 || shape.len() != 4 || shape[3] != 3 || shape[1] != shape[2]
        {
            return Err(err(format!(
                "`frames` is {:?} {shape:?}, expected u8 [N, S, S, 3]",
                frames.dtype()
            )));
        }
        let mut logits = HashMap::new();
        for (name, view) in st.tensors() {
            if let Some(model) = name.strip_prefix("logits.") {
                let s = view.shape();
                if view.dtype() != Dtype::F32 || s.len() != 2 || s[0] != shape[0] {
                    return Err(err(format!(
                        "`{name}` is {:?} {s:?}, expected f32 [{}, classes]",
                        view.dtype(),
                        shape[0]
                    )));
                }
                let v = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                logits.insert(model.to_string(), (v, s[1]));
            }
        }
        Ok(Fixture {
            path: path.to_path_buf(),
            frames: frames.data().to_vec(),
            count: shape[0],
            size: shape[1],
            logits,
        })
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Side of the square frames.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Frame `i`, RGB u8 HWC.
    pub fn frame(&self, i: usize) -> &[u8] {
        let n = self.size * self.size * 3;
        &self.frames[i * n..(i + 1) * n]
    }

    /// Reference logits `logits.<name>` and their class count.
    pub fn logits(&self, name: &str) -> Option<(&[f32], usize)> {
        self.logits.get(name).map(|(v, c)| (v.as_slice(), *c))
    }
}
