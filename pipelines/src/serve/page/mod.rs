//! The live page at `/`: one tile per camera (name, status, snapshot about once a second,
//! top-3 labels with scores, a sparkline of the top score), the recent events, a form to
//! add a camera and a button to remove one — updated live from `/api/events`. Plain
//! HTML/CSS/JS embedded in the binary with `include_str!`: no CDN, no build step. With a
//! token, the page asks for it once and sends it as `Authorization: Bearer` (SSE is read
//! with `fetch`, since `EventSource` cannot send headers).

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// Only this origin's script, styles and images (snapshots arrive as blob: URLs).
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
