//! Cross-stream batching decisions: [`Planner`] (which streams go into the next step, and
//! when) and [`Cadence`] (when a stream's next frame is due), both pure — the caller
//! passes the clock — and unit-tested directly. The runtime's worker
//! ([`crate::runtime`]) owns the loop that acts on them.
//!
//! Rules:
//! - at most one frame per stream per step (a session advances one frame at a time);
//! - a batch leaves at once when every stream that is *due* — whose next frame is
//!   expected before the batch's deadline — has a frame, when it is full, or when the
//!   oldest ready frame has waited `max_wait`. A stream that is not due (a 5 fps camera
//!   between frames, a reconnecting or dead one) is never waited for, so a fast stream
//!   never drops frames because of a slow one while there is compute to spare;
//! - a backlogged stream is ready again right after its step, so it runs again at once;
//! - when more streams are ready than fit a batch they are served round-robin.

use std::time::{Duration, Instant};

/// Default largest batch on the CPU (more streams are served over several steps).
pub const DEFAULT_MAX_BATCH: usize = 16;
/// Largest batch a step may take at all (GPUs batch thousands of streams per step).
pub const MAX_BATCH_LIMIT: usize = 65_536;

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_wait: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max_batch: DEFAULT_MAX_BATCH,
            max_wait: Duration::from_millis(10),
        }
    }
}

