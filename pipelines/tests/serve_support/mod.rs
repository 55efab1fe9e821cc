//! Helpers of the `serve_*` integration tests: the sidecar run in-process on
//! 127.0.0.1:0 ([`TestServer`]), a scripted [`StreamControl`] for the tests that check the
//! service itself rather than the runtime, record builders, an SSE reader, and a real
//! mosquitto broker on a free loopback port ([`Broker`]).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_engine::Labels;
use vigil_pipelines::events::{EndReason, Event, EventConfig, EventKind};
use vigil_pipelines::redact::redact;
use vigil_pipelines::runtime::{
    EventRecord, LabelRecord, MetricsSnapshot, RuntimeEvent, StatusRecord, StreamInfo, TopK,
};
use vigil_pipelines::serve::control::{StreamControl, StreamDef};
use vigil_pipelines::serve::hub::HubInput;
use vigil_pipelines::serve::{Service, ServiceConfig};
use vigil_pipelines::status::StreamPhase;
use vigil_pipelines::PipelineError;

/// Class names of the scripted records.
pub const TEST_LABELS: [&str; 5] = ["archery", "boxing", "juggling balls", "other", "third"];

pub fn test_labels() -> Labels {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), TEST_LABELS.join("\n")).unwrap();
    Labels::load(f.path(), TEST_LABELS.len()).unwrap()
}

fn class(label: &str) -> usize {
    TEST_LABELS
        .iter()
        .position(|l| *l == label)
        .unwrap_or_else(|| panic!("{label} is not a test label"))
}

/// A [`StreamControl`] whose streams are entries in a list: every stream is `connected`,
/// `test:pattern=nosuch` is refused as a bad source, snapshots are set by the test. It
/// publishes `removed` like the runtime does.
#[derive(Default)]
pub struct ScriptedControl {
    pub streams: Mutex<Vec<StreamInfo>>,
    pub jpegs: Mutex<HashMap<String, Vec<u8>>>,
    pub not_ready: AtomicBool,
    pub added: Mutex<Vec<(StreamDef, EventConfig)>>,
    pub input: Mutex<Option<HubInput>>,
}

impl StreamControl for ScriptedControl {
    fn ready(&self) -> bool {
        !self.not_ready.load(Ordering::Relaxed)
    }
    fn streams(&self) -> Vec<StreamInfo> {
        self.streams.lock().unwrap().clone()
    }
    fn stream(&self, name: &str) -> Option<StreamInfo> {
        self.streams().into_iter().find(|s| s.name == name)
    }
    fn add(&self, def: &StreamDef, events: &EventConfig) -> vigil_pipelines::Result<()> {
        if def.uri.starts_with("test:pattern=nosuch") {
            return Err(PipelineError::BadSource {
                source_str: def.uri.clone(),
                why: "unknown pattern 'nosuch'".into(),
                hint: "use a videotestsrc pattern".into(),
            });
        }
        self.added
            .lock()
            .unwrap()
            .push((def.clone(), events.clone()));
        self.streams.lock().unwrap().push(StreamInfo {
            name: def.name.clone(),
            uri: redact(&def.uri),
            status: StreamPhase::Connected,
            fps: 5.0,
            frames: 0,
            dropped: 0,
            reconnects: 0,
            decoded: 0,
            native_fps: None,
            top: vec![],
            last_error: None,
            live: true,
        });
        Ok(())
    }
    fn remove(&self, name: &str) -> vigil_pipelines::Result<bool> {
        let mut s = self.streams.lock().unwrap();
        let n = s.len();
        s.retain(|x| x.name != name);
        self.jpegs.lock().unwrap().remove(name);
        let removed = s.len() < n;
        if removed {
            if let Some(input) = self.input.lock().unwrap().as_ref() {
                input.send(status(name, StreamPhase::Removed));
            }
        }
        Ok(removed)
    }
    fn snapshot_jpeg(&self, name: &str) -> vigil_pipelines::Result<Option<Vec<u8>>> {
        Ok(self.jpegs.lock().unwrap().get(name).cloned())
    }
    fn engine_metrics(&self) -> Option<MetricsSnapshot> {
        None
    }
}

