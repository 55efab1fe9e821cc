//! One stream's ingest thread with its recovery: [`run_stream`] builds, starts and drives
//! the pipeline, and rebuilds it when a camera is lost, stalls or has not come up yet
//! (capped exponential backoff), or when a file loops. Every phase change goes to the
//! stream's [`StreamStatus`] with its reason.
//!
//! The thread never dies silently: a panic anywhere below it (a GStreamer binding, our
//! own code) is caught and ends the stream as failed with the panic's message, so the
//! runtime reports it and the other streams go on.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::bus::{check_complete, drive_bus, first_bus_error, BusOutcome};
use crate::frame_path::install_frame_path;
use crate::frame_ring::FrameRing;
use crate::pipeline::{build_pipeline, teardown, TEARDOWN_WAIT};
use crate::source::{SourceKind, SourceSpec, StreamOptions};
use crate::status::{StreamPhase, StreamStatus};
use crate::PipelineError;

/// Everything one stream's ingest thread needs.
pub struct StreamCtx {
    pub name: String,
    pub spec: SourceSpec,
    pub opts: StreamOptions,
    pub ring: Arc<FrameRing>,
    pub status: Arc<StreamStatus>,
    /// Set to stop this stream (removal or shutdown).
    pub stop: Arc<AtomicBool>,
}

/// One stream's ingest thread: build, run, and rebuild the pipeline until the stream ends,
/// fails for good, or `stop` is set. The final phase is in `ctx.status`; a panic ends the
/// stream as failed instead of killing it silently.
pub fn run_stream(ctx: StreamCtx) {
    let status = ctx.status.clone();
    let ring = ctx.ring.clone();
    let name = ctx.name.clone();
    let shown = ctx.spec.shown.clone();
    let span = tracing::info_span!("stream", name = %ctx.name);
    let _enter = span.enter();
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| ingest_loop(&ctx))) {
        let why = panic_message(&panic);
        tracing::error!(panic = %why, "ingest thread panicked");
        status.fail(PipelineError::Stream {
            stream: name,
            uri: shown,
            what: format!("internal error in the ingest thread ({why})"),
            hint: "please report this with the command line and GST_DEBUG=3 output".into(),
        });
    }
    // a producer still blocked on this ring (an abandoned pipeline) must give up
    ring.close();
}

/// The text of a caught panic.
pub fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

fn lost(ctx: &StreamCtx, what: String, hint: &str) -> PipelineError {
    PipelineError::Stream {
        stream: ctx.name.clone(),
        uri: ctx.spec.shown.clone(),
        what,
        hint: hint.into(),
    }
}

/// Unit tests name a stream this to make its ingest loop panic.
#[cfg(test)]
const PANIC_FOR_TEST: &str = "panic-injected-by-a-test";

