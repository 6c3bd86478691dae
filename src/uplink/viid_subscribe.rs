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
//! `Timeout`, its camera is named by `ResourceURI` as its `ResourceClass` reads it (absent or
//! 1: this block's `device_id` = every camera, a channel id or a camera id = that camera; 4:
//! this block's `device_id`; 5: a region code that the camera's channel id starts with) and
//! is in the owner's scope, and it has objects of a subscribed category (`SubscribeDetail`:
//! 11 persons, 13 motor vehicles, 14 non-motor vehicles) that pass its `Filter` (attribute
//! key–value pairs, [`Narrowing`]). `ResultImageDeclare` chooses the objects' images (ADR
//! 0051). Cancelled subscriptions and those of revoked tokens match nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use time::{OffsetDateTime, UtcOffset};

use super::config::Gat1400Config;
use super::gat1400::{
    answer_statuses, collection_object, map_change, mapped_fields, parse_viid_time, read_snapshot,
    viid_time, CallError, Images, CONTENT_TYPE,
};
use super::sink::{BoxFuture, Outcome, Sink};
use crate::store::outbox::{Envelope, OutboxRow};
use crate::store::viid::Subscription;
use crate::store::Store;

/// `SubscribeDetail` categories (GA/T 1400.3 订阅类别; the full list 1–16 was checked against
/// two open implementations, docs/api.md "GA/T 1400 subscriptions"): 11 persons, 12 faces,
/// 13 motor vehicles, 14 non-motor vehicles, 15 things, 16 files. This box notifies the three
/// it maps (faces and things are not produced, ADR 0051).
pub const DETAIL_PERSONS: &str = "11";
pub const DETAIL_FACES: &str = "12";
pub const DETAIL_MOTOR_VEHICLES: &str = "13";
pub const DETAIL_NON_MOTOR_VEHICLES: &str = "14";
pub const DETAIL_THINGS: &str = "15";
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

/// `ResourceClass` (GA/T 1400.4 订阅资源类别): what the ids of `ResourceURI` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceClass {
    /// 1: devices (APEs): this block's device id, a channel id or a camera id.
    Device,
    /// 4: view libraries (视图库): this block's device id, the box as a VIID node.
    Viid,
    /// 5: administrative divisions: 2-, 4- or 6-digit region codes, the leading digits of
    /// the channel ids.
    Region,
}

/// Which images a notification's objects keep (`ResultImageDeclare`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageDeclare {
    /// Absent: as pushed (the scene image, `Type` 14).
    AsPushed,
    /// `-1`: no `SubImageList`.
    None,
    /// Image type codes: only `SubImageInfoObject`s of these `Type`s.
    Types(Vec<String>),
}

/// The narrowing conditions of a `SubscribeObject` beyond resource ids, categories and
/// times: `ResourceClass`, `Filter` and `ResultImageDeclare` (ADR 0051). Parsed from the
/// object as received, by the API (a refusal is StatusCode 1 with the reason) and by the sink
/// (from the stored body), with this one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowing {
    pub class: Option<ResourceClass>,
    /// `Filter` as attribute key–value pairs: an object is notified only when each key is
    /// one of its fields and equals the value.
    pub filter: Vec<(String, String)>,
    pub images: ImageDeclare,
}

