//! Bus handling: [`drive_bus`] runs a started pipeline's bus until end of stream, an
//! error, a stall or a stop request and says which ([`BusOutcome`]); [`stream_error`]
//! turns a GStreamer error into a [`PipelineError::Stream`] that says what is wrong and
//! what to do, with credentials masked.
//!
//! An RTSP source that fails before its first frame is told apart by a TCP probe of its
//! endpoint ([`probe_endpoint`]): nothing listening (refused), a host that does not answer
//! at all (unreachable, filtered), or a server that accepts the connection but never
//! answers RTSP (wrong port, hung camera). A file whose stream ends well before its
//! container's duration is flagged as incomplete ([`check_complete`]).

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

use crate::redact::redact;
use crate::source::{SourceKind, SourceSpec};
use crate::status::StreamStatus;
use crate::PipelineError;

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

/// What a TCP connection to a camera's RTSP endpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Something accepted the TCP connection.
    Accepted,
    /// Nothing listens there (connection refused).
    Refused,
    /// No answer within the timeout, or no route to the host.
    Unreachable(String),
    /// The host name does not resolve.
    Unresolved(String),
}

/// `host:port` of an RTSP URI (default port 554), credentials and path removed.
pub fn rtsp_endpoint(uri: &str) -> Option<(String, u16)> {
    let rest = &uri[uri.find("://")? + 3..];
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h.split_once(']')?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => 554,
    };
    (!host.is_empty()).then_some((host, port))
}

/// Try a TCP connection to `host:port` within `timeout`.
pub fn probe_endpoint(host: &str, port: u16, timeout: Duration) -> Probe {
    let addrs: Vec<_> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Probe::Unresolved(e.to_string()),
    };
    let mut last = Probe::Unresolved("no address".into());
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Probe::Accepted,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => last = Probe::Refused,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = Probe::Unreachable(format!("no answer within {} s", timeout.as_secs()))
            }
            Err(e) => last = Probe::Unreachable(e.to_string()),
        }
    }
    last
}

/// The message and hint for an RTSP source that never delivered a frame, from `probe`.
pub fn explain_unreachable(host: &str, port: u16, probe: &Probe) -> (String, &'static str) {
    match probe {
        Probe::Refused => (
            format!("cannot reach the RTSP server: nothing listens on {host}:{port} (connection refused)"),
            "check host and port, and that the camera or RTSP server is running",
        ),
        Probe::Unreachable(why) => (
            format!("cannot reach the RTSP server: host {host}:{port} does not answer ({why})"),
            "check the address, the network route and firewalls; the host may be down",
        ),
        Probe::Unresolved(why) => (
            format!("cannot reach the RTSP server: cannot resolve {host} ({why})"),
            "check the host name or use an IP address",
        ),
        Probe::Accepted => (
            format!("the server at {host}:{port} accepted the connection but did not answer RTSP"),
            "check that this is the camera's RTSP port and path; the camera may be hung (power-cycle it)",
        ),
    }
}

/// Turn a bus error into a [`PipelineError::Stream`] with a hint for the user.
/// `connected`: this connection already delivered frames (a loss, not a failure to
/// connect).
pub fn stream_error(
    stream: &str,
    spec: &SourceSpec,
    err: &glib::Error,
    debug: Option<&str>,
    connected: bool,
) -> PipelineError {
    let network = spec.is_network();
    let message = redact(err.message());
    let (what, hint): (String, &str) = if let Some(k) = err.kind::<gst::ResourceError>() {
        match k {
            gst::ResourceError::NotAuthorized => (
                message,
                "put the credentials in the URI: rtsp://user:pass@host/path",
            ),
            _ if network && connected => (
                format!("connection to the RTSP server lost ({message})"),
                "check that the camera is up and the network is stable",
            ),
            gst::ResourceError::NotFound if network => (
                format!("the RTSP server has no stream at this path ({message})"),
                "check the path part of the URI (the camera's manual lists its stream paths)",
            ),
            gst::ResourceError::Read
            | gst::ResourceError::Write
            | gst::ResourceError::OpenRead
            | gst::ResourceError::OpenReadWrite
            | gst::ResourceError::Settings
                if network =>
            {
                match &spec.kind {
                    SourceKind::Rtsp { uri } => match rtsp_endpoint(uri) {
                        Some((host, port)) => {
                            let probe = probe_endpoint(&host, port, Duration::from_secs(3));
                            let (what, hint) = explain_unreachable(&host, port, &probe);
                            (format!("{what} ({message})"), hint)
                        }
                        None => (
                            format!("cannot reach the RTSP server ({message})"),
                            "check host, port, path and credentials",
                        ),
                    },
                    _ => (message, "check that the source exists and is readable"),
                }
            }
            _ => (message, "check that the source exists and is readable"),
        }
    } else if let Some(k) = err.kind::<gst::StreamError>() {
        match k {
            gst::StreamError::TypeNotFound
            | gst::StreamError::WrongType
            | gst::StreamError::Demux => (
                format!("not a playable video ({message})"),
                "pass a video file (mp4, mkv, avi…) or a camera URI",
            ),
            gst::StreamError::CodecNotFound | gst::StreamError::Decode => (
                format!("unsupported or broken codec ({message})"),
                "install gstreamer1.0-libav and plugins-bad/ugly, or transcode to H.264",
            ),
            _ => (message, "run with GST_DEBUG=3 for details"),
        }
    } else if let Some(gst::CoreError::MissingPlugin) = err.kind::<gst::CoreError>() {
        (
            format!("unsupported codec or format ({message})"),
            "install gstreamer1.0-libav and plugins-bad/ugly, or transcode to H.264",
        )
    } else {
        (message, "run with GST_DEBUG=3 for details")
    };
    let detail = redact(debug.unwrap_or(""));
    tracing::debug!(stream, detail, "GStreamer error detail");
    PipelineError::Stream {
        stream: stream.to_string(),
        uri: spec.shown.clone(),
        what,
        hint: hint.to_string(),
    }
}

