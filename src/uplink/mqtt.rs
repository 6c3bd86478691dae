//! MQTT sink: every change is published at QoS 1 and counts as delivered on its PUBACK.
//!
//! Topics (`{p}` = `topic_prefix/box_id`): event changes go to `{p}/events/{camera_id}`,
//! camera status changes to `{p}/status/{camera_id}` with the retain flag (a subscriber that
//! comes later gets each camera's latest status at once), and each hour's open data
//! (kind `open_data`) to `{p}/open_data`. The payload is the envelope,
//! byte for byte. `{p}/availability` is `online` (retained) while the box is connected; the
//! broker publishes the last will `offline` (retained) when the connection dies without a
//! DISCONNECT (kill -9, power cut, network loss), and a graceful stop publishes `offline`
//! itself.
//!
//! One standing connection per sink, driven by a task on the uplink runtime
//! ([`Sink::open`]). The worker's lanes (one per camera, one change at a time each) publish
//! through it concurrently and each waits for the PUBACK of its own packet. rumqttc reports
//! the packet id of each publish it writes (`Outgoing::Publish`) in the order the publishes
//! were queued, so the publishes queued and not yet written are kept in that order and
//! matched to their ids as they are written, then to their PUBACKs. The session is clean and
//! every connection gets a fresh rumqttc event loop: when a connection is lost, all waiting
//! attempts fail at once (`Retry`) and nothing is replayed behind the worker's back — the
//! worker republishes each camera's unacknowledged change after the reconnect, in order
//! (at least once: a change whose PUBACK was lost arrives twice, with the same `id`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};

use super::config::MqttConfig;
use super::sink::{BoxFuture, Outcome, Sink};
use crate::store::outbox::OutboxRow;

/// Largest MQTT packet sent or accepted. A change whose publish would be larger is refused
/// (`Rejected`, dead-lettered after a few tries) rather than sent to break the connection.
pub const MAX_PACKET_BYTES: usize = 1 << 20;
/// Payloads of the availability topic.
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";
const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How long a graceful stop waits for the PUBACK of `offline` and for the DISCONNECT.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// Publishes queued in the client at most (each lane has at most one in flight).
const CHANNEL_CAP: usize = 1024;

type Ack = oneshot::Sender<Result<(), String>>;

/// The publishes of the current connection.
#[derive(Default)]
struct Session {
    /// The client of the current connection; `None` while disconnected.
    client: Option<AsyncClient>,
    /// Publishes queued in the client, oldest first, until the event loop writes them and
    /// reports their packet id (`None`: nobody waits, e.g. `online`).
    unsent: VecDeque<Option<Ack>>,
    /// Written publishes waiting for their PUBACK, by packet id.
    inflight: HashMap<u16, Option<Ack>>,
    /// Why the last connection (attempt) failed.
    last_error: Option<String>,
}

impl Session {
    /// The connection is gone: every waiting attempt fails with `why`.
    fn fail_all(&mut self, why: &str) {
        self.client = None;
        for ack in self.unsent.drain(..).chain(self.inflight.drain().map(|(_, a)| a)).flatten() {
            let _ = ack.send(Err(why.to_string()));
        }
        self.last_error = Some(why.to_string());
    }
}

struct Conn {
    session: Mutex<Session>,
    connected: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// Queues a QoS 1 publish on the current connection; the receiver gets its PUBACK (Ok)
    /// or the loss of the connection (Err).
    fn publish(
        &self,
        topic: &str,
        retain: bool,
        payload: &[u8],
        want_ack: bool,
    ) -> Result<oneshot::Receiver<Result<(), String>>, String> {
        let (tx, rx) = oneshot::channel();
        let mut s = lock(&self.session);
        let Some(client) = s.client.as_ref() else {
            return Err(not_connected(&s));
        };
        // Queued and recorded under one lock, so `unsent` is in the client's queue order.
        client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .map_err(|e| format!("cannot queue the publish: {e}"))?;
        s.unsent.push_back(want_ack.then_some(tx));
        Ok(rx)
    }
}

fn not_connected(s: &Session) -> String {
    match &s.last_error {
        Some(e) => format!("not connected to the broker ({e})"),
        None => "not connected to the broker".into(),
    }
}

pub struct MqttSink {
    name: String,
    target: String,
    /// `{prefix}/{box_id}`.
    base: String,
    options: MqttOptions,
    connect_timeout_secs: u64,
    timeout: Duration,
    conn: Arc<Conn>,
}

