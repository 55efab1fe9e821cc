//! Sources: [`SourceSpec`] parses what the user typed, [`build_pipeline`] turns it into a
//! GStreamer pipeline ending in an appsink, [`drive_bus`] runs that pipeline until EOS,
//! error, stall or shutdown, and [`run_stream`] is one stream's ingest thread that rebuilds
//! the pipeline on loss (exponential backoff) or at end of file with `--loop`.
//!
//! Every pipeline ends in the same tail:
//! `queue ! videoconvert ! [aspectratiocrop 1/1] ! videoscale ! appsink(video/x-raw,format=RGB,width=S,height=S)`.
//! A buffer probe on the tail's first pad applies the [`AtomicResampler`], so frames the
//! model does not need are dropped before conversion; the appsink callback copies the kept
//! frame (row by row, honouring the plane stride) into a recycled [`FrameRing`] buffer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst_video::prelude::*;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use crate::frame_ring::{DropPolicy, FrameRing};
use crate::resample::{AtomicResampler, Rate};
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
    /// What the user typed.
    pub raw: String,
    pub kind: SourceKind,
}

const SOURCE_HINT: &str =
    "use a video file, file://, rtsp://host/path, v4l2:///dev/videoN, test: or gst:<pipeline fragment>";

impl SourceSpec {
    /// Parse and check a source string (files must exist; URIs must be well formed).
    pub fn parse(s: &str) -> Result<SourceSpec> {
        let bad = |why: String, hint: &str| PipelineError::BadSource {
            source_str: s.to_string(),
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
            if !device.exists() {
                return Err(bad(
                    format!("{} does not exist", device.display()),
                    "list cameras with `v4l2-ctl --list-devices`",
                ));
            }
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
        Ok(SourceSpec { raw, kind })
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

fn parse_test(opts: &str) -> std::result::Result<SourceKind, String> {
    let mut pattern = "ball".to_string();
    let (mut fps, mut width, mut height, mut num_buffers) = (30u32, 320u32, 240u32, None);
    for kv in opts.split([',', '&']).filter(|s| !s.trim().is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("option {kv:?} is not key=value"))?;
        let num = |v: &str| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{k}={v}: expected a positive integer"))
        };
        match k.trim() {
            "pattern" => pattern = v.trim().to_string(),
            "fps" => fps = num(v)?,
            "width" => width = num(v)?,
            "height" => height = num(v)?,
            "num-buffers" => num_buffers = Some(num(v)?),
            other => {
                return Err(format!(
                    "unknown test: option {other:?} (pattern, fps, width, height, num-buffers)"
                ))
            }
        }
    }
    Ok(SourceKind::Test {
        pattern,
        fps,
        width,
        height,
        num_buffers,
    })
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
    /// Keep retrying a network source that never connected (long-running `watch`).
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

/// Life cycle of a stream, as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamState {
    Starting = 0,
    Running = 1,
    Reconnecting = 2,
    Ended = 3,
    Failed = 4,
}

/// Shared between a stream's ingest thread, its GStreamer callbacks and the scheduler.
#[derive(Debug)]
pub struct StreamStatus {
    state: AtomicU8,
    generation: AtomicU64,
    error: Mutex<Option<PipelineError>>,
    epoch: Instant,
    last_activity_ms: AtomicU64,
    /// Frames out of the decoder (before resampling).
    pub decoded: AtomicU64,
    /// Frames kept by the resampler.
    pub sampled: AtomicU64,
    pub reconnects: AtomicU64,
    last_pts: AtomicU64,
    pts_span_ns: AtomicU64,
    pts_intervals: AtomicU64,
}

impl Default for StreamStatus {
    fn default() -> Self {
        StreamStatus {
            state: AtomicU8::new(StreamState::Starting as u8),
            generation: AtomicU64::new(0),
            error: Mutex::new(None),
            epoch: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_pts: AtomicU64::new(u64::MAX),
            pts_span_ns: AtomicU64::new(0),
            pts_intervals: AtomicU64::new(0),
        }
    }
}

impl StreamStatus {
    pub fn state(&self) -> StreamState {
        match self.state.load(Ordering::Acquire) {
            0 => StreamState::Starting,
            1 => StreamState::Running,
            2 => StreamState::Reconnecting,
            3 => StreamState::Ended,
            _ => StreamState::Failed,
        }
    }
    pub fn set_state(&self, s: StreamState) {
        self.state.store(s as u8, Ordering::Release);
    }
    /// Current connection generation (bumped on reconnect and loop).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
    /// Record the error that ended the stream and mark it failed.
    pub fn fail(&self, e: PipelineError) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(e);
        }
        self.set_state(StreamState::Failed);
    }
    /// Take the error that ended the stream, if any.
    pub fn take_error(&self) -> Option<PipelineError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }
    fn touch(&self, pts: Option<u64>) {
        self.last_activity_ms.store(
            self.epoch.elapsed().as_millis() as u64 + 1,
            Ordering::Relaxed,
        );
        self.decoded.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = pts {
            // frame intervals, skipping loops, reconnects and jumps of a second or more
            let last = self.last_pts.swap(p, Ordering::Relaxed);
            if last != u64::MAX && p > last && p - last < 1_000_000_000 {
                self.pts_span_ns.fetch_add(p - last, Ordering::Relaxed);
                self.pts_intervals.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    /// Time since the decoder last produced a frame (`None` before the first one).
    fn idle(&self) -> Option<Duration> {
        let last = self.last_activity_ms.load(Ordering::Relaxed);
        if last == 0 {
            return None;
        }
        Some(
            self.epoch
                .elapsed()
                .saturating_sub(Duration::from_millis(last - 1)),
        )
    }
    /// The source's frame rate estimated from decoded timestamps.
    pub fn native_fps(&self) -> Option<f64> {
        let span = self.pts_span_ns.load(Ordering::Relaxed);
        let n = self.pts_intervals.load(Ordering::Relaxed);
        if span == 0 || n == 0 {
            return None;
        }
        Some(n as f64 * 1e9 / span as f64)
    }
}

fn package_for(factory: &str) -> &'static str {
    match factory {
        "rtspsrc" | "v4l2src" | "aspectratiocrop" | "rtph264depay" | "rtph265depay" | "qtdemux" => {
            "gstreamer1.0-plugins-good"
        }
        "rawvideoparse" | "h265parse" => "gstreamer1.0-plugins-bad",
        "avdec_h264" | "avdec_h265" => "gstreamer1.0-libav",
        _ => "gstreamer1.0-plugins-base",
    }
}

fn make(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| PipelineError::MissingElement {
            element: factory.to_string(),
            package: package_for(factory).to_string(),
        })
}

