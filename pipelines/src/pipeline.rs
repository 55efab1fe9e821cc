//! GStreamer pipeline building: [`build_pipeline`] turns a [`SourceSpec`] into a pipeline
//! ending in an appsink ([`BuiltPipeline`]); [`teardown`] brings one back to Null without
//! hanging on a stuck element; [`init_gstreamer`] initialises GStreamer once.
//!
//! Every pipeline ends in the same tail:
//! `queue ! videoconvert ! [aspectratiocrop 1/1] ! videoscale ! appsink(video/x-raw,format=RGB,width=S,height=S)`.
//!
//! Properties are set through [`set_prop`] and [`set_prop_str`], which check that the
//! property exists, is writable and accepts the value before setting it: glib's own
//! setters panic on any of these, and a source string is user input.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use crate::source::{Aspect, RtspTransport, SourceKind, SourceSpec, StreamOptions};
use crate::{PipelineError, Result};

/// The error for property `name` of `obj`.
fn prop_error(obj: &impl IsA<glib::Object>, name: &str, why: String) -> PipelineError {
    PipelineError::Property {
        element: obj.as_ref().type_().name().to_string(),
        property: name.to_string(),
        why,
    }
}

/// The spec of property `name`, if `obj` has it.
fn find_pspec(obj: &impl IsA<glib::Object>, name: &str) -> Result<glib::ParamSpec> {
    obj.find_property(name)
        .ok_or_else(|| prop_error(obj, name, "no such property".into()))
}

/// Set `name` on `obj`, or say why it cannot be set (never panics).
pub fn set_prop(obj: &impl IsA<glib::Object>, name: &str, value: impl ToValue) -> Result<()> {
    let value = value.to_value();
    let pspec = find_pspec(obj, name)?;
    let why = if !pspec.flags().contains(glib::ParamFlags::WRITABLE)
        || pspec.flags().contains(glib::ParamFlags::CONSTRUCT_ONLY)
    {
        Some("not writable".to_string())
    } else if !value.type_().is_a(pspec.value_type()) {
        Some(format!(
            "expects {}, got {}",
            pspec.value_type(),
            value.type_()
        ))
    } else {
        check_range(&pspec, &value).err()
    };
    if let Some(why) = why {
        return Err(prop_error(obj, name, why));
    }
    obj.set_property_from_value(name, &value);
    Ok(())
}

/// Numeric properties: is `value` within the property's range? (glib panics otherwise.)
fn check_range(pspec: &glib::ParamSpec, value: &glib::Value) -> std::result::Result<(), String> {
    fn within<T: PartialOrd + std::fmt::Display>(
        v: T,
        min: T,
        max: T,
    ) -> std::result::Result<(), String> {
        if v < min || v > max {
            Err(format!("{v} is out of range ({min} to {max})"))
        } else {
            Ok(())
        }
    }
    macro_rules! range_of {
        ($($spec:ident: $t:ty),*) => {$(
            if let (Some(p), Ok(v)) = (pspec.downcast_ref::<glib::$spec>(), value.get::<$t>()) {
                return within(v, p.minimum(), p.maximum());
            }
        )*};
    }
    range_of!(ParamSpecInt: i32, ParamSpecUInt: u32, ParamSpecInt64: i64,
              ParamSpecUInt64: u64, ParamSpecDouble: f64, ParamSpecFloat: f32);
    Ok(())
}

