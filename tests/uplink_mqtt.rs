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
mod uplink_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridwatch::clock::SystemClock;
use gridwatch::config::{Config, MqttConfig};
use gridwatch::store::Store;
use gridwatch::types::{Change, EventChange, Severity};
use gridwatch::uplink::config::SinkConfig;
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
    /// A broker with an anonymous plain listener on `port`; `global` goes first in its
    /// config, `extra` (more listeners) last.
    fn start(global: &str, extra: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let conf = format!(
            "{global}\npersistence true\npersistence_location {}/\nautosave_interval 1\nuser root\n\
             max_queued_messages 100000\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
             log_type information\nlistener {port} 127.0.0.1\nallow_anonymous true\n{extra}\n",
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
        let log =
            std::fs::File::create(self.dir.path().join(format!("mosquitto-{}.log", self.runs)))
                .unwrap();
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
            assert!(
                Instant::now() < end,
                "mosquitto does not listen on {}:\n{}",
                self.port,
                self.logs()
            );
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
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("mosquitto-{n}.log")))
                    .unwrap_or_default()
            })
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
        o.set_clean_session(!persistent)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
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
    uplink_support::uplink_store(BOX, &CAMERAS)
}

/// The `[[uplink.mqtt]]` block of a config, parsed and validated like the real one.
fn mqtt_config(url: &str, extra: &str) -> MqttConfig {
    let text = format!("box_id = \"{BOX}\"\ndata_dir = \"/tmp/x\"\n[models]\n[[uplink.mqtt]]\nname = \"city-mqtt\"\nurl = \"{url}\"\n{extra}\n");
    Config::parse(&text, Path::new("/")).unwrap().uplink.mqtt.remove(0)
}

fn start(store: &Store, cfg: &MqttConfig) -> Uplink {
    let sink: Arc<dyn Sink> = Arc::new(MqttSink::new(cfg, BOX).unwrap());
    let mut policy = cfg.policy();
    policy.ack_flush = Duration::from_millis(50);
    Uplink::start_sinks(store, vec![(sink, policy)], Arc::new(SystemClock), None).unwrap()
}

/// One incident of `cam` (started, updated, ended) through `Store::apply`.
fn incident(store: &Store, cam: &str, at: OffsetDateTime) {
    let id = Uuid::now_v7();
    for (i, c) in [Change::Started, Change::Updated, Change::Ended].into_iter().enumerate() {
        let ch = EventChange::bare(
            id,
            c,
            cam,
            "presence",
            Severity::Medium,
            at + time::Duration::seconds(i as i64),
        );
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
    received(sub)
        .iter()
        .map(|(_, v)| v["id"].as_str().unwrap().to_string())
        .collect::<HashSet<_>>()
        .len()
}

/// Every outbox change arrived, byte for byte, on its camera's topic (status on the status
/// topic), each camera's changes first arrived in seq order, and nothing else arrived.
/// Returns the number of arrivals per id.
fn assert_complete_and_ordered(store: &Store, sub: &Subscriber) -> HashMap<String, usize> {
    let want = outbox(store);
    let by_id: HashMap<String, &String> =
        want.iter().map(|e| (json(e)["id"].as_str().unwrap().to_string(), e)).collect();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    let mut first_order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (m, v) in received(sub) {
        let id = v["id"].as_str().unwrap().to_string();
        let stored = by_id.get(&id).unwrap_or_else(|| {
            panic!("received a change that is not in the outbox: {}", m.payload)
        });
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
        let expected: Vec<i64> = want
            .iter()
            .map(|e| json(e))
            .filter(|e| e["camera_id"] == cam.as_str())
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, &expected, "camera {cam}: every change, first arrived in seq order");
    }
    per_id
}

