//! Webhook sink: HTTP POST of the envelope, signed per Standard Webhooks.

use std::time::Duration;

use time::OffsetDateTime;

use super::config::WebhookConfig;
use super::signing;
use super::sink::{BoxFuture, Outcome, Sink};
use crate::redact::redact_url;
use crate::store::outbox::OutboxRow;

pub struct WebhookSink {
    name: String,
    url: String,
    target: String,
    key: Vec<u8>,
    client: reqwest::Client,
    timeout: Duration,
}

impl WebhookSink {
    pub fn new(cfg: &WebhookConfig) -> Result<WebhookSink, String> {
        let at = |m: String| format!("webhook `{}`: {m}", cfg.name);
        let secret = cfg.secret_value().map_err(at)?;
        let key = signing::key_bytes(secret.expose()).map_err(at)?;
        let timeout = Duration::from_secs_f64(cfg.delivery.timeout_secs);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(cfg.delivery.connect_timeout_secs))
            .timeout(timeout)
            // A redirect would send the signed body somewhere else: treat it as an answer.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gridwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| at(format!("HTTP client: {e}")))?;
        Ok(WebhookSink {
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            target: redact_url(&cfg.url),
            key,
            client,
            timeout,
        })
    }

    async fn post(&self, row: &OutboxRow, now: OffsetDateTime) -> Outcome {
        let ts = now.unix_timestamp();
        let signature = signing::sign(&self.key, &row.id, ts, row.envelope.as_bytes());
        let req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &row.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(row.envelope.clone());
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry { status: None, error: self.describe(&e), retry_after: None }
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        // Read (a bounded part of) the body so the connection can be reused.
        let body = match tokio::time::timeout(self.timeout, resp.bytes()).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b[..b.len().min(200)]).trim().to_string(),
            _ => String::new(),
        };
        let code = status.as_u16();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let error =
            if body.is_empty() { format!("HTTP {code}") } else { format!("HTTP {code}: {body}") };
        if code == 408 || code == 429 || status.is_server_error() {
            Outcome::Retry { status: Some(code), error, retry_after }
        } else {
            Outcome::Rejected { status: Some(code), error }
        }
    }

    /// A transport error without the URL (it may hold credentials), with its root cause.
    fn describe(&self, e: &reqwest::Error) -> String {
        let mut root: &dyn std::error::Error = e;
        while let Some(s) = root.source() {
            root = s;
        }
        let what = if e.is_timeout() {
            format!("timed out (limit {:.1} s)", self.timeout.as_secs_f64())
        } else if e.is_connect() {
            "cannot connect".into()
        } else {
            "request failed".into()
        };
        let cause = root.to_string();
        if cause.is_empty() || what.contains(&cause) {
            what
        } else {
            format!("{what}: {cause}")
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (relative to `now`).
pub fn parse_retry_after(v: &str, now: OffsetDateTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "webhook"
    }
    fn target(&self) -> String {
        self.target.clone()
    }
    fn deliver<'a>(&'a self, row: &'a OutboxRow, now: OffsetDateTime) -> BoxFuture<'a, Outcome> {
        Box::pin(self.post(row, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = time::macros::datetime!(2015-10-21 07:27:00 UTC);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:26:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
