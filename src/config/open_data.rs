//! `[open_data]`: aggregated statistics for the public (docs/api.md "Open data").

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenDataConfig {
    /// Smallest count published: a grid cell × hour × class whose count (or, for occupancy,
    /// peak number present) is below it is withheld. Default 10.
    pub min_count: u32,
    /// Append each finished hour's aggregates to the uplink outbox (kind `open_data`), so the
    /// configured webhooks and MQTT sinks deliver them. Default true.
    pub publish: bool,
    /// How long after an hour ends its aggregates are published (late counts of tracks that
    /// end after the hour still land in it). Default 300 s.
    pub publish_delay_secs: f64,
}

impl Default for OpenDataConfig {
    fn default() -> Self {
        OpenDataConfig { min_count: 10, publish: true, publish_delay_secs: 300.0 }
    }
}

impl OpenDataConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.min_count) {
            return Err("field `open_data.min_count`: must be between 1 and 1000000".into());
        }
        if !(self.publish_delay_secs.is_finite()
            && (0.0..=3600.0).contains(&self.publish_delay_secs))
        {
            return Err(
                "field `open_data.publish_delay_secs`: must be between 0 and 3600 seconds".into()
            );
        }
        Ok(())
    }
}