/// A label record whose top class is `top1` (one of [`TEST_LABELS`]).
pub fn label(stream: &str, seq: u64, top1: &str, score: f32) -> RuntimeEvent {
    let c = class(top1);
    let others = (0..TEST_LABELS.len()).filter(|&i| i != c).take(2);
    let pairs =
        std::iter::once((c, score)).chain(others.zip([(1.0 - score) / 2.0, (1.0 - score) / 4.0]));
    RuntimeEvent::Label(LabelRecord {
        stream: Arc::from(stream),
        seq,
        pts_ns: seq * 200_000_000,
        ts: std::time::SystemTime::now(),
        latency: Duration::from_millis(35),
        top: TopK::from_pairs(pairs),
        logits: None,
    })
}

pub fn event(kind: EventKind, stream: &str, label: &str) -> RuntimeEvent {
    RuntimeEvent::Event(EventRecord {
        stream: Arc::from(stream),
        event: Event {
            kind,
            class: class(label),
            score: 0.7,
            pts_ns: 1_000_000_000,
            reason: (kind == EventKind::End).then_some(EndReason::BelowExit),
        },
        ts: std::time::SystemTime::now(),
    })
}

pub fn status(stream: &str, phase: StreamPhase) -> RuntimeEvent {
    RuntimeEvent::Status(StatusRecord {
        stream: Arc::from(stream),
        uri: Arc::from("test:"),
        phase,
        reason: None,
        frames: 0,
        dropped: 0,
        reconnects: 0,
        ts: std::time::SystemTime::now(),
    })
}

/// The service on 127.0.0.1:0, in this process.
pub struct TestServer {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub control: Arc<ScriptedControl>,
    pub input: Option<HubInput>,
    pub service: Arc<Service>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<vigil_pipelines::Result<()>>>,
    pub token: Option<String>,
}

impl TestServer {
    pub async fn start(cfg: ServiceConfig, dir: &Path) -> TestServer {
        let control = Arc::new(ScriptedControl::default());
        TestServer::start_with(cfg, dir, control).await
    }

    pub async fn start_with(
        cfg: ServiceConfig,
        dir: &Path,
        control: Arc<ScriptedControl>,
    ) -> TestServer {
        let service =
            Service::start(&cfg, dir, control.clone(), test_labels()).expect("service starts");
        *control.input.lock().unwrap() = Some(service.records().unwrap());
        for (name, r) in service.resume_streams().unwrap() {
            r.unwrap_or_else(|e| panic!("resume {name}: {e}"));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let input = service.records().unwrap();
        let service = Arc::new(service);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = service.clone();
        let task = tokio::spawn(async move {
            s.serve(listener, async {
                let _ = rx.await;
            })
            .await
        });
        TestServer {
            base: format!("http://{addr}"),
            addr,
            control,
            input: Some(input),
            service,
            stop: Some(tx),
            task: Some(task),
            token: cfg.token.clone(),
        }
    }

    pub fn send(&self, rec: RuntimeEvent) {
        assert!(self.input.as_ref().unwrap().send(rec));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let r = self.client().get(self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// GET `path` (with the token) and parse the JSON body.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    pub fn post_json(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let r = self
            .client()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        let r = self.client().delete(self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Stop serving, drain and close (bounded).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("server stops within 10 s of shutdown")
                .unwrap()
                .unwrap();
        }
        self.input = None;
        self.control.input.lock().unwrap().take();
        let service = Arc::try_unwrap(self.service)
            .ok()
            .expect("service no longer shared");
        tokio::time::timeout(Duration::from_secs(20), service.close())
            .await
            .expect("close within 20 s")
            .unwrap();
    }
}

/// One SSE message.
#[derive(Debug, Clone)]
pub struct SseMessage {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// Reads an SSE response body message by message.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    pub async fn open(req: reqwest::RequestBuilder) -> SseReader {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "SSE status");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        SseReader {
            resp,
            buf: String::new(),
        }
    }

