//! [`Metrics`]: the sidecar's Prometheus metrics, rendered as the text exposition format
//! (version 0.0.4) at `GET /metrics`.
//!
//! Nothing here runs per frame: the per-stream frame, drop and reconnect counters and the
//! step, batch and latency histograms are the runtime's own lock-free counters, read at
//! scrape time ([`StreamInfo`], [`MetricsSnapshot`]); the service's own counters (events,
//! sinks, SSE) are relaxed atomics. Names and units follow the Prometheus conventions
//! (`_total` counters, `_seconds`, base units, stable label values).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::runtime::{HistogramSnapshot, MetricsSnapshot, StreamInfo};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every metric the sidecar exposes besides the runtime's per-stream counters.
#[derive(Debug)]
pub struct Metrics {
    /// start/end events per stream: `[start, end]`. Touched once per event.
    events: Mutex<BTreeMap<String, [u64; 2]>>,
    /// Label records the hub could not take in time (its queue was full).
    pub records_dropped: Counter,
    /// Times an SSE client fell behind and missed label/status records.
    pub sse_lagged: Counter,
    pub sse_clients: Gauge,
    pub store_errors: Counter,
    pub mqtt_connected: Gauge,
    pub mqtt_published: Counter,
    /// Messages not sent because the broker was unreachable or the queue was full.
    pub mqtt_dropped: Counter,
    pub webhook_delivered: Counter,
    /// Given up after the last retry, or refused by the receiver (4xx).
    pub webhook_failed: Counter,
    /// Not queued: the bounded queue was full.
    pub webhook_dropped: Counter,
    pub webhook_queued: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            events: Mutex::new(BTreeMap::new()),
            records_dropped: Counter::default(),
            sse_lagged: Counter::default(),
            sse_clients: Gauge::default(),
            store_errors: Counter::default(),
            mqtt_connected: Gauge::default(),
            mqtt_published: Counter::default(),
            mqtt_dropped: Counter::default(),
            webhook_delivered: Counter::default(),
            webhook_failed: Counter::default(),
            webhook_dropped: Counter::default(),
            webhook_queued: Gauge::default(),
        }
    }

    /// Count one start (`start = true`) or end event of `stream`.
    pub fn count_event(&self, stream: &str, start: bool) {
        let mut ev = self.events.lock();
        let slot = match ev.get_mut(stream) {
            Some(s) => s,
            None => ev.entry(stream.to_string()).or_insert([0, 0]),
        };
        slot[usize::from(!start)] += 1;
    }

    /// Drop the series of a removed stream (a re-added name starts from zero).
    pub fn forget_stream(&self, stream: &str) {
        self.events.lock().remove(stream);
    }

    /// The whole exposition, with the runtime's per-stream counters from `streams` and its
    /// histograms from `engine`.
    pub fn render(&self, streams: &[StreamInfo], engine: Option<&MetricsSnapshot>) -> String {
        let mut out = String::with_capacity(4096 + streams.len() * 512);
        header(
            &mut out,
            "vigil_streams",
            "Streams the service runs.",
            "gauge",
        );
        let _ = writeln!(out, "vigil_streams {}", streams.len());
        header(
            &mut out,
            "vigil_stream_up",
            "1 while the stream delivers frames (connected), else 0.",
            "gauge",
        );
        for s in streams {
            let up = u8::from(s.status == crate::status::StreamPhase::Connected);
            let _ = writeln!(out, "vigil_stream_up{{stream=\"{}\"}} {up}", esc(&s.name));
        }
        let per_stream: [(&str, &str, StreamCounter); 3] = [
            (
                "vigil_frames_processed_total",
                "Frames the engine processed.",
                |s| s.frames,
            ),
            (
                "vigil_frames_dropped_total",
                "Frames dropped before the engine because it fell behind a live source.",
                |s| s.dropped,
            ),
            (
                "vigil_reconnects_total",
                "Times the stream reconnected after a loss.",
                |s| s.reconnects,
            ),
        ];
        for (name, help, get) in per_stream {
            header(&mut out, name, help, "counter");
            for s in streams {
                let _ = writeln!(out, "{name}{{stream=\"{}\"}} {}", esc(&s.name), get(s));
            }
        }
        header(
            &mut out,
            "vigil_events_total",
            "Action events per stream and kind (start, end).",
            "counter",
        );
        for (stream, [start, end]) in self.events.lock().iter() {
            let s = esc(stream);
            let _ = writeln!(
                out,
                "vigil_events_total{{stream=\"{s}\",kind=\"start\"}} {start}"
            );
            let _ = writeln!(
                out,
                "vigil_events_total{{stream=\"{s}\",kind=\"end\"}} {end}"
            );
        }
        let empty = HistogramSnapshot {
            buckets: Vec::new(),
            sum: 0.0,
            count: 0,
        };
        let (step, batch, latency) = match engine {
            Some(m) => (&m.step_seconds, &m.batch_size, &m.frame_latency_seconds),
            None => (&empty, &empty, &empty),
        };
        histogram(
            &mut out,
            "vigil_step_duration_seconds",
            "Duration of one batched engine step.",
            step,
        );
        histogram(
            &mut out,
            "vigil_batch_size",
            "Frames per engine step.",
            batch,
        );
        histogram(
            &mut out,
            "vigil_frame_latency_seconds",
            "From capture (live sources) or decode (files) to labels.",
            latency,
        );
        let counters: [(&str, &str, &Counter); 8] = [
            (
                "vigil_records_dropped_total",
                "Label records dropped because the service's record queue was full.",
                &self.records_dropped,
            ),
            (
                "vigil_sse_lagged_total",
                "Times an SSE client fell behind and skipped label/status records.",
                &self.sse_lagged,
            ),
            (
                "vigil_store_errors_total",
                "Failed writes to the event store.",
                &self.store_errors,
            ),
            (
                "vigil_mqtt_published_total",
                "MQTT messages handed to the client.",
                &self.mqtt_published,
            ),
            (
                "vigil_mqtt_dropped_total",
                "MQTT messages not sent (broker unreachable or queue full).",
                &self.mqtt_dropped,
            ),
            (
                "vigil_webhook_delivered_total",
                "Webhook POSTs acknowledged with 2xx.",
                &self.webhook_delivered,
            ),
            (
                "vigil_webhook_failed_total",
                "Webhook events given up after retries or refused (4xx).",
                &self.webhook_failed,
            ),
            (
                "vigil_webhook_dropped_total",
                "Webhook events dropped because the queue was full.",
                &self.webhook_dropped,
            ),
        ];
        for (name, help, c) in counters {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", c.get());
        }
        let gauges: [(&str, &str, &Gauge); 3] = [
            (
                "vigil_sse_clients",
                "Connected SSE clients.",
                &self.sse_clients,
            ),
            (
                "vigil_mqtt_connected",
                "1 while connected to the MQTT broker.",
                &self.mqtt_connected,
            ),
            (
                "vigil_webhook_queue",
                "Webhook events waiting to be delivered.",
                &self.webhook_queued,
            ),
        ];
        for (name, help, g) in gauges {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {}", g.get());
        }
        out
    }
}

