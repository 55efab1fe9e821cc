//! [`Output`]: formats results as JSON lines or text and writes them to stdout or a file;
//! [`write_json`]: the JSON of one runtime record, the same for `vigil watch` and for a
//! service publishing records (server-sent events, MQTT, webhooks).
//!
//! Record shapes (one JSON object per line):
//! - fixture frame: `{"frame":i,"top":[{"label","index","score"}],"logits":[..]}`
//! - stream frame: `{"stream","seq","pts_ms","ts","top":[..],"latency_ms"}` (+ `"logits"`)
//! - event: `{"event":"start"|"end","stream","label","score","pts_ms","ts"}` (+ `"reason"` on
//!   ends: `score below exit`, `stream lost`, `stream ended`, `stream restarted`,
//!   `stream removed`, `shutdown`)
//! - status: `{"stream","status":"connected"|"reconnecting"|"failed"|"ended"|"removed",
//!   "reason","uri","frames","dropped","reconnects","ts"}` (uri with credentials masked)
//! - stats: `{"stats":true,"stream","status","frames","dropped","dropped_since","fps",
//!   "reconnects","ts"}`
//! - final: `{"final":true,["stream",]"frames":N,["dropped",]"top":[..]}` (+ `"status"` when
//!   not ended, `"error"`, and `"interrupted":true,"reason"` for partial results)
//!
//! Scores are softmax probabilities. Every record is written through one reused line buffer
//! and flushed, so a reader sees each line as soon as it exists. In text mode on a terminal,
//! [`Output::live`] keeps one redrawn status line per stream, each cut to the terminal's
//! width ([`live_line`]).

use std::io::Write;
use std::time::{Instant, SystemTime};

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use vigil_engine::Labels;

use crate::runtime::{
    EndRecord, EventRecord, LabelRecord, RuntimeEvent, StatsRecord, StatusRecord, TopK,
};
use crate::status::StreamPhase;
use crate::{PipelineError, Result};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Human-readable lines (one live line per stream on a terminal).
    Text,
}

/// Where and how results are written.
pub struct Output {
    writer: Box<dyn Write + Send>,
    target: String,
    format: Format,
    labels: Labels,
    top_k: usize,
    with_logits: bool,
    /// redraw one line per stream (text on a terminal)
    live: Option<LiveBlock>,
    top: Vec<(usize, f32)>,
    line: Vec<u8>,
    ts: String,
}

/// The redrawn block of the live text view.
struct LiveBlock {
    names: Vec<String>,
    lines: Vec<String>,
    name_width: usize,
    /// terminal columns (`None`: ask the terminal)
    fixed_width: Option<usize>,
    width: usize,
    width_checked: Option<Instant>,
    drawn: bool,
}

/// Narrowest and widest name column of the live view.
const NAME_MIN: usize = 8;
const NAME_MAX: usize = 24;

impl Output {
    /// `writer` gets every line; `target` names it in errors.
    pub fn new(
        writer: Box<dyn Write + Send>,
        target: &str,
        format: Format,
        labels: Labels,
        top_k: usize,
        with_logits: bool,
    ) -> Output {
        Output {
            writer,
            target: target.to_string(),
            format,
            labels,
            top_k: top_k.max(1),
            with_logits,
            live: None,
            top: Vec::with_capacity(top_k.max(1)),
            line: Vec::with_capacity(4096),
            ts: String::with_capacity(32),
        }
    }