    /// The next message (comments and keep-alives skipped), or `None` at the end or after
    /// `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<SseMessage> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            while let Some(cut) = self.buf.find("\n\n") {
                let block: String = self.buf[..cut].to_string();
                self.buf.drain(..cut + 2);
                let (mut event, mut id, mut data) = ("message".to_string(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    }
                }
                if !data.is_empty() {
                    return Some(SseMessage {
                        event,
                        id,
                        data: serde_json::from_str(&data).expect("SSE data is JSON"),
                    });
                }
            }
            match tokio::time::timeout_at(end, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// Wait (bounded) for a message matching `pred`.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&SseMessage) -> bool,
    ) -> Option<SseMessage> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.next(left).await {
                Some(m) if pred(&m) => return Some(m),
                Some(_) => {}
                None => return None,
            }
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real mosquitto broker (Debian's `mosquitto`) on 127.0.0.1:`port`, no persistence.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\n"),
        )
        .unwrap();
        let mut b = Broker {
            child: None,
            port,
            conf,
            _dir: dir,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("mosquitto is not installed: run `bash scripts/setup.sh` (apt packages mosquitto mosquitto-clients)")
            });
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto ({bin}): {e}"));
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < end,
                "mosquitto did not listen on 127.0.0.1:{} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kill the broker (its sockets close at once).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An MQTT subscriber (rumqttc) keeping every `(topic, payload, retained)` it received.
pub struct Subscriber {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<(String, String, bool)>,
    task: tokio::task::JoinHandle<()>,
    seen: Vec<(String, String, bool)>,
    /// `wait_for` looks at messages from here on (see [`Subscriber::mark`]).
    from: usize,
}

impl Subscriber {
    pub async fn start(port: u16, id: &str, topics: &[&str]) -> Subscriber {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut el) = AsyncClient::new(opts, 64);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for t in &topics {
                            let _ = client.subscribe(t.clone(), QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((
                            p.topic.clone(),
                            String::from_utf8_lossy(&p.payload).into_owned(),
                            p.retain,
                        ));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Subscriber {
            rx,
            task,
            seen: Vec::new(),
            from: 0,
        }
    }

    /// From now on, `wait_for` ignores what was received before.
    pub fn mark(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.seen.push(m);
        }
        self.from = self.seen.len();
    }

    /// Wait (bounded) for a message on `topic` whose payload satisfies `pred`, received
    /// since the last [`Subscriber::mark`].
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        topic: &str,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<(String, bool)> {
        let end = tokio::time::Instant::now() + limit;
        let mut i = self.from;
        loop {
            while i < self.seen.len() {
                let (t, p, retained) = &self.seen[i];
                i += 1;
                if t == topic && pred(p) {
                    return Some((p.clone(), *retained));
                }
            }
            match tokio::time::timeout_at(end, self.rx.recv()).await {
                Ok(Some(m)) => self.seen.push(m),
                _ => return None,
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `$VIGIL_SHARED/<rel>` (default `<workspace>/../shared`).
pub fn shared(rel: &str) -> String {
    let base = match std::env::var_os("VIGIL_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    base.join(rel).to_string_lossy().into_owned()
}

/// `vigil serve` as a child process.
pub struct Served {
    child: Child,
    pub base: String,
}

impl Served {
    /// `vigil serve` on the shared K600 int8 MoViNet.
    pub async fn start(data: &std::path::Path, port: u16, extra: &[&str]) -> Served {
        let model = shared("models/movinet_a0_stream_k600_int8.tflite");
        let labels = shared("models/kinetics600_labels.txt");
        Served::start_model(data, port, &["--model", &model, "--labels", &labels], extra).await
    }

    /// `vigil serve` with `model` flags (`--model …` or `--clip DIR --prompt …`).
    pub async fn start_model(
        data: &std::path::Path,
        port: u16,
        model: &[&str],
        extra: &[&str],
    ) -> Served {
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("serve")
            .args(model)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env(
                "VIGIL_LOG",
                std::env::var("VIGIL_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vigil serve");
        let s = Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", s.base)).await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(Instant::now() < end, "vigil serve not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    }

    pub fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    pub async fn json(&self, p: &str) -> Value {
        reqwest::get(self.url(p))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn metric(&self, line_prefix: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(line_prefix)
                    .map(|v| v.trim().parse::<f64>().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// SIGTERM, then the exit code (bounded).
    pub async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                Instant::now() < end,
                "vigil serve did not exit within 30 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
