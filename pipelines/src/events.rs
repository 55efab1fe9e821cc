//! [`EventDetector`]: turns per-frame class scores into `start`/`end` events.
//!
//! Each watched class carries an exponential moving average (EMA) of its softmax score,
//! starting from zero (a stream's first frame, or its first after a reconnect, weighs no
//! more than any other). An event starts when the EMA has stayed at or above the `enter`
//! threshold for `min_duration` of stream time (the start is dated at the first frame
//! above it), and ends when the EMA falls below the `exit` threshold (`exit < enter`): the
//! gap is the hysteresis that keeps a score hovering near one threshold from flickering.
//! Events open when a stream is lost, ends, restarts or is removed are closed with that
//! [`EndReason`]. State is preallocated per stream; [`EventDetector::update`] does not
//! allocate once `out` has capacity.

use std::time::Duration;

/// Default time the smoothed score must stay above `enter` before an event starts.
pub const DEFAULT_MIN_DURATION: Duration = Duration::from_secs(1);

/// Thresholds and smoothing of one stream's events.
#[derive(Debug, Clone, PartialEq)]
pub struct EventConfig {
    /// EMA score at which an event starts.
    pub enter: f32,
    /// EMA score below which a started event ends.
    pub exit: f32,
    /// EMA weight of the newest frame, in (0, 1].
    pub alpha: f32,
    /// How long (stream time) the EMA must stay at or above `enter` before `start`.
    pub min_duration: Duration,
    /// Class indices to watch; `None` = every class.
    pub classes: Option<Vec<usize>>,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            enter: 0.5,
            exit: 0.3,
            alpha: 0.4,
            min_duration: DEFAULT_MIN_DURATION,
            classes: None,
        }
    }
}

impl EventConfig {
    /// Check the thresholds; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.exit >= 0.0 && self.exit < self.enter && self.enter <= 1.0) {
            return Err(format!(
                "thresholds enter={} exit={} must satisfy 0 <= exit < enter <= 1",
                self.enter, self.exit
            ));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(format!("smoothing {} must be in (0, 1]", self.alpha));
        }
        if self.min_duration > Duration::from_secs(3600) {
            return Err("minimum duration must be from 0 to 3600 seconds".into());
        }
        Ok(())
    }
}

/// Start or end of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Start,
    End,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::End => "end",
        }
    }
}

/// Why an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The smoothed score fell below `exit`.
    BelowExit,
    /// The stream was lost (camera down, network) — it may come back.
    StreamLost,
    /// The stream ended (end of file, or it failed for good).
    StreamEnded,
    /// The stream restarted (a looping file) and its state was reset.
    StreamRestarted,
    /// The stream was removed from the runtime.
    StreamRemoved,
    /// The runtime shut down.
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::BelowExit => "score below exit",
            EndReason::StreamLost => "stream lost",
            EndReason::StreamEnded => "stream ended",
            EndReason::StreamRestarted => "stream restarted",
            EndReason::StreamRemoved => "stream removed",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// One threshold crossing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub class: usize,
    /// The smoothed score at the crossing.
    pub score: f32,
    /// Stream time (PTS, ns) of the event: for a start, its first frame above `enter`.
    pub pts_ns: u64,
    /// Why an `end` happened (`None` for starts).
    pub reason: Option<EndReason>,
}

/// Per-stream EMA and hysteresis state.
#[derive(Debug, Clone)]
pub struct EventDetector {
    cfg: EventConfig,
    watched: Vec<usize>,
    ema: Vec<f32>,
    active: Vec<bool>,
    /// stream time at which the EMA rose to `enter` (a start not yet confirmed)
    pending: Vec<Option<u64>>,
    last_pts: u64,
}

