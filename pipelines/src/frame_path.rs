//! The frame path of one pipeline: [`install_frame_path`] puts the resampling probe on the
//! tail's first pad (frames the model does not need are dropped before conversion, by
//! [`AtomicResampler`]) and the appsink callback that copies each kept frame (row by row,
//! honouring the plane stride: [`copy_rgb`]) into a recycled [`FrameRing`] buffer.
//!
//! This runs on GStreamer's streaming thread for every frame: it allocates nothing, takes
//! no lock and does no work beyond the copy; the ring wakes the runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gst_video::prelude::*;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use crate::frame_ring::{DropPolicy, FrameRing};
use crate::pipeline::BuiltPipeline;
use crate::resample::{AtomicResampler, Rate};
use crate::status::{StreamPhase, StreamStatus};

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
    let announced = AtomicBool::new(false);
    built
        .tail_pad
        .add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
            let pts = info.buffer().and_then(|b| b.pts()).map(|t| t.nseconds());
            probe_status.touch(pts);
            // the first decoded frame of this connection: the stream is up
            if !announced.swap(true, Ordering::AcqRel) {
                probe_status.set_phase(StreamPhase::Connected, None);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
