//! [`Output`]: formats results as JSON lines or text and writes them to stdout or a file.
//!
//! Record shapes (one JSON object per line):
//! - fixture frame: `{"frame":i,"top":[{"label","index","score"}],"logits":[..]}`
//! - stream frame: `{"stream","seq","pts_ms","ts","top":[..],"latency_ms"}` (+ `"logits"`)
//! - event: `{"event":"start"|"end","stream","label","score","pts_ms","ts"}`
//! - final: `{"final":true,["stream",]"frames":N,["dropped",]"top":[..]}`
//!
//! Scores are softmax probabilities. Every record is written through one reused line buffer
//! and flushed, so a reader sees each line as soon as it exists. In text mode on a terminal,
//! [`Output::live`] keeps one redrawn status line per stream.

use std::io::Write;
use std::time::SystemTime;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use vigil_engine::Labels;

use crate::events::Event;
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

struct LiveBlock {
    lines: Vec<String>,
    drawn: bool,
}

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

    /// Keep one redrawn status line per stream (text format on a terminal only).
    pub fn live(&mut self, streams: usize) {
        if self.format == Format::Text {
            self.live = Some(LiveBlock {
                lines: (0..streams).map(|_| String::with_capacity(160)).collect(),
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
                    top: TopView {
                        top: &self.top,
                        labels: &self.labels,
                    },
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
        self.final_line(None, frames as u64, None, logits)
    }

    /// One processed stream frame.
    pub fn frame(
        &mut self,
        lane: usize,
        stream: &str,
        seq: u64,
        pts_ns: u64,
        latency_ms: f64,
        logits: &[f32],
    ) -> Result<()> {
        vigil_engine::labels::softmax_top_k(logits, self.top_k, &mut self.top);
        format_rfc3339(SystemTime::now(), &mut self.ts);
        let pts_ms = pts_ns as f64 / 1e6;
        if let (Some(live), Format::Text) = (&mut self.live, self.format) {
            if let Some(l) = live.lines.get_mut(lane) {
                l.clear();
                use std::fmt::Write as _;
                let _ = write!(l, "{stream:<16} #{seq:<6} {:>9.3}s ", pts_ms / 1e3);
                for (i, &(c, s)) in self.top.iter().take(3).enumerate() {
                    let _ = write!(
                        l,
                        "{}{} {:.2}",
                        if i > 0 { " | " } else { " " },
                        self.labels.name(c),
                        s
                    );
                }
                let _ = write!(l, "  ({latency_ms:.0} ms)");
            }
            return self.redraw(None);
        }
        self.line.clear();
        match self.format {
            Format::Jsonl => {
                let rec = StreamFrame {
                    stream,
                    seq,
                    pts_ms: round3(pts_ms),
                    ts: &self.ts,
                    top: TopView {
                        top: &self.top,
                        labels: &self.labels,
                    },
                    latency_ms: round3(latency_ms),
                    logits: self.with_logits.then_some(logits),
                };
                serde_json::to_writer(&mut self.line, &rec).map_err(json_err)?;
            }
            Format::Text => {
                let _ = write!(self.line, "{stream:<16} #{seq:<6} {:>9.3}s ", pts_ms / 1e3);
                write_top_text(&mut self.line, &self.top, &self.labels);
                let _ = write!(self.line, "  ({latency_ms:.0} ms)");
            }
        }
        self.emit()
    }

    /// An event crossing.
    pub fn event(&mut self, stream: &str, ev: &Event, pts_ns: u64) -> Result<()> {
        format_rfc3339(SystemTime::now(), &mut self.ts);
        self.line.clear();
        let label = self.labels.name(ev.class);
        match self.format {
            Format::Jsonl => {
                let rec = EventRecord {
                    event: ev.kind.as_str(),
                    stream,
                    label,
                    score: round4(ev.score),
                    pts_ms: round3(pts_ns as f64 / 1e6),
                    ts: &self.ts,
                };
                serde_json::to_writer(&mut self.line, &rec).map_err(json_err)?;
            }
            Format::Text => {
                let _ = write!(
                    self.line,
                    "{} {stream}: {label} {} (score {:.2})",
                    self.ts,
                    ev.kind.as_str(),
                    ev.score
                );
            }
        }
        if self.live.is_some() {
            let line = std::mem::take(&mut self.line);
            let r = self.redraw(Some(&line));
            self.line = line;
            return r;
        }
        self.emit()
    }

    /// The last line of a stream: frame count and the top of its last logits.
    pub fn stream_final(
        &mut self,
        stream: &str,
        frames: u64,
        dropped: u64,
        logits: Option<&[f32]>,
    ) -> Result<()> {
        self.final_line(Some(stream), frames, Some(dropped), logits)
    }

    fn final_line(
        &mut self,
        stream: Option<&str>,
        frames: u64,
        dropped: Option<u64>,
        logits: Option<&[f32]>,
    ) -> Result<()> {
        match logits {
            Some(l) => vigil_engine::labels::softmax_top_k(l, self.top_k, &mut self.top),
            None => self.top.clear(),
        }
        self.line.clear();
        match self.format {
            Format::Jsonl => {
                let rec = FinalRecord {
                    is_final: true,
                    stream,
                    frames,
                    dropped,
                    top: TopView {
                        top: &self.top,
                        labels: &self.labels,
                    },
                };
                serde_json::to_writer(&mut self.line, &rec).map_err(json_err)?;
            }
            Format::Text => {
                let _ = write!(
                    self.line,
                    "== {}: {frames} frames",
                    stream.unwrap_or("final")
                );
                if let Some(d) = dropped {
                    let _ = write!(self.line, ", {d} dropped");
                }
                let _ = write!(self.line, "; top:");
                write_top_text(&mut self.line, &self.top, &self.labels);
            }
        }
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
struct TopView<'a> {
    top: &'a [(usize, f32)],
    labels: &'a Labels,
}

impl Serialize for TopView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.top.len()))?;
        for &(index, score) in self.top {
            seq.serialize_element(&TopEntry {
                label: self.labels.name(index),
                index,
                score,
            })?;
        }
        seq.end()
    }
}

struct TopEntry<'a> {
    label: &'a str,
    index: usize,
    score: f32,
}

impl Serialize for TopEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("label", self.label)?;
        m.serialize_entry("index", &self.index)?;
        m.serialize_entry("score", &round4(self.score))?;
        m.end()
    }
}

#[derive(Serialize)]
struct FixtureFrame<'a> {
    frame: usize,
    top: TopView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<&'a [f32]>,
}

#[derive(Serialize)]
struct StreamFrame<'a> {
    stream: &'a str,
    seq: u64,
    pts_ms: f64,
    ts: &'a str,
    top: TopView<'a>,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<&'a [f32]>,
}

#[derive(Serialize)]
struct EventRecord<'a> {
    event: &'a str,
    stream: &'a str,
    label: &'a str,
    score: f64,
    pts_ms: f64,
    ts: &'a str,
}

#[derive(Serialize)]
struct FinalRecord<'a> {
    #[serde(rename = "final")]
    is_final: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    frames: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<u64>,
    top: TopView<'a>,
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
}