impl MqttSink {
    /// A sink for `cfg` on the box `box_id`; reads the password (`password_env`) and the TLS
    /// roots now. Connects when the worker starts it (`Sink::open`).
    pub fn new(cfg: &MqttConfig, box_id: &str) -> Result<MqttSink, String> {
        let at = |m: String| format!("mqtt sink `{}`: {m}", cfg.name);
        let (host, port) = cfg.host_port().map_err(|e| at(format!("url: {e}")))?;
        let client_id =
            cfg.client_id.clone().unwrap_or_else(|| format!("gridwatch-{box_id}-{}", cfg.name));
        let base = format!("{}/{box_id}", cfg.topic_prefix);
        let mut o = MqttOptions::new(client_id, host.clone(), port);
        o.set_keep_alive(Duration::from_secs_f64(cfg.keep_alive_secs.max(1.0)))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(100)
            .set_last_will(LastWill::new(
                format!("{base}/availability"),
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(user) = &cfg.username {
            let password = cfg.password_value().map_err(|e| at(format!("password: {e}")))?;
            o.set_credentials(
                user.clone(),
                password.map(|p| p.expose().to_string()).unwrap_or_default(),
            );
        }
        let scheme = if cfg.tls() {
            let tls = tls_config(cfg).map_err(at)?;
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
            "mqtts"
        } else {
            "mqtt"
        };
        let host_shown = if host.contains(':') { format!("[{host}]") } else { host };
        Ok(MqttSink {
            name: cfg.name.clone(),
            target: format!("{scheme}://{host_shown}:{port}"),
            base,
            options: o,
            connect_timeout_secs: cfg.delivery.connect_timeout_secs.ceil().max(1.0) as u64,
            timeout: Duration::from_secs_f64(cfg.delivery.timeout_secs),
            conn: Arc::new(Conn {
                session: Mutex::new(Session::default()),
                connected: watch::channel(false).0,
                stop: watch::channel(false).0,
                task: Mutex::new(None),
            }),
        })
    }

    /// The topic and retain flag of a change.
    pub fn topic(&self, row: &OutboxRow) -> (String, bool) {
        if row.kind == "camera_status" {
            (format!("{}/status/{}", self.base, row.camera_id), true)
        } else if row.kind == crate::store::outbox::OPEN_DATA_KIND {
            (format!("{}/open_data", self.base), false)
        } else {
            (format!("{}/events/{}", self.base, row.camera_id), false)
        }
    }

    /// `{prefix}/{box_id}/availability`.
    pub fn availability_topic(&self) -> String {
        format!("{}/availability", self.base)
    }

    /// Whether the sink is connected to its broker now.
    pub fn is_connected(&self) -> bool {
        *self.conn.connected.borrow()
    }

    async fn publish(&self, row: &OutboxRow) -> Outcome {
        let (topic, retain) = self.topic(row);
        // Fixed header (≤ 5) + topic length (2) + topic + packet id (2) + payload.
        let size = 9 + topic.len() + row.envelope.len();
        if size > MAX_PACKET_BYTES {
            return Outcome::Rejected {
                status: None,
                error: format!(
                    "publish of {size} bytes exceeds the {MAX_PACKET_BYTES}-byte packet limit"
                ),
            };
        }
        let retry = |error: String| Outcome::Retry { status: None, error, retry_after: None };
        let secs = self.timeout.as_secs_f64();
        let mut connected = self.conn.connected.subscribe();
        if tokio::time::timeout(self.timeout, connected.wait_for(|c| *c)).await.is_err() {
            return retry(format!("{} for {secs:.1} s", not_connected(&lock(&self.conn.session))));
        }
        let ack = match self.conn.publish(&topic, retain, row.envelope.as_bytes(), true) {
            Ok(a) => a,
            Err(e) => return retry(e),
        };
        match tokio::time::timeout(self.timeout, ack).await {
            Ok(Ok(Ok(()))) => Outcome::Delivered,
            Ok(Ok(Err(e))) => retry(e),
            Ok(Err(_)) => retry("the connection task stopped".into()),
            Err(_) => retry(format!("no PUBACK within {secs:.1} s")),
        }
    }
}

/// The rustls client config: TLS 1.2/1.3 with the ring provider, roots from `ca_file` or
/// the system.
fn tls_config(cfg: &MqttConfig) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let bad = |e: String| format!("ca_file `{}`: {e}", path.display());
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(sink = %cfg.name, "reading the system CA certificates: {e}");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no system CA certificates found: install ca-certificates or set `ca_file`"
                        .into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Keeps the sink connected until stopped: one rumqttc event loop per connection attempt.
async fn drive(
    conn: Arc<Conn>,
    options: MqttOptions,
    connect_timeout_secs: u64,
    name: String,
    target: String,
    availability: String,
) {
    let mut stop = conn.stop.subscribe();
    let mut delay = RECONNECT_MIN;
    let mut failures = 0u32;
    loop {
        let (client, mut events) = AsyncClient::new(options.clone(), CHANNEL_CAP);
        events.network_options.set_connection_timeout(connect_timeout_secs);
        let error = loop {
            let polled = tokio::select! {
                r = events.poll() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let mut s = lock(&conn.session);
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // `online` first: it is the first publish the broker sees on this connection.
                    if let Err(e) =
                        client.try_publish(&availability, QoS::AtLeastOnce, true, ONLINE)
                    {
                        break format!("cannot queue `online`: {e}");
                    }
                    s.unsent.push_back(None);
                    s.client = Some(client.clone());
                    s.last_error = None;
                    conn.connected.send_replace(true);
                    tracing::info!(sink = %name, target = %target, "connected to the MQTT broker");
                    delay = RECONNECT_MIN;
                    failures = 0;
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(ack) = s.unsent.pop_front() {
                        s.inflight.insert(pkid, ack);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(a))) => {
                    if let Some(Some(ack)) = s.inflight.remove(&a.pkid) {
                        let _ = ack.send(Ok(()));
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    // Graceful stop (`close`): the broker discards the will.
                    s.fail_all("disconnected (stopping)");
                    conn.connected.send_replace(false);
                    return;
                }
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        let was_up = lock(&conn.session).client.is_some();
        let why = if was_up {
            format!("connection lost: {error}")
        } else {
            format!("cannot connect: {error}")
        };
        lock(&conn.session).fail_all(&why);
        conn.connected.send_replace(false);
        drop(events);
        failures += 1;
        if was_up {
            tracing::warn!(sink = %name, target = %target, "MQTT connection lost: {error}; reconnecting");
        } else if failures.is_power_of_two() {
            tracing::warn!(sink = %name, target = %target, attempts = failures, "cannot connect to the MQTT broker: {error}");
        } else {
            tracing::debug!(sink = %name, target = %target, attempts = failures, "cannot connect to the MQTT broker: {error}");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

impl Sink for MqttSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "mqtt"
    }
    fn target(&self) -> String {
        self.target.clone()
    }
    fn deliver<'a>(&'a self, row: &'a OutboxRow, _now: OffsetDateTime) -> BoxFuture<'a, Outcome> {
        Box::pin(self.publish(row))
    }

    fn open(&self) {
        let mut task = lock(&self.conn.task);
        if task.is_none() {
            let fut = drive(
                self.conn.clone(),
                self.options.clone(),
                self.connect_timeout_secs,
                self.name.clone(),
                self.target.clone(),
                self.availability_topic(),
            );
            *task = Some(tokio::spawn(fut));
        }
    }

    /// Publishes `offline` (retained) and disconnects cleanly, within a few seconds.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(mut task) = lock(&self.conn.task).take() else { return };
            if self.is_connected() {
                let said = match self.conn.publish(
                    &self.availability_topic(),
                    true,
                    OFFLINE.as_bytes(),
                    true,
                ) {
                    Ok(ack) => {
                        matches!(tokio::time::timeout(CLOSE_WAIT, ack).await, Ok(Ok(Ok(()))))
                    }
                    Err(_) => false,
                };
                let client = lock(&self.conn.session).client.clone();
                match client {
                    // DISCONNECT (the broker discards the will); the task ends once it is written.
                    Some(c) if said && c.try_disconnect().is_ok() => {
                        let _ = tokio::time::timeout(CLOSE_WAIT, &mut task).await;
                    }
                    // Dropping the connection without DISCONNECT: the broker publishes the will.
                    _ => {
                        tracing::warn!(sink = %self.name, "`offline` was not acknowledged; leaving it to the last will")
                    }
                }
            }
            if !task.is_finished() {
                self.conn.stop.send_replace(true);
                if tokio::time::timeout(CLOSE_WAIT, &mut task).await.is_err() {
                    task.abort();
                }
            }
            tracing::info!(sink = %self.name, "MQTT connection closed");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn mqtt(block: &str) -> Result<Config, String> {
        Config::parse(&format!("box_id = \"b1\"\ndata_dir = \"/tmp/x\"\n[models]\n[[uplink.mqtt]]\nname = \"m\"\n{block}\n"), std::path::Path::new("/etc/gw"))
    }

    fn row(kind: &str) -> OutboxRow {
        OutboxRow {
            seq: 1,
            id: "i".into(),
            camera_id: "gate".into(),
            event_id: None,
            change: "started".into(),
            kind: kind.into(),
            envelope: "{}".into(),
            created_at: OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn topics_target_and_no_credentials_shown() {
        let cfg = mqtt("url = \"mqtt://broker.example\"\nusername = \"u\"\npassword = \"hunter2\"")
            .unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"), "the password must not be printed");
        let s = MqttSink::new(&cfg.uplink.mqtt[0], &cfg.box_id).unwrap();
        assert_eq!((s.kind(), s.target()), ("mqtt", "mqtt://broker.example:1883".to_string()));
        assert_eq!(s.topic(&row("presence")), ("gridwatch/b1/events/gate".to_string(), false));
        assert_eq!(s.topic(&row("camera_status")), ("gridwatch/b1/status/gate".to_string(), true));
        assert_eq!(s.availability_topic(), "gridwatch/b1/availability");
        let p = mqtt("url = \"mqtt://[::1]:1884\"\ntopic_prefix = \"city/d7\"").unwrap();
        let s = MqttSink::new(&p.uplink.mqtt[0], &p.box_id).unwrap();
        assert_eq!(s.target(), "mqtt://[::1]:1884");
        assert_eq!(s.topic(&row("crowd")).0, "city/d7/b1/events/gate");
    }

    #[test]
    fn config_is_validated_with_the_field() {
        let e = |b: &str| mqtt(b).unwrap_err();
        assert!(e("url = \"http://b.example\"").contains("uplink.mqtt[0].url"));
        assert!(e("url = \"mqtt://u:p@b.example\"").contains("credentials"));
        assert!(
            !e("url = \"mqtt://u:secretpw@b.example\"").contains("secretpw"),
            "no password in errors"
        );
        assert!(e("url = \"mqtt://b.example/x\"").contains("path"));
        assert!(e("url = \"mqtt://b\"\npassword = \"p\"").contains("username"));
        assert!(e("url = \"mqtt://b\"\nca_file = \"ca.pem\"").contains("uplink.mqtt[0].ca_file"));
        assert!(e("url = \"mqtt://b\"\ntopic_prefix = \"a/#\"").contains("topic_prefix"));
        assert!(e("url = \"mqtt://b\"\nkeep_alive_secs = 0.5").contains("keep_alive_secs"));
        assert!(e("url = \"mqtt://b\"\nbackoff_max_secs = 0.1").contains("backoff_max_secs"));
        assert!(e("url = \"mqtt://b\"\nqos = 2").contains("qos"));
        assert!(e(
            "url = \"mqtt://b\"\nusername = \"u\"\npassword_env = \"GRIDWATCH_TEST_UNSET_MQTT_PW\""
        )
        .contains("GRIDWATCH_TEST_UNSET_MQTT_PW"));
        let dup = "url = \"mqtt://b\"\n[[uplink.webhooks]]\nname = \"m\"\nurl = \"http://x/y\"\nsecret = \"s\"";
        assert!(e(dup).contains("duplicate sink name"), "{}", e(dup));
        let bad_box = Config::parse("box_id = \"a/b\"\ndata_dir = \"/tmp/x\"\n[models]\n[[uplink.mqtt]]\nname = \"m\"\nurl = \"mqtt://b\"\n", std::path::Path::new("/"));
        assert!(bad_box.unwrap_err().contains("box_id"));
        // Defaults, the TLS port and a relative ca_file resolved against the config's directory.
        let ok = mqtt("url = \"mqtts://b.example\"\nca_file = \"certs/ca.pem\"").unwrap();
        let m = &ok.uplink.mqtt[0];
        assert_eq!(m.host_port().unwrap(), ("b.example".to_string(), 8883));
        assert_eq!(m.ca_file.as_deref(), Some(std::path::Path::new("/etc/gw/certs/ca.pem")));
        assert_eq!(
            (
                m.keep_alive_secs,
                m.delivery.timeout_secs,
                m.delivery.backoff_max_secs,
                m.delivery.max_retry_hours
            ),
            (30.0, 10.0, 60.0, 72.0)
        );
        assert!(m.enabled && m.topic_prefix == "gridwatch");
        // A missing CA file is reported when the sink is built, naming the sink and the file.
        let err = MqttSink::new(m, &ok.box_id).err().unwrap();
        assert!(err.contains("`m`") && err.contains("/etc/gw/certs/ca.pem"), "{err}");
    }
}