/// The outcome of an error message on the bus.
fn error_outcome(
    stream: &str,
    spec: &SourceSpec,
    e: &gst::message::Error,
    connected: bool,
) -> BusOutcome {
    let debug = e.debug();
    BusOutcome::Error(stream_error(
        stream,
        spec,
        &e.error(),
        debug.as_deref(),
        connected,
    ))
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
        let produced = status.decoded.load(Ordering::Relaxed) > decoded_at_start;
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            match msg.view() {
                gst::MessageView::Eos(_) => return BusOutcome::Eos,
                gst::MessageView::Error(e) => return error_outcome(stream, spec, e, produced),
                gst::MessageView::Warning(w) => {
                    let err = w.error();
                    tracing::debug!(warning = %redact(&err.to_string()), "GStreamer warning");
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
                            produced,
                        ));
                    }
                }
                _ => {}
            }
        }
        if let Some(limit) = stall_after {
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

/// After a failed state change: the error the pipeline posted about it.
pub fn first_bus_error(pipeline: &gst::Pipeline, stream: &str, spec: &SourceSpec) -> BusOutcome {
    if let Some(bus) = pipeline.bus() {
        while let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
            if let gst::MessageView::Error(e) = msg.view() {
                return error_outcome(stream, spec, e, false);
            }
        }
    }
    BusOutcome::Error(PipelineError::Stream {
        stream: stream.to_string(),
        uri: spec.shown.clone(),
        what: "the pipeline refused to start".into(),
        hint: "run with GST_DEBUG=3 for details".into(),
    })
}

/// At the end of a file: `Some(why)` when the stream stopped well before the container's
/// duration (a truncated or damaged file), judged from the last decoded timestamp.
pub fn check_complete(pipeline: &gst::Pipeline, status: &StreamStatus) -> Option<String> {
    let duration = pipeline.query_duration::<gst::ClockTime>()?.nseconds();
    let last = status.last_pts_ns()?;
    let interval = status
        .native_fps()
        .filter(|f| *f > 0.0)
        .map(|f| (1e9 / f) as u64)
        .unwrap_or(200_000_000);
    incomplete_reason(duration, last, interval)
}

/// The rule of [`check_complete`]: the last frame should start within two frame intervals
/// (plus 100 ms of container slack) of the end.
pub fn incomplete_reason(duration_ns: u64, last_pts_ns: u64, interval_ns: u64) -> Option<String> {
    let slack = 2 * interval_ns + 100_000_000;
    (last_pts_ns.saturating_add(slack) < duration_ns).then(|| {
        format!(
            "input ended at {:.1} s of {:.1} s (truncated or damaged file?)",
            last_pts_ns as f64 / 1e9,
            duration_ns as f64 / 1e9
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_of_rtsp_uris() {
        assert_eq!(
            rtsp_endpoint("rtsp://admin:pw@10.0.0.5:8554/cam?x=1"),
            Some(("10.0.0.5".into(), 8554))
        );
        assert_eq!(
            rtsp_endpoint("rtsp://cam.local/stream"),
            Some(("cam.local".into(), 554))
        );
        assert_eq!(
            rtsp_endpoint("rtsp://[::1]:9000/x"),
            Some(("::1".into(), 9000))
        );
        assert_eq!(rtsp_endpoint("rtsp:///x"), None);
    }

    #[test]
    fn unanswering_server_and_unreachable_host_explained_differently() {
        let refused = explain_unreachable("h", 1, &Probe::Refused).0;
        let silent = explain_unreachable("h", 1, &Probe::Accepted).0;
        let down = explain_unreachable("h", 1, &Probe::Unreachable("timeout".into())).0;
        assert!(refused.contains("connection refused"), "{refused}");
        assert!(silent.contains("did not answer RTSP"), "{silent}");
        assert!(down.contains("does not answer"), "{down}");
        for m in [&refused, &silent, &down] {
            assert!(!m.contains("connection lost"), "{m}");
        }
        // a real listener that never speaks is `Accepted`, a closed port `Refused`
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(
            probe_endpoint("127.0.0.1", port, Duration::from_secs(2)),
            Probe::Accepted
        );
        drop(l);
        assert_eq!(
            probe_endpoint("127.0.0.1", port, Duration::from_secs(2)),
            Probe::Refused
        );
    }

    #[test]
    fn truncated_file_is_flagged() {
        // 10 s clip at 5 fps: last frame at 9.8 s is complete, at 4.6 s is not
        assert_eq!(
            incomplete_reason(10_000_000_000, 9_800_000_000, 200_000_000),
            None
        );
        let why = incomplete_reason(10_000_000_000, 4_600_000_000, 33_333_333).unwrap();
        assert!(why.contains("4.6 s of 10.0 s"), "{why}");
    }
}
