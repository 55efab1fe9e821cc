//! The JSON API handlers of `vigil serve` and their shared [`AppState`].
//!
//! Every error is `{"error": "...", "hint": "..."}` ([`ApiError`]) with a fitting status:
//! 400 bad body/URI/query, 401 no token, 404 unknown stream or path, 405 wrong method,
//! 409 duplicate name or too many streams (or text search on a service without a CLIP
//! model), 413 body too large, 503 not ready (`/readyz`),
//! 500 internal. A stream without a frame yet has no snapshot: 404 with `Retry-After`. The runtime ([`StreamControl`]) is called on blocking threads; adds
//! and removes are serialized so "is the name free?" and "add it" are one step.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tokio::sync::watch;

use super::auth::{validate_stream_name, MAX_BODY_BYTES};
use super::control::{StreamControl, StreamDef};
use super::hub::Hub;
use super::store::{parse_time, HistoryQuery, MAX_HISTORY_LIMIT};
use crate::events::EventConfig;
use crate::resample::Rate;
use crate::runtime::StreamInfo;
use crate::search::{self as window_search, SearchIndex, WindowFilter};
use crate::source::{SourceKind, SourceSpec};
use crate::PipelineError;

/// Default `limit` of a history query.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// A JSON error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub hint: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            hint: hint.into(),
        }
    }

    pub fn bad_request(error: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, hint)
    }

    fn no_stream(name: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no stream named {name:?}"),
            "GET /api/streams lists the streams",
        )
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
            "see the service log; retry later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "hint": self.hint });
        (self.status, Json(body)).into_response()
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> ApiError {
        if let PipelineError::DuplicateStream { name } = &e {
            return ApiError::new(
                StatusCode::CONFLICT,
                format!("a stream named {name:?} already exists"),
                "pick another name, or DELETE /api/streams/{name} first",
            );
        }
        if let PipelineError::UnknownStream { name } = &e {
            return ApiError::no_stream(name);
        }
        if e.is_user_error() {
            let msg = e.to_string();
            match msg.split_once(" — ") {
                Some((what, hint)) => ApiError::bad_request(what, hint),
                None => ApiError::bad_request(msg, "check the request"),
            }
        } else {
            ApiError::internal(e)
        }
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

pub struct AppInner {
    pub control: Arc<dyn StreamControl>,
    pub hub: Arc<Hub>,
    /// Event thresholds a stream gets when its definition leaves them out.
    pub defaults: EventConfig,
    pub max_streams: usize,
    /// Serializes adds and removes.
    pub admin: tokio::sync::Mutex<()>,
    /// `true` once the service shuts down: SSE streams end, `/readyz` says 503.
    pub shutdown: watch::Receiver<bool>,
    pub token: Option<Arc<str>>,
    pub openapi: String,
    /// Text search (CLIP/X-CLIP services only).
    pub search: Option<SearchIndex>,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// Run `f` on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)
}

pub async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

pub async fn readyz(State(app): State<AppState>) -> Response {
    let control = app.control.clone();
    let ready = blocking(move || control.ready()).await.unwrap_or(false);
    if *app.shutdown.borrow() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
            "the service is draining its streams",
        )
        .into_response();
    }
    if ready {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the engine is not running yet",
            "the model is loading; retry in a moment",
        )
        .into_response()
    }
}

pub async fn list_streams(State(app): State<AppState>) -> Result<Response, ApiError> {
    let control = app.control.clone();
    let streams: Vec<StreamInfo> = blocking(move || control.streams()).await?;
    Ok(Json(streams).into_response())
}

pub async fn get_stream(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let control = app.control.clone();
    let n = name.clone();
    match blocking(move || control.stream(&n)).await? {
        Some(info) => Ok(Json(info).into_response()),
        None => Err(ApiError::no_stream(&name)),
    }
}

/// The body of `POST /api/streams`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewStream {
    name: String,
    uri: String,
    #[serde(default)]
    fps: Option<serde_json::Value>,
    #[serde(default)]
    enter: Option<f64>,
    #[serde(default)]
    exit: Option<f64>,
}

const NEW_STREAM_HINT: &str = r#"send {"name":"yard","uri":"rtsp://…"} with optional "fps" (number or "native"), "enter" and "exit" (0 <= exit < enter <= 1)"#;

