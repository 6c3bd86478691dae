//! `gridwatch.toml`: serde structs with `deny_unknown_fields`, validated at load.
//! Every error names the field path and, where there is one, the camera.
//! docs/config.md is the annotated full config; keep the two in step.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::rules::{LineConfig, RuleConfig, ZoneConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identifies this box to the city platform.
    pub box_id: String,
    /// Name of a file in hardware-profiles/ (without .toml) or a path to a profile file.
    #[serde(default = "default_profile")]
    pub hardware_profile: String,
    /// Where the database, snapshots and recordings live.
    pub data_dir: PathBuf,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    /// Disk budget and retention of recordings, clips and snapshots (`[storage]`).
    #[serde(default)]
    pub storage: StorageConfig,
    /// Delivery of changes to the city platform (`[uplink]`, docs/api.md "Uplink").
    #[serde(default)]
    pub uplink: UplinkConfig,
    /// Users' sessions and the lockout of failed logins (`[auth]`, docs/api.md).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Models by name: `name = "path/to/model.toml"`.
    pub models: std::collections::BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// Directory with the hardware profiles and pipeline templates are looked up relative to
    /// the config file's directory, then the current directory (not a config key).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_profile() -> String {
    "cpu".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// SHA-256 (hex) of accepted bearer tokens. Tokens created by `gridwatch token create`
    /// live in the database instead. Never put a token itself in the config.
    #[serde(default)]
    pub tokens_sha256: Vec<String>,
    /// When no token or user exists at all, generate a token and an `admin` user at start-up
    /// and print both once (only hashes are stored).
    #[serde(default = "yes")]
    pub generate_token_if_none: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: default_listen(), tokens_sha256: vec![], generate_token_if_none: true }
    }
}

/// `[auth]`: sessions of users who log in with a password, and the lockout of failed
/// logins. Tokens are configured in `[api]` and managed with `gridwatch token`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a session lasts after login (absolute, not extended by use). Default 12 h.
    #[serde(default = "default_session_ttl_secs")]
    pub session_ttl_secs: u64,
    /// `Secure` flag of the session cookie: "auto" (when the request came over TLS, which
    /// for this plain-HTTP server means a trusted proxy said `X-Forwarded-Proto: https`),
    /// "always" or "never".
    #[serde(default = "default_cookie_secure")]
    pub cookie_secure: CookieSecure,
    /// Take the client address from `X-Forwarded-For` and the scheme from
    /// `X-Forwarded-Proto` (only behind a reverse proxy that sets them). Default false.
    #[serde(default)]
    pub trust_proxy_headers: bool,
    /// Failed logins of one account, or from one address, within `failed_login_window_secs`
    /// that lock it for `lockout_secs`.
    #[serde(default = "default_max_failed_logins")]
    pub max_failed_logins: u32,
    #[serde(default = "default_quarter_hour")]
    pub failed_login_window_secs: u64,
    #[serde(default = "default_quarter_hour")]
    pub lockout_secs: u64,
    /// Shortest password accepted for users (at least 8).
    #[serde(default = "default_min_password_len")]
    pub min_password_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CookieSecure {
    Auto,
    Always,
    Never,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl_secs: default_session_ttl_secs(),
            cookie_secure: default_cookie_secure(),
            trust_proxy_headers: false,
            max_failed_logins: default_max_failed_logins(),
            failed_login_window_secs: default_quarter_hour(),
            lockout_secs: default_quarter_hour(),
            min_password_len: default_min_password_len(),
        }
    }
}

fn default_session_ttl_secs() -> u64 {
    12 * 3600
}
fn default_cookie_secure() -> CookieSecure {
    CookieSecure::Auto
}
fn default_max_failed_logins() -> u32 {
    5
}
fn default_quarter_hour() -> u64 {
    900
}
fn default_min_password_len() -> usize {
    10
}

impl AuthConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(60..=30 * 86_400).contains(&self.session_ttl_secs) {
            return Err(
                "field `auth.session_ttl_secs`: must be between 60 and 2592000 (30 days)".into()
            );
        }
        if self.max_failed_logins == 0 {
            return Err("field `auth.max_failed_logins`: must be ≥ 1".into());
        }
        for (field, v) in [
            ("failed_login_window_secs", self.failed_login_window_secs),
            ("lockout_secs", self.lockout_secs),
        ] {
            if !(1..=7 * 86_400).contains(&v) {
                return Err(format!("field `auth.{field}`: must be between 1 and 604800 (7 days)"));
            }
        }
        if !(8..=256).contains(&self.min_password_len) {
            return Err("field `auth.min_password_len`: must be between 8 and 256".into());
        }
        Ok(())
    }
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// ONNX Runtime intra-op threads per session.
    #[serde(default = "default_threads")]
    pub intra_op_threads: usize,
    /// Inference worker threads (each has its own session per model).
    #[serde(default = "one")]
    pub workers: usize,
    /// Path to libonnxruntime.so; default: found next to the binary or in third_party/.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig { intra_op_threads: default_threads(), workers: 1, ort_library: None }
    }
}

