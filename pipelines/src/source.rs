//! Sources as the user names them: [`SourceSpec`] parses and checks a source string
//! (`rtsp://`, a file or `file://`, `v4l2://`, `test:`, `gst:`, a `.safetensors` fixture)
//! and [`StreamOptions`] says how to open it (model input size, aspect, rate, RTSP
//! transport, reconnect policy).
//!
//! Opening is elsewhere, one module per step: [`crate::pipeline`] builds the GStreamer
//! pipeline, [`crate::frame_path`] installs the resampling probe and the appsink callback,
//! [`crate::bus`] drives the bus, [`crate::reconnect`] is a stream's ingest thread with
//! its backoff. [`SourceSpec::shown`] is the source with credentials masked
//! ([`crate::redact`]): the only form that reaches logs, errors and output.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

use crate::redact::redact;
use crate::resample::Rate;
use crate::{PipelineError, Result};

/// What kind of source a [`SourceSpec`] names.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// `rtsp://host[:port]/path` (also `rtsps://`, `rtspt://`).
    Rtsp { uri: String },
    /// A local video file (plain path or `file://` URI).
    File { path: PathBuf },
    /// `v4l2:///dev/videoN`.
    V4l2 { device: PathBuf },
    /// `test:` — a live `videotestsrc`; options `pattern=ball,fps=30,width=320,height=240,num-buffers=N`.
    Test {
        pattern: String,
        fps: u32,
        width: u32,
        height: u32,
        num_buffers: Option<u32>,
    },
    /// `gst:<fragment>` — any user pipeline producing raw video.
    Gst { fragment: String },
    /// A `.safetensors` fixture (fed directly to the engine, no GStreamer).
    Fixture { path: PathBuf },
}

/// A parsed source string.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// What the user typed (may hold credentials: never show it, show [`Self::shown`]).
    pub raw: String,
    /// What the user typed with credentials masked: for logs, errors and output.
    pub shown: String,
    pub kind: SourceKind,
}

const SOURCE_HINT: &str =
    "use a video file, file://, rtsp://host/path, v4l2:///dev/videoN, test: or gst:<pipeline fragment>";

impl SourceSpec {
    /// Parse and check a source string (files must exist; URIs must be well formed).
    pub fn parse(s: &str) -> Result<SourceSpec> {
        let shown = redact(s);
        let bad = |why: String, hint: &str| PipelineError::BadSource {
            source_str: shown.clone(),
            why,
            hint: hint.to_string(),
        };
        let raw = s.to_string();
        let lower = s.to_ascii_lowercase();
        let kind = if lower.starts_with("rtsp://")
            || lower.starts_with("rtsps://")
            || lower.starts_with("rtspt://")
        {
            let rest = &s[s.find("://").map(|i| i + 3).unwrap_or(0)..];
            let authority = rest.split('/').next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or("");
            let host_only = if host.starts_with('[') {
                host.split(']').next().unwrap_or("")
            } else {
                host.split(':').next().unwrap_or("")
            };
            if host_only.is_empty() || host_only == "[" {
                return Err(bad(
                    "no host in the RTSP URI".into(),
                    "write it as rtsp://host[:port]/path",
                ));
            }
            if let Some(port) = host
                .strip_prefix(host_only)
                .and_then(|p| p.strip_prefix(':'))
            {
                if !port.is_empty() && port.parse::<u16>().is_err() {
                    return Err(bad(
                        format!("invalid port {port:?}"),
                        "write it as rtsp://host[:port]/path",
                    ));
                }
            }
            if s.chars().any(char::is_whitespace) {
                return Err(bad(
                    "whitespace in the RTSP URI".into(),
                    "percent-encode spaces (%20)",
                ));
            }
            SourceKind::Rtsp { uri: s.to_string() }
        } else if lower.starts_with("file://") {
            let (path, _) = glib::filename_from_uri(s)
                .map_err(|e| bad(e.to_string(), "write it as file:///absolute/path.mp4"))?;
            check_file(&path).map_err(|why| bad(why, "check the path"))?;
            SourceKind::File { path }
        } else if lower.starts_with("v4l2://") {
            let device = PathBuf::from(&s[7..]);
            if device.as_os_str().is_empty() {
                return Err(bad("no device".into(), "write it as v4l2:///dev/video0"));
            }
            // a missing device is checked when the stream connects: a camera unplugged
            // at start-up is retried like a camera off the network
            SourceKind::V4l2 { device }
        } else if lower.starts_with("test:") {
            parse_test(&s[5..]).map_err(|why| {
                bad(
                    why,
                    "e.g. test:pattern=ball,fps=30,width=320,height=240,num-buffers=300",
                )
            })?
        } else if lower.starts_with("gst:") {
            let fragment = s[4..].trim().to_string();
            if fragment.is_empty() {
                return Err(bad(
                    "empty pipeline fragment".into(),
                    "e.g. gst:videotestsrc num-buffers=50",
                ));
            }
            SourceKind::Gst { fragment }
        } else if let Some(i) = s.find("://") {
            return Err(bad(
                format!("unsupported scheme {:?}", &s[..i]),
                SOURCE_HINT,
            ));
        } else if lower.ends_with(".safetensors") {
            let path = PathBuf::from(s);
            check_file(&path).map_err(|why| bad(why, "pass an existing fixture file"))?;
            SourceKind::Fixture { path }
        } else {
            let path = PathBuf::from(s);
            check_file(&path).map_err(|why| bad(why, SOURCE_HINT))?;
            SourceKind::File { path }
        };
        Ok(SourceSpec { raw, shown, kind })
    }

