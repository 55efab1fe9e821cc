//! Subscriptions to a runtime's records: [`Subscription`] (the receiving end, a bounded
//! channel) and [`SubscriptionOptions`] (which records, which stream, how much buffer,
//! what happens when it is full).
//!
//! The overflow policy is explicit. [`Overflow::DropNewest`] (the default) never makes the
//! runtime wait: a record that does not fit is dropped and counted in
//! [`Subscription::lost`] — a slow HTTP client or a stalled sink cannot slow inference.
//! [`Overflow::Block`] makes the runtime wait for this subscriber (bounded by shutdown);
//! it is for the one local writer that must lose nothing, such as `vigil classify`
//! writing a file, exactly as if the writer were called inline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::record::{RecordKind, RuntimeEvent};

/// What a full subscription does with the next record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop it and count it in [`Subscription::lost`]; the runtime never waits.
    #[default]
    DropNewest,
    /// Wait until the subscriber takes records (only for a single local writer that must
    /// lose nothing; a stuck subscriber then holds up every stream).
    Block,
}

/// Which records a subscription receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub labels: bool,
    pub events: bool,
    pub status: bool,
    pub stats: bool,
    pub ends: bool,
}

impl Kinds {
    /// Every record.
    pub const ALL: Kinds = Kinds {
        labels: true,
        events: true,
        status: true,
        stats: true,
        ends: true,
    };
    /// Everything but per-frame labels (events, status, stats, ends).
    pub const NO_LABELS: Kinds = Kinds {
        labels: false,
        ..Kinds::ALL
    };
    /// Nothing (set fields to choose).
    pub const NONE: Kinds = Kinds {
        labels: false,
        events: false,
        status: false,
        stats: false,
        ends: false,
    };

    pub fn contains(&self, kind: RecordKind) -> bool {
        match kind {
            RecordKind::Label => self.labels,
            RecordKind::Event => self.events,
            RecordKind::Status => self.status,
            RecordKind::Stats => self.stats,
            RecordKind::End => self.ends,
        }
    }
}

/// How to subscribe.
#[derive(Debug, Clone)]
pub struct SubscriptionOptions {
    pub kinds: Kinds,
    /// Only this stream's records (`None`: all streams).
    pub stream: Option<String>,
    /// Records buffered before the overflow policy applies.
    pub capacity: usize,
    pub overflow: Overflow,
    /// Attach raw logits to label records (costs one allocation per frame).
    pub logits: bool,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions {
            kinds: Kinds::ALL,
            stream: None,
            capacity: 1024,
            overflow: Overflow::DropNewest,
            logits: false,
        }
    }
}

/// The receiving end of a subscription. Dropping it unsubscribes. When the runtime shuts
/// down, the records already buffered can still be read, then `recv` returns `None`.
pub struct Subscription {
    rx: Receiver<RuntimeEvent>,
    lost: Arc<AtomicU64>,
}

impl Subscription {
    /// The next record; `None` once the runtime has shut down and the buffer is empty.
    pub fn recv(&self) -> Option<RuntimeEvent> {
        self.rx.recv().ok()
    }

    /// The next record within `timeout`. `Err(true)`: the runtime has shut down;
    /// `Err(false)`: nothing within the timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<RuntimeEvent, bool> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => false,
            RecvTimeoutError::Disconnected => true,
        })
    }

    /// A record if one is buffered.
    pub fn try_recv(&self) -> Result<RuntimeEvent, bool> {
        self.rx.try_recv().map_err(|e| match e {
            TryRecvError::Empty => false,
            TryRecvError::Disconnected => true,
        })
    }

    /// Records until the runtime shuts down.
    pub fn iter(&self) -> impl Iterator<Item = RuntimeEvent> + '_ {
        self.rx.iter()
    }

    /// Records dropped because this subscription was full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Records buffered now.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }
}

/// The runtime's end of a subscription.
pub(crate) struct Subscriber {
    tx: Sender<RuntimeEvent>,
    lost: Arc<AtomicU64>,
    gone: AtomicBool,
    pub(crate) options: SubscriptionOptions,
}

/// Result of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Sent,
    Lost,
    /// The subscription was dropped: remove it.
    Gone,
}

impl Subscriber {
    pub(crate) fn new(options: SubscriptionOptions) -> (Subscriber, Subscription) {
        let (tx, rx) = channel::bounded(options.capacity.max(1));
        let lost = Arc::new(AtomicU64::new(0));
        (
            Subscriber {
                tx,
                lost: lost.clone(),
                gone: AtomicBool::new(false),
                options,
            },
            Subscription { rx, lost },
        )
    }

    /// Does this subscriber take records of `kind` about `stream`?
    pub(crate) fn wants(&self, kind: RecordKind, stream: &str) -> bool {
        self.options.kinds.contains(kind)
            && self.options.stream.as_deref().is_none_or(|s| s == stream)
    }

    /// The subscription was dropped (seen at a delivery).
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Hand over one record under this subscriber's overflow policy; a blocking
    /// subscriber is waited for until `give_up_at` at most.
    pub(crate) fn deliver(&self, ev: RuntimeEvent, give_up_at: Option<Instant>) -> Delivery {
        let r = self.try_deliver(ev, give_up_at);
        if r == Delivery::Gone {
            self.gone.store(true, Ordering::Relaxed);
        }
        r
    }

    fn try_deliver(&self, ev: RuntimeEvent, give_up_at: Option<Instant>) -> Delivery {
        match self.options.overflow {
            Overflow::DropNewest => match self.tx.try_send(ev) {
                Ok(()) => Delivery::Sent,
                Err(channel::TrySendError::Full(_)) => {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    Delivery::Lost
                }
                Err(channel::TrySendError::Disconnected(_)) => Delivery::Gone,
            },
            Overflow::Block => {
                let mut ev = ev;
                loop {
                    match self.tx.send_timeout(ev, Duration::from_millis(50)) {
                        Ok(()) => return Delivery::Sent,
                        Err(channel::SendTimeoutError::Disconnected(_)) => return Delivery::Gone,
                        Err(channel::SendTimeoutError::Timeout(back)) => {
                            if give_up_at.is_some_and(|t| Instant::now() >= t) {
                                self.lost.fetch_add(1, Ordering::Relaxed);
                                return Delivery::Lost;
                            }
                            ev = back;
                        }
                    }
                }
            }
        }
    }
}
