//! [`Recorder`]: the thread that stores a runtime's windows. It reads a
//! [`WindowSubscription`], writes what has arrived in one transaction, and — when asked —
//! encodes each window's newest frame as a JPEG under `<data-dir>/snapshots/<stream>/`.
//! Inference never waits for it (the subscription drops windows when full and counts
//! them); a store that fails (disk full) is reported once and at the end, and the streams
//! go on.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use super::store::{NewWindow, WindowStore};
use super::unix_ms;
use crate::runtime::{WindowRecord, WindowSubscription};
use crate::{PipelineError, Result};

/// Windows written per transaction at most.
const BATCH: usize = 64;
/// JPEG quality of window snapshots.
const JPEG_QUALITY: u8 = 80;

/// What a recorder did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecorderReport {
    pub stored: u64,
    pub snapshots: u64,
    /// Windows the subscription dropped because the store fell behind.
    pub lost: u64,
    /// The first error, and how many windows were not stored because of errors.
    pub error: Option<String>,
    pub failed: u64,
}

/// A running recorder thread.
pub struct Recorder {
    thread: JoinHandle<RecorderReport>,
}

impl Recorder {
    /// Record the windows of `sub`, embedded by `model` (a [`super::model_key`]), into
    /// `store` until the runtime shuts down.
    pub fn start(store: WindowStore, model: String, sub: WindowSubscription) -> Result<Recorder> {
        let thread = std::thread::Builder::new()
            .name("vigil-store".into())
            .spawn(move || record(store, &model, sub))
            .map_err(|e| PipelineError::Internal(format!("cannot start the store thread: {e}")))?;
        Ok(Recorder { thread })
    }

    /// Wait for the recorder to store what is left (the runtime must be shut down).
    pub fn finish(self) -> RecorderReport {
        self.thread.join().unwrap_or_else(|_| RecorderReport {
            error: Some("the store thread panicked".into()),
            ..Default::default()
        })
    }
}

fn record(mut store: WindowStore, model: &str, sub: WindowSubscription) -> RecorderReport {
    let span = tracing::info_span!("store", path = %store.path().display());
    let _enter = span.enter();
    let mut report = RecorderReport::default();
    let mut batch: Vec<WindowRecord> = Vec::with_capacity(BATCH);
    while let Some(first) = sub.recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match sub.recv_timeout(Duration::ZERO) {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let rows: Vec<NewWindow> = batch
            .iter()
            .map(|w| NewWindow {
                stream: &w.stream,
                start_ms: unix_ms(w.start),
                end_ms: unix_ms(w.end),
                start_pts_ms: w.start_pts_ns as f64 / 1e6,
                end_pts_ms: w.end_pts_ns as f64 / 1e6,
                frames: w.frames,
                embedding: &w.embedding,
                snapshot: None,
            })
            .collect();
        match store.insert(model, &rows) {
            Ok(ids) => {
                report.stored += ids.len() as u64;
                for (w, id) in batch.iter().zip(ids) {
                    match save_snapshot(&store, w, id) {
                        Ok(true) => report.snapshots += 1,
                        Ok(false) => {}
                        Err(e) => fail(&mut report, e, 0),
                    }
                }
            }
            Err(e) => fail(&mut report, e, rows.len() as u64),
        }
        batch.clear();
    }
    report.lost = sub.lost();
    tracing::info!(stored = report.stored, lost = report.lost, "store closed");
    report
}

fn fail(report: &mut RecorderReport, e: PipelineError, windows: u64) {
    if report.error.is_none() {
        tracing::error!(error = %e, "cannot store windows; the streams go on");
        report.error = Some(e.to_string());
    }
    report.failed += windows;
}

/// `snapshots/<stream>/<id>.jpg` for a window that carries its frame.
fn save_snapshot(store: &WindowStore, w: &WindowRecord, id: i64) -> Result<bool> {
    let Some(snap) = &w.snapshot else {
        return Ok(false);
    };
    let jpeg = snap.to_jpeg(JPEG_QUALITY)?;
    let rel = Path::new("snapshots")
        .join(file_safe(&w.stream))
        .join(format!("{id}.jpg"));
    let path = store.dir().join(&rel);
    let write = || -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &jpeg)
    };
    write().map_err(|source| PipelineError::Output {
        target: path.display().to_string(),
        source,
    })?;
    store.set_snapshot(id, &rel.to_string_lossy())?;
    Ok(true)
}

/// A stream name as one path component: anything but letters, digits, `-`, `_` and `.`
/// becomes `_` (RTSP names hold `:` and `/`), never `.` or `..` alone.
pub fn file_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().all(|c| c == '.') {
        format!("_{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_become_one_path_component() {
        assert_eq!(file_safe("yard"), "yard");
        assert_eq!(file_safe("127.0.0.1:8554/cam1"), "127.0.0.1_8554_cam1");
        assert_eq!(file_safe(".."), "_..");
        assert_eq!(file_safe("a b/ç"), "a_b__");
    }
}
