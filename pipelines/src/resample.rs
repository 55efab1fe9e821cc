//! Model-rate resampling by timestamps: [`Rate`] (what the user asked for) and
//! [`Resampler`] (which frames to keep).
//!
//! MoViNet stream models are trained at a fixed frame rate (5 fps for A0–A2), so a 30 fps
//! camera must be thinned to that rate. Frames are chosen by presentation timestamp, not by
//! counting: a frame is kept when its PTS reaches the next sampling instant, and the instants
//! advance on a regular grid. Variable frame rate, missing frames and PTS jumps all work; a PTS
//! that goes backwards (loop, reconnect, discontinuity) restarts the grid.
//!
//! [`AtomicResampler`] is the same logic in atomics, for a GStreamer pad probe (which must be
//! `Fn + Sync`); only the one streaming thread writes it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Frames with a PTS this close before a sampling instant count as reaching it
/// (absorbs rounding of 1/30 s style timestamps).
const TOLERANCE_NS: u64 = 1_000_000;

/// The rate frames are fed to the model at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Every decoded frame.
    Native,
    /// This many frames per second, chosen by timestamp.
    Fps(f64),
}

impl Rate {
    /// Sampling interval in nanoseconds, `None` for [`Rate::Native`].
    pub fn interval_ns(self) -> Option<u64> {
        match self {
            Rate::Native => None,
            Rate::Fps(f) if f > 0.0 && f.is_finite() => Some((1e9 / f).round() as u64),
            Rate::Fps(_) => None,
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        if s.eq_ignore_ascii_case("native") {
            return Ok(Rate::Native);
        }
        match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() && f <= 1000.0 => Ok(Rate::Fps(f)),
            _ => Err(format!(
                "invalid frame rate {s:?}: use a number of frames per second (e.g. 5) or `native`"
            )),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Native => f.write_str("native"),
            Rate::Fps(x) => write!(f, "{x} fps"),
        }
    }
}

/// Decides, frame by frame, which timestamps to keep.
#[derive(Debug, Clone)]
pub struct Resampler {
    interval_ns: Option<u64>,
    next_due: Option<u64>,
    last_pts: Option<u64>,
}

impl Resampler {
    pub fn new(rate: Rate) -> Resampler {
        Resampler {
            interval_ns: rate.interval_ns(),
            next_due: None,
            last_pts: None,
        }
    }

    /// Forget the grid: the next frame is kept and starts a new one.
    pub fn reset(&mut self) {
        self.next_due = None;
        self.last_pts = None;
    }

    /// Keep the frame with this PTS? Frames without a PTS are always kept (nothing to
    /// choose by).
    pub fn keep(&mut self, pts_ns: Option<u64>) -> bool {
        let (keep, next_due, last) = decide(self.interval_ns, self.next_due, self.last_pts, pts_ns);
        self.next_due = next_due;
        self.last_pts = last;
        keep
    }
}

/// The resampling rule: (keep, new next_due, new last_pts).
fn decide(
    interval: Option<u64>,
    next_due: Option<u64>,
    last: Option<u64>,
    pts: Option<u64>,
) -> (bool, Option<u64>, Option<u64>) {
    let (Some(interval), Some(pts)) = (interval, pts) else {
        return (true, next_due, pts.or(last));
    };
    let restart = match (next_due, last) {
        (None, _) => true,
        (Some(_), Some(l)) if pts < l => true, // went backwards: loop or discontinuity
        _ => false,
    };
    if restart {
        return (true, Some(pts.saturating_add(interval)), Some(pts));
    }
    let due = next_due.unwrap_or(0);
    if pts.saturating_add(TOLERANCE_NS) < due {
        return (false, Some(due), Some(pts));
    }
    // keep; advance the grid past this frame (skipping instants a gap jumped over)
    let mut next = due.saturating_add(interval);
    if next <= pts {
        let behind = (pts - next) / interval + 1;
        next = next.saturating_add(behind.saturating_mul(interval));
    }
    (true, Some(next), Some(pts))
}

const NONE: u64 = u64::MAX;