/// A built pipeline: the pipeline, its appsink, and the pad the resampling probe goes on.
pub struct BuiltPipeline {
    pub pipeline: gst::Pipeline,
    pub appsink: gst_app::AppSink,
    /// Sink pad of the tail's first element (after decoding, before conversion).
    pub tail_pad: gst::Pad,
}

/// Build the whole GStreamer pipeline for `spec`: source, decoding and the common tail
/// ending in an RGB `size` x `size` appsink. Nothing is started.
pub fn build_pipeline(
    spec: &SourceSpec,
    opts: &StreamOptions,
    stream: &str,
) -> Result<BuiltPipeline> {
    let pipeline = gst::Pipeline::with_name(stream);

    // tail: queue ! videoconvert ! [aspectratiocrop] ! videoscale ! appsink
    let queue = make("queue")?;
    queue.set_property("max-size-buffers", 3u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    let convert = make("videoconvert")?;
    let scale = make("videoscale")?;
    scale.set_property("add-borders", false);
    let caps = gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::Rgb)
        .width(opts.size as i32)
        .height(opts.size as i32)
        .build();
    let appsink = gst_app::AppSink::builder()
        .caps(&caps)
        .sync(false)
        .max_buffers(1)
        .drop(false)
        .enable_last_sample(false)
        .build();
    let mut tail: Vec<gst::Element> = vec![queue.clone(), convert];
    if opts.aspect == Aspect::CenterCrop {
        let crop = make("aspectratiocrop")?;
        crop.set_property("aspect-ratio", gst::Fraction::new(1, 1));
        tail.push(crop);
    }
    tail.push(scale);
    tail.push(appsink.clone().upcast());
    pipeline.add_many(&tail)?;
    gst::Element::link_many(&tail)?;
    let tail_pad = queue
        .static_pad("sink")
        .ok_or_else(|| PipelineError::Internal("queue without sink pad".into()))?;

    match &spec.kind {
        SourceKind::File { path } => {
            let src = make("filesrc")?;
            src.set_property("location", path.to_string_lossy().as_ref());
            let decode = make("decodebin")?;
            pipeline.add_many([&src, &decode])?;
            src.link(&decode)?;
            link_decoded_video(&decode, &pipeline, &tail_pad);
        }
        SourceKind::V4l2 { device } => {
            let src = make("v4l2src")?;
            src.set_property("device", device.to_string_lossy().as_ref());
            let decode = make("decodebin")?;
            pipeline.add_many([&src, &decode])?;
            src.link(&decode)?;
            link_decoded_video(&decode, &pipeline, &tail_pad);
        }
        SourceKind::Rtsp { uri } => {
            let src = make("rtspsrc")?;
            src.set_property("location", uri.as_str());
            src.set_property("latency", opts.latency_ms);
            src.set_property_from_str(
                "protocols",
                match opts.rtsp_transport {
                    RtspTransport::Tcp => "tcp",
                    RtspTransport::Udp => "udp",
                },
            );
            // connection attempts give up quickly; reconnects are ours to pace
            src.set_property("tcp-timeout", 5_000_000u64);
            src.set_property("retry", 2u32);
            pipeline.add(&src)?;
            let weak_pipeline = pipeline.downgrade();
            let tail_pad = tail_pad.clone();
            src.connect_pad_added(move |_src, pad| {
                let Some(pipeline) = weak_pipeline.upgrade() else {
                    return;
                };
                let is_video = pad
                    .current_caps()
                    .and_then(|c| c.structure(0).and_then(|s| s.get::<String>("media").ok()))
                    .map(|m| m == "video")
                    .unwrap_or(false);
                if is_video && !tail_pad.is_linked() {
                    let Ok(decode) = make("decodebin") else {
                        gst::element_error!(
                            pipeline,
                            gst::CoreError::MissingPlugin,
                            ("decodebin is not installed")
                        );
                        return;
                    };
                    if pipeline.add(&decode).is_err() {
                        return;
                    }
                    link_decoded_video(&decode, &pipeline, &tail_pad);
                    let _ = decode.sync_state_with_parent();
                    if let Some(sink) = decode.static_pad("sink") {
                        let _ = pad.link(&sink);
                    }
                } else {
                    link_to_fakesink(&pipeline, pad);
                }
            });
        }
        SourceKind::Test {
            pattern,
            fps,
            width,
            height,
            num_buffers,
        } => {
            let src = make("videotestsrc")?;
            src.set_property("is-live", true);
            src.set_property_from_str("pattern", pattern);
            if let Some(n) = num_buffers {
                src.set_property("num-buffers", *n as i32);
            }
            let filter = make("capsfilter")?;
            let caps = gst_video::VideoCapsBuilder::new()
                .width(*width as i32)
                .height(*height as i32)
                .framerate(gst::Fraction::new(*fps as i32, 1))
                .build();
            filter.set_property("caps", &caps);
            pipeline.add_many([&src, &filter])?;
            gst::Element::link_many([&src, &filter])?;
            let pad = filter
                .static_pad("src")
                .ok_or_else(|| PipelineError::Internal("capsfilter without src pad".into()))?;
            pad.link(&tail_pad)
                .map_err(|e| PipelineError::Internal(format!("cannot link test source: {e:?}")))?;
        }
        SourceKind::Gst { fragment } => {
            let bin = gst::parse::bin_from_description(fragment, true).map_err(|e| PipelineError::BadSource {
                source_str: spec.raw.clone(),
                why: e.to_string(),
                hint: "check the pipeline fragment with gst-launch-1.0 (Vigil appends `! videoconvert ! videoscale ! appsink`)".into(),
            })?;
            pipeline.add(&bin)?;
            let pad = bin.static_pad("src").ok_or_else(|| PipelineError::BadSource {
                source_str: spec.raw.clone(),
                why: "the fragment has no unlinked source pad".into(),
                hint: "end the fragment with an element that outputs raw video (e.g. `... ! decodebin`)".into(),
            })?;
            pad.link(&tail_pad).map_err(|e| PipelineError::BadSource {
                source_str: spec.raw.clone(),
                why: format!("cannot link the fragment to the converter: {e:?}"),
                hint: "the fragment must produce raw video (video/x-raw)".into(),
            })?;
        }
        SourceKind::Fixture { .. } => {
            return Err(PipelineError::BadSource {
                source_str: spec.raw.clone(),
                why: "a fixture is not a video source".into(),
                hint: "fixtures are fed directly by `vigil classify`".into(),
            })
        }
    }
    Ok(BuiltPipeline {
        pipeline,
        appsink,
        tail_pad,
    })
}

