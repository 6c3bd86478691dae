//! `[storage]`: the disk budget shared by all cameras and the retention of event media.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Most bytes that recordings + event clips may use; 0 = no byte budget (only the
    /// free-space floor below applies). Default 0.
    pub max_bytes: u64,
    /// Keep at least this share of the data filesystem free. Default 5.
    pub min_free_percent: f64,
    /// … and at least this many bytes. Default 268435456 (256 MiB).
    pub min_free_bytes: u64,
    /// Event clips and snapshots are kept this long (longer than continuous footage).
    /// Default 30.
    pub event_retention_days: f64,
    /// Retention runs this often (and whenever a segment is indexed). Default 5.
    pub check_interval_secs: f64,
    /// Longest span `/api/v1/recordings/export.mp4` serves. Default 1800.
    pub max_export_secs: f64,
    /// Exports built or downloading at once (each holds a slot from its build to the end of
    /// its download); more get a 503 `exports_busy`. 1 to 32. Default 2.
    pub max_concurrent_exports: usize,
    /// An export download not finished after this long is cut off and its file deleted
    /// (a stalled client must not hold disk space or a slot). 10 to 86400. Default 900.
    pub export_download_timeout_secs: f64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            max_bytes: 0,
            min_free_percent: 5.0,
            min_free_bytes: 256 << 20,
            event_retention_days: 30.0,
            check_interval_secs: 5.0,
            max_export_secs: 1800.0,
            max_concurrent_exports: 2,
            export_download_timeout_secs: 900.0,
        }
    }
}

impl StorageConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(0.0..=90.0).contains(&self.min_free_percent) {
            return Err("field `storage.min_free_percent`: must be between 0 and 90".into());
        }
        for (field, v) in [
            ("event_retention_days", self.event_retention_days),
            ("check_interval_secs", self.check_interval_secs),
            ("max_export_secs", self.max_export_secs),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("field `storage.{field}`: must be > 0"));
            }
        }
        if !(1..=32).contains(&self.max_concurrent_exports) {
            return Err("field `storage.max_concurrent_exports`: must be between 1 and 32".into());
        }
        if !(10.0..=86_400.0).contains(&self.export_download_timeout_secs) {
            return Err(
                "field `storage.export_download_timeout_secs`: must be between 10 and 86400".into(),
            );
        }
        Ok(())
    }
}
