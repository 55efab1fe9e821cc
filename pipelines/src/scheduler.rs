//! The cross-stream batch scheduler: [`Planner`] (pure batching decisions, unit-tested
//! directly) and [`Scheduler`] (owns the loop: pops frames from [`Lane`] rings, calls
//! [`Engine::step`] once per batch, hands logits to a [`FrameSink`]).
//!
//! Rules: at most one frame per stream per step; sessions advance in frame order; a batch
//! leaves when every stream worth waiting for has a frame, when it is full, or when the
//! oldest ready frame has waited `max_wait` — so a slow, dead or reconnecting stream never
//! stalls the others. Lanes are served round-robin when more are ready than fit a batch.
//! The loop allocates nothing per step: frame references live in a fixed array, ids and
//! logits in buffers sized once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::sync::{Parker, Unparker};
use vigil_engine::{Engine, SessionId};

use crate::frame_ring::{Frame, FrameRing};
use crate::source::{StreamState, StreamStatus};
use crate::{PipelineError, Result};

/// Largest batch one step takes (more streams are served over several steps).
pub const MAX_BATCH: usize = 64;

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_wait: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max_batch: 16,
            max_wait: Duration::from_millis(10),
        }
    }
}

/// Batching decisions, free of I/O and clocks (the caller passes `now`).
#[derive(Debug)]
pub struct Planner {
    policy: BatchPolicy,
    first_ready: Option<Instant>,
    cursor: usize,
}

impl Planner {
    pub fn new(policy: BatchPolicy) -> Planner {
        let max_batch = policy.max_batch.clamp(1, MAX_BATCH);
        Planner {
            policy: BatchPolicy {
                max_batch,
                ..policy
            },
            first_ready: None,
            cursor: 0,
        }
    }

    /// Decide whether a batch leaves now. `ready[i]`: lane i has a frame waiting;
    /// `live[i]`: lane i is running and may produce a frame soon (worth waiting for).
    /// On `true`, `out` holds the lanes of the batch (round-robin order).
    pub fn plan(
        &mut self,
        now: Instant,
        ready: &[bool],
        live: &[bool],
        out: &mut Vec<usize>,
    ) -> bool {
        out.clear();
        let n_ready = ready.iter().filter(|&&r| r).count();
        if n_ready == 0 {
            self.first_ready = None;
            return false;
        }
        let first = *self.first_ready.get_or_insert(now);
        let worth_waiting = ready.iter().zip(live).filter(|(&r, &l)| r || l).count();
        let go = n_ready >= self.policy.max_batch
            || n_ready >= worth_waiting
            || now.duration_since(first) >= self.policy.max_wait;
        if !go {
            return false;
        }
        let n = ready.len();
        let mut last = self.cursor;
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if ready[i] {
                out.push(i);
                last = i;
                if out.len() == self.policy.max_batch {
                    break;
                }
            }
        }
        self.cursor = (last + 1) % n.max(1);
        self.first_ready = None;
        true
    }

    /// How long the caller may sleep before the current wait expires.
    pub fn wait_hint(&self, now: Instant) -> Duration {
        match self.first_ready {
            Some(t) => self.policy.max_wait.saturating_sub(now.duration_since(t)),
            None => Duration::from_millis(5),
        }
    }
}

/// Receives the scheduler's results.
pub trait FrameSink {
    /// Logits for one frame of lane `lane`.
    fn on_frame(&mut self, lane: usize, name: &str, frame: &Frame, logits: &[f32]) -> Result<()>;
    /// Lane `lane`'s session was reset (reconnect or loop).
    fn on_reset(&mut self, lane: usize, name: &str) -> Result<()>;
    /// Lane `lane` ended (`error` when it failed).
    fn on_end(
        &mut self,
        lane: usize,
        name: &str,
        frames: u64,
        dropped: u64,
        error: Option<PipelineError>,
    ) -> Result<()>;
}

/// One stream as the scheduler sees it.
pub struct Lane {
    pub name: String,
    pub ring: Arc<FrameRing>,
    pub status: Arc<StreamStatus>,
    session: Option<SessionId>,
    generation: u64,
    frames: u64,
    done: bool,
}

impl Lane {
    pub fn new(name: String, ring: Arc<FrameRing>, status: Arc<StreamStatus>) -> Lane {
        Lane {
            name,
            ring,
            status,
            session: None,
            generation: 0,
            frames: 0,
            done: false,
        }
    }
    /// Frames this lane has fed to the engine.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

/// The scheduling loop; create it first so rings can be given its [`Scheduler::unparker`].
pub struct Scheduler {
    planner: Planner,
    parker: Parker,
}

impl Scheduler {
    pub fn new(policy: BatchPolicy) -> Scheduler {
        Scheduler {
            planner: Planner::new(policy),
            parker: Parker::new(),
        }
    }

    /// Wakes the scheduler when a frame is published.
    pub fn unparker(&self) -> Unparker {
        self.parker.unparker().clone()
    }

