//! [`Preprocessor`]: RGB u8 frames to the encoders' `pixel_values`, as the Hugging Face
//! PIL image processors do it: shortest side to `size` with PIL's resampling
//! (BICUBIC for CLIP, BILINEAR for X-CLIP — read from `preprocessor_config.json`), center
//! crop, `x / 255`, `(x - mean) / std`, channel-first.
//!
//! The resize reproduces Pillow's `ImagingResample` bit for bit: separable passes
//! (horizontal, then vertical) with antialiasing support scaled by the reduction factor,
//! coefficients computed in double precision, normalised, converted to 22-bit fixed point
//! and accumulated in integers with rounding and clamping to u8 after each pass. Only the
//! output pixels inside the crop are computed (each output pixel depends on its own taps
//! only, so this changes no value). Coefficients are cached per input size in the
//! [`PreprocessWorkspace`].

use std::path::Path;

use serde_json::Value;

use super::config::Family;
use crate::{EngineError, Result};

/// Pillow's resampling filters that CLIP-family processors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// PIL `BILINEAR` (2): triangle filter, support 1.
    Bilinear,
    /// PIL `BICUBIC` (3): Keys cubic with `a = -0.5`, support 2.
    Bicubic,
}

impl Resample {
    fn support(self) -> f64 {
        match self {
            Resample::Bilinear => 1.0,
            Resample::Bicubic => 2.0,
        }
    }