    /// Live sources drop the oldest frame when the engine is behind; others apply
    /// backpressure. A `gst:` fragment counts as live when it names a live element.
    pub fn is_live(&self) -> bool {
        match &self.kind {
            SourceKind::Rtsp { .. } | SourceKind::V4l2 { .. } | SourceKind::Test { .. } => true,
            SourceKind::File { .. } | SourceKind::Fixture { .. } => false,
            SourceKind::Gst { fragment } => [
                "is-live=true",
                "is-live=1",
                "v4l2src",
                "rtspsrc",
                "udpsrc",
                "srtsrc",
                "ximagesrc",
                "pipewiresrc",
            ]
            .iter()
            .any(|k| fragment.contains(k)),
        }
    }

    /// Network sources reconnect after loss.
    pub fn is_network(&self) -> bool {
        matches!(self.kind, SourceKind::Rtsp { .. })
    }

    /// Capture devices (may be unplugged and plugged back in).
    pub fn is_device(&self) -> bool {
        matches!(self.kind, SourceKind::V4l2 { .. })
    }

    /// Sources that may come back after a loss: cameras on the network and devices.
    pub fn is_retryable(&self) -> bool {
        self.is_network() || self.is_device()
    }

    /// A live source that never ends by itself (no `num-buffers`, a device).
    pub fn is_endless(&self) -> bool {
        matches!(
            self.kind,
            SourceKind::Test {
                num_buffers: None,
                ..
            } | SourceKind::V4l2 { .. }
        )
    }

    /// A short default stream name.
    pub fn default_name(&self) -> String {
        let stem = |p: &Path| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into())
        };
        match &self.kind {
            SourceKind::File { path } | SourceKind::Fixture { path } => stem(path),
            SourceKind::V4l2 { device } => stem(device),
            SourceKind::Rtsp { uri } => {
                let rest = &uri[uri.find("://").map(|i| i + 3).unwrap_or(0)..];
                let mut parts = rest.split('/');
                let host = parts
                    .next()
                    .unwrap_or("rtsp")
                    .rsplit('@')
                    .next()
                    .unwrap_or("rtsp");
                let path = parts.rfind(|p| !p.is_empty());
                match path {
                    Some(p) => format!("{host}/{p}"),
                    None => host.to_string(),
                }
            }
            SourceKind::Test { .. } => "test".into(),
            SourceKind::Gst { .. } => "gst".into(),
        }
    }
}

fn check_file(path: &Path) -> std::result::Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("{} is not a file", path.display())),
        Err(e) => Err(format!("cannot open {}: {e}", path.display())),
    }
}

/// Limits of `test:` options (beyond them GStreamer's integer properties overflow).
const TEST_MAX_FPS: u32 = 1000;
const TEST_MAX_SIDE: u32 = 8192;

fn parse_test(opts: &str) -> std::result::Result<SourceKind, String> {
    let mut pattern = "ball".to_string();
    let (mut fps, mut width, mut height, mut num_buffers) = (30u32, 320u32, 240u32, None);
    for kv in opts.split([',', '&']).filter(|s| !s.trim().is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("option {kv:?} is not key=value"))?;
        let num = |v: &str, max: u32| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0 && n <= max)
                .ok_or_else(|| format!("{k}={v}: expected an integer from 1 to {max}"))
        };
        match k.trim() {
            "pattern" => pattern = v.trim().to_string(),
            "fps" => fps = num(v, TEST_MAX_FPS)?,
            "width" => width = num(v, TEST_MAX_SIDE)?,
            "height" => height = num(v, TEST_MAX_SIDE)?,
            "num-buffers" => num_buffers = Some(num(v, i32::MAX as u32)?),
            other => {
                return Err(format!(
                    "unknown test: option {other:?} (pattern, fps, width, height, num-buffers)"
                ))
            }
        }
    }
    check_test_pattern(&pattern)?;
    Ok(SourceKind::Test {
        pattern,
        fps,
        width,
        height,
        num_buffers,
    })
}