impl EventDetector {
    pub fn new(cfg: EventConfig, classes: usize) -> EventDetector {
        let watched: Vec<usize> = match &cfg.classes {
            Some(c) => c.iter().copied().filter(|&i| i < classes).collect(),
            None => (0..classes).collect(),
        };
        let n = watched.len();
        EventDetector {
            cfg,
            watched,
            ema: vec![0.0; n],
            active: vec![false; n],
            pending: vec![None; n],
            last_pts: 0,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &EventConfig {
        &self.cfg
    }

    /// End open events with `reason` and forget the smoothing: the next frame starts
    /// from zero (after a loss, a restart).
    pub fn reset(&mut self, reason: EndReason, out: &mut Vec<Event>) {
        self.finish(reason, out);
        self.ema.iter_mut().for_each(|e| *e = 0.0);
    }

    /// Feed one frame's softmax scores (all classes) at stream time `pts_ns`; crossings
    /// are appended to `out`.
    pub fn update(&mut self, probs: &[f32], pts_ns: u64, out: &mut Vec<Event>) {
        let a = self.cfg.alpha;
        let min = self.cfg.min_duration.as_nanos() as u64;
        self.last_pts = pts_ns;
        for (k, &class) in self.watched.iter().enumerate() {
            let p = probs.get(class).copied().unwrap_or(0.0);
            let e = a * p + (1.0 - a) * self.ema[k];
            self.ema[k] = e;
            if !self.active[k] {
                if e >= self.cfg.enter {
                    let onset = *self.pending[k].get_or_insert(pts_ns);
                    if pts_ns.saturating_sub(onset) >= min {
                        self.active[k] = true;
                        self.pending[k] = None;
                        out.push(Event {
                            kind: EventKind::Start,
                            class,
                            score: e,
                            pts_ns: onset,
                            reason: None,
                        });
                    }
                } else {
                    self.pending[k] = None;
                }
            } else if e < self.cfg.exit {
                self.active[k] = false;
                out.push(Event {
                    kind: EventKind::End,
                    class,
                    score: e,
                    pts_ns,
                    reason: Some(EndReason::BelowExit),
                });
            }
        }
    }

    /// End every open event (and drop unconfirmed starts) with `reason`, dated at the
    /// last frame seen.
    pub fn finish(&mut self, reason: EndReason, out: &mut Vec<Event>) {
        for (k, &class) in self.watched.iter().enumerate() {
            self.pending[k] = None;
            if self.active[k] {
                self.active[k] = false;
                out.push(Event {
                    kind: EventKind::End,
                    class,
                    score: self.ema[k],
                    pts_ns: self.last_pts,
                    reason: Some(reason),
                });
            }
        }
    }

    /// Classes with an open event.
    pub fn active_classes(&self) -> impl Iterator<Item = usize> + '_ {
        self.watched
            .iter()
            .zip(&self.active)
            .filter(|(_, &a)| a)
            .map(|(&c, _)| c)
    }
}

/// Softmax of `logits` into `out` (resized to match; no allocation once sized).
pub fn softmax_into(logits: &[f32], out: &mut Vec<f32>) {
    out.resize(logits.len(), 0.0);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = (l - max).exp();
        sum += *o;
    }
    if sum > 0.0 {
        out.iter_mut().for_each(|o| *o /= sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = 200_000_000; // 5 fps

    fn cfg(enter: f32, exit: f32, alpha: f32, min_ms: u64) -> EventConfig {
        EventConfig {
            enter,
            exit,
            alpha,
            min_duration: Duration::from_millis(min_ms),
            classes: Some(vec![0]),
        }
    }

    fn run(det: &mut EventDetector, seq: &[f32]) -> Vec<(EventKind, usize)> {
        let mut out = Vec::new();
        for &p in seq {
            let t = det.last_pts + FRAME;
            det.update(&[p, 1.0 - p], t, &mut out);
        }
        out.iter().map(|e| (e.kind, e.class)).collect()
    }

    #[test]
    fn hysteresis_no_flicker() {
        let mut d = EventDetector::new(cfg(0.6, 0.4, 1.0, 0), 2);
        // hovering between exit and enter after starting does not end the event
        let ev = run(&mut d, &[0.1, 0.7, 0.5, 0.45, 0.55, 0.41, 0.3, 0.5, 0.59]);
        assert_eq!(ev, vec![(EventKind::Start, 0), (EventKind::End, 0)]);
    }

    #[test]
    fn ema_smooths_single_spike() {
        let mut d = EventDetector::new(cfg(0.6, 0.4, 0.3, 0), 2);
        assert!(run(&mut d, &[0.0, 0.0, 1.0, 0.0, 0.0]).is_empty());
        let ev = run(&mut d, &[1.0; 10]);
        assert_eq!(ev, vec![(EventKind::Start, 0)]);
        let mut out = Vec::new();
        d.finish(EndReason::StreamEnded, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, EventKind::End);
        assert_eq!(out[0].reason, Some(EndReason::StreamEnded));
    }

    /// Issue 8, defect 7: the EMA started at the first frame's score, so one spike on a
    /// stream's first frame (and after every reconnect) started an event.
    #[test]
    fn smoothing_starts_from_zero_single_spike_no_event() {
        let mut d = EventDetector::new(cfg(0.5, 0.3, 0.4, 0), 2);
        assert!(run(&mut d, &[0.9, 0.0]).is_empty());
        // after a reset (reconnect) too
        let mut out = Vec::new();
        d.reset(EndReason::StreamLost, &mut out);
        assert!(run(&mut d, &[0.9, 0.0]).is_empty());
    }

    /// Issue 8, defect 7: an event starts only after the score held for `min_duration`,
    /// and is dated at its onset.
    #[test]
    fn event_needs_min_duration_before_start() {
        let mut d = EventDetector::new(cfg(0.5, 0.3, 1.0, 1000), 2);
        // 0.8 s above enter (frames at 0.2..1.0 s), then below: no event
        assert!(run(&mut d, &[0.9, 0.9, 0.9, 0.9, 0.9, 0.1]).is_empty());
        // 1 s above: starts at the sixth frame, dated at the first
        let mut out = Vec::new();
        let t0 = d.last_pts;
        for k in 1..=6u64 {
            d.update(&[0.9, 0.1], t0 + k * FRAME, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, EventKind::Start);
        assert_eq!(out[0].pts_ns, t0 + FRAME);
    }

    #[test]
    fn lost_stream_closes_open_events_with_reason() {
        let mut d = EventDetector::new(cfg(0.5, 0.3, 1.0, 0), 2);
        assert_eq!(run(&mut d, &[0.9]), vec![(EventKind::Start, 0)]);
        let mut out = Vec::new();
        d.reset(EndReason::StreamLost, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, Some(EndReason::StreamLost));
        assert_eq!(out[0].reason.unwrap().as_str(), "stream lost");
        assert_eq!(d.active_classes().count(), 0);
    }

    #[test]
    fn validate_thresholds() {
        let mut c = EventConfig::default();
        assert!(c.validate().is_ok());
        c.exit = 0.9;
        assert!(c.validate().is_err());
        let c = EventConfig {
            min_duration: Duration::from_secs(7200),
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut out = Vec::new();
        softmax_into(&[1.0, 2.0, 3.0], &mut out);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(out[2] > out[1] && out[1] > out[0]);
    }
}
