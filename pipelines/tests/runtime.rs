//! The runtime driven in-process (no binary): add, query, remove and re-add streams,
//! subscriptions with their overflow policy, snapshots, per-stream event settings,
//! credential masking in the status API, and a draining shutdown. Sources are real
//! GStreamer pipelines (raw fixture frames through `rawvideoparse`, `videotestsrc`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vigil_engine::{Engine, EngineConfig, Labels, Model};
use vigil_pipelines::events::{EndReason, EventConfig, EventKind};
use vigil_pipelines::resample::Rate;
use vigil_pipelines::runtime::{
    Kinds, Overflow, Runtime, RuntimeEvent, RuntimeOptions, StreamSetup, SubscriptionOptions,
};
use vigil_pipelines::source::{SourceSpec, StreamOptions};
use vigil_pipelines::status::StreamPhase;

const LIMIT: Duration = Duration::from_secs(60);

fn model() -> Arc<Model> {
    Arc::new(Model::load(std::path::Path::new(&k600_model())).unwrap())
}

fn runtime(options: RuntimeOptions) -> Runtime {
    let engine = Engine::new(model(), &EngineConfig::default()).unwrap();
    Runtime::start(engine, options).unwrap()
}

fn labels() -> Labels {
    Labels::load(std::path::Path::new(&k600_labels()), 600).unwrap()
}

/// The arm-wrestling fixture's 50 frames as raw RGB in a temp file, and a `gst:` source
/// that plays them at 5 fps.
struct RawClip {
    _dir: tempfile::TempDir,
    source: String,
    frames: Vec<Vec<u8>>,
}