/// The nicks of `videotestsrc`'s `pattern` property (`None` when GStreamer or the element
/// is unavailable; building the pipeline then reports that).
pub fn test_patterns() -> Option<&'static [String]> {
    static PATTERNS: OnceLock<Option<Vec<String>>> = OnceLock::new();
    PATTERNS
        .get_or_init(|| {
            gst::init().ok()?;
            let src = gst::ElementFactory::make("videotestsrc").build().ok()?;
            let pspec = src.find_property("pattern")?;
            let class = glib::EnumClass::with_type(pspec.value_type())?;
            Some(
                class
                    .values()
                    .iter()
                    .map(|v| v.nick().to_string())
                    .collect(),
            )
        })
        .as_deref()
}

fn check_test_pattern(pattern: &str) -> std::result::Result<(), String> {
    match test_patterns() {
        Some(valid) if !valid.iter().any(|v| v == pattern) => Err(format!(
            "unknown pattern '{pattern}' (valid: {})",
            valid.join(", ")
        )),
        _ => Ok(()),
    }
}

/// How frames are fitted to the model's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Aspect {
    /// Scale both sides to the model size (distorts non-square video).
    #[default]
    Squash,
    /// Crop the centre square, then scale.
    CenterCrop,
}

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

/// Everything that shapes one stream's pipeline and its recovery.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Model input side (frames are S x S RGB).
    pub size: usize,
    pub aspect: Aspect,
    pub rate: Rate,
    pub rtsp_transport: RtspTransport,
    /// rtspsrc jitterbuffer latency.
    pub latency_ms: u32,
    /// Restart a file at its end.
    pub looping: bool,
    /// Treat EOS of a network source as loss and reconnect (long-running `watch`).
    pub reconnect_on_eos: bool,
    /// Keep retrying a network or device source that never connected (long-running
    /// `watch`, `serve`): a camera that is down at start-up is waited for.
    pub retry_initial: bool,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A network source with no decoded frame for this long is considered lost.
    pub stall_after: Duration,
}

impl StreamOptions {
    pub fn new(size: usize, rate: Rate) -> StreamOptions {
        StreamOptions {
            size,
            aspect: Aspect::Squash,
            rate,
            rtsp_transport: RtspTransport::Tcp,
            latency_ms: 200,
            looping: false,
            reconnect_on_eos: false,
            retry_initial: false,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            stall_after: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        let s = SourceSpec::parse("rtsp://user:pw@127.0.0.1:8554/cam1").unwrap();
        assert!(s.is_live() && s.is_network());
        assert_eq!(s.default_name(), "127.0.0.1:8554/cam1");
        let t = SourceSpec::parse("test:pattern=smpte,fps=60,num-buffers=10").unwrap();
        assert_eq!(
            t.kind,
            SourceKind::Test {
                pattern: "smpte".into(),
                fps: 60,
                width: 320,
                height: 240,
                num_buffers: Some(10)
            }
        );
        assert!(!SourceSpec::parse("gst:videotestsrc").unwrap().is_live());
        assert!(SourceSpec::parse("gst:videotestsrc is-live=true")
            .unwrap()
            .is_live());
        let f = SourceSpec::parse(concat!(env!("CARGO_MANIFEST_DIR"), "/src/source.rs")).unwrap();
        assert!(matches!(f.kind, SourceKind::File { .. }));
        assert!(!f.is_live());
    }

    #[test]
    fn rejects_bad_sources() {
        for bad in [
            "rtsp://",
            "rtsp:///path",
            "rtsp://host:99999/x",
            "http://x/y.mp4",
            "/no/such/file.mp4",
            "test:fps=0",
            "test:bogus=1",
            "gst:",
            "file:///no/such.mp4",
            "v4l2://",
            "test:fps=4000000000",
            "test:width=0",
            "test:num-buffers=4294967295",
        ] {
            let e = SourceSpec::parse(bad).unwrap_err();
            assert!(e.is_user_error(), "{bad}");
            assert!(e.to_string().contains(" — "), "{e}");
        }
    }

    #[test]
    fn unknown_test_pattern_names_the_valid_ones() {
        let e = SourceSpec::parse("test:pattern=nosuch")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown pattern 'nosuch' (valid: "), "{e}");
        assert!(e.contains("smpte") && e.contains("ball"), "{e}");
        assert!(SourceSpec::parse("test:pattern=snow").is_ok());
    }

    #[test]
    fn credentials_never_in_the_shown_form_or_errors() {
        let s = SourceSpec::parse("rtsp://admin:s3cret@127.0.0.1:8554/cam").unwrap();
        assert_eq!(s.shown, "rtsp://admin:***@127.0.0.1:8554/cam");
        assert!(!s.default_name().contains("s3cret"));
        let e = SourceSpec::parse("rtsp://admin:s3cret@127.0.0.1:99999/cam").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn devices_parse_without_the_device_present() {
        // checked at connect time and retried: a camera unplugged at start-up
        let s = SourceSpec::parse("v4l2:///dev/video99").unwrap();
        assert!(s.is_device() && s.is_retryable() && s.is_endless());
    }
}