/// Validate a stream definition from a request body.
pub fn parse_new_stream(body: &[u8], defaults: &EventConfig) -> Result<StreamDef, ApiError> {
    let req: NewStream = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("bad stream definition: {e}"), NEW_STREAM_HINT)
    })?;
    validate_stream_name(&req.name).map_err(|e| ApiError::bad_request(e, NEW_STREAM_HINT))?;
    let spec = SourceSpec::parse(&req.uri).map_err(ApiError::from)?;
    if matches!(spec.kind, SourceKind::Fixture { .. }) {
        return Err(ApiError::bad_request(
            format!("{:?} is a fixture, not a stream", req.uri),
            "use `vigil classify` for fixtures; streams are rtsp://, files, v4l2://, test: or gst:",
        ));
    }
    let fps = match &req.fps {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("fps {other} is neither a number nor \"native\""),
                NEW_STREAM_HINT,
            ))
        }
    };
    let fps = fps
        .map(|s| s.parse::<Rate>())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("fps: {e}"), NEW_STREAM_HINT))?;
    let in_unit = |v: Option<f64>, what: &str| -> Result<Option<f32>, ApiError> {
        match v {
            Some(x) if !(0.0..=1.0).contains(&x) => Err(ApiError::bad_request(
                format!("{what} {x} is outside [0, 1]"),
                NEW_STREAM_HINT,
            )),
            v => Ok(v.map(|x| x as f32)),
        }
    };
    let (enter, exit) = (in_unit(req.enter, "enter")?, in_unit(req.exit, "exit")?);
    EventConfig {
        enter: enter.unwrap_or(defaults.enter),
        exit: exit.unwrap_or(defaults.exit),
        ..defaults.clone()
    }
    .validate()
    .map_err(|e| ApiError::bad_request(e, NEW_STREAM_HINT))?;
    Ok(StreamDef {
        name: req.name,
        uri: req.uri,
        fps,
        enter,
        exit,
    })
}

pub async fn add_stream(State(app): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY_BYTES} bytes"),
                "a stream definition is a small JSON object",
            )
        })?;
    let def = parse_new_stream(&bytes, &app.defaults)?;
    let _admin = app.admin.lock().await;
    let (control, store) = (app.control.clone(), app.hub.store().clone());
    let max = app.max_streams;
    let events = def.events(&app.defaults);
    let d = def.clone();
    let info = blocking(move || -> Result<StreamInfo, ApiError> {
        if control.stream(&d.name).is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("a stream named {:?} already exists", d.name),
                "pick another name, or DELETE /api/streams/{name} first",
            ));
        }
        if control.streams().len() >= max {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("the service already runs its maximum of {max} streams"),
                "remove a stream, or raise max_streams in vigil.toml",
            ));
        }
        control.add(&d, &events)?;
        if let Err(e) = store.save_stream(&d) {
            // not persisted means not added: a restart would silently lose it
            let _ = control.remove(&d.name);
            return Err(ApiError::internal(e));
        }
        control
            .stream(&d.name)
            .ok_or_else(|| ApiError::internal("the stream vanished right after it was added"))
    })
    .await??;
    tracing::info!(stream = %def.name, uri = %info.uri, "stream added");
    let mut resp = (StatusCode::CREATED, Json(info)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/streams/{}", def.name)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

pub async fn delete_stream(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let _admin = app.admin.lock().await;
    let (control, store) = (app.control.clone(), app.hub.store().clone());
    let n = name.clone();
    let removed = blocking(move || -> Result<bool, ApiError> {
        let running = control.remove(&n)?;
        let stored = store.delete_stream(&n).map_err(ApiError::internal)?;
        Ok(running || stored)
    })
    .await??;
    if !removed {
        return Err(ApiError::no_stream(&name));
    }
    // the runtime publishes the `removed` status and ends open events itself
    tracing::info!(stream = %name, "stream removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn snapshot(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let control = app.control.clone();
    let n = name.clone();
    let jpeg = blocking(move || -> Result<Option<Vec<u8>>, ApiError> {
        if control.stream(&n).is_none() {
            return Err(ApiError::no_stream(&n));
        }
        control.snapshot_jpeg(&n).map_err(ApiError::from)
    })
    .await??;
    match jpeg {
        Some(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response()),
        None => {
            // 404 (not 503): the service is fine, this resource does not exist yet
            let mut resp = ApiError::new(
                StatusCode::NOT_FOUND,
                format!("stream {name:?} has not delivered a frame yet"),
                "retry when its status is connected",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(resp)
        }
    }
}

/// Query of `GET /api/events/history`; strings so that errors name the parameter.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryParams {
    pub stream: Option<String>,
    pub label: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
}

const HISTORY_HINT: &str = "since/until are RFC 3339 times (2026-11-23T10:00:00Z) or milliseconds since the Unix epoch; limit is 1 to 10000";

impl HistoryParams {
    pub fn to_query(&self) -> Result<HistoryQuery, ApiError> {
        let time = |v: &Option<String>, what: &str| -> Result<Option<i64>, ApiError> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(parse_time)
                .transpose()
                .map_err(|e| ApiError::bad_request(format!("{what}: {e}"), HISTORY_HINT))
        };
        let limit = match self.limit.as_deref().filter(|s| !s.is_empty()) {
            None => DEFAULT_HISTORY_LIMIT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(
                        format!("limit {s:?} is not a number from 1 to {MAX_HISTORY_LIMIT}"),
                        HISTORY_HINT,
                    ))
                }
            },
        };
        Ok(HistoryQuery {
            stream: self.stream.clone().filter(|s| !s.is_empty()),
            label: self.label.clone().filter(|s| !s.is_empty()),
            since_ms: time(&self.since, "since")?,
            until_ms: time(&self.until, "until")?,
            limit,
        })
    }
}