fn default_threads() -> usize {
    2
}
fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `rtsp://…`, `file:///…`, a plain file path, or `v4l2:///dev/videoN`.
    pub url: String,
    /// Restart a file source at its end (simulates a live camera).
    #[serde(default, rename = "loop")]
    pub loop_file: bool,
    /// Pace file sources at their native frame rate like a live camera (default true).
    #[serde(default = "yes")]
    pub realtime: bool,
    /// RTSP stream codec: "auto" (decodebin), "h264" or "h265" (profile's decoders).
    #[serde(default = "default_codec")]
    pub codec: String,
    #[serde(default)]
    pub grid_cell: Option<String>,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
    /// Frames per second handed to detection (0 = every decoded frame).
    #[serde(default = "default_detect_fps")]
    pub detect_fps: f64,
    /// Width of analysed frames (scaled in the pipeline).
    #[serde(default = "default_detect_width")]
    pub detect_width: u32,
    /// Height of analysed frames; default keeps the source aspect ratio.
    #[serde(default)]
    pub detect_height: Option<u32>,
    /// Names of entries in `[models]`.
    pub models: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// No frame for this long while playing counts as a failure and triggers a reconnect.
    #[serde(default = "default_stall")]
    pub stall_timeout_secs: f64,
    /// Reconnect backoff bounds.
    #[serde(default = "default_backoff_min")]
    pub reconnect_min_secs: f64,
    #[serde(default = "default_backoff_max")]
    pub reconnect_max_secs: f64,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Multi-object tracker parameters (`[cameras.tracker]`); every field has a default.
    #[serde(default)]
    pub tracker: crate::track::TrackerConfig,
    /// Named polygons (`[[cameras.zones]]`), normalised 0–1 image coordinates.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// Named polylines (`[[cameras.lines]]`) with a direction (see `geometry`).
    #[serde(default)]
    pub lines: Vec<LineConfig>,
    /// Anchor point per class (`[cameras.anchors]`, class → anchor); default bottom_center.
    #[serde(default)]
    pub anchors: std::collections::BTreeMap<String, crate::geometry::Anchor>,
    /// Continuous recording and event clips (`[cameras.record]`); every field has a default.
    #[serde(default)]
    pub record: RecordConfig,
}

/// `[cameras.record]`: continuous recording of one camera (see docs/storage.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Record this camera continuously. Default true. File sources are recorded only when
    /// `realtime = true` (their timestamps must be wall-clock times).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Target segment length; segments split at the first keyframe after it. Default 10.
    #[serde(default = "default_segment_secs")]
    pub segment_secs: f64,
    /// Continuous footage older than this is deleted. Default 7.
    #[serde(default = "default_max_age_days")]
    pub max_age_days: f64,
    /// Event clips start this long before the event. Default 5.
    #[serde(default = "default_pre_roll")]
    pub pre_roll_secs: f64,
    /// … and end this long after it. Default 10.
    #[serde(default = "default_post_roll")]
    pub post_roll_secs: f64,
    /// Longest event clip (events that last longer are cut at the end). Default 300.
    #[serde(default = "default_max_clip_secs")]
    pub max_clip_secs: f64,
    /// Bitrate of the one-time H.264 encode for sources that are not H.264/H.265 (USB
    /// cameras, MPEG-4 files). Passthrough sources are never re-encoded. Default 2000.
    #[serde(default = "default_encode_kbps")]
    pub encode_bitrate_kbps: u32,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            enabled: true,
            segment_secs: default_segment_secs(),
            max_age_days: default_max_age_days(),
            pre_roll_secs: default_pre_roll(),
            post_roll_secs: default_post_roll(),
            max_clip_secs: default_max_clip_secs(),
            encode_bitrate_kbps: default_encode_kbps(),
        }
    }
}

fn default_segment_secs() -> f64 {
    10.0
}
fn default_max_age_days() -> f64 {
    7.0
}
fn default_pre_roll() -> f64 {
    5.0
}
fn default_post_roll() -> f64 {
    10.0
}
fn default_max_clip_secs() -> f64 {
    300.0
}
fn default_encode_kbps() -> u32 {
    2000
}

/// `[storage]`: the disk budget shared by all cameras and the retention of event media.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Most bytes that recordings + event clips may use; 0 = no byte budget (only the
    /// free-space floor below applies). Default 0.
    #[serde(default)]
    pub max_bytes: u64,
    /// Keep at least this share of the data filesystem free. Default 5.
    #[serde(default = "default_min_free_percent")]
    pub min_free_percent: f64,
    /// … and at least this many bytes. Default 268435456 (256 MiB).
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    /// Event clips and snapshots are kept this long (longer than continuous footage).
    /// Default 30.
    #[serde(default = "default_event_retention_days")]
    pub event_retention_days: f64,
    /// Retention runs this often (and whenever a segment is indexed). Default 5.
    #[serde(default = "default_check_interval")]
    pub check_interval_secs: f64,
    /// Longest span `/api/v1/recordings/export.mp4` serves. Default 1800.
    #[serde(default = "default_max_export_secs")]
    pub max_export_secs: f64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            max_bytes: 0,
            min_free_percent: default_min_free_percent(),
            min_free_bytes: default_min_free_bytes(),
            event_retention_days: default_event_retention_days(),
            check_interval_secs: default_check_interval(),
            max_export_secs: default_max_export_secs(),
        }
    }
}

fn default_min_free_percent() -> f64 {
    5.0
}
fn default_min_free_bytes() -> u64 {
    256 << 20
}
fn default_event_retention_days() -> f64 {
    30.0
}
fn default_check_interval() -> f64 {
    5.0
}
fn default_max_export_secs() -> f64 {
    1800.0
}

fn default_codec() -> String {
    "auto".into()
}
fn default_detect_fps() -> f64 {
    5.0
}
fn default_detect_width() -> u32 {
    640
}
fn default_stall() -> f64 {
    10.0
}
fn default_backoff_min() -> f64 {
    1.0
}
fn default_backoff_max() -> f64 {
    30.0
}

/// `[uplink]`: delivery of event and camera-status changes to the city platform: webhook
/// sinks, and the outbox the pull feed serves (docs/api.md "Uplink").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// Base of the absolute snapshot and clip URLs in envelopes, as the platform reaches
    /// the box. Default: `http://` + `api.listen`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Outbox rows older than this are deleted once every sink is done with them (the pull
    /// feed serves what is kept). Default 30.
    #[serde(default = "default_outbox_retention_days")]
    pub outbox_retention_days: f64,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// `[[uplink.mqtt]]`: MQTT brokers that get every change (QoS 1).
    #[serde(default)]
    pub mqtt: Vec<MqttConfig>,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            public_url: None,
            outbox_retention_days: default_outbox_retention_days(),
            webhooks: vec![],
            mqtt: vec![],
        }
    }
}

