//! `kill -9` of a running `vigil serve` loses no history up to the last event a client saw
//! acknowledged on SSE: the service (in a child process: this test binary's
//! `durable_service_helper`) emits start/end events as fast as it can, the test follows
//! them over SSE, kills the child with SIGKILL mid-run and reopens its store.

mod serve_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serve_support::*;
use vigil_pipelines::events::EventKind;
use vigil_pipelines::serve::store::{HistoryQuery, Store};
use vigil_pipelines::serve::ServiceConfig;

/// Not a test: the service the durability test kills (`--ignored --exact`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn durable_service_helper() {
    let Ok(dir) = std::env::var("VIGIL_TEST_DURABLE_DIR") else {
        return;
    };
    let srv = TestServer::start(ServiceConfig::default(), std::path::Path::new(&dir)).await;
    println!("listening {}", srv.addr);
    let mut i = 0u64;
    loop {
        let kind = if i.is_multiple_of(2) {
            EventKind::Start
        } else {
            EventKind::End
        };
        srv.send(event(
            kind,
            "cam",
            TEST_LABELS[(i / 2) as usize % TEST_LABELS.len()],
        ));
        i += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durable_service_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VIGIL_TEST_DURABLE_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let l = lines
            .next()
            .expect("the helper prints its address")
            .unwrap();
        // libtest prints "test name ... " on the same line
        if let Some((_, a)) = l.split_once("listening ") {
            break a.trim().to_string();
        }
    };
    let client = reqwest::Client::new();
    let mut sse =
        SseReader::open(client.get(format!("http://{addr}/api/events?kind=start,end"))).await;
    let mut seen = Vec::new();
    while seen.len() < 300 {
        let m = sse
            .next(Duration::from_secs(10))
            .await
            .expect("events arrive");
        seen.push((m.id.unwrap().parse::<i64>().unwrap(), m.data));
    }
    // SIGKILL mid-run: no shutdown, no checkpoint
    child.kill().unwrap();
    child.wait().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let last = seen.last().unwrap().0;
    let stored = store
        .history(&HistoryQuery {
            limit: 10_000,
            ..Default::default()
        })
        .unwrap();
    assert!(stored.first().unwrap().id >= last);
    for (id, data) in &seen {
        let e = stored
            .iter()
            .find(|e| e.id == *id)
            .unwrap_or_else(|| panic!("event {id} acknowledged on SSE is not in the store"));
        assert_eq!(e.fields.label, data["label"].as_str().unwrap());
        assert_eq!(e.fields.event, data["event"].as_str().unwrap());
        assert_eq!(e.fields.ts, data["ts"].as_str().unwrap());
    }
    println!(
        "{} events acknowledged on SSE, {} in the store after kill -9",
        seen.len(),
        stored.len()
    );
}
