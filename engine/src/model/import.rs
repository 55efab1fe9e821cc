//! Import: [`Model::load`] recognises a MoViNet stream model in the op graph of an
//! official streaming TFLite export, dequantizing every weight to float32 once.
//!
//! The walk follows the data flow from the `image` input. RESHAPE, SQUEEZE, CAST,
//! BROADCAST_TO, QUANTIZE and DEQUANTIZE only re-label a tensor and are looked through.
//! It recognises, in order, the stem, the bottleneck blocks (expansion, depthwise,
//! temporal, squeeze-excitation, projection times rezero, skip) and the head.
//! Widths, kernels, strides and state shapes all come from the graph; every constant
//! (rezero, the SE gate's scale, the head pool's scale, the frame-count increment) is read
//! from it. Any operator the walk does not account for is an error naming it.

use std::collections::HashMap;
use std::path::Path;

use vigil_kernels::{Activation, Conv2dGeom};

use super::{
    Block, Depthwise, Head, Model, Pointwise, Skip, SqueezeExcite, Stem, StreamBufferShape,
    Temporal, Variant,
};
use crate::tflite::{BuiltinOp, DType, FusedAct, Graph, OpOptions, Padding, TensorInfo};
use crate::{EngineError, Result};

impl Model {
    /// Load and recognise an official MoViNet streaming TFLite export.
    pub fn load(path: &Path) -> Result<Model> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Model::from_bytes(&bytes, path)
    }

    /// Recognise a model from the bytes of a `.tflite` file (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Model> {
        let graph = Graph::parse(bytes).map_err(|e| EngineError::NotTflite {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        Importer::new(&graph, path).import()
    }
}

// ---------------------------------------------------------------------------------------
// The walk over the op graph.

struct Importer<'g, 'a> {
    g: &'g Graph<'a>,
    path: &'g Path,
    /// tensor -> the tensor it re-labels (identity for real tensors)
    alias: Vec<usize>,
    /// canonical tensor -> ops reading it (re-labelling ops excluded)
    consumers: Vec<Vec<usize>>,
    /// canonical tensor -> op writing it
    producer: Vec<Option<usize>>,
    used: Vec<bool>,
    graph_inputs: Vec<bool>,
    stream_buffers: Vec<StreamBufferShape>,
    cumulative_pools: Vec<usize>,
}

fn is_relabel(op: BuiltinOp) -> bool {
    matches!(
        op,
        BuiltinOp::Reshape
            | BuiltinOp::Squeeze
            | BuiltinOp::Cast
            | BuiltinOp::BroadcastTo
            | BuiltinOp::Quantize
            | BuiltinOp::Dequantize
    )
}

fn fused(act: FusedAct, layer: &str) -> Result<Activation> {
    match act {
        FusedAct::None => Ok(Activation::None),
        FusedAct::Relu => Ok(Activation::Relu),
        FusedAct::Relu6 => Ok(Activation::Relu6),
        other => Err(EngineError::Unsupported {
            layer: layer.into(),
            why: format!("fused activation {other:?}"),
        }),
    }
}

impl<'g, 'a> Importer<'g, 'a> {
    fn new(g: &'g Graph<'a>, path: &'g Path) -> Self {
        let n = g.tensors.len();
        let mut alias: Vec<usize> = (0..n).collect();
        for op in &g.ops {
            if is_relabel(op.op) {
                if let (Some(Some(i)), Some(&o)) = (op.inputs.first(), op.outputs.first()) {
                    alias[o] = *i;
                }
            }
        }
        // resolve chains
        for t in 0..n {
            let mut c = t;
            let mut hops = 0;
            while alias[c] != c && hops < n {
                c = alias[c];
                hops += 1;
            }
            alias[t] = c;
        }
        let mut consumers = vec![Vec::new(); n];
        let mut producer = vec![None; n];
        for (oi, op) in g.ops.iter().enumerate() {
            if is_relabel(op.op) {
                continue;
            }
            for i in op.inputs.iter().flatten() {
                let c = alias[*i];
                if !consumers[c].contains(&oi) {
                    consumers[c].push(oi);
                }
            }
            for &o in &op.outputs {
                producer[alias[o]] = Some(oi);
            }
        }
        let mut graph_inputs = vec![false; n];
        for &i in &g.inputs {
            graph_inputs[i] = true;
        }
        let used = g.ops.iter().map(|o| is_relabel(o.op)).collect();
        Importer {
            g,
            path,
            alias,
            consumers,
            producer,
            used,
            graph_inputs,
            stream_buffers: Vec::new(),
            cumulative_pools: Vec::new(),
        }
    }

    fn err(&self, why: impl Into<String>) -> EngineError {
        EngineError::NotMovinet {
            path: self.path.to_path_buf(),
            why: why.into(),
        }
    }