/// Link decodebin's first raw video pad to the tail; other pads go to fakesinks so a
/// clip with audio does not stall. No video at all is an error on the bus.
fn link_decoded_video(decode: &gst::Element, pipeline: &gst::Pipeline, tail_pad: &gst::Pad) {
    let weak_pipeline = pipeline.downgrade();
    let tail = tail_pad.clone();
    decode.connect_pad_added(move |_dec, pad| {
        let Some(pipeline) = weak_pipeline.upgrade() else {
            return;
        };
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/x-raw")))
            .unwrap_or(false);
        if is_video && !tail.is_linked() {
            if let Err(e) = pad.link(&tail) {
                gst::element_error!(
                    pipeline,
                    gst::CoreError::Negotiation,
                    ("cannot link decoded video: {e:?}")
                );
            }
        } else {
            link_to_fakesink(&pipeline, pad);
        }
    });
    let tail = tail_pad.clone();
    decode.connect("unknown-type", false, move |vals| {
        let dec = vals.first().and_then(|v| v.get::<gst::Element>().ok());
        let caps = vals.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        if let (Some(dec), Some(caps)) = (dec, caps) {
            let name = caps
                .structure(0)
                .map(|s| s.name().to_string())
                .unwrap_or_default();
            if name.starts_with("video/") && !tail.is_linked() {
                gst::element_error!(
                    dec,
                    gst::StreamError::CodecNotFound,
                    ("no decoder for {name}")
                );
            }
        }
        None
    });
    let tail = tail_pad.clone();
    decode.connect_no_more_pads(move |dec| {
        if !tail.is_linked() {
            gst::element_error!(
                dec,
                gst::StreamError::WrongType,
                ("the source has no decodable video stream")
            );
        }
    });
}

