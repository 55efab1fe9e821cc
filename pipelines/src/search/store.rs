//! [`WindowStore`]: window embeddings in the data dir's SQLite database
//! (`<data-dir>/vigil.db`, table `clip_windows`), for text search over what the cameras
//! saw.
//!
//! The same file, connection settings and crate as `vigil serve`'s store (Debian's
//! `libsqlite3` through `rusqlite`, WAL, `synchronous=NORMAL`, a 5 s busy timeout, the
//! data dir created with mode 0700), in a table of its own: both can share one data dir
//! and run side by side (WAL lets readers and one writer work at once). Each row is one
//! window: stream, wall-clock and stream-time range, the model that embedded it (a
//! fingerprint: vectors of different models are not comparable), its unit embedding as
//! little-endian IEEE half floats (1 KiB at ViT-B's 512 dims) and optionally a snapshot
//! path relative to the data dir. Writes are batched, one transaction per batch.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::{PipelineError, Result};

/// The database file inside the data dir (shared with `vigil serve`'s store).
pub const DB_FILE: &str = "vigil.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clip_windows (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    model        TEXT    NOT NULL,
    stream       TEXT    NOT NULL,
    start_ms     INTEGER NOT NULL,
    end_ms       INTEGER NOT NULL,
    start_pts_ms REAL    NOT NULL,
    end_pts_ms   REAL    NOT NULL,
    frames       INTEGER NOT NULL,
    dim          INTEGER NOT NULL,
    embedding    BLOB    NOT NULL,
    snapshot     TEXT
);
CREATE INDEX IF NOT EXISTS clip_windows_model_end ON clip_windows (model, end_ms);
";

/// One window to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWindow<'a> {
    pub stream: &'a str,
    /// Wall clock, ms since the Unix epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    pub start_pts_ms: f64,
    pub end_pts_ms: f64,
    pub frames: usize,
    /// Unit length.
    pub embedding: &'a [f32],
    /// Relative to the data dir.
    pub snapshot: Option<&'a str>,
}

/// One stored window as a scan sees it (the embedding decoded into the caller's buffer).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub id: i64,
    pub stream: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub start_pts_ms: f64,
    pub end_pts_ms: f64,
    pub frames: usize,
    pub snapshot: Option<String>,
}

/// Which windows a scan reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowFilter {
    pub stream: Option<String>,
    /// Windows ending at or after this wall time (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Windows starting before this wall time.
    pub until_ms: Option<i64>,
}

/// The window table of one data dir.
pub struct WindowStore {
    dir: PathBuf,
    path: PathBuf,
    conn: Connection,
}

