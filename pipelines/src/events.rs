//! [`EventDetector`]: turns per-frame class scores into `start`/`end` events.
//!
//! Each watched class carries an exponential moving average (EMA) of its softmax score.
//! An event starts when the EMA rises to the `enter` threshold and ends when it falls below
//! the `exit` threshold (`exit < enter`): the gap between them is the hysteresis that keeps a
//! score hovering near one threshold from flickering. State is preallocated per stream;
//! [`EventDetector::update`] does not allocate once `out` has capacity.

/// Thresholds and smoothing of one stream's events.
#[derive(Debug, Clone, PartialEq)]
pub struct EventConfig {
    /// EMA score at which an event starts.
    pub enter: f32,
    /// EMA score below which a started event ends.
    pub exit: f32,
    /// EMA weight of the newest frame, in (0, 1].
    pub alpha: f32,
    /// Class indices to watch; `None` = every class.
    pub classes: Option<Vec<usize>>,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            enter: 0.5,
            exit: 0.3,
            alpha: 0.4,
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

/// One threshold crossing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub class: usize,
    /// The smoothed score at the crossing.
    pub score: f32,
}

/// Per-stream EMA and hysteresis state.
#[derive(Debug, Clone)]
pub struct EventDetector {
    cfg: EventConfig,
    watched: Vec<usize>,
    ema: Vec<f32>,
    active: Vec<bool>,
    primed: bool,
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
            primed: false,
        }
    }

    /// Forget the smoothing (after a reconnect); open events end.
    pub fn reset(&mut self, out: &mut Vec<Event>) {
        self.finish(out);
        self.ema.iter_mut().for_each(|e| *e = 0.0);
        self.primed = false;
    }

    /// Feed one frame's softmax scores (all classes); crossings are appended to `out`.
    pub fn update(&mut self, probs: &[f32], out: &mut Vec<Event>) {
        let a = self.cfg.alpha;
        for (k, &class) in self.watched.iter().enumerate() {
            let p = probs.get(class).copied().unwrap_or(0.0);
            let e = if self.primed {
                a * p + (1.0 - a) * self.ema[k]
            } else {
                p
            };
            self.ema[k] = e;
            if !self.active[k] && e >= self.cfg.enter {
                self.active[k] = true;
                out.push(Event {
                    kind: EventKind::Start,
                    class,
                    score: e,
                });
            } else if self.active[k] && e < self.cfg.exit {
                self.active[k] = false;
                out.push(Event {
                    kind: EventKind::End,
                    class,
                    score: e,
                });
            }
        }
        self.primed = true;
    }

    /// End every open event (stream ended).
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        for (k, &class) in self.watched.iter().enumerate() {
            if self.active[k] {
                self.active[k] = false;
                out.push(Event {
                    kind: EventKind::End,
                    class,
                    score: self.ema[k],
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

    fn run(det: &mut EventDetector, seq: &[f32]) -> Vec<(EventKind, usize)> {
        let mut out = Vec::new();
        for &p in seq {
            det.update(&[p, 1.0 - p], &mut out);
        }
        out.iter().map(|e| (e.kind, e.class)).collect()
    }

    #[test]
    fn hysteresis_no_flicker() {
        let cfg = EventConfig {
            enter: 0.6,
            exit: 0.4,
            alpha: 1.0,
            classes: Some(vec![0]),
        };
        let mut d = EventDetector::new(cfg, 2);
        // hovering between exit and enter after starting does not end the event
        let ev = run(&mut d, &[0.1, 0.7, 0.5, 0.45, 0.55, 0.41, 0.3, 0.5, 0.59]);
        assert_eq!(ev, vec![(EventKind::Start, 0), (EventKind::End, 0)]);
    }

    #[test]
    fn ema_smooths_single_spike() {
        let cfg = EventConfig {
            enter: 0.6,
            exit: 0.4,
            alpha: 0.3,
            classes: Some(vec![0]),
        };
        let mut d = EventDetector::new(cfg, 2);
        assert!(run(&mut d, &[0.0, 0.0, 1.0, 0.0, 0.0]).is_empty());
        let ev = run(&mut d, &[1.0; 10]);
        assert_eq!(ev, vec![(EventKind::Start, 0)]);
        let mut out = Vec::new();
        d.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, EventKind::End);
    }

    #[test]
    fn validate_thresholds() {
        let mut c = EventConfig::default();
        assert!(c.validate().is_ok());
        c.exit = 0.9;
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