fn raw_clip() -> RawClip {
    let fx = vigil_engine::fixture::Fixture::load(
        &shared().join("fixtures/k600__arm_wrestling_5fps.safetensors"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames.raw");
    let frames: Vec<Vec<u8>> = (0..fx.len()).map(|i| fx.frame(i).to_vec()).collect();
    std::fs::write(&path, frames.concat()).unwrap();
    let s = fx.size();
    RawClip {
        _dir: dir,
        source: format!(
            "gst:filesrc location={} ! rawvideoparse width={s} height={s} format=rgb framerate=5/1",
            path.display()
        ),
        frames,
    }
}

fn setup(name: &str, source: &str, events: Option<EventConfig>) -> StreamSetup {
    StreamSetup {
        name: name.into(),
        source: SourceSpec::parse(source).unwrap(),
        options: StreamOptions::new(172, Rate::Native),
        events,
    }
}

/// Records until `pred` matches one (bounded).
fn until(
    sub: &vigil_pipelines::runtime::Subscription,
    mut pred: impl FnMut(&RuntimeEvent) -> bool,
) -> Vec<RuntimeEvent> {
    let end = Instant::now() + LIMIT;
    let mut got = Vec::new();
    while Instant::now() < end {
        match sub.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => {
                let stop = pred(&ev);
                got.push(ev);
                if stop {
                    return got;
                }
            }
            Err(true) => panic!("runtime ended early: {got:?}"),
            Err(false) => {}
        }
    }
    panic!("no matching record within {LIMIT:?}");
}

fn first_logits(events: &[RuntimeEvent], stream: &str) -> Vec<f32> {
    events
        .iter()
        .find_map(|e| match e {
            RuntimeEvent::Label(l) if &*l.stream == stream => l.logits.as_ref().map(|x| x.to_vec()),
            _ => None,
        })
        .expect("a label record with logits")
}

#[test]
fn removed_stream_frees_its_session_and_a_readded_name_starts_from_zero_state() {
    let clip = raw_clip();
    let rt = runtime(RuntimeOptions {
        labels: Some(labels()),
        ..Default::default()
    });
    let sub = rt.subscribe(SubscriptionOptions {
        overflow: Overflow::Block,
        logits: true,
        ..Default::default()
    });
    let info = rt.add_stream(setup("cam", &clip.source, None)).unwrap();
    assert_eq!(info.name, "cam");
    assert!(matches!(
        info.status,
        StreamPhase::Connecting | StreamPhase::Connected
    ));
    assert_eq!(
        rt.add_stream(setup("cam", &clip.source, None))
            .unwrap_err()
            .to_string(),
        "stream \"cam\" already exists — remove it first or pick another name"
    );
    let mut labels_seen = 0;
    let first = until(&sub, |e| {
        labels_seen += matches!(e, RuntimeEvent::Label(_)) as usize;
        labels_seen == 10
    });
    let a = first_logits(&first, "cam");
    let q = rt.stream("cam").unwrap();
    assert!(q.frames >= 10, "{q:?}");
    assert_eq!(q.status, StreamPhase::Connected);
    assert_eq!(q.top.len(), 5);
    assert!(q.uri.starts_with("gst:filesrc"));
    assert_eq!(rt.sessions(), 1);

    rt.remove_stream("cam").unwrap();
    assert_eq!(
        rt.sessions(),
        0,
        "the session is closed when remove returns"
    );
    assert!(rt.stream("cam").is_none());
    assert!(rt.remove_stream("cam").is_err());
    let removed = until(
        &sub,
        |e| matches!(e, RuntimeEvent::End(r) if &*r.stream == "cam"),
    );
    let RuntimeEvent::End(end) = removed.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(end.phase, StreamPhase::Removed);
    assert!(removed
        .iter()
        .any(|e| matches!(e, RuntimeEvent::Status(s) if s.phase == StreamPhase::Removed)));

    // the same name again: a new stream, zero state (first logits equal a fresh run's)
    rt.add_stream(setup("cam", &clip.source, None)).unwrap();
    let again = until(&sub, |e| matches!(e, RuntimeEvent::Label(l) if l.seq == 0));
    let b = first_logits(&again[again.len() - 1..], "cam");
    assert_eq!(a, b, "a re-added stream must start from zero state");
    let report = rt.shutdown().unwrap();
    assert_eq!(report.streams.len(), 1);
    assert_eq!(rt.sessions(), 0);
}

#[test]
fn slow_subscriber_loses_records_and_never_slows_inference() {
    let clip = raw_clip();
    let rt = runtime(RuntimeOptions::default());
    // never read, two records of room
    let slow = rt.subscribe(SubscriptionOptions {
        capacity: 2,
        ..Default::default()
    });
    let all = rt.subscribe(SubscriptionOptions {
        overflow: Overflow::Block,
        ..Default::default()
    });
    rt.add_stream(setup("clip", &clip.source, None)).unwrap();
    let got = until(&all, |e| matches!(e, RuntimeEvent::End(_)));
    let labels = got
        .iter()
        .filter(|e| matches!(e, RuntimeEvent::Label(_)))
        .count();
    assert_eq!(
        labels,
        clip.frames.len(),
        "the reading subscriber saw every frame"
    );
    assert!(slow.lost() >= labels as u64 - 2, "lost {}", slow.lost());
    assert_eq!(slow.pending(), 2);
    let m = rt.metrics();
    assert_eq!(
        m.batch_size.count, labels as u64,
        "one step per frame of one stream"
    );
    assert_eq!(m.frame_latency_seconds.count, labels as u64);
    assert!(m.step_seconds.sum > 0.0 && m.steps == labels as u64);
    assert_eq!((m.streams, m.sessions), (1, 0));
    rt.shutdown().unwrap();
    // after shutdown: what was buffered, then the end
    assert!(slow.recv().is_some() && slow.recv().is_some());
    assert!(slow.recv().is_none());
}

#[test]
fn snapshot_is_the_latest_delivered_frame() {
    let clip = raw_clip();
    let rt = runtime(RuntimeOptions::default());
    let sub = rt.subscribe(SubscriptionOptions::default());
    let mut s = setup("clip", &clip.source, None);
    s.options.looping = true;
    rt.add_stream(s).unwrap();
    until(&sub, |e| matches!(e, RuntimeEvent::Label(_)));
    let snap = rt
        .snapshot("clip", Duration::from_secs(10))
        .unwrap()
        .expect("a snapshot");
    assert_eq!((snap.width, snap.height), (172, 172));
    assert!(
        clip.frames.contains(&snap.rgb),
        "the snapshot is one of the clip's frames, unchanged"
    );
    let jpeg = snap.to_jpeg(85).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    assert!(rt.snapshot("nosuch", Duration::ZERO).is_err());
    rt.shutdown().unwrap();
}

#[test]
fn per_stream_event_settings_and_label_filter() {
    let clip = raw_clip();
    let labels = labels();
    let arm = (0..600)
        .find(|&i| labels.name(i) == "arm wrestling")
        .unwrap();
    let archery = (0..600).find(|&i| labels.name(i) == "archery").unwrap();
    let rt = runtime(RuntimeOptions {
        labels: Some(labels),
        ..Default::default()
    });
    let sub = rt.subscribe(SubscriptionOptions {
        kinds: Kinds::NO_LABELS,
        overflow: Overflow::Block,
        ..Default::default()
    });
    let ev = |classes| EventConfig {
        enter: 0.5,
        exit: 0.2,
        min_duration: Duration::from_millis(600),
        classes: Some(classes),
        ..Default::default()
    };
    rt.add_stream(setup("watch-arm", &clip.source, Some(ev(vec![arm]))))
        .unwrap();
    rt.add_stream(setup(
        "watch-archery",
        &clip.source,
        Some(ev(vec![archery])),
    ))
    .unwrap();
    let mut ends = 0;
    let got = until(&sub, |e| {
        ends += matches!(e, RuntimeEvent::End(_)) as usize;
        ends == 2
    });
    let events: Vec<_> = got
        .iter()
        .filter_map(|e| match e {
            RuntimeEvent::Event(r) => Some((r.stream.to_string(), r.event)),
            _ => None,
        })
        .collect();
    assert!(events.iter().all(|(s, _)| s == "watch-arm"), "{events:?}");
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].1.kind, EventKind::Start);
    assert_eq!(events[0].1.class, arm);
    // started only after 0.6 s above the threshold, dated at the onset
    assert!(events[0].1.pts_ns <= 2_000_000_000, "{events:?}");
    assert_eq!(events[1].1.reason, Some(EndReason::StreamEnded));
    rt.shutdown().unwrap();
}