fn default_outbox_retention_days() -> f64 {
    30.0
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
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[[uplink.webhooks]]`: one HTTP endpoint that receives every change, signed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
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
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// Whole request (connect, send, response) limit.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: f64,
    #[serde(default = "default_backoff_min")]
    pub backoff_min_secs: f64,
    #[serde(default = "default_webhook_backoff_max")]
    pub backoff_max_secs: f64,
    /// A change is retried until it is this old, then dead-lettered. Default 72.
    #[serde(default = "default_max_retry_hours")]
    pub max_retry_hours: f64,
    /// Non-retryable 4xx answers to one change before it is dead-lettered. Default 3.
    #[serde(default = "default_dead_letter_after")]
    pub dead_letter_after: u32,
}

fn default_connect_timeout() -> f64 {
    5.0
}
fn default_webhook_timeout() -> f64 {
    10.0
}
fn default_webhook_backoff_max() -> f64 {
    3600.0
}
fn default_max_retry_hours() -> f64 {
    72.0
}
fn default_dead_letter_after() -> u32 {
    3
}

impl WebhookConfig {
    /// The signing secret, from `secret` or the environment variable `secret_env`.
    pub fn secret_value(&self) -> Result<Secret, String> {
        match (&self.secret, &self.secret_env) {
            (Some(s), None) if !s.expose().is_empty() => Ok(s.clone()),
            (Some(_), None) => Err("`secret` must not be empty".into()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                _ => Err(format!("environment variable `{var}` (secret_env) is not set or empty")),
            },
            (Some(_), Some(_)) => Err("give `secret` or `secret_env`, not both".into()),
            (None, None) => {
                Err("a signing secret is required: set `secret` or `secret_env`".into())
            }
        }
    }
}

/// `[[uplink.mqtt]]`: one MQTT broker that gets every change, published at QoS 1 to
/// `{topic_prefix}/{box_id}/events/{camera_id}` (camera status retained on
/// `…/status/{camera_id}`), with a last will on `{topic_prefix}/{box_id}/availability`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Unique sink name (shared namespace with the webhooks); its delivery state is kept under it.
    pub name: String,
    /// `mqtt://host[:port]` (plain TCP, port 1883 by default) or `mqtts://host[:port]` (TLS,
    /// port 8883 by default). No credentials in the URL: use `username` / `password`.
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
    /// PEM file with the CA certificate(s) the broker's certificate must chain to (only with
    /// `mqtts://`). Default: the system's CA roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// First topic level. Default `gridwatch`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: f64,
    /// TCP + TLS + MQTT CONNECT limit of one connection attempt.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// How long one delivery attempt waits for the broker connection, then for the PUBACK.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: f64,
    #[serde(default = "default_backoff_min")]
    pub backoff_min_secs: f64,
    #[serde(default = "default_mqtt_backoff_max")]
    pub backoff_max_secs: f64,
    /// A change is retried until it is this old, then dead-lettered. Default 72.
    #[serde(default = "default_max_retry_hours")]
    pub max_retry_hours: f64,
}

fn default_topic_prefix() -> String {
    "gridwatch".into()
}
fn default_keep_alive() -> f64 {
    30.0
}
fn default_mqtt_backoff_max() -> f64 {
    60.0
}

impl MqttConfig {
    /// The password, from `password` or the environment variable `password_env` (None: none).
    pub fn password_value(&self) -> Result<Option<Secret>, String> {
        match (&self.password, &self.password_env) {
            (Some(p), None) => Ok(Some(p.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
                _ => {
                    Err(format!("environment variable `{var}` (password_env) is not set or empty"))
                }
            },
            (Some(_), Some(_)) => Err("give `password` or `password_env`, not both".into()),
            (None, None) => Ok(None),
        }
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

impl UplinkConfig {
    /// Base of the absolute media URLs (no trailing slash).
    pub fn public_url(&self, api: &ApiConfig) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", api.listen),
        }
    }

    fn validate(&self) -> Result<(), String> {
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
        let mut names = HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let at = |f: &str| format!("field `uplink.webhooks[{i}].{f}` (webhook `{}`)", w.name);
            if w.name.is_empty()
                || !w.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{}: must be non-empty and use only letters, digits, '-' and '_'",
                    at("name")
                ));
            }
            if !names.insert(w.name.as_str()) {
                return Err(format!("{}: duplicate sink name", at("name")));
            }
            let u =
                url::Url::parse(&w.url).map_err(|e| format!("{}: not a URL: {e}", at("url")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(format!("{}: must be an http:// or https:// URL", at("url")));
            }
            let secret = w.secret_value().map_err(|m| format!("{}: {m}", at("secret")))?;
            crate::uplink::signing::key_bytes(secret.expose())
                .map_err(|m| format!("{}: {m}", at("secret")))?;
            for (f, v) in [
                ("connect_timeout_secs", w.connect_timeout_secs),
                ("timeout_secs", w.timeout_secs),
                ("backoff_min_secs", w.backoff_min_secs),
                ("max_retry_hours", w.max_retry_hours),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{}: must be > 0", at(f)));
                }
            }
            if !(w.backoff_max_secs.is_finite() && w.backoff_max_secs >= w.backoff_min_secs) {
                return Err(format!("{}: must be ≥ backoff_min_secs", at("backoff_max_secs")));
            }
            if w.dead_letter_after == 0 {
                return Err(format!("{}: must be ≥ 1", at("dead_letter_after")));
            }
        }
        for (i, m) in self.mqtt.iter().enumerate() {
            let at = |f: &str| format!("field `uplink.mqtt[{i}].{f}` (mqtt sink `{}`)", m.name);
            if m.name.is_empty()
                || !m.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{}: must be non-empty and use only letters, digits, '-' and '_'",
                    at("name")
                ));
            }
            if !names.insert(m.name.as_str()) {
                return Err(format!(
                    "{}: duplicate sink name (webhooks and MQTT sinks share names)",
                    at("name")
                ));
            }
            m.host_port().map_err(|e| {
                format!("{}: `{}` {e}", at("url"), crate::uplink::webhook::redact(&m.url))
            })?;
            if let Some(id) = &m.client_id {
                if id.is_empty() || id.len() > 128 {
                    return Err(format!("{}: must be 1–128 characters", at("client_id")));
                }
            }
            let password = m.password_value().map_err(|e| format!("{}: {e}", at("password")))?;
            if password.is_some() && m.username.is_none() {
                return Err(format!("{}: a password needs a `username`", at("password")));
            }
            if m.ca_file.is_some() && !m.tls() {
                return Err(format!("{}: only used with an mqtts:// URL", at("ca_file")));
            }
            if m.topic_prefix.is_empty()
                || m.topic_prefix.contains(['+', '#', '\0'])
                || m.topic_prefix.ends_with('/')
            {
                return Err(format!(
                    "{}: must be non-empty, without '+', '#' or a trailing '/'",
                    at("topic_prefix")
                ));
            }
            for (f, v) in [
                ("connect_timeout_secs", m.connect_timeout_secs),
                ("timeout_secs", m.timeout_secs),
                ("backoff_min_secs", m.backoff_min_secs),
                ("max_retry_hours", m.max_retry_hours),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{}: must be > 0", at(f)));
                }
            }
            if !(m.keep_alive_secs.is_finite() && (1.0..=65535.0).contains(&m.keep_alive_secs)) {
                return Err(format!("{}: must be between 1 and 65535", at("keep_alive_secs")));
            }
            if !(m.backoff_max_secs.is_finite() && m.backoff_max_secs >= m.backoff_min_secs) {
                return Err(format!("{}: must be ≥ backoff_min_secs", at("backoff_max_secs")));
            }
        }
        Ok(())
    }
}

