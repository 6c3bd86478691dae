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
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            tokens_sha256: vec![],
            generate_token_if_none: true,
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
        Ok(())
    }
}
