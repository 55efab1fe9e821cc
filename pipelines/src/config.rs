//! [`WatchConfig`]: the `cameras.toml` behind `vigil watch --config`.
//!
//! ```toml
//! model = "models/movinet_a0_stream_k600_int8.tflite"   # optional, --model wins
//! labels = "models/kinetics600_labels.txt"              # optional, --labels wins
//!
//! [[stream]]
//! name = "yard"
//! uri = "rtsp://10.0.0.5:554/stream1"
//! fps = 5              # or "native"; default: the model's training rate
//! enter = 0.6          # EMA score that starts an event (default 0.5)
//! exit = 0.4           # EMA score below which it ends (default 0.3)
//! smoothing = 0.4      # EMA weight of the newest frame (default 0.4)
//! min_duration = 1.0   # seconds above `enter` before an event starts (default 1)
//! labels = ["arm wrestling", "archery"]   # labels of interest; default: all
//! ```
//!
//! Open-vocabulary labels instead of `model` (CLIP zero-shot, or X-CLIP with `xclip`):
//!
//! ```toml
//! clip = "models/clip-vit-base-patch32"     # Hugging Face folder; --clip wins
//! prompts = ["a person climbing a fence", "someone lying on the floor"]
//! prompts_file = "prompts.txt"              # and/or one prompt per line
//! background = ["an empty yard"]            # compete, never reported
//! window = 4.0                              # seconds per score (CLIP); default 4
//! # stride = 4                              # X-CLIP: frames between clips
//!
//! [[stream]]
//! name = "yard"
//! uri = "rtsp://10.0.0.5:554/stream1"
//! fps = 1                                   # default 1 for CLIP
//! labels = ["a person climbing a fence"]    # events for these prompts only
//! ```
//!
//! Relative `model`, `labels`, `clip`, `xclip` and `prompts_file` paths are relative to
//! the config file's directory (sources are taken as written). Unknown keys are errors (a typo must not silently change behaviour).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::events::EventConfig;
use crate::resample::Rate;
use crate::{PipelineError, Result};

/// A frame rate as written in TOML: a number or `"native"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FpsValue {
    Number(f64),
    Text(String),
}

/// One `[[stream]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    pub uri: String,
    #[serde(default)]
    pub fps: Option<FpsValue>,
    #[serde(default)]
    pub enter: Option<f32>,
    #[serde(default)]
    pub exit: Option<f32>,
    #[serde(default)]
    pub smoothing: Option<f32>,
    /// Seconds above `enter` before an event starts.
    #[serde(default)]
    pub min_duration: Option<f64>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    #[serde(default)]
    pub model: Option<PathBuf>,
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// A Hugging Face CLIP folder (zero-shot labels from `prompts`).
    #[serde(default)]
    pub clip: Option<PathBuf>,
    /// A Hugging Face X-CLIP folder (video labels from `prompts`).
    #[serde(default)]
    pub xclip: Option<PathBuf>,
    #[serde(default)]
    pub prompts: Vec<String>,
    #[serde(default)]
    pub prompts_file: Option<PathBuf>,
    #[serde(default)]
    pub background: Vec<String>,
    /// Seconds per CLIP score.
    #[serde(default)]
    pub window: Option<f64>,
    /// X-CLIP: frames between clips.
    #[serde(default)]
    pub stride: Option<u32>,
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamConfig>,
}

impl StreamConfig {
    /// The stream's rate, if it sets one.
    pub fn rate(&self, path: &Path) -> Result<Option<Rate>> {
        match &self.fps {
            None => Ok(None),
            Some(FpsValue::Number(f)) => format!("{f}")
                .parse::<Rate>()
                .map(Some)
                .map_err(|why| self.err(path, why)),
            Some(FpsValue::Text(s)) => s
                .parse::<Rate>()
                .map(Some)
                .map_err(|why| self.err(path, why)),
        }
    }

    /// Thresholds (class names resolved by the caller).
    pub fn event_config(&self, classes: Option<Vec<usize>>) -> EventConfig {
        let d = EventConfig::default();
        EventConfig {
            enter: self.enter.unwrap_or(d.enter),
            exit: self.exit.unwrap_or(d.exit),
            alpha: self.smoothing.unwrap_or(d.alpha),
            min_duration: self.min_duration().unwrap_or(d.min_duration),
            classes,
        }
    }

    /// `min_duration` as a duration (a negative or non-finite value becomes one that
    /// [`EventConfig::validate`] refuses).
    pub fn min_duration(&self) -> Option<std::time::Duration> {
        self.min_duration.map(|s| {
            if s.is_finite() && s >= 0.0 {
                std::time::Duration::from_secs_f64(s.min(1e6))
            } else {
                std::time::Duration::MAX
            }
        })
    }

    fn err(&self, path: &Path, why: String) -> PipelineError {
        PipelineError::Config {
            path: path.to_path_buf(),
            why: format!("stream {:?}: {why}", self.name),
            hint: "fix that [[stream]] entry".into(),
        }
    }
}