pub async fn history(
    State(app): State<AppState>,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text(), HISTORY_HINT))?;
    let q = params.to_query()?;
    let store = app.hub.store().clone();
    let events = blocking(move || store.history(&q))
        .await?
        .map_err(ApiError::internal)?;
    Ok(Json(events).into_response())
}

/// Default `top` of a search.
pub const DEFAULT_SEARCH_TOP: usize = 10;
/// Longest query accepted (CLIP reads 77 tokens at most; a longer text is cut there).
pub const MAX_QUERY_CHARS: usize = 1000;

/// Query of `GET /api/search`; strings so that errors name the parameter.
#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    pub q: Option<String>,
    pub stream: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub top: Option<String>,
}

const SEARCH_HINT: &str = "GET /api/search?q=a+person+falling with optional stream, since/until (RFC 3339, ms since the Unix epoch, a date or an age: 15m, 2h, 3d) and top (1 to 1000)";

/// One result of `GET /api/search`.
#[derive(Debug, serde::Serialize)]
pub struct SearchHit {
    pub rank: usize,
    pub score: f32,
    pub stream: String,
    pub start: String,
    pub end: String,
    pub start_pts_ms: f64,
    pub end_pts_ms: f64,
    pub frames: usize,
    /// `/api/windows/{id}/snapshot.jpg`, when the window has a stored frame.
    pub snapshot: Option<String>,
}

/// The answer of `GET /api/search`.
#[derive(Debug, serde::Serialize)]
pub struct SearchResults {
    pub query: String,
    /// Fingerprint of the model the windows were embedded with.
    pub model: String,
    /// Windows compared.
    pub searched: usize,
    pub results: Vec<SearchHit>,
}

impl SearchParams {
    /// The query text, filter and top, validated.
    pub fn to_query(&self) -> Result<(String, WindowFilter, usize), ApiError> {
        let q = self.q.as_deref().map(str::trim).unwrap_or("");
        if q.is_empty() {
            return Err(ApiError::bad_request("missing or empty q", SEARCH_HINT));
        }
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::bad_request(
                format!("q is longer than {MAX_QUERY_CHARS} characters"),
                "describe what to find in a sentence",
            ));
        }
        let now = std::time::SystemTime::now();
        let time = |v: &Option<String>, what: &str| -> Result<Option<i64>, ApiError> {
            let Some(s) = v.as_deref().filter(|s| !s.is_empty()) else {
                return Ok(None);
            };
            parse_time(s)
                .or_else(|_| window_search::parse_time(s, now))
                .map(Some)
                .map_err(|e| ApiError::bad_request(format!("{what}: {e}"), SEARCH_HINT))
        };
        let top = match self.top.as_deref().filter(|s| !s.is_empty()) {
            None => DEFAULT_SEARCH_TOP,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=window_search::MAX_TOP).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(
                        format!(
                            "top {s:?} is not a number from 1 to {}",
                            window_search::MAX_TOP
                        ),
                        SEARCH_HINT,
                    ))
                }
            },
        };
        let filter = WindowFilter {
            stream: self.stream.clone().filter(|s| !s.is_empty()),
            since_ms: time(&self.since, "since")?,
            until_ms: time(&self.until, "until")?,
        };
        Ok((q.to_string(), filter, top))
    }
}

