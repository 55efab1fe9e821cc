//! [`Hub`]: where every record of the running streams goes through the sidecar. One thread
//! takes [`RuntimeEvent`]s from a bounded queue ([`HubInput`]) and, in order,
//! 1. writes each as the JSON line `vigil watch` writes ([`crate::output::write_json`]),
//! 2. counts start/end events ([`Metrics`]) and commits them to the [`Store`] — *before*
//!    anything is published, so an event a client saw on SSE is already on disk,
//! 3. hands them to the sinks ([`Sink`]: MQTT, webhooks — non-blocking, bounded),
//! 4. broadcasts them to SSE clients ([`Hub::subscribe`]).
//!
//! Drop policy: label records are offered with `try_send` and counted in
//! `vigil_records_dropped_total` when the queue is full; start/end/status records wait for
//! room (they are rare, and losing one would break the history). The hub never blocks on a
//! sink, so the slowest thing between a frame and its publication is an SQLite commit.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use tokio::sync::broadcast;
use vigil_engine::Labels;

use super::metrics::Metrics;
use super::record::{Published, SseKind};
use super::store::{NewEvent, Store};
use crate::runtime::RuntimeEvent;
use crate::status::StreamPhase;
use crate::{PipelineError, Result};

/// A consumer of published records that must never block the hub (MQTT, webhooks).
pub trait Sink: Send + Sync {
    /// Take the record (already stored) or count it as dropped; never wait.
    fn offer(&self, ev: &RuntimeEvent, published: &Arc<Published>, labels: &Labels);
}

/// Counts, stores and fans out stream records.
pub struct Hub {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    labels: Labels,
    live: broadcast::Sender<Arc<Published>>,
    sinks: Vec<Arc<dyn Sink>>,
}

/// The sending side of the hub's queue; clone it freely. The hub thread ends when every
/// clone is dropped.
#[derive(Clone)]
pub struct HubInput {
    tx: Sender<RuntimeEvent>,
    metrics: Arc<Metrics>,
}

impl HubInput {
    /// Queue a record (see the module's drop policy). Returns `false` if it was dropped.
    pub fn send(&self, ev: RuntimeEvent) -> bool {
        match ev {
            RuntimeEvent::Label(_) => match self.tx.try_send(ev) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.metrics.records_dropped.inc();
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
            _ => self.tx.send(ev).is_ok(),
        }
    }
}

/// Reused buffers of the hub thread.
#[derive(Default)]
pub struct Scratch {
    line: Vec<u8>,
    ts: String,
}