    fn filter(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Resample::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Resample::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// How frames become `pixel_values` (a `preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Resize so the shorter side has this length (aspect kept); `None`: no resize.
    pub shortest_edge: Option<usize>,
    pub resample: Resample,
    /// Center crop `(height, width)`; `None`: no crop.
    pub crop: Option<(usize, usize)>,
    /// Multiply by this (`1/255`); `None`: no rescale.
    pub rescale: Option<f32>,
    /// Per-channel `(mean, std)`; `None`: no normalisation.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

// the decimal strings transformers uses (OPENAI_CLIP_MEAN / OPENAI_CLIP_STD)
#[allow(clippy::excessive_precision)]
const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl PreprocessConfig {
    /// The family's released processor: CLIP — shortest edge 224 BICUBIC, OpenAI
    /// mean/std; X-CLIP — BILINEAR, ImageNet mean/std. `size` is the model's image size.
    pub fn default_for(family: Family, size: usize) -> PreprocessConfig {
        let (resample, mean, std) = match family {
            Family::Clip => (Resample::Bicubic, OPENAI_MEAN, OPENAI_STD),
            Family::XClip => (Resample::Bilinear, IMAGENET_MEAN, IMAGENET_STD),
        };
        PreprocessConfig {
            shortest_edge: Some(size),
            resample,
            crop: Some((size, size)),
            rescale: Some(1.0 / 255.0),
            normalize: Some((mean, std)),
        }
    }

    /// `dir/preprocessor_config.json`, or the family's default when there is none.
    pub fn load(dir: &Path, family: Family, size: usize) -> Result<PreprocessConfig> {
        let path = dir.join("preprocessor_config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PreprocessConfig::default_for(family, size))
            }
            Err(e) => {
                return Err(EngineError::Io { path, source: e });
            }
        };
        PreprocessConfig::parse(&path, &text, family, size)
    }

    /// Parse a `preprocessor_config.json` (old and new forms of `size` / `crop_size`).
    pub fn parse(path: &Path, text: &str, family: Family, size: usize) -> Result<PreprocessConfig> {
        let bad = |why: String| EngineError::NotClip {
            path: path.to_path_buf(),
            why,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let d = PreprocessConfig::default_for(family, size);
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(true);
        let dim = |x: &Value| x.as_u64().filter(|&n| n > 0).map(|n| n as usize);
        let shortest_edge = if !flag("do_resize") {
            None
        } else {
            match v.get("size") {
                None => d.shortest_edge,
                Some(s) => Some(
                    dim(s)
                        .or_else(|| s.get("shortest_edge").and_then(dim))
                        .ok_or_else(|| {
                            bad(format!(
                                "size {s} is not supported (expected an integer or {{\"shortest_edge\": n}})"
                            ))
                        })?,
                ),
            }
        };
        let crop = if !flag("do_center_crop") {
            None
        } else {
            match v.get("crop_size") {
                None => d.crop,
                Some(c) => Some(
                    dim(c)
                        .map(|n| (n, n))
                        .or_else(|| Some((dim(c.get("height")?)?, dim(c.get("width")?)?)))
                        .ok_or_else(|| bad(format!("crop_size {c} is not supported")))?,
                ),
            }
        };
        let resample = match v.get("resample").and_then(Value::as_u64) {
            None => d.resample,
            Some(2) => Resample::Bilinear,
            Some(3) => Resample::Bicubic,
            Some(n) => {
                return Err(bad(format!(
                    "resample {n} is not supported (2 = bilinear, 3 = bicubic)"
                )))
            }
        };
        let triple = |k: &str, def: [f32; 3]| -> Result<[f32; 3]> {
            match v.get(k) {
                None => Ok(def),
                Some(x) => x
                    .as_array()
                    .filter(|a| a.len() == 3)
                    .and_then(|a| {
                        let f: Vec<f32> = a
                            .iter()
                            .filter_map(|e| e.as_f64().map(|f| f as f32))
                            .collect();
                        <[f32; 3]>::try_from(f).ok()
                    })
                    .ok_or_else(|| bad(format!("{k} {x} is not three numbers"))),
            }
        };
        let rescale = if flag("do_rescale") {
            Some(
                v.get("rescale_factor")
                    .and_then(Value::as_f64)
                    .map_or(1.0 / 255.0, |f| f as f32),
            )
        } else {
            None
        };
        let (dm, ds) = d.normalize.unwrap_or((OPENAI_MEAN, OPENAI_STD));
        let normalize = if flag("do_normalize") {
            Some((triple("image_mean", dm)?, triple("image_std", ds)?))
        } else {
            None
        };
        Ok(PreprocessConfig {
            shortest_edge,
            resample,
            crop,
            rescale,
            normalize,
        })
    }
}

/// One RGB u8 frame, `height` rows of `stride >= 3 * width` bytes.
#[derive(Debug, Clone, Copy)]
pub struct RgbFrame<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

impl<'a> RgbFrame<'a> {
    /// A tightly packed frame (`stride = 3 * width`).
    pub fn packed(data: &'a [u8], width: usize, height: usize) -> RgbFrame<'a> {
        RgbFrame {
            data,
            width,
            height,
            stride: 3 * width,
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's per-output-pixel taps along one axis, for output indices `first..first+len`.
#[derive(Debug, Default, Clone)]
struct Taps {
    ksize: usize,
    /// `(first input index, tap count)` per output index
    bounds: Vec<(usize, usize)>,
    /// fixed-point weights, `ksize` per output index
    weights: Vec<i32>,
}

impl Taps {
    /// Pillow `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size → out_size`,
    /// keeping outputs `first..first + len`.
    fn new(in_size: usize, out_size: usize, first: usize, len: usize, filter: Resample) -> Taps {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut t = Taps {
            ksize,
            bounds: Vec::with_capacity(len),
            weights: vec![0; len * ksize],
        };
        let mut w = vec![0.0f64; ksize];
        for (i, xx) in (first..first + len).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
            let mut ww = 0.0;
            for (x, wx) in w.iter_mut().enumerate().take(xmax) {
                *wx = filter.filter((x as f64 + xmin as f64 - center + 0.5) * ss);
                ww += *wx;
            }
            for (x, &wx) in w.iter().enumerate().take(xmax) {
                let k = if ww != 0.0 { wx / ww } else { wx };
                let scaled = k * (1u32 << PRECISION_BITS) as f64;
                t.weights[i * ksize + x] = if k < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                };
            }
            t.bounds.push((xmin, xmax));
        }
        t
    }
}

#[inline(always)]
fn clip8(ss: i64) -> u8 {
    if ss >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if ss <= 0 {
        0
    } else {
        (ss >> PRECISION_BITS) as u8
    }
}

/// The resample plan of one input size.
#[derive(Debug, Default, Clone)]
struct Plan {
    input: (usize, usize),
    /// resized size `(height, width)` and the crop's offset and size in it
    resized: (usize, usize),
    top: usize,
    left: usize,
    out: (usize, usize),
    horizontal: Taps,
    vertical: Taps,
    /// input rows the vertical pass reads
    rows: (usize, usize),
}

/// Cached resample coefficients and the horizontal pass's u8 rows.
#[derive(Debug, Default)]
pub struct PreprocessWorkspace {
    plan: Option<Plan>,
    rows: Vec<u8>,
}

/// Frames to `pixel_values` for one model.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    pub cfg: PreprocessConfig,
    /// The model's input side; the output is `[3, size, size]`.
    pub size: usize,
}

impl Preprocessor {
    /// Check that `cfg` ends in `size × size` images (the model's input).
    pub fn new(cfg: PreprocessConfig, size: usize, path: &Path) -> Result<Preprocessor> {
        match (cfg.shortest_edge, cfg.crop) {
            (_, Some((h, w))) if h == size && w == size => {}
            (Some(s), None) if s == size => {}
            _ => {
                return Err(EngineError::NotClip {
                    path: path.to_path_buf(),
                    why: format!(
                        "preprocessor_config.json gives {:?} resize / {:?} crop, but the model takes {size}x{size} images",
                        cfg.shortest_edge, cfg.crop
                    ),
                })
            }
        }
        if let Some(s) = cfg.shortest_edge {
            if s < size {
                return Err(EngineError::NotClip {
                    path: path.to_path_buf(),
                    why: format!(
                        "preprocessor_config.json resizes to {s}, smaller than the {size}px crop"
                    ),
                });
            }
        }
        Ok(Preprocessor { cfg, size })
    }

    /// Floats per image: `3 * size * size`.
    pub fn output_len(&self) -> usize {
        3 * self.size * self.size
    }

    fn plan(&self, width: usize, height: usize) -> Result<Plan> {
        let (rh, rw) = match self.cfg.shortest_edge {
            None => (height, width),
            Some(s) if height <= width => (s, (s as f64 * width as f64 / height as f64) as usize),
            Some(s) => ((s as f64 * height as f64 / width as f64) as usize, s),
        };
        let (ch, cw) = self.cfg.crop.unwrap_or((rh, rw));
        if ch > rh || cw > rw || (ch, cw) != (self.size, self.size) {
            return Err(EngineError::ClipInput(format!(
                "a {width}x{height} frame resizes to {rw}x{rh}, which does not crop to {0}x{0}",
                self.size
            )));
        }
        let (top, left) = ((rh - ch) / 2, (rw - cw) / 2);
        let horizontal = Taps::new(width, rw, left, cw, self.cfg.resample);
        let vertical = Taps::new(height, rh, top, ch, self.cfg.resample);
        let first = vertical.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let last = vertical.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        Ok(Plan {
            input: (height, width),
            resized: (rh, rw),
            top,
            left,
            out: (ch, cw),
            horizontal,
            vertical,
            rows: (first, last),
        })
    }

    /// `out [3, size, size]` from one frame.
    pub fn run(
        &self,
        frame: RgbFrame<'_>,
        ws: &mut PreprocessWorkspace,
        out: &mut [f32],
    ) -> Result<()> {
        let (w, h) = (frame.width, frame.height);
        if w == 0
            || h == 0
            || frame.stride < 3 * w
            || frame.data.len() < (h - 1) * frame.stride + 3 * w
        {
            return Err(EngineError::ClipInput(format!(
                "frame of {w}x{h} (stride {}) has {} bytes",
                frame.stride,
                frame.data.len()
            )));
        }
        if out.len() < self.output_len() {
            return Err(EngineError::ClipInput(format!(
                "pixel buffer of {} floats, need {}",
                out.len(),
                self.output_len()
            )));
        }
        if ws.plan.as_ref().map(|p| p.input) != Some((h, w)) {
            ws.plan = Some(self.plan(w, h)?);
        }
        let Some(plan) = ws.plan.as_ref() else {
            return Ok(());
        };
        let (oh, ow) = plan.out;
        let (rh, rw) = plan.resized;
        let need_h = rw != w;
        let need_v = rh != h;
        let (r0, r1) = if need_v {
            plan.rows
        } else {
            (plan.top, plan.top + oh)
        };
        // horizontal pass over the rows the vertical pass reads → u8 [r1 - r0, ow, 3]
        ws.rows.resize((r1 - r0) * ow * 3, 0);
        let hz = &plan.horizontal;
        for (ri, y) in (r0..r1).enumerate() {
            let src = &frame.data[y * frame.stride..y * frame.stride + 3 * w];
            let dst = &mut ws.rows[ri * ow * 3..(ri + 1) * ow * 3];
            if !need_h {
                dst.copy_from_slice(&src[plan.left * 3..(plan.left + ow) * 3]);
                continue;
            }
            for (xx, px) in dst.chunks_exact_mut(3).enumerate() {
                let (xmin, n) = hz.bounds[xx];
                let k = &hz.weights[xx * hz.ksize..xx * hz.ksize + n];
                let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
                for (x, &kw) in k.iter().enumerate() {
                    let s = &src[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += s[c] as i64 * kw as i64;
                    }
                }
                for c in 0..3 {
                    px[c] = clip8(ss[c]);
                }
            }
        }
        // vertical pass, then rescale / normalise into channel-first floats
        let vt = &plan.vertical;
        let (scale, (mean, std)) = (
            self.cfg.rescale,
            self.cfg.normalize.unwrap_or(([0.0; 3], [1.0; 3])),
        );
        let plane = oh * ow;
        for yy in 0..oh {
            for xx in 0..ow {
                let mut px = [0u8; 3];
                if need_v {
                    let (ymin, n) = vt.bounds[yy];
                    let k = &vt.weights[yy * vt.ksize..yy * vt.ksize + n];
                    let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
                    for (y, &kw) in k.iter().enumerate() {
                        let s = &ws.rows[((ymin + y - r0) * ow + xx) * 3..][..3];
                        for c in 0..3 {
                            ss[c] += s[c] as i64 * kw as i64;
                        }
                    }
                    for c in 0..3 {
                        px[c] = clip8(ss[c]);
                    }
                } else {
                    px.copy_from_slice(&ws.rows[(yy * ow + xx) * 3..][..3]);
                }
                for c in 0..3 {
                    let mut v = px[c] as f32;
                    if let Some(s) = scale {
                        // numpy's `x / float32(255)` for the standard factor, else `x * s`
                        v = if s == 1.0 / 255.0 { v / 255.0 } else { v * s };
                    }
                    if self.cfg.normalize.is_some() {
                        v = (v - mean[c]) / std[c];
                    }
                    out[c * plane + yy * ow + xx] = v;
                }
            }
        }
        Ok(())
    }
}
