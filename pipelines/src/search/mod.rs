//! Text search over what the cameras saw: window embeddings recorded while streams run
//! ([`Recorder`], from the runtime's window subscription into the [`WindowStore`]) and
//! queried by text ([`search`]: the query's text embedding against every stored window
//! of the same model, brute-force cosine, top-k).
//!
//! - [`model_key`] fingerprints a model folder (its config and samples of its weights):
//!   only windows embedded by the same model are comparable with its text embeddings.
//! - [`search`] returns [`Hit`]s: stream, wall-clock and stream-time range, cosine score,
//!   snapshot path (when one was stored).
//! - [`parse_time`] reads `--since` / `--until`: RFC 3339, a date, or an age (`15m`, `2h`).
//! - [`QueryEncoder`] embeds a query with the model that embedded the windows (loaded for
//!   `vigil search`, or shared with the running analyzer in `vigil serve`);
//!   [`SearchIndex`] is what `vigil serve`'s `GET /api/search` queries (encoder, model
//!   fingerprint, data dir).
//!
//! Brute force reads every candidate row once: ~0.5-0.6 M windows of 512 dims a second
//! on one core from SQLite (`examples/search_bench.rs`: 1.6 s per query over 1 M windows;
//! README's "Text search" says at what size a vector index should take over).

pub mod recorder;
pub mod store;

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use vigil_engine::clip::{ClipModel, ClipWorkspace, XClipModel, XClipWorkspace};

pub use recorder::Recorder;
pub use store::{WindowFilter, WindowRow, WindowStore};

use crate::{PipelineError, Result};

/// Largest `--top`.
pub const MAX_TOP: usize = 1000;

/// A stable fingerprint of the model in `dir` (`kind` is `clip` or `xclip`): FNV-1a over
/// `config.json`, the weights file's length, its header and 16 evenly spaced 64 KiB
/// samples — cheap on a 600 MB checkpoint, different for different weights.
pub fn model_key(dir: &Path, kind: &str) -> Result<String> {
    let read_err = |p: &Path, e: std::io::Error| {
        PipelineError::usage(
            format!("cannot read {}: {e}", p.display()),
            "pass the model folder the windows were recorded with",
        )
    };
    let mut h = Fnv::default();
    let config = dir.join("config.json");
    h.write(&std::fs::read(&config).map_err(|e| read_err(&config, e))?);
    let weights = dir.join("model.safetensors");
    let mut f = std::fs::File::open(&weights).map_err(|e| read_err(&weights, e))?;
    let len = f.metadata().map_err(|e| read_err(&weights, e))?.len();
    h.write(&len.to_le_bytes());
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..=16u64 {
        let at = (len.saturating_sub(buf.len() as u64)) * i / 16;
        f.seek(SeekFrom::Start(at))
            .and_then(|_| {
                let n = buf.len().min((len - at) as usize);
                f.read_exact(&mut buf[..n]).map(|_| n)
            })
            .map(|n| h.write(&buf[..n]))
            .map_err(|e| read_err(&weights, e))?;
    }
    Ok(format!("{kind}:{:016x}", h.0))
}

/// 64-bit FNV-1a (stable across Rust versions, unlike `DefaultHasher`).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub rank: usize,
    /// Cosine similarity of the window and the query (−1…1; CLIP's matches are ~0.2–0.35).
    pub score: f32,
    pub stream: String,
    /// Wall clock (RFC 3339) of the window's first and last frame.
    pub start: String,
    pub end: String,
    pub start_pts_ms: f64,
    pub end_pts_ms: f64,
    pub frames: usize,
    /// The window's newest frame as a JPEG, when one was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<PathBuf>,
    #[serde(skip)]
    pub id: i64,
}

/// A heap entry ordered by score (the heap keeps the worst on top).
struct Scored(f32, WindowRow);

impl PartialEq for Scored {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> Ordering {
        // reversed: the lowest score (then the newest id) is the heap's top
        o.0.total_cmp(&self.0).then(self.1.id.cmp(&o.1.id))
    }
}