/// How a camera URL is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Rtsp(String),
    File(PathBuf),
    V4l2(PathBuf),
}

impl CameraConfig {
    /// Parses `url` into a source. Relative file paths are resolved against `base`.
    pub fn source(&self, base: &Path) -> Result<Source, String> {
        let u = self.url.trim();
        if u.is_empty() {
            return Err("is empty".into());
        }
        if let Some((scheme, rest)) = u.split_once("://") {
            match scheme.to_ascii_lowercase().as_str() {
                "rtsp" | "rtsps" => {
                    url::Url::parse(u).map_err(|e| format!("`{u}` is not a valid RTSP URL: {e}"))?;
                    Ok(Source::Rtsp(u.to_string()))
                }
                "file" => {
                    let p = url::Url::parse(u)
                        .ok()
                        .and_then(|x| x.to_file_path().ok())
                        .unwrap_or_else(|| PathBuf::from(rest));
                    Ok(Source::File(p))
                }
                "v4l2" => Ok(Source::V4l2(PathBuf::from(rest))),
                other => Err(format!(
                    "unsupported URL scheme `{other}` in `{u}` (use rtsp://, file://, a file path or v4l2:///dev/videoN)"
                )),
            }
        } else if u.starts_with("/dev/video") {
            Ok(Source::V4l2(PathBuf::from(u)))
        } else {
            let p = PathBuf::from(u);
            Ok(Source::File(if p.is_absolute() { p } else { base.join(p) }))
        }
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// True when this camera's stream is recorded: enabled, `record.enabled`, and for file
    /// sources only when paced in real time (so segment times are wall-clock times).
    pub fn records(&self, base: &Path) -> bool {
        self.enabled
            && self.record.enabled
            && match self.source(base) {
                Ok(Source::File(_)) => self.realtime,
                Ok(_) => true,
                Err(_) => false,
            }
    }
}

impl<'a> From<&'a CameraConfig> for crate::rules::RuleSetup<'a> {
    fn from(c: &'a CameraConfig) -> Self {
        crate::rules::RuleSetup {
            camera_id: &c.id,
            grid_cell: c.grid_cell.as_deref(),
            rules: &c.rules,
            zones: &c.zones,
            lines: &c.lines,
            anchors: &c.anchors,
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        Self::parse(&text, &base)
            .map_err(|msg| ConfigError::Invalid { path: path.to_path_buf(), msg })
    }

    /// Parses and validates config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().to_string();
            let loc = camera_of_path(text, &path);
            format!("field `{path}`{loc}: {msg}")
        })?;
        cfg.base_dir = base_dir.to_path_buf();
        cfg.data_dir = cfg.resolve(&cfg.data_dir);
        let models: Vec<(String, PathBuf)> =
            cfg.models.iter().map(|(k, v)| (k.clone(), cfg.resolve(v))).collect();
        cfg.models = models.into_iter().collect();
        let ca_files: Vec<Option<PathBuf>> =
            cfg.uplink.mqtt.iter().map(|m| m.ca_file.as_deref().map(|p| cfg.resolve(p))).collect();
        for (m, ca) in cfg.uplink.mqtt.iter_mut().zip(ca_files) {
            m.ca_file = ca;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.box_id.trim().is_empty() {
            return Err("field `box_id`: must not be empty".into());
        }
        if self.inference.intra_op_threads == 0 || self.inference.workers == 0 {
            return Err("field `inference`: `intra_op_threads` and `workers` must be ≥ 1".into());
        }
        for (i, h) in self.api.tokens_sha256.iter().enumerate() {
            if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("field `api.tokens_sha256[{i}]`: must be 64 hex digits (the SHA-256 of a token)"));
            }
        }
        let st = &self.storage;
        if !(0.0..=90.0).contains(&st.min_free_percent) {
            return Err("field `storage.min_free_percent`: must be between 0 and 90".into());
        }
        for (field, v) in [
            ("event_retention_days", st.event_retention_days),
            ("check_interval_secs", st.check_interval_secs),
            ("max_export_secs", st.max_export_secs),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("field `storage.{field}`: must be > 0"));
            }
        }
        self.uplink.validate()?;
        if !self.uplink.mqtt.is_empty() && self.box_id.contains(['+', '#', '/', '\0']) {
            return Err("field `box_id`: must not contain '+', '#' or '/' with MQTT sinks (it is a topic level)".into());
        }
        self.auth.validate()?;
        for (name, p) in &self.models {
            if !p.is_file() {
                return Err(format!(
                    "field `models.{name}`: model manifest {} does not exist",
                    p.display()
                ));
            }
        }
        let mut ids = HashSet::new();
        for (i, c) in self.cameras.iter().enumerate() {
            let at = |field: &str| format!("field `cameras[{i}].{field}` (camera `{}`)", c.id);
            if c.id.is_empty()
                || !c.id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(format!(
                    "{}: must be non-empty and use only letters, digits, '-' and '_'",
                    at("id")
                ));
            }
            if !ids.insert(c.id.as_str()) {
                return Err(format!("{}: duplicate camera id", at("id")));
            }
            c.source(&self.base_dir).map_err(|m| format!("{}: {m}", at("url")))?;
            if !matches!(c.codec.as_str(), "auto" | "h264" | "h265") {
                return Err(format!("{}: must be \"auto\", \"h264\" or \"h265\"", at("codec")));
            }
            if !(c.detect_fps >= 0.0 && c.detect_fps <= 120.0) {
                return Err(format!("{}: must be between 0 and 120", at("detect_fps")));
            }
            if !(32..=4096).contains(&c.detect_width) {
                return Err(format!("{}: must be between 32 and 4096", at("detect_width")));
            }
            if let Some(h) = c.detect_height {
                if !(32..=4096).contains(&h) {
                    return Err(format!("{}: must be between 32 and 4096", at("detect_height")));
                }
            }
            if let Some(lat) = c.lat {
                if !(-90.0..=90.0).contains(&lat) {
                    return Err(format!("{}: must be between -90 and 90", at("lat")));
                }
            }
            if let Some(lon) = c.lon {
                if !(-180.0..=180.0).contains(&lon) {
                    return Err(format!("{}: must be between -180 and 180", at("lon")));
                }
            }
            if c.stall_timeout_secs.is_nan() || c.stall_timeout_secs <= 0.0 {
                return Err(format!("{}: must be > 0", at("stall_timeout_secs")));
            }
            if !(c.reconnect_min_secs > 0.0 && c.reconnect_max_secs >= c.reconnect_min_secs) {
                return Err(format!(
                    "{}: need 0 < reconnect_min_secs ≤ reconnect_max_secs",
                    at("reconnect_min_secs")
                ));
            }
            c.tracker.validate().map_err(|m| format!("{}: {m}", at("tracker")))?;
            if c.models.is_empty() && c.enabled {
                return Err(format!("{}: list at least one model", at("models")));
            }
            for (j, m) in c.models.iter().enumerate() {
                if !self.models.contains_key(m) {
                    return Err(format!(
                        "{}: unknown model `{m}` (not in [models])",
                        at(&format!("models[{j}]"))
                    ));
                }
            }
            crate::rules::scene::validate_geometry(&c.zones, &c.lines)
                .map_err(|(field, m)| format!("{}: {m}", at(&field)))?;
            let r = &c.record;
            if !(1.0..=3600.0).contains(&r.segment_secs) {
                return Err(format!("{}: must be between 1 and 3600", at("record.segment_secs")));
            }
            for (field, v) in [("max_age_days", r.max_age_days), ("max_clip_secs", r.max_clip_secs)]
            {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{}: must be > 0", at(&format!("record.{field}"))));
                }
            }
            for (field, v) in
                [("pre_roll_secs", r.pre_roll_secs), ("post_roll_secs", r.post_roll_secs)]
            {
                if !(0.0..=600.0).contains(&v) {
                    return Err(format!(
                        "{}: must be between 0 and 600",
                        at(&format!("record.{field}"))
                    ));
                }
            }
            if !(100..=100_000).contains(&r.encode_bitrate_kbps) {
                return Err(format!(
                    "{}: must be between 100 and 100000",
                    at("record.encode_bitrate_kbps")
                ));
            }
            crate::rules::validate_rules(&c.rules, &c.zones, &c.lines)
                .map_err(|(field, m)| format!("{}: {m}", at(&field)))?;
        }
        Ok(())
    }
}

