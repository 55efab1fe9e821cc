//! [`PipelineError`]: the one error enum of the pipelines crate. Variants name the stream,
//! URI or file that broke and say what to do about it; [`PipelineError::is_user_error`]
//! separates the user's mistakes (exit code 2) from internal failures (exit code 1).

use std::path::PathBuf;

use vigil_engine::EngineError;

/// Result alias for the pipelines crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything that can go wrong between a source and the engine.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A source string that names no source Vigil can open.
    #[error("bad source {source_str:?}: {why} — {hint}")]
    BadSource {
        source_str: String,
        why: String,
        hint: String,
    },
    /// A stream failed while opening or running (unreachable host, unsupported codec…).
    #[error("stream {stream} ({uri}): {what} — {hint}")]
    Stream {
        stream: String,
        uri: String,
        what: String,
        hint: String,
    },
    /// A stream failed; its error, already formatted (stream, source, what, hint).
    #[error("{0}")]
    StreamFailed(String),
    /// A GStreamer element property could not be set (unknown value, wrong type…).
    #[error("{element} {property}: {why} — check the source options")]
    Property {
        element: String,
        property: String,
        why: String,
    },
    /// A stream of this name is already running.
    #[error("stream {name:?} already exists — remove it first or pick another name")]
    DuplicateStream { name: String },
    /// No stream of this name.
    #[error("no stream {name:?} — list the streams to see their names")]
    UnknownStream { name: String },
    /// The runtime is shutting down or has stopped.
    #[error("the runtime is stopped — start a new one")]
    RuntimeStopped,
    /// A GStreamer element the pipeline needs is not installed.
    #[error("GStreamer element {element:?} is not installed — install {package}")]
    MissingElement { element: String, package: String },
    /// The model file could not be loaded.
    #[error(
        "cannot load model {path}: {}",
        with_hint(source, "pass an official MoViNet stream .tflite export")
    )]
    Model {
        path: PathBuf,
        #[source]
        source: EngineError,
    },
    /// A CLIP or X-CLIP model folder could not be loaded (its errors name the file, the
    /// tensor or the config field, with a hint).
    #[error(
        "{}",
        with_hint(source, &format!("{} must be a Hugging Face CLIP folder (config.json + model.safetensors) for --clip, an X-CLIP one for --xclip", path.display()))
    )]
    Clip {
        path: PathBuf,
        #[source]
        source: EngineError,
    },
    /// A CLIP/X-CLIP reference file could not be used.
    #[error(
        "reference {path}: {} — pass a reference file made by gen_clip_fixtures.py (pixel_values [N,3,S,S] for --clip, [T,F,3,S,S] for --xclip)",
        reference_detail(source)
    )]
    Reference {
        path: PathBuf,
        #[source]
        source: EngineError,
    },
    /// The label file could not be loaded or does not fit the model.
    #[error(
        "cannot load labels {path}: {}",
        with_hint(
            source,
            "pass the label file that belongs to the model (one label per line)"
        )
    )]
    Labels {
        path: PathBuf,
        #[source]
        source: EngineError,
    },
    /// A fixture file could not be loaded.
    #[error(
        "cannot load fixture {path}: {}",
        with_hint(
            source,
            "pass a safetensors fixture with a `frames` u8 [N,H,W,3] tensor"
        )
    )]
    Fixture {
        path: PathBuf,
        #[source]
        source: EngineError,
    },
    /// The watch configuration file is unreadable or invalid.
    #[error("config {path}: {why} — {hint}")]
    Config {
        path: PathBuf,
        why: String,
        hint: String,
    },
    /// A command-line option that cannot be honoured.
    #[error("{what} — {hint}")]
    Usage { what: String, hint: String },
    /// Writing results failed.
    #[error("cannot write {target}: {source} — check the path and free disk space")]
    Output {
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// The engine failed while running.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// A GLib/GStreamer call failed.
    #[error("GStreamer: {0}")]
    Glib(#[from] gstreamer::glib::Error),
    /// A GLib/GStreamer call failed.
    #[error("GStreamer: {0}")]
    GlibBool(#[from] gstreamer::glib::BoolError),
    /// A pipeline refused a state change.
    #[error("GStreamer state change failed: {0}")]
    StateChange(#[from] gstreamer::StateChangeError),
    /// The embedded SQLite store (history, streams, search windows) failed while running.
    #[error(
        "store {path}: {what}: {source} — check free disk space and the data dir's permissions"
    )]
    Store {
        path: PathBuf,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    /// A thread of the pipeline panicked or could not be started.
    #[error("internal: {0}")]
    Internal(String),
}

/// `err`'s message, followed by `hint` unless the message already carries one.
fn with_hint(err: &EngineError, hint: &str) -> String {
    let msg = err.to_string();
    if msg.contains(" — ") {
        msg
    } else {
        format!("{msg} — {hint}")
    }
}

/// What is wrong with a reference file, without repeating its path.
fn reference_detail(err: &EngineError) -> String {
    match err {
        EngineError::Fixture { why, .. } => why.clone(),
        EngineError::ClipInput(why) => why.clone(),
        other => other.to_string(),
    }
}

impl PipelineError {
    /// True for the user's mistakes (bad file, bad URI, bad config…): exit code 2.
    pub fn is_user_error(&self) -> bool {
        match self {
            PipelineError::BadSource { .. }
            | PipelineError::Stream { .. }
            | PipelineError::MissingElement { .. }
            | PipelineError::Model { .. }
            | PipelineError::Labels { .. }
            | PipelineError::Fixture { .. }
            | PipelineError::Clip { .. }
            | PipelineError::Reference { .. }
            | PipelineError::Config { .. }
            | PipelineError::Usage { .. }
            | PipelineError::Property { .. }
            | PipelineError::StreamFailed(_)
            | PipelineError::DuplicateStream { .. }
            | PipelineError::UnknownStream { .. }
            | PipelineError::Output { .. } => true,
            PipelineError::Engine(e) => matches!(
                e,
                EngineError::DeviceUnavailable { .. }
                    | EngineError::Precision { .. }
                    | EngineError::Config(_)
                    | EngineError::Io { .. }
                    | EngineError::NotTflite { .. }
                    | EngineError::NotMovinet { .. }
                    | EngineError::LabelCount { .. }
                    | EngineError::NotClip { .. }
                    | EngineError::TensorMissing { .. }
                    | EngineError::TensorShape { .. }
                    | EngineError::TensorDtype { .. }
                    | EngineError::ClipInput(_)
            ),
            PipelineError::Glib(_)
            | PipelineError::GlibBool(_)
            | PipelineError::StateChange(_)
            | PipelineError::RuntimeStopped
            | PipelineError::Store { .. }
            | PipelineError::Internal(_) => false,
        }
    }

    /// Shorthand for a [`PipelineError::Usage`].
    pub fn usage(what: impl Into<String>, hint: impl Into<String>) -> PipelineError {
        PipelineError::Usage {
            what: what.into(),
            hint: hint.into(),
        }
    }
}
