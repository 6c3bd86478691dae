//! A minimal webhook receiver for gridwatch's uplink, for platform developers: it verifies
//! every delivery with `gridwatch::uplink::signing::verify` (Standard Webhooks: HMAC-SHA256
//! over `id.timestamp.body`, 5-minute timestamp tolerance), dedupes by `webhook-id` and
//! prints each change. See docs/api.md "Verifying webhooks".
//!
//! ```sh
//! SECRET=whsec_$(head -c 32 /dev/urandom | base64)   # your own, never a published one
//! cargo run --example verify_webhook -- 127.0.0.1:9000 "$SECRET"
//! # gridwatch.toml: [[uplink.webhooks]] url = "http://127.0.0.1:9000/hook", same secret
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gridwatch::uplink::signing::{verify, DEFAULT_TOLERANCE_SECS};

struct Receiver {
    secret: String,
    /// Ids already processed (a real receiver keeps them durably, e.g. a unique index).
    seen: Mutex<HashSet<String>>,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // 1. Verify on the raw bytes, before parsing anything.
    if let Err(e) = verify(
        &r.secret,
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
        &body,
        now,
        DEFAULT_TOLERANCE_SECS,
    ) {
        eprintln!("refused: {e}");
        return StatusCode::UNAUTHORIZED;
    }
    // 2. Dedupe: deliveries are at least once.
    if !r.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(h("webhook-id").to_string()) {
        return StatusCode::NO_CONTENT;
    }
    // 3. Process (here: print). Answer 2xx quickly; slow work belongs in a queue.
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => println!(
            "#{} {} {} {} on {} at {}",
            v["seq"], v["kind"], v["change"], v["event_id"], v["camera_id"], v["at"]
        ),
        Err(e) => eprintln!("verified but not JSON: {e}"),
    }
    StatusCode::NO_CONTENT
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(secret)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: verify_webhook <listen addr, e.g. 127.0.0.1:9000> <secret, e.g. whsec_…>"
        );
        std::process::exit(2);
    };
    let state = Arc::new(Receiver { secret, seen: Mutex::new(HashSet::new()) });
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(state);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("receiving on http://{addr}/hook");
    axum::serve(listener, app).await?;
    Ok(())
}
