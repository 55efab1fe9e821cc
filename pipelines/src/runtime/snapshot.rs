//! The latest delivered frame of a stream, on request: [`Snapshot`] and the per-stream
//! `SnapshotSlot` behind [`super::Runtime::snapshot`].
//!
//! Nothing is copied for nobody: the worker copies a delivered frame into the slot only
//! while a snapshot was asked for in the last few seconds ([`KEEP_FRESH`]), and only when
//! the slot's lock is free at that moment (`try_lock`: the worker never waits for a
//! reader). A request returns a frame captured within [`FRESH`], waiting for the next
//! delivered frame when the slot's copy is older. [`Snapshot::to_jpeg`] encodes one with
//! GStreamer's `jpegenc`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use parking_lot::{Condvar, Mutex};

use crate::frame_ring::Frame;
use crate::pipeline::set_prop;
use crate::{PipelineError, Result};

/// After a request, frames are copied for this long (so a page polling once a second
/// finds a fresh frame without waiting).
pub const KEEP_FRESH: Duration = Duration::from_secs(5);
/// A copy younger than this is returned at once.
pub const FRESH: Duration = Duration::from_millis(500);

/// One delivered frame: model-sized, tightly packed RGB.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub stream: String,
    pub width: usize,
    pub height: usize,
    /// `width * height * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
    pub seq: u64,
    pub pts_ns: u64,
    /// When the worker delivered it.
    pub captured: SystemTime,
}

#[derive(Default)]
struct Copy {
    rgb: Vec<u8>,
    seq: u64,
    pts_ns: u64,
    captured: Option<(SystemTime, Instant)>,
    version: u64,
}

/// One stream's snapshot buffer.
pub(crate) struct SnapshotSlot {
    epoch: Instant,
    /// copy frames until this time (ms since `epoch`; 0 = not wanted)
    wanted_until_ms: AtomicU64,
    copy: Mutex<Copy>,
    delivered: Condvar,
}

impl Default for SnapshotSlot {
    fn default() -> Self {
        SnapshotSlot {
            epoch: Instant::now(),
            wanted_until_ms: AtomicU64::new(0),
            copy: Mutex::new(Copy::default()),
            delivered: Condvar::new(),
        }
    }
}

impl SnapshotSlot {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Worker: is a snapshot wanted? (one atomic load)
    pub(crate) fn wanted(&self) -> bool {
        let until = self.wanted_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() <= until
    }

    /// Worker: offer a delivered frame; copied only if the slot is free right now.
    pub(crate) fn offer(&self, frame: &Frame) {
        if let Some(mut c) = self.copy.try_lock() {
            if c.rgb.len() != frame.data().len() {
                // once per stream (the first request), not per frame
                c.rgb.resize(frame.data().len(), 0);
            }
            c.rgb.copy_from_slice(frame.data());
            c.seq = frame.seq;
            c.pts_ns = frame.pts_ns;
            c.captured = Some((SystemTime::now(), Instant::now()));
            c.version += 1;
            drop(c);
            self.delivered.notify_all();
        }
    }

    /// Caller: the latest frame, fresh within [`FRESH`] if one comes within `timeout`;
    /// an older copy when none does; `None` when the stream never delivered one since
    /// snapshots were first asked for.
    pub(crate) fn take(&self, stream: &str, size: usize, timeout: Duration) -> Option<Snapshot> {
        let until = self.now_ms() + KEEP_FRESH.as_millis() as u64;
        self.wanted_until_ms.fetch_max(until, Ordering::Relaxed);
        // an absurd timeout (Duration::MAX) is capped, not an overflow
        let deadline = Instant::now() + timeout.min(Duration::from_secs(3600));
        let mut c = self.copy.lock();
        let start_version = c.version;
        loop {
            let fresh = c.captured.is_some_and(|(_, at)| at.elapsed() < FRESH);
            if fresh || c.version != start_version {
                break;
            }
            if self.delivered.wait_until(&mut c, deadline).timed_out() {
                break;
            }
        }
        let (captured, _) = c.captured?;
        Some(Snapshot {
            stream: stream.to_string(),
            width: size,
            height: size,
            rgb: c.rgb.clone(),
            seq: c.seq,
            pts_ns: c.pts_ns,
            captured,
        })
    }
}

impl Snapshot {
    /// Encode as JPEG (`quality` 1-100) with GStreamer's `jpegenc`.
    pub fn to_jpeg(&self, quality: u8) -> Result<Vec<u8>> {
        crate::pipeline::init_gstreamer()?;
        let info = gst_video::VideoInfo::builder(
            gst_video::VideoFormat::Rgb,
            self.width as u32,
            self.height as u32,
        )
        .fps(gst::Fraction::new(1, 1))
        .build()?;
        let row = self.width * 3;
        if self.rgb.len() != row * self.height {
            return Err(PipelineError::Internal(format!(
                "snapshot of {} bytes is not {}x{} RGB",
                self.rgb.len(),
                self.width,
                self.height
            )));
        }
        // GStreamer pads RGB rows to 4 bytes
        let stride = info.stride()[0] as usize;
        let mut data = vec![0u8; info.size()];
        for (y, src) in self.rgb.chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(src);
        }
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .caps(&info.to_caps()?)
            .format(gst::Format::Time)
            .build();
        let convert = crate::pipeline::make("videoconvert")?;
        let enc = crate::pipeline::make("jpegenc")?;
        set_prop(&enc, "quality", i32::from(quality.clamp(1, 100)))?;
        let sink = gst_app::AppSink::builder().sync(false).build();
        pipeline.add_many([src.upcast_ref(), &convert, &enc, sink.upcast_ref()])?;
        gst::Element::link_many([src.upcast_ref(), &convert, &enc, sink.upcast_ref()])?;
        let run = || -> Result<Vec<u8>> {
            pipeline.set_state(gst::State::Playing)?;
            let mut buffer = gst::Buffer::from_mut_slice(data);
            if let Some(b) = buffer.get_mut() {
                b.set_pts(gst::ClockTime::ZERO);
            }
            src.push_buffer(buffer).map_err(|e| {
                PipelineError::Internal(format!("jpeg encoder refused the frame: {e:?}"))
            })?;
            let _ = src.end_of_stream();
            let sample = sink
                .try_pull_sample(gst::ClockTime::from_seconds(5))
                .ok_or_else(|| PipelineError::Internal("jpeg encoder produced nothing".into()))?;
            let buf = sample
                .buffer()
                .ok_or_else(|| PipelineError::Internal("jpeg sample without buffer".into()))?;
            let map = buf.map_readable()?;
            Ok(map.as_slice().to_vec())
        };
        let out = run();
        let _ = pipeline.set_state(gst::State::Null);
        out
    }
}
