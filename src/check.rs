//! `gridwatch check`: one line per check, non-zero exit if any fails.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, Source};
use crate::infer::manifest::ModelManifest;
use crate::ingest::profile::HardwareProfile;
use crate::redact::redact_url;

struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, ok: bool, what: &str, detail: impl std::fmt::Display) {
        if !ok {
            self.failed += 1;
        }
        println!("[{}] {what}: {detail}", if ok { " ok " } else { "FAIL" });
    }
}

pub fn run(path: &Path) -> ExitCode {
    let mut r = Report { failed: 0 };
    let cfg = match Config::load(path) {
        Ok(c) => {
            r.line(
                true,
                "config",
                format!(
                    "{} ({} camera(s), {} model(s))",
                    path.display(),
                    c.cameras.len(),
                    c.models.len()
                ),
            );
            c
        }
        Err(e) => {
            r.line(false, "config", e);
            return ExitCode::from(2);
        }
    };

    match HardwareProfile::for_config(&cfg) {
        Ok(p) => {
            r.line(
                true,
                "hardware profile",
                format!(
                    "{} — {}{}",
                    p.name,
                    p.description,
                    if p.tested { "" } else { " (UNTESTED)" }
                ),
            );
            match crate::gst::init() {
                Ok(()) => {
                    let els = p.required_elements();
                    let missing: Vec<_> =
                        els.iter().filter(|e| !crate::gst::has_element(e)).cloned().collect();
                    if missing.is_empty() {
                        r.line(true, "gstreamer elements", format!("all {} present", els.len()));
                    } else {
                        r.line(
                            false,
                            "gstreamer elements",
                            format!("missing: {}", missing.join(", ")),
                        );
                    }
                }
                Err(e) => r.line(false, "gstreamer", e),
            }
        }
        Err(e) => r.line(false, "hardware profile", e),
    }

    match crate::infer::runtime::init(cfg.inference.ort_library.as_deref()) {
        Ok(p) => r.line(true, "onnx runtime", p.display()),
        Err(e) => r.line(false, "onnx runtime", e),
    }

    for (name, p) in &cfg.models {
        match ModelManifest::load(p).and_then(|m| m.verify().map(|()| m)) {
            Ok(m) => {
                r.line(true, &format!("model {name}"), format!("{} (sha256 ok)", m.file.display()))
            }
            Err(e) => r.line(false, &format!("model {name}"), e),
        }
    }

    // Masking of served stills (docs/security.md "Masking"): the face model and each
    // camera's detector load, or masked stills would be refused with 503.
    let opts = crate::infer::detector::DetectorOptions::default();
    match crate::masking::Masker::from_config(&cfg, &opts) {
        Ok(m) => {
            let missing = m.cameras_without_detector();
            let detail = if missing.is_empty() {
                format!("face model {}", cfg.face_model().display())
            } else {
                format!(
                    "face model {}; WARNING: no detector with a `person` class on camera(s) {}: \
                     their masked stills are refused (503) unless [cameras.masking] enabled = false",
                    cfg.face_model().display(),
                    missing.join(", ")
                )
            };
            r.line(true, "masking", detail)
        }
        Err(e) => r.line(false, "masking", format!("{e} (masked stills would be refused: 503)")),
    }

    tls_line(&mut r, &cfg);

    for cam in &cfg.cameras {
        let what = format!("camera {}", cam.id);
        if !cam.enabled {
            r.line(true, &what, "disabled");
            continue;
        }
        match cam.source(&cfg.base_dir) {
            Ok(Source::File(f)) => match std::fs::File::open(&f) {
                Ok(_) => r.line(true, &what, format!("file {} readable", f.display())),
                Err(e) => r.line(false, &what, format!("file {}: {e}", f.display())),
            },
            Ok(Source::V4l2(d)) => r.line(d.exists(), &what, format!("device {}", d.display())),
            Ok(Source::Rtsp(u)) => {
                let shown = redact_url(&u);
                match rtsp_reachable(&u) {
                    Ok(addr) => r.line(true, &what, format!("{shown} reachable ({addr})")),
                    Err(e) => r.line(false, &what, format!("{shown}: {e}")),
                }
            }
            Err(e) => r.line(false, &what, e),
        }
        // The sub-stream detection decodes (`detect_url`).
        let what = format!("camera {} detect_url", cam.id);
        match (&cam.detect_url, cam.detect_source(&cfg.base_dir)) {
            (Some(_), Ok(Source::Rtsp(u))) => {
                let shown = redact_url(&u);
                match rtsp_reachable(&u) {
                    Ok(addr) => r.line(true, &what, format!("{shown} reachable ({addr})")),
                    Err(e) => r.line(false, &what, format!("{shown}: {e}")),
                }
            }
            (Some(_), Ok(Source::File(f))) => match std::fs::File::open(&f) {
                Ok(_) => r.line(true, &what, format!("file {} readable", f.display())),
                Err(e) => r.line(false, &what, format!("file {}: {e}", f.display())),
            },
            _ => {}
        }
    }
    if r.failed == 0 {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("{} check(s) failed", r.failed);
        ExitCode::from(1)
    }
}