    /// Keep one redrawn status line per stream (text format only), cut to `width`
    /// columns (`None`: the terminal's width, checked as it changes).
    pub fn live(&mut self, streams: &[String], width: Option<usize>) {
        if self.format == Format::Text {
            let longest = streams.iter().map(|s| s.chars().count()).max().unwrap_or(0);
            self.live = Some(LiveBlock {
                names: streams.to_vec(),
                lines: streams.iter().map(|_| String::with_capacity(256)).collect(),
                name_width: longest.clamp(NAME_MIN, NAME_MAX),
                fixed_width: width,
                width: width.unwrap_or(80),
                width_checked: None,
                drawn: false,
            });
        }
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// One fixture frame.
    pub fn fixture_frame(&mut self, index: usize, logits: &[f32]) -> Result<()> {
        vigil_engine::labels::softmax_top_k(logits, self.top_k, &mut self.top);
        self.line.clear();
        match self.format {
            Format::Jsonl => {
                let rec = FixtureFrame {
                    frame: index,
                    top: top_view(&self.top, &self.labels),
                    logits: self.with_logits.then_some(logits),
                };
                serde_json::to_writer(&mut self.line, &rec).map_err(json_err)?;
            }
            Format::Text => {
                let _ = write!(self.line, "frame {index:<5}");
                write_top_text(&mut self.line, &self.top, &self.labels);
            }
        }
        self.emit()
    }

    /// The last line of a fixture run.
    pub fn fixture_final(&mut self, frames: usize, logits: Option<&[f32]>) -> Result<()> {
        match logits {
            Some(l) => vigil_engine::labels::softmax_top_k(l, self.top_k, &mut self.top),
            None => self.top.clear(),
        }
        self.line.clear();
        match self.format {
            Format::Jsonl => {
                let rec = FinalJson {
                    is_final: true,
                    stream: None,
                    frames: frames as u64,
                    dropped: None,
                    top: top_view(&self.top, &self.labels),
                    status: None,
                    error: None,
                    interrupted: None,
                    reason: None,
                };
                serde_json::to_writer(&mut self.line, &rec).map_err(json_err)?;
            }
            Format::Text => {
                let _ = write!(self.line, "== final: {frames} frames; top:");
                write_top_text(&mut self.line, &self.top, &self.labels);
            }
        }
        self.emit()
    }

    /// One runtime record. `stop_reason`: what a stream stopped before its input ended
    /// counts as (`Some("interrupted by signal")` marks its final line partial).
    pub fn record(&mut self, ev: &RuntimeEvent, stop_reason: Option<&str>) -> Result<()> {
        match ev {
            RuntimeEvent::Label(r) => self.label(r),
            RuntimeEvent::Event(r) => self.event(r),
            RuntimeEvent::Status(r) => self.status(r),
            RuntimeEvent::Stats(r) => self.stats(r),
            RuntimeEvent::End(r) => self.end(r, stop_reason),
        }
    }

    /// One processed stream frame.
    pub fn label(&mut self, r: &LabelRecord) -> Result<()> {
        let latency_ms = r.latency.as_secs_f64() * 1e3;
        if let (Some(live), Format::Text) = (&mut self.live, self.format) {
            live.refresh_width();
            if let Some(row) = live.names.iter().position(|n| **n == *r.stream) {
                live_line(
                    &mut live.lines[row],
                    &r.stream,
                    live.name_width,
                    r.seq,
                    r.pts_ns as f64 / 1e6,
                    &r.top,
                    &self.labels,
                    latency_ms,
                    live.width,
                );
            }
            return self.redraw(None);
        }
        self.line.clear();
        match self.format {
            Format::Jsonl => write_label_json(
                &mut self.line,
                r,
                &self.labels,
                self.with_logits,
                &mut self.ts,
            )?,
            Format::Text => {
                let _ = write!(
                    self.line,
                    "{:<16} #{:<6} {:>9.3}s ",
                    r.stream,
                    r.seq,
                    r.pts_ns as f64 / 1e9
                );
                self.top.clear();
                self.top.extend(r.top.iter().take(self.top_k));
                write_top_text(&mut self.line, &self.top, &self.labels);
                let _ = write!(self.line, "  ({latency_ms:.0} ms)");
            }
        }
        self.emit()
    }

    /// An event crossing.
    pub fn event(&mut self, r: &EventRecord) -> Result<()> {
        self.line.clear();
        match self.format {
            Format::Jsonl => write_event_json(&mut self.line, r, &self.labels, &mut self.ts)?,
            Format::Text => {
                format_rfc3339(r.ts, &mut self.ts);
                let ev = &r.event;
                let _ = write!(
                    self.line,
                    "{} {}: {} {} (score {:.2})",
                    self.ts,
                    r.stream,
                    self.labels.name(ev.class),
                    ev.kind.as_str(),
                    ev.score
                );
                if let Some(reason) = ev
                    .reason
                    .filter(|r| *r != crate::events::EndReason::BelowExit)
                {
                    let _ = write!(self.line, " — {}", reason.as_str());
                }
            }
        }
        self.permanent()
    }

    /// A status change.
    pub fn status(&mut self, r: &StatusRecord) -> Result<()> {
        self.line.clear();
        match self.format {
            Format::Jsonl => write_status_json(&mut self.line, r, &mut self.ts)?,
            Format::Text => {
                format_rfc3339(r.ts, &mut self.ts);
                let _ = write!(self.line, "{} {}: {}", self.ts, r.stream, r.phase);
                if let Some(reason) = &r.reason {
                    let _ = write!(self.line, " — {reason}");
                }
            }
        }
        self.permanent()
    }

    /// Periodic counters.
    pub fn stats(&mut self, r: &StatsRecord) -> Result<()> {
        self.line.clear();
        match self.format {
            Format::Jsonl => write_stats_json(&mut self.line, r, &mut self.ts)?,
            Format::Text => {
                if self.live.is_some() {
                    return Ok(()); // the live lines already show the stream
                }
                format_rfc3339(r.ts, &mut self.ts);
                let _ = write!(
                    self.line,
                    "{} {}: {}, {} frames ({:.1}/s), {} dropped (+{}), {} reconnects",
                    self.ts,
                    r.stream,
                    r.phase,
                    r.frames,
                    r.fps,
                    r.dropped,
                    r.dropped_since,
                    r.reconnects
                );
            }
        }
        self.permanent()
    }

    /// The last line of a stream: frame count and the top of its last logits.
    pub fn end(&mut self, r: &EndRecord, stop_reason: Option<&str>) -> Result<()> {
        if r.error.is_some() && r.frames == 0 {
            return Ok(()); // the error says it all (printed by the caller)
        }
        match &r.last_logits {
            Some(l) => vigil_engine::labels::softmax_top_k(l, self.top_k, &mut self.top),
            None => self.top.clear(),
        }
        let partial = partial_reason(r, stop_reason);
        self.line.clear();
        match self.format {
            Format::Jsonl => {
                let rec = FinalJson {
                    is_final: true,
                    stream: Some(&r.stream),
                    frames: r.frames,
                    dropped: Some(r.dropped),
                    top: top_view(&self.top, &self.labels),
                    status: (r.phase != StreamPhase::Ended).then(|| r.phase.as_str()),
                    error: r.error.as_deref(),
                    interrupted: partial.is_some().then_some(true),
                    reason: partial,
                };
                serde_json::to_writer(&mut self.line, &rec).map_err(json_err)?;
            }
            Format::Text => {
                let _ = write!(
                    self.line,
                    "== {}: {} frames, {} dropped",
                    r.stream, r.frames, r.dropped
                );
                if let Some(p) = partial {
                    let _ = write!(self.line, " (partial: {p})");
                }
                let _ = write!(self.line, "; top:");
                write_top_text(&mut self.line, &self.top, &self.labels);
            }
        }
        self.permanent()
    }

    /// Write the line in `self.line` above the live block (or plainly).
    fn permanent(&mut self) -> Result<()> {
        if self.live.is_some() {
            let line = std::mem::take(&mut self.line);
            let r = self.redraw(Some(&line));
            self.line = line;
            return r;
        }
        self.emit()
    }

    fn emit(&mut self) -> Result<()> {
        self.line.push(b'\n');
        let r = self
            .writer
            .write_all(&self.line)
            .and_then(|_| self.writer.flush());
        r.map_err(|source| PipelineError::Output {
            target: self.target.clone(),
            source,
        })
    }

    /// Redraw the live block, printing `above` (a permanent line) first.
    fn redraw(&mut self, above: Option<&[u8]>) -> Result<()> {
        let Some(live) = &mut self.live else {
            return Ok(());
        };
        let w = &mut self.writer;
        let n = live.lines.len();
        let r = (|| -> std::io::Result<()> {
            if live.drawn && n > 0 {
                write!(w, "\x1b[{n}A\r\x1b[J")?;
            }
            if let Some(a) = above {
                w.write_all(a)?;
                w.write_all(b"\n")?;
            }
            for l in &live.lines {
                w.write_all(b"\x1b[2K")?;
                w.write_all(l.as_bytes())?;
                w.write_all(b"\n")?;
            }
            w.flush()
        })();
        live.drawn = true;
        r.map_err(|source| PipelineError::Output {
            target: self.target.clone(),
            source,
        })
    }
}

impl LiveBlock {
    /// Follow the terminal's width (checked at most twice a second).
    fn refresh_width(&mut self) {
        if let Some(w) = self.fixed_width {
            self.width = w;
            return;
        }
        if self
            .width_checked
            .is_some_and(|t| t.elapsed().as_millis() < 500)
        {
            return;
        }
        self.width_checked = Some(Instant::now());
        if let Some(w) = terminal_width() {
            self.width = w;
        }
    }
}

/// Columns of the terminal on stdout, if it is one.
pub fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass, which lives for
    // the call; on a non-terminal it fails and leaves it untouched.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: see above; fd 1 is stdout, the pointer is valid for writes of `winsize`.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// One live-view line for a stream: name (padded or cut to `name_width`), frame number,
/// time, the top three labels and the latency, cut to `width - 1` columns (so a terminal
/// never wraps it). Reuses `out`'s buffer.
#[allow(clippy::too_many_arguments)]
pub fn live_line(
    out: &mut String,
    stream: &str,
    name_width: usize,
    seq: u64,
    pts_ms: f64,
    top: &TopK,
    labels: &Labels,
    latency_ms: f64,
    width: usize,
) {
    use std::fmt::Write as _;
    out.clear();
    push_cut(out, stream, name_width);
    for _ in stream.chars().count().min(name_width)..name_width {
        out.push(' ');
    }
    let _ = write!(out, " #{seq:<6} {:>8.1}s ", pts_ms / 1e3);
    let _ = write!(out, "{latency_ms:>5.0}ms ");
    for (i, (c, s)) in top.iter().take(3).enumerate() {
        let _ = write!(
            out,
            "{}{} {:.2}",
            if i > 0 { " | " } else { " " },
            labels.name(c),
            s
        );
    }
    let limit = width.saturating_sub(1).max(1);
    if out.chars().count() > limit {
        let cut: usize = out
            .char_indices()
            .nth(limit - 1)
            .map(|(i, _)| i)
            .unwrap_or(out.len());
        out.truncate(cut);
        out.push('…');
    }
}

/// Append `s` cut to `n` characters (the last one `…` when cut).
fn push_cut(out: &mut String, s: &str, n: usize) {
    if s.chars().count() <= n {
        out.push_str(s);
    } else {
        out.extend(s.chars().take(n.saturating_sub(1)));
        out.push('…');
    }
}

/// Why a final record is partial, if it is.
fn partial_reason<'a>(r: &'a EndRecord, stop_reason: Option<&'a str>) -> Option<&'a str> {
    if let Some(why) = &r.incomplete {
        return Some(why);
    }
    if r.stopped && r.phase != StreamPhase::Removed {
        return stop_reason;
    }
    None
}

/// The JSON of one runtime record (no trailing newline) appended to `out`: the lines
/// `vigil watch` writes. `ts` is scratch for the timestamp text.
pub fn write_json(
    out: &mut Vec<u8>,
    ev: &RuntimeEvent,
    labels: &Labels,
    with_logits: bool,
    ts: &mut String,
) -> Result<()> {
    match ev {
        RuntimeEvent::Label(r) => write_label_json(out, r, labels, with_logits, ts),
        RuntimeEvent::Event(r) => write_event_json(out, r, labels, ts),
        RuntimeEvent::Status(r) => write_status_json(out, r, ts),
        RuntimeEvent::Stats(r) => write_stats_json(out, r, ts),
        RuntimeEvent::End(r) => {
            let mut top = Vec::new();
            if let Some(l) = &r.last_logits {
                vigil_engine::labels::softmax_top_k(l, 5, &mut top);
            }
            let partial = partial_reason(r, Some("stopped"));
            let rec = FinalJson {
                is_final: true,
                stream: Some(&r.stream),
                frames: r.frames,
                dropped: Some(r.dropped),
                top: top_view(&top, labels),
                status: (r.phase != StreamPhase::Ended).then(|| r.phase.as_str()),
                error: r.error.as_deref(),
                interrupted: partial.is_some().then_some(true),
                reason: partial,
            };
            serde_json::to_writer(out, &rec).map_err(json_err)
        }
    }
}

fn write_label_json(
    out: &mut Vec<u8>,
    r: &LabelRecord,
    labels: &Labels,
    with_logits: bool,
    ts: &mut String,
) -> Result<()> {
    format_rfc3339(r.ts, ts);
    let rec = StreamFrame {
        stream: &r.stream,
        seq: r.seq,
        pts_ms: round3(r.pts_ns as f64 / 1e6),
        ts,
        top: topk_view(&r.top, labels),
        latency_ms: round3(r.latency.as_secs_f64() * 1e3),
        logits: if with_logits {
            r.logits.as_deref()
        } else {
            None
        },
    };
    serde_json::to_writer(out, &rec).map_err(json_err)
}

fn write_event_json(
    out: &mut Vec<u8>,
    r: &EventRecord,
    labels: &Labels,
    ts: &mut String,
) -> Result<()> {
    format_rfc3339(r.ts, ts);
    let ev = &r.event;
    let rec = EventJson {
        event: ev.kind.as_str(),
        stream: &r.stream,
        label: labels.name(ev.class),
        score: round4(ev.score),
        pts_ms: round3(ev.pts_ns as f64 / 1e6),
        ts,
        reason: ev.reason.map(|r| r.as_str()),
    };
    serde_json::to_writer(out, &rec).map_err(json_err)
}

fn write_status_json(out: &mut Vec<u8>, r: &StatusRecord, ts: &mut String) -> Result<()> {
    format_rfc3339(r.ts, ts);
    let rec = StatusJson {
        stream: &r.stream,
        status: r.phase.as_str(),
        reason: r.reason.as_deref(),
        uri: &r.uri,
        frames: r.frames,
        dropped: r.dropped,
        reconnects: r.reconnects,
        ts,
    };
    serde_json::to_writer(out, &rec).map_err(json_err)
}

fn write_stats_json(out: &mut Vec<u8>, r: &StatsRecord, ts: &mut String) -> Result<()> {
    format_rfc3339(r.ts, ts);
    let rec = StatsJson {
        stats: true,
        stream: &r.stream,
        status: r.phase.as_str(),
        frames: r.frames,
        dropped: r.dropped,
        dropped_since: r.dropped_since,
        fps: (r.fps * 100.0).round() / 100.0,
        reconnects: r.reconnects,
        ts,
    };
    serde_json::to_writer(out, &rec).map_err(json_err)
}

fn json_err(e: serde_json::Error) -> PipelineError {
    PipelineError::Internal(format!("JSON encoding failed: {e}"))
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn round4(x: f32) -> f64 {
    (x as f64 * 1e4).round() / 1e4
}

fn write_top_text(line: &mut Vec<u8>, top: &[(usize, f32)], labels: &Labels) {
    for (i, &(c, s)) in top.iter().enumerate() {
        let _ = write!(
            line,
            "{}{} {:.3}",
            if i > 0 { " | " } else { " " },
            labels.name(c),
            s
        );
    }
}

/// Serializes top-k `(index, score)` pairs as `[{"label","index","score"}]` without
/// building intermediate values.
struct TopView<'a, I> {
    top: I,
    labels: &'a Labels,
}

/// A [`TopView`] over a slice of pairs.
fn top_view<'a>(
    top: &'a [(usize, f32)],
    labels: &'a Labels,
) -> TopView<'a, impl Iterator<Item = (usize, f32)> + Clone + 'a> {
    TopView {
        top: top.iter().copied(),
        labels,
    }
}

