//! [`ModelSummary`]: what `vigil inspect` prints about a [`Model`] — family, variant,
//! weights, one [`LayerSummary`] row per layer, parameters, FLOPs, carried state, and the
//! size of the lowered plan (ops per step, workspace per stream).

use serde::Serialize;

use super::{Model, Skip, Variant};
use crate::plan::Plan;

/// What `vigil inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub family: String,
    pub variant: Variant,
    pub weights: String,
    pub input_size: usize,
    pub classes: usize,
    pub default_fps: f64,
    pub layers: Vec<LayerSummary>,
    pub parameters: usize,
    pub mflops_per_frame: f64,
    pub state_values_per_stream: usize,
    pub state_bytes_per_stream: usize,
    /// the lowered plan: ops one step runs, activation values one stream of a batch
    /// needs (`None` if the model does not lower: `Plan::lower` says why)
    pub plan: Option<PlanSummary>,
}

/// The size of a model's [`crate::plan::Plan`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PlanSummary {
    pub ops: usize,
    pub buffers: usize,
    pub workspace_values_per_stream: usize,
}

/// One row of the summary's layer table.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub input: String,
    pub output: String,
    pub detail: String,
}

impl Model {
    /// Everything `vigil inspect` shows.
    pub fn summary(&self) -> ModelSummary {
        let mut layers = Vec::new();
        let g = &self.stem.geom;
        layers.push(LayerSummary {
            name: "stem".into(),
            input: format!("{}x{}x{}", g.in_h, g.in_w, self.stem.cin),
            output: format!("{}x{}x{}", g.out_h, g.out_w, self.stem.cout),
            detail: format!(
                "conv {}x{} s{} {}",
                g.k_h,
                g.k_w,
                g.stride,
                self.stem.act.name()
            ),
        });
        for b in &self.blocks {
            let s = &b.spatial.geom;
            let mut d = format!(
                "expand {} {}, dw {}x{} s{}",
                b.expand.cout,
                b.expand.act.name(),
                s.k_h,
                s.k_w,
                s.stride
            );
            if let Some(t) = &b.temporal {
                d += &format!(
                    ", temporal k{} (buffer {}x{}x{})",
                    t.kt,
                    t.kt - 1,
                    t.pixels,
                    t.c
                );
            }
            if let Some(se) = &b.se {
                d += &format!(", SE {}->{}", 2 * se.c, se.reduce.cout);
            }
            d += match &b.skip {
                Skip::Identity => ", skip identity",
                Skip::Project { pool: Some(_), .. } => ", skip pool+1x1",
                Skip::Project { pool: None, .. } => ", skip 1x1",
            };
            layers.push(LayerSummary {
                name: b.name.clone(),
                input: format!("{}x{}x{}", b.in_h, b.in_w, b.in_c),
                output: format!("{}x{}x{}", b.out_h(), b.out_w(), b.out_c()),
                detail: d,
            });
        }
        let h = &self.head;
        layers.push(LayerSummary {
            name: "head".into(),
            input: format!("{}px x{}", h.pixels, h.project.cin),
            output: format!("{}", self.classes()),
            detail: format!(
                "1x1 {} {}, cumulative pool, dense {} {}, dense {}",
                h.project.cout,
                h.project.act.name(),
                h.dense1.cout,
                h.dense1.act.name(),
                h.dense2.cout
            ),
        });
        ModelSummary {
            name: self.name.clone(),
            family: self.family().into(),
            variant: self.variant,
            weights: self.weights.clone(),
            input_size: self.input_size,
            classes: self.classes(),
            default_fps: self.default_fps(),
            layers,
            parameters: self.parameters(),
            mflops_per_frame: self.flops_per_frame() / 1e6,
            state_values_per_stream: self.state_values(),
            state_bytes_per_stream: self.state_values() * 4,
            plan: Plan::lower(self).ok().map(|p| PlanSummary {
                ops: p.steps().len(),
                buffers: p.buffers().len(),
                workspace_values_per_stream: p.workspace_values(),
            }),
        }
    }
}

impl std::fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "model      {}", self.name)?;
        writeln!(
            f,
            "family     MoViNet-{}-Stream, {}",
            self.family, self.variant
        )?;
        writeln!(f, "weights    {}", self.weights)?;
        writeln!(
            f,
            "input      {0}x{0} RGB, trained at {1} fps",
            self.input_size, self.default_fps
        )?;
        writeln!(f, "classes    {}", self.classes)?;
        writeln!(f, "parameters {:.2} M", self.parameters as f64 / 1e6)?;
        writeln!(
            f,
            "compute    {:.1} MFLOPs per frame",
            self.mflops_per_frame
        )?;
        writeln!(
            f,
            "state      {} values = {:.2} MB per stream (f32)",
            self.state_values_per_stream,
            self.state_bytes_per_stream as f64 / 1e6
        )?;
        if let Some(p) = &self.plan {
            writeln!(
                f,
                "plan       {} ops per step over {} buffers, workspace {:.2} MB per stream (f32)",
                p.ops,
                p.buffers,
                p.workspace_values_per_stream as f64 * 4.0 / 1e6
            )?;
        }
        writeln!(f, "layers ({}):", self.layers.len())?;
        for l in &self.layers {
            writeln!(
                f,
                "  {:<14} {:>11} -> {:<11} {}",
                l.name, l.input, l.output, l.detail
            )?;
        }
        Ok(())
    }
}
