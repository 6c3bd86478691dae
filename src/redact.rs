//! The one URL redactor: what a log line, a health report, an API answer or an error message
//! may show of a URL that came from the config (camera, webhook and MQTT URLs). A leaf module:
//! it depends on nothing in the crate.

/// Hides the secrets of every `scheme://…` URL in `text` (a URL alone, or a pipeline
/// description or error message holding several):
///
/// * the user-info (`user:password@`) becomes `***@`;
/// * every query value becomes `***` (`?token=***&channel=***`; a bare `?secret` becomes
///   `?***`), since tokens travel there;
/// * a fragment becomes `#***`.
///
/// Scheme, host, port and path are kept. A URL ends at white space or a double quote (as in
/// a `gst-launch` description). The user-info ends at the *last* `@` of the URL, so an
/// unencoded `@`, `/`, `?` or `#` in a password is hidden too (a URL with an `@` in its path
/// or query loses its host and path as well: more hidden, never less).
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(p) = rest.find("://") {
        let (head, tail) = rest.split_at(p + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '"' || c.is_whitespace()).unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        let url = match url.rfind('@') {
            Some(at) => {
                out.push_str("***");
                &url[at..]
            }
            None => url,
        };
        let (url, fragment) = match url.find(['?', '#']) {
            Some(q) if url[q..].starts_with('?') => match url[q..].find('#') {
                Some(h) => (&url[..q + h], Some(&url[q + h..])),
                None => (url, None),
            },
            Some(h) => (&url[..h], Some(&url[h..])),
            None => (url, None),
        };
        match url.split_once('?') {
            Some((base, query)) => {
                out.push_str(base);
                out.push('?');
                let params: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) => format!("{k}=***"),
                        None if kv.is_empty() => String::new(),
                        None => "***".into(),
                    })
                    .collect();
                out.push_str(&params.join("&"));
            }
            None => out.push_str(url),
        }
        if fragment.is_some() {
            out.push_str("#***");
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn camera_credentials_in_urls_and_pipeline_descriptions() {
        assert_eq!(redact_url("rtsp://admin:secret@10.0.0.5/s1"), "rtsp://***@10.0.0.5/s1");
        assert_eq!(redact_url("rtsp://10.0.0.5/s1"), "rtsp://10.0.0.5/s1");
        assert_eq!(
            redact_url(r#"rtspsrc location="rtsp://u:p@w@h:554/a" ! x, also rtsp://a:b@c/d"#),
            r#"rtspsrc location="rtsp://***@h:554/a" ! x, also rtsp://***@c/d"#
        );
        assert_eq!(redact_url("no url here"), "no url here");
    }

    /// The webhook and MQTT sinks' rule before: no credentials, query or fragment shown.
    #[test]
    fn sink_urls_hide_credentials_query_values_and_fragment() {
        assert_eq!(
            redact_url("https://u:p@h.example:8443/hook?token=x#f"),
            "https://***@h.example:8443/hook?token=***#***"
        );
        assert_eq!(redact_url("https://h.example/hook"), "https://h.example/hook");
        assert_eq!(redact_url("http://127.0.0.1:9/hook"), "http://127.0.0.1:9/hook");
        assert_eq!(redact_url("mqtt://u:secretpw@b.example"), "mqtt://***@b.example");
        assert_eq!(redact_url("https://h.example?sig=abc&v=1"), "https://h.example?sig=***&v=***");
        assert_eq!(redact_url("https://h.example/x?s3cret&"), "https://h.example/x?***&");
        assert_eq!(redact_url("https://h.example/x#tok"), "https://h.example/x#***");
        // An unencoded '?' or '#' in a password does not leak the rest of it.
        assert_eq!(redact_url("rtsp://u:p?a#ss@h/x"), "rtsp://***@h/x");
    }

    /// A password with `/` or `#` (unencoded) must not leak: the user-info runs to the
    /// last `@`, wherever the first `/` is.
    #[test]
    fn passwords_with_slash_or_hash() {
        for (url, want) in [
            ("rtsp://admin:pa/ss@10.0.0.5/s1", "rtsp://***@10.0.0.5/s1"),
            ("rtsp://admin:p#w/x@10.0.0.5:554/s1", "rtsp://***@10.0.0.5:554/s1"),
            ("rtsp://admin:a/b#c?d@e@10.0.0.5/s1", "rtsp://***@10.0.0.5/s1"),
            ("`rtsp://u:x/y@h/s`: invalid", "`rtsp://***@h/s`: invalid"),
        ] {
            let got = redact_url(url);
            assert_eq!(got, want, "{url}");
        }
    }
}
