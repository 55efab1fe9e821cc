//! [`MqttSink`]: publishes to an MQTT broker with Frigate-style topics (`<prefix>` is
//! `vigil` by default):
//!
//! | topic | payload | retained |
//! |---|---|---|
//! | `<prefix>/available` | `online` / `offline` (also the Last Will) | yes |
//! | `<prefix>/<stream>/state` | the stream's current top label | yes |
//! | `<prefix>/events` | each start/end event's JSON | no |
//! | `<discovery>/sensor/<client_id>/<stream>/config` | Home Assistant discovery (optional) | yes |
//!
//! A broker that is down never slows the streams: the hub hands records over with
//! `try_send` on a bounded queue (overflow counted in `vigil_mqtt_dropped_total`), and
//! while disconnected, events are counted as dropped instead of queued. The connection task
//! reconnects with capped backoff; on every (re)connect it publishes `online`, each
//! stream's current state and the discovery configs again. A state that changes during an
//! outage is published on reconnect. On shutdown it publishes `offline` and disconnects
//! cleanly; if the process dies, the broker publishes the Last Will (`offline`) after 1.5×
//! the keep-alive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot, watch};

use vigil_engine::Labels;

use super::hub::Sink;
use super::metrics::Metrics;
use super::record::Published;
use crate::runtime::RuntimeEvent;
use crate::status::StreamPhase;

/// Broker connection and topic settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_id: String,
    /// Topic prefix (`vigil`).
    pub prefix: String,
    /// Home Assistant discovery prefix (`homeassistant`), `None` = no discovery.
    pub discovery: Option<String>,
    pub keep_alive: Duration,
}

impl MqttConfig {
    /// Parse `mqtt://[user[:password]@]host[:port]` (port 1883 by default).
    pub fn from_url(url: &str) -> Result<MqttConfig, String> {
        let rest = if let Some(r) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        {
            r
        } else if url.starts_with("mqtts://") || url.starts_with("ssl://") {
            return Err(format!(
                "{url}: TLS is not built in; use mqtt:// (a broker on this host or a TLS bridge)"
            ));
        } else {
            return Err(format!(
                "{url}: not an mqtt:// URL (write mqtt://host:1883)"
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!(
                "{url}: a broker URL has no path (set the topic prefix with [mqtt] prefix)"
            ));
        }
        let (creds, hostport) = match rest.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url}: bad port {p:?}"))?,
            ),
            _ => (hostport, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let (username, password) = match creds {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(c.to_string()), None),
            },
        };
        Ok(MqttConfig {
            host: host.to_string(),
            port,
            username,
            password,
            client_id: "vigil".into(),
            prefix: "vigil".into(),
            discovery: None,
            keep_alive: Duration::from_secs(5),
        })
    }

    fn available_topic(&self) -> String {
        format!("{}/available", self.prefix)
    }

    fn state_topic(&self, stream: &str) -> String {
        format!("{}/{stream}/state", self.prefix)
    }

    fn events_topic(&self) -> String {
        format!("{}/events", self.prefix)
    }

    fn discovery_topic(&self, stream: &str) -> Option<String> {
        self.discovery
            .as_ref()
            .map(|d| format!("{d}/sensor/{}/{stream}/config", self.client_id))
    }

    fn discovery_payload(&self, stream: &str) -> String {
        serde_json::json!({
            "name": format!("{stream} action"),
            "unique_id": format!("{}_{stream}_action", self.client_id),
            "state_topic": self.state_topic(stream),
            "availability_topic": self.available_topic(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:motion-sensor",
            "device": {
                "identifiers": [self.client_id],
                "name": "Vigil",
                "manufacturer": "Vigil",
                "model": "MoViNet stream action recognition",
            },
        })
        .to_string()
    }
}

