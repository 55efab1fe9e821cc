//! [`Store`]: the sidecar's embedded SQLite database (`<data-dir>/vigil.db`): the history
//! of start/end events and the streams added through the API, which resume after a restart.
//!
//! SQLite is Debian's `libsqlite3` (3.40, linked by `rusqlite`; no bundled copy to compile
//! in every CI run, security fixes from the distribution). The database runs in WAL mode
//! with `synchronous=NORMAL`: every committed transaction is in the WAL file before
//! [`Store::insert_event`] returns, so a `kill -9` loses nothing that was committed (a power
//! cut may lose the last transactions; `synchronous=FULL` would fsync each one). The hub
//! commits an event *before* it is published on SSE, so whatever a client saw acknowledged
//! is on disk. Writes go through one connection, history reads through another (WAL lets
//! them run side by side).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::control::StreamDef;
use super::record::{SseKind, SseKinds};
use crate::resample::Rate;
use crate::{PipelineError, Result};

/// The database file inside the data dir.
pub const DB_FILE: &str = "vigil.db";

/// Largest `limit` a history query may ask for.
pub const MAX_HISTORY_LIMIT: usize = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT    NOT NULL CHECK (kind IN ('start', 'end')),
    stream  TEXT    NOT NULL,
    label   TEXT    NOT NULL,
    score   REAL    NOT NULL,
    pts_ms  REAL    NOT NULL,
    ts      TEXT    NOT NULL,
    ts_ms   INTEGER NOT NULL,
    reason  TEXT,
    json    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts_ms);
CREATE INDEX IF NOT EXISTS events_stream_ts ON events (stream, ts_ms);
CREATE TABLE IF NOT EXISTS streams (
    name       TEXT PRIMARY KEY,
    uri        TEXT NOT NULL,
    fps        TEXT,
    enter      REAL,
    exit       REAL,
    added_ms   INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

/// The history and stream definitions of one data dir.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

/// Filters of `GET /api/events/history`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    pub stream: Option<String>,
    pub label: Option<String>,
    /// Events at or after this time (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Events before this time (ms since the Unix epoch).
    pub until_ms: Option<i64>,
    /// Newest first, at most this many.
    pub limit: usize,
}

/// A start/end event as the hub stores it: the fields of its JSON line (read back from
/// that line, so the history says exactly what SSE said) and the line itself.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct NewEvent {
    pub event: String,
    pub stream: String,
    pub label: String,
    pub score: f64,
    pub pts_ms: f64,
    pub ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One stored start/end event: its history `id` and fields (the history API's object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    #[serde(flatten)]
    pub fields: NewEvent,
    /// The line SSE sent for it.
    #[serde(skip)]
    pub json: String,
}

impl StoredEvent {
    pub fn kind(&self) -> SseKind {
        if self.fields.event == "start" {
            SseKind::Start
        } else {
            SseKind::End
        }
    }
}

