//! `GET /api/events`: the live records as Server-Sent Events.
//!
//! Each message's `event:` is `label`, `start`, `end` or `status` and its `data:` the
//! record's JSON as `vigil watch` writes it; start/end events carry their history row as
//! `id:`. Filters: `?stream=NAME` and `?kind=start,end`. A client that reconnects with
//! `Last-Event-ID` first gets the start/end events it missed, from the store; a client that
//! falls behind the live feed skips label/status records (counted in
//! `vigil_sse_lagged_total`) but gets every start/end from the store, in order. The stream
//! ends when the service shuts down, so a graceful shutdown never waits on a client.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use super::api::{blocking, ApiError, AppState};
use super::auth::validate_stream_name;
use super::record::{Published, SseKinds};
use super::store::StoredEvent;

/// Start/end events fetched from the store per catch-up query.
const CATCH_UP_BATCH: usize = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct EventsParams {
    pub stream: Option<String>,
    pub kind: Option<String>,
}

const EVENTS_HINT: &str = "filters: ?stream=NAME&kind=label,start,end,status";

/// Counts connected clients for as long as a feed lives.
struct ClientGuard(AppState);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.hub.metrics().sse_clients.add(-1);
    }
}

/// One client's position in the feed.
struct Feed {
    app: AppState,
    rx: broadcast::Receiver<Arc<Published>>,
    stream: Option<String>,
    kinds: SseKinds,
    /// Highest start/end id sent (or known to the client).
    last_id: i64,
    backlog: VecDeque<StoredEvent>,
    shutdown: watch::Receiver<bool>,
    _client: ClientGuard,
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if e.id > self.last_id {
                    self.last_id = e.id;
                    return Some(stored_event(&e));
                }
                continue;
            }
            if *self.shutdown.borrow() {
                return None;
            }
            let r = tokio::select! {
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        return None;
                    }
                    continue;
                }
                r = self.rx.recv() => r,
            };
            match r {
                Ok(p) => {
                    if !self.kinds.contains(p.kind)
                        || self.stream.as_deref().is_some_and(|s| s != &*p.stream)
                    {
                        continue;
                    }
                    if let Some(id) = p.id {
                        if id <= self.last_id {
                            continue;
                        }
                        self.last_id = id;
                    }
                    return Some(published_event(&p));
                }
                Err(RecvError::Lagged(n)) => {
                    self.app.hub.metrics().sse_lagged.inc();
                    tracing::debug!(missed = n, "SSE client lagged; catching up from the store");
                    self.catch_up().await;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Queue the stored start/end events after `last_id` that match the filters.
    async fn catch_up(&mut self) {
        let store = self.app.hub.store().clone();
        let (after, stream, kinds) = (self.last_id, self.stream.clone(), self.kinds);
        match blocking(move || store.events_after(after, stream.as_deref(), kinds, CATCH_UP_BATCH))
            .await
        {
            Ok(Ok(events)) => self.backlog.extend(events),
            Ok(Err(e)) => tracing::error!("SSE catch-up: {e}"),
            Err(e) => tracing::error!("SSE catch-up: {}", e.error),
        }
    }
}

fn published_event(p: &Published) -> Event {
    let ev = Event::default().event(p.kind.as_str()).data(&*p.json);
    match p.id {
        Some(id) => ev.id(id.to_string()),
        None => ev,
    }
}

/// A stored event: the same line the live feed sent for it.
fn stored_event(e: &StoredEvent) -> Event {
    Event::default()
        .event(e.kind().as_str())
        .data(&e.json)
        .id(e.id.to_string())
}

pub async fn events(
    State(app): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text(), EVENTS_HINT))?;
    let kinds = match params.kind.as_deref().filter(|k| !k.is_empty()) {
        None => SseKinds::ALL,
        Some(k) => SseKinds::parse(k)
            .map_err(|e| ApiError::bad_request(format!("kind: {e}"), EVENTS_HINT))?,
    };
    let stream = params.stream.filter(|s| !s.is_empty());
    if let Some(s) = &stream {
        validate_stream_name(s).map_err(|e| ApiError::bad_request(e, EVENTS_HINT))?;
    }
    let resume_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    // subscribe first, then look at the store: nothing falls between the two
    let rx = app.hub.subscribe();
    let store = app.hub.store().clone();
    let last_id = match resume_from {
        Some(id) => id,
        None => blocking(move || store.last_event_id())
            .await?
            .map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    e.to_string(),
                    "see the service log",
                )
            })?,
    };
    app.hub.metrics().sse_clients.add(1);
    let mut feed = Feed {
        app: app.clone(),
        rx,
        stream,
        kinds,
        last_id,
        backlog: VecDeque::new(),
        shutdown: app.shutdown.clone(),
        _client: ClientGuard(app.clone()),
    };
    if resume_from.is_some() {
        feed.catch_up().await;
    }
    let events = stream::unfold(feed, |mut feed| async move {
        feed.next()
            .await
            .map(|ev| (Ok::<Event, Infallible>(ev), feed))
    });
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // reverse proxies must not buffer the stream
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}
