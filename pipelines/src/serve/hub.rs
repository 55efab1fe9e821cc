//! [`Hub`]: where every [`StreamRecord`] of the running streams goes through the sidecar.
//! One thread takes records from a bounded queue ([`HubInput`]) and, in order,
//! 1. counts them ([`Metrics`]) and remembers each stream's latest top labels,
//! 2. commits start/end events to the [`Store`] — *before* anything is published, so an
//!    event a client saw on SSE is already on disk,
//! 3. hands them to the sinks ([`Sink`]: MQTT, webhooks — non-blocking, bounded),
//! 4. broadcasts them to SSE clients ([`Hub::subscribe`]).
//!
//! Drop policy: label records are offered with `try_send` and counted in
//! `vigil_records_dropped_total` when the queue is full; start/end/status records wait for
//! room (they are rare, and losing one would break the history). The hub never blocks on a
//! sink, so the slowest thing between a frame and its publication is an SQLite commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::control::TopScore;
use super::metrics::Metrics;
use super::record::{Published, RecordKind, StreamRecord};
use super::store::Store;
use crate::events::EventKind;
use crate::{PipelineError, Result};

/// How many top labels a stream object shows.
pub const TOP_SHOWN: usize = 3;

/// A consumer of published records that must never block the hub (MQTT, webhooks).
pub trait Sink: Send + Sync {
    /// Take `rec` (already stored) or count it as dropped; never wait.
    fn offer(&self, rec: &StreamRecord, published: &Arc<Published>);
}

/// Counts, stores and fans out stream records.
pub struct Hub {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    live: broadcast::Sender<Arc<Published>>,
    latest: Mutex<HashMap<String, Vec<TopScore>>>,
    sinks: Vec<Arc<dyn Sink>>,
}

/// The sending side of the hub's queue; clone it freely. The hub thread ends when every
/// clone is dropped.
#[derive(Clone)]
pub struct HubInput {
    tx: Sender<StreamRecord>,
    metrics: Arc<Metrics>,
}

impl HubInput {
    /// Queue a record (see the module's drop policy). Returns `false` if it was dropped.
    pub fn send(&self, rec: StreamRecord) -> bool {
        match rec {
            StreamRecord::Label(_) => match self.tx.try_send(rec) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.metrics.records_dropped.inc();
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
            _ => self.tx.send(rec).is_ok(),
        }
    }
}

