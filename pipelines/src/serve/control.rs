//! [`StreamControl`]: the narrow interface between the sidecar and the runtime that runs
//! the streams — add, remove, list, latest frame, readiness. The HTTP API, the metrics
//! scrape and the restart logic talk only to this trait, so the server, its store and its
//! sinks are tested without GStreamer and wired onto the runtime by one small adapter.
//!
//! Main types: [`StreamDef`] (what a client asks for, as persisted), [`StreamInfo`] (what
//! the runtime reports), [`RgbFrame`] (a frame for snapshots).

use serde::ser::Serializer;
use serde::Serialize;

use crate::resample::Rate;
use crate::Result;

/// A stream as added through the API and kept in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDef {
    pub name: String,
    /// The source as given (may hold credentials: never shown, see [`redact_uri`]).
    pub uri: String,
    /// Rate fed to the model; `None` = the model's training rate.
    pub fps: Option<Rate>,
    /// EMA score that starts an event; `None` = the service default.
    pub enter: Option<f32>,
    /// EMA score below which an event ends; `None` = the service default.
    pub exit: Option<f32>,
}

/// A stream as the runtime reports it: the `GET /api/streams` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamInfo {
    pub name: String,
    /// Credentials redacted.
    pub uri: String,
    /// `starting`, `connected`, `reconnecting`, `failed`, `ended`.
    pub status: String,
    #[serde(serialize_with = "ser_rate")]
    pub fps: Option<Rate>,
    /// Frames processed by the engine.
    pub frames: u64,
    /// Frames dropped before the engine (live sources that fell behind).
    pub dropped: u64,
    pub reconnects: u64,
    /// Top classes of the latest processed frame (filled in by the hub).
    pub top: Vec<TopScore>,
    /// Why the stream is not running, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `{"label","score"}` of a stream object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopScore {
    pub label: String,
    pub score: f64,
}

/// `fps` as JSON: a number, `"native"`, or `null` (the model's rate).
fn ser_rate<S: Serializer>(r: &Option<Rate>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match r {
        None => s.serialize_none(),
        Some(Rate::Native) => s.serialize_str("native"),
        Some(Rate::Fps(f)) => s.serialize_f64(*f),
    }
}

/// A packed RGB frame (the model's input as the stream last delivered it).
#[derive(Debug, Clone, PartialEq)]
pub struct RgbFrame {
    pub width: u16,
    pub height: u16,
    /// `width * height * 3` bytes, rows top to bottom.
    pub data: Vec<u8>,
}

/// What the sidecar needs from the runtime. Implementations are called from blocking
/// threads (never from async tasks directly) and from several at once.
pub trait StreamControl: Send + Sync + 'static {
    /// The model is loaded and the engine runs (`/readyz`).
    fn ready(&self) -> bool;
    /// Every stream, in the order they were added.
    fn streams(&self) -> Vec<StreamInfo>;
    /// One stream.
    fn stream(&self, name: &str) -> Option<StreamInfo>;
    /// Start a stream. The caller has checked that the name is free and valid; a bad
    /// source is a user error ([`crate::PipelineError::is_user_error`]).
    fn add(&self, def: &StreamDef) -> Result<()>;
    /// Stop a stream and free its slot; `false` if no stream has that name.
    fn remove(&self, name: &str) -> Result<bool>;
    /// The latest frame the stream delivered, if any.
    fn snapshot(&self, name: &str) -> Option<RgbFrame>;
}

/// `uri` with any `user:password@` replaced by `***@`, for everything a person sees.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &uri[..scheme_end + 3], &rest[at + 1..]),
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_uri("rtsp://admin:s3cret@10.0.0.5:554/live?x=1"),
            "rtsp://***@10.0.0.5:554/live?x=1"
        );
        assert_eq!(redact_uri("rtsp://10.0.0.5/a@b"), "rtsp://10.0.0.5/a@b");
        assert_eq!(redact_uri("test:pattern=ball"), "test:pattern=ball");
        assert_eq!(redact_uri("/clips/a@b.mp4"), "/clips/a@b.mp4");
    }

    #[test]
    fn stream_object_shape() {
        let info = StreamInfo {
            name: "a".into(),
            uri: "test:".into(),
            status: "connected".into(),
            fps: Some(Rate::Native),
            frames: 3,
            dropped: 0,
            reconnects: 0,
            top: vec![TopScore {
                label: "x".into(),
                score: 0.5,
            }],
            reason: None,
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"name":"a","uri":"test:","status":"connected","fps":"native","frames":3,"dropped":0,"reconnects":0,"top":[{"label":"x","score":0.5}]}"#
        );
    }
}