    fn tname(&self, t: usize) -> &str {
        &self.g.tensors[t].name
    }

    fn describe_op(&self, oi: usize) -> String {
        let op = &self.g.ops[oi];
        let out = op.outputs.first().map(|&o| self.tname(o)).unwrap_or("?");
        format!("op #{oi} {:?} (output {out:?})", op.op)
    }

    fn canon(&self, t: usize) -> usize {
        self.alias[t]
    }

    fn input(&self, oi: usize, k: usize) -> Result<usize> {
        match self.g.ops[oi].inputs.get(k) {
            Some(Some(t)) => Ok(self.canon(*t)),
            _ => Err(self.err(format!("{} lacks input {k}", self.describe_op(oi)))),
        }
    }

    fn output(&self, oi: usize) -> Result<usize> {
        self.g.ops[oi]
            .outputs
            .first()
            .map(|&t| self.canon(t))
            .ok_or_else(|| self.err(format!("{} has no output", self.describe_op(oi))))
    }

    fn is_const(&self, t: usize) -> bool {
        self.g.tensors[t].data.is_some()
    }

    fn consumers_of(&self, t: usize) -> &[usize] {
        &self.consumers[t]
    }

    /// The op of kind `kind` reading `t` (exactly one expected).
    fn consumer(&self, t: usize, kind: BuiltinOp, what: &str) -> Result<usize> {
        let found: Vec<usize> = self
            .consumers_of(t)
            .iter()
            .copied()
            .filter(|&o| self.g.ops[o].op == kind)
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(self.err(format!(
                "expected {what} ({kind:?}) reading tensor {:?}; found {:?}",
                self.tname(t),
                self.consumers_of(t)
                    .iter()
                    .map(|&o| self.g.ops[o].op)
                    .collect::<Vec<_>>()
            ))),
            _ => Err(self.err(format!(
                "{} {kind:?} ops read tensor {:?}; expected one ({what})",
                found.len(),
                self.tname(t)
            ))),
        }
    }

    fn find_consumer(&self, t: usize, kind: BuiltinOp) -> Option<usize> {
        self.consumers_of(t)
            .iter()
            .copied()
            .find(|&o| self.g.ops[o].op == kind)
    }

    fn take(&mut self, oi: usize) {
        self.used[oi] = true;
    }

    /// Float32 value of a constant tensor, dequantized the way the float oracle does it.
    fn constant(&self, t: usize, what: &str) -> Result<Vec<f32>> {
        let info: &TensorInfo = &self.g.tensors[t];
        let data = info
            .data
            .ok_or_else(|| self.err(format!("{what}: tensor {:?} is not a constant", info.name)))?;
        let n = info.elements();
        let raw: Vec<f64> = match info.dtype {
            DType::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            DType::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            DType::I8 => data.iter().map(|&b| b as i8 as f64).collect(),
            DType::U8 => data.iter().map(|&b| b as f64).collect(),
            DType::I16 => data
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
                .collect(),
            DType::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            DType::I64 => data
                .chunks_exact(8)
                .map(|c| {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
                })
                .collect(),
            DType::Other(k) => {
                return Err(self.err(format!(
                    "{what}: tensor {:?} has unsupported type {k}",
                    info.name
                )))
            }
        };
        if raw.len() != n {
            return Err(self.err(format!(
                "{what}: tensor {:?} holds {} values, shape says {n}",
                info.name,
                raw.len()
            )));
        }
        let Some(q) = &info.quant else {
            return Ok(raw.into_iter().map(|v| v as f32).collect());
        };
        if matches!(info.dtype, DType::F32 | DType::F16) {
            return Ok(raw.into_iter().map(|v| v as f32).collect());
        }
        let channels = q.scale.len();
        let (dim_len, inner) = if channels > 1 {
            let dims = &info.shape;
            if q.dim >= dims.len() || dims[q.dim] != channels {
                return Err(self.err(format!(
                    "{what}: tensor {:?} has {channels} scales along dimension {} of shape {dims:?}",
                    info.name, q.dim
                )));
            }
            (dims[q.dim], dims[q.dim + 1..].iter().product::<usize>())
        } else {
            (1, 1)
        };
        Ok(raw
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = if channels > 1 {
                    (i / inner) % dim_len
                } else {
                    0
                };
                let zp = q.zero_point.get(c).copied().unwrap_or(0) as f64;
                ((v - zp) * q.scale[c] as f64) as f32
            })
            .collect())
    }

    fn shape(&self, t: usize) -> &[usize] {
        &self.g.tensors[t].shape
    }

    /// The activation that follows tensor `t` as separate ops, if any; returns it and
    /// the tensor after it.
    fn activation_after(&mut self, t: usize) -> Result<(Activation, usize)> {
        let cons = self.consumers_of(t).to_vec();
        if let [one] = cons.as_slice() {
            let kind = match self.g.ops[*one].op {
                BuiltinOp::HardSwish => Some(Activation::HardSwish),
                BuiltinOp::Relu6 => Some(Activation::Relu6),
                BuiltinOp::Relu => Some(Activation::Relu),
                _ => None,
            };
            if let Some(a) = kind {
                self.take(*one);
                return Ok((a, self.output(*one)?));
            }
        }
        // swish: MUL(x, LOGISTIC(x))
        if let Some(l) = cons
            .iter()
            .copied()
            .find(|&o| self.g.ops[o].op == BuiltinOp::Logistic)
        {
            let s = self.output(l)?;
            let m = cons.iter().copied().find(|&o| {
                self.g.ops[o].op == BuiltinOp::Mul && {
                    let ins: Vec<usize> = self.g.ops[o]
                        .inputs
                        .iter()
                        .flatten()
                        .map(|&i| self.canon(i))
                        .collect();
                    ins.contains(&t) && ins.contains(&s)
                }
            });
            if let Some(m) = m {
                self.take(l);
                self.take(m);
                return Ok((Activation::Swish, self.output(m)?));
            }
        }
        Ok((Activation::None, t))
    }

    /// Fused activation of a conv-like op, or the separate activation after it.
    fn finish_act(
        &mut self,
        oi: usize,
        fused_act: FusedAct,
        layer: &str,
    ) -> Result<(Activation, usize)> {
        let out = self.output(oi)?;
        let a = fused(fused_act, layer)?;
        if a != Activation::None {
            return Ok((a, out));
        }
        self.activation_after(out)
    }

    /// A CONV_2D with a 1x1 kernel as a [`Pointwise`], activation included.
    fn pointwise(&mut self, oi: usize, layer: &str) -> Result<(Pointwise, usize)> {
        let op = &self.g.ops[oi];
        let OpOptions::Conv {
            stride_h,
            stride_w,
            act,
            ..
        } = op.options
        else {
            return Err(self.err(format!(
                "{layer}: {} is not a CONV_2D with options",
                self.describe_op(oi)
            )));
        };
        let wt = self.input(oi, 1)?;
        let ws = self.shape(wt).to_vec();
        if ws.len() != 4 || ws[1] != 1 || ws[2] != 1 {
            return Err(EngineError::Unsupported {
                layer: layer.into(),
                why: format!("expected a 1x1 convolution, weights have shape {ws:?}"),
            });
        }
        if stride_h != 1 || stride_w != 1 {
            return Err(EngineError::Unsupported {
                layer: layer.into(),
                why: "strided 1x1 convolution".into(),
            });
        }
        let (cout, cin) = (ws[0], ws[3]);
        let w = self.constant(wt, layer)?;
        let bias = self.bias(oi, cout, layer)?;
        self.take(oi);
        let (act, out) = self.finish_act(oi, act, layer)?;
        Ok((
            Pointwise {
                cin,
                cout,
                w,
                bias,
                act,
            },
            out,
        ))
    }

    fn bias(&self, oi: usize, n: usize, layer: &str) -> Result<Vec<f32>> {
        match self.g.ops[oi].inputs.get(2) {
            Some(Some(b)) => {
                let v = self.constant(self.canon(*b), layer)?;
                if v.len() != n {
                    return Err(self.err(format!(
                        "{layer}: bias has {} values for {n} channels",
                        v.len()
                    )));
                }
                Ok(v)
            }
            _ => Ok(vec![0.0; n]),
        }
    }

    fn geom(
        &self,
        padding: Padding,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        s: usize,
    ) -> Result<Conv2dGeom> {
        if s == 0
            || kh == 0
            || kw == 0
            || kh > 64
            || kw > 64
            || s > 64
            || (padding == Padding::Valid && (kh > h || kw > w))
        {
            return Err(self.err(format!(
                "window {kh}x{kw} stride {s} {padding:?} does not fit a {h}x{w} input"
            )));
        }
        Ok(match padding {
            Padding::Same => Conv2dGeom::same(h, w, kh, kw, s),
            Padding::Valid => Conv2dGeom::valid(h, w, kh, kw, s),
        })
    }

    /// Check the graph's own output shape of `t` against the `[.., h, w, c]` we derived.
    fn check_hwc(&self, t: usize, h: usize, w: usize, c: usize, layer: &str) -> Result<()> {
        let s = self.shape(t);
        let n = s.len();
        if n >= 3 && (s[n - 3], s[n - 2], s[n - 1]) != (h, w, c) {
            return Err(self.err(format!(
                "{layer}: graph says {s:?}, the walk derived {h}x{w}x{c}"
            )));
        }
        Ok(())
    }

    fn import(mut self) -> Result<Model> {
        let g = self.g;
        let image = g
            .inputs
            .iter()
            .copied()
            .find(|&i| g.tensors[i].name.contains("image"))
            .ok_or_else(|| {
                self.err("no graph input named *image* (a stream export takes `image` plus states)")
            })?;
        let ishape = g.tensors[image].shape.clone();
        let n = ishape.len();
        if n < 3 || ishape[n - 1] != 3 || ishape[n - 2] != ishape[n - 3] {
            return Err(self.err(format!(
                "image input has shape {ishape:?}, expected [1, 1, S, S, 3]"
            )));
        }
        if g.tensors[image].dtype != DType::F32 {
            return Err(self.err("image input is not float32"));
        }
        let size = ishape[n - 2];
        let x0 = self.canon(image);

        // stem
        let stem_op = self.consumer(x0, BuiltinOp::Conv2d, "the stem convolution")?;
        let OpOptions::Conv {
            padding,
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            act,
            ..
        } = g.ops[stem_op].options
        else {
            return Err(self.err("stem convolution has no options"));
        };
        if stride_h != stride_w || dilation_h != 1 || dilation_w != 1 {
            return Err(EngineError::Unsupported {
                layer: "stem".into(),
                why: "unequal strides or dilation".into(),
            });
        }
        let wt = self.input(stem_op, 1)?;
        let ws = self.shape(wt).to_vec();
        if ws.len() != 4 || ws[3] != 3 {
            return Err(self.err(format!(
                "stem weights have shape {ws:?}, expected [cout, k, k, 3]"
            )));
        }
        let (cout, kh, kw) = (ws[0], ws[1], ws[2]);
        let ohwi = self.constant(wt, "stem")?;
        let mut hwio = vec![0.0; ohwi.len()];
        for o in 0..cout {
            for k in 0..kh * kw * 3 {
                hwio[k * cout + o] = ohwi[o * kh * kw * 3 + k];
            }
        }
        let geom = self.geom(padding, size, size, kh, kw, stride_h.max(0) as usize)?;
        let bias = self.bias(stem_op, cout, "stem")?;
        self.take(stem_op);
        let (act, mut x) = self.finish_act(stem_op, act, "stem")?;
        self.check_hwc(self.output(stem_op)?, geom.out_h, geom.out_w, cout, "stem")?;
        let stem = Stem {
            geom,
            cin: 3,
            cout,
            w: hwio,
            bias,
            act,
        };
        let (mut h, mut w, mut c) = (geom.out_h, geom.out_w, cout);

        // blocks, until the head
        let mut blocks = Vec::new();
        let head = loop {
            let convs: Vec<usize> = self
                .consumers_of(x)
                .iter()
                .copied()
                .filter(|&o| g.ops[o].op == BuiltinOp::Conv2d)
                .collect();
            if convs.is_empty() {
                return Err(self.err(format!(
                    "after {} blocks, tensor {:?} feeds no 1x1 convolution (expected a block or the head)",
                    blocks.len(),
                    self.tname(x)
                )));
            }
            // A block's expansion leads to a depthwise conv; the head's projection to a pool.
            let mut expansion = None;
            for &o in &convs {
                let out = self.output(o)?;
                let after = match fused(
                    match g.ops[o].options {
                        OpOptions::Conv { act, .. } => act,
                        _ => FusedAct::None,
                    },
                    "probe",
                )? {
                    Activation::None => {
                        let cons = self.consumers_of(out);
                        match cons {
                            [one]
                                if matches!(
                                    g.ops[*one].op,
                                    BuiltinOp::HardSwish | BuiltinOp::Relu6 | BuiltinOp::Relu
                                ) =>
                            {
                                self.output(*one)?
                            }
                            _ => out,
                        }
                    }
                    _ => out,
                };
                if self
                    .find_consumer(after, BuiltinOp::DepthwiseConv2d)
                    .is_some()
                {
                    expansion = Some(o);
                }
            }
            match expansion {
                Some(e) => {
                    let name = block_name(&self, e, blocks.len());
                    let block = self.block(e, x, h, w, c, name)?;
                    x = block.1;
                    let b = block.0;
                    (h, w, c) = (b.out_h(), b.out_w(), b.out_c());
                    blocks.push(b);
                }
                None => break self.head(&convs, h, w, c)?,
            }
        };
        // every op must be accounted for
        if let Some(oi) = self.used.iter().position(|u| !u) {
            return Err(self.err(format!(
                "{} is not part of a recognised MoViNet stream pattern",
                self.describe_op(oi)
            )));
        }
        if !g.outputs.iter().any(|&o| self.canon(o) == head.1) {
            return Err(self.err("the head's logits are not a graph output"));
        }
        let head = head.0;
        let variant = if blocks.iter().any(|b| b.se.is_some()) {
            Variant::Full
        } else {
            Variant::Mobile
        };
        let weights = describe_weights(g);
        let name = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut pools = self.cumulative_pools.clone();
        // keep the head pool last
        pools.truncate(self.cumulative_pools.len());
        Ok(Model {
            name,
            path: self.path.to_path_buf(),
            variant,
            weights,
            input_size: size,
            stem,
            blocks,
            head,
            stream_buffers: self.stream_buffers.clone(),
            cumulative_pools: pools,
        })
    }

    /// One bottleneck block starting at the expansion conv `e` reading `x`.
    fn block(
        &mut self,
        e: usize,
        x: usize,
        h: usize,
        w: usize,
        c: usize,
        name: String,
    ) -> Result<(Block, usize)> {
        let g = self.g;
        let (expand, ex) = self.pointwise(e, &format!("{name}/expansion"))?;
        if expand.cin != c {
            return Err(self.err(format!(
                "{name}: expansion takes {} channels, block input has {c}",
                expand.cin
            )));
        }
        self.check_hwc(self.output(e)?, h, w, expand.cout, &name)?;

        // depthwise spatial
        let dw = self.consumer(ex, BuiltinOp::DepthwiseConv2d, "the depthwise spatial conv")?;
        let OpOptions::Depthwise {
            padding,
            stride_h,
            stride_w,
            multiplier,
            dilation_h,
            dilation_w,
            act,
        } = g.ops[dw].options
        else {
            return Err(self.err(format!("{name}: depthwise conv without options")));
        };
        let layer = format!("{name}/spatial");
        if stride_h != stride_w || dilation_h != 1 || dilation_w != 1 || multiplier != 1 {
            return Err(EngineError::Unsupported {
                layer,
                why: format!("stride {stride_h}x{stride_w}, dilation {dilation_h}x{dilation_w}, multiplier {multiplier}"),
            });
        }
        let wt = self.input(dw, 1)?;
        let ws = self.shape(wt).to_vec();
        let ce = expand.cout;
        if ws.len() != 4 || ws[0] != 1 || ws[3] != ce {
            return Err(self.err(format!("{layer}: weights {ws:?}, expected [1, k, k, {ce}]")));
        }
        let geom = self.geom(padding, h, w, ws[1], ws[2], stride_h.max(0) as usize)?;
        let spatial = Depthwise {
            geom,
            c: ce,
            w: self.constant(wt, &layer)?,
            bias: self.bias(dw, ce, &layer)?,
            act: Activation::None,
        };
        self.take(dw);
        let (sact, mut f) = self.finish_act(dw, act, &layer)?;
        let spatial = Depthwise {
            act: sact,
            ..spatial
        };
        self.check_hwc(self.output(dw)?, geom.out_h, geom.out_w, ce, &layer)?;
        let (oh, ow) = (geom.out_h, geom.out_w);
        let px = oh * ow;

        // causal temporal conv over a stream buffer
        let mut temporal = None;
        if let Some(cat) = self.find_consumer(f, BuiltinOp::Concatenation) {
            let state = self.input(cat, 0)?;
            let is_buffer = self.g.ops[cat].inputs.len() == 2
                && self.input(cat, 1)? == f
                && self.g.inputs.iter().any(|&i| self.canon(i) == state);
            if is_buffer {
                let layer = format!("{name}/temporal");
                let ss = self.shape(state).to_vec();
                if ss.len() != 5
                    || (ss[2], ss[3], ss[4]) != (oh, ow, ce)
                    || ss[1] == 0
                    || ss[1] > 64
                {
                    return Err(self.err(format!("{layer}: stream buffer input has shape {ss:?}")));
                }
                let frames = ss[1];
                let joined = self.output(cat)?;
                let tc = self.consumer(joined, BuiltinOp::DepthwiseConv2d, "the temporal conv")?;
                let OpOptions::Depthwise { padding, act, .. } = g.ops[tc].options else {
                    return Err(self.err(format!("{layer}: no options")));
                };
                let twt = self.input(tc, 1)?;
                let tws = self.shape(twt).to_vec();
                if padding != Padding::Valid
                    || tws.len() != 4
                    || tws[1] != frames + 1
                    || tws[2] != 1
                    || tws[3] != ce
                {
                    return Err(self.err(format!(
                        "{layer}: expected a VALID depthwise conv with weights [1, {}, 1, {ce}], got {tws:?} {padding:?}",
                        frames + 1
                    )));
                }
                // the new buffer is the last kt-1 frames of [buffer ; current]
                let slice =
                    self.consumer(joined, BuiltinOp::StridedSlice, "the stream buffer update")?;
                let begin = self.constant(self.input(slice, 1)?, &layer)?;
                // begin may count from the end: -(kt-1) and 1 both mean "drop the oldest"
                let first = begin
                    .get(1)
                    .map(|&b| if b < 0.0 { b + (frames + 1) as f32 } else { b });
                if first != Some(1.0) {
                    return Err(self.err(format!(
                        "{layer}: stream buffer update slices from {begin:?}, expected frame 1"
                    )));
                }
                self.take(cat);
                self.take(slice);
                self.take(tc);
                let kt = frames + 1;
                let buffer = self.stream_buffers.len();
                self.stream_buffers.push(StreamBufferShape {
                    frames,
                    pixels: px,
                    c: ce,
                });
                let t = Temporal {
                    kt,
                    pixels: px,
                    c: ce,
                    w: self.constant(twt, &layer)?,
                    bias: self.bias(tc, ce, &layer)?,
                    act: Activation::None,
                    buffer,
                };
                let (tact, out) = self.finish_act(tc, act, &layer)?;
                temporal = Some(Temporal { act: tact, ..t });
                f = out;
            }
        }

        // causal squeeze-excitation
        let mut se = None;
        if let Some(mean) = self.find_consumer(f, BuiltinOp::Mean) {
            let layer = format!("{name}/se");
            let m = self.output(mean)?;
            if self.g.tensors[m].elements() != ce {
                return Err(self.err(format!(
                    "{layer}: the spatial mean has shape {:?}",
                    self.shape(m)
                )));
            }
            self.take(mean);
            let (cm, pool) = self.cumulative_mean(m, ce, &layer)?;
            let cat = self.consumer(m, BuiltinOp::Concatenation, "the SE concatenation")?;
            let (a, b) = (self.input(cat, 0)?, self.input(cat, 1)?);
            let cumulative_first = match (a == cm, b == cm, a == m, b == m) {
                (true, _, _, true) => true,
                (_, true, true, _) => false,
                _ => {
                    return Err(self.err(format!(
                        "{layer}: concatenation does not join the cumulative and frame means"
                    )))
                }
            };
            self.take(cat);
            let s = self.output(cat)?;
            let red = self.consumer(s, BuiltinOp::Conv2d, "the SE reduce conv")?;
            let (reduce, r) = self.pointwise(red, &format!("{layer}/reduce"))?;
            let exp = self.consumer(r, BuiltinOp::Conv2d, "the SE expand conv")?;
            let (expand_se, gsrc) = self.pointwise(exp, &format!("{layer}/expand"))?;
            if reduce.cin != 2 * ce || expand_se.cout != ce {
                return Err(self.err(format!(
                    "{layer}: reduce {}->{}, expand {}->{}",
                    reduce.cin, reduce.cout, expand_se.cin, expand_se.cout
                )));
            }
            // gate = act(expand) * scale, then x * gate
            let mut gate_scale = 1.0f32;
            let mut gate = gsrc;
            let muls: Vec<usize> = self
                .consumers_of(gsrc)
                .iter()
                .copied()
                .filter(|&o| g.ops[o].op == BuiltinOp::Mul)
                .collect();
            if let [mul] = muls.as_slice() {
                let (p, q) = (self.input(*mul, 0)?, self.input(*mul, 1)?);
                let k = if self.is_const(p) {
                    Some(p)
                } else if self.is_const(q) {
                    Some(q)
                } else {
                    None
                };
                if let Some(k) = k {
                    let v = self.constant(k, &layer)?;
                    if v.len() != 1 {
                        return Err(self.err(format!(
                            "{layer}: gate scale has {} values, expected a scalar",
                            v.len()
                        )));
                    }
                    gate_scale = v[0];
                    self.take(*mul);
                    gate = self.output(*mul)?;
                }
            }
            let apply = self
                .consumers_of(gate)
                .iter()
                .copied()
                .find(|&o| {
                    g.ops[o].op == BuiltinOp::Mul
                        && (0..2).any(|k| self.input(o, k).ok() == Some(f))
                })
                .ok_or_else(|| {
                    self.err(format!(
                        "{layer}: no MUL applies the gate to the feature map"
                    ))
                })?;
            self.take(apply);
            f = self.output(apply)?;
            se = Some(SqueezeExcite {
                c: ce,
                reduce,
                expand: expand_se,
                gate_scale,
                cumulative_first,
                pool,
            });
        }

        // projection, rezero, residual
        let layer = format!("{name}/projection");
        let proj = self.consumer(f, BuiltinOp::Conv2d, "the projection conv")?;
        let (mut project, p) = self.pointwise(proj, &layer)?;
        if project.cin != ce {
            return Err(self.err(format!(
                "{layer} takes {} channels, the block carries {ce}",
                project.cin
            )));
        }
        if project.act != Activation::None {
            return Err(EngineError::Unsupported {
                layer,
                why: "activation after the projection".into(),
            });
        }
        let mut q = p;
        if let Some(mul) = self.find_consumer(p, BuiltinOp::Mul) {
            let other = if self.input(mul, 0)? == p {
                self.input(mul, 1)?
            } else {
                self.input(mul, 0)?
            };
            if self.is_const(other) {
                let rz = self.constant(other, &format!("{name}/rezero"))?;
                let per_channel = per_channel_constant(&rz, project.cout).ok_or_else(|| {
                    self.err(format!(
                        "{name}/rezero: multiplier varies over space ({} values)",
                        rz.len()
                    ))
                })?;
                for (o, &r) in per_channel.iter().enumerate() {
                    for v in &mut project.w[o * project.cin..(o + 1) * project.cin] {
                        *v *= r;
                    }
                    project.bias[o] *= r;
                }
                self.take(mul);
                q = self.output(mul)?;
            }
        }
        let add = self.consumer(q, BuiltinOp::Add, "the residual add")?;
        let other = if self.input(add, 0)? == q {
            self.input(add, 1)?
        } else {
            self.input(add, 0)?
        };
        self.take(add);
        let skip = if other == x {
            if (oh, ow, project.cout) != (h, w, c) {
                return Err(self.err(format!(
                    "{name}: identity skip but the block maps {h}x{w}x{c} to {oh}x{ow}x{}",
                    project.cout
                )));
            }
            Skip::Identity
        } else {
            let sconv = self.producer[other]
                .filter(|&o| g.ops[o].op == BuiltinOp::Conv2d)
                .ok_or_else(|| self.err(format!("{name}: the residual add's other input is neither the block input nor a 1x1 conv")))?;
            let src = self.input(sconv, 0)?;
            let pool = if src == x {
                None
            } else {
                let pool_op = self.producer[src]
                    .filter(|&o| {
                        g.ops[o].op == BuiltinOp::AveragePool2d && self.input(o, 0).ok() == Some(x)
                    })
                    .ok_or_else(|| {
                        self.err(format!(
                            "{name}: skip conv reads neither the block input nor its average pool"
                        ))
                    })?;
                let OpOptions::Pool {
                    padding,
                    stride_h,
                    filter_h,
                    filter_w,
                    ..
                } = g.ops[pool_op].options
                else {
                    return Err(self.err(format!("{name}: average pool without options")));
                };
                self.take(pool_op);
                Some(self.geom(
                    padding,
                    h,
                    w,
                    filter_h.max(0) as usize,
                    filter_w.max(0) as usize,
                    stride_h.max(0) as usize,
                )?)
            };
            let (conv, _) = self.pointwise(sconv, &format!("{name}/skip"))?;
            if conv.cin != c
                || conv.cout != project.cout
                || pool.is_some_and(|g| (g.out_h, g.out_w) != (oh, ow))
            {
                return Err(self.err(format!(
                    "{name}/skip maps {}->{} channels, the block {c}->{}",
                    conv.cin, conv.cout, project.cout
                )));
            }
            if pool.is_none() && (h, w) != (oh, ow) {
                return Err(self.err(format!(
                    "{name}/skip has no pool but the block changes {h}x{w} to {oh}x{ow}"
                )));
            }
            Skip::Project { pool, conv }
        };
        let out = self.output(add)?;
        self.check_hwc(out, oh, ow, project.cout, &name)?;
        Ok((
            Block {
                name,
                in_h: h,
                in_w: w,
                in_c: c,
                expand,
                spatial,
                temporal,
                se,
                project,
                skip,
            },
            out,
        ))
    }

    /// `m` → ADD(m, pool state) → DIV(·, count + 1): returns the cumulative mean tensor
    /// and the new cumulative pool's index.
    fn cumulative_mean(&mut self, m: usize, c: usize, layer: &str) -> Result<(usize, usize)> {
        let g = self.g;
        let add = self
            .consumers_of(m)
            .iter()
            .copied()
            .find(|&o| {
                g.ops[o].op == BuiltinOp::Add
                    && (0..2).any(|k| {
                        self.input(o, k)
                            .map(|t| self.graph_inputs_canon(t))
                            .unwrap_or(false)
                    })
            })
            .ok_or_else(|| {
                self.err(format!(
                    "{layer}: no ADD of the frame mean into a pool state input"
                ))
            })?;
        self.take(add);
        let s = self.output(add)?;
        // optional state write-back slice
        if let Some(sl) = self.find_consumer(s, BuiltinOp::StridedSlice) {
            self.take(sl);
        }
        let div = self.consumer(s, BuiltinOp::Div, "the cumulative mean division")?;
        self.take(div);
        let count = self.input(div, 1)?;
        let inc = self.producer[count]
            .filter(|&o| g.ops[o].op == BuiltinOp::Add)
            .ok_or_else(|| {
                self.err(format!(
                    "{layer}: the pool's divisor is not frame_count + constant"
                ))
            })?;
        let (a, b) = (self.input(inc, 0)?, self.input(inc, 1)?);
        let k = if self.is_const(a) { a } else { b };
        let step = self.constant(k, layer)?;
        if step != [1.0] {
            return Err(EngineError::Unsupported {
                layer: layer.into(),
                why: format!("frame count advances by {step:?} per frame"),
            });
        }
        self.take(inc);
        let pool = self.cumulative_pools.len();
        self.cumulative_pools.push(c);
        Ok((self.output(div)?, pool))
    }

    fn graph_inputs_canon(&self, t: usize) -> bool {
        self.g.inputs.iter().any(|&i| self.canon(i) == t) || self.graph_inputs[t]
    }

    fn head(&mut self, convs: &[usize], h: usize, w: usize, c: usize) -> Result<(Head, usize)> {
        let g = self.g;
        let [proj_op] = convs else {
            return Err(self.err(format!(
                "the head input feeds {} convolutions, expected 1",
                convs.len()
            )));
        };
        let (project, hx) = self.pointwise(*proj_op, "head/project")?;
        if project.cin != c {
            return Err(self.err(format!(
                "head/project takes {} channels, the last block gives {c}",
                project.cin
            )));
        }
        let pixels = h * w;
        let ch = project.cout;
        let (pooled, pool_scale) = if let Some(sum) = self.find_consumer(hx, BuiltinOp::Sum) {
            self.take(sum);
            let s = self.output(sum)?;
            let mul = self.consumer(s, BuiltinOp::Mul, "the head pool's scale")?;
            let k = if self.input(mul, 0)? == s {
                self.input(mul, 1)?
            } else {
                self.input(mul, 0)?
            };
            let v = self.constant(k, "head/pool")?;
            let scale = if v.len() == 1 { vec![v[0]; ch] } else { v };
            if scale.len() != ch {
                return Err(self.err(format!(
                    "head/pool scale has {} values for {ch} channels",
                    scale.len()
                )));
            }
            self.take(mul);
            (self.output(mul)?, scale)
        } else {
            let mean = self.consumer(hx, BuiltinOp::Mean, "the head's spatial pool")?;
            self.take(mean);
            (self.output(mean)?, vec![1.0 / pixels as f32; ch])
        };
        let (cm, pool) = self.cumulative_mean(pooled, ch, "head/pool")?;
        let d1 = self.consumer(cm, BuiltinOp::Conv2d, "the head's first dense layer")?;
        let (dense1, h1) = self.pointwise(d1, "head/dense1")?;
        let d2 = self.consumer(h1, BuiltinOp::Conv2d, "the classifier layer")?;
        let (dense2, logits) = self.pointwise(d2, "head/classifier")?;
        if dense1.cin != ch || dense2.cin != dense1.cout {
            return Err(self.err("head dense layers do not chain"));
        }
        let _ = g;
        Ok((
            Head {
                pixels,
                project,
                pool_scale,
                pool,
                dense1,
                dense2,
            },
            logits,
        ))
    }
}