/// What the hub hands the MQTT task.
#[derive(Debug)]
enum Msg {
    /// The top label of a stream's latest frame.
    State { stream: Arc<str>, label: String },
    /// A start/end event's JSON.
    Event(Arc<str>),
    /// The stream is gone: clear its retained topics.
    Removed(Arc<str>),
    /// Publish `offline`, disconnect, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// Queue between the hub and the MQTT task.
const QUEUE: usize = 1024;

/// The MQTT sink; clone the `Arc` into the hub.
pub struct MqttSink {
    tx: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl MqttSink {
    /// Start the connection and publishing tasks (on the current tokio runtime).
    pub fn start(cfg: MqttConfig, metrics: Arc<Metrics>) -> MqttSink {
        let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
        opts.set_keep_alive(cfg.keep_alive)
            .set_clean_session(true)
            .set_last_will(LastWill::new(
                cfg.available_topic(),
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(u) = &cfg.username {
            opts.set_credentials(u.clone(), cfg.password.clone().unwrap_or_default());
        }
        let (client, eventloop) = AsyncClient::new(opts, 256);
        let (tx, rx) = mpsc::channel(QUEUE);
        let (conn_tx, conn_rx) = watch::channel(false);
        let span = tracing::info_span!("mqtt", broker = %format!("{}:{}", cfg.host, cfg.port));
        let driver = tokio::spawn(drive(eventloop, conn_tx, metrics.clone(), span.clone()));
        let task = tokio::spawn(publish(
            cfg,
            client,
            rx,
            conn_rx,
            driver,
            metrics.clone(),
            span,
        ));
        MqttSink {
            tx,
            metrics,
            task: parking_lot::Mutex::new(Some(task)),
        }
    }

    fn offer_msg(&self, msg: Msg) {
        if self.tx.try_send(msg).is_err() {
            self.metrics.mqtt_dropped.inc();
        }
    }

    /// Publish `offline`, disconnect and stop (bounded by `limit`).
    pub async fn shutdown(&self, limit: Duration) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(done_tx)).await.is_ok() {
            let _ = tokio::time::timeout(limit, done_rx).await;
        }
        let task = self.task.lock().take();
        if let Some(t) = task {
            t.abort();
        }
    }
}

impl Sink for MqttSink {
    fn offer(&self, ev: &RuntimeEvent, published: &Arc<Published>, labels: &Labels) {
        match ev {
            RuntimeEvent::Label(l) => {
                if let Some((class, _)) = l.top.best() {
                    self.offer_msg(Msg::State {
                        stream: published.stream.clone(),
                        label: labels.name(class).to_string(),
                    });
                }
            }
            RuntimeEvent::Event(_) => self.offer_msg(Msg::Event(published.json.clone())),
            RuntimeEvent::Status(s) if s.phase == StreamPhase::Removed => {
                self.offer_msg(Msg::Removed(published.stream.clone()))
            }
            _ => {}
        }
    }
}

/// Poll the connection forever: reconnect with capped backoff, report connected/not.
async fn drive(
    mut eventloop: rumqttc::EventLoop,
    conn: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    span: tracing::Span,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                span.in_scope(|| tracing::info!("connected to the MQTT broker"));
                metrics.mqtt_connected.set(1);
                conn.send_replace(true);
                backoff = Duration::from_millis(250);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                metrics.mqtt_connected.set(0);
                conn.send_replace(false);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if conn.send_replace(false) {
                    span.in_scope(|| {
                        tracing::warn!("MQTT broker connection lost: {e}; reconnecting")
                    });
                } else {
                    span.in_scope(|| tracing::debug!("MQTT broker unreachable: {e}"));
                }
                metrics.mqtt_connected.set(0);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Turn hub messages into publications; re-announce on every (re)connect.
async fn publish(
    cfg: MqttConfig,
    client: AsyncClient,
    mut rx: mpsc::Receiver<Msg>,
    mut conn: watch::Receiver<bool>,
    driver: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
    span: tracing::Span,
) {
    // current top label per stream; `true` once published on this connection
    let mut states: BTreeMap<Arc<str>, (String, bool)> = BTreeMap::new();
    let send = |topic: String, qos: QoS, retain: bool, payload: Vec<u8>| -> bool {
        match client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                metrics.mqtt_published.inc();
                true
            }
            Err(_) => {
                metrics.mqtt_dropped.inc();
                false
            }
        }
    };
    loop {
        tokio::select! {
            changed = conn.changed() => {
                if changed.is_err() {
                    // the connection task ended
                    break;
                }
                if *conn.borrow_and_update() {
                    send(cfg.available_topic(), QoS::AtLeastOnce, true, b"online".to_vec());
                    for (stream, (label, sent)) in states.iter_mut() {
                        if let Some(t) = cfg.discovery_topic(stream) {
                            send(t, QoS::AtLeastOnce, true, cfg.discovery_payload(stream).into_bytes());
                        }
                        *sent = send(cfg.state_topic(stream), QoS::AtLeastOnce, true, label.clone().into_bytes());
                    }
                } else {
                    states.values_mut().for_each(|s| s.1 = false);
                }
            }
            msg = rx.recv() => {
                let connected = *conn.borrow();
                match msg {
                    None => break,
                    Some(Msg::State { stream, label }) => {
                        let entry = states.get_mut(&stream);
                        let fresh = entry.is_none();
                        let unchanged = entry.as_ref().is_some_and(|(l, sent)| *l == label && *sent);
                        if unchanged {
                            continue;
                        }
                        if fresh && connected {
                            if let Some(t) = cfg.discovery_topic(&stream) {
                                send(t, QoS::AtLeastOnce, true, cfg.discovery_payload(&stream).into_bytes());
                            }
                        }
                        let sent = connected
                            && send(cfg.state_topic(&stream), QoS::AtLeastOnce, true, label.clone().into_bytes());
                        states.insert(stream, (label, sent));
                    }
                    Some(Msg::Event(json)) => {
                        if connected {
                            send(cfg.events_topic(), QoS::AtLeastOnce, false, json.as_bytes().to_vec());
                        } else {
                            metrics.mqtt_dropped.inc();
                        }
                    }
                    Some(Msg::Removed(stream)) => {
                        states.remove(&stream);
                        if connected {
                            // an empty retained message deletes the retained one
                            send(cfg.state_topic(&stream), QoS::AtLeastOnce, true, Vec::new());
                            if let Some(t) = cfg.discovery_topic(&stream) {
                                send(t, QoS::AtLeastOnce, true, Vec::new());
                            }
                        }
                    }
                    Some(Msg::Shutdown(done)) => {
                        if *conn.borrow() {
                            send(cfg.available_topic(), QoS::AtLeastOnce, true, b"offline".to_vec());
                            let _ = client.try_disconnect();
                            // the connection task writes the publish, then the disconnect
                            let _ = tokio::time::timeout(Duration::from_secs(3), driver).await;
                        } else {
                            driver.abort();
                        }
                        span.in_scope(|| tracing::info!("MQTT: published offline, disconnected"));
                        let _ = done.send(());
                        return;
                    }
                }
            }
        }
    }
    driver.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let c = MqttConfig::from_url("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.username.clone()),
            ("127.0.0.1", 1884, None)
        );
        let c = MqttConfig::from_url("mqtt://ha:p@ss:w@broker.lan").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("broker.lan", 1883));
        assert_eq!(c.username.as_deref(), Some("ha"));
        assert_eq!(c.password.as_deref(), Some("p@ss:w"));
        let c = MqttConfig::from_url("mqtt://[::1]:1999").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 1999));
        for bad in [
            "http://x",
            "mqtts://x",
            "mqtt://",
            "mqtt://h:port",
            "mqtt://h/x",
        ] {
            assert!(MqttConfig::from_url(bad).is_err(), "{bad}");
        }
        let mut c = MqttConfig::from_url("mqtt://h").unwrap();
        assert_eq!(c.state_topic("yard"), "vigil/yard/state");
        assert_eq!(c.discovery_topic("yard"), None);
        c.discovery = Some("homeassistant".into());
        assert_eq!(
            c.discovery_topic("yard").unwrap(),
            "homeassistant/sensor/vigil/yard/config"
        );
        let v: serde_json::Value = serde_json::from_str(&c.discovery_payload("yard")).unwrap();
        assert_eq!(v["availability_topic"], "vigil/available");
    }
}
