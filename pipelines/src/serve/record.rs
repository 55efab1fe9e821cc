//! What the sidecar publishes. Each [`RuntimeEvent`] the runtime reports becomes, in the
//! hub, a [`Published`] record: its SSE kind ([`SseKind`]: `label`, `start`, `end`,
//! `status`), its stream, its history id (start/end) and its JSON — exactly the line
//! `vigil watch` writes ([`crate::output::write_json`]), serialized once and shared by every
//! SSE client and sink. Stats and end-of-stream summaries stay inside the service (the
//! status records already say when a stream ends).

use std::sync::Arc;

use crate::events::EventKind;
use crate::runtime::RuntimeEvent;

/// The `event:` of an SSE message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SseKind {
    Label,
    Start,
    End,
    Status,
}

impl SseKind {
    pub const ALL: [SseKind; 4] = [
        SseKind::Label,
        SseKind::Start,
        SseKind::End,
        SseKind::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SseKind::Label => "label",
            SseKind::Start => "start",
            SseKind::End => "end",
            SseKind::Status => "status",
        }
    }

    pub fn parse(s: &str) -> Option<SseKind> {
        SseKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind a runtime record is published as; `None`: not published.
    pub fn of(ev: &RuntimeEvent) -> Option<SseKind> {
        match ev {
            RuntimeEvent::Label(_) => Some(SseKind::Label),
            RuntimeEvent::Event(e) => Some(match e.event.kind {
                EventKind::Start => SseKind::Start,
                EventKind::End => SseKind::End,
            }),
            RuntimeEvent::Status(_) => Some(SseKind::Status),
            RuntimeEvent::Stats(_) | RuntimeEvent::End(_) => None,
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`SseKind`]s (the `?kind=` filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseKinds(u8);

impl SseKinds {
    pub const ALL: SseKinds = SseKinds(0b1111);

    /// Parse `start,end`; an unknown kind is an error naming it.
    pub fn parse(list: &str) -> Result<SseKinds, String> {
        let mut bits = 0;
        for k in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            bits |= SseKind::parse(k)
                .ok_or_else(|| format!("unknown kind {k:?}"))?
                .bit();
        }
        if bits == 0 {
            return Err("empty kind list".into());
        }
        Ok(SseKinds(bits))
    }

    pub fn contains(self, k: SseKind) -> bool {
        self.0 & k.bit() != 0
    }
}

/// A record after the hub handled it.
#[derive(Debug, Clone)]
pub struct Published {
    pub kind: SseKind,
    pub stream: Arc<str>,
    /// Row id in the event history: the SSE `id:` of start/end events.
    pub id: Option<i64>,
    /// The record as `vigil watch` writes it (one line, no newline).
    pub json: Arc<str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_sets() {
        let s = SseKinds::parse("start, end").unwrap();
        assert!(s.contains(SseKind::Start) && s.contains(SseKind::End));
        assert!(!s.contains(SseKind::Label));
        assert!(SseKinds::parse("start,nope").is_err());
        assert!(SseKinds::parse("").is_err());
        assert!(SseKind::ALL.iter().all(|&k| SseKinds::ALL.contains(k)));
    }
}