/// Set `name` from its string form (enum nicks such as `pattern=ball`, numbers), or say
/// why not; an unknown enum value lists the valid ones.
pub fn set_prop_str(obj: &impl IsA<glib::Object>, name: &str, text: &str) -> Result<()> {
    let bad = |why: String| prop_error(obj, name, why);
    let pspec = find_pspec(obj, name)?;
    if let Some(class) = glib::EnumClass::with_type(pspec.value_type()) {
        let value = class
            .value_by_nick(text)
            .or_else(|| class.value_by_name(text))
            .or_else(|| text.parse::<i32>().ok().and_then(|n| class.value(n)))
            .ok_or_else(|| {
                let valid: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
                bad(format!(
                    "unknown value '{text}' (valid: {})",
                    valid.join(", ")
                ))
            })?;
        return set_prop(obj, name, value.to_value(&class));
    }
    let value = <glib::Value as gst::prelude::GstValueExt>::deserialize(text, pspec.value_type())
        .map_err(|_| bad(format!("cannot parse '{text}' as {}", pspec.value_type())))?;
    set_prop(obj, name, value)
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

pub(crate) fn make(factory: &str) -> Result<gst::Element> {
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
    set_prop(&queue, "max-size-buffers", 3u32)?;
    set_prop(&queue, "max-size-bytes", 0u32)?;
    set_prop(&queue, "max-size-time", 0u64)?;
    let convert = make("videoconvert")?;
    let scale = make("videoscale")?;
    set_prop(&scale, "add-borders", false)?;
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
        set_prop(&crop, "aspect-ratio", gst::Fraction::new(1, 1))?;
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
            set_prop(&src, "location", path.to_string_lossy().as_ref())?;
            let decode = make("decodebin")?;
            pipeline.add_many([&src, &decode])?;
            src.link(&decode)?;
            link_decoded_video(&decode, &pipeline, &tail_pad);
        }
        SourceKind::V4l2 { device } => {
            let src = make("v4l2src")?;
            set_prop(&src, "device", device.to_string_lossy().as_ref())?;
            let decode = make("decodebin")?;
            pipeline.add_many([&src, &decode])?;
            src.link(&decode)?;
            link_decoded_video(&decode, &pipeline, &tail_pad);
        }
        SourceKind::Rtsp { uri } => {
            let src = make("rtspsrc")?;
            set_prop(&src, "location", uri.as_str())?;
            set_prop(&src, "latency", opts.latency_ms)?;
            set_prop_str(
                &src,
                "protocols",
                match opts.rtsp_transport {
                    RtspTransport::Tcp => "tcp",
                    RtspTransport::Udp => "udp",
                },
            )?;
            // connection attempts give up quickly; reconnects are ours to pace
            set_prop(&src, "tcp-timeout", 5_000_000u64)?;
            set_prop(&src, "retry", 2u32)?;
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
            set_prop(&src, "is-live", true)?;
            set_prop_str(&src, "pattern", pattern).map_err(|e| PipelineError::BadSource {
                source_str: spec.shown.clone(),
                why: e.to_string(),
                hint: "pick one of the valid patterns".into(),
            })?;
            if let Some(n) = num_buffers {
                let n = i32::try_from(*n).unwrap_or(i32::MAX);
                set_prop(&src, "num-buffers", n)?;
            }
            let filter = make("capsfilter")?;
            let caps = gst_video::VideoCapsBuilder::new()
                .width(*width as i32)
                .height(*height as i32)
                .framerate(gst::Fraction::new(*fps as i32, 1))
                .build();
            set_prop(&filter, "caps", &caps)?;
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
                source_str: spec.shown.clone(),
                why: e.to_string(),
                hint: "check the pipeline fragment with gst-launch-1.0 (Vigil appends `! videoconvert ! videoscale ! appsink`)".into(),
            })?;
            pipeline.add(&bin)?;
            let pad = bin.static_pad("src").ok_or_else(|| PipelineError::BadSource {
                source_str: spec.shown.clone(),
                why: "the fragment has no unlinked source pad".into(),
                hint: "end the fragment with an element that outputs raw video (e.g. `... ! decodebin`)".into(),
            })?;
            pad.link(&tail_pad).map_err(|e| PipelineError::BadSource {
                source_str: spec.shown.clone(),
                why: format!("cannot link the fragment to the converter: {e:?}"),
                hint: "the fragment must produce raw video (video/x-raw)".into(),
            })?;
        }
        SourceKind::Fixture { .. } => {
            return Err(PipelineError::BadSource {
                source_str: spec.shown.clone(),
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
    if let Ok(sink) = gst::ElementFactory::make("fakesink").build() {
        if set_prop(&sink, "sync", false).is_err() || set_prop(&sink, "async", false).is_err() {
            return;
        }
        if pipeline.add(&sink).is_ok() {
            let _ = sink.sync_state_with_parent();
            if let Some(sp) = sink.static_pad("sink") {
                let _ = pad.link(&sp);
            }
        }
    }
}

/// How long a pipeline gets to reach Null before it is abandoned.
pub const TEARDOWN_WAIT: Duration = Duration::from_secs(3);

/// Set `pipeline` to Null on a helper thread and wait at most `wait` for it. rtspsrc in
/// GStreamer 1.22 can deadlock inside its own state change after a TCP connection is cut
/// mid-stream; a stuck pipeline is then abandoned (its threads idle until exit) so the
/// stream can reconnect with a fresh one instead of hanging forever.
pub fn teardown(pipeline: gst::Pipeline, wait: Duration) {
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

/// Initialise GStreamer once; a failure is a broken installation.
pub fn init_gstreamer() -> Result<()> {
    gst::init().map_err(PipelineError::from)
}
