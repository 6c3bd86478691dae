//! Webhook sink: HTTP POST of the envelope, signed per Standard Webhooks.

use std::time::Duration;

use time::OffsetDateTime;

use super::config::WebhookConfig;
use super::signing;
use super::sink::{BoxFuture, Outcome, Sink};
use crate::redact::redact_url;
use crate::store::outbox::OutboxRow;

/// Most bytes of a webhook answer's body that are read (its first 200 go into the error).
pub const RESPONSE_BODY_MAX: usize = 4096;

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
        // Read at most RESPONSE_BODY_MAX bytes of the body (a short one is read to its end so
        // that the connection can be reused); a peer's endless or huge answer costs nothing.
        let mut resp = resp;
        let mut got: Vec<u8> = Vec::new();
        let _ = tokio::time::timeout(self.timeout, async {
            while got.len() < RESPONSE_BODY_MAX {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        got.extend_from_slice(&c[..c.len().min(RESPONSE_BODY_MAX - got.len())])
                    }
                    _ => break,
                }
            }
        })
        .await;
        drop(resp); // an unread rest closes the connection
        let body = String::from_utf8_lossy(&got[..got.len().min(200)]).trim().to_string();
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

    /// L6: a peer answering 500 with an endless body (a real socket): the attempt reads a
    /// few KiB, reports the start of the body, and returns long before its timeout.
    #[tokio::test]
    async fn an_endless_answer_is_read_only_up_to_the_cap() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 4096];
            // The request head and its small body.
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                req.extend_from_slice(&b[..n]);
            }
            s.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .unwrap();
            let chunk = [b"overloaded ".as_slice(), &[b'x'; 65_536 - 11]].concat();
            let mut sent = 0u64;
            // Until the client stops reading (or 1 GiB: the cap did not hold).
            while sent < 1 << 30 {
                let head = format!("{:x}\r\n", chunk.len());
                if s.write_all(head.as_bytes())
                    .and_then(|_| s.write_all(&chunk))
                    .and_then(|_| s.write_all(b"\r\n"))
                    .is_err()
                {
                    break;
                }
                sent += chunk.len() as u64;
            }
            sent
        });
        let text = format!(
            "box_id = \"t\"\ndata_dir = \"/tmp/x\"\n[models]\n[[uplink.webhooks]]\nname = \"city\"\n\
             url = \"http://127.0.0.1:{port}/h\"\nsecret = \"s\"\ntimeout_secs = 60\n"
        );
        let cfg = crate::config::Config::parse(&text, std::path::Path::new("/")).unwrap();
        let sink = WebhookSink::new(&cfg.uplink.webhooks[0]).unwrap();
        let row = OutboxRow {
            seq: 1,
            id: "c1".into(),
            camera_id: "cam".into(),
            event_id: None,
            change: "started".into(),
            kind: "presence".into(),
            envelope: "{}".into(),
            created_at: OffsetDateTime::now_utc(),
        };
        let t = std::time::Instant::now();
        let outcome = sink.post(&row, OffsetDateTime::now_utc()).await;
        let took = t.elapsed();
        match outcome {
            Outcome::Retry { status: Some(500), error, .. } => {
                assert!(error.starts_with("HTTP 500: overloaded xxx"), "{error}");
            }
            _ => panic!("not a retry after 500"),
        }
        assert!(took < Duration::from_secs(30), "the attempt took {took:?}");
        drop(sink);
        let sent = tokio::task::spawn_blocking(move || peer.join().unwrap()).await.unwrap();
        // What the socket buffers took before the client closed, not the peer's 1 GiB.
        assert!(sent < 64 << 20, "{sent} bytes sent");
    }
}