fn link_to_fakesink(pipeline: &gst::Pipeline, pad: &gst::Pad) {
    if let Ok(sink) = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
    {
        if pipeline.add(&sink).is_ok() {
            let _ = sink.sync_state_with_parent();
            if let Some(sp) = sink.static_pad("sink") {
                let _ = pad.link(&sp);
            }
        }
    }
}

/// Install the frame path on a built pipeline: the resampling probe on the tail pad and
/// the appsink callback that copies kept frames into `ring`. `abort` makes a blocked
/// callback give up (shutdown); `generation` is stamped on every frame.
pub fn install_frame_path(
    built: &BuiltPipeline,
    ring: Arc<FrameRing>,
    status: Arc<StreamStatus>,
    rate: Rate,
    abort: Arc<AtomicBool>,
    generation: u64,
) {
    let resampler = AtomicResampler::new(rate);
    let probe_status = status.clone();
    built
        .tail_pad
        .add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
            let pts = info.buffer().and_then(|b| b.pts()).map(|t| t.nseconds());
            probe_status.touch(pts);
            if resampler.keep(pts) {
                probe_status.sampled.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            } else {
                // take and release the buffer ourselves: `Handled` (not `Drop`, whose
                // ownership hand-off trips a core assertion in GStreamer 1.22)
                drop(info.take_buffer());
                gst::PadProbeReturn::Handled
            }
        });

    let size = (ring.frame_bytes() / 3).isqrt();
    let live = ring.policy() == DropPolicy::DropOldest;
    let mut info: Option<(gst::Caps, gst_video::VideoInfo)> = None;
    let mut seq = 0u64;
    built.appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                if abort.load(Ordering::Acquire) {
                    // an abandoned pipeline must not feed the next connection's ring
                    return Err(gst::FlowError::Flushing);
                }
                let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let fresh = match &info {
                    Some((c, _)) => c.as_ptr() != caps.as_ptr(),
                    None => true,
                };
                if fresh {
                    let vi = gst_video::VideoInfo::from_caps(caps)
                        .map_err(|_| gst::FlowError::NotNegotiated)?;
                    info = Some((caps.to_owned(), vi));
                }
                let Some((_, vi)) = &info else {
                    return Err(gst::FlowError::NotNegotiated);
                };
                let Some(mut frame) = ring.acquire(&abort) else {
                    return Err(gst::FlowError::Flushing);
                };
                if copy_rgb(buffer, vi, frame.data_mut(), size).is_err() {
                    ring.release(frame);
                    return Err(gst::FlowError::Error);
                }
                frame.pts_ns = buffer.pts().map(|t| t.nseconds()).unwrap_or(0);
                frame.seq = seq;
                // Latency starts at capture: for a live source, how long ago the
                // pipeline clock passed this buffer's running time (its PTS); a file
                // has no capture time, so its latency starts here.
                let now = Instant::now();
                frame.arrived = match live {
                    true => capture_delay(sink, &sample, buffer)
                        .and_then(|d| now.checked_sub(d))
                        .unwrap_or(now),
                    false => now,
                };
                frame.generation = generation;
                seq += 1;
                ring.publish(frame);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// How long ago (by the pipeline clock) a live buffer was captured: clock time now minus