/// The `top` stored windows of `model` closest to the unit `query` (cosine), best first.
pub fn search(
    store: &WindowStore,
    model: &str,
    query: &[f32],
    filter: &WindowFilter,
    top: usize,
) -> Result<(Vec<Hit>, usize)> {
    let top = top.clamp(1, MAX_TOP);
    let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(top + 1);
    let mut wrong_width = 0usize;
    let scanned = store.scan(model, filter, |row, e| {
        if e.len() != query.len() {
            wrong_width += 1;
            return;
        }
        let score: f32 = e.iter().zip(query).map(|(a, b)| a * b).sum();
        if heap.len() < top {
            heap.push(Scored(score, row));
        } else if heap.peek().is_some_and(|w| score > w.0) {
            heap.pop();
            heap.push(Scored(score, row));
        }
    })?;
    if wrong_width > 0 {
        tracing::warn!(
            windows = wrong_width,
            "stored windows of another width were skipped"
        );
    }
    let mut best = heap.into_sorted_vec(); // ascending by Ord = best score first
    let mut ts = String::new();
    let hits = best
        .drain(..)
        .enumerate()
        .map(|(i, Scored(score, w))| {
            let mut time = |ms: i64| {
                crate::output::format_rfc3339(
                    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
                    &mut ts,
                );
                ts.clone()
            };
            Hit {
                rank: i + 1,
                score,
                start: time(w.start_ms),
                end: time(w.end_ms),
                stream: w.stream,
                start_pts_ms: w.start_pts_ms,
                end_pts_ms: w.end_pts_ms,
                frames: w.frames,
                snapshot: w.snapshot.map(|s| store.dir().join(s)),
                id: w.id,
            }
        })
        .collect();
    Ok((hits, scanned))
}

/// The text side of the model that embedded the windows: a query's unit embedding in the
/// joint space. Cheap to clone (the model is shared, with its thread pool).
#[derive(Clone)]
pub enum QueryEncoder {
    Clip(Arc<ClipModel>),
    /// X-CLIP: the projected text, not conditioned on a clip (that needs the clip's frames).
    XClip(Arc<XClipModel>),
}

impl std::fmt::Debug for QueryEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl QueryEncoder {
    /// Load the CLIP (`xclip == false`) or X-CLIP folder `dir`.
    pub fn load(dir: &Path, xclip: bool, threads: usize) -> Result<QueryEncoder> {
        let load_err = |source| PipelineError::Clip {
            path: dir.to_path_buf(),
            source,
        };
        Ok(if xclip {
            QueryEncoder::XClip(Arc::new(XClipModel::load(dir, threads).map_err(load_err)?))
        } else {
            QueryEncoder::Clip(Arc::new(ClipModel::load(dir, threads).map_err(load_err)?))
        })
    }

    /// `clip` or `xclip` (the prefix of [`model_key`]).
    pub fn kind(&self) -> &'static str {
        match self {
            QueryEncoder::Clip(_) => "clip",
            QueryEncoder::XClip(_) => "xclip",
        }
    }

    /// The model folder.
    pub fn dir(&self) -> &Path {
        match self {
            QueryEncoder::Clip(m) => &m.dir,
            QueryEncoder::XClip(m) => &m.dir,
        }
    }

    /// `query`'s unit text embedding (an empty query is the caller's to refuse).
    pub fn embed(&self, query: &str) -> Result<Vec<f32>> {
        let mut e = match self {
            QueryEncoder::Clip(m) => {
                let mut ws = ClipWorkspace::default();
                m.encode_prompts(&[query], &mut ws)?.embeds.to_vec()
            }
            QueryEncoder::XClip(m) => {
                let mut ws = XClipWorkspace::default();
                m.encode_prompts(&[query], &mut ws)?.projected.to_vec()
            }
        };
        let n = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            e.iter_mut().for_each(|v| *v /= n);
        }
        Ok(e)
    }
}

/// Text search over one data dir's windows of one model (what `vigil serve` answers
/// `GET /api/search` with). Each query opens its own read connection (WAL: readers never
/// wait for the recorder).
#[derive(Debug, Clone)]
pub struct SearchIndex {
    pub encoder: QueryEncoder,
    /// [`model_key`] of the encoder's model.
    pub model_key: String,
    pub data_dir: PathBuf,
}