#[test]
fn qos1_delivery_of_a_run_of_changes_in_per_camera_order() {
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::start("", "");
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
    assert_eq!(
        sub.on(&format!("gridwatch/{BOX}/availability")),
        ["online"],
        "the box announced itself"
    );
    // Delivered means PUBACKed: the cursors say so, under the sink's name and kind.
    wait(10, "acks flushed", || {
        store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0].backlog == 0
    });
    let st = &store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0];
    assert_eq!(
        (st.name.as_str(), st.kind.as_str(), st.target.as_str()),
        ("city-mqtt", "mqtt", broker.url().as_str())
    );
    assert_eq!(
        (st.delivered_total, st.failed_attempts_total, st.dead_letter_count),
        (total as u64, 0, 0)
    );
    up.shutdown();
}

#[test]
fn a_broker_restart_mid_stream_loses_and_reorders_nothing() {
    if !have_mosquitto() {
        return;
    }
    let mut broker = Broker::start("", "");
    let (_d, store) = store();
    // A persistent session: the broker queues for it while it is away, and keeps it (and its
    // queue) across its own restart.
    let sub =
        Subscriber::start(broker.port, "test-sub-restart", &format!("gridwatch/{BOX}/#"), true);
    // An attempt waits 1 s for the connection, then fails: the 2 s outage must show as retries.
    let cfg = mqtt_config(
        &broker.url(),
        "timeout_secs = 1.0\nbackoff_min_secs = 0.1\nbackoff_max_secs = 0.5",
    );
    let up = start(&store, &cfg);
    // One incident every 20 ms, round robin over the cameras, before, during and after the outage.
    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let (store, producing) = (store.clone(), producing.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while producing.load(Ordering::SeqCst) {
                incident(&store, CAMERAS[n % CAMERAS.len()], OffsetDateTime::now_utc());
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };
    wait(30, "the stream to flow", || distinct_ids(&sub) >= 60);
    broker.stop();
    let recorded_at_stop = outbox(&store).len();
    std::thread::sleep(Duration::from_secs(2));
    let recorded_in_outage = outbox(&store).len() - recorded_at_stop;
    broker.run();
    let after_restart = outbox(&store).len();
    wait(30, "deliveries of changes recorded after the restart", || {
        received(&sub).iter().any(|(_, v)| v["seq"].as_i64().unwrap() > after_restart as i64 + 30)
    });
    producing.store(false, Ordering::SeqCst);
    let incidents = producer.join().unwrap();
    let total = outbox(&store).len();
    assert_eq!(total, incidents * 3);
    wait(30, "every change at the subscriber", || distinct_ids(&sub) == total);
    let per_id = assert_complete_and_ordered(&store, &sub);
    wait(10, "acks flushed", || {
        store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0].backlog == 0
    });
    let st = &store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0];
    assert_eq!((st.delivered_total, st.dead_letter_count), (total as u64, 0));
    assert!(st.failed_attempts_total >= 1, "the outage was not noticed: {st:?}");
    assert!(st.last_error.as_deref().is_some_and(|e| e.contains("connect")), "{:?}", st.last_error);
    // mosquitto publishes its clients' wills when it shuts down (`offline`); the box says
    // `online` again on each connection.
    let avail = sub.on(&format!("gridwatch/{BOX}/availability"));
    assert_eq!(
        avail.iter().filter(|p| *p == "online").count(),
        2,
        "one `online` per connection: {avail:?}"
    );
    assert_eq!(avail.last().map(String::as_str), Some("online"), "{avail:?}");
    let dups: usize = per_id.values().map(|n| n - 1).sum();
    println!(
        "broker restart: {total} changes ({recorded_in_outage} recorded during the 2 s outage), {} failed attempts, {dups} duplicates",
        st.failed_attempts_total
    );
    up.shutdown();
}

