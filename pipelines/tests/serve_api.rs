//! The HTTP API of `vigil serve` on 127.0.0.1:0, in-process, over a scripted stream
//! control (these tests check the service: routes, errors, persistence, SSE, history,
//! metrics, auth; the tests with real streams are in `serve_streams.rs`).

mod serve_support;

use std::time::Duration;

use serde_json::{json, Value};
use serve_support::*;
use vigil_pipelines::events::EventKind;
use vigil_pipelines::resample::Rate;
use vigil_pipelines::serve::ServiceConfig;
use vigil_pipelines::status::StreamPhase;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_crud_errors_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(
        ServiceConfig {
            max_streams: 3,
            ..Default::default()
        },
        dir.path(),
    )
    .await;

    let r = srv.get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(srv.get("/readyz").send().await.unwrap().status(), 200);
    srv.control
        .not_ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let r = srv.get("/readyz").send().await.unwrap();
    assert_eq!(r.status(), 503);
    srv.control
        .not_ready
        .store(false, std::sync::atomic::Ordering::Relaxed);

    assert_eq!(srv.get_json::<Value>("/api/streams").await, json!([]));
    let r = srv
        .post_json("/api/streams", &json!({"name": "yard", "uri": "rtsp://admin:s3cret@127.0.0.1:8554/yard", "fps": 5, "enter": 0.6}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/api/streams/yard");
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["name"], "yard");
    let uri = s["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("rtsp://") && !uri.contains("s3cret"),
        "credentials never shown: {uri}"
    );
    for key in ["status", "frames", "dropped", "reconnects", "top"] {
        assert!(s.get(key).is_some(), "{key} in {s}");
    }
    // duplicate, bad bodies, bad URI, too large, too many
    let dup = srv
        .post_json("/api/streams", &json!({"name": "yard", "uri": "test:"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    let e: Value = dup.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("already exists") && e["hint"].is_string(),
        "{e}"
    );
    for (body, what) in [
        (json!({"name": "x"}), "uri"),
        (json!({"name": "../etc", "uri": "test:"}), "name"),
        (json!({"name": "x", "uri": "test:", "fsp": 1}), "fsp"),
        (json!({"name": "x", "uri": "test:pattern=nosuch"}), "nosuch"),
        (json!({"name": "x", "uri": "bogus://x"}), "bogus"),
        (
            json!({"name": "x", "uri": "test:", "enter": 0.1, "exit": 0.5}),
            "exit",
        ),
    ] {
        let r = srv.post_json("/api/streams", &body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains(what), "{body}: {e}");
        assert!(!e["hint"].as_str().unwrap().is_empty());
    }
    let big = json!({"name": "x", "uri": "x".repeat(20_000)});
    let r = srv.post_json("/api/streams", &big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = srv
        .client()
        .post(srv.url("/api/streams"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for n in ["b", "c"] {
        let r = srv
            .post_json("/api/streams", &json!({"name": n, "uri": "test:"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let full = srv
        .post_json("/api/streams", &json!({"name": "d", "uri": "test:"}))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 409);
    assert!(full.text().await.unwrap().contains("maximum"));

    // get one, 404s, 405, unknown path
    assert_eq!(
        srv.get("/api/streams/yard").send().await.unwrap().status(),
        200
    );
    let r = srv.get("/api/streams/nope").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["hint"].is_string());
    let r = srv
        .client()
        .put(srv.url("/api/streams"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = srv.get("/api/nothing").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());

    // delete: 204 then 404; the slot is free again
    assert_eq!(
        srv.delete("/api/streams/b").send().await.unwrap().status(),
        204
    );
    assert_eq!(
        srv.delete("/api/streams/b").send().await.unwrap().status(),
        404
    );
    let names: Vec<String> = srv
        .get("/api/streams")
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["yard", "c"]);
    srv.stop().await;

    // restart on the same data dir: the API's streams resume, with their settings
    let srv = TestServer::start(ServiceConfig::default(), dir.path()).await;
    let added = srv.control.added.lock().unwrap().clone();
    let names: Vec<&str> = added.iter().map(|(d, _)| d.name.as_str()).collect();
    assert_eq!(names, ["yard", "c"]);
    let (yard, events) = &added[0];
    assert_eq!(
        yard.uri, "rtsp://admin:s3cret@127.0.0.1:8554/yard",
        "the real URI is kept to reconnect"
    );
    assert_eq!(
        (yard.fps, yard.enter, yard.exit),
        (Some(Rate::Fps(5.0)), Some(0.6), None)
    );
    assert_eq!(
        (events.enter, events.exit),
        (0.6, 0.3),
        "missing thresholds take the defaults"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_history_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(ServiceConfig::default(), dir.path()).await;
    for n in ["a", "b"] {
        srv.post_json("/api/streams", &json!({"name": n, "uri": "test:"}))
            .send()
            .await
            .unwrap();
    }
    let mut all = SseReader::open(srv.get("/api/events")).await;
    let mut only_a_events = SseReader::open(srv.get("/api/events?stream=a&kind=start,end")).await;
    let bad = srv.get("/api/events?kind=start,nope").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("nope"));

    srv.send(label("b", 0, "boxing", 0.9));
    srv.send(label("a", 0, "archery", 0.8));
    srv.send(event(EventKind::Start, "b", "boxing"));
    srv.send(event(EventKind::Start, "a", "archery"));
    srv.send(status("a", StreamPhase::Reconnecting));
    srv.send(event(EventKind::End, "a", "archery"));

    let m = all.next(T).await.unwrap();
    assert_eq!(
        (m.event.as_str(), m.data["stream"].as_str()),
        ("label", Some("b"))
    );
    assert_eq!(m.data["top"][0]["label"], "boxing");
    assert!(m.id.is_none());
    let mut kinds = vec![];
    while kinds.len() < 5 {
        kinds.push(all.next(T).await.expect("all records arrive").event);
    }
    assert_eq!(kinds, ["label", "start", "start", "status", "end"]);
    let s1 = only_a_events.next(T).await.unwrap();
    let s2 = only_a_events.next(T).await.unwrap();
    assert_eq!((s1.event.as_str(), s2.event.as_str()), ("start", "end"));
    assert_eq!(s1.data["stream"], "a");
    assert_eq!(s1.data["event"], "start");
    let (id1, id2): (i64, i64) = (
        s1.id.unwrap().parse().unwrap(),
        s2.id.unwrap().parse().unwrap(),
    );
    assert!(id2 > id1);

    // a client that reconnects with Last-Event-ID gets what it missed, from the store
    let mut resumed = SseReader::open(
        srv.get("/api/events?kind=start,end")
            .header("last-event-id", (id1 - 1).to_string()),
    )
    .await;
    let got: Vec<String> = [
        resumed.next(T).await.unwrap(),
        resumed.next(T).await.unwrap(),
    ]
    .iter()
    .map(|m| format!("{}:{}", m.event, m.data["stream"].as_str().unwrap()))
    .collect();
    assert_eq!(got, ["start:a", "end:a"]);
    assert!(resumed.next(Duration::from_millis(300)).await.is_none());

    // history with filters
    let h: Vec<Value> = srv.get_json("/api/events/history").await;
    assert_eq!(h.len(), 3);
    assert_eq!(h[0]["event"], "end", "newest first");
    let h: Vec<Value> = srv
        .get_json("/api/events/history?stream=a&label=archery&limit=1")
        .await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["id"], id2);
    let h: Vec<Value> = srv
        .get_json("/api/events/history?since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z")
        .await;
    assert!(h.is_empty());
    let r = srv.get("/api/events/history?limit=0").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = srv
        .get("/api/events/history?since=yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["hint"]
        .as_str()
        .unwrap()
        .contains("RFC 3339"));

    // metrics
    let text = srv
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "vigil_streams 2",
        "vigil_events_total{stream=\"a\",kind=\"start\"} 1",
        "vigil_events_total{stream=\"a\",kind=\"end\"} 1",
        "vigil_events_total{stream=\"b\",kind=\"start\"} 1",
        "vigil_frame_latency_seconds_count 0",
        "vigil_frames_processed_total{stream=\"a\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }

    // removal is announced as a status record and clears the stream's series
    assert_eq!(
        srv.delete("/api/streams/a").send().await.unwrap().status(),
        204
    );
    let m = all
        .wait_for(T, |m| m.event == "status" && m.data["status"] == "removed")
        .await
        .unwrap();
    assert_eq!(m.data["stream"], "a");
    let text = srv
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("stream=\"a\""), "{text}");

    // shutting down ends the SSE streams instead of hanging the server
    srv.stop().await;
    assert!(all.next(Duration::from_secs(5)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_snapshot_openapi_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef-token";
    let srv = TestServer::start(
        ServiceConfig {
            token: Some(token.into()),
            ..Default::default()
        },
        dir.path(),
    )
    .await;
    let plain = srv.client();
    for path in [
        "/api/streams",
        "/metrics",
        "/api/events/history",
        "/api/openapi.json",
        "/api/events",
    ] {
        let r = plain.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let r = plain
            .get(srv.url(path))
            .bearer_auth("0123456789abcdef-tokem")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    for path in [
        "/healthz",
        "/readyz",
        "/",
        "/page/app.js",
        "/page/style.css",
    ] {
        assert_eq!(
            plain.get(srv.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let page = plain.get(srv.url("/")).send().await.unwrap();
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert!(page.text().await.unwrap().contains("id=\"add-form\""));

    let doc: Value = srv.get_json("/api/openapi.json").await;
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/streams/{name}/snapshot.jpg"]["get"].is_object());
    assert_eq!(doc["security"][0]["bearer"], json!([]));

    srv.post_json("/api/streams", &json!({"name": "cam", "uri": "test:"}))
        .send()
        .await
        .unwrap();
    let r = srv
        .get("/api/streams/cam/snapshot.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no frame yet");
    assert_eq!(r.headers()["retry-after"], "1");
    srv.control
        .jpegs
        .lock()
        .unwrap()
        .insert("cam".into(), vec![0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xD9]);
    let r = srv
        .get("/api/streams/cam/snapshot.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let jpeg = r.bytes().await.unwrap();
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);
    assert_eq!(
        srv.get("/api/streams/nope/snapshot.jpg")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    srv.stop().await;
}