/// base time plus the buffer's running time. `None` when any part is unknown, or the
/// result is implausible (negative, or more than a minute).
fn capture_delay(
    sink: &gst_app::AppSink,
    sample: &gst::Sample,
    buffer: &gst::BufferRef,
) -> Option<std::time::Duration> {
    use gst::prelude::*;
    let clock = sink.clock()?;
    let base = sink.base_time()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    let running = segment.to_running_time(buffer.pts()?)?;
    let delay = clock.time().checked_sub(base.checked_add(running)?)?;
    (delay.seconds() < 60).then(|| std::time::Duration::from_nanos(delay.nseconds()))
}

/// Copy an RGB `size` x `size` video buffer into a tightly packed destination, row by
/// row (GStreamer may pad each row to its stride).
pub fn copy_rgb(
    buffer: &gst::BufferRef,
    info: &gst_video::VideoInfo,
    dst: &mut [u8],
    size: usize,
) -> std::result::Result<(), glib::BoolError> {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)?;
    if frame.width() as usize != size
        || frame.height() as usize != size
        || frame.format() != gst_video::VideoFormat::Rgb
    {
        return Err(glib::bool_error!(
            "unexpected frame {}x{} {:?}",
            frame.width(),
            frame.height(),
            frame.format()
        ));
    }
    let row = size * 3;
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0)?;
    if dst.len() < row * size || stride < row || data.len() < stride * (size - 1) + row {
        return Err(glib::bool_error!("frame buffer too small"));
    }
    for (y, out) in dst.chunks_exact_mut(row).take(size).enumerate() {
        out.copy_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(())
}

/// Why [`drive_bus`] returned.
#[derive(Debug)]
pub enum BusOutcome {
    /// End of stream.
    Eos,
    /// Shutdown was requested.
    Stopped,
    /// The pipeline posted an error.
    Error(PipelineError),
    /// No frame came out of the decoder for too long (network sources).
    Stalled(Duration),
}

