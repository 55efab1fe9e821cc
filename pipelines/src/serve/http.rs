//! The HTTP server: [`router`] (every route of the sidecar) and [`serve`], which runs it on
//! a listener until a shutdown future resolves — tests bind `127.0.0.1:0` and run it
//! in-process. Every error response is JSON (`{"error","hint"}`), including the ones axum
//! produces itself for a malformed path or query ([`json_errors`]).

use std::future::Future;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::api::{self, ApiError, AppState};
use super::auth::{self, MAX_BODY_BYTES};
use super::{page, sse};
use crate::{PipelineError, Result};

/// Every route of `vigil serve`.
pub fn router(state: AppState) -> Router {
    let token = state.token.clone();
    Router::new()
        .route("/", get(page::index))
        .route("/page/app.js", get(page::script))
        .route("/page/style.css", get(page::style))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/openapi.json", get(api::openapi))
        .route("/api/streams", get(api::list_streams).post(api::add_stream))
        .route(
            "/api/streams/{name}",
            get(api::get_stream).delete(api::delete_stream),
        )
        .route("/api/streams/{name}/snapshot.jpg", get(api::snapshot))
        .route("/api/events", get(sse::events))
        .route("/api/events/history", get(api::history))
        .route("/api/search", get(api::search))
        .route("/api/windows/{id}/snapshot.jpg", get(api::window_snapshot))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(token, auth::require_token))
        .layer(middleware::from_fn(trace_request))
        .with_state(state)
}

/// Serve `router` on `listener` until `shutdown` resolves, then finish open requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| PipelineError::Internal(format!("HTTP server: {e}")))
}

/// Turn axum's plain-text rejections (bad path encoding, wrong content…) into JSON errors.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let error = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = ApiError::new(
        status,
        error,
        "GET /api/openapi.json describes every endpoint",
    )
    .into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// One debug line per request with its status and duration; nosniff on everything.
async fn trace_request(req: Request<Body>, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t0 = Instant::now();
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let status = resp.status();
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(%method, %path, status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), ms = t0.elapsed().as_millis() as u64, "request");
    }
    resp
}
