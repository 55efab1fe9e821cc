//! `vigil serve` with real streams: the acceptance, bounded in time, on 127.0.0.1.
//!
//! - `sidecar_end_to_end`: the built binary with the K600 model; two cameras added over
//!   the API (a shared clip file, looping, and a gst-rtsp-server camera); label and start
//!   events over SSE and MQTT; history; `vigil_frames_processed_total` rising; a short MQTT
//!   broker outage (streams keep running, publishing resumes, `available` is right); DELETE;
//!   SIGTERM (exit 0, MQTT `offline`); restart: the remaining camera resumes, history intact.
//! - `add_remove_cycles_keep_memory_flat`: the service in-process on the real runtime,
//!   1,000 add/remove cycles of a `test:` stream through the HTTP API (`VIGIL_TEST_CYCLES`
//!   overrides); RSS after the cycles within 10% of RSS after the first 100; a re-added
//!   name's first logits equal the first run's, bit for bit.

mod common;
mod serve_support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{clip, k600_labels, k600_model, rtsp_server_main, RtspServer};
use serde_json::json;
use serve_support::{free_port, Broker, Served, SseReader, Subscriber};
use vigil_engine::{Engine, EngineConfig, Labels};
use vigil_pipelines::resample::Rate;
use vigil_pipelines::runtime::{Kinds, Runtime, RuntimeEvent, RuntimeOptions, SubscriptionOptions};
use vigil_pipelines::serve::control::RuntimeControl;
use vigil_pipelines::serve::{Service, ServiceConfig};

/// Not a test: the RTSP server process (`--ignored --exact`).
#[test]
#[ignore]
fn rtsp_server_helper() {
    rtsp_server_main();
}