/// Turn a bus error into a [`PipelineError::Stream`] with a hint for the user.
pub fn stream_error(
    stream: &str,
    spec: &SourceSpec,
    err: &glib::Error,
    debug: Option<&str>,
) -> PipelineError {
    let network = spec.is_network();
    let (what, hint): (String, &str) = if let Some(k) = err.kind::<gst::ResourceError>() {
        match k {
            gst::ResourceError::Read | gst::ResourceError::Write if network => (
                format!("connection to the RTSP server lost ({})", err.message()),
                "check that the camera is up and the network is stable",
            ),
            gst::ResourceError::NotFound | gst::ResourceError::OpenRead | gst::ResourceError::OpenReadWrite
                if network =>
            {
                (format!("cannot reach the RTSP server ({})", err.message()), "check host, port, path and credentials, that the camera is up, and try --rtsp-transport tcp|udp")
            }
            gst::ResourceError::NotAuthorized => (err.message().to_string(), "put the credentials in the URI: rtsp://user:pass@host/path"),
            _ => (err.message().to_string(), "check that the source exists and is readable"),
        }
    } else if let Some(k) = err.kind::<gst::StreamError>() {
        match k {
            gst::StreamError::TypeNotFound
            | gst::StreamError::WrongType
            | gst::StreamError::Demux => (
                format!("not a playable video ({})", err.message()),
                "pass a video file (mp4, mkv, avi…) or a camera URI",
            ),
            gst::StreamError::CodecNotFound | gst::StreamError::Decode => (
                format!("unsupported or broken codec ({})", err.message()),
                "install gstreamer1.0-libav and plugins-bad/ugly, or transcode to H.264",
            ),
            _ => (
                err.message().to_string(),
                "run with GST_DEBUG=3 for details",
            ),
        }
    } else if let Some(gst::CoreError::MissingPlugin) = err.kind::<gst::CoreError>() {
        (
            format!("unsupported codec or format ({})", err.message()),
            "install gstreamer1.0-libav and plugins-bad/ugly, or transcode to H.264",
        )
    } else {
        (
            err.message().to_string(),
            "run with GST_DEBUG=3 for details",
        )
    };
    let detail = debug.unwrap_or("");
    tracing::debug!(stream, detail, "GStreamer error detail");
    PipelineError::Stream {
        stream: stream.to_string(),
        uri: spec.raw.clone(),
        what,
        hint: hint.to_string(),
    }
}

/// Run a started pipeline's bus until EOS, an error, a stall (when `stall_after` is set)
/// or `stop`.
pub fn drive_bus(
    pipeline: &gst::Pipeline,
    stream: &str,
    spec: &SourceSpec,
    status: &StreamStatus,
    stop: &AtomicBool,
    stall_after: Option<Duration>,
) -> BusOutcome {
    let Some(bus) = pipeline.bus() else {
        return BusOutcome::Error(PipelineError::Internal("pipeline without bus".into()));
    };
    let started = Instant::now();
    let decoded_at_start = status.decoded.load(Ordering::Relaxed);
    loop {
        if stop.load(Ordering::Acquire) {
            return BusOutcome::Stopped;
        }
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            match msg.view() {
                gst::MessageView::Eos(_) => return BusOutcome::Eos,
                gst::MessageView::Error(e) => {
                    let debug = e.debug();
                    return BusOutcome::Error(stream_error(
                        stream,
                        spec,
                        &e.error(),
                        debug.as_deref(),
                    ));
                }
                gst::MessageView::Warning(w) => {
                    let err = w.error();
                    tracing::debug!(warning = %err, "GStreamer warning");
                    // rtspsrc only warns when the server connection drops, then retries
                    // on its own (and can wedge doing so): treat it as a loss right away
                    if spec.is_network()
                        && matches!(
                            err.kind::<gst::ResourceError>(),
                            Some(gst::ResourceError::Read | gst::ResourceError::Write)
                        )
                    {
                        let debug = w.debug();
                        return BusOutcome::Error(stream_error(
                            stream,
                            spec,
                            &err,
                            debug.as_deref(),
                        ));
                    }
                }
                _ => {}
            }
        }
        if let Some(limit) = stall_after {
            let produced = status.decoded.load(Ordering::Relaxed) > decoded_at_start;
            let idle = if produced {
                status.idle().unwrap_or_default()
            } else {
                started.elapsed()
            };
            // before the first frame allow for connection setup
            let limit = if produced { limit } else { limit * 3 };
            if idle >= limit {
                return BusOutcome::Stalled(idle);
            }
        }
    }
}