    /// Run until every lane has ended and its ring is drained.
    pub fn run(
        &mut self,
        engine: &mut Engine,
        lanes: &mut [Lane],
        sink: &mut dyn FrameSink,
    ) -> Result<()> {
        let classes = engine.classes();
        let max_batch = self.planner.policy.max_batch;
        for lane in lanes.iter_mut() {
            lane.session = Some(engine.open_session()?);
        }
        let n = lanes.len();
        let mut ready = vec![false; n];
        let mut live = vec![false; n];
        let mut batch: Vec<usize> = Vec::with_capacity(max_batch);
        let mut ids: Vec<SessionId> = Vec::with_capacity(max_batch);
        let mut held: Vec<Option<Frame>> = (0..n).map(|_| None).collect();
        let mut logits = vec![0f32; max_batch * classes];
        let span = tracing::info_span!("scheduler", streams = n);
        let _enter = span.enter();
        loop {
            let mut open = 0;
            for (i, lane) in lanes.iter_mut().enumerate() {
                ready[i] = false;
                live[i] = false;
                if lane.done {
                    continue;
                }
                let state = lane.status.state();
                let has = lane.ring.has_frame();
                if !has && matches!(state, StreamState::Ended | StreamState::Failed) {
                    lane.done = true;
                    if let Some(id) = lane.session.take() {
                        engine.close_session(id)?;
                    }
                    let err = lane.status.take_error();
                    sink.on_end(i, &lane.name, lane.frames, lane.ring.dropped(), err)?;
                    continue;
                }
                open += 1;
                ready[i] = has;
                live[i] = matches!(state, StreamState::Running | StreamState::Starting);
            }
            if open == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if !self.planner.plan(now, &ready, &live, &mut batch) {
                let wait = self.planner.wait_hint(now).max(Duration::from_micros(200));
                self.parker.park_timeout(wait);
                continue;
            }
            ids.clear();
            for &i in &batch {
                let lane = &mut lanes[i];
                let (Some(frame), Some(id)) = (lane.ring.pop(), lane.session) else {
                    continue;
                };
                if frame.generation != lane.generation {
                    lane.generation = frame.generation;
                    engine.reset_session(id)?;
                    tracing::info!(stream = %lane.name, generation = frame.generation, "session reset (reconnect or loop)");
                    sink.on_reset(i, &lane.name)?;
                }
                held[i] = Some(frame);
                ids.push(id);
            }
            let mut refs: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
            let mut k = 0;
            for &i in &batch {
                if let Some(f) = &held[i] {
                    refs[k] = f.data();
                    k += 1;
                }
            }
            let out = &mut logits[..k * classes];
            engine.step(&ids, &refs[..k], out)?;
            let mut k = 0;
            for &i in &batch {
                let Some(frame) = held[i].take() else {
                    continue;
                };
                let lane = &mut lanes[i];
                lane.frames += 1;
                let r = sink.on_frame(i, &lane.name, &frame, &out[k * classes..(k + 1) * classes]);
                lane.ring.recycle(frame);
                r?;
                k += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_batch: usize, wait_ms: u64) -> BatchPolicy {
        BatchPolicy {
            max_batch,
            max_wait: Duration::from_millis(wait_ms),
        }
    }

    #[test]
    fn waits_for_live_streams_then_times_out() {
        let mut p = Planner::new(policy(8, 10));
        let t0 = Instant::now();
        let mut out = Vec::new();
        // lane 0 ready, lane 1 live but not ready: wait
        assert!(!p.plan(t0, &[true, false], &[true, true], &mut out));
        assert!(!p.plan(
            t0 + Duration::from_millis(5),
            &[true, false],
            &[true, true],
            &mut out
        ));
        // max_wait elapsed: lane 0 goes alone, lane 1 does not stall it
        assert!(p.plan(
            t0 + Duration::from_millis(10),
            &[true, false],
            &[true, true],
            &mut out
        ));
        assert_eq!(out, vec![0]);
    }

    #[test]
    fn goes_at_once_when_all_live_lanes_ready() {
        let mut p = Planner::new(policy(8, 1000));
        let mut out = Vec::new();
        assert!(p.plan(
            Instant::now(),
            &[true, true, false],
            &[true, true, false],
            &mut out
        ));
        assert_eq!(out, vec![0, 1]);
    }

    #[test]
    fn dead_or_reconnecting_lane_not_waited_for() {
        let mut p = Planner::new(policy(8, 1000));
        let mut out = Vec::new();
        // lane 1 is reconnecting (not live, not ready)
        assert!(p.plan(
            Instant::now(),
            &[true, false, true],
            &[true, false, true],
            &mut out
        ));
        assert_eq!(out, vec![0, 2]);
    }

    #[test]
    fn full_batches_round_robin() {
        let mut p = Planner::new(policy(2, 1000));
        let mut out = Vec::new();
        let ready = [true; 5];
        let now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..5 {
            assert!(p.plan(now, &ready, &ready, &mut out));
            assert_eq!(out.len(), 2);
            seen.extend_from_slice(&out);
        }
        // every lane served twice in 5 batches of 2
        for lane in 0..5 {
            assert_eq!(seen.iter().filter(|&&l| l == lane).count(), 2, "{seen:?}");
        }
    }

    #[test]
    fn nothing_ready_nothing_planned() {
        let mut p = Planner::new(policy(4, 0));
        let mut out = vec![9];
        assert!(!p.plan(Instant::now(), &[false, false], &[true, true], &mut out));
        assert!(out.is_empty());
        assert_eq!(p.wait_hint(Instant::now()), Duration::from_millis(5));
    }
}
