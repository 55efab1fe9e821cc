//! The live page in a real browser: Debian's headless Chromium driven by chromedriver over
//! WebDriver (plain HTTP on 127.0.0.1), on the real `vigil serve` with the K600 model. It
//! adds a camera through the page's form, sees two tiles with labels, sparklines and
//! snapshots, removes one with its button, and leaves a screenshot in
//! `target/test-artifacts/serve_page.png`; on a CLIP service (the tiny fixture) its search
//! box finds stored windows with thumbnails (`serve_page_search.png`).

mod serve_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use serve_support::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver child process and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for bin in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run `bash scripts/setup.sh` (apt packages chromium chromium-driver)"
            );
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < end,
                "chromedriver did not answer within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let r = b.call("POST", "/session", caps).await;
        b.session = r["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        b
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            v["value"].get("error").is_none(),
            "WebDriver {method} {path}: {v}"
        );
        v["value"].clone()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }

    async fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Poll `script` until `pred` holds (bounded).
    async fn wait(&self, limit: Duration, script: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + limit;
        loop {
            let v = self.eval(script).await;
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < end, "page never got there; last: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.call("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    async fn close(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    /// Also after a failed assertion: stop chromedriver and the Chromium it started (the
    /// processes whose command line names this session's own profile directory).
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let profile = self._profile.path().to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&profile) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

const TILES: &str = "return [...document.querySelectorAll('.tile')].map(t => ({name: t.dataset.stream, labels: [...t.querySelectorAll('.labels li .label')].map(l => l.textContent), spark: t.querySelector('.spark polyline').getAttribute('points') || '', snapshot: t.querySelector('img').naturalWidth > 0}))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_adds_a_camera_and_shows_live_tiles() {
    // the real `vigil serve` with the K600 model; cameras are local test sources
    let data = tempfile::tempdir().unwrap();
    let srv = Served::start(data.path(), free_port(), &[]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(srv.url("/api/streams"))
        .json(&json!({"name": "yard", "uri": "test:pattern=ball"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let browser = Browser::start().await;
    browser.call("POST", "/url", json!({"url": srv.base})).await;
    browser
        .wait(Duration::from_secs(20), TILES, |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    browser.type_into("#add-name", "porch").await;
    browser.type_into("#add-uri", "test:pattern=smpte").await;
    browser.click("#add-submit").await;
    let tiles = browser
        .wait(Duration::from_secs(60), TILES, |v| {
            v.as_array().is_some_and(|a| {
                a.len() == 2
                    && a.iter().all(|t| {
                        t["labels"].as_array().unwrap().len() == 3
                            && t["spark"].as_str().unwrap().split(' ').count() >= 3
                            && t["snapshot"] == true
                    })
            })
        })
        .await;
    let names: Vec<&str> = tiles
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["yard", "porch"]);
    let porch: Value = http
        .get(srv.url("/api/streams/porch"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        porch["uri"], "test:pattern=smpte",
        "the form added it through the API"
    );
    let live = browser
        .eval("return document.querySelector('#live').textContent")
        .await;
    assert_eq!(live, "live");
    let shot = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts/serve_page.png");
    browser.screenshot(&shot).await;

    // a bad URI is shown with its hint; the remove button removes
    browser.type_into("#add-name", "bad").await;
    browser.type_into("#add-uri", "bogus://x").await;
    browser.click("#add-submit").await;
    browser
        .wait(
            Duration::from_secs(10),
            "return document.querySelector('#add-error').textContent",
            |v| v.as_str().is_some_and(|s| s.contains("bogus")),
        )
        .await;
    browser.eval("window.confirm = () => true; return 0").await;
    browser.click(".tile[data-stream='yard'] .remove").await;
    browser
        .wait(Duration::from_secs(10), TILES, |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert_eq!(
        http.get(srv.url("/api/streams/yard"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // search on a MoViNet service says what it needs
    browser.type_into("#search-q", "a dog").await;
    browser.click("#search-submit").await;
    browser
        .wait(
            Duration::from_secs(10),
            "return document.querySelector('#search-error').textContent",
            |v| v.as_str().is_some_and(|s| s.contains("--clip")),
        )
        .await;

    browser.close().await;
    assert_eq!(srv.terminate().await, Some(0));
}

const RESULTS: &str = "return [...document.querySelectorAll('#search-results li')].map(li => ({label: li.querySelector('.label').textContent, thumb: li.querySelector('img').naturalWidth > 0}))";

/// A CLIP service (the tiny random-weight model): the page's search box finds the
/// stored windows of a camera and shows their thumbnails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_searches_what_a_clip_service_saw() {
    let data = tempfile::tempdir().unwrap();
    let model = shared("fixtures/clip/clip_tiny");
    let args = [
        "--clip",
        &model,
        "--prompt",
        "a person arm wrestling",
        "--prompt",
        "an empty room",
        "--window",
        "1",
    ];
    let srv = Served::start_model(data.path(), free_port(), &args, &[]).await;
    let r = reqwest::Client::new()
        .post(srv.url("/api/streams"))
        .json(&json!({"name": "arm", "uri": shared("clips/arm_wrestling.mp4"), "fps": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // wait for stored windows before asking the page
    let end = Instant::now() + Duration::from_secs(40);
    while srv.json("/api/search?q=x").await["searched"]
        .as_u64()
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < end, "no windows stored within 40 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let browser = Browser::start().await;
    browser.call("POST", "/url", json!({"url": srv.base})).await;
    browser
        .type_into("#search-q", "a person arm wrestling")
        .await;
    browser.click("#search-submit").await;
    let results = browser
        .wait(Duration::from_secs(20), RESULTS, |v| {
            v.as_array()
                .is_some_and(|a| a.len() >= 2 && a.iter().all(|r| r["thumb"] == true))
        })
        .await;
    assert!(
        results[0]["label"].as_str().unwrap().starts_with("arm · "),
        "{results}"
    );
    let shot = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts/serve_page_search.png");
    browser.screenshot(&shot).await;
    browser.close().await;
    assert_eq!(srv.terminate().await, Some(0));
}
