//! `[auth]`: sessions of users who log in with a password, and the lockout of failed
//! logins. Tokens are configured in `[api]` and managed with `gridwatch token`.

use serde::Deserialize;

use super::proxies::ProxyNet;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a session lasts after login (absolute, not extended by use). Default 12 h.
    pub session_ttl_secs: u64,
    /// `Secure` flag of the session cookie: "auto" (when the request came over TLS: served
    /// by gridwatch itself with `[api.tls]`, or a trusted proxy said
    /// `X-Forwarded-Proto: https`), "always" or "never". Default "auto".
    pub cookie_secure: CookieSecure,
    /// Take the client address from `X-Forwarded-For` and the scheme from
    /// `X-Forwarded-Proto` of requests from `trusted_proxies` (only behind a reverse proxy
    /// that sets them). Default false.
    pub trust_proxy_headers: bool,
    /// The reverse proxies (addresses or CIDR networks) whose proxy headers are believed;
    /// required with `trust_proxy_headers`. The client is the rightmost `X-Forwarded-For`
    /// entry that is not one of them (`config::proxies::forwarded_client`). Default empty.
    pub trusted_proxies: Vec<ProxyNet>,
    /// Failed logins of one account from one address within `failed_login_window_secs`
    /// that lock that account from that address (only) for `lockout_secs`; also the failures
    /// of one account from all addresses together after which its password checks are
    /// slowed (never locked). Default 5.
    pub max_failed_logins: u32,
    /// Failed logins from one address, over any usernames, within the window that lock
    /// the address for `lockout_secs`. Default 20.
    pub max_failed_logins_per_address: u32,
    /// Longest gap between two password checks of a slowed account (the gaps grow 1 s,
    /// 2 s, 4 s … up to this). Default 10.
    pub slowdown_max_secs: u64,
    /// Password hashes and checks (argon2id, 19 MiB each) run at once. Default 2.
    pub password_checks_parallel: usize,
    /// Logins that may wait for a turn beyond those; more are refused with 503. Default 32.
    pub password_checks_queued: usize,
    /// Username of the admin user created on the first run (with the first token). Default:
    /// none, which makes a random one (`admin-` and 6 letters or digits), so that the name
    /// cannot be guessed; both are written to `first-run-credentials.txt` in the data dir.
    pub first_admin_username: Option<String>,
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
            max_failed_logins_per_address: 20,
            slowdown_max_secs: 10,
            password_checks_parallel: 2,
            password_checks_queued: 32,
            first_admin_username: None,
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
        for (field, v) in [
            ("max_failed_logins", self.max_failed_logins),
            ("max_failed_logins_per_address", self.max_failed_logins_per_address),
        ] {
            if v == 0 {
                return Err(format!("field `auth.{field}`: must be ≥ 1"));
            }
        }
        if !(1..=3600).contains(&self.slowdown_max_secs) {
            return Err("field `auth.slowdown_max_secs`: must be between 1 and 3600".into());
        }
        if !(1..=64).contains(&self.password_checks_parallel) {
            return Err("field `auth.password_checks_parallel`: must be between 1 and 64".into());
        }
        if self.password_checks_queued > 4096 {
            return Err("field `auth.password_checks_queued`: must be at most 4096".into());
        }
        if let Some(name) = &self.first_admin_username {
            crate::auth::validate_username(name)
                .map_err(|m| format!("field `auth.first_admin_username`: {m}"))?;
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
