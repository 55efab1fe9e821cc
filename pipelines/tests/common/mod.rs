//! Shared helpers for the pipelines integration tests: locating `../shared`, running the
//! built `vigil` binary with a time bound, reading its JSON lines, and a real
//! gst-rtsp-server on 127.0.0.1 run as a child process (so "stopping the server" really
//! closes its sockets).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `$VIGIL_SHARED`, else `<workspace>/../shared`.
pub fn shared() -> PathBuf {
    match std::env::var_os("VIGIL_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

pub fn clip(name: &str) -> String {
    shared()
        .join("clips")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

pub fn k600_model() -> String {
    shared()
        .join("models/movinet_a0_stream_k600_int8.tflite")
        .to_string_lossy()
        .into_owned()
}

pub fn k600_labels() -> String {
    shared()
        .join("models/kinetics600_labels.txt")
        .to_string_lossy()
        .into_owned()
}

/// The binary under test: this build's `vigil`, or `$VIGIL_BIN` (to check that a
/// regression test fails on an older build).
pub fn vigil() -> Command {
    let bin = std::env::var_os("VIGIL_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_vigil").into());
    let mut c = Command::new(bin);
    if std::env::var_os("VIGIL_LOG").is_none() {
        c.env("VIGIL_LOG", "warn");
    }
    c
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
    /// The `final` record of `stream` (or the only one).
    pub fn final_of(&self, stream: Option<&str>) -> Value {
        self.lines()
            .into_iter()
            .find(|v| v["final"] == true && stream.is_none_or(|s| v["stream"] == s))
            .unwrap_or_else(|| {
                panic!(
                    "no final line for {stream:?}\nstdout:\n{}\nstderr:\n{}",
                    tail(&self.stdout),
                    self.stderr
                )
            })
    }
    pub fn final_top1(&self, stream: Option<&str>) -> String {
        self.final_of(stream)["top"][0]["label"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Run `vigil args…`, killing it after `limit`.
pub fn run_vigil(args: &[&str], limit: Duration) -> Run {
    let mut child = vigil()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vigil {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// A running vigil whose stdout lines arrive on a channel with their arrival time.
pub struct Live {
    pub child: Child,
    pub lines: mpsc::Receiver<(Instant, Value)>,
}

impl Live {
    pub fn spawn(args: &[&str]) -> Live {
        let mut child = vigil()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vigil");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send((Instant::now(), v)).is_err() {
                        break;
                    }
                }
            }
        });
        Live { child, lines: rx }
    }

    /// Wait (bounded) for a line matching `pred`.
    pub fn wait_for(
        &self,
        limit: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<(Instant, Value)> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.lines.recv_timeout(left) {
                Ok((t, v)) if pred(&v) => return Some((t, v)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Send SIGINT and wait (bounded) for the exit code.
    pub fn interrupt(&mut self, limit: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("vigil did not exit within {limit:?} of SIGINT");
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gst-launch-1.0 -q filesrc location=SRC ! STEPS… ! filesink location=DST` (e.g. a
/// remux or transcode of a shared clip into a temp dir); panics when it fails.
pub fn gst_transform(src: &str, steps: &[&str], dst: &std::path::Path) {
    let mut args: Vec<String> = vec!["-q".into(), "filesrc".into(), format!("location={src}")];
    for s in steps {
        args.push("!".into());
        args.extend(s.split_whitespace().map(String::from));
    }
    args.extend([
        "!".into(),
        "filesink".into(),
        format!("location={}", dst.display()),
    ]);
    let status = Command::new("gst-launch-1.0")
        .args(&args)
        .status()
        .expect("gst-launch-1.0 (gstreamer1.0-tools) is needed");
    assert!(status.success(), "gst-launch-1.0 {args:?} failed");
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gst-rtsp-server child process serving `mounts` (`/name` → H.264 mp4 clip).
pub struct RtspServer {
    child: Child,
    pub port: u16,
}

impl RtspServer {
    /// Start the server in `test_exe`'s `rtsp_server_helper` test and wait until it listens.
    pub fn start(port: u16, mounts: &[(&str, String)]) -> RtspServer {
        let spec: Vec<String> = mounts.iter().map(|(n, p)| format!("{n}={p}")).collect();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "rtsp_server_helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("VIGIL_TEST_RTSP_PORT", port.to_string())
            .env("VIGIL_TEST_RTSP_MOUNTS", spec.join(";"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rtsp server helper");
        let server = RtspServer { child, port };
        let end = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "RTSP server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{mount}", self.port)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Body of the `rtsp_server_helper` test: serve until killed when the env asks for it.
pub fn rtsp_server_main() {
    use gstreamer as gst;
    use gstreamer_rtsp_server as rtsp;
    use gstreamer_rtsp_server::prelude::*;
    let (Ok(port), Ok(mounts)) = (
        std::env::var("VIGIL_TEST_RTSP_PORT"),
        std::env::var("VIGIL_TEST_RTSP_MOUNTS"),
    ) else {
        return;
    };
    gst::init().unwrap();
    let main_loop = gst::glib::MainLoop::new(None, false);
    let server = rtsp::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port);
    let points = server.mount_points().unwrap();
    for m in mounts.split(';').filter(|m| !m.is_empty()) {
        let (name, path) = m.split_once('=').unwrap();
        let factory = rtsp::RTSPMediaFactory::new();
        // `*.h265.mp4` clips are served as H.265, everything else as H.264
        let (parse, pay) = if path.ends_with(".h265.mp4") {
            ("h265parse", "rtph265pay")
        } else {
            ("h264parse", "rtph264pay")
        };
        factory.set_launch(&format!(
            "( filesrc location=\"{path}\" ! qtdemux ! {parse} ! {pay} name=pay0 pt=96 config-interval=1 )"
        ));
        factory.set_shared(false);
        points.add_factory(&format!("/{name}"), factory);
    }
    let _id = server.attach(None).unwrap();
    main_loop.run();
}
