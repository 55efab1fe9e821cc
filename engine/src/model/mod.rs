//! [`Model`]: a MoViNet stream model recognised from the op graph of an official
//! streaming TFLite export, with every weight dequantized to float32 once.
//!
//! The model is a tree of layers, named as in the paper and the TF code:
//! - the stem ([`Stem`]: full conv + activation),
//! - bottleneck [`Block`]s: 1x1 expansion ([`Pointwise`]), depthwise spatial conv
//!   ([`Depthwise`]), optional causal temporal conv over a stream buffer ([`Temporal`]),
//!   optional causal squeeze-excitation ([`SqueezeExcite`]), 1x1 projection times the
//!   rezero constant, plus a [`Skip`],
//! - the [`Head`]: 1x1 projection, cumulative global pool, two dense layers,
//!
//! and the shapes of the state a stream carries ([`StreamBufferShape`], cumulative pool
//! widths). Backends do not walk this tree: [`crate::plan::Plan::lower`] turns it into the
//! flat list of ops they execute.
//!
//! Submodules: [`import`] (recognising a model in a TFLite graph: [`Model::load`]) and
//! [`summary`] (what `vigil inspect` prints: [`ModelSummary`]).

use std::path::PathBuf;

use serde::Serialize;
use vigil_kernels::{Activation, Conv2dGeom};

pub mod import;
pub mod summary;

pub use summary::{LayerSummary, ModelSummary, PlanSummary};

/// Which kind of MoViNet export this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// ReLU6, no squeeze-excitation (the int8 "mobile" exports).
    Mobile,
    /// Hard-swish, causal squeeze-excitation, swish head.
    Full,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Variant::Mobile => "mobile (relu6, no SE)",
            Variant::Full => "full (hard-swish, causal SE)",
        })
    }
}

/// A 1x1 convolution (or dense layer): `w [cout, cin]`, `bias [cout]`.
#[derive(Debug, Clone)]
pub struct Pointwise {
    pub cin: usize,
    pub cout: usize,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

/// The stem: a full convolution, weights HWIO `[k, k, cin, cout]`.
#[derive(Debug, Clone)]
pub struct Stem {
    pub geom: Conv2dGeom,
    pub cin: usize,
    pub cout: usize,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

/// Depthwise spatial convolution, weights `[k_h, k_w, c]`.
#[derive(Debug, Clone)]
pub struct Depthwise {
    pub geom: Conv2dGeom,
    pub c: usize,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

/// Causal temporal depthwise convolution over a stream buffer of the last `kt - 1`
/// inputs `[kt - 1, pixels, c]`; weights `[kt, c]`, the last row for the current frame.
#[derive(Debug, Clone)]
pub struct Temporal {
    pub kt: usize,
    pub pixels: usize,
    pub c: usize,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
    /// Index of this layer's stream buffer in [`Model::stream_buffers`].
    pub buffer: usize,
}

/// Causal squeeze-excitation (`2plus3d`): `s = [cumulative mean ; frame mean]` (or the
/// other order, as the graph says) → reduce → expand → times `gate_scale` → gate.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    pub c: usize,
    pub reduce: Pointwise,
    pub expand: Pointwise,
    pub gate_scale: f32,
    /// true when the cumulative mean comes first in the concatenation
    pub cumulative_first: bool,
    /// Index of this layer's cumulative pool in [`Model::cumulative_pools`].
    pub pool: usize,
}

/// The residual path of a block.
#[derive(Debug, Clone)]
pub enum Skip {
    Identity,
    /// optional average pool (TF SAME, padded taps not counted), then a 1x1 conv
    Project {
        pool: Option<Conv2dGeom>,
        conv: Pointwise,
    },
}

/// One bottleneck block.
#[derive(Debug, Clone)]
pub struct Block {
    pub name: String,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub expand: Pointwise,
    pub spatial: Depthwise,
    pub temporal: Option<Temporal>,
    pub se: Option<SqueezeExcite>,
    /// projection with the rezero multiplier folded into weights and bias
    pub project: Pointwise,
    pub skip: Skip,
}

impl Block {
    pub fn out_h(&self) -> usize {
        self.spatial.geom.out_h
    }
    pub fn out_w(&self) -> usize {
        self.spatial.geom.out_w
    }
    pub fn out_c(&self) -> usize {
        self.project.cout
    }
    pub fn in_pixels(&self) -> usize {
        self.in_h * self.in_w
    }
    pub fn out_pixels(&self) -> usize {
        self.spatial.geom.out_pixels()
    }
}

/// The classification head.
#[derive(Debug, Clone)]
pub struct Head {
    pub pixels: usize,
    pub project: Pointwise,
    /// per-channel scale applied to the spatial sum (1 / pixels, read from the graph)
    pub pool_scale: Vec<f32>,
    pub pool: usize,
    pub dense1: Pointwise,
    pub dense2: Pointwise,
}

/// Shape of one stream buffer: `[frames, pixels, c]` values per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StreamBufferShape {
    pub frames: usize,
    pub pixels: usize,
    pub c: usize,
}

impl StreamBufferShape {
    pub fn values(&self) -> usize {
        self.frames * self.pixels * self.c
    }
}

/// A MoViNet stream model, ready to run.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub path: PathBuf,
    pub variant: Variant,
    /// how the export stored its weights, e.g. `int8 (full integer)`
    pub weights: String,
    pub input_size: usize,
    pub stem: Stem,
    pub blocks: Vec<Block>,
    pub head: Head,
    pub stream_buffers: Vec<StreamBufferShape>,
    /// channel count of each cumulative pool (SE pools, then the head's)
    pub cumulative_pools: Vec<usize>,
}