impl WatchConfig {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<WatchConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::Config {
            path: path.to_path_buf(),
            why: e.to_string(),
            hint: "pass an existing TOML file to --config".into(),
        })?;
        WatchConfig::parse(&text, path)
    }

    /// Parse and validate config text; `path` is for messages and relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<WatchConfig> {
        let mut cfg: WatchConfig = toml::from_str(text).map_err(|e| PipelineError::Config {
            path: path.to_path_buf(),
            why: e.to_string().trim().replace('\n', " "),
            hint: "see `vigil watch --help` for the [[stream]] format (name, uri, fps, enter, exit, smoothing, min_duration, labels)".into(),
        })?;
        if cfg.streams.is_empty() {
            return Err(PipelineError::Config {
                path: path.to_path_buf(),
                why: "no [[stream]] entries".into(),
                hint: "add at least one [[stream]] with name and uri".into(),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.model = cfg.model.map(|m| base.join(m));
        cfg.labels = cfg.labels.map(|m| base.join(m));
        cfg.clip = cfg.clip.map(|m| base.join(m));
        cfg.xclip = cfg.xclip.map(|m| base.join(m));
        cfg.prompts_file = cfg.prompts_file.map(|m| base.join(m));
        let bad = |why: &str, hint: &str| PipelineError::Config {
            path: path.to_path_buf(),
            why: why.into(),
            hint: hint.into(),
        };
        let models = [cfg.model.is_some(), cfg.clip.is_some(), cfg.xclip.is_some()];
        if models.iter().filter(|&&m| m).count() > 1 {
            return Err(bad(
                "more than one of model, clip and xclip",
                "one analyzer per run: keep one of them (run another vigil for the other)",
            ));
        }
        if cfg.window.is_some_and(|w| !(w > 0.0 && w <= 3600.0)) {
            return Err(bad(
                "window must be from more than 0 to 3600 seconds",
                "e.g. window = 4.0",
            ));
        }
        if cfg.stride.is_some_and(|s| !(1..=1024).contains(&s)) {
            return Err(bad(
                "stride must be from 1 to 1024 frames",
                "e.g. stride = 4",
            ));
        }
        for (i, s) in cfg.streams.iter().enumerate() {
            if s.name.trim().is_empty() {
                return Err(s.err(path, "empty name".into()));
            }
            if cfg.streams[..i].iter().any(|o| o.name == s.name) {
                return Err(s.err(path, "duplicate stream name".into()));
            }
            s.rate(path)?;
            s.event_config(None)
                .validate()
                .map_err(|why| s.err(path, why))?;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streams() {
        let cfg = WatchConfig::parse(
            r#"
            model = "m.tflite"
            [[stream]]
            name = "a"
            uri = "test:"
            fps = 5
            enter = 0.7
            exit = 0.2
            labels = ["archery"]
            [[stream]]
            name = "b"
            uri = "rtsp://127.0.0.1:1/x"
            fps = "native"
            "#,
            Path::new("/etc/vigil/cameras.toml"),
        )
        .unwrap();
        assert_eq!(cfg.model.as_deref(), Some(Path::new("/etc/vigil/m.tflite")));
        assert_eq!(cfg.streams.len(), 2);
        assert_eq!(
            cfg.streams[0].rate(Path::new("x")).unwrap(),
            Some(Rate::Fps(5.0))
        );
        assert_eq!(
            cfg.streams[1].rate(Path::new("x")).unwrap(),
            Some(Rate::Native)
        );
        assert_eq!(cfg.streams[0].event_config(None).enter, 0.7);
    }

    #[test]
    fn parses_clip_settings() {
        let cfg = WatchConfig::parse(
            r#"
            clip = "clip-vit-base-patch32"
            prompts = ["a person climbing a fence"]
            prompts_file = "prompts.txt"
            background = ["an empty yard"]
            window = 6
            [[stream]]
            name = "yard"
            uri = "test:"
            fps = 1
            labels = ["a person climbing a fence"]
            "#,
            Path::new("/etc/vigil/cameras.toml"),
        )
        .unwrap();
        assert_eq!(
            cfg.clip.as_deref(),
            Some(Path::new("/etc/vigil/clip-vit-base-patch32"))
        );
        assert_eq!(
            cfg.prompts_file.as_deref(),
            Some(Path::new("/etc/vigil/prompts.txt"))
        );
        assert_eq!(cfg.window, Some(6.0));
        let p = Path::new("c.toml");
        for bad in [
            "model = \"m\"\nclip = \"c\"\n[[stream]]\nname = \"a\"\nuri = \"x\"\n",
            "clip = \"c\"\nwindow = 0\n[[stream]]\nname = \"a\"\nuri = \"x\"\n",
            "xclip = \"c\"\nstride = 0\n[[stream]]\nname = \"a\"\nuri = \"x\"\n",
        ] {
            let e = WatchConfig::parse(bad, p).unwrap_err();
            assert!(
                e.is_user_error() && e.to_string().contains(" — "),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn rejects_bad_files() {
        let p = Path::new("c.toml");
        for bad in [
            "[[stream]]\nname = \"a\"\n",                       // no uri
            "[[stream]]\nname = \"a\"\nuri = \"x\"\nfsp = 5\n", // typo
            "[[stream]]\nname = \"a\"\nuri = \"x\"\nenter = 0.2\nexit = 0.5\n", // inverted
            "[[stream]]\nname = \"a\"\nuri = \"x\"\nfps = \"fast\"\n",
            "[[stream]]\nname = \"a\"\nuri = \"x\"\n[[stream]]\nname = \"a\"\nuri = \"y\"\n",
            "this is not toml",
            "",
        ] {
            let e = WatchConfig::parse(bad, p).unwrap_err();
            assert!(matches!(e, PipelineError::Config { .. }), "{bad}: {e}");
            assert!(e.is_user_error());
        }
    }
}
