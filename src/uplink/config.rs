//! `[uplink]`: the pull feed's outbox retention, the public URL of media links, and the sinks
//! (`[[uplink.webhooks]]`, `[[uplink.mqtt]]`). docs/config.md and docs/api.md "Uplink"
//! document every key.
//!
//! Every sink kind shares the keys `enabled` and the delivery settings ([`Delivery`]:
//! timeouts, backoff, retry window), declared once in [`sink_config!`] and validated once;
//! [`SinkConfig::policy`] turns them into the worker's retry policy.
//!
//! Adding a sink kind: its config struct here (`sink_config!` + `impl SinkConfig`), its field
//! in [`UplinkConfig`] (and `Default`) and its entry in `UplinkConfig::sink_lists`, its module
//! with the [`super::sink::Sink`] implementation, and its registration line in `Uplink::start`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::worker::Policy;
use crate::redact::redact_url;

/// `[uplink]`: delivery of event and camera-status changes to the city platform: the sinks,
/// and the outbox the pull feed serves (docs/api.md "Uplink").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// Base of the absolute snapshot and clip URLs in envelopes, as the platform reaches
    /// the box. Default: `http://` + `api.listen`.
    pub public_url: Option<String>,
    /// Outbox rows older than this are deleted once every sink is done with them (the pull
    /// feed serves what is kept). Default 30.
    pub outbox_retention_days: f64,
    /// `[[uplink.webhooks]]`: HTTP endpoints that get every change, signed.
    pub webhooks: Vec<WebhookConfig>,
    /// `[[uplink.mqtt]]`: MQTT brokers that get every change (QoS 1).
    pub mqtt: Vec<MqttConfig>,
    /// `[[uplink.gat1400]]`: GA/T 1400 (VIID) platforms that get structured objects.
    pub gat1400: Vec<Gat1400Config>,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            public_url: None,
            outbox_retention_days: 30.0,
            webhooks: vec![],
            mqtt: vec![],
            gat1400: vec![],
        }
    }
}

impl UplinkConfig {
    /// Base of the absolute media URLs (no trailing slash); `listen` is `api.listen`.
    pub fn public_url(&self, listen: SocketAddr) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{listen}"),
        }
    }

    /// The sink kinds' lists, one entry per kind.
    fn sink_lists(&self) -> Vec<&dyn SinkList> {
        vec![&self.webhooks, &self.mqtt, &self.gat1400]
    }

    /// Whether any sink is configured (enabled or not).
    pub fn any_sink(&self) -> bool {
        self.sink_lists().iter().any(|l| !l.is_empty())
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(u) = &self.public_url {
            let p = url::Url::parse(u)
                .map_err(|e| format!("field `uplink.public_url`: `{u}` is not a URL: {e}"))?;
            if !matches!(p.scheme(), "http" | "https")
                || p.query().is_some()
                || p.fragment().is_some()
            {
                return Err(
                    "field `uplink.public_url`: must be an http(s) URL without query or fragment"
                        .into(),
                );
            }
        }
        if !(self.outbox_retention_days.is_finite() && self.outbox_retention_days > 0.0) {
            return Err("field `uplink.outbox_retention_days`: must be > 0".into());
        }
        // Sink names are unique across all kinds.
        let mut names = HashMap::new();
        for list in self.sink_lists() {
            list.validate(&mut names)?;
        }
        // A block's subscription sink (`<name>-subscriptions`) shares the namespace too.
        for (i, g) in self.gat1400.iter().enumerate().filter(|(_, g)| g.subscriptions) {
            let derived = g.subscriptions_sink_name();
            if names.contains_key(derived.as_str()) {
                return Err(format!(
                    "field `uplink.gat1400[{i}].subscriptions` (gat1400 sink `{}`): its subscription sink `{derived}` has the name of another sink; rename one or set subscriptions = false",
                    g.name
                ));
            }
        }
        Ok(())
    }

    /// Checks the sinks' references to cameras against the configured camera ids.
    pub fn check_cameras(&self, cameras: &[&str]) -> Result<(), String> {
        for (i, g) in self.gat1400.iter().enumerate() {
            if let Some(cam) = g.channels.keys().find(|c| !cameras.contains(&c.as_str())) {
                return Err(format!(
                    "field `uplink.gat1400[{i}].channels.{cam}` (gat1400 sink `{}`): no camera `{cam}` is configured",
                    g.name
                ));
            }
        }
        Ok(())
    }
}

