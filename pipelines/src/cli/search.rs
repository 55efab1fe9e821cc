//! `vigil search "a person falling" --clip DIR [--stream S] [--since T] [--until T]
//! [--top K] [--data-dir DIR]`: the query's text embedding against every window the
//! same model stored (brute-force cosine), best first — stream, time range, score and
//! snapshot path. JSON lines, or text on a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;
use serde::Serialize;

use super::clip::ClipKind;
use super::{cpu_threads, Outcome};
use crate::output::Format;
use crate::search::{self, parse_time, WindowFilter, WindowStore};
use crate::{PipelineError, Result};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for, e.g. "a person falling".
    pub query: String,
    /// The CLIP folder the windows were recorded with.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "xclip",
        required_unless_present = "xclip"
    )]
    pub clip: Option<PathBuf>,
    /// The X-CLIP folder the clips were recorded with (the query is matched without
    /// X-CLIP's video conditioning, which needs the clip's frames).
    #[arg(long, value_name = "DIR")]
    pub xclip: Option<PathBuf>,
    /// Only this stream.
    #[arg(long)]
    pub stream: Option<String>,
    /// Only windows ending at or after this time: RFC 3339 (2026-11-23T10:00:00Z), a
    /// date (2026-11-23, UTC) or an age (90s, 15m, 2h, 3d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only windows starting before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// How many results.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=search::MAX_TOP as i64))]
    pub top: u32,
    /// The data directory classify/watch stored windows in.
    #[arg(long, value_name = "DIR", default_value = "vigil-data")]
    pub data_dir: PathBuf,
    /// Threads for the text encoder (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Output format (default: jsonl; text on a terminal).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

#[derive(Serialize)]
struct Summary<'a> {
    query: &'a str,
    results: usize,
    searched: usize,
    model: &'a str,
}

pub fn run(a: &SearchArgs) -> Result<Outcome> {
    let (dir, kind) = match (&a.clip, &a.xclip) {
        (Some(d), _) => (d, ClipKind::Clip),
        (None, Some(d)) => (d, ClipKind::XClip),
        (None, None) => {
            return Err(PipelineError::usage(
                "no model to embed the query",
                "pass --clip DIR (the CLIP folder the windows were recorded with)",
            ))
        }
    };
    if a.query.trim().is_empty() {
        return Err(PipelineError::usage(
            "empty query",
            "say what to look for, e.g. vigil search \"a person falling\" --clip DIR",
        ));
    }
    let now = SystemTime::now();
    let time = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| parse_time(s, now))
            .transpose()
            .map_err(|why| PipelineError::usage(format!("--{flag}: {why}"), "e.g. --since 2h"))
    };
    let filter = WindowFilter {
        stream: a.stream.clone(),
        since_ms: time("since", &a.since)?,
        until_ms: time("until", &a.until)?,
    };
    let store = WindowStore::open_existing(&a.data_dir)?;
    let key = search::model_key(
        dir,
        match kind {
            ClipKind::Clip => "clip",
            ClipKind::XClip => "xclip",
        },
    )?;
    let query = search::QueryEncoder::load(dir, kind == ClipKind::XClip, cpu_threads(a.threads))?
        .embed(&a.query)?;
    let span = tracing::info_span!("search", store = %store.path().display());
    let _enter = span.enter();
    let (hits, searched) = search::search(&store, &key, &query, &filter, a.top as usize)?;
    if searched == 0 {
        let models = store.models()?;
        let others: i64 = models
            .iter()
            .filter(|(m, _)| *m != key)
            .map(|(_, n)| n)
            .sum();
        if others > 0 {
            super::say(&format!(
                "no windows of {} in {} ({others} windows of other models) — pass the --clip/--xclip folder they were recorded with",
                dir.display(),
                store.path().display()
            ));
        } else {
            super::say(&format!(
                "no stored windows match in {}",
                store.path().display()
            ));
        }
    }
    let tty = std::io::stdout().is_terminal();
    let format = a
        .format
        .unwrap_or(if tty { Format::Text } else { Format::Jsonl });
    let mut out = std::io::stdout().lock();
    let r = (|| -> std::io::Result<()> {
        for h in &hits {
            match format {
                Format::Jsonl => {
                    serde_json::to_writer(&mut out, h).map_err(std::io::Error::other)?;
                    writeln!(out)?;
                }
                Format::Text => {
                    write!(
                        out,
                        "{:>3}. {:.3}  {}  {} → {}  (pts {:.1}–{:.1} s, {} frames)",
                        h.rank,
                        h.score,
                        h.stream,
                        h.start,
                        h.end,
                        h.start_pts_ms / 1e3,
                        h.end_pts_ms / 1e3,
                        h.frames
                    )?;
                    if let Some(p) = &h.snapshot {
                        write!(out, "  {}", p.display())?;
                    }
                    writeln!(out)?;
                }
            }
        }
        if format == Format::Jsonl {
            let s = Summary {
                query: &a.query,
                results: hits.len(),
                searched,
                model: &key,
            };
            serde_json::to_writer(&mut out, &s).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        out.flush()
    })();
    r.map_err(|source| PipelineError::Output {
        target: "stdout".into(),
        source,
    })?;
    Ok(Outcome::default())
}
