//! # `vigil serve`: the surveillance sidecar
//!
//! Cameras are added and removed over an HTTP API while the service runs; other systems
//! follow their labels and start/end events over Server-Sent Events, MQTT and webhooks;
//! the events are kept in an embedded SQLite history; Prometheus scrapes `/metrics`; a
//! live page at `/` shows every camera.
//!
//! ```text
//!  runtime ──RuntimeEvent──▶ HubInput ─▶ Hub thread ─┬─ 1. Metrics (atomics)
//!  (streams, engine)                                 ├─ 2. Store (start/end committed)
//!     ▲                                              ├─ 3. Sinks: MqttSink, WebhookSink (try_send)
//!     │ StreamControl                                └─ 4. broadcast ─▶ SSE clients
//!  HTTP API (axum) ◀── clients, page, Prometheus
//! ```
//!
//! Main types: [`Service`] (assembles store, hub, sinks and the HTTP server around a
//! [`control::StreamControl`], on the runtime: [`control::RuntimeControl`]),
//! [`ServiceConfig`], [`config::ServeSettings`] (flags and `vigil.toml`),
//! [`record::Published`] (a record as published, its JSON as `vigil watch` writes it),
//! [`hub::Hub`], [`store::Store`], [`metrics::Metrics`], [`mqtt::MqttSink`],
//! [`crate::search::SearchIndex`] (text search when the service runs CLIP/X-CLIP),
//! [`webhook::WebhookSink`]. Modules: [`api`] (handlers, JSON errors), [`http`] (router,
//! server), [`sse`], [`auth`] (loopback/token rules, names), [`openapi`], [`page`].
//!
//! Like mini-redis, [`Service::serve`] takes a listener and a shutdown future, so tests
//! run the whole service in-process on `127.0.0.1:0`.

pub mod api;
pub mod auth;
pub mod config;
pub mod control;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod mqtt;
pub mod openapi;
pub mod page;
pub mod record;
pub mod run;
pub mod sse;
pub mod store;
pub mod webhook;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use vigil_engine::Labels;

use self::api::{AppInner, AppState};
use self::control::{StreamControl, StreamDef};
use self::hub::{Hub, HubInput, Sink};
use self::metrics::Metrics;
use self::mqtt::{MqttConfig, MqttSink};
use self::store::Store;
use self::webhook::{WebhookConfig, WebhookSink};
use crate::events::EventConfig;
use crate::search::{SearchIndex, WindowStore};
use crate::{PipelineError, Result};

/// How the service runs, independent of the engine.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Bearer token for `/api` and `/metrics`.
    pub token: Option<String>,
    pub max_streams: usize,
    /// Days of event history kept (0 = forever).
    pub retention_days: u32,
    /// Event thresholds of streams whose definition leaves them out.
    pub defaults: EventConfig,
    pub mqtt: Option<MqttConfig>,
    pub webhooks: Vec<WebhookConfig>,
    /// Streams declared in vigil.toml (`[[stream]]`): stored at start, the file winning.
    pub streams: Vec<StreamDef>,
    /// Records queued between the streams and the hub.
    pub hub_queue: usize,
    /// Records an SSE client may fall behind before it skips label/status records.
    pub sse_buffer: usize,
    /// Text search over the windows a CLIP/X-CLIP service stores (`GET /api/search`);
    /// `None` (MoViNet) answers 409.
    pub search: Option<SearchIndex>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            token: None,
            max_streams: 64,
            retention_days: 90,
            defaults: EventConfig::default(),
            mqtt: None,
            webhooks: Vec::new(),
            streams: Vec::new(),
            hub_queue: 4096,
            sse_buffer: 1024,
            search: None,
        }
    }
}