/// A histogram from its cumulative buckets.
fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    header(out, name, help, "histogram");
    for (le, n) in &h.buckets {
        if le.is_finite() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// Reads one per-stream counter of the runtime.
type StreamCounter = fn(&StreamInfo) -> u64;

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.count_event("yard", true);
        m.count_event("yard", false);
        m.count_event("yard", true);
        let info = StreamInfo {
            name: "yard".into(),
            uri: "test:".into(),
            status: crate::status::StreamPhase::Connected,
            fps: 5.0,
            frames: 42,
            dropped: 1,
            reconnects: 2,
            decoded: 50,
            native_fps: None,
            top: vec![],
            last_error: None,
            live: true,
        };
        let batch = HistogramSnapshot {
            buckets: vec![(1.0, 0), (4.0, 1), (f64::INFINITY, 1)],
            sum: 3.0,
            count: 1,
        };
        let engine = MetricsSnapshot {
            steps: 1,
            step_seconds: batch.clone(),
            batch_size: batch.clone(),
            frame_latency_seconds: batch,
            sessions: 1,
            streams: 1,
        };
        let text = m.render(&[info], Some(&engine));
        for line in [
            "vigil_streams 1",
            "vigil_stream_up{stream=\"yard\"} 1",
            "vigil_frames_processed_total{stream=\"yard\"} 42",
            "vigil_frames_dropped_total{stream=\"yard\"} 1",
            "vigil_reconnects_total{stream=\"yard\"} 2",
            "vigil_events_total{stream=\"yard\",kind=\"start\"} 2",
            "vigil_events_total{stream=\"yard\",kind=\"end\"} 1",
            "vigil_batch_size_count 1",
            "vigil_batch_size_bucket{le=\"4\"} 1",
            "vigil_batch_size_bucket{le=\"+Inf\"} 1",
            "# TYPE vigil_step_duration_seconds histogram",
            "# TYPE vigil_frame_latency_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // every sample line belongs to a declared family
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(
                families.iter().any(|f| name == *f
                    || name
                        .strip_prefix(f)
                        .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))),
                "{l}"
            );
        }
        m.forget_stream("yard");
        assert!(!m.render(&[], None).contains("yard"));
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
