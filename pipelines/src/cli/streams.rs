//! Running `classify`/`watch` streams on a [`Runtime`]: [`run_streams`] starts the
//! runtime, adds the streams, hands every record to a writer thread that owns the
//! [`Output`], and stops on the first of: every stream done, `--duration`, a signal, or a
//! closed output. [`install_signals`] is the process's SIGINT/SIGTERM handling and [`say`]
//! its one way to print a message to the user.
//!
//! Nothing here may die on a closed stderr (`vigil … 2>&1 | head`): [`say`] ignores write
//! errors, and so do the log writer and the signal handler. The first signal starts the
//! drain; a second one, or a drain that has not finished 30 s later, exits at once.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use vigil_engine::{Engine, Labels};

use super::Outcome;
use crate::output::Output;
use crate::runtime::{
    Kinds, Overflow, Runtime, RuntimeEvent, RuntimeOptions, StatusRecord, StopHandle, StreamSetup,
    SubscriptionOptions,
};
use crate::scheduler::BatchPolicy;
use crate::status::StreamPhase;
use crate::{PipelineError, Result};

/// Print `vigil: <msg>` on stderr; a closed or broken stderr is ignored.
pub fn say(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "vigil: {msg}");
}

/// Set by the first SIGINT/SIGTERM.
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// The runtime a signal stops.
static CURRENT: Mutex<Option<StopHandle>> = Mutex::new(None);
/// After the first signal, the process exits at once if still running this much later.
const SIGNAL_GRACE: Duration = Duration::from_secs(30);

/// Install the SIGINT/SIGTERM handler (once per process); the returned flag is set by the
/// first signal.
pub fn install_signals() -> Result<&'static AtomicBool> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                if SIGNALLED.swap(true, Ordering::AcqRel) {
                    std::process::exit(130);
                }
                say("interrupted — draining (Ctrl-C again to quit at once)");
                if let Ok(current) = CURRENT.lock() {
                    if let Some(h) = current.as_ref() {
                        h.stop();
                    }
                }
                // a drain that cannot finish must not make the process unkillable
                let _ = std::thread::Builder::new()
                    .name("vigil-signal-grace".into())
                    .spawn(|| {
                        std::thread::sleep(SIGNAL_GRACE);
                        say("still draining after 30 s — exiting");
                        std::process::exit(130);
                    });
            })
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PipelineError::Internal(format!("cannot install the signal handler: {e}")))?;
    Ok(&SIGNALLED)
}

fn set_current(h: Option<StopHandle>) {
    if let Ok(mut c) = CURRENT.lock() {
        *c = h;
    }
}

/// How `classify`/`watch` run their streams.
pub(crate) struct RunMode {
    /// Write a record per processed frame (not only events, status, stats, finals).
    pub labels_out: bool,
    pub logits: bool,
    pub stats_interval: Option<Duration>,
    pub duration: Option<Duration>,
    /// Partial results make the command fail (`classify`: exit 3).
    pub partial_is_failure: bool,
    pub top_k: usize,
}

/// What the writer thread saw.
#[derive(Default)]
struct Written {
    failed: usize,
    partial: bool,
    error: Option<PipelineError>,
}

/// A stream that could not even be set up: (name, masked uri, message).
pub(crate) type Unusable = (String, String, String);

/// Run `setups` on a runtime over `engine` until they are done (or `--duration`, a
/// signal, a closed output), writing every record to `out`.
pub(crate) fn run_streams(
    engine: Engine,
    labels: Labels,
    batch: BatchPolicy,
    setups: Vec<StreamSetup>,
    mut out: Output,
    unusable: Vec<Unusable>,
    mode: &RunMode,
) -> Result<Outcome> {
    let signalled = install_signals()?;
    let mut failed = 0;
    for (name, uri, why) in &unusable {
        say(why);
        failed += 1;
        let rec = StatusRecord {
            stream: Arc::from(name.as_str()),
            uri: Arc::from(uri.as_str()),
            phase: StreamPhase::Failed,
            reason: Some(why.clone()),
            frames: 0,
            dropped: 0,
            reconnects: 0,
            ts: SystemTime::now(),
        };
        out.status(&rec)?;
    }
    if setups.is_empty() {
        return Ok(Outcome {
            failed_streams: failed,
            partial: false,
        });
    }
    let rt = Runtime::start(
        engine,
        RuntimeOptions {
            batch,
            labels: Some(labels),
            top_k: mode.top_k,
            stats_interval: mode.stats_interval,
            ..Default::default()
        },
    )?;
    let sub = rt.subscribe(SubscriptionOptions {
        kinds: if mode.labels_out {
            Kinds::ALL
        } else {
            Kinds::NO_LABELS
        },
        stream: None,
        capacity: 1024,
        // the one writer of this process's results: it must lose nothing
        overflow: Overflow::Block,
        logits: mode.logits,
    });
    let stopper = rt.stop_handle();
    let writer = std::thread::Builder::new()
        .name("vigil-output".into())
        .spawn(move || {
            let mut w = Written::default();
            for ev in sub.iter() {
                let stop_reason = SIGNALLED
                    .load(Ordering::Acquire)
                    .then_some("interrupted by signal");
                if let RuntimeEvent::End(end) = &ev {
                    if let Some(e) = &end.error {
                        say(e);
                        w.failed += 1;
                    }
                    if let Some(why) = &end.incomplete {
                        say(&format!(
                            "stream {}: {why} — the results are partial",
                            end.stream
                        ));
                        w.partial = true;
                    }
                    if end.stopped && stop_reason.is_some() && end.phase != StreamPhase::Removed {
                        w.partial = true;
                    }
                }
                if let Err(e) = out.record(&ev, stop_reason) {
                    // the reader is gone: stop everything, and stop reading so the runtime
                    // is not held up by this subscription
                    stopper.stop();
                    w.error = Some(e);
                    break;
                }
            }
            w
        })
        .map_err(|e| PipelineError::Internal(format!("cannot start the output thread: {e}")))?;
    set_current(Some(rt.stop_handle()));
    if signalled.load(Ordering::Acquire) {
        rt.stop_handle().stop();
    }
    for setup in setups {
        let name = setup.name.clone();
        if let Err(e) = rt.add_stream(setup) {
            say(&format!("stream {name}: {e}"));
            failed += 1;
        }
    }
    let deadline = mode.duration.map(|d| Instant::now() + d);
    loop {
        if rt.wait_idle(Some(Duration::from_millis(100))) {
            break;
        }
        if signalled.load(Ordering::Acquire) || writer.is_finished() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::info!("--duration reached; stopping");
            break;
        }
    }
    let result = rt.shutdown();
    set_current(None);
    drop(rt);
    let written = writer
        .join()
        .map_err(|_| PipelineError::Internal("the output thread panicked".into()))?;
    result?;
    if let Some(e) = written.error {
        return Err(e);
    }
    if written.partial && mode.partial_is_failure {
        say("results are partial (interrupted, or an input ended early)");
    }
    Ok(Outcome {
        failed_streams: failed + written.failed,
        partial: written.partial && mode.partial_is_failure,
    })
}
