//! [`ClipConfig`]: the parts of a Hugging Face `config.json` the CLIP and X-CLIP encoders
//! need ([`VisionConfig`], [`TextConfig`], [`XClipConfig`]), with transformers' defaults
//! for fields a config leaves out and checks that the geometry is one we can run.

use std::path::Path;

use serde_json::Value;
use vigil_kernels::cpu::attention::MAX_KV;
use vigil_kernels::cpu::gelu::Gelu;

use crate::{EngineError, Result};

/// Which model family a directory holds (`model_type` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `CLIPModel`: image and text encoders, `logits_per_image`.
    Clip,
    /// `XCLIPModel`: cross-frame video encoder, multi-frame integration, prompt generator.
    XClip,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Clip => "CLIP",
            Family::XClip => "X-CLIP",
        }
    }
}

/// The vision transformer's geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub channels: usize,
    pub act: Gelu,
    pub eps: f32,
}

impl VisionConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Patches per image.
    pub fn patches(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Tokens per image: the class token and the patches.
    pub fn tokens(&self) -> usize {
        self.patches() + 1
    }
    /// Values of one flattened patch (`channels * patch * patch`).
    pub fn patch_dim(&self) -> usize {
        self.channels * self.patch_size * self.patch_size
    }
}

/// Where the text encoder pools its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPooling {
    /// At the first position holding this id (transformers, `eos_token_id != 2`).
    FirstId(u32),
    /// At the position of the largest id (`eos_token_id == 2`, old configs and X-CLIP;
    /// the same position for tokenizer output, since EOT 49407 is the largest id).
    ArgmaxId,
}

/// The causal text transformer's geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    /// Context length (77).
    pub max_positions: usize,
    pub act: Gelu,
    pub eps: f32,
    pub pooling: TextPooling,
}

/// X-CLIP's video parts.
#[derive(Debug, Clone, PartialEq)]
pub struct XClipConfig {
    /// Frames per clip the cross-frame encoder was built for.
    pub num_frames: usize,
    pub mit_hidden: usize,
    pub mit_intermediate: usize,
    pub mit_layers: usize,
    pub mit_heads: usize,
    pub prompt_layers: usize,
    pub prompt_heads: usize,
    pub prompt_act: Gelu,
}

/// A CLIP or X-CLIP model's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub family: Family,
    pub vision: VisionConfig,
    pub text: TextConfig,
    /// Width of the joint embedding space.
    pub projection_dim: usize,
    /// X-CLIP only.
    pub xclip: Option<XClipConfig>,
}

/// Field reader with transformers' defaults and errors naming the field.
struct Fields<'a> {
    obj: Option<&'a serde_json::Map<String, Value>>,
    section: &'a str,
    path: &'a Path,
}

impl Fields<'_> {
    fn err(&self, key: &str, why: &str) -> EngineError {
        EngineError::NotClip {
            path: self.path.to_path_buf(),
            why: format!("config.json {}{key} {why}", self.section),
        }
    }
    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.and_then(|o| o.get(key)).filter(|v| !v.is_null())
    }
    fn usize(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| self.err(key, &format!("is {v}, expected a positive integer"))),
        }
    }
    fn f64(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(key, &format!("is {v}, expected a number"))),
        }
    }
    fn int(&self, key: &str, default: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| self.err(key, &format!("is {v}, expected an integer"))),
        }
    }
    fn act(&self, key: &str) -> Result<Gelu> {
        match self.get(key) {
            None => Ok(Gelu::Quick),
            Some(v) => v.as_str().and_then(Gelu::from_hf_name).ok_or_else(|| {
                self.err(
                    key,
                    &format!("is {v}; supported: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh"),
                )
            }),
        }
    }
}