/// [`Resampler`] in atomics, for a pad probe closure (`Fn + Sync`). Single writer.
#[derive(Debug)]
pub struct AtomicResampler {
    interval_ns: Option<u64>,
    next_due: AtomicU64,
    last_pts: AtomicU64,
}

impl AtomicResampler {
    pub fn new(rate: Rate) -> AtomicResampler {
        AtomicResampler {
            interval_ns: rate.interval_ns(),
            next_due: AtomicU64::new(NONE),
            last_pts: AtomicU64::new(NONE),
        }
    }

    /// Same rule as [`Resampler::keep`].
    pub fn keep(&self, pts_ns: Option<u64>) -> bool {
        let opt = |v: u64| if v == NONE { None } else { Some(v) };
        let (keep, next, last) = decide(
            self.interval_ns,
            opt(self.next_due.load(Ordering::Relaxed)),
            opt(self.last_pts.load(Ordering::Relaxed)),
            pts_ns,
        );
        self.next_due.store(next.unwrap_or(NONE), Ordering::Relaxed);
        self.last_pts.store(last.unwrap_or(NONE), Ordering::Relaxed);
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(rate: Rate, pts_ms: &[f64]) -> Vec<usize> {
        let mut r = Resampler::new(rate);
        pts_ms
            .iter()
            .enumerate()
            .filter(|(_, &p)| r.keep(Some((p * 1e6) as u64)))
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn thirty_to_five_keeps_every_sixth() {
        let pts: Vec<f64> = (0..60).map(|i| i as f64 * 1000.0 / 30.0).collect();
        assert_eq!(
            kept(Rate::Fps(5.0), &pts),
            vec![0, 6, 12, 18, 24, 30, 36, 42, 48, 54]
        );
    }

    #[test]
    fn native_keeps_all() {
        let pts: Vec<f64> = (0..10).map(|i| i as f64 * 7.0).collect();
        assert_eq!(kept(Rate::Native, &pts).len(), 10);
    }

    #[test]
    fn twenty_eight_fps_gives_five_per_second() {
        let pts: Vec<f64> = (0..280).map(|i| i as f64 * 1000.0 / 28.0).collect();
        let k = kept(Rate::Fps(5.0), &pts);
        assert_eq!(k.len(), 50);
        // every kept frame is the first at or after its instant
        for (n, &i) in k.iter().enumerate() {
            let t = n as f64 * 200.0;
            assert!(
                pts[i] + 1.0 >= t && (i == 0 || pts[i - 1] < t - 1.0),
                "frame {i} for instant {t}"
            );
        }
    }

    #[test]
    fn variable_frame_rate_and_gaps() {
        // irregular arrivals, then a 1 s gap
        let pts = [
            0.0, 50.0, 90.0, 210.0, 260.0, 395.0, 405.0, 1500.0, 1550.0, 1700.0, 1710.0,
        ];
        assert_eq!(kept(Rate::Fps(5.0), &pts), vec![0, 3, 6, 7, 9]);
    }

    #[test]
    fn backwards_pts_restarts_grid() {
        let pts = [0.0, 200.0, 400.0, 10.0, 100.0, 210.0];
        assert_eq!(kept(Rate::Fps(5.0), &pts), vec![0, 1, 2, 3, 5]);
    }

    #[test]
    fn missing_pts_kept() {
        let mut r = Resampler::new(Rate::Fps(5.0));
        assert!(r.keep(None));
        assert!(r.keep(None));
    }

    #[test]
    fn atomic_matches_plain() {
        let pts: Vec<u64> = (0..500)
            .map(|i| (i as u64 * 37_000_000) % 9_000_000_000)
            .collect();
        let mut a = Resampler::new(Rate::Fps(5.0));
        let b = AtomicResampler::new(Rate::Fps(5.0));
        for &p in &pts {
            assert_eq!(a.keep(Some(p)), b.keep(Some(p)));
        }
    }

    #[test]
    fn parse_rate() {
        assert_eq!("native".parse::<Rate>().unwrap(), Rate::Native);
        assert_eq!("12.5".parse::<Rate>().unwrap(), Rate::Fps(12.5));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }
}