/// Everything one stream's ingest thread needs.
pub struct StreamCtx {
    pub name: String,
    pub spec: SourceSpec,
    pub opts: StreamOptions,
    pub ring: Arc<FrameRing>,
    pub status: Arc<StreamStatus>,
    pub stop: Arc<AtomicBool>,
}

/// One stream's ingest thread: build, run, and rebuild the pipeline until the stream ends,
/// fails for good, or `stop` is set. The final state is in `ctx.status`.
pub fn run_stream(ctx: StreamCtx) {
    let span = tracing::info_span!("stream", name = %ctx.name);
    let _enter = span.enter();
    let mut backoff = ctx.opts.backoff_min;
    let mut ever_produced = false;
    loop {
        if ctx.stop.load(Ordering::Acquire) {
            ctx.status.set_state(StreamState::Ended);
            break;
        }
        let generation = ctx.status.generation();
        let decoded_before = ctx.status.decoded.load(Ordering::Relaxed);
        let outcome = run_once(&ctx, generation);
        let produced = ctx.status.decoded.load(Ordering::Relaxed) > decoded_before;
        ever_produced |= produced;
        let lost = match outcome {
            BusOutcome::Stopped => {
                ctx.status.set_state(StreamState::Ended);
                break;
            }
            BusOutcome::Eos if ctx.opts.looping && produced => {
                tracing::info!("end of stream; looping");
                ctx.status.generation.fetch_add(1, Ordering::AcqRel);
                continue;
            }
            BusOutcome::Eos if ctx.spec.is_network() && ctx.opts.reconnect_on_eos => {
                PipelineError::Stream {
                    stream: ctx.name.clone(),
                    uri: ctx.spec.raw.clone(),
                    what: "server ended the stream".into(),
                    hint: "reconnecting".into(),
                }
            }
            BusOutcome::Eos => {
                tracing::info!("end of stream");
                ctx.status.set_state(StreamState::Ended);
                break;
            }
            BusOutcome::Stalled(idle) => PipelineError::Stream {
                stream: ctx.name.clone(),
                uri: ctx.spec.raw.clone(),
                what: format!("no frames for {:.1} s", idle.as_secs_f64()),
                hint: "check the camera and the network".into(),
            },
            BusOutcome::Error(e) => e,
        };
        let may_retry = ctx.spec.is_network() && (ever_produced || ctx.opts.retry_initial);
        if !may_retry {
            tracing::debug!(error = %lost, "stream failed");
            ctx.status.fail(lost);
            break;
        }
        if produced {
            backoff = ctx.opts.backoff_min;
        }
        ctx.status.set_state(StreamState::Reconnecting);
        ctx.status.reconnects.fetch_add(1, Ordering::Relaxed);
        ctx.status.generation.fetch_add(1, Ordering::AcqRel);
        tracing::warn!(error = %lost, backoff_ms = backoff.as_millis() as u64, "stream lost; reconnecting");
        let until = Instant::now() + backoff;
        while Instant::now() < until && !ctx.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(25));
        }
        backoff = (backoff * 2).min(ctx.opts.backoff_max);
    }
}