/// The configured sinks of one kind (`Vec<C>`), kind-erased for [`UplinkConfig`].
trait SinkList {
    fn is_empty(&self) -> bool;
    /// Checks them, adding their names to `names` (name → kind).
    fn validate<'a>(&'a self, names: &mut HashMap<&'a str, &'static str>) -> Result<(), String>;
}

impl<C: SinkConfig> SinkList for Vec<C> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
    fn validate<'a>(&'a self, names: &mut HashMap<&'a str, &'static str>) -> Result<(), String> {
        validate_sinks(self, names)
    }
}

/// Checks the sinks of one kind: names (unique across all kinds, in `names`), the kind's own
/// keys, then the shared delivery settings. Messages name the field and the sink, e.g.
/// ``field `uplink.webhooks[0].url` (webhook `city`)``.
fn validate_sinks<'a, C: SinkConfig>(
    sinks: &'a [C],
    names: &mut HashMap<&'a str, &'static str>,
) -> Result<(), String> {
    for (i, s) in sinks.iter().enumerate() {
        let name = s.name();
        let at = |f: &str| format!("field `uplink.{}[{i}].{f}` ({} `{name}`)", C::KEY, C::LABEL);
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "{}: must be non-empty and use only letters, digits, '-' and '_'",
                at("name")
            ));
        }
        match names.insert(name, C::KEY) {
            Some(k) if k == C::KEY => return Err(format!("{}: duplicate sink name", at("name"))),
            Some(_) => {
                return Err(format!(
                    "{}: duplicate sink name (sinks of all kinds share names)",
                    at("name")
                ))
            }
            None => {}
        }
        s.validate(&at)?;
        s.delivery().validate(&at)?;
    }
    Ok(())
}

/// A sink kind's config block (`[[uplink.<KEY>]]`).
pub trait SinkConfig {
    /// Its array under `[uplink]`, as in field paths: `webhooks`, `mqtt`.
    const KEY: &'static str;
    /// What messages call one sink of this kind: `webhook`, `mqtt sink`.
    const LABEL: &'static str;
    /// The unique sink name (its delivery state is kept under it).
    fn name(&self) -> &str;
    /// `enabled = false` keeps the block (and its delivery state) without running it.
    fn enabled(&self) -> bool;
    fn delivery(&self) -> &Delivery;
    /// Checks the kind's own keys (the name and the delivery settings are checked by the
    /// caller); `at(field)` is the start of a message naming the field and the sink.
    fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), String>;
    /// The worker's retry policy for this sink.
    fn policy(&self) -> Policy {
        self.delivery().policy()
    }
}

/// Delivery settings shared by every sink kind (top-level keys of its block).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `connect_timeout_secs`: limit of one connection attempt. Default 5.
    pub connect_timeout_secs: f64,
    /// `timeout_secs`: limit of one delivery attempt. Default 10.
    pub timeout_secs: f64,
    /// `backoff_min_secs`: first retry delay (doubles per failure, with jitter). Default 1.
    pub backoff_min_secs: f64,
    /// `backoff_max_secs`: longest retry delay. Default per kind (webhooks 3600, MQTT 60).
    pub backoff_max_secs: f64,
    /// `max_retry_hours`: a change is retried until it is this old, then dead-lettered.
    /// Default 72.
    pub max_retry_hours: f64,
}

impl Delivery {
    /// The defaults; a kind may change some (`Delivery { backoff_max_secs: 60.0, ..DEFAULT }`).
    pub const DEFAULT: Delivery = Delivery {
        connect_timeout_secs: 5.0,
        timeout_secs: 10.0,
        backoff_min_secs: 1.0,
        backoff_max_secs: 3600.0,
        max_retry_hours: 72.0,
    };

    fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        for (f, v) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("timeout_secs", self.timeout_secs),
            ("backoff_min_secs", self.backoff_min_secs),
            ("max_retry_hours", self.max_retry_hours),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{}: must be > 0", at(f)));
            }
        }
        if !(self.backoff_max_secs.is_finite() && self.backoff_max_secs >= self.backoff_min_secs) {
            return Err(format!("{}: must be ≥ backoff_min_secs", at("backoff_max_secs")));
        }
        Ok(())
    }

    /// The worker's retry policy (its other settings at their defaults).
    pub fn policy(&self) -> Policy {
        use std::time::Duration;
        Policy {
            backoff_min: Duration::from_secs_f64(self.backoff_min_secs),
            backoff_max: Duration::from_secs_f64(self.backoff_max_secs),
            max_retry: Duration::from_secs_f64(self.max_retry_hours * 3600.0),
            ..Policy::default()
        }
    }
}

/// Declares a sink's config struct: its own keys as written, plus the keys every sink shares
/// (`enabled`, and the [`Delivery`] keys with the given defaults). The TOML block is read
/// into a flat private struct with `deny_unknown_fields`, so unknown keys are refused and
/// errors name their key, as for any other block (serde's `flatten` would lose both).
/// Field attributes: doc comments, then at most one `#[serde(…)]`.
macro_rules! sink_config {
    (
        $(#[doc = $doc:literal])*
        pub struct $name:ident($raw:ident) {
            $(
                $(#[doc = $fdoc:literal])*
                $(#[serde($($fserde:tt)*)])?
                pub $field:ident: $ty:ty,
            )*
        }
        delivery_defaults = $defaults:expr;
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $(
                $(#[doc = $fdoc])*
                pub $field: $ty,
            )*
            /// `enabled`: run this sink. Default true.
            pub enabled: bool,
            /// The delivery keys (`connect_timeout_secs`, `timeout_secs`, `backoff_min_secs`,
            /// `backoff_max_secs`, `max_retry_hours`).
            pub delivery: Delivery,
        }

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $raw {
            $(
                $(#[serde($($fserde)*)])?
                $field: $ty,
            )*
            enabled: Option<bool>,
            connect_timeout_secs: Option<f64>,
            timeout_secs: Option<f64>,
            backoff_min_secs: Option<f64>,
            backoff_max_secs: Option<f64>,
            max_retry_hours: Option<f64>,
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let r = $raw::deserialize(d)?;
                let dflt: Delivery = $defaults;
                Ok($name {
                    $($field: r.$field,)*
                    enabled: r.enabled.unwrap_or(true),
                    delivery: Delivery {
                        connect_timeout_secs: r
                            .connect_timeout_secs
                            .unwrap_or(dflt.connect_timeout_secs),
                        timeout_secs: r.timeout_secs.unwrap_or(dflt.timeout_secs),
                        backoff_min_secs: r.backoff_min_secs.unwrap_or(dflt.backoff_min_secs),
                        backoff_max_secs: r.backoff_max_secs.unwrap_or(dflt.backoff_max_secs),
                        max_retry_hours: r.max_retry_hours.unwrap_or(dflt.max_retry_hours),
                    },
                })
            }
        }
    };
}

/// A secret from the config: never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `value`, or else the environment variable named by `env` (`env_key` names that key in
    /// messages); `None` when neither is given.
    fn from_config(
        value: &Option<Secret>,
        env: &Option<String>,
        key: &str,
        env_key: &str,
    ) -> Result<Option<Secret>, String> {
        match (value, env) {
            // A documented example's placeholder (docs/config.md) must never work.
            (Some(s), None)
                if s.0.trim_start().starts_with('<') && s.0.trim_end().ends_with('>') =>
            {
                Err(format!(
                    "`{key}` is a `<…>` placeholder: generate your own secret (docs/config.md)"
                ))
            }
            (Some(s), None) => Ok(Some(s.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
                _ => Err(format!("environment variable `{var}` ({env_key}) is not set or empty")),
            },
            (Some(_), Some(_)) => Err(format!("give `{key}` or `{env_key}`, not both")),
            (None, None) => Ok(None),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

sink_config! {
    /// `[[uplink.webhooks]]`: one HTTP endpoint that receives every change, signed.
    pub struct WebhookConfig(RawWebhookConfig) {
        /// Unique sink name (letters, digits, '-', '_'); its delivery state is kept under it.
        pub name: String,
        /// `http://` or `https://` URL the envelopes are POSTed to.
        pub url: String,
        /// Signing secret (`whsec_<base64>` as Standard Webhooks generates them, or any string).
        #[serde(default)]
        pub secret: Option<Secret>,
        /// … or the name of an environment variable holding it.
        #[serde(default)]
        pub secret_env: Option<String>,
        /// Non-retryable 4xx answers to one change before it is dead-lettered. Default 3.
        #[serde(default = "default_dead_letter_after")]
        pub dead_letter_after: u32,
    }
    delivery_defaults = Delivery::DEFAULT;
}

fn default_dead_letter_after() -> u32 {
    3
}

impl WebhookConfig {
    /// The signing secret, from `secret` or the environment variable `secret_env`.
    pub fn secret_value(&self) -> Result<Secret, String> {
        match Secret::from_config(&self.secret, &self.secret_env, "secret", "secret_env")? {
            Some(s) if !s.expose().is_empty() => Ok(s),
            Some(_) => Err("`secret` must not be empty".into()),
            None => Err("a signing secret is required: set `secret` or `secret_env`".into()),
        }
    }
}

impl SinkConfig for WebhookConfig {
    const KEY: &'static str = "webhooks";
    const LABEL: &'static str = "webhook";
    fn name(&self) -> &str {
        &self.name
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn delivery(&self) -> &Delivery {
        &self.delivery
    }
    fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        let u = url::Url::parse(&self.url).map_err(|e| format!("{}: not a URL: {e}", at("url")))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
            return Err(format!("{}: must be an http:// or https:// URL", at("url")));
        }
        let secret = self.secret_value().map_err(|m| format!("{}: {m}", at("secret")))?;
        super::signing::key_bytes(secret.expose()).map_err(|m| format!("{}: {m}", at("secret")))?;
        if self.dead_letter_after == 0 {
            return Err(format!("{}: must be ≥ 1", at("dead_letter_after")));
        }
        Ok(())
    }
    fn policy(&self) -> Policy {
        Policy { dead_letter_after: self.dead_letter_after, ..self.delivery.policy() }
    }
}

sink_config! {
    /// `[[uplink.mqtt]]`: one MQTT broker that gets every change, published at QoS 1 to
    /// `{topic_prefix}/{box_id}/events/{camera_id}` (camera status retained on
    /// `…/status/{camera_id}`), with a last will on `{topic_prefix}/{box_id}/availability`.
    /// `timeout_secs` is how long one delivery attempt waits for the broker connection, then
    /// for the PUBACK; `connect_timeout_secs` limits TCP + TLS + MQTT CONNECT. A PUBACK cannot
    /// refuse a change, so changes are dead-lettered only when too old or too large.
    pub struct MqttConfig(RawMqttConfig) {
        /// Unique sink name (shared namespace with the webhooks); its delivery state is kept
        /// under it.
        pub name: String,
        /// `mqtt://host[:port]` (plain TCP, port 1883 by default) or `mqtts://host[:port]`
        /// (TLS, port 8883 by default). No credentials in the URL: use `username` / `password`.
        pub url: String,
        /// MQTT client id. Default: `gridwatch-{box_id}-{name}`.
        #[serde(default)]
        pub client_id: Option<String>,
        #[serde(default)]
        pub username: Option<String>,
        /// Password (never logged) …
        #[serde(default)]
        pub password: Option<Secret>,
        /// … or the name of an environment variable holding it.
        #[serde(default)]
        pub password_env: Option<String>,
        /// PEM file with the CA certificate(s) the broker's certificate must chain to (only
        /// with `mqtts://`). Default: the system's CA roots.
        #[serde(default)]
        pub ca_file: Option<PathBuf>,
        /// First topic level. Default `gridwatch`.
        #[serde(default = "default_topic_prefix")]
        pub topic_prefix: String,
        /// MQTT keep-alive. Default 30.
        #[serde(default = "default_keep_alive")]
        pub keep_alive_secs: f64,
    }
    delivery_defaults = Delivery { backoff_max_secs: 60.0, ..Delivery::DEFAULT };
}

fn default_topic_prefix() -> String {
    "gridwatch".into()
}
fn default_keep_alive() -> f64 {
    30.0
}

impl MqttConfig {
    /// The password, from `password` or the environment variable `password_env` (None: none).
    pub fn password_value(&self) -> Result<Option<Secret>, String> {
        Secret::from_config(&self.password, &self.password_env, "password", "password_env")
    }

    /// Whether the URL asks for TLS (`mqtts://`).
    pub fn tls(&self) -> bool {
        self.url.starts_with("mqtts://")
    }

    /// (host, port) of the URL (validated by `Config::parse`).
    pub fn host_port(&self) -> Result<(String, u16), String> {
        let u = url::Url::parse(&self.url).map_err(|e| format!("not a URL: {e}"))?;
        let tls = match u.scheme() {
            "mqtt" => false,
            "mqtts" => true,
            _ => return Err("must be an mqtt:// or mqtts:// URL".into()),
        };
        let host = match u.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err("must name a host".into()),
        };
        if !u.username().is_empty() || u.password().is_some() {
            return Err("must not hold credentials (use `username` and `password`)".into());
        }
        if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
            return Err("must be mqtt[s]://host[:port] without path, query or fragment".into());
        }
        Ok((host, u.port().unwrap_or(if tls { 8883 } else { 1883 })))
    }
}

impl SinkConfig for MqttConfig {
    const KEY: &'static str = "mqtt";
    const LABEL: &'static str = "mqtt sink";
    fn name(&self) -> &str {
        &self.name
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn delivery(&self) -> &Delivery {
        &self.delivery
    }
    fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        self.host_port().map_err(|e| format!("{}: `{}` {e}", at("url"), redact_url(&self.url)))?;
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 128 {
                return Err(format!("{}: must be 1–128 characters", at("client_id")));
            }
        }
        let password = self.password_value().map_err(|e| format!("{}: {e}", at("password")))?;
        if password.is_some() && self.username.is_none() {
            return Err(format!("{}: a password needs a `username`", at("password")));
        }
        if self.ca_file.is_some() && !self.tls() {
            return Err(format!("{}: only used with an mqtts:// URL", at("ca_file")));
        }
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['+', '#', '\0'])
            || self.topic_prefix.ends_with('/')
        {
            return Err(format!(
                "{}: must be non-empty, without '+', '#' or a trailing '/'",
                at("topic_prefix")
            ));
        }
        if !(self.keep_alive_secs.is_finite() && (1.0..=65535.0).contains(&self.keep_alive_secs)) {
            return Err(format!("{}: must be between 1 and 65535", at("keep_alive_secs")));
        }
        Ok(())
    }
}

sink_config! {
    /// `[[uplink.gat1400]]`: one GA/T 1400 (VIID) platform the box registers with (as an
    /// APE, HTTP Digest), keeps alive, syncs time with, and pushes structured objects to
    /// (`MotorVehicles`, `NonMotorVehicles`, `Persons`; docs/api.md "GA/T 1400").
    pub struct Gat1400Config(RawGat1400Config) {
        /// Unique sink name (shared namespace with the other sinks).
        pub name: String,
        /// Base URL of the platform (`http://host:port`); the calls go to `/VIID/…` under it.
        pub url: String,
        /// The box's 20-digit GA/T 1400 device id (region 8 + industry 2 + type 2 + subtype 2
        /// + sequence 6).
        pub device_id: String,
        /// Camera id → its 20-digit channel id (the `DeviceID` of its objects). A camera
        /// without one uses `device_id`.
        #[serde(default)]
        pub channels: std::collections::BTreeMap<String, String>,
        /// Digest username. Default: `device_id`.
        #[serde(default)]
        pub username: Option<String>,
        /// Digest password (never logged) …
        #[serde(default)]
        pub password: Option<Secret>,
        /// … or the name of an environment variable holding it. One of the two is required.
        #[serde(default)]
        pub password_env: Option<String>,
        /// Collections pushed. Default `MotorVehicles`, `NonMotorVehicles`, `Persons`; also
        /// `Images` (each incident's snapshot) and `VideoSlices` (its clip, by reference).
        #[serde(default = "default_gat1400_kinds")]
        pub kinds: Vec<String>,
        /// A keepalive is sent when the box made no request to the platform this long. Default 90.
        #[serde(default = "default_gat1400_keepalive")]
        pub keepalive_secs: f64,
        /// After a failed registration the next one is tried after a random delay up to this.
        /// Default 300.
        #[serde(default = "default_gat1400_reregister")]
        pub reregister_max_delay_secs: f64,
        /// UTC offset of the platform's clock, in which VIID times (`yyyyMMddHHmmss`) are
        /// written and read. Default 8 (China Standard Time).
        #[serde(default = "default_gat1400_utc_offset")]
        pub utc_offset_hours: f64,
        /// Whether subscriptions of this platform's ids (`POST /VIID/Subscribes` on the API
        /// listener, ADR 0047) are notified, by a second sink `<name>-subscriptions` with
        /// these delivery settings. Default true.
        #[serde(default = "default_true")]
        pub subscriptions: bool,
        /// Push snapshots (`SubImageList`, `Images`, subscription notifications) as they were
        /// taken, faces and plates visible, instead of masked as the box serves them (docs/
        /// security.md "Masking"). Default false: masked, and a change whose snapshot cannot
        /// be masked waits (it is never pushed unmasked). Set it only for a platform that must
        /// identify, under its own access control; `check` and the start-up log say so.
        #[serde(default)]
        pub send_unmasked_images: bool,
    }
    delivery_defaults = Delivery { backoff_max_secs: 300.0, ..Delivery::DEFAULT };
}

/// The collections a `[[uplink.gat1400]]` sink can push.
pub const GAT1400_KINDS: [&str; 6] =
    ["MotorVehicles", "NonMotorVehicles", "Persons", "Images", "VideoSlices", "Faces"];

/// The default `kinds`: the objects (`Images` and `VideoSlices` are asked for by name).
fn default_gat1400_kinds() -> Vec<String> {
    GAT1400_KINDS[..3].iter().map(|k| k.to_string()).collect()
}
fn default_gat1400_keepalive() -> f64 {
    90.0
}
fn default_gat1400_reregister() -> f64 {
    300.0
}
fn default_gat1400_utc_offset() -> f64 {
    8.0
}
fn default_true() -> bool {
    true
}

/// Whether `id` is a GA/T 1400 device id: exactly 20 ASCII digits.
pub fn is_gat1400_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit())
}

