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
//! Relative `model` and `labels` paths are relative to the config file's directory
//! (sources are taken as written). Unknown keys are errors (a typo must not silently change behaviour).

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