/// A [`TopView`] over a [`TopK`].
fn topk_view<'a>(
    top: &'a TopK,
    labels: &'a Labels,
) -> TopView<'a, impl Iterator<Item = (usize, f32)> + Clone + 'a> {
    TopView {
        top: top.iter(),
        labels,
    }
}

impl<I: Iterator<Item = (usize, f32)> + Clone> Serialize for TopView<'_, I> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for (index, score) in self.top.clone() {
            seq.serialize_element(&TopJson {
                label: self.labels.name(index),
                index,
                score,
            })?;
        }
        seq.end()
    }
}

struct TopJson<'a> {
    label: &'a str,
    index: usize,
    score: f32,
}

impl Serialize for TopJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("label", self.label)?;
        m.serialize_entry("index", &self.index)?;
        m.serialize_entry("score", &round4(self.score))?;
        m.end()
    }
}

#[derive(Serialize)]
#[serde(bound = "")]
struct FixtureFrame<'a, I: Iterator<Item = (usize, f32)> + Clone> {
    frame: usize,
    top: TopView<'a, I>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<&'a [f32]>,
}

#[derive(Serialize)]
#[serde(bound = "")]
struct StreamFrame<'a, I: Iterator<Item = (usize, f32)> + Clone> {
    stream: &'a str,
    seq: u64,
    pts_ms: f64,
    ts: &'a str,
    top: TopView<'a, I>,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<&'a [f32]>,
}

