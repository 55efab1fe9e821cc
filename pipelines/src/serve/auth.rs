//! Access rules of the sidecar: loopback by default, a bearer token for anything else.
//!
//! - [`check_listen`]: listening on a non-loopback address without a token is refused at
//!   start (the API can add cameras and read their frames).
//! - [`require_token`]: with a token, every `/api/…` and `/metrics` request needs
//!   `Authorization: Bearer <token>` (401 otherwise), compared in constant time
//!   ([`tokens_equal`]). `/healthz`, `/readyz` and the page's static files stay open (the
//!   page asks for the token and sends it with each API call).
//! - [`validate_stream_name`]: stream names are `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`: safe in
//!   URLs, MQTT topics, metric labels and file names.
//! - Request bodies are limited to [`MAX_BODY_BYTES`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;
use crate::{PipelineError, Result};

/// Largest request body accepted (a stream definition is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest stream name.
pub const MAX_NAME_LEN: usize = 64;

/// Refuse a non-loopback listen address without a token.
pub fn check_listen(addr: SocketAddr, token: Option<&str>) -> Result<()> {
    if !addr.ip().is_loopback() && token.is_none_or(str::is_empty) {
        return Err(PipelineError::usage(
            format!("refusing to listen on {addr} without a token: anyone who can reach it could add cameras and see their frames"),
            "pass --token (or token_file in vigil.toml), or listen on 127.0.0.1",
        ));
    }
    Ok(())
}

/// A token that is usable: at least 16 printable ASCII characters without spaces.
pub fn check_token(token: &str) -> Result<()> {
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PipelineError::usage(
            "the token must be at least 16 printable characters without spaces",
            "generate one with `head -c 24 /dev/urandom | base64`",
        ));
    }
    Ok(())
}

/// Equal in time that depends only on the lengths, not on where the bytes differ.
pub fn tokens_equal(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// `Ok` for a safe stream name, else why not.
pub fn validate_stream_name(name: &str) -> std::result::Result<(), String> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_first || !ok_rest {
        return Err(format!(
            "stream name {name:?} is not allowed: use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Paths that need the token.
fn protected(path: &str) -> bool {
    path == "/metrics" || path == "/api" || path.starts_with("/api/")
}

/// Middleware: with a token configured, protected paths need `Authorization: Bearer`.
pub async fn require_token(
    State(token): State<Option<Arc<str>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
    };
    if !protected(req.uri().path()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or(b"");
    if tokens_equal(given, token.as_bytes()) {
        return next.run(req).await;
    }
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token",
        "send `Authorization: Bearer <token>` (the token vigil serve was started with)",
    )
    .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_rules() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_listen(lo, None).is_ok());
        assert!(check_listen(lo6, None).is_ok());
        let e = check_listen(any, None).unwrap_err();
        assert!(
            e.is_user_error() && e.to_string().contains("--token"),
            "{e}"
        );
        assert!(check_listen(any, Some("")).is_err());
        assert!(check_listen(any, Some("0123456789abcdef")).is_ok());
        assert!(check_token("short").is_err());
        assert!(check_token("0123456789 abcdef").is_err());
    }

    #[test]
    fn token_compare() {
        assert!(tokens_equal(b"secret-token", b"secret-token"));
        assert!(!tokens_equal(b"secret-token", b"secret-tokem"));
        assert!(!tokens_equal(b"secret", b"secret-token"));
        assert!(!tokens_equal(b"", b"x"));
        assert!(tokens_equal(b"", b""));
    }

    #[test]
    fn stream_names() {
        for ok in ["yard", "cam-1", "Front_Door.2", "0"] {
            assert!(validate_stream_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "../etc",
            ".hidden",
            "a/b",
            "a b",
            "vigil/+",
            "#",
            "ä",
            long.as_str(),
            "-x",
        ] {
            assert!(validate_stream_name(bad).is_err(), "{bad}");
        }
        assert!(protected("/api/streams") && protected("/metrics") && protected("/api"));
        assert!(!protected("/") && !protected("/healthz") && !protected("/apix"));
    }
}
