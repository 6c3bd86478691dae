//! `[api]`: where the HTTP API listens and which bearer tokens it accepts.

use std::net::{Ipv4Addr, SocketAddr};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// SHA-256 (hex) of accepted bearer tokens. Tokens created by `gridwatch token create`
    /// live in the database instead. Never put a token itself in the config.
    pub tokens_sha256: Vec<String>,
    /// When no token or user exists at all, generate a token and an `admin` user at start-up
    /// and print both once (only hashes are stored). Default true.
    pub generate_token_if_none: bool,
    /// `[api.limits]`: what one client may cost the server (docs/security.md).
    pub limits: ApiLimitsConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            tokens_sha256: vec![],
            generate_token_if_none: true,
            limits: ApiLimitsConfig::default(),
        }
    }
}

impl ApiConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (i, h) in self.tokens_sha256.iter().enumerate() {
            if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "field `api.tokens_sha256[{i}]`: must be 64 hex digits (the SHA-256 of a token)"
                ));
            }
        }
        self.limits.validate()
    }
}

/// `[api.limits]`: connection discipline of the HTTP server. Every key is optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiLimitsConfig {
    /// A client must send a complete request head within this long of connecting or of the
    /// end of its previous response (so it is also the idle keep-alive timeout). Default 10.
    pub header_read_timeout_secs: f64,
    /// A non-streaming request (its body included) must be answered within this long, or it
    /// gets a 503 `request_timeout`. Event streams, long-polls and media downloads are not
    /// timed (they have their own bounds). Default 30.
    pub request_timeout_secs: f64,
    /// A connection whose client stops reading (a response write that makes no progress for
    /// this long: a stalled download) is closed. Default 60.
    pub send_timeout_secs: f64,
    /// Open connections at most, all clients together; more are closed at once. Lowered at
    /// start-up to what the file-descriptor limit allows beside the reserve. Default 256.
    pub max_connections: usize,
    /// Open connections at most from one client address. Default 32.
    pub max_connections_per_address: usize,
    /// New connections per second from one client address (a burst of twice this);
    /// more are closed at once. Default 10.
    pub max_new_connections_per_address_per_sec: f64,
    /// Largest request body on any route (413 beyond). Default 65536.
    pub max_body_bytes: usize,
    /// Event streams and feed long-polls open at once per user or token (429 beyond).
    /// Default 4.
    pub max_streams_per_principal: usize,
}

impl Default for ApiLimitsConfig {
    fn default() -> Self {
        ApiLimitsConfig {
            header_read_timeout_secs: 10.0,
            request_timeout_secs: 30.0,
            send_timeout_secs: 60.0,
            max_connections: 256,
            max_connections_per_address: 32,
            max_new_connections_per_address_per_sec: 10.0,
            max_body_bytes: 64 * 1024,
            max_streams_per_principal: 4,
        }
    }
}

impl ApiLimitsConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let secs = |key: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && v >= lo && v <= hi {
                Ok(())
            } else {
                Err(format!("field `api.limits.{key}`: must be between {lo} and {hi} seconds"))
            }
        };
        secs("header_read_timeout_secs", self.header_read_timeout_secs, 0.1, 300.0)?;
        secs("request_timeout_secs", self.request_timeout_secs, 0.1, 3600.0)?;
        secs("send_timeout_secs", self.send_timeout_secs, 1.0, 3600.0)?;
        if !(1..=65_536).contains(&self.max_connections) {
            return Err("field `api.limits.max_connections`: must be between 1 and 65536".into());
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_address) {
            return Err(format!(
                "field `api.limits.max_connections_per_address`: must be between 1 and \
                 `max_connections` ({})",
                self.max_connections
            ));
        }
        let rate = self.max_new_connections_per_address_per_sec;
        if !(rate.is_finite() && (0.1..=100_000.0).contains(&rate)) {
            return Err(
                "field `api.limits.max_new_connections_per_address_per_sec`: must be between \
                 0.1 and 100000"
                    .into(),
            );
        }
        if !(1024..=16 << 20).contains(&self.max_body_bytes) {
            return Err(
                "field `api.limits.max_body_bytes`: must be between 1024 and 16777216".into()
            );
        }
        if !(1..=1024).contains(&self.max_streams_per_principal) {
            return Err(
                "field `api.limits.max_streams_per_principal`: must be between 1 and 1024".into()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_name_the_field() {
        let parse = |t: &str| toml::from_str::<ApiConfig>(t).map_err(|e| e.to_string());
        let ok = parse("[limits]\nmax_connections = 64\nheader_read_timeout_secs = 2.5\n").unwrap();
        assert_eq!(ok.limits.max_connections, 64);
        assert_eq!(ok.limits.max_connections_per_address, 32);
        ok.validate().unwrap();
        let e = parse("[limits]\nmax_conections = 64\n").unwrap_err();
        assert!(e.contains("max_conections"), "{e}");
        for (toml, field) in [
            ("header_read_timeout_secs = 0.0", "header_read_timeout_secs"),
            ("request_timeout_secs = -1.0", "request_timeout_secs"),
            ("send_timeout_secs = nan", "send_timeout_secs"),
            ("max_connections = 0", "max_connections"),
            ("max_connections = 16\nmax_connections_per_address = 17", "per_address"),
            ("max_body_bytes = 100", "max_body_bytes"),
            ("max_new_connections_per_address_per_sec = 0.0", "per_sec"),
            ("max_streams_per_principal = 0", "max_streams_per_principal"),
        ] {
            let c = parse(&format!("[limits]\n{toml}\n")).unwrap();
            let e = c.validate().unwrap_err();
            assert!(e.contains("api.limits.") && e.contains(field), "{toml}: {e}");
        }
    }
}
