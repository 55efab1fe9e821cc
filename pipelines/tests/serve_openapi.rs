//! `GET /api/openapi.json` checked against the running service by schemathesis (PyPI,
//! installed into `target/vigil-venv` by `scripts/setup.sh`): property-based requests to
//! every operation (the endless SSE stream excepted), with the token; no 5xx, responses as
//! described (status codes, content types, schemas), and the service still answers after.
//! The service runs on the scripted stream control: fuzzed stream URIs (`rtsp://<random
//! host>`) must never reach a real source, which would resolve and dial hosts off this
//! machine; the real runtime behind the same API is covered by `serve_streams.rs`.

mod serve_support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use serve_support::*;
use vigil_pipelines::serve::ServiceConfig;

fn schemathesis() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/vigil-venv/bin/schemathesis");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it installs schemathesis from PyPI)",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_holds_under_schemathesis() {
    let bin = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let token = "schemathesis-token-0123456789";
    let cfg = ServiceConfig {
        token: Some(token.into()),
        max_streams: 8,
        ..Default::default()
    };
    let srv = TestServer::start(cfg, dir.path()).await;
    srv.post_json("/api/streams", &json!({"name": "cam", "uri": "test:"}))
        .send()
        .await
        .unwrap();
    let url = srv.url("/api/openapi.json");
    let work = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .args(["run", &url, "--exclude-path", "/api/events", "--checks",
                   "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                   "--max-examples", "25", "--seed", "7", "--workers", "1", "--request-timeout", "10",
                   "--generation-database", "none", "--no-color"])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .current_dir(&work)
            .env("SCHEMATHESIS_HOOKS", "")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run schemathesis");
        let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let t_out = std::thread::spawn(move || { let mut s = String::new(); let _ = std::io::Read::read_to_string(&mut so, &mut s); s });
        let t_err = std::thread::spawn(move || { let mut s = String::new(); let _ = std::io::Read::read_to_string(&mut se, &mut s); s });
        let code = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st.code();
            }
            if t0.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        (code, t_out.join().unwrap(), t_err.join().unwrap(), t0.elapsed())
    })
    .await
    .unwrap();
    let (code, stdout, stderr, took) = out;
    println!("schemathesis took {took:?}\n{stdout}");
    assert_eq!(
        code,
        Some(0),
        "schemathesis found problems (or timed out):\n{stdout}\n{stderr}"
    );
    // and the service is still up and consistent
    assert_eq!(srv.get("/healthz").send().await.unwrap().status(), 200);
    assert!(srv
        .get("/api/streams")
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    srv.stop().await;
}