impl WindowStore {
    /// Open (or create) the store in `dir`, creating `dir` (mode 0700) if needed.
    pub fn open(dir: &Path) -> Result<WindowStore> {
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
        let conn = Connection::open(&path)
            .map_err(|e| bad_dir(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .and_then(|_| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .map_err(|e| {
                bad_dir(format!(
                    "{} is not a usable Vigil store ({e})",
                    path.display()
                ))
            })?;
        Ok(WindowStore {
            dir: dir.to_path_buf(),
            path,
            conn,
        })
    }

    /// Open an existing store for reading (`vigil search`): a missing one is the user's
    /// mistake, not something to create.
    pub fn open_existing(dir: &Path) -> Result<WindowStore> {
        if !dir.join(DB_FILE).is_file() {
            return Err(PipelineError::usage(
                format!("no Vigil store in {} (no {DB_FILE})", dir.display()),
                "run `vigil watch … --clip DIR --prompt …` (or classify) first, or pass the --data-dir it used",
            ));
        }
        WindowStore::open(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str, e: rusqlite::Error) -> PipelineError {
        store_error(&self.path, what, e)
    }

    /// Store `windows` of `model` in one transaction; returns their row ids.
    pub fn insert(&mut self, model: &str, windows: &[NewWindow<'_>]) -> Result<Vec<i64>> {
        let path = self.path.clone();
        let err = |what: &str, e: rusqlite::Error| store_error(&path, what, e);
        let tx = self
            .conn
            .transaction()
            .map_err(|e| err("cannot begin", e))?;
        let mut ids = Vec::with_capacity(windows.len());
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO clip_windows (model, stream, start_ms, end_ms, start_pts_ms,
                     end_pts_ms, frames, dim, embedding, snapshot)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(|e| err("cannot store a window", e))?;
            let mut blob = Vec::new();
            for w in windows {
                encode_f16(w.embedding, &mut blob);
                st.execute(params![
                    model,
                    w.stream,
                    w.start_ms,
                    w.end_ms,
                    w.start_pts_ms,
                    w.end_pts_ms,
                    w.frames as i64,
                    w.embedding.len() as i64,
                    blob,
                    w.snapshot
                ])
                .map_err(|e| err("cannot store a window", e))?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(|e| err("cannot commit", e))?;
        Ok(ids)
    }

    /// Attach a snapshot path (relative to the data dir) to window `id`.
    pub fn set_snapshot(&self, id: i64, snapshot: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE clip_windows SET snapshot = ?1 WHERE id = ?2",
                params![snapshot, id],
            )
            .map_err(|e| self.err("cannot record a snapshot", e))?;
        Ok(())
    }

    /// Call `f` with every window of `model` that passes `filter`, its embedding decoded
    /// into a reused buffer (brute force: every row is read once).
    pub fn scan(
        &self,
        model: &str,
        filter: &WindowFilter,
        mut f: impl FnMut(WindowRow, &[f32]),
    ) -> Result<usize> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, stream, start_ms, end_ms, start_pts_ms, end_pts_ms, frames,
                        embedding, snapshot
                 FROM clip_windows
                 WHERE model = ?1 AND (?2 IS NULL OR stream = ?2)
                   AND (?3 IS NULL OR end_ms >= ?3) AND (?4 IS NULL OR start_ms < ?4)",
            )
            .map_err(|e| self.err("cannot search", e))?;
        let mut rows = st
            .query(params![
                model,
                filter.stream,
                filter.since_ms,
                filter.until_ms
            ])
            .map_err(|e| self.err("cannot search", e))?;
        let mut buf = Vec::new();
        let mut n = 0;
        while let Some(row) = rows.next().map_err(|e| self.err("cannot search", e))? {
            let read = || -> rusqlite::Result<WindowRow> {
                Ok(WindowRow {
                    id: row.get(0)?,
                    stream: row.get(1)?,
                    start_ms: row.get(2)?,
                    end_ms: row.get(3)?,
                    start_pts_ms: row.get(4)?,
                    end_pts_ms: row.get(5)?,
                    frames: row.get::<_, i64>(6)?.max(0) as usize,
                    snapshot: row.get(8)?,
                })
            };
            let w = read().map_err(|e| self.err("cannot read a window", e))?;
            let blob = row
                .get_ref(7)
                .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
                .map_err(|e| self.err("cannot read a window", e))?;
            decode_f16(blob, &mut buf);
            f(w, &buf);
            n += 1;
        }
        Ok(n)
    }

    /// The snapshot (relative to the data dir) of window `id` of `model`, if it has one.
    pub fn snapshot_of(&self, model: &str, id: i64) -> Result<Option<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT snapshot FROM clip_windows WHERE id = ?1 AND model = ?2")
            .map_err(|e| self.err("cannot read a window", e))?;
        let mut rows = st
            .query(params![id, model])
            .map_err(|e| self.err("cannot read a window", e))?;
        match rows
            .next()
            .map_err(|e| self.err("cannot read a window", e))?
        {
            Some(r) => r.get(0).map_err(|e| self.err("cannot read a window", e)),
            None => Ok(None),
        }
    }

    /// Delete the windows that ended before `cutoff_ms` (wall clock) and their snapshot
    /// files; returns how many windows went.
    pub fn prune(&mut self, cutoff_ms: i64) -> Result<usize> {
        let snaps: Vec<String> = {
            let mut st = self
                .conn
                .prepare(
                    "SELECT snapshot FROM clip_windows WHERE end_ms < ?1 AND snapshot IS NOT NULL",
                )
                .map_err(|e| self.err("cannot prune", e))?;
            let rows = st
                .query_map(params![cutoff_ms], |r| r.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                .map_err(|e| self.err("cannot prune", e))?;
            rows
        };
        let n = self
            .conn
            .execute(
                "DELETE FROM clip_windows WHERE end_ms < ?1",
                params![cutoff_ms],
            )
            .map_err(|e| self.err("cannot prune", e))?;
        for rel in snaps {
            // the rows are gone either way; a file already removed by hand is fine
            let _ = std::fs::remove_file(self.dir.join(rel));
        }
        Ok(n)
    }

    /// Windows stored per model fingerprint (to explain an empty search).
    pub fn models(&self) -> Result<Vec<(String, i64)>> {
        let mut st = self
            .conn
            .prepare("SELECT model, COUNT(*) FROM clip_windows GROUP BY model ORDER BY 2 DESC")
            .map_err(|e| self.err("cannot read", e))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err("cannot read", e))?;
        Ok(rows)
    }
}

fn store_error(path: &Path, what: &str, source: rusqlite::Error) -> PipelineError {
    PipelineError::Store {
        path: path.to_path_buf(),
        what: what.to_string(),
        source,
    }
}

/// `values` as little-endian IEEE half floats into `out` (replacing its contents).
pub fn encode_f16(values: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(values.len() * 2);
    for &v in values {
        out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
    }
}

/// Little-endian half floats into `out` (replacing its contents), converted in bulk
/// (F16C where the CPU has it).
pub fn decode_f16(bytes: &[u8], out: &mut Vec<f32>) {
    use half::slice::HalfFloatSliceExt;
    let n = bytes.len() / 2;
    out.clear();
    out.resize(n, 0.0);
    // the blob need not be 2-aligned: read the halves through a small aligned buffer
    let mut halves = [half::f16::ZERO; 64];
    for (src, dst) in bytes.chunks(128).zip(out.chunks_mut(64)) {
        let h = &mut halves[..dst.len()];
        for (x, b) in h.iter_mut().zip(src.chunks_exact(2)) {
            *x = half::f16::from_le_bytes([b[0], b[1]]);
        }
        h.convert_to_f32_slice(dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_round_trip_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut s = WindowStore::open(&data).unwrap();
        let e1 = [0.6f32, 0.8, 0.0];
        let e2 = [0.0f32, 0.0, 1.0];
        let w = |stream, t: i64, e| NewWindow {
            stream,
            start_ms: t,
            end_ms: t + 4000,
            start_pts_ms: 0.0,
            end_pts_ms: 4000.0,
            frames: 4,
            embedding: e,
            snapshot: None,
        };
        let ids = s
            .insert("m1", &[w("yard", 1000, &e1[..]), w("gate", 9000, &e2[..])])
            .unwrap();
        s.insert("m2", &[w("yard", 1000, &e2[..])]).unwrap();
        s.set_snapshot(ids[0], "snapshots/yard/1.jpg").unwrap();
        let mut seen = Vec::new();
        let n = s
            .scan("m1", &WindowFilter::default(), |r, e| {
                seen.push((r.stream, r.snapshot, e.to_vec()))
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen[0].0, "yard");
        assert_eq!(seen[0].1.as_deref(), Some("snapshots/yard/1.jpg"));
        // half precision: ~3 decimal digits
        for (a, b) in seen[0].2.iter().zip(e1) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        let only = |f: WindowFilter| {
            let mut v = Vec::new();
            s.scan("m1", &f, |r, _| v.push(r.stream)).unwrap();
            v
        };
        let gate = WindowFilter {
            stream: Some("gate".into()),
            ..Default::default()
        };
        assert_eq!(only(gate), ["gate"]);
        let late = WindowFilter {
            since_ms: Some(6000),
            ..Default::default()
        };
        assert_eq!(only(late), ["gate"]);
        assert_eq!(
            s.models().unwrap(),
            vec![("m1".into(), 2), ("m2".into(), 1)]
        );
        drop(s);
        // reopened: the rows are there (WAL committed)
        let s = WindowStore::open_existing(&data).unwrap();
        assert_eq!(
            s.scan("m2", &WindowFilter::default(), |_, _| {}).unwrap(),
            1
        );
        assert!(WindowStore::open_existing(&dir.path().join("none")).is_err());
    }
}