#[test]
fn camera_status_is_retained_for_late_subscribers_and_a_stop_says_offline() {
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::start("", "");
    let (_d, store) = store();
    let cfg = mqtt_config(&broker.url(), "");
    let up = start(&store, &cfg);
    let t = OffsetDateTime::now_utc();
    store.append_camera_status("gate", false, Some("no frame for 10 s"), t).unwrap();
    store.append_camera_status("plaza", false, Some("RTSP 401"), t).unwrap();
    incident(&store, "yard", t);
    store.append_camera_status("gate", true, None, t + time::Duration::seconds(30)).unwrap();
    wait(20, "everything delivered", || {
        store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0].backlog == 0
    });

    // A subscriber that comes later gets each camera's latest status at once, flagged retained.
    let late = Subscriber::start(
        broker.port,
        "test-sub-late",
        &format!("gridwatch/{BOX}/status/+"),
        false,
    );
    wait(10, "the retained statuses", || late.msgs().len() >= 2);
    std::thread::sleep(Duration::from_millis(300));
    let got: BTreeMap<String, Msg> =
        late.msgs().into_iter().map(|m| (m.topic.clone(), m)).collect();
    assert_eq!(late.msgs().len(), 2, "one retained status per camera that has one: {got:?}");
    let latest = |cam: &str| {
        outbox(&store)
            .into_iter()
            .rfind(|e| json(e)["kind"] == "camera_status" && json(e)["camera_id"] == cam)
            .unwrap()
    };
    for (cam, change) in [("gate", "online"), ("plaza", "offline")] {
        let m = &got[&format!("gridwatch/{BOX}/status/{cam}")];
        assert!(m.retain, "{cam}: retained");
        assert_eq!(m.payload, latest(cam), "{cam}: the latest status envelope");
        assert_eq!(json(&m.payload)["change"], change);
    }
    // Events are not retained.
    let late_events = Subscriber::start(
        broker.port,
        "test-sub-late-ev",
        &format!("gridwatch/{BOX}/events/+"),
        false,
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(late_events.msgs().is_empty(), "{:?}", late_events.msgs());

    // The box is `online` (retained) while connected; a graceful stop publishes `offline`
    // and disconnects cleanly (so the broker discards the will).
    let avail_topic = format!("gridwatch/{BOX}/availability");
    let avail = Subscriber::start(broker.port, "test-sub-avail", &avail_topic, false);
    wait(10, "retained `online`", || avail.on(&avail_topic) == ["online"]);
    assert!(avail.msgs()[0].retain);
    up.shutdown();
    wait(10, "`offline` at shutdown", || avail.on(&avail_topic) == ["online", "offline"]);
    let later = Subscriber::start(broker.port, "test-sub-avail-2", &avail_topic, false);
    wait(10, "retained `offline`", || later.on(&avail_topic) == ["offline"]);
    assert!(later.msgs()[0].retain);
    wait(5, "the broker to log the clean disconnect", || {
        broker.logs().contains(&format!("Client gridwatch-{BOX}-city-mqtt disconnected"))
    });
}

/// The appliance config: one camera playing the test clip at its real speed, a presence
/// rule (events all along), the MQTT sink.
fn appliance_config(url: &str) -> String {
    format!(
        r#"[[uplink.mqtt]]
name = "city-mqtt"
url = "{url}"
keep_alive_secs = 5.0
[[cameras]]
id = "walk"
url = "{video}"
realtime = true
detect_fps = 2
detect_width = 320
models = ["coco"]
[[cameras.rules]]
kind = "presence"
classes = ["person"]
min_secs = 0.0
clear_secs = 0.5
[cameras.record]
enabled = false
"#,
        video = common::pets_mp4().display()
    )
}