/// A scalar JSON value as text (strings as they are, numbers as their digits).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Narrowing {
    /// Reads them from a `SubscribeObject` whose ResourceURI lists `resources` and whose
    /// categories select `collections`; Err: why the subscription is refused.
    pub fn of(
        o: &serde_json::Map<String, Value>,
        resources: &[String],
        collections: &[&str],
    ) -> Result<Narrowing, String> {
        let class = match o.get("ResourceClass").and_then(scalar).filter(|s| !s.is_empty()) {
            None => None,
            Some(c) => Some(match c.as_str() {
                "1" => ResourceClass::Device,
                "4" => ResourceClass::Viid,
                "5" => ResourceClass::Region,
                "0" | "2" | "3" => {
                    return Err(format!(
                        "ResourceClass {c} ({}): this box has none; use 1 (devices), 4 (its VIID id) or 5 (region codes)",
                        match c.as_str() {
                            "0" => "tollgates",
                            "2" => "collected content",
                            _ => "cases",
                        }
                    ))
                }
                _ => return Err(format!("ResourceClass `{}` is not 0–5", crate::auth::loggable(&c))),
            }),
        };
        if class == Some(ResourceClass::Region)
            && resources
                .iter()
                .any(|r| !matches!(r.len(), 2 | 4 | 6) || !r.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(
                "with ResourceClass 5, ResourceURI lists 2-, 4- or 6-digit region codes".into()
            );
        }
        let filter = parse_filter(o.get("Filter"))?;
        for (k, _) in &filter {
            if k == "SubImageList"
                || !collections.iter().any(|c| mapped_fields(c).contains(&k.as_str()))
            {
                let mut known: Vec<&str> = collections
                    .iter()
                    .flat_map(|c| mapped_fields(c).iter().copied())
                    .filter(|f| *f != "SubImageList")
                    .collect();
                known.sort_unstable();
                known.dedup();
                return Err(format!(
                    "Filter key `{}` is not a field this box fills in the subscribed categories' objects ({})",
                    crate::auth::loggable(k),
                    known.join(", ")
                ));
            }
        }
        let images = match o.get("ResultImageDeclare").and_then(scalar).filter(|s| !s.is_empty()) {
            None => ImageDeclare::AsPushed,
            Some(d) if d == "-1" => ImageDeclare::None,
            Some(d) => {
                let types: Vec<String> =
                    d.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
                if types.is_empty()
                    || types.iter().any(|t| t.len() > 3 || !t.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err("ResultImageDeclare must be -1 or image type codes (e.g. 14), comma separated".into());
                }
                ImageDeclare::Types(types)
            }
        };
        Ok(Narrowing { class, filter, images })
    }

    /// The narrowing of a stored subscription (its body as received; checked when it was
    /// made, so a body that no longer reads narrows nothing rather than failing delivery).
    pub fn of_stored(s: &Subscription) -> Narrowing {
        let collections: Vec<&str> =
            s.details.iter().filter_map(|d| collection_of_detail(d)).collect();
        serde_json::from_str::<Value>(&s.body)
            .ok()
            .and_then(|v| match v {
                Value::Object(o) => Narrowing::of(&o, &s.resources, &collections).ok(),
                _ => None,
            })
            .unwrap_or(Narrowing {
                class: None,
                filter: Vec::new(),
                images: ImageDeclare::AsPushed,
            })
    }

    /// Whether `o` passes the filter.
    pub fn keeps(&self, o: &Value) -> bool {
        self.filter.iter().all(|(k, v)| o.get(k).and_then(scalar).is_some_and(|x| x == *v))
    }

    /// `o` with the images `ResultImageDeclare` asked for.
    pub fn images_of(&self, mut o: Value) -> Value {
        match &self.images {
            ImageDeclare::AsPushed => {}
            ImageDeclare::None => {
                if let Value::Object(m) = &mut o {
                    m.remove("SubImageList");
                }
            }
            ImageDeclare::Types(types) => {
                let keep =
                    |i: &Value| i.get("Type").and_then(scalar).is_some_and(|t| types.contains(&t));
                let left = match o["SubImageList"]["SubImageInfoObject"].as_array() {
                    Some(list) => list.iter().filter(|i| keep(i)).cloned().collect::<Vec<_>>(),
                    None => Vec::new(),
                };
                if let Value::Object(m) = &mut o {
                    if left.is_empty() {
                        m.remove("SubImageList");
                    } else {
                        m.insert("SubImageList".into(), json!({ "SubImageInfoObject": left }));
                    }
                }
            }
        }
        o
    }
}