/// One stream as the planner sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneView {
    /// A frame is waiting.
    pub ready: bool,
    /// When the stream's next frame is expected (`None`: not expected — not connected,
    /// ended, or its cadence is unknown yet).
    pub next_frame_at: Option<Instant>,
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
        let max_batch = policy.max_batch.clamp(1, MAX_BATCH_LIMIT);
        Planner {
            policy: BatchPolicy {
                max_batch,
                ..policy
            },
            first_ready: None,
            cursor: 0,
        }
    }

    /// The policy in force (max_batch clamped to `1..=MAX_BATCH_LIMIT`).
    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    /// Decide whether a batch leaves now. On `true`, `out` holds the lanes of the batch
    /// (round-robin order).
    pub fn plan(&mut self, now: Instant, lanes: &[LaneView], out: &mut Vec<usize>) -> bool {
        out.clear();
        let n_ready = lanes.iter().filter(|l| l.ready).count();
        if n_ready == 0 {
            self.first_ready = None;
            return false;
        }
        let first = *self.first_ready.get_or_insert(now);
        let deadline = first + self.policy.max_wait;
        let go = n_ready >= self.policy.max_batch
            || now >= deadline
            || !lanes
                .iter()
                .any(|l| !l.ready && l.next_frame_at.is_some_and(|t| t <= deadline));
        if !go {
            return false;
        }
        let n = lanes.len();
        let mut last = self.cursor;
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if lanes[i].ready {
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

/// When a stream's next frame is due, from when its frames were published: the mean
/// interval (EMA) after the last publication. Pure: the caller feeds what the ring says.
#[derive(Debug, Clone, Default)]
pub struct Cadence {
    published: u64,
    last: Option<Instant>,
    interval: Option<Duration>,
}

impl Cadence {
    /// Weight of the newest interval in the running mean.
    const ALPHA: f64 = 0.25;

    /// The ring has published `published` frames in all, the last at `last`.
    pub fn observe(&mut self, published: u64, last: Option<Instant>) {
        if published == self.published {
            return;
        }
        if let (Some(prev), Some(now)) = (self.last, last) {
            let n = published.saturating_sub(self.published).max(1) as u32;
            let sample = now.saturating_duration_since(prev) / n;
            self.interval = Some(match self.interval {
                None => sample,
                Some(i) => i.mul_f64(1.0 - Self::ALPHA) + sample.mul_f64(Self::ALPHA),
            });
        }
        self.published = published;
        self.last = last;
    }

    /// Forget the history (a reconnect: the next frames come at a new pace).
    pub fn reset(&mut self) {
        self.last = None;
        self.interval = None;
    }

    /// When the next frame is expected; `None` until two frames have been seen. A frame
    /// overdue by more than two intervals is no longer expected (the source paused).
    pub fn next_frame_at(&self, now: Instant) -> Option<Instant> {
        let (last, interval) = (self.last?, self.interval?);
        let due = last + interval;
        (now <= due + interval * 2).then_some(due)
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

    fn ready() -> LaneView {
        LaneView {
            ready: true,
            next_frame_at: None,
        }
    }

    fn due_at(t: Instant) -> LaneView {
        LaneView {
            ready: false,
            next_frame_at: Some(t),
        }
    }

    fn idle() -> LaneView {
        LaneView::default()
    }

    /// Issue 8, defect 4: a 200 fps stream and a 5 fps camera. Between the camera's
    /// frames the fast stream must not wait for it (before the fix the planner waited
    /// `max_wait` for every live stream, and dropped 1,381 of 2,405 frames at 40% CPU).
    #[test]
    fn planner_does_not_wait_for_a_stream_that_is_not_due() {
        let mut p = Planner::new(policy(8, 10));
        let t0 = Instant::now();
        let mut out = Vec::new();
        let camera = due_at(t0 + Duration::from_millis(150));
        assert!(
            p.plan(t0, &[ready(), camera], &mut out),
            "waited for a camera not due"
        );
        assert_eq!(out, vec![0]);
        // the fast stream is backlogged: it runs again at once, step after step
        for k in 1..=5 {
            let now = t0 + Duration::from_millis(3 * k);
            assert!(p.plan(now, &[ready(), camera], &mut out));
            assert_eq!(out, vec![0]);
        }
    }

    #[test]
    fn planner_waits_for_a_due_stream_then_times_out() {
        let mut p = Planner::new(policy(8, 10));
        let t0 = Instant::now();
        let mut out = Vec::new();
        // lane 1's frame is expected in 4 ms, before the 10 ms deadline: wait for it
        let soon = due_at(t0 + Duration::from_millis(4));
        assert!(!p.plan(t0, &[ready(), soon], &mut out));
        assert!(!p.plan(t0 + Duration::from_millis(5), &[ready(), soon], &mut out));
        // it is late; at the deadline lane 0 goes alone
        assert!(p.plan(t0 + Duration::from_millis(10), &[ready(), soon], &mut out));
        assert_eq!(out, vec![0]);
        // and when it comes in time, both go together at once
        let t1 = t0 + Duration::from_millis(20);
        assert!(!p.plan(
            t1,
            &[ready(), due_at(t1 + Duration::from_millis(2))],
            &mut out
        ));
        assert!(p.plan(t1 + Duration::from_millis(2), &[ready(), ready()], &mut out));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn goes_at_once_when_every_due_lane_is_ready() {
        let mut p = Planner::new(policy(8, 1000));
        let mut out = Vec::new();
        assert!(p.plan(Instant::now(), &[ready(), ready(), idle()], &mut out));
        assert_eq!(out, vec![0, 1]);
    }

    #[test]
    fn dead_or_reconnecting_lane_not_waited_for() {
        let mut p = Planner::new(policy(8, 1000));
        let mut out = Vec::new();
        assert!(p.plan(Instant::now(), &[ready(), idle(), ready()], &mut out));
        assert_eq!(out, vec![0, 2]);
    }

    #[test]
    fn full_batches_round_robin() {
        let mut p = Planner::new(policy(2, 1000));
        let mut out = Vec::new();
        let lanes = [ready(); 5];
        let now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..5 {
            assert!(p.plan(now, &lanes, &mut out));
            assert_eq!(out.len(), 2);
            seen.extend_from_slice(&out);
        }
        // every lane served twice in 5 batches of 2
        for lane in 0..5 {
            assert_eq!(seen.iter().filter(|&&l| l == lane).count(), 2, "{seen:?}");
        }
    }

    #[test]
    fn thousands_of_streams_fit_one_batch() {
        let mut p = Planner::new(policy(4096, 10));
        let lanes = vec![ready(); 5000];
        let mut out = Vec::new();
        assert!(p.plan(Instant::now(), &lanes, &mut out));
        assert_eq!(out.len(), 4096);
        assert!(p.plan(Instant::now(), &lanes, &mut out));
        assert_eq!(out.len(), 4096, "the rest first, then round-robin");
        assert_eq!(out[0], 4096);
    }

    #[test]
    fn nothing_ready_nothing_planned() {
        let mut p = Planner::new(policy(4, 0));
        let mut out = vec![9];
        assert!(!p.plan(Instant::now(), &[idle(), idle()], &mut out));
        assert!(out.is_empty());
        assert_eq!(p.wait_hint(Instant::now()), Duration::from_millis(5));
    }

    #[test]
    fn cadence_predicts_the_next_frame() {
        let t0 = Instant::now();
        let mut c = Cadence::default();
        assert_eq!(c.next_frame_at(t0), None);
        for k in 0..5u64 {
            c.observe(k + 1, Some(t0 + Duration::from_millis(200 * k)));
        }
        let at = c.next_frame_at(t0 + Duration::from_millis(850)).unwrap();
        assert_eq!(at, t0 + Duration::from_millis(1000));
        // several frames published between two looks: the interval is per frame
        c.observe(8, Some(t0 + Duration::from_millis(1400)));
        assert_eq!(
            c.next_frame_at(t0 + Duration::from_millis(1450)),
            Some(t0 + Duration::from_millis(1600))
        );
        // long overdue: the source paused, nothing is expected
        assert_eq!(c.next_frame_at(t0 + Duration::from_secs(5)), None);
        c.reset();
        assert_eq!(c.next_frame_at(t0 + Duration::from_millis(1450)), None);
    }
}
