//! Regression tests for issue 8 ("never hang, never hide, never leak"), each named after
//! what it guards, run against the real `vigil` binary. Each failed on the build before
//! its fix (run them against another build with `VIGIL_BIN=/path/to/vigil`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);

/// A running vigil whose stdout JSON lines arrive on a channel; stderr is either
/// collected or closed at once (`stderr_closed`).
struct Proc {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    fn spawn(args: &[&str], stderr_closed: bool, env: &[(&str, &str)]) -> Proc {
        let mut cmd = vigil();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn vigil");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let stderr = if stderr_closed {
            drop(err); // the reader of stderr is gone: every write to it fails (EPIPE)
            None
        } else {
            Some(std::thread::spawn(move || {
                std::io::read_to_string(err).unwrap_or_default()
            }))
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Wait (bounded) for a line matching `pred`; every line read is kept in `seen`.
    fn wait_for(&mut self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Some(v);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Wait (bounded) for the exit code; `None` if it did not exit in time (then killed).
    fn exit_within(&mut self, limit: Duration) -> Option<Option<i32>> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                // the rest of stdout
                while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(500)) {
                    self.seen.push(v);
                }
                return Some(st.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_of<'a>(v: &'a Value, stream: &str) -> Option<&'a str> {
    (v["stream"] == stream)
        .then(|| v["status"].as_str())
        .flatten()
}

/// Defect 1: with stderr closed (`2>&1 >out | true`), the first log line panicked the
/// camera's input thread (it vanished with no reconnect and no error) and then the Ctrl-C
/// handler, after which SIGINT and SIGTERM were ignored.
#[test]
fn closed_stderr_never_makes_vigil_unkillable() {
    let port = free_port();
    let cam = format!("rtsp://127.0.0.1:{port}/cam");
    let model = k600_model();
    let mut p = Proc::spawn(
        &[
            "watch",
            &cam,
            "test:fps=10",
            "--model",
            &model,
            "--events-only",
            "--format",
            "jsonl",
        ],
        true,
        &[("VIGIL_LOG", "warn")],
    );
    // the camera is down: it is retried, warnings go to the closed stderr, and the
    // stream reports its status instead of dying silently
    let name = format!("127.0.0.1:{port}/cam");
    let lost = p.wait_for(Duration::from_secs(30), |v| {
        status_of(v, &name) == Some("reconnecting")
    });
    // more retries happen (backoff 0.5, 1, 2 s), each logged to the closed stderr
    std::thread::sleep(Duration::from_secs(3));
    p.signal("-INT");
    let code = p.exit_within(Duration::from_secs(20));
    assert_eq!(
        code,
        Some(Some(0)),
        "SIGINT must stop vigil with a closed stderr"
    );
    assert!(lost.is_some(), "no status line: {:?}", p.seen);
    // the input thread survived the failed log writes: it kept retrying until stopped
    let ended = p
        .seen
        .iter()
        .find(|v| status_of(v, &name) == Some("ended"))
        .unwrap_or_else(|| panic!("no `ended` status: {:?}", p.seen));
    assert!(ended["reconnects"].as_u64() >= Some(3), "{ended}");
    assert!(
        p.seen
            .iter()
            .any(|v| v["final"] == true && v["stream"] == "test"),
        "the test stream drained: {:?}",
        p.seen
    );
}

/// Defect 1, the other signal: SIGTERM works too, as does a second signal mid-drain.
#[test]
fn sigterm_and_second_signal_always_work() {
    let model = k600_model();
    let mut p = Proc::spawn(
        &[
            "watch",
            "test:fps=10",
            "--model",
            &model,
            "--format",
            "jsonl",
        ],
        true,
        &[],
    );
    assert!(p.wait_for(LIMIT, |v| v.get("seq").is_some()).is_some());
    p.signal("-TERM");
    p.signal("-TERM");
    assert!(
        p.exit_within(Duration::from_secs(20)).is_some(),
        "SIGTERM ignored"
    );
}

/// Defect 2: a typo in a test: pattern panicked (set_property_from_str) and then hung
/// past SIGINT; bench --ingest panicked.
#[test]
fn unknown_test_pattern_exits_2_naming_the_valid_ones() {
    let model = k600_model();
    for args in [
        vec!["classify", "test:pattern=nosuch", "--model", &model],
        vec!["bench", "--ingest", "test:pattern=nosuch", "--seconds", "1"],
        vec!["watch", "test:pattern=nosuch", "--model", &model],
    ] {
        let r = run_vigil(&args, Duration::from_secs(30));
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("unknown pattern 'nosuch' (valid: "),
            "{args:?}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("smpte"), "{}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

/// Defect 3: one bad camera in cameras.toml (an unplugged USB camera, a typo) stopped
/// every camera with exit 2 before anything ran.
#[test]
fn one_bad_camera_in_config_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cameras.toml");
    std::fs::write(
        &cfg,
        format!(
            "model = \"{}\"\n\
             [[stream]]\nname = \"good\"\nuri = \"test:fps=10\"\n\
             [[stream]]\nname = \"usb\"\nuri = \"v4l2:///dev/video99\"\n\
             [[stream]]\nname = \"typo\"\nuri = \"rtps://10.0.0.5/cam\"\n",
            k600_model()
        ),
    )
    .unwrap();
    let mut p = Proc::spawn(
        &[
            "watch",
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "jsonl",
        ],
        false,
        &[],
    );
    let typo = p.wait_for(Duration::from_secs(30), |v| {
        status_of(v, "typo") == Some("failed")
    });
    let usb = p.wait_for(Duration::from_secs(30), |v| {
        status_of(v, "usb") == Some("reconnecting")
    });
    let good = p.wait_for(Duration::from_secs(30), |v| {
        v["stream"] == "good" && v.get("seq").is_some()
    });
    p.signal("-INT");
    let code = p.exit_within(Duration::from_secs(20));
    let stderr = p.stderr();
    assert!(
        good.is_some(),
        "the good camera did not run: {:?}\n{stderr}",
        p.seen
    );
    let usb = usb.expect("the USB camera reports that it is retried");
    assert!(
        usb["reason"]
            .as_str()
            .unwrap()
            .contains("/dev/video99 does not exist"),
        "{usb}"
    );
    let typo = typo.expect("the bad URI reports its error");
    assert!(
        typo["reason"]
            .as_str()
            .unwrap()
            .contains("unsupported scheme"),
        "{typo}"
    );
    assert_eq!(
        code,
        Some(Some(2)),
        "a failed stream makes the exit status 2: {stderr}"
    );
    assert!(stderr.contains("rtps"), "the error is printed: {stderr}");
}

/// Defect 6: camera passwords were printed in every retry warning and in errors.
#[test]
fn credentials_never_printed() {
    let port = free_port();
    let cam = format!("rtsp://admin:s3cret@127.0.0.1:{port}/cam");
    let model = k600_model();
    let mut p = Proc::spawn(
        &["watch", &cam, "--model", &model, "--format", "jsonl"],
        false,
        &[("VIGIL_LOG", "debug")],
    );
    let lost = p.wait_for(Duration::from_secs(30), |v| v["status"] == "reconnecting");
    p.signal("-INT");
    let _ = p.exit_within(Duration::from_secs(20));
    let stderr = p.stderr();
    let lost = lost.expect("a status line");
    assert_eq!(
        lost["uri"],
        format!("rtsp://admin:***@127.0.0.1:{port}/cam")
    );
    let stdout: String = p.seen.iter().map(|v| v.to_string()).collect();
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(
        stderr.contains("admin:***@"),
        "the logs still name the camera: {stderr}"
    );
    // one-shot errors too
    let r = run_vigil(
        &["classify", &cam, "--model", &model],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(2));
    assert!(
        !r.stderr.contains("s3cret") && !r.stdout.contains("s3cret"),
        "{}",
        r.stderr
    );
    let r = run_vigil(
        &[
            "classify",
            "rtsp://admin:s3cret@127.0.0.1:99999/cam",
            "--model",
            &model,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(2));
    assert!(!r.stderr.contains("s3cret"), "{}", r.stderr);
}

/// Defect 7: events could only be restricted to labels in cameras.toml.
#[test]
fn event_labels_flag_restricts_events() {
    let model = k600_model();
    let labels = k600_labels();
    let clip = clip("arm_wrestling.mp4");
    let run = |label: &str| {
        run_vigil(
            &[
                "watch",
                &clip,
                "--model",
                &model,
                "--labels",
                &labels,
                "--events-only",
                "--format",
                "jsonl",
                "--event-labels",
                label,
            ],
            LIMIT,
        )
    };
    let r = run("arm wrestling");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let ev: Vec<Value> = r
        .lines()
        .into_iter()
        .filter(|v| v.get("event").is_some())
        .collect();
    assert!(!ev.is_empty(), "{}", r.stdout);
    assert!(ev.iter().all(|v| v["label"] == "arm wrestling"), "{ev:?}");
    let r = run("archery");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.lines().iter().all(|v| v.get("event").is_none()),
        "{}",
        r.stdout
    );
    let r = run("no such action");
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("not in the label file"), "{}", r.stderr);
}

/// Defect 8: classify stopped by SIGTERM exited 0 with a final line that looked complete.
#[test]
fn classify_interrupted_marks_results_partial_and_exits_3() {
    let model = k600_model();
    let clip = clip("carving_ice_172.mp4");
    let mut p = Proc::spawn(
        &["classify", &clip, "--loop", "--model", &model],
        false,
        &[],
    );
    assert!(p.wait_for(LIMIT, |v| v.get("seq").is_some()).is_some());
    p.signal("-TERM");
    let code = p.exit_within(Duration::from_secs(20));
    let stderr = p.stderr();
    assert_eq!(code, Some(Some(3)), "{stderr}");
    let fin = p
        .seen
        .iter()
        .find(|v| v["final"] == true)
        .expect("a final line");
    assert_eq!(fin["interrupted"], true, "{fin}");
    assert_eq!(fin["reason"], "interrupted by signal", "{fin}");
    assert!(stderr.contains("partial"), "{stderr}");
}

/// Defect 8: a truncated file gave 23 of 50 frames with exit 0 and no warning.
#[test]
fn classify_truncated_file_is_partial() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("faststart.mp4");
    // moov first (as cameras and web exports write them): a cut file still plays
    gst_transform(
        &clip("arm_wrestling.mp4"),
        &["qtdemux", "h264parse", "mp4mux faststart=true"],
        &whole,
    );
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("truncated.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 46 / 100]).unwrap();
    let r = run_vigil(
        &["classify", cut.to_str().unwrap(), "--model", &k600_model()],
        LIMIT,
    );
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    let fin = r.final_of(Some("truncated"));
    assert_eq!(fin["interrupted"], true, "{fin}");
    let reason = fin["reason"].as_str().unwrap();
    assert!(reason.contains("of 10.0 s"), "{reason}");
    assert!(fin["frames"].as_u64().unwrap() < 30, "{fin}");
    assert!(r.stderr.contains("partial"), "{}", r.stderr);
    // the whole file is complete
    let r = run_vigil(
        &[
            "classify",
            whole.to_str().unwrap(),
            "--model",
            &k600_model(),
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.final_of(None).get("interrupted").is_none());
}

/// Defect 9: --threads 1000 was accepted on 2 cores (7.6 s per frame, slow to stop).
#[test]
fn threads_beyond_the_cores_are_capped_with_a_warning() {
    let r = run_vigil(
        &[
            "bench",
            "--model",
            &k600_model(),
            "--threads",
            "1000",
            "--seconds",
            "0.3",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("--threads 1000 is more than the"),
        "{}",
        r.stderr
    );
    let j: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(j["threads"].as_u64(), Some(cores), "{j}");
}

/// Defect 9: an unanswering server and an unreachable host were both "connection lost".
#[test]
fn unanswering_server_and_refused_port_reported_differently() {
    let model = k600_model();
    // accepts TCP connections (the kernel's backlog) and never says a word
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let r = run_vigil(
        &[
            "classify",
            &format!("rtsp://127.0.0.1:{port}/cam"),
            "--model",
            &model,
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("accepted the connection but did not answer RTSP"),
        "{}",
        r.stderr
    );
    drop(silent);
    let r = run_vigil(
        &[
            "classify",
            &format!("rtsp://127.0.0.1:{}/cam", free_port()),
            "--model",
            &model,
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("connection refused"), "{}", r.stderr);
    assert!(!r.stderr.contains("connection lost"), "{}", r.stderr);
}

/// Defect 9: a config without a model said "pass --model", not naming its `model =` key.
#[test]
fn config_without_model_hint_names_the_model_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cameras.toml");
    std::fs::write(&cfg, "[[stream]]\nname = \"a\"\nuri = \"test:\"\n").unwrap();
    let r = run_vigil(
        &["watch", "--config", cfg.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("model = "), "{}", r.stderr);
    assert!(r.stderr.contains("cameras.toml"), "{}", r.stderr);
}

/// Defect 9: `classify test:` never ended, and said nothing about it.
#[test]
fn classify_endless_source_requires_a_duration() {
    let model = k600_model();
    let t = Instant::now();
    let r = run_vigil(
        &["classify", "test:", "--model", &model],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("never ends"), "{}", r.stderr);
    assert!(r.stderr.contains("--duration"), "{}", r.stderr);
    assert!(t.elapsed() < Duration::from_secs(20));
    // with a duration it ends by itself, complete
    let r = run_vigil(
        &[
            "classify",
            "test:fps=10",
            "--duration",
            "1.5",
            "--model",
            &model,
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let fin = r.final_of(Some("test"));
    assert!(fin["frames"].as_u64().unwrap() >= 3, "{fin}");
    assert!(fin.get("interrupted").is_none(), "{fin}");
}