impl Hub {
    /// `live_capacity`: records an SSE client may fall behind before it skips label/status
    /// records (start/end are replayed from the store).
    pub fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        sinks: Vec<Arc<dyn Sink>>,
        live_capacity: usize,
    ) -> Hub {
        let (live, _) = broadcast::channel(live_capacity.max(16));
        Hub {
            store,
            metrics,
            live,
            latest: Mutex::new(HashMap::new()),
            sinks,
        }
    }

    /// Start the hub thread with a queue of `capacity` records.
    pub fn spawn(self: &Arc<Self>, capacity: usize) -> Result<(HubInput, JoinHandle<()>)> {
        let (tx, rx): (Sender<StreamRecord>, Receiver<StreamRecord>) = channel::bounded(capacity);
        let hub = self.clone();
        let handle = std::thread::Builder::new()
            .name("vigil-hub".into())
            .spawn(move || {
                let span = tracing::info_span!("hub");
                let _enter = span.enter();
                while let Ok(rec) = rx.recv() {
                    hub.handle(rec);
                }
                tracing::debug!("hub drained");
            })
            .map_err(|e| PipelineError::Internal(format!("cannot start the hub thread: {e}")))?;
        Ok((
            HubInput {
                tx,
                metrics: self.metrics.clone(),
            },
            handle,
        ))
    }

    /// Handle one record: count, store, sinks, broadcast (in that order).
    pub fn handle(&self, rec: StreamRecord) {
        let mut id = None;
        match &rec {
            StreamRecord::Label(l) => {
                self.metrics.frame_latency.observe(l.latency_ms / 1e3);
                let mut latest = self.latest.lock();
                let top = match latest.get_mut(&l.stream) {
                    Some(t) => t,
                    None => latest.entry(l.stream.clone()).or_default(),
                };
                top.clear();
                top.extend(l.top.iter().take(TOP_SHOWN).map(|t| TopScore {
                    label: t.label.clone(),
                    score: t.score,
                }));
            }
            StreamRecord::Event(e) => {
                self.metrics
                    .count_event(&e.stream, e.kind == EventKind::Start);
                match self.store.insert_event(e) {
                    Ok(row) => id = Some(row),
                    Err(err) => {
                        self.metrics.store_errors.inc();
                        tracing::error!(stream = %e.stream, "{err}");
                    }
                }
            }
            StreamRecord::Status(s) => {
                if s.status == "removed" {
                    self.latest.lock().remove(&s.stream);
                    self.metrics.forget_stream(&s.stream);
                }
            }
        }
        let published = Arc::new(Published {
            kind: rec.kind(),
            stream: Arc::from(rec.stream()),
            id,
            json: Arc::from(rec.to_json()),
        });
        for sink in &self.sinks {
            sink.offer(&rec, &published);
        }
        // no subscriber is not an error
        let _ = self.live.send(published);
    }

    /// A live feed of every published record, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.live.subscribe()
    }

    /// The top labels of the stream's latest processed frame.
    pub fn latest_top(&self, stream: &str) -> Vec<TopScore> {
        self.latest.lock().get(stream).cloned().unwrap_or_default()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// Kinds stored in the history.
pub fn is_stored(kind: RecordKind) -> bool {
    matches!(kind, RecordKind::Start | RecordKind::End)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::record::{EventRecord, LabelRecord, StatusRecord, TopLabel};
    use crate::serve::store::HistoryQuery;

    struct Recorder(Mutex<Vec<(RecordKind, Option<i64>)>>);
    impl Sink for Recorder {
        fn offer(&self, rec: &StreamRecord, p: &Arc<Published>) {
            self.0.lock().push((rec.kind(), p.id));
        }
    }

    fn label(stream: &str, seq: u64) -> StreamRecord {
        StreamRecord::Label(LabelRecord {
            stream: stream.into(),
            seq,
            pts_ms: seq as f64 * 200.0,
            ts: "2026-11-23T10:00:00.000Z".into(),
            top: (0..5)
                .map(|i| TopLabel {
                    label: format!("c{i}"),
                    index: i,
                    score: 0.5 / (i + 1) as f64,
                })
                .collect(),
            latency_ms: 40.0,
        })
    }

    #[test]
    fn stores_before_publishing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let hub = Arc::new(Hub::new(
            store.clone(),
            metrics.clone(),
            vec![rec.clone()],
            64,
        ));
        let mut live = hub.subscribe();
        let (input, thread) = hub.spawn(8).unwrap();
        assert!(input.send(label("a", 0)));
        assert!(input.send(StreamRecord::Event(EventRecord {
            kind: EventKind::Start,
            stream: "a".into(),
            label: "c0".into(),
            score: 0.6,
            pts_ms: 0.0,
            ts: "2026-11-23T10:00:00.000Z".into(),
            reason: None,
        })));
        let first = live.blocking_recv().unwrap();
        assert_eq!(first.kind, RecordKind::Label);
        let second = live.blocking_recv().unwrap();
        assert_eq!(second.kind, RecordKind::Start);
        let id = second.id.expect("a start event has a history id");
        // already on disk when it was published
        let h = store
            .history(&HistoryQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(h[0].id, id);
        assert_eq!(hub.latest_top("a").len(), TOP_SHOWN);
        input.send(StreamRecord::Status(StatusRecord {
            stream: "a".into(),
            status: "removed".into(),
            reason: None,
            extra: Default::default(),
        }));
        drop(input);
        thread.join().unwrap();
        assert!(hub.latest_top("a").is_empty());
        assert_eq!(
            *rec.0.lock(),
            vec![
                (RecordKind::Label, None),
                (RecordKind::Start, Some(id)),
                (RecordKind::Status, None)
            ]
        );
        assert_eq!(metrics.frame_latency.count(), 1);
    }

    #[test]
    fn full_queue_drops_labels_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = channel::bounded(1);
        let input = HubInput {
            tx,
            metrics: metrics.clone(),
        };
        assert!(input.send(label("a", 0)));
        assert!(!input.send(label("a", 1)));
        assert_eq!(metrics.records_dropped.get(), 1);
        drop(rx);
        drop(store);
    }
}