fn ingest_loop(ctx: &StreamCtx) {
    #[cfg(test)]
    if ctx.name == PANIC_FOR_TEST {
        panic!("injected by a test");
    }
    let mut backoff = ctx.opts.backoff_min;
    let mut ever_produced = false;
    loop {
        if ctx.stop.load(Ordering::Acquire) {
            ctx.status.mark_stopped();
            ctx.status
                .set_phase(StreamPhase::Ended, Some("stopped".into()));
            break;
        }
        let generation = ctx.status.generation();
        let decoded_before = ctx.status.decoded.load(Ordering::Relaxed);
        let outcome = run_once(ctx, generation);
        let produced = ctx.status.decoded.load(Ordering::Relaxed) > decoded_before;
        ever_produced |= produced;
        let error = match outcome {
            BusOutcome::Stopped => {
                ctx.status.mark_stopped();
                ctx.status
                    .set_phase(StreamPhase::Ended, Some("stopped".into()));
                break;
            }
            BusOutcome::Eos if ctx.opts.looping && produced => {
                tracing::info!("end of stream; looping");
                ctx.status.bump_generation();
                continue;
            }
            BusOutcome::Eos if ctx.spec.is_network() && ctx.opts.reconnect_on_eos => {
                lost(ctx, "the server ended the stream".into(), "reconnecting")
            }
            BusOutcome::Eos => {
                tracing::info!("end of stream");
                ctx.status
                    .set_phase(StreamPhase::Ended, Some("end of stream".into()));
                break;
            }
            BusOutcome::Stalled(idle) => lost(
                ctx,
                format!("no frames for {:.1} s", idle.as_secs_f64()),
                "check the camera and the network",
            ),
            BusOutcome::Error(e) => e,
        };
        let may_retry = ctx.spec.is_retryable() && (ever_produced || ctx.opts.retry_initial);
        if !may_retry {
            tracing::debug!(error = %error, "stream failed");
            ctx.status.fail(error);
            break;
        }
        if produced {
            backoff = ctx.opts.backoff_min;
        }
        ctx.status.reconnects.fetch_add(1, Ordering::Relaxed);
        ctx.status.bump_generation();
        ctx.status
            .set_phase(StreamPhase::Reconnecting, Some(error.to_string()));
        tracing::warn!(error = %error, backoff_ms = backoff.as_millis() as u64, "stream lost; reconnecting");
        let until = Instant::now() + backoff.min(Duration::from_secs(3600));
        while Instant::now() < until && !ctx.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(25));
        }
        backoff = backoff.saturating_mul(2).min(ctx.opts.backoff_max);
    }
}

/// Build, start and drive the pipeline once; always leaves it in Null.
fn run_once(ctx: &StreamCtx, generation: u64) -> BusOutcome {
    if let SourceKind::V4l2 { device } = &ctx.spec.kind {
        if !device.exists() {
            return BusOutcome::Error(lost(
                ctx,
                format!("{} does not exist", device.display()),
                "plug the camera in (it is retried) or list cameras with `v4l2-ctl --list-devices`",
            ));
        }
    }
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
            // `Connected` is announced by the frame path at this connection's first frame
            let stall = ctx.spec.is_network().then_some(ctx.opts.stall_after);
            let outcome = drive_bus(
                &built.pipeline,
                &ctx.name,
                &ctx.spec,
                &ctx.status,
                &ctx.stop,
                stall,
            );
            if matches!(outcome, BusOutcome::Eos)
                && matches!(ctx.spec.kind, SourceKind::File { .. })
            {
                if let Some(why) = check_complete(&built.pipeline, &ctx.status) {
                    tracing::warn!(reason = %why, "input incomplete");
                    ctx.status.set_incomplete(why);
                }
            }
            outcome
        }
        Err(_) => first_bus_error(&built.pipeline, &ctx.name, &ctx.spec),
    };
    abort.store(true, Ordering::Release);
    teardown(built.pipeline, TEARDOWN_WAIT);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_ring::DropPolicy;
    use crate::resample::Rate;

    /// Issue 8, defect 1: a dying input thread vanished with no error, leaving its stream
    /// "running" forever. Now the stream ends as failed, with the panic's message.
    #[test]
    fn dying_ingest_thread_ends_its_stream_with_an_error() {
        let status = Arc::new(StreamStatus::default());
        let ring = Arc::new(FrameRing::new(2, 12, DropPolicy::DropOldest, None));
        let ctx = StreamCtx {
            name: PANIC_FOR_TEST.into(),
            spec: SourceSpec::parse("test:").unwrap(),
            opts: StreamOptions::new(2, Rate::Native),
            ring: ring.clone(),
            status: status.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        std::thread::spawn(move || run_stream(ctx)).join().unwrap();
        assert_eq!(status.phase(), StreamPhase::Failed);
        let e = status.take_error().unwrap().to_string();
        assert!(
            e.contains("internal error in the ingest thread (injected by a test)"),
            "{e}"
        );
        assert!(ring.is_closed());
    }
}
