//! `vigil serve` on CLIP and X-CLIP (the tiny random-weight fixtures of
//! `$VIGIL_SHARED/fixtures/clip`): a stream added over the API gets prompt labels over SSE,
//! start events over SSE and MQTT (a real mosquitto) and in the history, its window embeddings land in the data dir's store,
//! and `GET /api/search` finds them — with snapshot links the service serves, 400s with
//! hints for bad queries, and the same windows readable by `vigil search` afterwards. A
//! MoViNet service answers search with 409. Scores are meaningless (random weights); the
//! pipeline is what is checked.

mod serve_support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_support::{free_port, shared, Broker, Served, SseReader, Subscriber, TestServer};
use vigil_pipelines::serve::ServiceConfig;

const PROMPTS: [&str; 2] = ["a person arm wrestling", "an empty room"];

/// `GET url` → (status, JSON body).
async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Poll `/api/search?{query}` until it returns at least `n` results (bounded).
async fn search_until(srv: &Served, query: &str, n: usize) -> Value {
    let end = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = get(&srv.url(&format!("/api/search?{query}"))).await;
        assert_eq!(status, 200, "{body}");
        if body["results"].as_array().unwrap().len() >= n {
            return body;
        }
        assert!(
            Instant::now() < end,
            "fewer than {n} search results within 40 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn add_arm_wrestling(srv: &Served, name: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(srv.url("/api/streams"))
        .header("content-type", "application/json")
        .body(json!({"name": name, "uri": shared("clips/arm_wrestling.mp4"), "fps": 4}).to_string())
}

fn expect_error(status: u16, body: &Value, want: u16, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty())
            && body["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_service_labels_events_and_search() {
    let data = tempfile::tempdir().unwrap();
    let model = shared("fixtures/clip/clip_tiny");
    let args = [
        "--clip", &model, "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--window", "1",
    ];
    let broker = Broker::start();
    let mut mqtt = Subscriber::start(broker.port, "clip-sub", &["vigil/#"]).await;
    let mqtt_url = broker.url();
    let srv = Served::start_model(data.path(), free_port(), &args, &["--mqtt", &mqtt_url]).await;
    let mut sse = SseReader::open(reqwest::Client::new().get(srv.url("/api/events"))).await;
    let r = add_arm_wrestling(&srv, "arm").send().await.unwrap();
    assert_eq!(r.status(), 201);

    // labels are the prompts, over SSE like MoViNet's
    let label = sse
        .wait_for(Duration::from_secs(30), |m| m.event == "label")
        .await
        .expect("a label record over SSE");
    assert_eq!(label.data["stream"], "arm");
    let top = label.data["top"].as_array().unwrap();
    assert_eq!(top.len(), 2, "{}", label.data);
    assert!(top
        .iter()
        .all(|t| PROMPTS.contains(&t["label"].as_str().unwrap())));
    let start = sse
        .wait_for(Duration::from_secs(30), |m| m.event == "start")
        .await
        .expect("a start event over SSE");
    assert!(PROMPTS.contains(&start.data["label"].as_str().unwrap()));
    // and over MQTT, like MoViNet's
    let (payload, _) = mqtt
        .wait_for(Duration::from_secs(20), "vigil/events", |p| {
            p.contains("\"start\"")
        })
        .await
        .expect("the start event on MQTT");
    assert!(PROMPTS.iter().any(|p| payload.contains(p)), "{payload}");

    // window embeddings are searchable while the stream runs
    let body = search_until(&srv, "q=a%20person%20arm%20wrestling&top=3", 2).await;
    assert_eq!(body["query"], "a person arm wrestling");
    assert!(body["model"].as_str().unwrap().starts_with("clip:"));
    assert!(body["searched"].as_u64().unwrap() >= 2);
    let hits = body["results"].as_array().unwrap();
    assert!(hits.len() <= 3);
    let mut last = f64::INFINITY;
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h["rank"], i + 1);
        assert_eq!(h["stream"], "arm");
        let score = h["score"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&score) && score <= last, "{body}");
        last = score;
        assert!(h["start"].as_str().unwrap() <= h["end"].as_str().unwrap());
        assert!(h["end_pts_ms"].as_f64().unwrap() > h["start_pts_ms"].as_f64().unwrap());
        assert!(h["frames"].as_u64().unwrap() >= 1);
    }
    // the snapshot link is served
    let link = hits[0]["snapshot"].as_str().expect("a snapshot link");
    let r = reqwest::get(srv.url(link)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert!(r.bytes().await.unwrap().starts_with(&[0xff, 0xd8]));

    // filters
    let (_, none) = get(&srv.url("/api/search?q=anything&stream=nosuch")).await;
    assert_eq!(
        (
            none["searched"].as_u64(),
            none["results"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let (_, later) = get(&srv.url("/api/search?q=anything&since=2999-01-01T00:00:00Z")).await;
    assert_eq!(later["searched"], 0);
    let (_, recent) = get(&srv.url("/api/search?q=anything&since=1h&stream=arm&top=1")).await;
    assert_eq!(recent["results"].as_array().unwrap().len(), 1);

    // bad queries: 400 with a hint, never a 5xx
    for (q, what) in [
        ("", "no q"),
        ("?q=", "empty q"),
        ("?q=%20%20", "blank q"),
        ("?q=x&top=0", "top 0"),
        ("?q=x&top=1001", "top over the limit"),
        ("?q=x&top=many", "top not a number"),
        ("?q=x&since=yesterday", "bad since"),
        ("?q=x&until=2026-13-01", "bad until"),
    ] {
        let (status, body) = get(&srv.url(&format!("/api/search{q}"))).await;
        expect_error(status, &body, 400, what);
    }
    let long = "a".repeat(1001);
    let (status, body) = get(&srv.url(&format!("/api/search?q={long}"))).await;
    expect_error(status, &body, 400, "q too long");
    let (status, body) = get(&srv.url("/api/windows/x/snapshot.jpg")).await;
    expect_error(status, &body, 400, "bad window id");
    let (status, body) = get(&srv.url("/api/windows/999999/snapshot.jpg")).await;
    expect_error(status, &body, 404, "unknown window");

    // the history keeps the prompt events
    let (_, history) = get(&srv.url("/api/events/history?stream=arm")).await;
    let events = history.as_array().unwrap();
    assert!(!events.is_empty());
    assert!(events
        .iter()
        .all(|e| PROMPTS.contains(&e["label"].as_str().unwrap())));

    // the description lists search
    let (_, doc) = get(&srv.url("/api/openapi.json")).await;
    assert!(doc["paths"]["/api/search"]["get"].is_object());

    assert_eq!(srv.terminate().await, Some(0));

    // what serve stored is what `vigil search` reads
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "search",
            "a person arm wrestling",
            "--clip",
            &model,
            "--top",
            "2",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--format", "jsonl", "--threads", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}"); // two results and the summary
    assert_eq!(lines[0]["stream"], "arm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclip_service_stores_clips_for_search() {
    let data = tempfile::tempdir().unwrap();
    let model = shared("fixtures/clip/xclip_tiny");
    let args = [
        "--xclip", &model, "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--stride", "4",
    ];
    let srv = Served::start_model(data.path(), free_port(), &args, &[]).await;
    let r = add_arm_wrestling(&srv, "arm").send().await.unwrap();
    assert_eq!(r.status(), 201);
    let body = search_until(&srv, "q=a%20person%20arm%20wrestling", 1).await;
    assert!(body["model"].as_str().unwrap().starts_with("xclip:"));
    let hit = &body["results"][0];
    assert_eq!(hit["stream"], "arm");
    assert_eq!(hit["frames"], 8, "an X-CLIP window is one clip: {body}");
    let (status, info) = get(&srv.url("/api/streams/arm")).await;
    assert_eq!(status, 200);
    assert!(info["top"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| PROMPTS.contains(&t["label"].as_str().unwrap())));
    assert_eq!(srv.terminate().await, Some(0));
}

/// A service without a CLIP model says so (409 with a hint), on both search paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_without_clip_is_409() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start(ServiceConfig::default(), dir.path()).await;
    for path in ["/api/search?q=a%20person", "/api/windows/1/snapshot.jpg"] {
        let r = srv.get(path).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        expect_error(status, &body, 409, path);
        assert!(body["hint"].as_str().unwrap().contains("--clip"), "{body}");
    }
    srv.stop().await;
}
