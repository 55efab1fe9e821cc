//! The runtime's worker thread: it owns the [`Engine`] and every stream's session and
//! event detector, and runs the loop — take commands (add, remove, subscribe, shutdown),
//! turn phase changes into status records, ask the [`Planner`] for a batch, step the
//! engine once, and publish labels and events to the subscribers.
//!
//! The per-frame path allocates nothing and takes no lock: frames are borrowed from the
//! rings, ids, frame references and logits live in buffers that only grow, records carry
//! `Arc<str>` names and fixed-size [`TopK`]s, and counters shared with queries are atomics.
//! Allocation happens on the control path only (a stream added, a status change, an event,
//! logits for a subscriber that asked for them).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam::channel::{Receiver, Sender};
use crossbeam::sync::Parker;
use vigil_engine::{Engine, SessionId};

use super::record::{
    EndRecord, EventRecord, LabelRecord, RecordKind, RuntimeEvent, StatsRecord, StatusRecord, TopK,
};
use super::stream::StreamEntry;
use super::subscription::{Delivery, Subscriber};
use super::Shared;
use crate::events::{softmax_into, EndReason, Event, EventConfig, EventDetector};
use crate::frame_ring::Frame;
use crate::scheduler::{Cadence, LaneView, Planner};
use crate::status::StreamPhase;
use crate::{PipelineError, Result};

/// What callers ask of the worker.
pub(crate) enum Command {
    Add {
        entry: Arc<StreamEntry>,
        events: Option<EventConfig>,
        ack: Sender<Result<()>>,
    },
    Remove {
        id: u64,
        ack: Sender<()>,
    },
    Subscribe(Subscriber),
    Shutdown,
}

/// How often fps is measured and finished ingest threads are joined.
const TICK: Duration = Duration::from_secs(1);
/// How long an ingest thread gets to finish after its stream ended, at shutdown.
const JOIN_WAIT: Duration = Duration::from_secs(5);

/// One stream as the worker sees it.
struct Lane {
    entry: Arc<StreamEntry>,
    session: Option<SessionId>,
    detector: Option<EventDetector>,
    /// connection generation of the last frame fed
    generation: u64,
    cadence: Cadence,
    last_logits: Vec<f32>,
    has_logits: bool,
    /// the detector was reset at a loss; the next generation change needs no reset of it
    detector_fresh: bool,
    frames_at_tick: u64,
    dropped_at_stats: u64,
    /// the last status published (a retry failing the same way is not news)
    last_status: Option<(StreamPhase, Option<String>)>,
}