/// The search index, or 409: this service runs no CLIP model.
fn search_index(app: &AppState) -> Result<SearchIndex, ApiError> {
    app.search.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "text search needs a CLIP or X-CLIP model; this service runs MoViNet",
            "start vigil serve with --clip DIR (or --xclip DIR) and --prompt/--prompts: its streams' windows are then stored and searchable",
        )
    })
}

pub async fn search(
    State(app): State<AppState>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text(), SEARCH_HINT))?;
    let index = search_index(&app)?;
    let (q, filter, top) = params.to_query()?;
    let text = q.clone();
    let (hits, searched) = blocking(move || index.query(&text, &filter, top))
        .await?
        .map_err(ApiError::from)?;
    let model = app
        .search
        .as_ref()
        .map(|s| s.model_key.clone())
        .unwrap_or_default();
    let results = hits
        .into_iter()
        .map(|h| SearchHit {
            snapshot: h
                .snapshot
                .is_some()
                .then(|| format!("/api/windows/{}/snapshot.jpg", h.id)),
            rank: h.rank,
            score: h.score,
            stream: h.stream,
            start: h.start,
            end: h.end,
            start_pts_ms: h.start_pts_ms,
            end_pts_ms: h.end_pts_ms,
            frames: h.frames,
        })
        .collect();
    Ok(Json(SearchResults {
        query: q,
        model,
        searched,
        results,
    })
    .into_response())
}

/// `GET /api/windows/{id}/snapshot.jpg`: the stored frame of a search result.
pub async fn window_snapshot(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let index = search_index(&app)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            format!("window id {id:?} is not a number"),
            "use the snapshot links GET /api/search returns",
        )
    })?;
    let jpeg = blocking(move || -> Result<Option<Vec<u8>>, ApiError> {
        match index.snapshot(id).map_err(ApiError::from)? {
            // a file pruned or removed by hand is as gone as its row
            Some(path) => Ok(std::fs::read(path).ok()),
            None => Ok(None),
        }
    })
    .await??;
    match jpeg {
        Some(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "max-age=86400"),
            ],
            bytes,
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no stored snapshot for window {id}"),
            "use the snapshot links GET /api/search returns; old windows are pruned after retention_days",
        )),
    }
}

pub async fn metrics(State(app): State<AppState>) -> Result<Response, ApiError> {
    let control = app.control.clone();
    let (streams, engine) = blocking(move || (control.streams(), control.engine_metrics())).await?;
    let text = app.hub.metrics().render(&streams, engine.as_ref());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub async fn openapi(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.openapi.clone(),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such path",
        "GET /api/openapi.json describes every endpoint",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this path",
        "GET /api/openapi.json lists each path's methods",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_stream_validation() {
        let d = EventConfig::default();
        let ok = parse_new_stream(
            br#"{"name":"yard","uri":"test:","fps":"native","enter":0.7}"#,
            &d,
        )
        .unwrap();
        assert_eq!(ok.fps, Some(Rate::Native));
        assert_eq!(ok.enter, Some(0.7));
        let ok = parse_new_stream(br#"{"name":"y","uri":"test:","fps":2.5}"#, &d).unwrap();
        assert_eq!(ok.fps, Some(Rate::Fps(2.5)));
        for bad in [
            &br#"{"name":"yard"}"#[..],
            br#"{"name":"../x","uri":"test:"}"#,
            br#"{"name":"y","uri":"test:","fsp":5}"#,
            br#"{"name":"y","uri":"test:","fps":-1}"#,
            br#"{"name":"y","uri":"test:","fps":[1]}"#,
            br#"{"name":"y","uri":"test:","enter":0.2,"exit":0.5}"#,
            br#"{"name":"y","uri":"test:","enter":7}"#,
            br#"{"name":"y","uri":""}"#,
            b"not json",
        ] {
            let e = parse_new_stream(bad, &d).unwrap_err();
            assert_eq!(
                e.status,
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert!(!e.hint.is_empty());
        }
    }

    #[test]
    fn history_params() {
        let p = HistoryParams {
            since: Some("2026-01-01T00:00:00Z".into()),
            limit: Some("5".into()),
            ..Default::default()
        };
        let q = p.to_query().unwrap();
        assert_eq!(q.limit, 5);
        assert!(q.since_ms.is_some());
        for bad in [
            HistoryParams {
                limit: Some("0".into()),
                ..Default::default()
            },
            HistoryParams {
                limit: Some("x".into()),
                ..Default::default()
            },
            HistoryParams {
                until: Some("tomorrow".into()),
                ..Default::default()
            },
        ] {
            assert_eq!(bad.to_query().unwrap_err().status, StatusCode::BAD_REQUEST);
        }
    }
}
