//! [`StreamRecord`]: what a running stream reports to the sidecar — a `label` record per
//! processed frame, `start`/`end` events and `status` changes — in exactly the JSON shapes
//! `vigil watch` writes (see [`crate::output`]). The runtime adapter produces them; the
//! [`super::hub::Hub`] counts, stores and fans them out as [`Published`] records, each
//! serialized once and shared by every subscriber.

use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::events::EventKind;

/// The four kinds of record, named as in the SSE `event:` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Label,
    Start,
    End,
    Status,
}

impl RecordKind {
    pub const ALL: [RecordKind; 4] = [
        RecordKind::Label,
        RecordKind::Start,
        RecordKind::End,
        RecordKind::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Label => "label",
            RecordKind::Start => "start",
            RecordKind::End => "end",
            RecordKind::Status => "status",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Bit of this kind in a [`KindSet`].
    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`RecordKind`]s (an SSE `?kind=` filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSet(u8);

impl KindSet {
    pub const ALL: KindSet = KindSet(0b1111);

    /// Parse `start,end`; an unknown kind is an error naming it.
    pub fn parse(list: &str) -> Result<KindSet, String> {
        let mut bits = 0;
        for k in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            bits |= RecordKind::parse(k)
                .ok_or_else(|| format!("unknown kind {k:?}"))?
                .bit();
        }
        if bits == 0 {
            return Err("empty kind list".into());
        }
        Ok(KindSet(bits))
    }

    pub fn contains(self, k: RecordKind) -> bool {
        self.0 & k.bit() != 0
    }
}

/// One of the top classes of a frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLabel {
    pub label: String,
    pub index: usize,
    pub score: f64,
}

/// A processed frame: `{"stream","seq","pts_ms","ts","top":[..],"latency_ms"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelRecord {
    pub stream: String,
    pub seq: u64,
    pub pts_ms: f64,
    pub ts: String,
    pub top: Vec<TopLabel>,
    pub latency_ms: f64,
}

/// A start or end: `{"event":"start"|"end","stream","label","score","pts_ms","ts"}`, with
/// `"reason"` when an end was forced (stream lost, removed, shut down).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    #[serde(rename = "event", serialize_with = "ser_event_kind")]
    pub kind: EventKind,
    pub stream: String,
    pub label: String,
    pub score: f64,
    pub pts_ms: f64,
    pub ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn ser_event_kind<S: Serializer>(k: &EventKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

/// A status change: `{"stream","status":"connected|reconnecting|failed|ended|removed",
/// "reason",…}`; fields the runtime adds beyond these pass through in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusRecord {
    pub stream: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Everything a stream reports.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRecord {
    Label(LabelRecord),
    Event(EventRecord),
    Status(StatusRecord),
}

impl StreamRecord {
    pub fn kind(&self) -> RecordKind {
        match self {
            StreamRecord::Label(_) => RecordKind::Label,
            StreamRecord::Event(e) => match e.kind {
                EventKind::Start => RecordKind::Start,
                EventKind::End => RecordKind::End,
            },
            StreamRecord::Status(_) => RecordKind::Status,
        }
    }

    pub fn stream(&self) -> &str {
        match self {
            StreamRecord::Label(r) => &r.stream,
            StreamRecord::Event(r) => &r.stream,
            StreamRecord::Status(r) => &r.stream,
        }
    }

    /// The record as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        let r = match self {
            StreamRecord::Label(r) => serde_json::to_string(r),
            StreamRecord::Event(r) => serde_json::to_string(r),
            StreamRecord::Status(r) => serde_json::to_string(r),
        };
        // these types serialize only strings, numbers and maps with string keys
        r.unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
    }
}

/// A record after the hub handled it: its kind, stream, history id (start/end only, once
/// stored) and its JSON, shared by every SSE client and sink.
#[derive(Debug, Clone)]
pub struct Published {
    pub kind: RecordKind,
    pub stream: Arc<str>,
    /// Row id in the event history: the SSE `id:` of start/end events.
    pub id: Option<i64>,
    pub json: Arc<str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes_match_watch() {
        let ev = StreamRecord::Event(EventRecord {
            kind: EventKind::Start,
            stream: "yard".into(),
            label: "archery".into(),
            score: 0.75,
            pts_ms: 1200.0,
            ts: "2026-11-23T10:00:00.000Z".into(),
            reason: None,
        });
        assert_eq!(
            ev.to_json(),
            r#"{"event":"start","stream":"yard","label":"archery","score":0.75,"pts_ms":1200.0,"ts":"2026-11-23T10:00:00.000Z"}"#
        );
        assert_eq!(ev.kind(), RecordKind::Start);
        let mut extra = serde_json::Map::new();
        extra.insert("dropped".into(), 3.into());
        let st = StreamRecord::Status(StatusRecord {
            stream: "yard".into(),
            status: "reconnecting".into(),
            reason: Some("connection lost".into()),
            extra,
        });
        assert_eq!(
            st.to_json(),
            r#"{"stream":"yard","status":"reconnecting","reason":"connection lost","dropped":3}"#
        );
    }

    #[test]
    fn kind_sets() {
        let s = KindSet::parse("start, end").unwrap();
        assert!(s.contains(RecordKind::Start) && s.contains(RecordKind::End));
        assert!(!s.contains(RecordKind::Label));
        assert!(KindSet::parse("start,nope").is_err());
        assert!(KindSet::parse("").is_err());
        assert!(RecordKind::ALL.iter().all(|&k| KindSet::ALL.contains(k)));
    }
}