/// The two scenarios each load the model and run streams: one at a time on 2 cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_end_to_end() {
    let _serial = SERIAL.lock().await;
    let mut broker = Broker::start();
    let mut mqtt = Subscriber::start(broker.port, "e2e-sub", &["vigil/#"]).await;
    let camera = RtspServer::start(free_port(), &[("cam", clip("arm_wrestling.mp4"))]);
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let srv = Served::start(data.path(), port, &["--mqtt", &broker.url()]).await;
    let http = reqwest::Client::new();
    let mut sse = SseReader::open(http.get(srv.url("/api/events"))).await;

    for (name, uri) in [
        ("clip", clip("arm_wrestling.mp4")),
        ("cam", camera.url("cam")),
    ] {
        let r = http
            .post(srv.url("/api/streams"))
            .json(&json!({"name": name, "uri": uri}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let label = sse
        .wait_for(T, |m| m.event == "label" && m.data["stream"] == "cam")
        .await
        .expect("a label from the RTSP camera");
    assert!(label.data["top"][0]["label"].is_string());
    let mut started = std::collections::HashSet::new();
    let mut start_ids = Vec::new();
    while started.len() < 2 {
        let m = sse
            .wait_for(T, |m| m.event == "start")
            .await
            .expect("start events from both cameras");
        assert_eq!(m.data["label"], "arm wrestling");
        started.insert(m.data["stream"].as_str().unwrap().to_string());
        start_ids.push(m.id.clone().unwrap().parse::<i64>().unwrap());
    }
    let (ev, _) = mqtt
        .wait_for(T, "vigil/events", |p| p.contains("\"start\""))
        .await
        .expect("start over MQTT");
    assert!(ev.contains("arm wrestling"));
    mqtt.wait_for(T, "vigil/cam/state", |p| !p.is_empty())
        .await
        .expect("state over MQTT");
    let history = srv.json("/api/events/history?limit=10000").await;
    for id in &start_ids {
        assert!(
            history.as_array().unwrap().iter().any(|e| e["id"] == *id),
            "start {id} in history"
        );
    }
    let f0 = srv
        .metric("vigil_frames_processed_total{stream=\"cam\"}")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let f1 = srv
        .metric("vigil_frames_processed_total{stream=\"cam\"}")
        .await;
    assert!(f1 > f0, "frames processed rise: {f0} -> {f1}");
    let jpeg = http
        .get(srv.url("/api/streams/cam/snapshot.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(jpeg.status(), 200);
    assert_eq!(&jpeg.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);

    // a short broker outage: the streams keep running, publishing resumes
    broker.stop();
    mqtt.mark();
    let g0 = srv
        .metric("vigil_frames_processed_total{stream=\"cam\"}")
        .await;
    // 3 s in CI; VIGIL_TEST_OUTAGE_S=30 is the full outage (BENCHMARKS.md)
    let outage: f64 = std::env::var("VIGIL_TEST_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let t_out = Instant::now();
    let mut last = g0;
    while t_out.elapsed().as_secs_f64() < outage {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = srv
            .metric("vigil_frames_processed_total{stream=\"cam\"}")
            .await;
        assert!(
            now > last,
            "the camera stalled during the broker outage ({last} -> {now})"
        );
        last = now;
    }
    broker.restart();
    let t_back = Instant::now();
    mqtt.wait_for(T, "vigil/available", |p| p == "online")
        .await
        .expect("online after the outage");
    println!(
        "broker outage {outage} s: camera frames {g0} -> {last} during it; online {:.2} s after the broker came back",
        t_back.elapsed().as_secs_f64()
    );
    mqtt.wait_for(T, "vigil/cam/state", |p| !p.is_empty())
        .await
        .expect("state after the outage");

    // remove one camera, stop with SIGTERM
    assert_eq!(
        http.delete(srv.url("/api/streams/clip"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    sse.wait_for(T, |m| {
        m.event == "status" && m.data["stream"] == "clip" && m.data["status"] == "removed"
    })
    .await
    .expect("removed status");
    assert_eq!(srv.terminate().await, Some(0), "SIGTERM exits 0");
    mqtt.wait_for(T, "vigil/available", |p| p == "offline")
        .await
        .expect("offline at shutdown");
    let before: Vec<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();

    // restart: the remaining camera resumes; history intact
    let srv = Served::start(data.path(), port, &["--mqtt", &broker.url()]).await;
    let streams = srv.json("/api/streams").await;
    let names: Vec<&str> = streams
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cam"]);
    let end = Instant::now() + T;
    while srv
        .metric("vigil_frames_processed_total{stream=\"cam\"}")
        .await
        < 3.0
    {
        assert!(Instant::now() < end, "the camera resumed after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = srv.json("/api/events/history?limit=10000").await;
    for id in before {
        assert!(
            after.as_array().unwrap().iter().any(|e| e["id"] == id),
            "event {id} survived the restart"
        );
    }
    assert_eq!(srv.terminate().await, Some(0));
    camera.stop();
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// RSS once the removed streams' ingest threads have wound down (a removal returns when
/// the slot is free; its GStreamer pipeline and thread finish just after).
async fn settled_rss() -> u64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    rss_kib()
}

/// First logits of the next run of stream `x` (subscribed before it is added).
fn first_logits(sub: &vigil_pipelines::runtime::Subscription) -> Arc<[f32]> {
    loop {
        match sub.recv_timeout(T) {
            Ok(RuntimeEvent::Label(l)) => return l.logits.clone().expect("logits requested"),
            Ok(_) => {}
            Err(_) => panic!("no label for x within {T:?}"),
        }
    }
}

/// Runs the cycles in a child process started as `vigil serve` runs: with glibc's malloc
/// arenas capped (`MALLOC_ARENA_MAX=2`, which `vigil serve` sets for itself before its
/// threads start) — in this test process the harness's threads already own arenas.
#[test]
fn add_remove_cycles_keep_memory_flat() {
    let _serial = SERIAL.blocking_lock();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "add_remove_cycles_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VIGIL_TEST_CYCLES_CHILD", "1")
        .env("MALLOC_ARENA_MAX", "2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "{}",
        stdout
            .lines()
            .filter(|l| l.contains("cycles in"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the helper ran: {stdout}");
}

/// Not a test by itself: the body of `add_remove_cycles_keep_memory_flat`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn add_remove_cycles_helper() {
    if std::env::var_os("VIGIL_TEST_CYCLES_CHILD").is_none() {
        return;
    }
    let cycles: usize = std::env::var("VIGIL_TEST_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let model = Arc::new(vigil_engine::Model::load(std::path::Path::new(&k600_model())).unwrap());
    let labels = Labels::load(std::path::Path::new(&k600_labels()), model.classes()).unwrap();
    let engine = Engine::new(
        model.clone(),
        &EngineConfig {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let runtime = Runtime::start(
        engine,
        RuntimeOptions {
            labels: Some(labels.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let control = Arc::new(RuntimeControl::new(
        runtime.clone(),
        Rate::Fps(model.default_fps()),
    ));
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(
        &ServiceConfig::default(),
        data.path(),
        control.clone(),
        labels,
    )
    .unwrap();
    let sub = runtime.subscribe(SubscriptionOptions {
        kinds: Kinds::ALL,
        ..Default::default()
    });
    let fwd = vigil_pipelines::serve::run::forward(
        sub,
        service.records().unwrap(),
        service.metrics().clone(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let service = Arc::new(service);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let s2 = service.clone();
    let server = tokio::spawn(async move {
        s2.serve(listener, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let http = reqwest::Client::new();
    let logits_sub = runtime.subscribe(SubscriptionOptions {
        kinds: Kinds {
            labels: true,
            ..Kinds::NONE
        },
        stream: Some("x".into()),
        logits: true,
        ..Default::default()
    });
    let body = json!({"name": "x", "uri": "test:pattern=ball", "fps": "native"});

    let t0 = Instant::now();
    let mut first = None;
    let mut rss_100 = 0;
    for i in 0..cycles {
        let r = http
            .post(format!("{base}/api/streams"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "cycle {i}: {}", r.text().await.unwrap());
        if i == 0 {
            first = Some(tokio::task::block_in_place(|| first_logits(&logits_sub)));
        }
        let r = http
            .delete(format!("{base}/api/streams/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "cycle {i}");
        if i + 1 == 100.min(cycles) {
            rss_100 = settled_rss().await;
        }
    }
    let rss_end = settled_rss().await;
    assert_eq!(runtime.sessions(), 0, "every slot freed");
    // re-added: zero state, so its first logits are the first run's
    while logits_sub.try_recv().is_ok() {}
    let r = http
        .post(format!("{base}/api/streams"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let again = tokio::task::block_in_place(|| first_logits(&logits_sub));
    let first = first.unwrap();
    assert_eq!(&*again, &*first, "a re-added name starts from zero state");
    println!(
        "{cycles} add/remove cycles in {:.1} s; RSS after 100: {rss_100} KiB, after {cycles}: {rss_end} KiB ({:+.1}%)",
        t0.elapsed().as_secs_f64(),
        (rss_end as f64 / rss_100 as f64 - 1.0) * 100.0
    );
    assert!(
        (rss_end as f64) <= rss_100 as f64 * 1.10,
        "RSS grew from {rss_100} KiB to {rss_end} KiB"
    );

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    control.begin_shutdown();
    let rt2 = runtime.clone();
    let report =
        tokio::task::spawn_blocking(move || rt2.shutdown().map_err(|e| e.to_string()).map(|_| ()));
    report.await.unwrap().unwrap();
    drop((runtime, control, logits_sub));
    tokio::task::spawn_blocking(move || fwd.join())
        .await
        .unwrap()
        .unwrap();
    Arc::try_unwrap(service)
        .ok()
        .unwrap()
        .close()
        .await
        .unwrap();
}