/// The assembled sidecar around a [`StreamControl`].
pub struct Service {
    state: Option<AppState>,
    hub: Arc<Hub>,
    input: Option<HubInput>,
    hub_thread: Option<JoinHandle<()>>,
    mqtt: Option<Arc<MqttSink>>,
    webhooks: Vec<Arc<WebhookSink>>,
    shutdown: watch::Sender<bool>,
    prune: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Open the store in `data_dir`, start the hub and the sinks. Must be called within a
    /// tokio runtime (the sinks are tasks).
    pub fn start(
        cfg: &ServiceConfig,
        data_dir: &Path,
        control: Arc<dyn StreamControl>,
        labels: Labels,
    ) -> Result<Service> {
        let store = Arc::new(Store::open(data_dir)?);
        seed_configured_streams(&store, &cfg.streams)?;
        let metrics = Arc::new(Metrics::new());
        let mqtt = cfg
            .mqtt
            .clone()
            .map(|m| Arc::new(MqttSink::start(m, metrics.clone())));
        let webhooks = cfg
            .webhooks
            .iter()
            .map(|w| {
                WebhookSink::start(w.clone(), metrics.clone())
                    .map(Arc::new)
                    .map_err(|e| PipelineError::usage(e, "check --webhook"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
        if let Some(m) = &mqtt {
            sinks.push(m.clone());
        }
        for w in &webhooks {
            sinks.push(w.clone());
        }
        let hub = Arc::new(Hub::new(
            store.clone(),
            metrics,
            labels,
            sinks,
            cfg.sse_buffer,
        ));
        let (input, hub_thread) = hub.spawn(cfg.hub_queue)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let token: Option<Arc<str>> = cfg.token.as_deref().map(Arc::from);
        let state = AppState(Arc::new(AppInner {
            control,
            hub: hub.clone(),
            defaults: cfg.defaults.clone(),
            max_streams: cfg.max_streams,
            admin: tokio::sync::Mutex::new(()),
            shutdown: shutdown_rx,
            token,
            openapi: openapi::document(cfg.token.is_some()).to_string(),
            search: cfg.search.clone(),
        }));
        let prune = (cfg.retention_days > 0).then(|| {
            let keep_ms = i64::from(cfg.retention_days) * 86_400_000;
            let store = store.clone();
            let windows = cfg.search.as_ref().map(|s| s.data_dir.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tick.tick().await;
                    let s = store.clone();
                    let cutoff = store::now_ms() - keep_ms;
                    match tokio::task::spawn_blocking(move || s.prune(cutoff)).await {
                        Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "history pruned"),
                        Ok(Err(e)) => tracing::error!("{e}"),
                        _ => {}
                    }
                    if let Some(dir) = windows.clone() {
                        let pruned = tokio::task::spawn_blocking(move || {
                            WindowStore::open(&dir).and_then(|mut w| w.prune(cutoff))
                        });
                        match pruned.await {
                            Ok(Ok(n)) if n > 0 => {
                                tracing::info!(deleted = n, "search windows pruned")
                            }
                            Ok(Err(e)) => tracing::error!("{e}"),
                            _ => {}
                        }
                    }
                }
            })
        });
        Ok(Service {
            state: Some(state),
            hub,
            input: Some(input),
            hub_thread: Some(hub_thread),
            mqtt,
            webhooks,
            shutdown,
            prune,
        })
    }

    /// Where the runtime sends its records (clone per producer). Drop every clone before
    /// [`Service::close`].
    pub fn records(&self) -> Result<HubInput> {
        self.input
            .clone()
            .ok_or_else(|| PipelineError::Internal("the service is closed".into()))
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn store(&self) -> &Arc<Store> {
        self.hub.store()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        self.hub.metrics()
    }

    /// Start the streams kept in the store (blocking: call before serving or from a
    /// blocking thread). A stream that fails to start stays stored and is reported.
    pub fn resume_streams(&self) -> Result<Vec<(String, Result<()>)>> {
        let state = self.state()?;
        let defs = self.store().streams()?;
        Ok(defs
            .into_iter()
            .map(|d| {
                let r = state.control.add(&d, &d.events(&state.defaults));
                match &r {
                    Ok(()) => tracing::info!(stream = %d.name, "stream resumed"),
                    Err(e) => tracing::error!(stream = %d.name, "cannot resume: {e}"),
                }
                (d.name, r)
            })
            .collect())
    }

    fn state(&self) -> Result<&AppState> {
        self.state
            .as_ref()
            .ok_or_else(|| PipelineError::Internal("the service is closed".into()))
    }

    /// The HTTP router (for tests that drive it without a socket).
    pub fn router(&self) -> Result<axum::Router> {
        Ok(http::router(self.state()?.clone()))
    }

    /// Serve HTTP on `listener` until `shutdown` resolves; SSE streams end then, and open
    /// requests finish.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let router = self.router()?;
        let flag = self.shutdown.clone();
        http::serve(listener, router, async move {
            shutdown.await;
            flag.send_replace(true);
        })
        .await
    }

    /// Flush and stop: drain the hub (the runtime must have dropped its [`HubInput`]s),
    /// publish MQTT `offline`, deliver queued webhooks (bounded), close the store.
    pub async fn close(mut self) -> Result<()> {
        self.shutdown.send_replace(true);
        if let Some(p) = self.prune.take() {
            p.abort();
        }
        self.state = None;
        self.input = None;
        if let Some(t) = self.hub_thread.take() {
            let joined = tokio::task::spawn_blocking(move || t.join());
            match tokio::time::timeout(Duration::from_secs(10), joined).await {
                Ok(Ok(Ok(()))) => {}
                Ok(_) => tracing::error!("the hub thread panicked"),
                Err(_) => tracing::error!(
                    "the hub did not drain within 10 s (is a record sender still alive?)"
                ),
            }
        }
        for w in &self.webhooks {
            w.shutdown(Duration::from_secs(5)).await;
        }
        if let Some(m) = &self.mqtt {
            m.shutdown(Duration::from_secs(3)).await;
        }
        let (hub, mqtt, webhooks) = (self.hub, self.mqtt, self.webhooks);
        drop((mqtt, webhooks));
        match Arc::try_unwrap(hub) {
            Ok(hub) => {
                let store = hub.store().clone();
                drop(hub);
                if let Ok(store) = Arc::try_unwrap(store) {
                    tokio::task::spawn_blocking(move || store.close())
                        .await
                        .map_err(|e| PipelineError::Internal(format!("store close: {e}")))??;
                }
            }
            Err(_) => tracing::debug!("store still shared at close; it closes when dropped"),
        }
        Ok(())
    }
}

/// Put vigil.toml's `[[stream]]`s in the store (the file wins over a stored stream of the
/// same name); stored streams that match are left as they are (they keep their place).
fn seed_configured_streams(store: &Store, configured: &[StreamDef]) -> Result<()> {
    if configured.is_empty() {
        return Ok(());
    }
    let stored = store.streams()?;
    for def in configured {
        match stored.iter().find(|d| d.name == def.name) {
            Some(d) if d == def => {}
            Some(_) => {
                tracing::info!(stream = %def.name, "vigil.toml overrides the stored stream");
                store.save_stream(def)?;
            }
            None => store.save_stream(def)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::Rate;

    fn def(name: &str, uri: &str, enter: Option<f32>) -> StreamDef {
        StreamDef {
            name: name.into(),
            uri: uri.into(),
            fps: Some(Rate::Fps(5.0)),
            enter,
            exit: None,
        }
    }

    #[test]
    fn configured_streams_are_stored_and_the_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save_stream(&def("api", "test:", None)).unwrap();
        store
            .save_stream(&def("yard", "test:pattern=snow", None))
            .unwrap();
        let file = [
            def("yard", "test:pattern=ball", Some(0.7)),
            def("gate", "test:", None),
        ];
        seed_configured_streams(&store, &file).unwrap();
        let stored = store.streams().unwrap();
        let names: Vec<&str> = stored.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(stored.len(), 3, "{names:?}");
        assert!(stored.contains(&def("api", "test:", None)));
        assert!(stored.contains(&file[0]), "the file's definition wins");
        assert!(stored.contains(&file[1]));
        // removed through the API, it comes back at the next start
        assert!(store.delete_stream("gate").unwrap());
        seed_configured_streams(&store, &file).unwrap();
        assert!(store.has_stream("gate").unwrap());
    }
}