impl Hub {
    /// `labels` name the classes in the JSON; `live_capacity`: records an SSE client may
    /// fall behind before it skips label/status records (start/end are replayed from the
    /// store).
    pub fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        labels: Labels,
        sinks: Vec<Arc<dyn Sink>>,
        live_capacity: usize,
    ) -> Hub {
        let (live, _) = broadcast::channel(live_capacity.max(16));
        Hub {
            store,
            metrics,
            labels,
            live,
            sinks,
        }
    }

    /// Start the hub thread with a queue of `capacity` records.
    pub fn spawn(self: &Arc<Self>, capacity: usize) -> Result<(HubInput, JoinHandle<()>)> {
        let (tx, rx): (Sender<RuntimeEvent>, Receiver<RuntimeEvent>) = channel::bounded(capacity);
        let hub = self.clone();
        let handle = std::thread::Builder::new()
            .name("vigil-hub".into())
            .spawn(move || {
                let span = tracing::info_span!("hub");
                let _enter = span.enter();
                let mut scratch = Scratch::default();
                while let Ok(ev) = rx.recv() {
                    hub.handle(ev, &mut scratch);
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

    /// Handle one record: JSON, count and store, sinks, broadcast (in that order).
    pub fn handle(&self, ev: RuntimeEvent, scratch: &mut Scratch) {
        let Some(kind) = SseKind::of(&ev) else {
            return;
        };
        scratch.line.clear();
        if let Err(e) =
            crate::output::write_json(&mut scratch.line, &ev, &self.labels, false, &mut scratch.ts)
        {
            tracing::error!("cannot encode a record: {e}");
            return;
        }
        let json = String::from_utf8_lossy(&scratch.line);
        let mut id = None;
        match &ev {
            RuntimeEvent::Event(e) => {
                self.metrics.count_event(&e.stream, kind == SseKind::Start);
                let stored = serde_json::from_str::<NewEvent>(&json)
                    .map_err(|err| PipelineError::Internal(format!("event line {json}: {err}")))
                    .and_then(|fields| self.store.insert_event(&fields, &json));
                match stored {
                    Ok(row) => id = Some(row),
                    Err(err) => {
                        self.metrics.store_errors.inc();
                        tracing::error!(stream = %e.stream, "{err}");
                    }
                }
            }
            RuntimeEvent::Status(s) if s.phase == StreamPhase::Removed => {
                self.metrics.forget_stream(&s.stream);
            }
            _ => {}
        }
        let published = Arc::new(Published {
            kind,
            stream: Arc::from(ev.stream()),
            id,
            json: Arc::from(json.as_ref()),
        });
        for sink in &self.sinks {
            sink.offer(&ev, &published, &self.labels);
        }
        // no subscriber is not an error
        let _ = self.live.send(published);
    }

    /// A live feed of every published record, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.live.subscribe()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use parking_lot::Mutex;

    use super::*;
    use crate::events::{Event, EventKind};
    use crate::runtime::{EventRecord, LabelRecord, StatusRecord, TopK};
    use crate::serve::store::HistoryQuery;

    struct Recorder(Mutex<Vec<(SseKind, Option<i64>)>>);

    impl Sink for Recorder {
        fn offer(&self, _ev: &RuntimeEvent, p: &Arc<Published>, _labels: &Labels) {
            self.0.lock().push((p.kind, p.id));
        }
    }

    fn label(stream: &str) -> RuntimeEvent {
        RuntimeEvent::Label(LabelRecord {
            stream: Arc::from(stream),
            seq: 0,
            pts_ns: 0,
            ts: SystemTime::now(),
            latency: Duration::from_millis(20),
            top: TopK::from_pairs([(1, 0.9), (0, 0.1)]),
            logits: None,
        })
    }

    #[test]
    fn stores_before_publishing_and_drops_only_labels() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let hub = Arc::new(Hub::new(
            store.clone(),
            metrics.clone(),
            Labels::numbered(3),
            vec![rec.clone()],
            64,
        ));
        let mut live = hub.subscribe();
        let (input, thread) = hub.spawn(8).unwrap();
        assert!(input.send(label("a")));
        assert!(input.send(RuntimeEvent::Event(EventRecord {
            stream: Arc::from("a"),
            event: Event {
                kind: EventKind::Start,
                class: 1,
                score: 0.8,
                pts_ns: 0,
                reason: None
            },
            ts: SystemTime::now(),
        })));
        let first = live.blocking_recv().unwrap();
        assert_eq!(first.kind, SseKind::Label);
        assert!(first.json.contains("\"class_1\""), "{}", first.json);
        let start = live.blocking_recv().unwrap();
        let id = start.id.expect("a start has a history id");
        // on disk before it was published, with the same line
        let h = store
            .history(&HistoryQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!((h[0].id, h[0].json.as_str()), (id, &*start.json));
        assert_eq!(h[0].fields.label, "class_1");
        input.send(RuntimeEvent::Status(StatusRecord {
            stream: Arc::from("a"),
            uri: Arc::from("test:"),
            phase: StreamPhase::Removed,
            reason: None,
            frames: 1,
            dropped: 0,
            reconnects: 0,
            ts: SystemTime::now(),
        }));
        drop(input);
        thread.join().unwrap();
        assert_eq!(
            *rec.0.lock(),
            vec![
                (SseKind::Label, None),
                (SseKind::Start, Some(id)),
                (SseKind::Status, None)
            ]
        );
        assert!(
            !metrics.render(&[], None).contains("stream=\"a\""),
            "a removed stream's series are gone"
        );

        // a full queue drops label records (counted), never events
        let (tx, _rx) = channel::bounded(1);
        let input = HubInput {
            tx,
            metrics: metrics.clone(),
        };
        assert!(input.send(label("b")));
        assert!(!input.send(label("b")));
        assert_eq!(metrics.records_dropped.get(), 1);
    }
}