#[test]
fn a_killed_box_is_declared_offline_by_its_last_will() {
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::start("", "");
    let sub = Subscriber::start(broker.port, "test-sub-will", "gridwatch/e2e/#", false);
    let avail = "gridwatch/e2e/availability";
    let mut a = common::Appliance::start(&appliance_config(&broker.url()));
    wait(120, "`online`, the camera's status and a first event", || {
        sub.on(avail) == ["online"]
            && !sub.on("gridwatch/e2e/status/walk").is_empty()
            && !sub.on("gridwatch/e2e/events/walk").is_empty()
    });
    let s = &a.get_json("/api/v1/uplink")["sinks"][0];
    assert_eq!((s["name"].as_str(), s["kind"].as_str()), (Some("city-mqtt"), Some("mqtt")), "{s}");
    assert_eq!(s["target"].as_str(), Some(broker.url().as_str()));
    assert_eq!(json(&sub.on("gridwatch/e2e/status/walk")[0])["change"], "online");

    // kill -9: no DISCONNECT, the broker publishes the will, retained.
    a.kill9();
    wait(15, "the last will", || sub.on(avail) == ["online", "offline"]);
    let late = Subscriber::start(broker.port, "test-sub-will-late", avail, false);
    wait(10, "retained `offline`", || late.on(avail) == ["offline"]);
    assert!(late.msgs()[0].retain);

    // Back: `online`; the backlog drains (everything recorded up to `last_seq` is PUBACKed).
    a.restart();
    wait(60, "`online` again", || sub.on(avail) == ["online", "offline", "online"]);
    let delivered_up_to = common::wait_for(60, "an empty backlog", || {
        let u = a.get_json("/api/v1/uplink");
        (u["sinks"][0]["backlog"].as_u64() == Some(0)).then(|| u["last_seq"].as_i64().unwrap())
    });
    // A graceful stop says `offline` itself.
    assert_eq!(a.stop(), Some(0), "{}", a.logs());
    wait(10, "`offline` at the stop", || {
        sub.on(avail) == ["online", "offline", "online", "offline"]
    });
    let logs = a.logs();
    assert!(
        logs.contains("MQTT connection closed") && !logs.contains("not acknowledged"),
        "{logs}"
    );

    // Across the kill -9: every change recorded up to `delivered_up_to` arrived; each
    // camera's changes first arrived in seq order; nothing arrived that was not recorded.
    let store = Store::open(&a.data()).unwrap();
    let stored: Vec<serde_json::Value> =
        store.feed_page(0, 10_000).unwrap().changes.iter().map(|(_, e)| json(e)).collect();
    let mut first: Vec<i64> = Vec::new();
    let mut seen = HashSet::new();
    wait(10, "the subscriber to catch up", || {
        let ids: HashSet<String> = sub
            .msgs()
            .iter()
            .filter(|m| !m.topic.ends_with("availability"))
            .map(|m| json(&m.payload)["id"].as_str().unwrap().to_string())
            .collect();
        stored
            .iter()
            .filter(|c| c["seq"].as_i64().unwrap() <= delivered_up_to)
            .all(|c| ids.contains(c["id"].as_str().unwrap()))
    });
    for m in sub.msgs().iter().filter(|m| !m.topic.ends_with("availability")) {
        let v = json(&m.payload);
        let seq = v["seq"].as_i64().unwrap();
        assert_eq!(
            stored.iter().find(|c| c["seq"] == seq),
            Some(&v),
            "received a change that is not stored as sent"
        );
        if seen.insert(seq) {
            first.push(seq);
        }
    }
    assert!(first.windows(2).all(|w| w[0] < w[1]), "first arrivals out of order: {first:?}");
    let changes = stored.iter().filter(|c| c["kind"] != "camera_status").count();
    assert!(changes >= 2 && first.len() >= 3, "{changes} event changes, {} received", first.len());
    println!("kill -9 + restart: {} changes received, {} recorded", first.len(), stored.len());
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA and a server certificate for `localhost` / 127.0.0.1 signed by it (openssl CLI).
fn make_certs(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run_ok(Command::new("openssl").current_dir(dir).args(["req", "-x509"]).args(ec).args([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=gridwatch test CA",
    ]));
    run_ok(Command::new("openssl").current_dir(dir).arg("req").args(ec).args([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]));
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run_ok(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]));
}

