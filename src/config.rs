//! `gridwatch.toml`: serde structs with `deny_unknown_fields`, validated at load.
//! Every error names the field path and, where there is one, the camera.
//! docs/config.md is the annotated full config; keep the two in step.
//!
//! One module per section, each struct with its `validate` beside it: `[api]`, `[auth]`,
//! `[inference]`, `[storage]`, `[[cameras]]` (with `[cameras.record]`) in `config/`, and
//! `[uplink]` with its sinks in `uplink::config`. [`Config::validate`] calls each in turn.
//!
//! Defaults, written once each: a section whose keys are all optional has
//! `#[serde(default)]` on the struct and its documented defaults in its `impl Default`. A
//! struct with required keys (`Config`, `[[cameras]]`, the sinks) cannot have a `Default`;
//! its optional keys name a `default_*` function (or take the type's default) instead.

mod api;
mod auth;
mod camera;
mod inference;
mod masking;
mod motion;
mod open_data;
pub mod proxies;
mod storage;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::rules::{CalibrationConfig, LineConfig, RuleConfig, ZoneConfig};

pub use self::api::{ApiConfig, ApiLimitsConfig, ApiTlsConfig, TlsMode};
pub use self::auth::{AuthConfig, CookieSecure};
pub use self::camera::{
    CameraConfig, FallScanConfig, LowLightEnhanceConfig, PoseConfig, RecordConfig, Source,
    TilesConfig,
};
pub use self::inference::{available_cores, InferenceConfig, Layout};
pub use self::masking::{CameraMaskingConfig, MaskingConfig, DEFAULT_FACE_MODEL};
pub use self::motion::MotionGateConfig;
pub use self::open_data::OpenDataConfig;
pub use self::storage::StorageConfig;
pub use crate::uplink::config::{Gat1400Config, MqttConfig, Secret, UplinkConfig, WebhookConfig};

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
    /// Aggregated statistics for the public (`[open_data]`, docs/api.md "Open data").
    #[serde(default)]
    pub open_data: OpenDataConfig,
    /// Masking of faces and plates in served stills (`[masking]`, docs/security.md).
    #[serde(default)]
    pub masking: MaskingConfig,
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

