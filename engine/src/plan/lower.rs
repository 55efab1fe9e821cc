//! [`Plan::lower`]: a [`Model`]'s layers as plan ops, in the order both backends run
//! them — per block the skip path first (average pool, 1x1), then expansion, depthwise,
//! temporal, squeeze-excitation (spatial mean, cumulative pool, concat, reduce, expand)
//! and the projection with its residual and gate; the head last. Buffers are named by
//! role and sized after lowering by the largest value written to each.

use super::{BufId, Buffer, Gate, Op, Plan, Step, Weight, WeightClass, WeightId};
use crate::model::{Model, Pointwise, Skip};
use crate::Result;

impl Plan {
    /// Lower `model` into a plan and check it. Fails (never panics) when the model's
    /// layers do not fit together, e.g. a hand-built [`Model`] with a weight of the
    /// wrong length.
    pub fn lower(model: &Model) -> Result<Plan> {
        let mut l = Lowering::default();
        let input = l.buffer("input");
        let xs = [l.buffer("x0"), l.buffer("x1")];
        let st = &model.stem;
        l.push(
            "stem",
            "preprocess",
            Op::PreprocessU8 {
                len: model.frame_bytes(),
                y: input,
            },
        );
        let (w, bias) = l.weights(
            "stem/conv",
            &[st.geom.k_h, st.geom.k_w, st.cin, st.cout],
            &st.w,
            &st.bias,
        );
        l.push(
            "stem",
            "conv",
            Op::Conv2d {
                x: input,
                geom: st.geom,
                cin: st.cin,
                cout: st.cout,
                w,
                bias,
                act: st.act,
                y: xs[0],
            },
        );
        let mut cur = 0;
        for b in &model.blocks {
            let layer = b.name.as_str();
            let (x, out) = (xs[cur], xs[1 - cur]);
            let (in_px, out_px) = (b.in_pixels(), b.out_pixels());
            let residual = match &b.skip {
                Skip::Identity => x,
                Skip::Project { pool, conv } => {
                    let src = match pool {
                        Some(g) => {
                            let pooled = l.buffer("pooled");
                            l.push(
                                layer,
                                "skip.pool",
                                Op::AvgPool2d {
                                    x,
                                    geom: *g,
                                    c: b.in_c,
                                    y: pooled,
                                },
                            );
                            pooled
                        }
                        None => x,
                    };
                    let skip = l.buffer("skip");
                    l.pointwise(layer, "skip.project", conv, src, out_px, None, None, skip);
                    skip
                }
            };
            let expanded = l.buffer("expanded");
            l.pointwise(layer, "expand", &b.expand, x, in_px, None, None, expanded);
            let sp = &b.spatial;
            let spatial = l.buffer("spatial");
            let (w, bias) = l.weights(
                &format!("{layer}/spatial"),
                &[sp.geom.k_h, sp.geom.k_w, sp.c],
                &sp.w,
                &sp.bias,
            );
            l.push(
                layer,
                "spatial",
                Op::Depthwise2d {
                    x: expanded,
                    geom: sp.geom,
                    c: sp.c,
                    w,
                    bias,
                    act: sp.act,
                    y: spatial,
                },
            );
            let mut f = spatial;
            if let Some(t) = &b.temporal {
                let temporal = l.buffer("temporal");
                let (w, bias) =
                    l.weights(&format!("{layer}/temporal"), &[t.kt, t.c], &t.w, &t.bias);
                l.push(
                    layer,
                    "temporal",
                    Op::TemporalCausal {
                        x: f,
                        pixels: t.pixels,
                        c: t.c,
                        kt: t.kt,
                        w,
                        bias,
                        act: t.act,
                        buffer: t.buffer,
                        y: temporal,
                    },
                );
                f = temporal;
            }
            let mut gate = None;
            if let Some(se) = &b.se {
                let (mean, cum) = (l.buffer("mean"), l.buffer("cum"));
                let scale = l.weight(
                    format!("{layer}/se.mean/scale"),
                    WeightClass::F32,
                    vec![se.c],
                    vec![1.0 / out_px as f32; se.c],
                );
                l.push(
                    layer,
                    "se.mean",
                    Op::SpatialMean {
                        x: f,
                        pixels: out_px,
                        c: se.c,
                        scale,
                        y: mean,
                    },
                );
                l.push(
                    layer,
                    "se.pool",
                    Op::CumulativePool {
                        x: mean,
                        c: se.c,
                        pool: se.pool,
                        y: cum,
                    },
                );
                let (first, second) = if se.cumulative_first {
                    (cum, mean)
                } else {
                    (mean, cum)
                };
                let se_in = l.buffer("se_in");
                l.push(
                    layer,
                    "se.concat",
                    Op::Concat {
                        first,
                        first_len: se.c,
                        second,
                        second_len: se.c,
                        y: se_in,
                    },
                );
                let (se_mid, gate_buf) = (l.buffer("se_mid"), l.buffer("gate"));
                l.pointwise(layer, "se.reduce", &se.reduce, se_in, 1, None, None, se_mid);
                l.pointwise(
                    layer,
                    "se.expand",
                    &se.expand,
                    se_mid,
                    1,
                    None,
                    None,
                    gate_buf,
                );
                gate = Some(Gate {
                    gate: gate_buf,
                    scale: se.gate_scale,
                });
            }
            let role = if gate.is_some() {
                "project+gate"
            } else {
                "project"
            };
            l.pointwise(
                layer,
                role,
                &b.project,
                f,
                out_px,
                Some(residual),
                gate,
                out,
            );
            cur = 1 - cur;
        }
        let h = &model.head;
        let (expanded, mean, cum) = (l.buffer("expanded"), l.buffer("mean"), l.buffer("cum"));
        l.pointwise(
            "head", "project", &h.project, xs[cur], h.pixels, None, None, expanded,
        );
        let c = h.project.cout;
        let scale = l.weight(
            "head/mean/scale".into(),
            WeightClass::F32,
            vec![h.pool_scale.len()],
            h.pool_scale.clone(),
        );
        l.push(
            "head",
            "mean",
            Op::SpatialMean {
                x: expanded,
                pixels: h.pixels,
                c,
                scale,
                y: mean,
            },
        );
        l.push(
            "head",
            "pool",
            Op::CumulativePool {
                x: mean,
                c,
                pool: h.pool,
                y: cum,
            },
        );
        let (head_mid, logits) = (l.buffer("head_mid"), l.buffer("logits"));
        l.pointwise("head", "dense1", &h.dense1, cum, 1, None, None, head_mid);
        l.pointwise("head", "dense2", &h.dense2, head_mid, 1, None, None, logits);

        // each buffer holds the largest value any op writes there
        let mut buffers = l.buffers;
        for s in &l.steps {
            let (y, n) = s.op.output();
            buffers[y.0].elements = buffers[y.0].elements.max(n);
        }
        let plan = Plan {
            steps: l.steps,
            buffers,
            weights: l.weights,
            stream_buffers: model.stream_buffers.clone(),
            cumulative_pools: model.cumulative_pools.clone(),
            frame_len: model.frame_bytes(),
            logits,
            classes: model.classes(),
        };
        plan.validate()?;
        Ok(plan)
    }
}

