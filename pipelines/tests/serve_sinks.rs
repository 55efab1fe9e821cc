//! The event sinks of `vigil serve` against real parts on 127.0.0.1: a mosquitto broker
//! started by the test (topics, retained state, Home Assistant discovery, a broker outage
//! and restart, `offline` on shutdown, the Last Will when the process dies) and a small
//! local HTTP receiver for webhooks (order, retries with backoff, event ids, a bounded
//! queue that drops and counts instead of blocking).

mod serve_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_support::*;
use vigil_pipelines::events::EventKind;
use vigil_pipelines::serve::metrics::Metrics;
use vigil_pipelines::serve::mqtt::{MqttConfig, MqttSink};
use vigil_pipelines::serve::webhook::WebhookConfig;
use vigil_pipelines::serve::ServiceConfig;

const T: Duration = Duration::from_secs(15);

/// How long the broker stays down in CI; `VIGIL_TEST_OUTAGE_S=30` runs the full outage of
/// the acceptance (recorded in BENCHMARKS.md).
fn outage() -> Duration {
    let s = std::env::var("VIGIL_TEST_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(s)
}

fn mqtt_config(broker: &Broker) -> MqttConfig {
    let mut m = MqttConfig::from_url(&broker.url()).unwrap();
    m.discovery = Some("homeassistant".into());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_topics_survive_a_broker_outage() {
    let mut broker = Broker::start();
    let mut sub = Subscriber::start(broker.port, "test-sub", &["vigil/#", "homeassistant/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServiceConfig {
        mqtt: Some(mqtt_config(&broker)),
        ..Default::default()
    };
    let srv = TestServer::start(cfg, dir.path()).await;
    srv.post_json("/api/streams", &json!({"name": "yard", "uri": "test:"}))
        .send()
        .await
        .unwrap();

    sub.wait_for(T, "vigil/available", |p| p == "online")
        .await
        .expect("online");
    srv.send(label("yard", 0, "archery", 0.9));
    // discovery goes out before the stream's first state
    let (cfg_json, _) = sub
        .wait_for(T, "homeassistant/sensor/vigil/yard/config", |_| true)
        .await
        .expect("discovery");
    sub.wait_for(T, "vigil/yard/state", |p| p == "archery")
        .await
        .expect("state");
    let disc: Value = serde_json::from_str(&cfg_json).unwrap();
    assert_eq!(disc["state_topic"], "vigil/yard/state");
    assert_eq!(disc["availability_topic"], "vigil/available");
    srv.send(event(EventKind::Start, "yard", "archery"));
    let (ev, retained) = sub
        .wait_for(T, "vigil/events", |_| true)
        .await
        .expect("event");
    let ev: Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(
        (ev["event"].as_str(), ev["label"].as_str()),
        (Some("start"), Some("archery"))
    );
    assert!(!retained);

    // the broker goes away: records keep flowing through the service, nothing blocks
    let mut sse = SseReader::open(srv.get("/api/events?kind=label")).await;
    broker.stop();
    sub.mark();
    let t0 = Instant::now();
    let mut seq = 1;
    let mut slowest = Duration::ZERO;
    while t0.elapsed() < outage() {
        let t = Instant::now();
        srv.send(label("yard", seq, "boxing", 0.8));
        if seq % 10 == 0 {
            srv.send(event(
                if seq % 20 == 0 {
                    EventKind::Start
                } else {
                    EventKind::End
                },
                "yard",
                "boxing",
            ));
        }
        slowest = slowest.max(t.elapsed());
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        slowest < Duration::from_millis(100),
        "a record waited {slowest:?} while the broker was down"
    );
    let m = sse.wait_for(T, |m| m.data["seq"] == (seq - 1)).await;
    assert!(m.is_some(), "labels kept flowing to SSE during the outage");
    let metrics = srv
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("vigil_mqtt_connected 0"), "{metrics}");

    // back: online again, the state that changed during the outage is published
    broker.restart();
    sub.wait_for(T, "vigil/available", |p| p == "online")
        .await
        .expect("online after the restart");
    sub.wait_for(T, "vigil/yard/state", |p| p == "boxing")
        .await
        .expect("state after the restart");
    srv.send(event(EventKind::End, "yard", "boxing"));
    sub.wait_for(T, "vigil/events", |p| p.contains("\"end\""))
        .await
        .expect("events resume");
    let metrics = srv
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("vigil_mqtt_connected 1"), "{metrics}");
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigil_mqtt_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        dropped > 0,
        "events during the outage are counted as dropped"
    );

    // a client that connects later gets the retained truth
    let mut late = Subscriber::start(broker.port, "late-sub", &["vigil/#"]).await;
    let (p, retained) = late.wait_for(T, "vigil/available", |_| true).await.unwrap();
    assert_eq!((p.as_str(), retained), ("online", true));
    let (p, retained) = late
        .wait_for(T, "vigil/yard/state", |_| true)
        .await
        .unwrap();
    assert_eq!((p.as_str(), retained), ("boxing", true));

    // removing the stream clears its retained topics; shutting down publishes offline
    assert_eq!(
        srv.delete("/api/streams/yard")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    sub.wait_for(T, "vigil/yard/state", |p| p.is_empty())
        .await
        .expect("state cleared");
    srv.stop().await;
    sub.wait_for(T, "vigil/available", |p| p == "offline")
        .await
        .expect("offline at shutdown");
    let mut after = Subscriber::start(broker.port, "after-sub", &["vigil/available"]).await;
    let (p, retained) = after
        .wait_for(T, "vigil/available", |_| true)
        .await
        .unwrap();
    assert_eq!((p.as_str(), retained), ("offline", true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_last_will_when_the_process_dies() {
    let broker = Broker::start();
    let mut sub = Subscriber::start(broker.port, "will-sub", &["vigil/available"]).await;
    let cfg = mqtt_config(&broker);
    // a runtime of its own, dropped without a clean disconnect: as if the process died
    let (die_tx, die_rx) = std::sync::mpsc::channel::<()>();
    let victim = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sink = rt.block_on(async { MqttSink::start(cfg, Arc::new(Metrics::new())) });
        let _ = die_rx.recv();
        drop(sink);
        rt.shutdown_background();
    });
    sub.wait_for(T, "vigil/available", |p| p == "online")
        .await
        .expect("online");
    die_tx.send(()).unwrap();
    victim.join().unwrap();
    let (p, _) = sub
        .wait_for(T, "vigil/available", |p| p == "offline")
        .await
        .expect("the broker publishes the Last Will");
    assert_eq!(p, "offline");
}

/// What the receiver got: the X-Vigil-Event-Id header and the body.
type Delivery = (Option<String>, Value);

/// A webhook receiver: answers 503 to the first `fail_first` requests, then 200.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
    attempts: Arc<Mutex<u32>>,
    fail_first: u32,
}

async fn start_receiver(fail_first: u32) -> (String, Receiver) {
    use axum::routing::post;
    let rx = Receiver {
        fail_first,
        ..Default::default()
    };
    let r2 = rx.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let rx = r2.clone();
            async move {
                let mut n = rx.attempts.lock().unwrap();
                *n += 1;
                if *n <= rx.fail_first {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let id = headers
                    .get("x-vigil-event-id")
                    .map(|v| v.to_str().unwrap().to_string());
                rx.got
                    .lock()
                    .unwrap()
                    .push((id, serde_json::from_str(&body).unwrap()));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_retry_in_order_and_never_block() {
    let (url, receiver) = start_receiver(2).await;
    let good = WebhookConfig::new(&url).unwrap();
    // nothing listens there: every delivery fails; a queue of 2 overflows
    let mut dead = WebhookConfig::new(&format!("http://127.0.0.1:{}/hook", free_port())).unwrap();
    dead.queue = 2;
    dead.max_attempts = 2;
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(
        ServiceConfig {
            webhooks: vec![good, dead],
            ..Default::default()
        },
        dir.path(),
    )
    .await;
    let t0 = Instant::now();
    srv.send(label("cam", 0, "archery", 0.9)); // labels are not posted
    for (i, kind) in [
        EventKind::Start,
        EventKind::End,
        EventKind::Start,
        EventKind::End,
        EventKind::Start,
    ]
    .into_iter()
    .enumerate()
    {
        srv.send(event(kind, "cam", TEST_LABELS[i]));
    }
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "offering events never waits for receivers"
    );
    let end = Instant::now() + T;
    while receiver.got.lock().unwrap().len() < 5 {
        assert!(
            Instant::now() < end,
            "webhooks delivered: {:?}",
            receiver.got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.got.lock().unwrap().clone();
    let labels: Vec<&str> = got
        .iter()
        .map(|(_, v)| v["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, TEST_LABELS, "in order, after two 503s");
    assert_eq!(*receiver.attempts.lock().unwrap(), 7);
    let history: Vec<Value> = srv.get_json("/api/events/history?limit=10").await;
    let first_id = history.last().unwrap()["id"].as_i64().unwrap();
    assert_eq!(
        got[0].0.as_deref(),
        Some(first_id.to_string().as_str()),
        "X-Vigil-Event-Id is the history id"
    );
    assert_eq!(got[0].1["event"], "start");
    let metrics = srv
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("vigil_webhook_delivered_total"), 5);
    assert!(value("vigil_webhook_dropped_total") >= 2, "{metrics}");
    srv.stop().await;
}
