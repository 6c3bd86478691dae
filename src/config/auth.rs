//! `[auth]`: sessions of users who log in with a password, and the lockout of failed
//! logins. Tokens are configured in `[api]` and managed with `gridwatch token`.

use serde::Deserialize;

use super::proxies::ProxyNet;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a session lasts after login (absolute, not extended by use). Default 12 h.
    pub session_ttl_secs: u64,
    /// `Secure` flag of the session cookie: "auto" (when the request came over TLS, which
    /// for this plain-HTTP server means a trusted proxy said `X-Forwarded-Proto: https`),
    /// "always" or "never". Default "auto".
    pub cookie_secure: CookieSecure,
    /// Take the client address from `X-Forwarded-For` and the scheme from
    /// `X-Forwarded-Proto` of requests from `trusted_proxies` (only behind a reverse proxy
    /// that sets them). Default false.
    pub trust_proxy_headers: bool,
    /// The reverse proxies (addresses or CIDR networks) whose proxy headers are believed;
    /// required with `trust_proxy_headers`. The client is the rightmost `X-Forwarded-For`
    /// entry that is not one of them (`config::proxies::forwarded_client`). Default empty.
    pub trusted_proxies: Vec<ProxyNet>,
    /// Failed logins of one account, or from one address, within `failed_login_window_secs`
    /// that lock it for `lockout_secs`. Default 5.
    pub max_failed_logins: u32,
    /// Default 900.
    pub failed_login_window_secs: u64,
    /// Default 900.
    pub lockout_secs: u64,
    /// Shortest password accepted for users (at least 8). Default 10.
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
            session_ttl_secs: 12 * 3600,
            cookie_secure: CookieSecure::Auto,
            trust_proxy_headers: false,
            trusted_proxies: Vec::new(),
            max_failed_logins: 5,
            failed_login_window_secs: 900,
            lockout_secs: 900,
            min_password_len: 10,
        }
    }
}

impl AuthConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(60..=30 * 86_400).contains(&self.session_ttl_secs) {
            return Err(
                "field `auth.session_ttl_secs`: must be between 60 and 2592000 (30 days)".into()
            );
        }
        match (self.trust_proxy_headers, self.trusted_proxies.is_empty()) {
            (true, true) => return Err(
                "field `auth.trusted_proxies`: list the reverse proxies' addresses (e.g. [\"127.0.0.1\"]) when `auth.trust_proxy_headers` is true; without them anyone could set their own address".into()
            ),
            (false, false) => return Err(
                "field `auth.trusted_proxies`: has no effect unless `auth.trust_proxy_headers` is true".into()
            ),
            _ => {}
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
