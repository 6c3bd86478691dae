//! GA/T 1400 (VIID) subscription notifications (issue 18 item 4, ADR 0047): the sink
//! `<name>-subscriptions` of a `[[uplink.gat1400]]` block pushes
//! `POST <ReceiveAddr>` `SubscribeNotificationListObject` for every stored subscription
//! (`store::viid`, made through `POST /VIID/Subscribes`, api/viid.rs) that a change
//! matches. It is an ordinary outbox sink: per-camera order, a durable cursor, backoff and
//! dead letters come from the worker; a change is done when every matching subscription's
//! receiver answered StatusCode 0 for it (on a retry all of them get it again, with the same
//! `NotificationID`: receivers dedupe).
//!
//! A change matches a subscription when it is an event's `started` change with a snapshot
//! (the objects are [`map_change`]'s, as the platform push sends them), recorded after the
//! subscription was made, its time is within `BeginTime`…`EndTime` and before its
//! `Timeout`, its camera is named by `ResourceURI` (this block's `device_id`: every camera;
//! a channel id or a camera id: that camera) and in the owner's scope, and it has objects of
//! a subscribed category (`SubscribeDetail`: 11 persons, 13 motor vehicles, 14 non-motor
//! vehicles). Cancelled subscriptions and those of revoked tokens match nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use time::{OffsetDateTime, UtcOffset};

use super::config::Gat1400Config;
use super::gat1400::{
    answer_statuses, collection_object, map_change, parse_viid_time, read_snapshot, viid_time,
    CallError, Images, CONTENT_TYPE,
};
use super::sink::{BoxFuture, Outcome, Sink};
use crate::store::outbox::{Envelope, OutboxRow};
use crate::store::viid::Subscription;
use crate::store::Store;

/// `SubscribeDetail` categories this box notifies (GA/T 1400.3 subscription categories;
/// 12 = faces was checked against a published example, the others are from the same list).
pub const DETAIL_PERSONS: &str = "11";
pub const DETAIL_MOTOR_VEHICLES: &str = "13";
pub const DETAIL_NON_MOTOR_VEHICLES: &str = "14";
pub const SUPPORTED_DETAILS: [&str; 3] =
    [DETAIL_PERSONS, DETAIL_MOTOR_VEHICLES, DETAIL_NON_MOTOR_VEHICLES];

/// The collection notified for a category.
pub fn collection_of_detail(d: &str) -> Option<&'static str> {
    match d {
        DETAIL_PERSONS => Some("Persons"),
        DETAIL_MOTOR_VEHICLES => Some("MotorVehicles"),
        DETAIL_NON_MOTOR_VEHICLES => Some("NonMotorVehicles"),
        _ => None,
    }
}

/// The notification sink of one `[[uplink.gat1400]]` block.
pub struct ViidSubscribeSink {
    name: String,
    device_id: String,
    channels: BTreeMap<String, String>,
    offset: UtcOffset,
    timeout: Duration,
    client: reqwest::Client,
    store: Store,
    images: Images,
}

