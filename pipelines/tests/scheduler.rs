//! The scheduler against a real engine and hand-fed frame rings (no GStreamer): a dead
//! stream does not stall a live one, a generation change resets the session, and every
//! stream gets an end record.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vigil_engine::{Engine, EngineConfig, Model};
use vigil_pipelines::frame_ring::{DropPolicy, Frame, FrameRing};
use vigil_pipelines::scheduler::{BatchPolicy, FrameSink, Lane, Scheduler};
use vigil_pipelines::source::{StreamState, StreamStatus};
use vigil_pipelines::PipelineError;

#[derive(Default)]
struct Record {
    frames: Vec<(usize, u64, u64)>, // lane, seq, generation
    resets: Vec<usize>,
    ends: Vec<(usize, u64)>,
    elapsed: Vec<Duration>,
}

impl FrameSink for Record {
    fn on_frame(
        &mut self,
        lane: usize,
        _name: &str,
        frame: &Frame,
        logits: &[f32],
    ) -> Result<(), PipelineError> {
        assert!(logits.iter().all(|x| x.is_finite()));
        self.frames.push((lane, frame.seq, frame.generation));
        self.elapsed.push(frame.arrived.elapsed());
        Ok(())
    }
    fn on_reset(&mut self, lane: usize, _name: &str) -> Result<(), PipelineError> {
        self.resets.push(lane);
        Ok(())
    }
    fn on_end(
        &mut self,
        lane: usize,
        _name: &str,
        frames: u64,
        _dropped: u64,
        _e: Option<PipelineError>,
    ) -> Result<(), PipelineError> {
        self.ends.push((lane, frames));
        Ok(())
    }
}

#[test]
fn dead_stream_does_not_stall_live_one_and_reconnect_resets() {
    let model = Arc::new(Model::load(std::path::Path::new(&k600_model())).unwrap());
    let fb = model.frame_bytes();
    let mut engine = Engine::new(
        model,
        &EngineConfig {
            device: vigil_engine::Device::Cpu,
            threads: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut sched = Scheduler::new(BatchPolicy {
        max_batch: 8,
        max_wait: Duration::from_millis(10),
    });
    let live_ring = Arc::new(FrameRing::new(
        2,
        fb,
        DropPolicy::Block,
        Some(sched.unparker()),
    ));
    let dead_ring = Arc::new(FrameRing::new(
        2,
        fb,
        DropPolicy::DropOldest,
        Some(sched.unparker()),
    ));
    let live_status = Arc::new(StreamStatus::default());
    let dead_status = Arc::new(StreamStatus::default());
    live_status.set_state(StreamState::Running);
    dead_status.set_state(StreamState::Running); // connected, but never sends a frame

    let producer = {
        let (ring, status, dead) = (live_ring.clone(), live_status.clone(), dead_status.clone());
        std::thread::spawn(move || {
            let abort = AtomicBool::new(false);
            for seq in 0..20u64 {
                let mut f = ring.acquire(&abort).unwrap();
                f.data_mut().fill((seq * 10) as u8);
                f.seq = seq;
                f.generation = if seq < 10 { 0 } else { 1 }; // a "reconnect" half way
                f.arrived = Instant::now();
                ring.publish(f);
            }
            status.set_state(StreamState::Ended);
            std::thread::sleep(Duration::from_millis(200));
            dead.set_state(StreamState::Ended);
        })
    };
    let mut lanes = vec![
        Lane::new("live".into(), live_ring, live_status),
        Lane::new("dead".into(), dead_ring, dead_status),
    ];
    let mut rec = Record::default();
    let t = Instant::now();
    sched.run(&mut engine, &mut lanes, &mut rec).unwrap();
    producer.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(30));
    let live: Vec<_> = rec.frames.iter().filter(|f| f.0 == 0).collect();
    assert_eq!(live.len(), 20);
    assert!(
        live.windows(2).all(|w| w[1].1 == w[0].1 + 1),
        "frames in order"
    );
    assert_eq!(
        rec.resets,
        vec![0],
        "one session reset at the generation change"
    );
    assert_eq!(rec.ends.len(), 2);
    assert!(rec.ends.contains(&(0, 20)) && rec.ends.contains(&(1, 0)));
}