#[derive(Serialize)]
struct EventJson<'a> {
    event: &'a str,
    stream: &'a str,
    label: &'a str,
    score: f64,
    pts_ms: f64,
    ts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    stream: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    uri: &'a str,
    frames: u64,
    dropped: u64,
    reconnects: u64,
    ts: &'a str,
}

#[derive(Serialize)]
struct StatsJson<'a> {
    stats: bool,
    stream: &'a str,
    status: &'a str,
    frames: u64,
    dropped: u64,
    dropped_since: u64,
    fps: f64,
    reconnects: u64,
    ts: &'a str,
}

#[derive(Serialize)]
#[serde(bound = "")]
struct FinalJson<'a, I: Iterator<Item = (usize, f32)> + Clone> {
    #[serde(rename = "final")]
    is_final: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    frames: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<u64>,
    top: TopView<'a, I>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// Write `t` as RFC 3339 UTC with milliseconds (`2024-05-01T12:34:56.789Z`) into `out`.
pub fn format_rfc3339(t: SystemTime, out: &mut String) {
    use std::fmt::Write as _;
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    out.clear();
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339() {
        let mut s = String::new();
        format_rfc3339(SystemTime::UNIX_EPOCH, &mut s);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        format_rfc3339(
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_210_096_789),
            &mut s,
        );
        assert_eq!(s, "2024-02-29T12:34:56.789Z");
    }

    /// Issue 8, defect 9: on an 80-column terminal the live view wrapped (a 131-column
    /// line for a long name and labels) and names over 16 characters misaligned it.
    #[test]
    fn live_view_fits_80_columns() {
        let names: Vec<String> = (0..600)
            .map(|i| format!("label number {i} of a long kind"))
            .collect();
        let path = std::env::temp_dir().join(format!("vigil-live-{}.txt", std::process::id()));
        std::fs::write(&path, names.join("\n")).unwrap();
        let labels = Labels::load(&path, 600).unwrap();
        let _ = std::fs::remove_file(&path);
        let top = TopK::from_pairs([(599, 0.91), (598, 0.05), (597, 0.01)]);
        let streams = ["a-very-long-camera-name-of-the-yard", "gate"];
        let name_width = 24;
        let mut rows = Vec::new();
        for s in streams {
            let mut line = String::new();
            live_line(
                &mut line, s, name_width, 123_456, 98_765.0, &top, &labels, 1234.0, 80,
            );
            assert!(
                line.chars().count() <= 79,
                "{} columns: {line:?}",
                line.chars().count()
            );
            rows.push(line);
        }
        // columns line up whatever the names' lengths
        let col = |l: &str| l.chars().position(|c| c == '#').unwrap();
        assert_eq!(col(&rows[0]), col(&rows[1]));
        assert_eq!(col(&rows[0]), name_width + 1);
        assert!(rows[0].starts_with("a-very-long-camera-name…"));
        // a wide terminal shows everything
        let mut wide = String::new();
        live_line(&mut wide, "gate", 8, 1, 1000.0, &top, &labels, 5.0, 300);
        assert!(
            wide.contains("label number 597 of a long kind 0.01"),
            "{wide}"
        );
    }
}