impl ViidSubscribeSink {
    /// The notification sink of `cfg`; snapshots masked with `masker` unless the block's
    /// `send_unmasked_images`.
    pub fn new(
        cfg: &Gat1400Config,
        store: Store,
        masker: super::SnapshotMasking,
    ) -> Result<ViidSubscribeSink, String> {
        let timeout = Duration::from_secs_f64(cfg.delivery.timeout_secs);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(cfg.delivery.connect_timeout_secs))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gridwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("gat1400 sink `{}`: HTTP client: {e}", cfg.name))?;
        let secs = (cfg.utc_offset_hours * 3600.0).round() as i32;
        let offset = UtcOffset::from_whole_seconds(secs)
            .map_err(|e| format!("gat1400 sink `{}`: {e}", cfg.name))?;
        Ok(ViidSubscribeSink {
            name: cfg.subscriptions_sink_name(),
            device_id: cfg.device_id.clone(),
            channels: cfg.channels.clone(),
            offset,
            timeout,
            client,
            store,
            images: Images::of(cfg, masker),
        })
    }

    /// The channel id of a camera (the block's device id when it has none).
    fn channel<'a>(&'a self, camera: &str) -> &'a str {
        self.channels.get(camera).map(String::as_str).unwrap_or(&self.device_id)
    }

    /// Whether `s` wants changes of `env` (recorded as outbox `seq`); the collections it
    /// subscribed to, if so.
    pub fn matches(&self, s: &Subscription, env: &Envelope, seq: i64) -> Vec<&'static str> {
        let t = env.at;
        let time = |v: &Option<String>| v.as_deref().and_then(|v| parse_viid_time(v, self.offset));
        let in_time = seq > s.after_seq
            && time(&s.begin_time).is_none_or(|b| t >= b)
            && time(&s.end_time).is_none_or(|e| t <= e)
            && s.expires_at.is_none_or(|e| t < e);
        let cam = env.camera_id.as_str();
        let channel = self.channels.get(cam);
        let named =
            s.resources.iter().any(|r| *r == self.device_id || Some(r) == channel || r == cam);
        let in_scope = s.scope.as_ref().is_none_or(|sc| {
            sc.cameras.iter().any(|c| c == cam)
                || env.grid_cell.as_ref().is_some_and(|g| sc.grid_cells.contains(g))
        });
        if !(in_time && named && in_scope) {
            return Vec::new();
        }
        s.details.iter().filter_map(|d| collection_of_detail(d)).collect()
    }

    /// `POST <ReceiveAddr>` of one notification; Ok when every status is 0.
    async fn notify(&self, s: &Subscription, body: &Value) -> Result<(), CallError> {
        let mut url = s.receive_addr.clone();
        if url::Url::parse(&url).is_ok_and(|u| u.path() == "/" || u.path().is_empty()) {
            url = format!("{}/VIID/SubscribeNotifications", url.trim_end_matches('/'));
        }
        let what = format!("subscription {} notification", s.id);
        let resp = self
            .client
            .post(&url)
            .header("content-type", CONTENT_TYPE)
            .header("accept", "application/json, application/VIID+JSON")
            .header("User-Identify", &self.device_id)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                CallError::Unavailable(format!(
                    "{what}: {}",
                    if e.is_timeout() {
                        format!("timed out (limit {:.1} s)", self.timeout.as_secs_f64())
                    } else {
                        "cannot reach the ReceiveAddr".into()
                    }
                ))
            })?;
        let status = resp.status().as_u16();
        let got = super::gat1400::read_answer(resp)
            .await
            .map_err(|_| CallError::Unavailable(format!("{what}: reading the answer failed")))?;
        let st = answer_statuses(&what, status, &got)?;
        if st.is_empty() {
            return Err(CallError::Malformed(format!("{what}: no ResponseStatusObject")));
        }
        match st.iter().find(|x| x.code != 0) {
            None => Ok(()),
            Some(x) => Err(x.error(&what)),
        }
    }

    async fn deliver_row(&self, row: &OutboxRow) -> Outcome {
        if row.change != "started" || row.event_id.is_none() {
            return Outcome::Delivered;
        }
        let store = self.store.clone();
        let subs = match tokio::task::spawn_blocking(move || store.viid_subscriptions(None)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return retry(format!("reading subscriptions: {e}")),
            Err(e) => return retry(format!("reading subscriptions: {e}")),
        };
        if subs.is_empty() {
            return Outcome::Delivered;
        }
        let env: Envelope = match serde_json::from_str(&row.envelope) {
            Ok(e) => e,
            Err(e) => {
                return Outcome::Rejected { status: None, error: format!("stored envelope: {e}") }
            }
        };
        let wanted: Vec<(&Subscription, Vec<&'static str>)> = subs
            .iter()
            .map(|s| (s, self.matches(s, &env, row.seq)))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        if wanted.is_empty() {
            return Outcome::Delivered;
        }
        let snap = match read_snapshot(Some(self.store.clone()), &env, &self.images).await {
            Ok(Some(snap)) => snap,
            Ok(None) => return Outcome::Delivered, // objects need their source image
            Err(error) => return Outcome::Retry { status: None, error, retry_after: None },
        };
        let mapped = map_change(&env, row.seq, self.channel(&env.camera_id), &snap, self.offset);
        let trigger = viid_time(env.at, self.offset);
        let mut failure: Option<CallError> = None;
        for (s, collections) in wanted {
            let body =
                match notification(s, &mapped, &collections, &self.device_id, &trigger, row.seq) {
                    Some(b) => b,
                    None => continue, // no object of its categories in this change
                };
            if let Err(e) = self.notify(s, &body).await {
                tracing::warn!(sink = %self.name, subscription = %s.id, "VIID notification failed: {e}");
                // A transient failure wins over a refusal: the change is retried for all.
                if !matches!(failure, Some(CallError::Unavailable(_) | CallError::Malformed(_))) {
                    failure = Some(e);
                }
            }
        }
        match failure {
            None => Outcome::Delivered,
            Some(CallError::Refused(error)) => Outcome::Rejected { status: None, error },
            Some(e) => retry(e.to_string()),
        }
    }
}

fn retry(error: String) -> Outcome {
    Outcome::Retry { status: None, error, retry_after: None }
}

/// The `SubscribeNotificationListObject` of one subscription for one change (None when the
/// change has no object of `collections`). Its `NotificationID` is the box's device id, the
/// change's time and its outbox seq (mod 100000): the same on every redelivery.
pub fn notification(
    s: &Subscription,
    mapped: &BTreeMap<&'static str, Vec<Value>>,
    collections: &[&'static str],
    device_id: &str,
    trigger: &str,
    seq: i64,
) -> Option<Value> {
    let mut o = serde_json::Map::new();
    let mut ids = Vec::new();
    for c in collections {
        let Some(objects) = mapped.get(c).filter(|o| !o.is_empty()) else { continue };
        let kind = collection_object(c);
        for ob in objects {
            if let Some(id) = ob[format!("{kind}ID")].as_str() {
                ids.push(id.to_string());
            }
        }
        o.insert(format!("{kind}ObjectList"), json!({ format!("{kind}Object"): objects }));
    }
    if o.is_empty() {
        return None;
    }
    o.insert(
        "NotificationID".into(),
        json!(format!("{device_id}{trigger}{:05}", seq.rem_euclid(100_000))),
    );
    o.insert("SubscribeID".into(), json!(s.id));
    o.insert("Title".into(), json!(s.title.clone().unwrap_or_default()));
    o.insert("TriggerTime".into(), json!(trigger));
    o.insert("InfoIDs".into(), json!(ids.join(",")));
    Some(json!({"SubscribeNotificationListObject": {"SubscribeNotificationObject": [o]}}))
}

impl Sink for ViidSubscribeSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "gat1400_subscriptions"
    }
    fn target(&self) -> String {
        "VIID subscribers (their ReceiveAddr)".into()
    }
    fn deliver<'a>(&'a self, row: &'a OutboxRow, _now: OffsetDateTime) -> BoxFuture<'a, Outcome> {
        Box::pin(self.deliver_row(row))
    }
}