impl SearchIndex {
    /// The index of `encoder`'s windows in `data_dir`.
    pub fn new(encoder: QueryEncoder, data_dir: &Path) -> Result<SearchIndex> {
        let model_key = model_key(encoder.dir(), encoder.kind())?;
        Ok(SearchIndex {
            encoder,
            model_key,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The `top` windows closest to `query` that pass `filter`, and how many were compared.
    pub fn query(
        &self,
        query: &str,
        filter: &WindowFilter,
        top: usize,
    ) -> Result<(Vec<Hit>, usize)> {
        let q = self.encoder.embed(query)?;
        let store = WindowStore::open(&self.data_dir)?;
        search(&store, &self.model_key, &q, filter, top)
    }

    /// The stored snapshot of window `id` (a path inside the data dir), if it has one.
    pub fn snapshot(&self, id: i64) -> Result<Option<PathBuf>> {
        let store = WindowStore::open(&self.data_dir)?;
        Ok(store
            .snapshot_of(&self.model_key, id)?
            .map(|rel| self.data_dir.join(rel)))
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// A time for `--since`/`--until` as ms since the Unix epoch: RFC 3339
/// (`2026-11-23T10:00:00Z`, `…+01:00`, fractions allowed), a UTC date (`2026-11-23`), or
/// an age before `now` (`90s`, `15m`, `2h`, `3d`).
pub fn parse_time(s: &str, now: SystemTime) -> std::result::Result<i64, String> {
    let s = s.trim();
    let bad = || {
        format!("{s:?} is not a time (use 2026-11-23T10:00:00Z, 2026-11-23, or an age: 90s, 15m, 2h, 3d)")
    };
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = s[..s.len() - 1].parse::<f64>() {
            let secs = n * match unit {
                's' => 1.0,
                'm' => 60.0,
                'h' => 3600.0,
                _ => 86_400.0,
            };
            if !(0.0..1e11).contains(&secs) {
                return Err(bad());
            }
            return Ok(unix_ms(now) - (secs * 1000.0) as i64);
        }
    }
    let num = |t: &str| t.parse::<i64>().map_err(|_| bad());
    let (date, rest) = s.split_at(s.find(['T', 't', ' ']).unwrap_or(s.len()));
    let mut d = date.split('-');
    let (y, mo, da) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(y), Some(m), Some(dd), None) if y.len() == 4 => (num(y)?, num(m)?, num(dd)?),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return Err(bad());
    }
    let mut ms = days_from_civil(y, mo, da) * 86_400_000;
    let rest = rest.get(1..).unwrap_or("");
    if !rest.is_empty() {
        let (clock, offset) = match rest.find(['Z', 'z', '+', '-']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let mut parts = clock.split(':');
        let h = num(parts.next().unwrap_or(""))?;
        let m = parts.next().map(num).transpose()?.unwrap_or(0);
        let sec: f64 = match parts.next() {
            Some(x) => x.parse().map_err(|_| bad())?,
            None => 0.0,
        };
        if parts.next().is_some() || h > 23 || m > 59 || !(0.0..61.0).contains(&sec) {
            return Err(bad());
        }
        ms += h * 3_600_000 + m * 60_000 + (sec * 1000.0).round() as i64;
        match offset {
            "" | "Z" | "z" => {}
            o => {
                let sign = if o.starts_with('-') { 1 } else { -1 };
                let (oh, om) = o[1..].split_once(':').unwrap_or((&o[1..], "0"));
                ms += sign * (num(oh)? * 3_600_000 + num(om)? * 60_000);
            }
        }
    }
    Ok(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_time("2024-02-29T12:34:56.789Z", now),
            Ok(1_709_210_096_789)
        );
        assert_eq!(
            parse_time("2024-02-29T13:34:56.789+01:00", now),
            Ok(1_709_210_096_789)
        );
        assert_eq!(parse_time("1970-01-02", now), Ok(86_400_000));
        assert_eq!(parse_time("15m", now), Ok(1_000_000_000 - 900_000));
        assert_eq!(parse_time("2h", now), Ok(1_000_000_000 - 7_200_000));
        for bad in [
            "yesterday",
            "2024-13-01",
            "2024-02-29T25:00",
            "-5m",
            "1e20d",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn search_ranks_by_cosine() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = WindowStore::open(dir.path()).unwrap();
        let rows: Vec<[f32; 2]> = vec![[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]];
        let new: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, e)| store::NewWindow {
                stream: if i % 2 == 0 { "a" } else { "b" },
                start_ms: i as i64 * 1000,
                end_ms: i as i64 * 1000 + 999,
                start_pts_ms: 0.0,
                end_pts_ms: 1.0,
                frames: 1,
                embedding: &e[..],
                snapshot: None,
            })
            .collect();
        s.insert("m", &new).unwrap();
        let (hits, scanned) = search(&s, "m", &[1.0, 0.0], &WindowFilter::default(), 3).unwrap();
        assert_eq!(scanned, 4);
        let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
        assert_eq!(hits.len(), 3);
        assert!((scores[0] - 1.0).abs() < 1e-3 && (scores[1] - 0.8).abs() < 1e-3);
        assert!((scores[2] - 0.6).abs() < 1e-3, "{scores:?}");
        assert_eq!(hits.iter().map(|h| h.rank).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(hits[0].start, "1970-01-01T00:00:00.000Z");
        let b = WindowFilter {
            stream: Some("b".into()),
            ..Default::default()
        };
        let (hits, _) = search(&s, "m", &[1.0, 0.0], &b, 10).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].stream, "b");
        assert!((hits[0].score - 0.8).abs() < 1e-3);
    }
}