/// `[.., C]` constant that is the same at every position → its C values.
fn per_channel_constant(v: &[f32], c: usize) -> Option<Vec<f32>> {
    if v.len() == 1 {
        return Some(vec![v[0]; c]);
    }
    if c == 0 || !v.len().is_multiple_of(c) {
        return None;
    }
    let first = &v[..c];
    v.chunks_exact(c)
        .all(|ch| ch == first)
        .then(|| first.to_vec())
}

fn block_name(imp: &Importer<'_, '_>, expansion: usize, index: usize) -> String {
    // Weight names carry `blockS_layerL`; fall back to the ordinal.
    let wname = imp.g.ops[expansion]
        .inputs
        .get(1)
        .copied()
        .flatten()
        .map(|t| imp.tname(t))
        .unwrap_or("");
    wname
        .split('/')
        .find(|p| p.starts_with("block") && p.contains("_layer"))
        .map(str::to_string)
        .unwrap_or_else(|| format!("block{index}"))
}

fn describe_weights(g: &Graph<'_>) -> String {
    let mut kinds: HashMap<&'static str, usize> = HashMap::new();
    for t in &g.tensors {
        if t.data.is_some() && t.elements() > 16 {
            let k = match (t.dtype, t.quant.is_some()) {
                (DType::I8, true) => "int8",
                (DType::F16, _) => "float16",
                (DType::F32, _) => "float32",
                _ => continue,
            };
            *kinds.entry(k).or_default() += t.elements();
        }
    }
    let int8_acts = g
        .tensors
        .iter()
        .any(|t| t.data.is_none() && t.dtype == DType::I8);
    let mut v: Vec<_> = kinds.into_iter().collect();
    v.sort_by_key(|k| std::cmp::Reverse(k.1));
    let main = v.first().map(|k| k.0).unwrap_or("float32");
    match (main, int8_acts) {
        ("int8", true) => {
            "int8 per-channel weights and activations (full integer), dequantized to f32".into()
        }
        ("int8", false) => {
            "int8 per-channel weights, float activations (dynamic range), dequantized to f32".into()
        }
        (k, _) => format!("{k} weights"),
    }
}