/// Build, start and drive the pipeline once; always leaves it in Null.
fn run_once(ctx: &StreamCtx, generation: u64) -> BusOutcome {
    let built = match build_pipeline(&ctx.spec, &ctx.opts, &ctx.name) {
        Ok(b) => b,
        Err(e) => return BusOutcome::Error(e),
    };
    let abort = Arc::new(AtomicBool::new(false));
    install_frame_path(
        &built,
        ctx.ring.clone(),
        ctx.status.clone(),
        ctx.opts.rate,
        abort.clone(),
        generation,
    );
    let outcome = match built.pipeline.set_state(gst::State::Playing) {
        Ok(_) => {
            if ctx.status.state() != StreamState::Running {
                ctx.status.set_state(StreamState::Running);
            }
            let stall = if ctx.spec.is_network() {
                Some(ctx.opts.stall_after)
            } else {
                None
            };
            drive_bus(
                &built.pipeline,
                &ctx.name,
                &ctx.spec,
                &ctx.status,
                &ctx.stop,
                stall,
            )
        }
        Err(_) => first_bus_error(&built.pipeline, &ctx.name, &ctx.spec),
    };
    abort.store(true, Ordering::Release);
    teardown(built.pipeline, TEARDOWN_WAIT);
    outcome
}

/// How long a pipeline gets to reach Null before it is abandoned.
const TEARDOWN_WAIT: Duration = Duration::from_secs(3);

/// Set `pipeline` to Null on a helper thread and wait at most `wait` for it. rtspsrc in
/// GStreamer 1.22 can deadlock inside its own state change after a TCP connection is cut
/// mid-stream; a stuck pipeline is then abandoned (its threads idle until exit) so the
/// stream can reconnect with a fresh one instead of hanging forever.
fn teardown(pipeline: gst::Pipeline, wait: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("vigil-teardown".into())
        .spawn(move || {
            let _ = pipeline.set_state(gst::State::Null);
            let _ = tx.send(());
        });
    match spawned {
        Ok(_) => {
            if rx.recv_timeout(wait).is_err() {
                tracing::warn!(
                    wait_s = wait.as_secs_f64(),
                    "pipeline did not stop in time (a GStreamer element is stuck); abandoning it"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot start a teardown thread"),
    }
}

/// After a failed state change: the error the pipeline posted about it.
fn first_bus_error(pipeline: &gst::Pipeline, stream: &str, spec: &SourceSpec) -> BusOutcome {
    if let Some(bus) = pipeline.bus() {
        while let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
            if let gst::MessageView::Error(e) = msg.view() {
                let debug = e.debug();
                return BusOutcome::Error(stream_error(stream, spec, &e.error(), debug.as_deref()));
            }
        }
    }
    BusOutcome::Error(PipelineError::Stream {
        stream: stream.to_string(),
        uri: spec.raw.clone(),
        what: "the pipeline refused to start".into(),
        hint: "run with GST_DEBUG=3 for details".into(),
    })
}

/// Initialise GStreamer once; a failure is a broken installation.
pub fn init_gstreamer() -> Result<()> {
    gst::init().map_err(PipelineError::from)
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
    fn copy_rgb_honours_stride() {
        gst::init().unwrap();
        // 5 px RGB rows are 15 bytes, padded to a 16-byte stride by GStreamer
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 5, 5)
            .build()
            .unwrap();
        assert_eq!(info.stride()[0], 16);
        let mut data = vec![0xEEu8; info.size()];
        for y in 0..5 {
            for x in 0..15 {
                data[y * 16 + x] = (y * 15 + x) as u8;
            }
        }
        let buffer = gst::Buffer::from_mut_slice(data);
        let mut out = vec![0u8; 75];
        copy_rgb(&buffer, &info, &mut out, 5).unwrap();
        assert_eq!(out, (0..75).map(|i| i as u8).collect::<Vec<_>>());
        // a frame of the wrong size is refused, not misread
        assert!(copy_rgb(&buffer, &info, &mut out, 4).is_err());
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
            "v4l2:///dev/nonexistent",
        ] {
            let e = SourceSpec::parse(bad).unwrap_err();
            assert!(e.is_user_error(), "{bad}");
            assert!(e.to_string().contains(" — "), "{e}");
        }
    }
}