impl Store {
    /// Open (or create) the store in `dir`, creating `dir` (mode 0700: stream URIs may hold
    /// camera passwords) if needed.
    pub fn open(dir: &Path) -> Result<Store> {
        let bad_dir = |why: String| PipelineError::Config {
            path: dir.to_path_buf(),
            why,
            hint: "pass a writable directory to --data-dir".into(),
        };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| bad_dir(format!("cannot create: {e}")))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            }
        } else if !dir.is_dir() {
            return Err(bad_dir("not a directory".into()));
        }
        let path = dir.join(DB_FILE);
        let open = |what: &str| -> Result<Connection> {
            let c = Connection::open(&path)
                .map_err(|e| bad_dir(format!("cannot open {}: {e}", path.display())))?;
            c.busy_timeout(std::time::Duration::from_secs(5))
                .and_then(|_| c.pragma_update(None, "journal_mode", "WAL"))
                .and_then(|_| c.pragma_update(None, "synchronous", "NORMAL"))
                .map_err(|e| bad_dir(format!("{what} {}: {e}", path.display())))?;
            Ok(c)
        };
        let writer = open("cannot configure")?;
        writer
            .execute_batch(SCHEMA)
            .map_err(|e| bad_dir(format!("{} is not a Vigil store ({e})", path.display())))?;
        let reader = open("cannot configure")?;
        Ok(Store {
            path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str, e: rusqlite::Error) -> PipelineError {
        PipelineError::Store {
            path: self.path.clone(),
            what: what.into(),
            source: e,
        }
    }

    /// Commit one start/end event (`json`: its line); returns its history id.
    pub fn insert_event(&self, ev: &NewEvent, json: &str) -> Result<i64> {
        let ts_ms = parse_time(&ev.ts).unwrap_or_else(|_| now_ms());
        let w = self.writer.lock();
        w.prepare_cached(
            "INSERT INTO events (kind, stream, label, score, pts_ms, ts, ts_ms, reason, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .and_then(|mut st| {
            st.execute(params![
                ev.event, ev.stream, ev.label, ev.score, ev.pts_ms, ev.ts, ts_ms, ev.reason, json
            ])
        })
        .map_err(|e| self.err("cannot record an event", e))?;
        Ok(w.last_insert_rowid())
    }

    /// Events matching `q`, newest first.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<StoredEvent>> {
        let r = self.reader.lock();
        let mut st = r
            .prepare_cached(
                "SELECT id, kind, stream, label, score, pts_ms, ts, reason, json FROM events
                 WHERE (?1 IS NULL OR stream = ?1) AND (?2 IS NULL OR label = ?2)
                   AND (?3 IS NULL OR ts_ms >= ?3) AND (?4 IS NULL OR ts_ms < ?4)
                 ORDER BY id DESC LIMIT ?5",
            )
            .map_err(|e| self.err("cannot query history", e))?;
        let limit = q.limit.min(MAX_HISTORY_LIMIT) as i64;
        let rows = st
            .query_map(
                params![q.stream, q.label, q.since_ms, q.until_ms, limit],
                row_event,
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err("cannot query history", e))?;
        Ok(rows)
    }

    /// Events with an id above `after_id`, oldest first (SSE catch-up after a reconnect or
    /// a lag), filtered like the SSE stream.
    pub fn events_after(
        &self,
        after_id: i64,
        stream: Option<&str>,
        kinds: SseKinds,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let r = self.reader.lock();
        let mut st = r
            .prepare_cached(
                "SELECT id, kind, stream, label, score, pts_ms, ts, reason, json FROM events
                 WHERE id > ?1 AND (?2 IS NULL OR stream = ?2) ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.err("cannot query history", e))?;
        let rows = st
            .query_map(params![after_id, stream, limit as i64], row_event)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err("cannot query history", e))?;
        Ok(rows
            .into_iter()
            .filter(|e| kinds.contains(e.kind()))
            .collect())
    }

    /// The highest event id stored (0 when empty).
    pub fn last_event_id(&self) -> Result<i64> {
        let r = self.reader.lock();
        r.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |row| {
            row.get(0)
        })
        .map_err(|e| self.err("cannot query history", e))
    }

    /// Delete events older than `before_ms`; returns how many.
    pub fn prune(&self, before_ms: i64) -> Result<usize> {
        self.writer
            .lock()
            .execute("DELETE FROM events WHERE ts_ms < ?1", params![before_ms])
            .map_err(|e| self.err("cannot prune history", e))
    }

    /// Persist a stream added through the API.
    pub fn save_stream(&self, def: &StreamDef) -> Result<()> {
        let fps = def.fps.map(|r| match r {
            Rate::Native => "native".to_string(),
            Rate::Fps(f) => f.to_string(),
        });
        self.writer
            .lock()
            .execute(
                "INSERT OR REPLACE INTO streams (name, uri, fps, enter, exit, added_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![def.name, def.uri, fps, def.enter, def.exit, now_ms()],
            )
            .map_err(|e| self.err("cannot save a stream", e))?;
        Ok(())
    }

    /// Forget a stream; `false` if it was not stored.
    pub fn delete_stream(&self, name: &str) -> Result<bool> {
        self.writer
            .lock()
            .execute("DELETE FROM streams WHERE name = ?1", params![name])
            .map(|n| n > 0)
            .map_err(|e| self.err("cannot delete a stream", e))
    }

    /// Is a stream of this name stored?
    pub fn has_stream(&self, name: &str) -> Result<bool> {
        self.reader
            .lock()
            .query_row(
                "SELECT 1 FROM streams WHERE name = ?1",
                params![name],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err("cannot read streams", e))
    }

    /// Every stored stream, in the order they were added.
    pub fn streams(&self) -> Result<Vec<StreamDef>> {
        let r = self.reader.lock();
        let mut st = r
            .prepare("SELECT name, uri, fps, enter, exit FROM streams ORDER BY added_ms, rowid")
            .map_err(|e| self.err("cannot read streams", e))?;
        let rows = st
            .query_map([], |row| {
                let fps: Option<String> = row.get(2)?;
                Ok(StreamDef {
                    name: row.get(0)?,
                    uri: row.get(1)?,
                    fps: fps.and_then(|f| f.parse::<Rate>().ok()),
                    enter: row.get::<_, Option<f64>>(3)?.map(|v| v as f32),
                    exit: row.get::<_, Option<f64>>(4)?.map(|v| v as f32),
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err("cannot read streams", e))?;
        Ok(rows)
    }

    /// Fold the WAL back into the database file and close (a clean shutdown).
    pub fn close(self) -> Result<()> {
        let w = self.writer.into_inner();
        let path = self.path;
        let failed = |what: &str, source| PipelineError::Store {
            path: path.clone(),
            what: what.into(),
            source,
        };
        w.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .map_err(|e| failed("cannot checkpoint", e))?;
        drop(self.reader);
        w.close().map_err(|(_, e)| failed("cannot close", e))
    }
}

fn row_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        id: row.get(0)?,
        fields: NewEvent {
            event: row.get(1)?,
            stream: row.get(2)?,
            label: row.get(3)?,
            score: row.get(4)?,
            pts_ms: row.get(5)?,
            ts: row.get(6)?,
            reason: row.get(7)?,
        },
        json: row.get(8)?,
    })
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A time as milliseconds since the Unix epoch: an integer (already ms) or RFC 3339
/// (`2026-11-23T10:00:00Z`, `2026-11-23T10:00:00.250+01:00`).
pub fn parse_time(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || format!("{s:?} is not a time");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> std::result::Result<i64, String> {
        s.get(r)
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    if h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let digits = &s[start..i.min(start + 3)];
        frac_ms = digits.parse::<i64>().map_err(|_| bad())? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_s = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(y, mo, d);
    Ok((days * 86_400 + h * 3600 + mi * 60 + se - offset_s) * 1000 + frac_ms)
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

    /// Commit an event the way the hub does.
    fn put(store: &Store, kind: &str, stream: &str, label: &str, ts: &str) -> i64 {
        let ev = NewEvent {
            event: kind.into(),
            stream: stream.into(),
            label: label.into(),
            score: 0.8,
            pts_ms: 100.0,
            ts: ts.into(),
            reason: None,
        };
        store.insert_event(&ev, "{}").unwrap()
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(
            parse_time("2024-02-29T12:34:56.789Z"),
            Ok(1_709_210_096_789)
        );
        assert_eq!(
            parse_time("2024-02-29T13:34:56.789+01:00"),
            Ok(1_709_210_096_789)
        );
        assert_eq!(parse_time("1709210096789"), Ok(1_709_210_096_789));
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:34:56",
            "2024-02-29T12:34:56.Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        // round trip with the writer used by every record
        let mut s = String::new();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_800_000_123_456);
        crate::output::format_rfc3339(t, &mut s);
        assert_eq!(parse_time(&s), Ok(1_800_000_123_456));
    }

    #[test]
    fn history_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data")).unwrap();
        let mode: String = store
            .reader
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let a = put(&store, "start", "a", "archery", "2026-01-01T00:00:00Z");
        let b = put(&store, "start", "b", "boxing", "2026-01-01T00:01:00Z");
        let c = put(&store, "end", "a", "archery", "2026-01-01T00:02:00Z");
        assert!(a < b && b < c);
        let ids = |q: HistoryQuery| -> Vec<i64> {
            store.history(&q).unwrap().iter().map(|e| e.id).collect()
        };
        let all = HistoryQuery {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(ids(all.clone()), vec![c, b, a]);
        assert_eq!(
            ids(HistoryQuery {
                stream: Some("a".into()),
                ..all.clone()
            }),
            vec![c, a]
        );
        assert_eq!(
            ids(HistoryQuery {
                label: Some("boxing".into()),
                ..all.clone()
            }),
            vec![b]
        );
        let t1 = parse_time("2026-01-01T00:01:00Z").unwrap();
        assert_eq!(
            ids(HistoryQuery {
                since_ms: Some(t1),
                ..all.clone()
            }),
            vec![c, b]
        );
        assert_eq!(
            ids(HistoryQuery {
                until_ms: Some(t1),
                ..all.clone()
            }),
            vec![a]
        );
        assert_eq!(
            ids(HistoryQuery {
                limit: 1,
                ..all.clone()
            }),
            vec![c]
        );
        let after: Vec<i64> = store
            .events_after(a, None, SseKinds::ALL, 10)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(after, vec![b, c]);
        let ends = store
            .events_after(0, Some("a"), SseKinds::parse("end").unwrap(), 10)
            .unwrap();
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0].fields.event, "end");
        assert_eq!(store.last_event_id().unwrap(), c);
        assert_eq!(store.prune(t1).unwrap(), 1);
        assert_eq!(ids(all), vec![c, b]);
    }

    #[test]
    fn streams_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let def = StreamDef {
            name: "yard".into(),
            uri: "rtsp://u:p@127.0.0.1:8554/yard".into(),
            fps: Some(Rate::Native),
            enter: Some(0.6),
            exit: None,
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.save_stream(&def).unwrap();
            store
                .save_stream(&StreamDef {
                    name: "gone".into(),
                    uri: "test:".into(),
                    fps: Some(Rate::Fps(2.5)),
                    enter: None,
                    exit: None,
                })
                .unwrap();
            assert!(store.delete_stream("gone").unwrap());
            assert!(!store.delete_stream("gone").unwrap());
            put(&store, "start", "yard", "x", "2026-01-01T00:00:00Z");
            store.close().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.streams().unwrap(), vec![def]);
        assert!(store.has_stream("yard").unwrap());
        assert_eq!(
            store
                .history(&HistoryQuery {
                    limit: 10,
                    ..Default::default()
                })
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn refuses_a_file_as_data_dir() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = Store::open(f.path()).err().unwrap();
        assert!(e.is_user_error(), "{e}");
        assert!(e.to_string().contains("--data-dir"), "{e}");
    }
}
