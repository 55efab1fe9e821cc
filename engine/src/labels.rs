//! [`Labels`]: class names, one per line, line i = class i; and [`softmax_top_k`].

use std::path::Path;

use crate::{EngineError, Result};

/// Class names of a model.
#[derive(Debug, Clone)]
pub struct Labels {
    names: Vec<String>,
}

impl Labels {
    /// Read a label file; it must name exactly `classes` classes.
    pub fn load(path: &Path, classes: usize) -> Result<Labels> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        // tolerate one trailing empty line, nothing else
        let names = match names.last() {
            Some(l) if l.is_empty() => names[..names.len() - 1].to_vec(),
            _ => names,
        };
        if names.len() != classes {
            return Err(EngineError::LabelCount {
                path: path.to_path_buf(),
                found: names.len(),
                expected: classes,
            });
        }
        Ok(Labels { names })
    }

    /// `class_0`, `class_1`, … when no label file is given.
    pub fn numbered(classes: usize) -> Labels {
        Labels {
            names: (0..classes).map(|i| format!("class_{i}")).collect(),
        }
    }

    /// Labels from names given in code (e.g. the prompts of a zero-shot model).
    pub fn from_names(names: Vec<String>) -> Labels {
        Labels { names }
    }

    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map(String::as_str).unwrap_or("?")
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The `k` best classes of `logits` as `(index, softmax probability)`, best first.
/// Reuses `out`'s capacity (no allocation once it holds `k`).
pub fn softmax_top_k(logits: &[f32], k: usize, out: &mut Vec<(usize, f32)>) {
    out.clear();
    if logits.is_empty() {
        return;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let denom: f32 = logits.iter().map(|&v| (v - max).exp()).sum();
    for (i, &v) in logits.iter().enumerate() {
        let p = (v - max).exp() / denom;
        if out.len() < k {
            out.push((i, p));
            out.sort_by(|a, b| b.1.total_cmp(&a.1));
        } else if let Some(last) = out.last() {
            if p > last.1 {
                out.pop();
                let pos = out.partition_point(|e| e.1 >= p);
                out.insert(pos, (i, p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_softmax() {
        let mut out = Vec::new();
        softmax_top_k(&[1.0, 3.0, 2.0, -1.0], 2, &mut out);
        assert_eq!(out.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2]);
        let total: f32 = [1.0f32, 3.0, 2.0, -1.0]
            .iter()
            .map(|v| (v - 3.0).exp())
            .sum();
        assert!((out[0].1 - 1.0 / total).abs() < 1e-6);
    }
}