/// `[api.tls]`: the certificate's SHA-256 fingerprint, to pin. `check` writes nothing: a
/// self-signed certificate that does not exist yet is made by the first `gridwatch run` (as
/// the service's user, who must own it).
fn tls_line(r: &mut Report, cfg: &Config) {
    use crate::config::TlsMode;
    let t = &cfg.api.tls;
    let redirect = t
        .redirect_http_listen
        .map(|a| format!("; http://{a} redirects to https"))
        .unwrap_or_default();
    match (t.mode, &t.cert_path, &t.key_path) {
        (TlsMode::Off, _, _) => {
            r.line(true, "api tls", format!("off (plain HTTP on {})", cfg.api.listen))
        }
        (TlsMode::Files, Some(cert), Some(key)) => match crate::tls::load_files(cert, key) {
            Ok(id) => r.line(
                true,
                "api tls",
                format!("{} (SHA-256 {}){redirect}", cert.display(), id.fingerprint()),
            ),
            Err((_, m)) => r.line(false, "api tls", m),
        },
        (TlsMode::Files, _, _) => r.line(false, "api tls", "mode \"files\" needs both paths"),
        (TlsMode::SelfSigned, _, _) => match crate::tls::self_signed_fingerprint(&cfg.data_dir) {
            Ok(Some(fp)) => {
                let (cert, _) = crate::tls::self_signed_paths(&cfg.data_dir);
                r.line(
                    true,
                    "api tls",
                    format!("self-signed {} (SHA-256 {fp}){redirect}", cert.display()),
                )
            }
            Ok(None) => {
                let (cert, _) = crate::tls::self_signed_paths(&cfg.data_dir);
                r.line(
                    true,
                    "api tls",
                    format!(
                        "self-signed: not made yet; the first `gridwatch run` makes {} for {} and \
                         prints its SHA-256 fingerprint (as will `gridwatch check` then){redirect}",
                        cert.display(),
                        t.alt_names(&cfg.box_id, cfg.api.listen).join(", ")
                    ),
                )
            }
            Err(m) => r.line(false, "api tls", m),
        },
    }
}

/// TCP-connects to an RTSP URL's host and port within 3 seconds.
fn rtsp_reachable(u: &str) -> Result<std::net::SocketAddr, String> {
    let url = url::Url::parse(u).map_err(|e| e.to_string())?;
    let host = url.host_str().ok_or("no host")?;
    let port = url.port().unwrap_or(if url.scheme() == "rtsps" { 322 } else { 554 });
    let addrs =
        (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = String::from("no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)) {
            Ok(_) => return Ok(a),
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    Err(last)
}