impl Model {
    /// Side of the square RGB input, e.g. 172.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// Bytes of one input frame (RGB u8, HWC).
    pub fn frame_bytes(&self) -> usize {
        self.input_size * self.input_size * 3
    }

    pub fn classes(&self) -> usize {
        self.head.dense2.cout
    }

    /// The MoViNet family member this looks like (by input size and stem width).
    pub fn family(&self) -> &'static str {
        match (self.input_size, self.stem.cout) {
            (172, 8) => "A0",
            (172, _) => "A1",
            (224, _) => "A2",
            (256, _) => "A3",
            (290, _) => "A4",
            (320, _) => "A5",
            _ => "unknown",
        }
    }

    /// The frame rate the model was trained at: 5 fps for A0-A2, 12 / 8 / 12.5 for A3-A5.
    pub fn default_fps(&self) -> f64 {
        match self.family() {
            "A3" => 12.0,
            "A4" => 8.0,
            "A5" => 12.5,
            _ => 5.0,
        }
    }

    /// Float values of carried state per stream (stream buffers + cumulative pools).
    pub fn state_values(&self) -> usize {
        self.stream_buffers
            .iter()
            .map(|s| s.values())
            .sum::<usize>()
            + self.cumulative_pools.iter().sum::<usize>()
    }

    /// Multiply-adds x 2 for one frame of one stream.
    pub fn flops_per_frame(&self) -> f64 {
        let pw = |p: &Pointwise, px: usize| 2.0 * (p.cin * p.cout * px) as f64;
        let g = &self.stem.geom;
        let mut f = 2.0 * (g.k_h * g.k_w * self.stem.cin * self.stem.cout * g.out_pixels()) as f64;
        for b in &self.blocks {
            f += pw(&b.expand, b.in_pixels());
            let s = &b.spatial.geom;
            f += 2.0 * (s.k_h * s.k_w * b.spatial.c * s.out_pixels()) as f64;
            if let Some(t) = &b.temporal {
                f += 2.0 * (t.kt * t.c * t.pixels) as f64;
            }
            if let Some(se) = &b.se {
                f += pw(&se.reduce, 1) + pw(&se.expand, 1) + 2.0 * (se.c * b.out_pixels()) as f64;
            }
            f += pw(&b.project, b.out_pixels());
            if let Skip::Project { pool, conv } = &b.skip {
                if let Some(p) = pool {
                    f += (p.k_h * p.k_w * conv.cin * p.out_pixels()) as f64;
                }
                f += pw(conv, b.out_pixels());
            }
        }
        let h = &self.head;
        f + pw(&h.project, h.pixels) + pw(&h.dense1, 1) + pw(&h.dense2, 1)
    }

    pub fn parameters(&self) -> usize {
        let pw = |p: &Pointwise| p.w.len() + p.bias.len();
        let mut n = self.stem.w.len() + self.stem.bias.len();
        for b in &self.blocks {
            n += pw(&b.expand) + b.spatial.w.len() + b.spatial.bias.len() + pw(&b.project);
            if let Some(t) = &b.temporal {
                n += t.w.len() + t.bias.len();
            }
            if let Some(se) = &b.se {
                n += pw(&se.reduce) + pw(&se.expand);
            }
            if let Skip::Project { conv, .. } = &b.skip {
                n += pw(conv);
            }
        }
        n + pw(&self.head.project) + pw(&self.head.dense1) + pw(&self.head.dense2)
    }
}