impl Gat1400Config {
    /// The digest password, from `password` or the environment variable `password_env`.
    pub fn password_value(&self) -> Result<Secret, String> {
        match Secret::from_config(&self.password, &self.password_env, "password", "password_env")? {
            Some(s) if !s.expose().is_empty() => Ok(s),
            Some(_) => Err("`password` must not be empty".into()),
            None => Err("a digest password is required: set `password` or `password_env`".into()),
        }
    }

    /// The name of the sink that notifies this platform's subscriptions.
    pub fn subscriptions_sink_name(&self) -> String {
        format!("{}-subscriptions", self.name)
    }

    /// The digest username (`username`, default `device_id`).
    pub fn username(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.device_id)
    }
}

impl SinkConfig for Gat1400Config {
    const KEY: &'static str = "gat1400";
    const LABEL: &'static str = "gat1400 sink";
    fn name(&self) -> &str {
        &self.name
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn delivery(&self) -> &Delivery {
        &self.delivery
    }
    fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        let u = url::Url::parse(&self.url)
            .map_err(|e| format!("{}: `{}` is not a URL: {e}", at("url"), redact_url(&self.url)))?;
        if !matches!(u.scheme(), "http" | "https")
            || u.host_str().is_none()
            || !u.username().is_empty()
            || u.password().is_some()
            || u.query().is_some()
            || u.fragment().is_some()
        {
            return Err(format!(
                "{}: must be an http(s)://host[:port][/path] URL without credentials, query or fragment",
                at("url")
            ));
        }
        if !is_gat1400_id(&self.device_id) {
            return Err(format!(
                "{}: `{}` is not a GA/T 1400 device id (exactly 20 digits)",
                at("device_id"),
                self.device_id
            ));
        }
        for (cam, id) in &self.channels {
            if !is_gat1400_id(id) {
                return Err(format!(
                    "{}: `{id}` is not a GA/T 1400 device id (exactly 20 digits)",
                    at(&format!("channels.{cam}"))
                ));
            }
        }
        if self.username().is_empty() || self.username().contains(['"', '\\']) {
            return Err(format!("{}: must be non-empty, without '\"' or '\\'", at("username")));
        }
        self.password_value().map_err(|e| format!("{}: {e}", at("password")))?;
        if self.kinds.is_empty() {
            return Err(format!("{}: name at least one collection", at("kinds")));
        }
        for k in &self.kinds {
            if !GAT1400_KINDS.contains(&k.as_str()) {
                return Err(format!(
                    "{}: `{k}` is not one of {}",
                    at("kinds"),
                    GAT1400_KINDS.join(", ")
                ));
            }
        }
        if !(self.keepalive_secs.is_finite() && (1.0..=3600.0).contains(&self.keepalive_secs)) {
            return Err(format!("{}: must be between 1 and 3600", at("keepalive_secs")));
        }
        if !(self.reregister_max_delay_secs.is_finite()
            && (0.0..=3600.0).contains(&self.reregister_max_delay_secs))
        {
            return Err(format!("{}: must be between 0 and 3600", at("reregister_max_delay_secs")));
        }
        if !(self.utc_offset_hours.is_finite() && (-12.0..=14.0).contains(&self.utc_offset_hours)) {
            return Err(format!("{}: must be between -12 and 14", at("utc_offset_hours")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared keys are read into `enabled` and `delivery` with the kind's defaults; each
    /// kind keeps its exact key set (unknown keys are refused, naming the key).
    #[test]
    fn shared_delivery_keys_and_per_kind_defaults() {
        let m: MqttConfig =
            toml::from_str("name = \"m\"\nurl = \"mqtt://b\"\ntimeout_secs = 2.5\nenabled = false")
                .unwrap();
        assert!(!m.enabled);
        assert_eq!(
            m.delivery,
            Delivery { timeout_secs: 2.5, backoff_max_secs: 60.0, ..Delivery::DEFAULT }
        );
        let w: WebhookConfig = toml::from_str("name = \"w\"\nurl = \"http://h/x\"").unwrap();
        assert!(w.enabled && w.delivery == Delivery::DEFAULT);
        assert_eq!(w.policy().dead_letter_after, 3);
        assert_eq!(w.policy().backoff_max, std::time::Duration::from_secs(3600));
        let e =
            toml::from_str::<MqttConfig>("name = \"m\"\nurl = \"mqtt://b\"\ndead_letter_after = 2")
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown field `dead_letter_after`"), "{e}");
        let e = toml::from_str::<WebhookConfig>(
            "name = \"w\"\nurl = \"http://h/x\"\nbackof_max_secs = 2",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `backof_max_secs`"), "{e}");
        // A bad value of a shared key is reported at its own path.
        let de =
            toml::Deserializer::parse("name = \"w\"\nurl = \"u\"\ntimeout_secs = \"x\"").unwrap();
        let e = serde_path_to_error::deserialize::<_, WebhookConfig>(de).unwrap_err();
        assert_eq!(e.path().to_string(), "timeout_secs");
    }
}