/// `Filter` as key–value pairs: `Key=Value&Key2=Value2` (the attribute key–value form of the
/// standard's GET queries, percent-decoded) or a JSON object of scalars; empty: none.
fn parse_filter(f: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<(String, String)> = match f {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
        Some(Value::String(s)) => {
            let mut out = Vec::new();
            for part in s.split('&').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((k, v)) = part.split_once('=') else {
                    return Err(format!(
                        "Filter `{}`: expected Key=Value pairs joined by &",
                        crate::auth::loggable(s)
                    ));
                };
                let dec = |x: &str| {
                    url::form_urlencoded::parse(format!("x={x}").as_bytes())
                        .next()
                        .map(|(_, v)| v.trim().to_string())
                        .unwrap_or_default()
                };
                out.push((dec(k), dec(v)));
            }
            out
        }
        Some(Value::Object(m)) => {
            let mut out = Vec::new();
            for (k, v) in m {
                let Some(v) = scalar(v) else {
                    return Err(format!(
                        "Filter `{}`: values must be strings or numbers",
                        crate::auth::loggable(k)
                    ));
                };
                out.push((k.clone(), v));
            }
            out
        }
        Some(_) => return Err("Filter must be Key=Value pairs joined by & or a JSON object".into()),
    };
    if pairs.len() > 16 {
        return Err("Filter: at most 16 conditions".into());
    }
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k.is_empty() || k.len() > 64) {
        return Err(format!("Filter key `{}` is empty or too long", crate::auth::loggable(k)));
    }
    Ok(pairs)
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
            images: Images::of(cfg, masker, false),
        })
    }

    /// The channel id of a camera (the block's device id when it has none).
    fn channel<'a>(&'a self, camera: &str) -> &'a str {
        self.channels.get(camera).map(String::as_str).unwrap_or(&self.device_id)
    }

    /// Whether `s` (narrowed by `narrowing`, read from it) wants changes of `env` (recorded
    /// as outbox `seq`); the collections it subscribed to, if so.
    pub fn matches(
        &self,
        s: &Subscription,
        narrowing: &Narrowing,
        env: &Envelope,
        seq: i64,
    ) -> Vec<&'static str> {
        let t = env.at;
        let time = |v: &Option<String>| v.as_deref().and_then(|v| parse_viid_time(v, self.offset));
        let in_time = seq > s.after_seq
            && time(&s.begin_time).is_none_or(|b| t >= b)
            && time(&s.end_time).is_none_or(|e| t <= e)
            && s.expires_at.is_none_or(|e| t < e);
        let cam = env.camera_id.as_str();
        let channel = self.channels.get(cam);
        let named = match narrowing.class {
            None | Some(ResourceClass::Device) => {
                s.resources.iter().any(|r| *r == self.device_id || Some(r) == channel || r == cam)
            }
            Some(ResourceClass::Viid) => s.resources.contains(&self.device_id),
            Some(ResourceClass::Region) => {
                let id = self.channel(cam);
                s.resources.iter().any(|r| id.starts_with(r.as_str()))
            }
        };
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
        // Each subscription's narrowing is read from its stored body once per change.
        let wanted: Vec<(&Subscription, Narrowing, Vec<&'static str>)> = subs
            .iter()
            .map(|s| {
                let narrowing = Narrowing::of_stored(s);
                let collections = self.matches(s, &narrowing, &env, row.seq);
                (s, narrowing, collections)
            })
            .filter(|(_, _, c)| !c.is_empty())
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
        for (s, narrowing, collections) in wanted {
            let body = match notification(
                s,
                &mapped,
                &collections,
                &narrowing,
                &self.device_id,
                &trigger,
                row.seq,
            ) {
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
/// change has no object of `collections` that passes the subscription's `Filter`), with the
/// images its `ResultImageDeclare` asks for. Its `NotificationID` is the box's device id, the
/// change's time and its outbox seq (mod 100000): the same on every redelivery.
pub fn notification(
    s: &Subscription,
    mapped: &BTreeMap<&'static str, Vec<Value>>,
    collections: &[&'static str],
    narrowing: &Narrowing,
    device_id: &str,
    trigger: &str,
    seq: i64,
) -> Option<Value> {
    let mut o = serde_json::Map::new();
    let mut ids = Vec::new();
    for c in collections {
        let Some(objects) = mapped.get(c) else { continue };
        let objects: Vec<Value> = objects
            .iter()
            .filter(|ob| narrowing.keeps(ob))
            .map(|ob| narrowing.images_of(ob.clone()))
            .collect();
        if objects.is_empty() {
            continue;
        }
        let kind = collection_object(c);
        for ob in &objects {
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
