//! `[api]`: where the HTTP API listens and which bearer tokens it accepts.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

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
    /// `[api.tls]`: HTTPS on `listen` (docs/security.md "TLS"). Default off.
    pub tls: ApiTlsConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            tokens_sha256: vec![],
            generate_token_if_none: true,
            limits: ApiLimitsConfig::default(),
            tls: ApiTlsConfig::default(),
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
        self.limits.validate()?;
        self.tls.validate(self.listen)
    }

    /// The URL of the API's root as printed at start-up (`https` when TLS is on).
    pub fn scheme(&self) -> &'static str {
        if self.tls.mode == TlsMode::Off {
            "http"
        } else {
            "https"
        }
    }
}

/// `[api.tls]`: HTTPS served by gridwatch itself (rustls), on `api.listen`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiTlsConfig {
    /// "off" (plain HTTP; the default, for the loopback demo and behind a TLS proxy),
    /// "self_signed" (a certificate made on the first run and kept in `data_dir/tls/`; pin
    /// its SHA-256 fingerprint, which `gridwatch check` and the start-up banner print) or
    /// "files" (`cert_path` and `key_path`).
    pub mode: TlsMode,
    /// "files": PEM certificate chain, the server's certificate first. Relative to the
    /// config file. Read, parsed and matched with `key_path` at load.
    pub cert_path: Option<PathBuf>,
    /// "files": PEM private key (PKCS#8, PKCS#1 or SEC1) of the first certificate.
    pub key_path: Option<PathBuf>,
    /// "self_signed": the certificate's subject alt names (DNS names or IP addresses), used
    /// only when it is made. Default: `box_id` (when it is a DNS name), `localhost`, and the
    /// address of `api.listen` (when it is not a wildcard).
    pub subject_alt_names: Vec<String>,
    /// An address on which a plain-HTTP listener answers every request with a 308 redirect to
    /// the same path over `https`. Default none.
    pub redirect_http_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Off,
    SelfSigned,
    Files,
}

impl Default for ApiTlsConfig {
    fn default() -> Self {
        ApiTlsConfig {
            mode: TlsMode::Off,
            cert_path: None,
            key_path: None,
            subject_alt_names: Vec::new(),
            redirect_http_listen: None,
        }
    }
}

impl ApiTlsConfig {
    /// Structure only; the files of mode "files" are read by `Config::validate`
    /// ([`ApiTlsConfig::check_files`]) once their paths are resolved.
    pub(crate) fn validate(&self, listen: SocketAddr) -> Result<(), String> {
        let files = self.mode == TlsMode::Files;
        for (field, set) in
            [("cert_path", self.cert_path.is_some()), ("key_path", self.key_path.is_some())]
        {
            if files && !set {
                return Err(format!("field `api.tls.{field}`: required with mode = \"files\""));
            }
            if !files && set {
                return Err(format!("field `api.tls.{field}`: only used with mode = \"files\""));
            }
        }
        if !self.subject_alt_names.is_empty() && self.mode != TlsMode::SelfSigned {
            return Err(
                "field `api.tls.subject_alt_names`: only used with mode = \"self_signed\"".into()
            );
        }
        for (i, n) in self.subject_alt_names.iter().enumerate() {
            if !crate::tls::valid_alt_name(n) {
                return Err(format!(
                    "field `api.tls.subject_alt_names[{i}]`: `{n}` is neither an IP address nor a \
                     DNS name"
                ));
            }
        }
        if let Some(r) = self.redirect_http_listen {
            if self.mode == TlsMode::Off {
                return Err(
                    "field `api.tls.redirect_http_listen`: only used when `api.tls.mode` is not \
                     \"off\""
                        .into(),
                );
            }
            if r == listen
                || (r.port() == listen.port()
                    && (r.ip().is_unspecified() || listen.ip().is_unspecified()))
            {
                return Err(format!(
                    "field `api.tls.redirect_http_listen`: {r} is the HTTPS address `api.listen`"
                ));
            }
        }
        Ok(())
    }

    /// Mode "files": the certificate and key are readable, parse as PEM, and belong together.
    pub(crate) fn check_files(&self) -> Result<(), String> {
        if let (TlsMode::Files, Some(cert), Some(key)) =
            (self.mode, &self.cert_path, &self.key_path)
        {
            crate::tls::load_files(cert, key).map_err(|(which, m)| {
                let field = match which {
                    crate::tls::Which::Cert => "cert_path",
                    crate::tls::Which::Key => "key_path",
                };
                format!("field `api.tls.{field}`: {m}")
            })?;
        }
        Ok(())
    }

    /// The subject alt names of a self-signed certificate made now (see the field).
    pub fn alt_names(&self, box_id: &str, listen: SocketAddr) -> Vec<String> {
        if !self.subject_alt_names.is_empty() {
            return self.subject_alt_names.clone();
        }
        let mut v = Vec::new();
        let id = box_id.to_ascii_lowercase();
        if crate::tls::valid_alt_name(&id) && !id.starts_with("*.") {
            v.push(id);
        }
        v.push("localhost".to_string());
        if !listen.ip().is_unspecified() {
            let ip = listen.ip().to_string();
            if !v.contains(&ip) {
                v.push(ip);
            }
        }
        v
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
    fn tls_is_checked_and_names_the_field() {
        let parse = |t: &str| toml::from_str::<ApiConfig>(t).map_err(|e| e.to_string());
        let ok =
            parse("[tls]\nmode = \"self_signed\"\nredirect_http_listen = \"127.0.0.1:8081\"\n")
                .unwrap();
        ok.validate().unwrap();
        assert_eq!(ok.scheme(), "https");
        assert_eq!(
            ok.tls.alt_names("Box-7", ok.listen),
            vec!["box-7".to_string(), "localhost".into(), "127.0.0.1".into()]
        );
        assert_eq!(ApiConfig::default().tls.mode, TlsMode::Off, "off by default");
        assert!(parse("[tls]\nmode = \"on\"\n").unwrap_err().contains("mode"));
        assert!(parse("[tls]\ncert = \"x\"\n").unwrap_err().contains("cert"));
        for (toml, field) in [
            ("mode = \"files\"\nkey_path = \"k.pem\"", "api.tls.cert_path"),
            ("mode = \"files\"\ncert_path = \"c.pem\"", "api.tls.key_path"),
            ("mode = \"self_signed\"\ncert_path = \"c.pem\"", "api.tls.cert_path"),
            ("mode = \"files\"\ncert_path = \"c\"\nkey_path = \"k\"\nsubject_alt_names = [\"x\"]", "subject_alt_names"),
            ("mode = \"self_signed\"\nsubject_alt_names = [\"a b\"]", "subject_alt_names[0]"),
            ("redirect_http_listen = \"127.0.0.1:8081\"", "redirect_http_listen"),
            ("mode = \"self_signed\"\nredirect_http_listen = \"127.0.0.1:8080\"", "redirect_http_listen"),
        ] {
            let c = parse(&format!("[tls]\n{toml}\n")).unwrap();
            let e = c.validate().unwrap_err();
            assert!(e.contains(field), "{toml}: {e}");
        }
    }

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
