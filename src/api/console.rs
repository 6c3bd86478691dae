//! The operator console: a static single-page app (`src/console/`) served by the appliance
//! itself at `/` and `/ui/*`. Release builds embed the files; debug builds read them from
//! the source tree so the UI can be edited without rebuilding. The pages talk only to this
//! server's API; the Content-Security-Policy below makes the browser refuse anything else.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::ApiError;

#[derive(RustEmbed)]
#[folder = "src/console/"]
struct Assets;

/// No script, style, image, media or connection from anywhere but this server.
pub const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'";

fn asset(path: &str) -> Result<Response, ApiError> {
    let file = Assets::get(path)
        .ok_or_else(|| ApiError::not_found(format!("no console file `{path}`")))?;
    let mime = file.metadata.mimetype();
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let mut resp = (StatusCode::OK, file.data.into_owned()).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time: an upgraded box must not run yesterday's script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(resp)
}

/// `GET /`: the console's page (it shows the login form when there is no session).
pub(super) async fn index() -> Result<Response, ApiError> {
    asset("index.html")
}

/// `GET /ui/{*path}`: the console's scripts, styles and images.
pub(super) async fn file(Path(path): Path<String>) -> Result<Response, ApiError> {
    if path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(ApiError::not_found(format!("no console file `{path}`")));
    }
    asset(&path)
}

/// Every embedded file (tests).
#[cfg(test)]
pub(crate) fn files() -> Vec<String> {
    Assets::iter().map(|p| p.into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_served_with_a_strict_csp() {
        assert!(files().iter().any(|f| f == "index.html"), "{:?}", files());
        let r = asset("index.html").unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html");
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'"));
        assert!(asset("nope.js").is_err());
    }

    #[test]
    fn no_file_names_another_host() {
        // The console must not load anything from elsewhere (the box may have no internet).
        for f in files() {
            let data = Assets::get(&f).unwrap().data;
            let text = String::from_utf8_lossy(&data);
            for bad in ["http://", "https://", "//cdn", "fonts.googleapis"] {
                let hit = text.match_indices(bad).any(|(i, _)| {
                    // SVG/XML namespace identifiers are names, not requests.
                    !text[i..].starts_with("http://www.w3.org/")
                });
                assert!(!hit, "console file {f} mentions `{bad}`");
            }
        }
    }
}