impl ClipConfig {
    /// Read `config.json` in `dir`.
    pub fn load(dir: &Path) -> Result<ClipConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::NotClip {
            path: dir.to_path_buf(),
            why: format!("cannot read {}: {e}", path.display()),
        })?;
        ClipConfig::parse(&path, &text)
    }

    /// Parse the text of a `config.json` (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<ClipConfig> {
        let not_clip = |why: String| EngineError::NotClip {
            path: path.to_path_buf(),
            why,
        };
        let root: Value =
            serde_json::from_str(text).map_err(|e| not_clip(format!("invalid JSON: {e}")))?;
        let obj = root
            .as_object()
            .ok_or_else(|| not_clip("config.json is not a JSON object".into()))?;
        let family = match obj.get("model_type").and_then(Value::as_str) {
            Some("clip") => Family::Clip,
            Some("xclip") => Family::XClip,
            Some(other) => {
                return Err(not_clip(format!(
                    "config.json has model_type {other:?}; expected \"clip\" or \"xclip\""
                )))
            }
            None => return Err(not_clip("config.json has no model_type".into())),
        };
        // transformers 4.x wrote both `text_config` and `text_config_dict`
        let section = |name: &str| {
            obj.get(name)
                .or_else(|| obj.get(&format!("{name}_dict")))
                .and_then(Value::as_object)
        };
        let top = Fields {
            obj: Some(obj),
            section: "",
            path,
        };
        let v = Fields {
            obj: section("vision_config"),
            section: "vision_config.",
            path,
        };
        let t = Fields {
            obj: section("text_config"),
            section: "text_config.",
            path,
        };
        let vision = VisionConfig {
            hidden: v.usize("hidden_size", 768)?,
            intermediate: v.usize("intermediate_size", 3072)?,
            layers: v.usize("num_hidden_layers", 12)?,
            heads: v.usize("num_attention_heads", 12)?,
            image_size: v.usize("image_size", 224)?,
            patch_size: v.usize("patch_size", 32)?,
            channels: v.usize("num_channels", 3)?,
            act: v.act("hidden_act")?,
            eps: v.f64("layer_norm_eps", 1e-5)? as f32,
        };
        let eos = t.int(
            "eos_token_id",
            if family == Family::Clip { 49407 } else { 2 },
        )?;
        let text = TextConfig {
            vocab: t.usize("vocab_size", 49408)?,
            hidden: t.usize("hidden_size", 512)?,
            intermediate: t.usize("intermediate_size", 2048)?,
            layers: t.usize("num_hidden_layers", 12)?,
            heads: t.usize("num_attention_heads", 8)?,
            max_positions: t.usize("max_position_embeddings", 77)?,
            act: t.act("hidden_act")?,
            eps: t.f64("layer_norm_eps", 1e-5)? as f32,
            // transformers: X-CLIP always pools at argmax(ids); CLIP at the first EOS,
            // except for legacy configs with eos_token_id 2
            pooling: if family == Family::XClip || eos == 2 {
                TextPooling::ArgmaxId
            } else {
                TextPooling::FirstId(u32::try_from(eos).map_err(|_| {
                    t.err("eos_token_id", &format!("is {eos}, expected a token id"))
                })?)
            },
        };
        let projection_dim = top.usize("projection_dim", 512)?;
        let xclip = match family {
            Family::Clip => None,
            Family::XClip => Some(XClipConfig {
                num_frames: v.usize("num_frames", 8)?,
                mit_hidden: v.usize("mit_hidden_size", 512)?,
                mit_intermediate: v.usize("mit_intermediate_size", 2048)?,
                mit_layers: v.usize("mit_num_hidden_layers", 1)?,
                mit_heads: v.usize("mit_num_attention_heads", 8)?,
                prompt_layers: top.usize("prompt_layers", 2)?,
                prompt_heads: top.usize("prompt_num_attention_heads", 8)?,
                prompt_act: top.act("prompt_hidden_act")?,
            }),
        };
        let cfg = ClipConfig {
            family,
            vision,
            text,
            projection_dim,
            xclip,
        };
        cfg.check(path)?;
        Ok(cfg)
    }

    /// Geometry the encoders can run: whole patches, widths divisible by head counts,
    /// sequences within the attention kernel's limit.
    fn check(&self, path: &Path) -> Result<()> {
        let bad = |why: String| {
            Err(EngineError::NotClip {
                path: path.to_path_buf(),
                why: format!("config.json: {why}"),
            })
        };
        let v = &self.vision;
        if !v.image_size.is_multiple_of(v.patch_size) {
            return bad(format!(
                "vision image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        let mut widths = vec![
            ("vision", v.hidden, v.heads),
            ("text", self.text.hidden, self.text.heads),
        ];
        if let Some(x) = &self.xclip {
            widths.push(("mit", x.mit_hidden, x.mit_heads));
            widths.push(("prompt", self.projection_dim, x.prompt_heads));
            if x.mit_hidden != self.projection_dim {
                return bad(format!(
                    "X-CLIP mit_hidden_size {} must equal projection_dim {}",
                    x.mit_hidden, self.projection_dim
                ));
            }
        }
        for (what, width, heads) in widths {
            if width % heads != 0 {
                return bad(format!(
                    "{what} width {width} is not divisible by its {heads} attention heads"
                ));
            }
        }
        // +1: X-CLIP's message token
        if v.tokens() + 1 > MAX_KV || self.text.max_positions > MAX_KV {
            return bad(format!(
                "sequences of {} image tokens / {} text positions exceed the supported {MAX_KV}",
                v.tokens(),
                self.text.max_positions
            ));
        }
        Ok(())
    }
}
