//! [`WebhookSink`]: POSTs each start/end event's JSON to a URL.
//!
//! The hub offers events with `try_send` on a bounded queue; a full queue drops the event
//! and counts it (`vigil_webhook_dropped_total`) — inference never waits for a receiver.
//! One worker per URL delivers in order: a 2xx is delivered; connection errors, timeouts,
//! 408, 429 and 5xx are retried with exponential backoff (0.5 s doubling, capped at
//! `max_backoff`) up to `max_attempts`; other 4xx are refused and not retried. Each POST
//! carries `X-Vigil-Event-Id` (the history id) so a receiver can drop the duplicates a
//! retry may cause. Plain HTTP only (no TLS stack is built in).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use tokio::sync::{mpsc, watch};

use vigil_engine::Labels;

use super::hub::Sink;
use super::metrics::Metrics;
use super::record::{Published, SseKind};
use crate::runtime::RuntimeEvent;

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: String,
    /// Events waiting for delivery before new ones are dropped.
    pub queue: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_backoff: Duration,
}

impl WebhookConfig {
    /// A receiver at `url` (`http://host[:port]/path`) with default queue and retries.
    pub fn new(url: &str) -> Result<WebhookConfig, String> {
        if url.starts_with("https://") {
            return Err(format!(
                "{url}: TLS is not built in; use http:// (e.g. a local relay)"
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: not an http:// URL"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("{url}: no host"));
        }
        reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        Ok(WebhookConfig {
            url: url.to_string(),
            queue: 256,
            timeout: Duration::from_secs(5),
            max_attempts: 6,
            max_backoff: Duration::from_secs(30),
        })
    }
}

/// Events waiting for delivery: (history id, JSON).
type Queue = mpsc::Sender<(Option<i64>, Arc<str>)>;

/// Delivers events to one URL.
pub struct WebhookSink {
    tx: parking_lot::Mutex<Option<Queue>>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    worker: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl WebhookSink {
    /// Start the worker on the current tokio runtime.
    pub fn start(cfg: WebhookConfig, metrics: Arc<Metrics>) -> Result<WebhookSink, String> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let worker = tokio::spawn(deliver_all(cfg, client, rx, stop_rx, metrics.clone()));
        Ok(WebhookSink {
            tx: parking_lot::Mutex::new(Some(tx)),
            metrics,
            stop,
            worker: parking_lot::Mutex::new(Some(worker)),
        })
    }

    /// Deliver what is queued for at most `limit`, then stop (the rest is counted failed).
    pub async fn shutdown(&self, limit: Duration) {
        self.tx.lock().take();
        let worker = self.worker.lock().take();
        if let Some(mut w) = worker {
            if tokio::time::timeout(limit, &mut w).await.is_err() {
                self.stop.send_replace(true);
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut w).await;
                w.abort();
            }
        }
    }
}

impl Sink for WebhookSink {
    fn offer(&self, _ev: &RuntimeEvent, published: &Arc<Published>, _labels: &Labels) {
        if !matches!(published.kind, SseKind::Start | SseKind::End) {
            return;
        }
        let guard = self.tx.lock();
        let Some(tx) = guard.as_ref() else { return };
        match tx.try_send((published.id, published.json.clone())) {
            Ok(()) => self.metrics.webhook_queued.add(1),
            Err(_) => self.metrics.webhook_dropped.inc(),
        }
    }
}

async fn deliver_all(
    cfg: WebhookConfig,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<(Option<i64>, Arc<str>)>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let span = tracing::info_span!("webhook", url = %cfg.url);
    while let Some((id, body)) = rx.recv().await {
        metrics.webhook_queued.add(-1);
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            let mut req = client
                .post(&cfg.url)
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
            if let Some(id) = id {
                req = req.header("x-vigil-event-id", id.to_string());
            }
            let retry = match req.send().await {
                Ok(r) if r.status().is_success() => {
                    metrics.webhook_delivered.inc();
                    break;
                }
                Ok(r) => {
                    let s = r.status();
                    let transient = s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429;
                    if !transient {
                        span.in_scope(|| {
                            tracing::warn!(
                                status = s.as_u16(),
                                "webhook refused an event; not retried"
                            )
                        });
                        metrics.webhook_failed.inc();
                        break;
                    }
                    format!("HTTP {s}")
                }
                Err(e) => e.to_string(),
            };
            if attempt >= cfg.max_attempts {
                span.in_scope(|| {
                    tracing::warn!(attempts = attempt, "webhook gave up on an event: {retry}")
                });
                metrics.webhook_failed.inc();
                break;
            }
            span.in_scope(|| {
                tracing::debug!(attempt, "webhook failed ({retry}); retrying in {backoff:?}")
            });
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {
                    metrics.webhook_failed.inc();
                    return;
                }
            }
            backoff = (backoff * 2).min(cfg.max_backoff);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(WebhookConfig::new("http://127.0.0.1:9000/hook").is_ok());
        for bad in ["https://x/hook", "ftp://x", "http://", "http:///x", "x"] {
            assert!(WebhookConfig::new(bad).is_err(), "{bad}");
        }
    }
}