/// Builds a plan: buffers by name, the weight table, the ops.
#[derive(Default)]
struct Lowering {
    steps: Vec<Step>,
    buffers: Vec<Buffer>,
    weights: Vec<Weight>,
}

impl Lowering {
    /// The buffer called `name` (created on first use; sized after lowering).
    fn buffer(&mut self, name: &'static str) -> BufId {
        match self.buffers.iter().position(|b| b.name == name) {
            Some(i) => BufId(i),
            None => {
                self.buffers.push(Buffer { name, elements: 0 });
                BufId(self.buffers.len() - 1)
            }
        }
    }

    fn weight(
        &mut self,
        name: String,
        class: WeightClass,
        shape: Vec<usize>,
        values: Vec<f32>,
    ) -> WeightId {
        self.weights.push(Weight {
            name,
            class,
            shape,
            values,
        });
        WeightId(self.weights.len() - 1)
    }

    /// A conv's weights (storage class, `shape`) and bias (fp32).
    fn weights(
        &mut self,
        name: &str,
        shape: &[usize],
        w: &[f32],
        bias: &[f32],
    ) -> (WeightId, WeightId) {
        (
            self.weight(
                format!("{name}/w"),
                WeightClass::Storage,
                shape.to_vec(),
                w.to_vec(),
            ),
            self.weight(
                format!("{name}/b"),
                WeightClass::F32,
                vec![bias.len()],
                bias.to_vec(),
            ),
        )
    }

    fn push(&mut self, layer: &str, role: &'static str, op: Op) {
        self.steps.push(Step {
            layer: layer.to_string(),
            role,
            op,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn pointwise(
        &mut self,
        layer: &str,
        role: &'static str,
        p: &Pointwise,
        x: BufId,
        rows: usize,
        residual: Option<BufId>,
        gate: Option<Gate>,
        y: BufId,
    ) {
        let (w, bias) = self.weights(&format!("{layer}/{role}"), &[p.cout, p.cin], &p.w, &p.bias);
        self.push(
            layer,
            role,
            Op::Pointwise {
                x,
                rows,
                k: p.cin,
                n: p.cout,
                w,
                bias,
                act: p.act,
                residual,
                gate,
                y,
            },
        );
    }
}