/// For a serde path like `cameras[2].rules[0].x`, names the camera by its id if the raw TOML has one.
fn camera_of_path(text: &str, path: &str) -> String {
    let Some(rest) = path.strip_prefix("cameras[") else { return String::new() };
    let Some(idx) = rest.split(']').next().and_then(|n| n.parse::<usize>().ok()) else {
        return String::new();
    };
    let id = toml::from_str::<toml::Table>(text).ok().and_then(|t| {
        t.get("cameras")?.as_array()?.get(idx)?.get("id")?.as_str().map(str::to_string)
    });
    match id {
        Some(id) => format!(" (camera `{id}`)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Severity;

    fn base() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    const GOOD: &str = r#"
box_id = "t"
data_dir = "/tmp/x"
[models]
default = "models/nanodet-g-coco-416/model.toml"
[[cameras]]
id = "cam1"
url = "test-videos/pets09-s2l1.mp4"
models = ["default"]
[[cameras.rules]]
kind = "presence"
classes = ["person"]
"#;

    #[test]
    fn parses_good_config() {
        let c = Config::parse(GOOD, &base()).unwrap();
        assert_eq!(c.cameras[0].detect_fps, 5.0);
        assert!(matches!(c.cameras[0].rules[0], RuleConfig::Presence(_)));
    }

    #[test]
    fn unknown_field_names_field_and_camera() {
        let t = GOOD.replace("models = [\"default\"]", "models = [\"default\"]\ndetect_fpz = 3");
        let e = Config::parse(&t, &base()).unwrap_err();
        assert!(e.contains("detect_fpz") && e.contains("cam1") && e.contains("cameras[0]"), "{e}");
    }

    #[test]
    fn unknown_field_in_rule_is_rejected() {
        let t = GOOD.replace("classes = [\"person\"]", "classes = [\"person\"]\nmin_sec = 3");
        let e = Config::parse(&t, &base()).unwrap_err();
        assert!(e.contains("min_sec") && e.contains("cam1"), "{e}");
    }

    #[test]
    fn bad_scheme_names_url() {
        let t = GOOD.replace("test-videos/pets09-s2l1.mp4", "ftp://x/y");
        let e = Config::parse(&t, &base()).unwrap_err();
        assert!(e.contains("cameras[0].url") && e.contains("ftp"), "{e}");
    }

    #[test]
    fn missing_model_names_field() {
        let t = GOOD.replace("models/nanodet-g-coco-416/model.toml", "models/nope/model.toml");
        let e = Config::parse(&t, &base()).unwrap_err();
        assert!(e.contains("models.default"), "{e}");
    }

    #[test]
    fn tracker_block_is_parsed_and_validated() {
        let t = GOOD.replace(
            "models = [\"default\"]",
            "models = [\"default\"]\n[cameras.tracker]\nmin_hits = 3",
        );
        assert_eq!(Config::parse(&t, &base()).unwrap().cameras[0].tracker.min_hits, 3);
        let e = Config::parse(&t.replace("min_hits = 3", "min_hits = 0"), &base()).unwrap_err();
        assert!(
            e.contains("cameras[0].tracker") && e.contains("min_hits") && e.contains("cam1"),
            "{e}"
        );
        let e = Config::parse(&t.replace("min_hits = 3", "min_hit = 3"), &base()).unwrap_err();
        assert!(e.contains("min_hit") && e.contains("cam1"), "{e}");
    }

    const GEO: &str = r#"
box_id = "t"
data_dir = "/tmp/x"
[models]
default = "models/nanodet-g-coco-416/model.toml"
[[cameras]]
id = "cam0"
url = "a.mp4"
models = ["default"]
[[cameras]]
id = "gate"
url = "test-videos/pets09-s2l1.mp4"
models = ["default"]
[cameras.anchors]
person = "center"
[[cameras.zones]]
name = "yard"
points = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
[[cameras.zones]]
name = "lawn"
points = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]]
[[cameras.lines]]
name = "kerb"
points = [[0.0, 0.5], [0.5, 0.55], [1.0, 0.5]]
[[cameras.rules]]
kind = "intrusion"
zone = "lawn"
classes = ["person"]
[[cameras.rules]]
kind = "line_crossing"
line = "kerb"
direction = "b_to_a"
raise_event = true
[[cameras.rules]]
kind = "loitering"
zone = "yard"
[[cameras.rules]]
kind = "crowd"
zone = "yard"
[[cameras.rules]]
kind = "wrong_way"
zone = "yard"
allowed_heading_deg = 90
[[cameras.rules]]
kind = "stalled_vehicle"
zone = "yard"
[[cameras.rules]]
kind = "congestion"
zone = "yard"
"#;

    fn geo_err(from: &str, to: &str) -> String {
        assert!(GEO.contains(from), "{from}");
        Config::parse(&GEO.replacen(from, to, 1), &base()).unwrap_err()
    }

    #[test]
    fn geometry_and_rules_parse_with_defaults() {
        use crate::geometry::Anchor;
        let c = Config::parse(GEO, &base()).unwrap();
        let cam = &c.cameras[1];
        assert_eq!(cam.zones.len(), 2);
        assert_eq!(cam.lines[0].points.len(), 3);
        assert_eq!(cam.anchors.get("person"), Some(&Anchor::Center));
        assert_eq!(cam.rules.len(), 7);
        match &cam.rules[1] {
            RuleConfig::LineCrossing(r) => {
                assert_eq!(r.direction, crate::rules::line_crossing::Direction::BToA);
                assert!(r.raise_event && r.classes.is_empty() && r.min_offset == 0.02);
                assert_eq!(r.severity, Severity::Info);
            }
            r => panic!("{r:?}"),
        }
        match &cam.rules[5] {
            RuleConfig::StalledVehicle(r) => {
                assert_eq!(r.classes, ["car", "bus", "truck", "motorcycle"]);
                assert_eq!((r.stationary_secs, r.tolerance, r.cooldown_secs), (60.0, 0.02, 60.0));
            }
            r => panic!("{r:?}"),
        }
        match &cam.rules[3] {
            RuleConfig::Crowd(r) => {
                assert_eq!((r.classes.as_slice(), r.min_count), (&["person".to_string()][..], 5))
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn zone_with_too_few_points() {
        let e = geo_err("[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]", "[[0.1, 0.1], [0.9, 0.1]]");
        assert!(
            e.contains("field `cameras[1].zones[0].points` (camera `gate`)")
                && e.contains("zone `yard`")
                && e.contains("at least 3"),
            "{e}"
        );
    }

    #[test]
    fn zone_outside_image() {
        let e = geo_err("[0.6, 0.6], [0.2, 0.6]]", "[0.6, 1.2], [0.2, 0.6]]");
        assert!(
            e.contains("cameras[1].zones[1].points")
                && e.contains("`gate`")
                && e.contains("zone `lawn`")
                && e.contains("outside"),
            "{e}"
        );
        let e = geo_err("[[0.0, 0.5], [0.5, 0.55]", "[[-0.1, 0.5], [0.5, 0.55]");
        assert!(
            e.contains("cameras[1].lines[0].points")
                && e.contains("line `kerb`")
                && e.contains("outside"),
            "{e}"
        );
    }

    #[test]
    fn self_intersecting_zone() {
        let e = geo_err(
            "[[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]]",
            "[[0.2, 0.2], [0.6, 0.6], [0.6, 0.2], [0.2, 0.6]]",
        );
        assert_eq!(
            e,
            "field `cameras[1].zones[1].points` (camera `gate`): zone `lawn` intersects itself"
        );
    }

    #[test]
    fn duplicate_zone_and_line_names() {
        let e = geo_err("name = \"lawn\"", "name = \"yard\"");
        assert!(
            e.contains("cameras[1].zones[1].name")
                && e.contains("duplicate zone `yard`")
                && e.contains("`gate`"),
            "{e}"
        );
        let t = GEO.replacen("[[cameras.rules]]", "[[cameras.lines]]\nname = \"kerb\"\npoints = [[0.1, 0.1], [0.2, 0.2]]\n[[cameras.rules]]", 1);
        let e = Config::parse(&t, &base()).unwrap_err();
        assert!(
            e.contains("cameras[1].lines[1].name") && e.contains("duplicate line `kerb`"),
            "{e}"
        );
    }

    #[test]
    fn line_with_one_point() {
        let e = geo_err("[[0.0, 0.5], [0.5, 0.55], [1.0, 0.5]]", "[[0.0, 0.5]]");
        assert!(
            e.contains("cameras[1].lines[0].points")
                && e.contains("line `kerb`")
                && e.contains("at least 2"),
            "{e}"
        );
    }

    #[test]
    fn unknown_zone_or_line_in_rule() {
        let e = geo_err("zone = \"lawn\"", "zone = \"lawns\"");
        assert!(
            e.contains("field `cameras[1].rules[0].zone` (camera `gate`)")
                && e.contains("unknown zone `lawns`")
                && e.contains("`yard`"),
            "{e}"
        );
        let e = geo_err("line = \"kerb\"", "line = \"curb\"");
        assert!(e.contains("cameras[1].rules[1].line") && e.contains("unknown line `curb`"), "{e}");
    }

    #[test]
    fn rule_values_are_checked() {
        let e =
            geo_err("allowed_heading_deg = 90", "allowed_heading_deg = 90\ntolerance_deg = 120");
        assert!(e.contains("cameras[1].rules[4].tolerance_deg") && e.contains("`gate`"), "{e}");
        let e = geo_err(
            "kind = \"crowd\"\nzone = \"yard\"",
            "kind = \"crowd\"\nzone = \"yard\"\nmin_count = 0",
        );
        assert!(e.contains("cameras[1].rules[3].min_count"), "{e}");
        let e = geo_err("classes = [\"person\"]", "classes = []");
        assert!(e.contains("cameras[1].rules[0].classes"), "{e}");
        let e = geo_err(
            "kind = \"loitering\"\nzone = \"yard\"",
            "kind = \"loitering\"\nzone = \"yard\"\ndwell_secs = -1",
        );
        assert!(e.contains("cameras[1].rules[2].dwell_secs"), "{e}");
        // Unknown keys and bad enum values are rejected by serde, naming the camera.
        let e = geo_err("raise_event = true", "raise_events = true");
        assert!(e.contains("raise_events") && e.contains("`gate`"), "{e}");
        let e = geo_err("direction = \"b_to_a\"", "direction = \"up\"");
        assert!(
            e.contains("cameras[1].rules[1]")
                && e.contains("`up`")
                && e.contains("`b_to_a`")
                && e.contains("`gate`"),
            "{e}"
        );
        let e = geo_err("person = \"center\"", "person = \"feet\"");
        assert!(e.contains("anchors") && e.contains("`gate`"), "{e}");
        // wrong_way needs its heading.
        let e = geo_err("allowed_heading_deg = 90\n", "");
        assert!(e.contains("allowed_heading_deg"), "{e}");
    }

    /// docs/config.md: the main block, the geometry block and the rule block parse and
    /// validate together, and every `key = V  # default V` line states the real default
    /// (removing it changes nothing).
    #[test]
    fn docs_config_blocks_parse_and_state_true_defaults() {
        let md = std::fs::read_to_string(base().join("docs/config.md")).unwrap();
        let blocks: Vec<&str> = md
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .filter(|b| !b.contains("[elements]"))
            .collect();
        assert_eq!(blocks.len(), 3, "main, geometry and rules blocks");
        let extra_zones = ["lane-north", "bus-stop", "junction"]
            .iter()
            .map(|z| format!("[[cameras.zones]]\nname = \"{z}\"\npoints = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]\n"))
            .collect::<String>();
        let text = format!("{}\n{}\n{extra_zones}\n{}", blocks[0], blocks[1], blocks[2]);
        let full = Config::parse(&text, &base()).unwrap_or_else(|e| panic!("docs/config.md: {e}"));
        let mut stripped = String::new();
        let mut removed = 0;
        for line in text.lines() {
            let default_matches = line.split_once('#').and_then(|(kv, comment)| {
                let (_, value) = kv.split_once('=')?;
                let d = comment.trim().strip_prefix("default ")?;
                let d = d.split(" (").next()?.trim();
                Some(d == value.trim())
            });
            if default_matches == Some(true) && !line.trim_start().starts_with('#') {
                removed += 1;
            } else {
                stripped += line;
                stripped += "\n";
            }
        }
        assert!(removed >= 30, "only {removed} default lines found");
        let bare = Config::parse(&stripped, &base())
            .unwrap_or_else(|e| panic!("stripped docs config: {e}"));
        let (a, b) = (&full.cameras[0], &bare.cameras[0]);
        assert_eq!(format!("{:?}", a.rules), format!("{:?}", b.rules));
        assert_eq!(a.tracker, b.tracker);
        assert_eq!(a.tracker, crate::track::TrackerConfig::default());
        assert_eq!(format!("{:?}", a.record), format!("{:?}", RecordConfig::default()));
        assert_eq!(format!("{:?}", b.record), format!("{:?}", RecordConfig::default()));
        assert_eq!(format!("{:?}", full.storage), format!("{:?}", StorageConfig::default()));
        assert_eq!(format!("{:?}", bare.storage), format!("{:?}", StorageConfig::default()));
        assert_eq!(format!("{:?}", full.uplink.webhooks), format!("{:?}", bare.uplink.webhooks));
        assert_eq!(
            full.uplink.outbox_retention_days,
            UplinkConfig::default().outbox_retention_days
        );
        assert_eq!(full.auth, AuthConfig::default());
        assert_eq!(bare.auth, AuthConfig::default());
        let w = &bare.uplink.webhooks[0];
        assert!(
            w.enabled
                && w.max_retry_hours == 72.0
                && w.dead_letter_after == 3
                && w.backoff_max_secs == 3600.0
        );
        assert_eq!(format!("{:?}", full.uplink.mqtt), format!("{:?}", bare.uplink.mqtt));
        let m = &bare.uplink.mqtt[0];
        assert!(
            m.enabled
                && m.topic_prefix == "gridwatch"
                && m.keep_alive_secs == 30.0
                && m.backoff_max_secs == 60.0
        );
        assert_eq!(m.host_port(), Ok(("mqtt.grid.example.org".to_string(), 8883)));
        assert_eq!(a.rules.len(), 13);
        assert_eq!(a.zones.len(), 4);
        assert_eq!(a.lines.len(), 1);
    }

    #[test]
    fn record_and_storage_are_validated_with_field_and_camera() {
        let bad = |extra: &str| Config::parse(&format!("{GOOD}{extra}"), &base()).unwrap_err();
        let e = bad("[cameras.record]\nsegment_secs = 0.5\n");
        assert!(e.contains("cameras[0].record.segment_secs") && e.contains("`cam1`"), "{e}");
        let e = bad("[cameras.record]\npre_roll_secs = -1\n");
        assert!(e.contains("record.pre_roll_secs") && e.contains("`cam1`"), "{e}");
        let e = bad("[cameras.record]\nsegment_sec = 4\n");
        assert!(e.contains("segment_sec") && e.contains("`cam1`"), "{e}");
        let top = |extra: &str| {
            Config::parse(&GOOD.replacen("[models]", &format!("{extra}\n[models]"), 1), &base())
        };
        assert!(top("[storage]\nmin_free_percent = 95")
            .unwrap_err()
            .contains("storage.min_free_percent"));
        assert!(top("[storage]\nmax_export_secs = 0")
            .unwrap_err()
            .contains("storage.max_export_secs"));
        let ok = top("[storage]\nmax_bytes = 1000000").unwrap();
        assert_eq!(ok.storage.max_bytes, 1_000_000);
        assert!(ok.cameras[0].records(&base()), "realtime file cameras record by default");
        let nrt = Config::parse(
            &GOOD.replacen("models = [\"default\"]", "models = [\"default\"]\nrealtime = false", 1),
            &base(),
        )
        .unwrap();
        assert!(
            !nrt.cameras[0].records(&base()),
            "unpaced files have no wall-clock time to record"
        );
    }

    #[test]
    fn auth_is_validated_naming_the_field() {
        let with = |block: &str| {
            Config::parse(
                &GOOD.replacen("[models]", &format!("[auth]\n{block}\n[models]"), 1),
                &base(),
            )
        };
        let ok = with("session_ttl_secs = 3600\ncookie_secure = \"always\"\nmax_failed_logins = 3")
            .unwrap();
        assert_eq!(
            (ok.auth.session_ttl_secs, ok.auth.cookie_secure, ok.auth.max_failed_logins),
            (3600, CookieSecure::Always, 3)
        );
        for (block, field) in [
            ("session_ttl_secs = 10", "auth.session_ttl_secs"),
            ("max_failed_logins = 0", "auth.max_failed_logins"),
            ("lockout_secs = 0", "auth.lockout_secs"),
            ("failed_login_window_secs = 0", "auth.failed_login_window_secs"),
            ("min_password_len = 4", "auth.min_password_len"),
            ("cookie_secure = \"sometimes\"", "auth.cookie_secure"),
            ("session_ttl = 60", "session_ttl"),
        ] {
            let e = with(block).unwrap_err();
            assert!(e.contains(field), "{block}: {e}");
        }
    }

    #[test]
    fn uplink_is_validated_and_secrets_never_printed() {
        let with = |block: &str| {
            Config::parse(&GOOD.replacen("[models]", &format!("{block}\n[models]"), 1), &base())
        };
        let hook = |extra: &str| {
            with(&format!(
                "[[uplink.webhooks]]\nname = \"city\"\nurl = \"https://p.example/h\"\n{extra}"
            ))
        };
        let ok = hook("secret = \"whsec_c2VjcmV0\"").unwrap();
        let w = &ok.uplink.webhooks[0];
        assert_eq!((w.timeout_secs, w.backoff_min_secs, w.max_retry_hours), (10.0, 1.0, 72.0));
        assert!(!format!("{ok:?}").contains("c2VjcmV0"), "the secret must not be printed");
        assert_eq!(ok.uplink.public_url(&ok.api), "http://127.0.0.1:8080");
        let e = |r: Result<Config, String>| r.unwrap_err();
        assert!(
            e(hook("")).contains("uplink.webhooks[0].secret") && e(hook("")).contains("`city`")
        );
        assert!(e(hook("secret_env = \"GRIDWATCH_TEST_UNSET_SECRET_VAR\""))
            .contains("GRIDWATCH_TEST_UNSET_SECRET_VAR"));
        assert!(e(hook("secret = \"whsec_***\"")).contains("base64"));
        assert!(e(hook("secret = \"s\"\nbackoff_max_secs = 0.5"))
            .contains("uplink.webhooks[0].backoff_max_secs"));
        assert!(e(hook("secret = \"s\"\ndead_letter_after = 0")).contains("dead_letter_after"));
        assert!(e(hook("secret = \"s\"\nretries = 3")).contains("retries"));
        let e2 = e(with("[[uplink.webhooks]]\nname = \"a\"\nurl = \"ftp://x/y\"\nsecret = \"s\""));
        assert!(e2.contains("uplink.webhooks[0].url"), "{e2}");
        let dup = "[[uplink.webhooks]]\nname = \"a\"\nurl = \"http://x/y\"\nsecret = \"s\"\n";
        assert!(e(with(&format!("{dup}{dup}"))).contains("duplicate"));
        assert!(e(with("[uplink]\npublic_url = \"box.example\"")).contains("uplink.public_url"));
        let p = with("[uplink]\npublic_url = \"https://box.example:8443/\"").unwrap();
        assert_eq!(p.uplink.public_url(&p.api), "https://box.example:8443");
    }

    #[test]
    fn sources() {
        let mk = |u: &str| CameraConfig {
            url: u.into(),
            ..Config::parse(GOOD, &base()).unwrap().cameras[0].clone()
        };
        assert_eq!(
            mk("rtsp://h:554/x").source(Path::new("/b")).unwrap(),
            Source::Rtsp("rtsp://h:554/x".into())
        );
        assert_eq!(mk("a.mp4").source(Path::new("/b")).unwrap(), Source::File("/b/a.mp4".into()));
        assert_eq!(
            mk("file:///v/a.mp4").source(Path::new("/b")).unwrap(),
            Source::File("/v/a.mp4".into())
        );
        assert_eq!(
            mk("/dev/video0").source(Path::new("/b")).unwrap(),
            Source::V4l2("/dev/video0".into())
        );
        assert!(mk("http://x").source(Path::new("/b")).is_err());
    }
}
