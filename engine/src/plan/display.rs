//! `{op}` and `{plan}`: a plan printed for debugging — its buffers with sizes and live
//! ranges, then one line per op (layer, role, kernel, buffers, shape, FLOPs).

use std::fmt;

use vigil_kernels::Conv2dGeom;

use super::{Op, Plan};

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |g: &Conv2dGeom| format!("{}x{} s{}", g.k_h, g.k_w, g.stride);
        match self {
            Op::PreprocessU8 { len, .. } => write!(f, "{len} bytes"),
            Op::Conv2d {
                geom,
                cin,
                cout,
                act,
                ..
            } => write!(
                f,
                "{} {}x{}x{cin} -> {}x{}x{cout} {}",
                g(geom),
                geom.in_h,
                geom.in_w,
                geom.out_h,
                geom.out_w,
                act.name()
            ),
            Op::Pointwise {
                rows,
                k,
                n,
                act,
                residual,
                gate,
                ..
            } => {
                write!(f, "{rows}x{k} -> {rows}x{n} {}", act.name())?;
                if residual.is_some() {
                    f.write_str(" +residual")?;
                }
                if let Some(gt) = gate {
                    write!(f, " gate*{}", gt.scale)?;
                }
                Ok(())
            }
            Op::Depthwise2d { geom, c, act, .. } => write!(
                f,
                "{} {}x{} -> {}x{} c{c} {}",
                g(geom),
                geom.in_h,
                geom.in_w,
                geom.out_h,
                geom.out_w,
                act.name()
            ),
            Op::AvgPool2d { geom, c, .. } => write!(
                f,
                "{} {}x{} -> {}x{} c{c}",
                g(geom),
                geom.in_h,
                geom.in_w,
                geom.out_h,
                geom.out_w
            ),
            Op::TemporalCausal {
                pixels,
                c,
                kt,
                act,
                buffer,
                ..
            } => write!(
                f,
                "k{kt} {pixels}px c{c} {} (stream buffer {buffer})",
                act.name()
            ),
            Op::SpatialMean { pixels, c, .. } => write!(f, "{pixels}px c{c}"),
            Op::CumulativePool { c, pool, .. } => write!(f, "c{c} (cumulative pool {pool})"),
            Op::Concat {
                first_len,
                second_len,
                ..
            } => write!(f, "{first_len} + {second_len}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let weights: usize = self.weights.iter().map(|w| w.values.len()).sum();
        writeln!(
            f,
            "plan: {} ops, {} buffers ({} values per stream; {} live at most), {} weights ({} values), {:.1} MFLOPs per frame",
            self.steps.len(),
            self.buffers.len(),
            self.workspace_values(),
            self.peak_live_values(),
            self.weights.len(),
            weights,
            self.flops_per_frame() / 1e6
        )?;
        writeln!(f, "buffers (values per stream, live ops):")?;
        for (b, live) in self.buffers.iter().zip(self.live_ranges()) {
            let live = live.map_or("unused".to_string(), |(a, z)| format!("{a}..{z}"));
            writeln!(f, "  {:<9} {:>8}  {live}", b.name, b.elements)?;
        }
        writeln!(f, "ops:")?;
        for (i, s) in self.steps.iter().enumerate() {
            let ins: Vec<&str> =
                s.op.inputs()
                    .iter()
                    .flatten()
                    .map(|&(x, _)| self.buffers[x.0].name)
                    .collect();
            let ins = if ins.is_empty() {
                "frames".to_string()
            } else {
                ins.join(",")
            };
            writeln!(
                f,
                "  {i:>3} {:<14} {:<13} {:<15} {ins} -> {}  {}  ({:.2} MFLOPs)",
                s.layer,
                s.role,
                s.op.kernel(),
                self.buffers[s.op.output().0 .0].name,
                s.op,
                s.op.flops() / 1e6
            )?;
        }
        Ok(())
    }
}