impl Config {
    /// The inference layout of this box: `[inference]` for its enabled cameras on the cores
    /// this process may use ([`InferenceConfig::layout`]).
    pub fn inference_layout(&self) -> Layout {
        self.inference.layout(self.cameras.iter().filter(|c| c.enabled).count())
    }

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
    /// Every URL in an error message is redacted ([`crate::redact::redact_url`]): messages
    /// quote config text (TOML snippets, camera URLs), and a password must not reach a log.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, String> {
        Self::parse_unredacted(text, base_dir).map_err(|m| crate::redact::redact_url(&m))
    }

    fn parse_unredacted(text: &str, base_dir: &Path) -> Result<Config, String> {
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
        cfg.masking.face_model = cfg.masking.face_model.as_deref().map(|p| cfg.resolve(p));
        cfg.api.tls.cert_path = cfg.api.tls.cert_path.as_deref().map(|p| cfg.resolve(p));
        cfg.api.tls.key_path = cfg.api.tls.key_path.as_deref().map(|p| cfg.resolve(p));
        cfg.validate()?;
        Ok(cfg)
    }

    /// The face model's manifest: `[masking] face_model`, else [`DEFAULT_FACE_MODEL`] in the
    /// config file's directory, else in the current directory.
    pub fn face_model(&self) -> PathBuf {
        if let Some(p) = &self.masking.face_model {
            return p.clone();
        }
        let beside = self.base_dir.join(DEFAULT_FACE_MODEL);
        if beside.is_file() {
            beside
        } else {
            PathBuf::from(DEFAULT_FACE_MODEL)
        }
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
        self.inference.validate()?;
        self.api.validate()?;
        self.api.tls.check_files()?;
        self.storage.validate()?;
        self.uplink.validate()?;
        let camera_ids: Vec<&str> = self.cameras.iter().map(|c| c.id.as_str()).collect();
        self.uplink.check_cameras(&camera_ids)?;
        if !self.uplink.mqtt.is_empty() && self.box_id.contains(['+', '#', '/', '\0']) {
            return Err("field `box_id`: must not contain '+', '#' or '/' with MQTT sinks (it is a topic level)".into());
        }
        self.auth.validate()?;
        self.open_data.validate()?;
        if let Some(p) = &self.masking.face_model {
            if !p.is_file() {
                return Err(format!(
                    "field `masking.face_model`: model manifest {} does not exist",
                    p.display()
                ));
            }
        }
        for (name, p) in &self.models {
            if name == crate::fire::BUILTIN_FIRE {
                return Err(format!(
                    "field `models.{name}`: the name is reserved for the built-in fire and smoke detector"
                ));
            }
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
            c.validate(&at, &self.base_dir, &self.models)?;
            crate::rules::scene::validate_geometry(&c.zones, &c.lines)
                .map_err(|(field, m)| format!("{}: {m}", at(&field)))?;
            c.record.validate(&at)?;
            if let Some(cal) = &c.calibration {
                cal.homography().map_err(|(field, m)| format!("{}: {m}", at(&field)))?;
            }
            let calibrated = c.calibration.is_some();
            crate::rules::validate_rules(&c.rules, &c.zones, &c.lines, calibrated)
                .map_err(|(field, m)| format!("{}: {m}", at(&field)))?;
        }
        Ok(())
    }
}

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
        assert_eq!(blocks.len(), 4, "main, geometry, calibration and rules blocks");
        let extra_zones = ["lane-north", "bus-stop", "junction"]
            .iter()
            .map(|z| format!("[[cameras.zones]]\nname = \"{z}\"\npoints = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]\n"))
            .collect::<String>();
        let extra_lines = ["trap-start", "trap-end"]
            .iter()
            .map(|l| {
                format!("[[cameras.lines]]\nname = \"{l}\"\npoints = [[0.1, 0.5], [0.9, 0.5]]\n")
            })
            .collect::<String>();
        let text = format!(
            "{}\n{}\n{}\n{extra_zones}\n{extra_lines}\n{}",
            blocks[0], blocks[1], blocks[2], blocks[3]
        );
        // M3: the example holds no working secret. Its placeholders are refused at load,
        // one after the other, and a hash of a well-known token ("test") or the public
        // Standard Webhooks test vector appears nowhere in the docs.
        let placeholders = [
            ("<sha256 of your own token>", "api.tokens_sha256[0]"),
            ("<whsec_… generated as above>", "uplink.webhooks[0].secret"),
            ("<the broker's password for this box>", "uplink.mqtt[0].password"),
            ("<the VIID platform's password for this box>", "uplink.gat1400[0].password"),
        ];
        let mut text = text;
        for (placeholder, field) in placeholders {
            assert!(text.contains(placeholder), "{placeholder} missing from docs/config.md");
            let e = Config::parse(&text, &base()).expect_err("a placeholder was accepted");
            assert!(e.contains(field), "{field}: {e}");
            // What the reader is told to do: generate their own.
            let own = crate::store::hash_token(&crate::store::generate_token());
            let own = match field {
                "uplink.webhooks[0].secret" => {
                    "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()
                }
                _ => own,
            };
            text = text.replace(placeholder, &own);
        }
        for doc in ["docs/config.md", "docs/api.md", "README.md", "docs/security.md"] {
            let d = std::fs::read_to_string(base().join(doc)).unwrap_or_default();
            for weak in ["test", "admin", "password", "changeme", "change-me", "secret"] {
                let h = crate::store::hash_token(weak);
                assert!(!d.to_lowercase().contains(&h), "{doc} holds sha256({weak:?})");
            }
            assert!(!d.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{doc}: public test vector");
        }
        let full = Config::parse(&text, &base()).unwrap_or_else(|e| panic!("docs/config.md: {e}"));
        assert!(!full
            .api
            .tokens_sha256
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&crate::store::hash_token("test"))));
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
        // The fire detector block states its true defaults (its masks are an example).
        let fire = |c: &CameraConfig| {
            c.fire_detector.clone().map(|f| crate::fire::FireDetectorConfig { masks: vec![], ..f })
        };
        assert_eq!(fire(b), Some(crate::fire::FireDetectorConfig::default()));
        assert_eq!(fire(a), fire(b));
        assert_eq!(format!("{:?}", a.record), format!("{:?}", RecordConfig::default()));
        assert_eq!(a.low_light_enhance, LowLightEnhanceConfig::default());
        assert_eq!(b.low_light_enhance, LowLightEnhanceConfig::default());
        assert_eq!(format!("{:?}", b.record), format!("{:?}", RecordConfig::default()));
        assert_eq!(format!("{:?}", full.storage), format!("{:?}", StorageConfig::default()));
        assert_eq!(format!("{:?}", bare.storage), format!("{:?}", StorageConfig::default()));
        assert_eq!(format!("{:?}", full.uplink.webhooks), format!("{:?}", bare.uplink.webhooks));
        assert_eq!(format!("{:?}", full.uplink.gat1400), format!("{:?}", bare.uplink.gat1400));
        assert_eq!(
            full.uplink.outbox_retention_days,
            UplinkConfig::default().outbox_retention_days
        );
        assert_eq!(full.auth, AuthConfig::default());
        assert_eq!(full.api.limits, crate::config::ApiLimitsConfig::default());
        assert_eq!(bare.api.limits, crate::config::ApiLimitsConfig::default());
        assert_eq!(bare.auth, AuthConfig::default());
        let w = &bare.uplink.webhooks[0];
        assert!(
            w.enabled
                && w.delivery.max_retry_hours == 72.0
                && w.dead_letter_after == 3
                && w.delivery.backoff_max_secs == 3600.0
        );
        assert_eq!(format!("{:?}", full.uplink.mqtt), format!("{:?}", bare.uplink.mqtt));
        let m = &bare.uplink.mqtt[0];
        assert!(
            m.enabled
                && m.topic_prefix == "gridwatch"
                && m.keep_alive_secs == 30.0
                && m.delivery.backoff_max_secs == 60.0
        );
        assert_eq!(m.host_port(), Ok(("mqtt.grid.example.org".to_string(), 8883)));
        assert_eq!(a.rules.len(), 16);
        assert_eq!(a.calibration, b.calibration);
        assert_eq!(a.calibration.as_ref().map(|c| c.ground_points_m.len()), Some(4));
        assert_eq!(a.zones.len(), 4);
        assert_eq!(a.lines.len(), 4);
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
        let proxied =
            with("trust_proxy_headers = true\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/24\"]")
                .unwrap();
        assert_eq!(proxied.auth.trusted_proxies.len(), 2);
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
            ("trust_proxy_headers = true", "auth.trusted_proxies"),
            ("trusted_proxies = [\"127.0.0.1\"]", "auth.trusted_proxies"),
            (
                "trust_proxy_headers = true\ntrusted_proxies = [\"proxy.lan\"]",
                "auth.trusted_proxies[0]",
            ),
            (
                "trust_proxy_headers = true\ntrusted_proxies = [\"0.0.0.0/0\"]",
                "auth.trusted_proxies[0]",
            ),
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
        let d = &w.delivery;
        assert_eq!((d.timeout_secs, d.backoff_min_secs, d.max_retry_hours), (10.0, 1.0, 72.0));
        assert!(!format!("{ok:?}").contains("c2VjcmV0"), "the secret must not be printed");
        assert_eq!(ok.uplink.public_url(ok.api.listen), "http://127.0.0.1:8080");
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
        assert_eq!(p.uplink.public_url(p.api.listen), "https://box.example:8443");
    }

    /// L5: a camera password with an unencoded `/` or `#` is never printed in a config
    /// error, whatever the error: the URL itself, a TOML syntax error quoting its line, a
    /// bad key beside it, a webhook URL.
    #[test]
    fn config_errors_never_print_url_passwords() {
        for pw in ["pa/ss-w0rdZ", "pa#ss-w0rdZ", "pa/a#s?s@w0rdZ"] {
            let url = format!("rtsp://admin:{pw}@10.0.0.5:554/s1");
            let cam = GOOD.replace("test-videos/pets09-s2l1.mp4", &url);
            let hook = format!(
                "[[uplink.webhooks]]\nname = \"a\"\nurl = \"https://u:{pw}@h.example/x\"\nsecret = \"s\"\nretries = 1\n"
            );
            let cases = [
                // The URL does not parse (the `#` or `/` ends the authority early) or does.
                cam.clone(),
                // A TOML syntax error on the URL's own line quotes that line.
                cam.replace(&format!("url = \"{url}\""), &format!("url = \"{url}\" x")),
                // A key error in the same camera.
                cam.replace("models = [\"default\"]", "models = [\"default\"]\ndetect_fpz = 3"),
                // A non-RTSP scheme.
                GOOD.replace("test-videos/pets09-s2l1.mp4", &url.replace("rtsp", "ftp")),
                GOOD.replacen("[models]", &format!("{hook}[models]"), 1),
            ];
            for text in cases {
                let e = Config::parse(&text, &base()).expect_err("every case is an error");
                let secret = pw.split(['/', '#', '?', '@']).next_back().unwrap_or(pw);
                assert!(
                    !e.contains(pw)
                        && !e.contains(secret)
                        && !e.contains("pa/")
                        && !e.contains("pa#"),
                    "password leaked: {e}"
                );
            }
        }
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