#[test]
fn tls_with_a_ca_file_and_a_password_from_the_environment() {
    if !have_mosquitto() {
        return;
    }
    const PASSWORD: &str = "c0rrect-h0rse-battery";
    const WRONG: &str = "Wr0ng-passw0rd-xyz";
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    run_ok(
        Command::new("mosquitto_passwd")
            .current_dir(certs.path())
            .args(["-c", "-b", "passwd", "gw", PASSWORD]),
    );
    // The plain listener stays anonymous (for the test subscriber); the TLS one needs a password.
    let tls_port = common::free_port();
    let c = certs.path().display();
    let broker = Broker::start(
        "per_listener_settings true",
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {c}/ca.pem\ncertfile {c}/server.pem\nkeyfile {c}/server.key\n\
             allow_anonymous false\npassword_file {c}/passwd"
        ),
    );
    let sub = Subscriber::start(broker.port, "test-sub-tls", &format!("gridwatch/{BOX}/#"), false);
    let (_d, store) = store();
    // SAFETY (edition 2021: safe fn): a variable no other test reads or writes.
    std::env::set_var("GRIDWATCH_TEST_MQTT_PASSWORD", PASSWORD);
    let url = format!("mqtts://localhost:{tls_port}");
    let fast = "timeout_secs = 1.0\nbackoff_min_secs = 0.2\nbackoff_max_secs = 0.5";
    let sink = |name: &str, extra: &str| -> (Arc<dyn Sink>, Policy) {
        let mut cfg = mqtt_config(&url, &format!("{fast}\n{extra}"));
        cfg.name = name.to_string();
        (Arc::new(MqttSink::new(&cfg, BOX).unwrap()), cfg.policy())
    };
    let ca = format!("ca_file = \"{c}/ca.pem\"");
    let sinks = vec![
        sink(
            "good",
            &format!("{ca}\nusername = \"gw\"\npassword_env = \"GRIDWATCH_TEST_MQTT_PASSWORD\""),
        ),
        sink("wrong-password", &format!("{ca}\nusername = \"gw\"\npassword = \"{WRONG}\"")),
        sink("system-roots", &format!("username = \"gw\"\npassword = \"{PASSWORD}\"")),
    ];
    let up = Uplink::start_sinks(&store, sinks, Arc::new(SystemClock), None).unwrap();
    incident(&store, "gate", OffsetDateTime::now_utc());
    let status = |name: &str| {
        store
            .uplink_status(OffsetDateTime::now_utc())
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
    };
    wait(30, "delivery over TLS with the password", || status("good").delivered_total == 3);
    wait(10, "the subscriber", || distinct_ids(&sub) == 3);
    assert_complete_and_ordered(&store, &sub);
    assert_eq!(
        (status("good").failed_attempts_total, status("good").target.as_str()),
        (0, url.as_str())
    );
    // The broker refuses a wrong password; a self-signed broker fails verification against
    // the system roots. Neither delivers; the errors say why and show no password.
    wait(30, "failed attempts of the other two", || {
        status("wrong-password").failed_attempts_total >= 1
            && status("system-roots").failed_attempts_total >= 1
    });
    let (wp, sr) = (status("wrong-password"), status("system-roots"));
    assert_eq!((wp.delivered_total, sr.delivered_total), (0, 0));
    let e = wp.last_error.clone().unwrap();
    assert!(e.contains("BadUserNamePassword") || e.contains("NotAuthorized"), "{e}");
    let e = sr.last_error.clone().unwrap();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let shown = format!("{:?}", store.uplink_status(OffsetDateTime::now_utc()).unwrap());
    assert!(
        !shown.contains(WRONG) && !shown.contains(PASSWORD),
        "a password leaked into the delivery status"
    );
    println!("wrong password: {:?}\nsystem roots: {:?}", wp.last_error, sr.last_error);
    up.shutdown();
}
