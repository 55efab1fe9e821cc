//! File, fixture, live-source and failure-case tests of the `vigil` binary and the
//! GStreamer frame path (real decoding, real models from `../shared`).

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vigil_pipelines::frame_ring::{DropPolicy, FrameRing};
use vigil_pipelines::reconnect::{run_stream, StreamCtx};
use vigil_pipelines::resample::Rate;
use vigil_pipelines::source::{SourceSpec, StreamOptions};
use vigil_pipelines::status::StreamStatus;

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn carving_ice_native_fps_ends_carving_ice() {
    let r = run_vigil(
        &[
            "classify",
            &clip("carving_ice_172.mp4"),
            "--model",
            &k600_model(),
            "--labels",
            &k600_labels(),
            "--fps",
            "native",
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let f = r.final_of(Some("carving_ice_172"));
    assert_eq!(f["frames"], 131, "every frame of the 30 fps clip");
    assert_eq!(f["dropped"], 0, "files are never dropped");
    assert_eq!(r.final_top1(None), "carving ice");
}

#[test]
fn arm_wrestling_default_5fps_ends_arm_wrestling() {
    let r = run_vigil(
        &[
            "classify",
            &clip("arm_wrestling.mp4"),
            "--model",
            &k600_model(),
            "--labels",
            &k600_labels(),
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines = r.lines();
    let frames: Vec<_> = lines.iter().filter(|v| v.get("seq").is_some()).collect();
    assert_eq!(frames.len(), 50, "10 s at 5 fps");
    // per-frame records carry the documented fields
    for k in ["stream", "seq", "pts_ms", "ts", "top", "latency_ms"] {
        assert!(frames[0].get(k).is_some(), "missing {k}: {}", frames[0]);
    }
    // sampled by timestamp: ~200 ms apart
    let pts: Vec<f64> = frames
        .iter()
        .map(|v| v["pts_ms"].as_f64().unwrap())
        .collect();
    for w in pts.windows(2) {
        assert!((w[1] - w[0] - 200.0).abs() < 40.0, "{pts:?}");
    }
    assert_eq!(r.final_top1(Some("arm_wrestling")), "arm wrestling");
}

#[test]
fn cli_fixture_ends_arm_wrestling() {
    let fx = shared().join("fixtures/k600__arm_wrestling_5fps.safetensors");
    let r = run_vigil(
        &[
            "classify",
            fx.to_str().unwrap(),
            "--model",
            &k600_model(),
            "--labels",
            &k600_labels(),
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines = r.lines();
    assert_eq!(
        lines.iter().filter(|v| v.get("frame").is_some()).count(),
        50
    );
    let last = lines.last().unwrap();
    assert_eq!(last["final"], true);
    assert_eq!(last["frames"], 50);
    assert_eq!(last["top"][0]["label"], "arm wrestling");
    assert_eq!(last["top"][0]["index"], 11);
}

/// Write a fixture's frames as raw RGB and return (path, frame count, temp dir guard).
fn fixture_raw(
    fx: &vigil_engine::fixture::Fixture,
    n: usize,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames.raw");
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend_from_slice(fx.frame(i));
    }
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn pixel_fidelity_frames_identical_through_gstreamer() {
    gstreamer::init().unwrap();
    let fx = vigil_engine::fixture::Fixture::load(
        &shared().join("fixtures/k600__arm_wrestling_5fps.safetensors"),
    )
    .unwrap();
    let n = fx.len();
    let size = fx.size();
    let (_dir, raw) = fixture_raw(&fx, n);
    let spec = SourceSpec::parse(&format!(
        "gst:filesrc location={} ! rawvideoparse width={size} height={size} format=rgb framerate=5/1",
        raw.display()
    ))
    .unwrap();
    let ring = Arc::new(FrameRing::new(2, size * size * 3, DropPolicy::Block, None));
    let status = Arc::new(StreamStatus::default());
    let ctx = StreamCtx {
        name: "fidelity".into(),
        spec,
        opts: StreamOptions::new(size, Rate::Native),
        ring: ring.clone(),
        status: status.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let t = std::thread::spawn(move || run_stream(ctx));
    let mut got = 0;
    let end = Instant::now() + LIMIT;
    while Instant::now() < end {
        match ring.pop() {
            Some(f) => {
                assert!(
                    f.data() == fx.frame(got),
                    "frame {got} differs after GStreamer"
                );
                got += 1;
                ring.recycle(f);
            }
            None if status.phase().is_terminal() => break,
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    t.join().unwrap();
    assert!(status.take_error().is_none());
    assert_eq!(got, n);
}

#[test]
fn pixel_fidelity_logits_match_fixture_run() {
    // default rate: the 5 fps resampler keeps every frame of a 5/1 source
    let fxp = shared().join("fixtures/k600__arm_wrestling_5fps.safetensors");
    let fx = vigil_engine::fixture::Fixture::load(&fxp).unwrap();
    let (_dir, raw) = fixture_raw(&fx, fx.len());
    let src = format!(
        "gst:filesrc location={} ! rawvideoparse width=172 height=172 format=rgb framerate=5/1",
        raw.display()
    );
    let a = run_vigil(
        &[
            "classify",
            fxp.to_str().unwrap(),
            "--model",
            &k600_model(),
            "--logits",
        ],
        LIMIT,
    );
    let b = run_vigil(
        &["classify", &src, "--model", &k600_model(), "--logits"],
        LIMIT,
    );
    assert_eq!(a.code, Some(0), "{}", a.stderr);
    assert_eq!(b.code, Some(0), "{}", b.stderr);
    let la: Vec<_> = a
        .lines()
        .into_iter()
        .filter(|v| v.get("logits").is_some())
        .collect();
    let lb: Vec<_> = b
        .lines()
        .into_iter()
        .filter(|v| v.get("logits").is_some())
        .collect();
    assert_eq!(la.len(), fx.len());
    assert_eq!(lb.len(), fx.len());
    for (i, (x, y)) in la.iter().zip(&lb).enumerate() {
        let x = x["logits"].as_array().unwrap();
        let y = y["logits"].as_array().unwrap();
        let d = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p.as_f64().unwrap() - q.as_f64().unwrap()).abs())
            .fold(0.0, f64::max);
        assert!(d < 1e-4, "frame {i}: logits differ by {d}");
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn fast_live_source_drops_frames_with_flat_memory() {
    // a live source at 1000 fps, every frame wanted: far faster than inference
    let mut child = vigil()
        .args([
            "classify",
            "test:pattern=ball,fps=1000,width=172,height=172,num-buffers=6000",
            "--model",
            &k600_model(),
            "--fps",
            "native",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let pid = child.id();
    let mut samples = Vec::new();
    let end = Instant::now() + LIMIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "did not finish");
        if let Some(kb) = rss_kb(pid) {
            samples.push(kb);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stdout = reader.join().unwrap();
    let fin: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["final"] == true)
        .unwrap();
    let dropped = fin["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "expected drops: {fin}");
    assert!(samples.len() >= 10, "too few RSS samples");
    // after warm-up, memory stays flat while thousands of frames pass
    let warm = samples[samples.len() / 4];
    let peak = *samples[samples.len() / 4..].iter().max().unwrap();
    assert!(
        peak < warm + 16 * 1024,
        "RSS grew from {warm} kB to {peak} kB"
    );
    eprintln!(
        "frames {} dropped {dropped} rss warm {warm} kB peak {peak} kB",
        fin["frames"]
    );
}

#[test]
fn ctrl_c_drains_and_exits_cleanly() {
    let mut live = Live::spawn(&[
        "watch",
        "test:fps=30",
        "--model",
        &k600_model(),
        "--format",
        "jsonl",
    ]);
    assert!(
        live.wait_for(Duration::from_secs(30), |v| v.get("seq").is_some())
            .is_some(),
        "no frames"
    );
    let code = live.interrupt(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    // the final line of the stream was written while draining
    let fin = live.wait_for(Duration::from_secs(2), |v| v["final"] == true);
    assert!(fin.is_some(), "no final line after Ctrl-C");
}

fn assert_user_error(args: &[&str], needle: &str) {
    let r = run_vigil(args, LIMIT);
    assert_eq!(r.code, Some(2), "args {args:?}\nstderr: {}", r.stderr);
    let msg = r
        .stderr
        .lines()
        .find(|l| l.starts_with("vigil: "))
        .unwrap_or_else(|| panic!("no `vigil:` line in {}", r.stderr));
    assert!(msg.contains(" — "), "no hint in {msg}");
    assert!(
        msg.to_lowercase().contains(needle),
        "{msg:?} lacks {needle:?}"
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn error_bad_uri() {
    assert_user_error(
        &["classify", "foo://bar/baz", "--model", &k600_model()],
        "unsupported scheme",
    );
    assert_user_error(
        &["classify", "rtsp:///nohost", "--model", &k600_model()],
        "no host",
    );
    assert_user_error(
        &["classify", "/no/such/video.mp4", "--model", &k600_model()],
        "cannot open",
    );
}

#[test]
fn error_unreachable_host() {
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let t = Instant::now();
    assert_user_error(
        &["classify", &url, "--model", &k600_model()],
        "cannot reach",
    );
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn error_not_a_video_file() {
    assert_user_error(
        &["classify", &k600_labels(), "--model", &k600_model()],
        "not a playable video",
    );
}

#[test]
fn error_unsupported_codec() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unknown_codec.mp4");
    // same container, a codec FourCC nothing can decode
    let bytes = std::fs::read(clip("carving_ice_172.mp4")).unwrap();
    let pos = bytes.windows(4).position(|w| w == b"avc1").unwrap();
    let mut patched = bytes.clone();
    patched[pos..pos + 4].copy_from_slice(b"zzzz");
    std::fs::write(&path, patched).unwrap();
    assert_user_error(
        &["classify", path.to_str().unwrap(), "--model", &k600_model()],
        "codec",
    );
}

#[test]
fn error_bad_config_toml() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cameras.toml");
    std::fs::write(
        &p,
        "[[stream]]\nname = \"a\"\nuri = \"test:\"\nenter = 0.2\nexit = 0.6\n",
    )
    .unwrap();
    assert_user_error(
        &[
            "watch",
            "--config",
            p.to_str().unwrap(),
            "--model",
            &k600_model(),
        ],
        "config",
    );
    std::fs::write(&p, "[[stream]\nname = ").unwrap();
    assert_user_error(
        &[
            "watch",
            "--config",
            p.to_str().unwrap(),
            "--model",
            &k600_model(),
        ],
        "toml parse error",
    );
    std::fs::write(
        &p,
        "[[stream]]\nname = \"a\"\nuri = \"test:\"\nlabels = [\"no such action\"]\n",
    )
    .unwrap();
    assert_user_error(
        &[
            "watch",
            "--config",
            p.to_str().unwrap(),
            "--model",
            &k600_model(),
            "--labels",
            &k600_labels(),
        ],
        "not in the label file",
    );
}

#[test]
fn error_corrupt_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("corrupt.tflite");
    let mut bytes = std::fs::read(k600_model()).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&p, &bytes).unwrap();
    assert_user_error(
        &[
            "classify",
            &clip("carving_ice_172.mp4"),
            "--model",
            p.to_str().unwrap(),
        ],
        "cannot load model",
    );
    assert_user_error(
        &[
            "classify",
            &clip("carving_ice_172.mp4"),
            "--model",
            &k600_labels(),
        ],
        "cannot load model",
    );
}

#[test]
fn error_wrong_label_file() {
    let cattle = shared().join("models/cattle7_labels.txt");
    assert_user_error(
        &[
            "classify",
            &clip("carving_ice_172.mp4"),
            "--model",
            &k600_model(),
            "--labels",
            cattle.to_str().unwrap(),
        ],
        "labels",
    );
}

#[test]
fn inspect_prints_summary() {
    let r = run_vigil(&["inspect", &k600_model()], LIMIT);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stdout.trim().is_empty());
    let j = run_vigil(&["inspect", &k600_model(), "--json"], LIMIT);
    assert_eq!(j.code, Some(0), "{}", j.stderr);
    serde_json::from_str::<serde_json::Value>(&j.stdout).expect("inspect --json prints JSON");
}

#[test]
fn watch_file_emits_events() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cameras.toml");
    std::fs::write(
        &p,
        format!(
            "model = \"{}\"\nlabels = \"{}\"\n[[stream]]\nname = \"gym\"\nuri = \"{}\"\nenter = 0.6\nexit = 0.3\nlabels = [\"arm wrestling\"]\n",
            k600_model(),
            k600_labels(),
            clip("arm_wrestling.mp4")
        ),
    )
    .unwrap();
    let r = run_vigil(
        &[
            "watch",
            "--config",
            p.to_str().unwrap(),
            "--events-only",
            "--format",
            "jsonl",
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let ev: Vec<_> = r
        .lines()
        .into_iter()
        .filter(|v| v.get("event").is_some())
        .collect();
    assert_eq!(ev.len(), 2, "{}", r.stdout);
    assert_eq!(ev[0]["event"], "start");
    assert_eq!(ev[0]["label"], "arm wrestling");
    assert_eq!(ev[0]["stream"], "gym");
    assert_eq!(ev[1]["event"], "end");
    for k in ["score", "pts_ms", "ts"] {
        assert!(ev[0].get(k).is_some());
    }
}

#[test]
fn bad_source_among_several_fails_alone() {
    let r = run_vigil(
        &[
            "classify",
            &clip("carving_ice_172.mp4"),
            "/no/such/clip.mp4",
            &k600_labels(),
            "--model",
            &k600_model(),
            "--labels",
            &k600_labels(),
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert_eq!(r.final_top1(Some("carving_ice_172")), "carving ice");
    assert_eq!(
        r.stderr
            .lines()
            .filter(|l| l.starts_with("vigil: "))
            .count(),
        2,
        "{}",
        r.stderr
    );
}