/// Reuse one allocation for a step's borrowed frame slices: a `Vec<&[u8]>` cannot outlive
/// the frames it borrows, so between steps its (empty) buffer is kept with a `'static`
/// element type. Collecting an empty `vec::IntoIter` through `map` reuses its allocation
/// (in-place iteration; same element layout).
fn rebind<'a, 'b>(mut v: Vec<&'a [u8]>) -> Vec<&'b [u8]> {
    v.clear();
    v.into_iter().map(|_| -> &'b [u8] { &[] }).collect()
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    engine: Option<Engine>,
    classes: usize,
    planner: Planner,
    parker: Parker,
    commands: Receiver<Command>,
    lanes: Vec<Lane>,
    views: Vec<LaneView>,
    batch: Vec<usize>,
    ids: Vec<SessionId>,
    held: Vec<Frame>,
    refs: Vec<&'static [u8]>,
    logits: Vec<f32>,
    probs: Vec<f32>,
    events: Vec<Event>,
    subscribers: Vec<Subscriber>,
    reaping: Vec<JoinHandle<()>>,
    draining_since: Option<Instant>,
    last_tick: Instant,
    last_stats: Instant,
}

impl Worker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        engine: Option<Engine>,
        planner: Planner,
        parker: Parker,
        commands: Receiver<Command>,
    ) -> Worker {
        let classes = engine.as_ref().map(|e| e.classes()).unwrap_or(0);
        let cap = planner.policy().max_batch.min(256);
        Worker {
            shared,
            engine,
            classes,
            planner,
            parker,
            commands,
            lanes: Vec::new(),
            views: Vec::new(),
            batch: Vec::with_capacity(cap),
            ids: Vec::with_capacity(cap),
            held: Vec::with_capacity(cap),
            refs: Vec::with_capacity(cap),
            logits: vec![0f32; cap * classes],
            probs: Vec::with_capacity(classes),
            events: Vec::with_capacity(16),
            subscribers: Vec::new(),
            reaping: Vec::new(),
            draining_since: None,
            last_tick: Instant::now(),
            last_stats: Instant::now(),
        }
    }

    /// Run until shut down and drained. Returns the error that stopped it early, if any.
    pub(crate) fn run(mut self) -> Result<()> {
        let span = tracing::info_span!("runtime", device = %self.shared.device);
        let _enter = span.enter();
        let r = self.run_loop();
        if let Err(e) = &r {
            tracing::error!(error = %e, "runtime stopped by an error");
            for lane in std::mem::take(&mut self.lanes) {
                lane.entry.stop.store(true, Ordering::Release);
                lane.entry.ring.close();
                lane.entry.finished.store(true, Ordering::Release);
                if let Some(t) = lane.entry.thread.lock().take() {
                    self.reaping.push(t);
                }
            }
        }
        self.join_ingest_threads(JOIN_WAIT);
        // dropping the subscribers closes their channels: readers see the end
        self.subscribers.clear();
        self.shared.notify_idle();
        r
    }

    fn run_loop(&mut self) -> Result<()> {
        loop {
            self.take_commands()?;
            let now = Instant::now();
            self.follow_lanes(now)?;
            if let Some(since) = self.draining_since {
                if self.lanes.is_empty() {
                    return Ok(());
                }
                if now.duration_since(since) > self.shared.drain_timeout {
                    tracing::warn!(
                        streams = self.lanes.len(),
                        "drain timed out; ending the remaining streams"
                    );
                    for i in (0..self.lanes.len()).rev() {
                        self.finish_lane(i, StreamPhase::Ended, EndReason::Shutdown)?;
                    }
                    return Ok(());
                }
            }
            if now.duration_since(self.last_tick) >= TICK {
                self.tick(now);
            }
            if !self.planner.plan(now, &self.views, &mut self.batch) {
                let wait = self
                    .planner
                    .wait_hint(now)
                    .clamp(Duration::from_micros(200), Duration::from_millis(50));
                self.parker.park_timeout(wait);
                continue;
            }
            self.step()?;
        }
    }

    fn take_commands(&mut self) -> Result<()> {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Add { entry, events, ack } => {
                    let r = self.add_lane(entry, events);
                    let _ = ack.send(r);
                }
                Command::Remove { id, ack } => {
                    if let Some(i) = self.lanes.iter().position(|l| l.entry.id == id) {
                        self.finish_lane(i, StreamPhase::Removed, EndReason::StreamRemoved)?;
                    }
                    let _ = ack.send(());
                }
                Command::Subscribe(s) => self.subscribers.push(s),
                Command::Shutdown => {
                    if self.draining_since.is_none() {
                        tracing::info!(streams = self.lanes.len(), "shutting down; draining");
                        self.draining_since = Some(Instant::now());
                        for lane in &self.lanes {
                            lane.entry.stop.store(true, Ordering::Release);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn add_lane(&mut self, entry: Arc<StreamEntry>, events: Option<EventConfig>) -> Result<()> {
        if self.draining_since.is_some() {
            return Err(PipelineError::RuntimeStopped);
        }
        let session = match self.engine.as_mut() {
            Some(e) => Some(e.open_session()?),
            None => None,
        };
        self.update_sessions();
        let detector = match (&self.engine, events) {
            (Some(_), Some(cfg)) => Some(EventDetector::new(cfg, self.classes)),
            _ => None,
        };
        tracing::info!(stream = %entry.name, source = %entry.shown, "stream added");
        self.lanes.push(Lane {
            entry,
            session,
            detector,
            generation: 0,
            cadence: Cadence::default(),
            last_logits: vec![0f32; self.classes],
            has_logits: false,
            detector_fresh: true,
            frames_at_tick: 0,
            dropped_at_stats: 0,
            last_status: None,
        });
        Ok(())
    }

    fn update_sessions(&self) {
        let n = self.engine.as_ref().map(|e| e.session_count()).unwrap_or(0);
        self.shared.sessions.store(n, Ordering::Relaxed);
    }

    /// Phase changes → status records; ended lanes → final records; planner views.
    fn follow_lanes(&mut self, now: Instant) -> Result<()> {
        let mut i = 0;
        while i < self.lanes.len() {
            while let Some(change) = self.lanes[i].entry.status.next_change() {
                self.on_phase_change(i, change.phase, change.reason)?;
            }
            let lane = &self.lanes[i];
            let phase = lane.entry.status.phase();
            if phase.is_terminal() && !lane.entry.ring.has_frame() {
                let reason = if lane.entry.status.was_stopped() {
                    EndReason::Shutdown
                } else if phase == StreamPhase::Failed {
                    EndReason::StreamLost
                } else {
                    EndReason::StreamEnded
                };
                self.finish_lane(i, phase, reason)?;
                continue; // lane i is now another lane (swap_remove)
            }
            i += 1;
        }
        self.views.clear();
        for lane in &mut self.lanes {
            let ring = &lane.entry.ring;
            lane.cadence.observe(ring.published(), ring.last_publish());
            let expected = lane.entry.status.phase() == StreamPhase::Connected;
            self.views.push(LaneView {
                ready: ring.has_frame(),
                next_frame_at: if expected {
                    lane.cadence.next_frame_at(now)
                } else {
                    None
                },
            });
        }
        Ok(())
    }

    fn on_phase_change(
        &mut self,
        i: usize,
        phase: StreamPhase,
        reason: Option<String>,
    ) -> Result<()> {
        let lane = &mut self.lanes[i];
        let name = lane.entry.name.clone();
        tracing::debug!(stream = %name, status = %phase, reason = reason.as_deref().unwrap_or(""), "stream status");
        if phase == StreamPhase::Connecting {
            return Ok(());
        }
        if matches!(phase, StreamPhase::Reconnecting | StreamPhase::Failed) {
            // the stream is lost: close what is open now, not at the reconnect; frames
            // of the lost connection still queued are stale
            if phase == StreamPhase::Reconnecting {
                lane.entry.ring.clear();
            }
            lane.cadence.reset();
            if let Some(det) = &mut lane.detector {
                det.reset(EndReason::StreamLost, &mut self.events);
                lane.detector_fresh = true;
            }
            self.publish_events(i);
        }
        let status = Some((phase, reason));
        if self.lanes[i].last_status == status {
            return Ok(()); // another retry failing as the last one did
        }
        self.lanes[i].last_status = status.clone();
        let reason = status.and_then(|(_, r)| r);
        let rec = self.status_record(i, phase, reason);
        self.publish(RuntimeEvent::Status(rec));
        Ok(())
    }

    fn status_record(&self, i: usize, phase: StreamPhase, reason: Option<String>) -> StatusRecord {
        let e = &self.lanes[i].entry;
        StatusRecord {
            stream: e.name.clone(),
            uri: e.shown.clone(),
            phase,
            reason,
            frames: e.frames.load(Ordering::Relaxed),
            dropped: e.ring.dropped(),
            reconnects: e.status.reconnects.load(Ordering::Relaxed),
            ts: SystemTime::now(),
        }
    }

    /// Close lane `i`: events, session, final records; its ingest thread is joined later.
    fn finish_lane(&mut self, i: usize, phase: StreamPhase, reason: EndReason) -> Result<()> {
        let removed = phase == StreamPhase::Removed;
        {
            let lane = &mut self.lanes[i];
            if removed || reason == EndReason::Shutdown {
                lane.entry.stop.store(true, Ordering::Release);
            }
            if removed {
                lane.entry.ring.close();
                lane.entry.ring.clear();
            }
            if let Some(det) = &mut lane.detector {
                det.finish(reason, &mut self.events);
            }
        }
        self.publish_events(i);
        if removed {
            let rec = self.status_record(i, StreamPhase::Removed, None);
            self.publish(RuntimeEvent::Status(rec));
        }
        let lane = self.lanes.swap_remove(i);
        if let (Some(engine), Some(id)) = (self.engine.as_mut(), lane.session) {
            engine.close_session(id)?;
        }
        self.update_sessions();
        let e = &lane.entry;
        let end = EndRecord {
            stream: e.name.clone(),
            phase,
            frames: e.frames.load(Ordering::Relaxed),
            dropped: e.ring.dropped(),
            error: e.status.take_error().map(|err| err.to_string()),
            stopped: removed || e.status.was_stopped() || reason == EndReason::Shutdown,
            incomplete: e.status.incomplete(),
            last_logits: lane
                .has_logits
                .then(|| Arc::from(lane.last_logits.as_slice())),
            ts: SystemTime::now(),
        };
        tracing::info!(stream = %e.name, frames = end.frames, dropped = end.dropped, status = %phase, "stream finished");
        self.publish(RuntimeEvent::End(end));
        e.finished.store(true, Ordering::Release);
        if let Some(t) = e.thread.lock().take() {
            self.reaping.push(t);
        }
        self.shared.notify_idle();
        Ok(())
    }

    fn tick(&mut self, now: Instant) {
        let dt = now.duration_since(self.last_tick).as_secs_f64();
        self.last_tick = now;
        for lane in &mut self.lanes {
            let frames = lane.entry.frames.load(Ordering::Relaxed);
            let fps = (frames - lane.frames_at_tick) as f64 / dt.max(1e-3);
            lane.frames_at_tick = frames;
            lane.entry.fps_bits.store(fps.to_bits(), Ordering::Relaxed);
        }
        self.reaping.retain(|t| !t.is_finished());
        if let Some(every) = self.shared.stats_interval {
            if now.duration_since(self.last_stats) >= every {
                self.last_stats = now;
                for i in 0..self.lanes.len() {
                    let lane = &mut self.lanes[i];
                    let e = &lane.entry;
                    let dropped = e.ring.dropped();
                    let rec = StatsRecord {
                        stream: e.name.clone(),
                        phase: e.status.phase(),
                        frames: e.frames.load(Ordering::Relaxed),
                        dropped,
                        dropped_since: dropped - lane.dropped_at_stats,
                        fps: f64::from_bits(e.fps_bits.load(Ordering::Relaxed)),
                        reconnects: e.status.reconnects.load(Ordering::Relaxed),
                        ts: SystemTime::now(),
                    };
                    lane.dropped_at_stats = dropped;
                    self.publish(RuntimeEvent::Stats(rec));
                }
            }
        }
    }

    /// One engine step over the planned batch, then labels and events out.
    fn step(&mut self) -> Result<()> {
        let span = tracing::debug_span!("batch", size = self.batch.len());
        let _enter = span.enter();
        self.ids.clear();
        self.held.clear();
        let mut k = 0;
        while k < self.batch.len() {
            let i = self.batch[k];
            let lane = &mut self.lanes[i];
            let Some(frame) = lane.entry.ring.pop() else {
                self.batch.remove(k); // raced with a clear; rare, not per frame
                continue;
            };
            let restarted = frame.generation != lane.generation;
            if restarted {
                lane.generation = frame.generation;
                if let (Some(engine), Some(id)) = (self.engine.as_mut(), lane.session) {
                    engine.reset_session(id)?;
                }
                tracing::info!(stream = %lane.entry.name, generation = frame.generation, "session reset (reconnect or loop)");
                if !lane.detector_fresh {
                    if let Some(det) = &mut lane.detector {
                        det.reset(EndReason::StreamRestarted, &mut self.events);
                    }
                    lane.detector_fresh = true;
                }
            }
            if restarted {
                self.publish_events(i);
            }
            if let Some(id) = self.lanes[i].session {
                self.ids.push(id);
            }
            self.held.push(frame);
            k += 1;
        }
        let n = self.held.len();
        let classes = self.classes;
        if self.logits.len() < n * classes {
            self.logits.resize(n * classes, 0.0); // grows to the largest batch once
        }
        let started = Instant::now();
        if let Some(engine) = self.engine.as_mut() {
            let mut refs = rebind(std::mem::take(&mut self.refs));
            refs.extend(self.held.iter().map(|f| f.data()));
            let r = engine.step(&self.ids, &refs, &mut self.logits[..n * classes]);
            self.refs = rebind(refs);
            r?;
        }
        let metrics = &self.shared.metrics;
        metrics
            .step_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.batch_size.observe(n as f64);
        let want_logits = self.subscribers.iter().any(|s| s.options.logits);
        let want_labels = self
            .subscribers
            .iter()
            .any(|s| s.options.kinds.contains(RecordKind::Label));
        let now = SystemTime::now();
        for k in 0..n {
            let i = self.batch[k];
            let logits_range = k * classes..(k + 1) * classes;
            let (seq, pts_ns, arrived) = {
                let f = &self.held[k];
                (f.seq, f.pts_ns, f.arrived)
            };
            let entry = self.lanes[i].entry.clone();
            entry.frames.fetch_add(1, Ordering::Relaxed);
            let top = if classes > 0 {
                let logits = &self.logits[logits_range.clone()];
                softmax_into(logits, &mut self.probs);
                let lane = &mut self.lanes[i];
                lane.last_logits.copy_from_slice(logits);
                lane.has_logits = true;
                TopK::from_probs(&self.probs, self.shared.top_k)
            } else {
                TopK::default()
            };
            entry.top.store(&top);
            let latency = arrived.elapsed();
            self.shared
                .metrics
                .frame_latency_seconds
                .observe(latency.as_secs_f64());
            if entry.snapshot.wanted() {
                entry.snapshot.offer(&self.held[k]);
            }
            let lane = &mut self.lanes[i];
            if let Some(det) = &mut lane.detector {
                det.update(&self.probs, pts_ns, &mut self.events);
                lane.detector_fresh = false;
            }
            if want_labels {
                let rec = LabelRecord {
                    stream: entry.name.clone(),
                    seq,
                    pts_ns,
                    ts: now,
                    latency,
                    top,
                    logits: (want_logits && classes > 0)
                        .then(|| Arc::from(&self.logits[logits_range])),
                };
                self.publish(RuntimeEvent::Label(rec));
            }
            self.publish_events(i);
        }
        for (k, frame) in self.held.drain(..).enumerate() {
            self.lanes[self.batch[k]].entry.ring.recycle(frame);
        }
        Ok(())
    }

    /// Publish the events collected for lane `i`.
    fn publish_events(&mut self, i: usize) {
        if self.events.is_empty() {
            return;
        }
        let name = self.lanes[i].entry.name.clone();
        let ts = SystemTime::now();
        for k in 0..self.events.len() {
            let ev = self.events[k];
            tracing::info!(stream = %name, event = ev.kind.as_str(), class = ev.class, score = ev.score, "event");
            self.publish(RuntimeEvent::Event(EventRecord {
                stream: name.clone(),
                event: ev,
                ts,
            }));
        }
        self.events.clear();
    }

    /// Hand a record to every subscriber that wants it; drop the ones that are gone.
    fn publish(&mut self, ev: RuntimeEvent) {
        let kind = ev.kind();
        let give_up = self
            .draining_since
            .and_then(|t| t.checked_add(self.shared.drain_timeout));
        let mut gone = false;
        for s in &self.subscribers {
            if !s.wants(kind, ev.stream()) {
                continue;
            }
            let mut rec = ev.clone();
            if let (RuntimeEvent::Label(l), false) = (&mut rec, s.options.logits) {
                l.logits = None;
            }
            gone |= s.deliver(rec, give_up) == Delivery::Gone;
        }
        if gone {
            // re-check each: rare (a subscriber went away)
            self.subscribers.retain(|s| !s.is_gone());
        }
    }

    fn join_ingest_threads(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        for t in self.reaping.drain(..) {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("an ingest thread did not stop in time; leaving it behind");
            }
        }
    }
}
