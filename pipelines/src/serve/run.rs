//! [`run`]: `vigil serve` from a loaded engine to exit — start the runtime and the
//! service, resume the stored streams, serve HTTP until SIGINT/SIGTERM, then stop in order:
//! stop accepting requests (SSE streams end), drain the runtime (open events end with
//! reason `shutdown`, every GStreamer pipeline goes to Null), let the hub store and
//! publish the last records, publish MQTT `offline`, deliver queued webhooks (bounded),
//! close the store. With a CLIP or X-CLIP analyzer a [`Recorder`] also stores every
//! stream's window embeddings (and a JPEG of each window's newest frame) in the data dir
//! for `GET /api/search`. The binary only parses flags and maps the result to an exit
//! code.

use std::sync::Arc;
use std::time::Duration;

use vigil_engine::Labels;

use super::config::ServeSettings;
use super::control::RuntimeControl;
use super::hub::HubInput;
use super::Service;
use crate::analyzer::Analyzer;
use crate::resample::Rate;
use crate::runtime::{
    Overflow, Runtime, RuntimeOptions, Subscription, SubscriptionOptions, WindowOptions,
};
use crate::search::{Recorder, SearchIndex, WindowStore};
use crate::{PipelineError, Result};

/// Run the sidecar until a signal on `analyzer` (MoViNet, or CLIP/X-CLIP: then every
/// stream's windows are also stored for `GET /api/search`); `default_rate` is the
/// model's training rate (CLIP: its sampling rate).
pub fn run(
    settings: ServeSettings,
    analyzer: Analyzer,
    labels: Labels,
    default_rate: Rate,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vigil-serve")
        .enable_all()
        .build()
        .map_err(|e| PipelineError::Internal(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(serve(settings, analyzer, labels, default_rate))
}

async fn serve(
    mut settings: ServeSettings,
    analyzer: Analyzer,
    labels: Labels,
    default_rate: Rate,
) -> Result<()> {
    // bind first: a taken port fails before anything starts
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| {
            PipelineError::usage(
                format!("cannot listen on {}: {e}", settings.listen),
                "pick another --listen address, or stop what uses this one",
            )
        })?;
    let addr = listener.local_addr().unwrap_or(settings.listen);
    // CLIP family: window embeddings go to the data dir's store, queries share the model
    let window_store = match analyzer.query_encoder() {
        Some(encoder) => {
            let index = SearchIndex::new(encoder, &settings.data_dir)?;
            let store = WindowStore::open(&settings.data_dir)?;
            let key = index.model_key.clone();
            settings.service.search = Some(index);
            Some((store, key))
        }
        None => None,
    };
    let labels = analyzer.labels().unwrap_or(labels);
    let runtime = Runtime::start_analyzer(
        analyzer,
        RuntimeOptions {
            labels: Some(labels.clone()),
            top_k: 5,
            stats_interval: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    )?;
    let control = Arc::new(RuntimeControl::new(runtime.clone(), default_rate));
    let service = Service::start(
        &settings.service,
        &settings.data_dir,
        control.clone(),
        labels,
    )?;
    let subscription = runtime.subscribe(SubscriptionOptions {
        capacity: 8192,
        overflow: Overflow::DropNewest,
        ..Default::default()
    });
    let forwarder = forward(subscription, service.records()?, service.metrics().clone())?;
    let recorder = match window_store {
        Some((store, key)) => {
            let windows = runtime.subscribe_windows(WindowOptions {
                capacity: 4096,
                overflow: Overflow::DropNewest,
                snapshots: settings.window_snapshots,
            });
            Some(Recorder::start(store, key, windows)?)
        }
        None => None,
    };
    for (name, r) in service.resume_streams()? {
        if let Err(e) = r {
            eprintln!("vigil: stream {name} not resumed: {e}");
        }
    }
    tracing::info!(%addr, data_dir = %settings.data_dir.display(), "serving");
    eprintln!(
        "vigil: serving on http://{addr} (data in {})",
        settings.data_dir.display()
    );
    let service = Arc::new(service);
    let served = service.serve(listener, shutdown_signal()).await;
    eprintln!("vigil: stopping — draining streams");
    control.begin_shutdown();
    let rt2 = runtime.clone();
    let report = tokio::task::spawn_blocking(move || rt2.shutdown())
        .await
        .map_err(|e| PipelineError::Internal(format!("runtime shutdown: {e}")))?;
    drop((runtime, control));
    // the subscriptions close after the runtime's last record
    let _ = tokio::task::spawn_blocking(move || forwarder.join()).await;
    if let Some(r) = recorder {
        if let Ok(report) = tokio::task::spawn_blocking(move || r.finish()).await {
            tracing::info!(stored = report.stored, lost = report.lost, "windows stored");
            if let Some(e) = report.error {
                eprintln!("vigil: {} windows were not stored: {e}", report.failed);
            }
        }
    }
    let service = Arc::try_unwrap(service)
        .map_err(|_| PipelineError::Internal("the service is still shared at shutdown".into()))?;
    service.close().await?;
    served?;
    report?;
    eprintln!("vigil: stopped");
    Ok(())
}

/// Cap glibc's malloc arenas at 2 (unless `MALLOC_ARENA_MAX` is set); call it before any
/// thread starts (`vigil serve` does, before it loads the model). Every stream added starts
/// an ingest thread and every removal ends one; glibc hands new threads new arenas (up to 8
/// per core), so a service whose cameras come and go grows its RSS by several MB before it
/// levels off — 1,000 add/remove cycles measured up to +12.5 % with the default and +4 %
/// with 2 arenas (BENCHMARKS.md). The frame path allocates nothing, so fewer arenas cost
/// no contention there.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator tunable; it is thread-safe and takes no
        // pointers.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Move runtime records into the hub (a thread that ends when the runtime closes the
/// subscription); count what the subscription dropped.
pub fn forward(
    sub: Subscription,
    input: HubInput,
    metrics: Arc<super::metrics::Metrics>,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("vigil-forward".into())
        .spawn(move || {
            let mut lost = 0;
            while let Some(ev) = sub.recv() {
                input.send(ev);
                let now = sub.lost();
                if now != lost {
                    metrics.records_dropped.add(now - lost);
                    lost = now;
                }
            }
        })
        .map_err(|e| PipelineError::Internal(format!("cannot start the record forwarder: {e}")))
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let int = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = int => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = int.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = int.await;
    }
}