#[test]
fn status_api_masks_credentials() {
    let port = free_port();
    let rt = runtime(RuntimeOptions::default());
    let sub = rt.subscribe(SubscriptionOptions {
        kinds: Kinds::NO_LABELS,
        ..Default::default()
    });
    let mut s = setup(
        "door",
        &format!("rtsp://admin:s3cret@127.0.0.1:{port}/cam"),
        None,
    );
    s.options.retry_initial = true;
    let info = rt.add_stream(s).unwrap();
    assert_eq!(info.uri, format!("rtsp://admin:***@127.0.0.1:{port}/cam"));
    let got = until(
        &sub,
        |e| matches!(e, RuntimeEvent::Status(s) if s.phase == StreamPhase::Reconnecting),
    );
    let RuntimeEvent::Status(st) = got.last().unwrap() else {
        unreachable!()
    };
    let reason = st.reason.clone().unwrap();
    assert!(reason.contains("connection refused"), "{reason}");
    let q = rt.stream("door").unwrap();
    assert_eq!(q.status, StreamPhase::Reconnecting);
    for text in [
        format!("{st:?}"),
        format!("{q:?}"),
        serde_json::to_string(&q).unwrap(),
    ] {
        assert!(!text.contains("s3cret"), "{text}");
    }
    rt.remove_stream("door").unwrap();
    rt.shutdown().unwrap();
}

#[test]
fn shutdown_drains_sends_final_records_and_closes_subscriptions() {
    let rt = runtime(RuntimeOptions::default());
    let sub = rt.subscribe(SubscriptionOptions {
        overflow: Overflow::Block,
        ..Default::default()
    });
    rt.add_stream(setup("live", "test:fps=30,width=172,height=172", None))
        .unwrap();
    until(&sub, |e| matches!(e, RuntimeEvent::Label(_)));
    let t = Instant::now();
    let handle = rt.stop_handle();
    handle.stop();
    assert!(rt.wait_idle(Some(Duration::from_secs(20))));
    rt.shutdown().unwrap();
    assert!(t.elapsed() < Duration::from_secs(20));
    let rest: Vec<_> = sub.iter().collect();
    let end = rest
        .iter()
        .find_map(|e| match e {
            RuntimeEvent::End(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a final record while draining");
    assert!(end.stopped, "{end:?}");
    assert!(end.frames > 0);
    assert!(rt.add_stream(setup("late", "test:", None)).is_err());
}
