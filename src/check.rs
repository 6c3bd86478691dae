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

    let profile = HardwareProfile::for_config(&cfg);
    match &profile {
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

    let ort = crate::infer::runtime::init(cfg.inference.ort_library.as_deref());
    match &ort {
        Ok(p) => r.line(true, "onnx runtime", p.display()),
        Err(e) => r.line(false, "onnx runtime", e),
    }
    if let (Ok(p), Ok(_)) = (&profile, &ort) {
        provider_line(&mut r, &p.inference.execution_providers);
    }
    let how = match (cfg.inference.workers, cfg.inference.intra_op_threads) {
        (Some(_), Some(_)) => "as set",
        (None, None) => "the default for the cores",
        _ => "the unset part the default for the cores",
    };
    r.line(true, "inference", format!("{} ({how})", cfg.inference_layout()));

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
    storage_lines(&mut r, &cfg);

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
    gat1400_lines(&mut r, &cfg);
    if r.failed == 0 {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("{} check(s) failed", r.failed);
        ExitCode::from(1)
    }
}

/// Which of the profile's execution providers this ONNX Runtime build has: the models of a
/// GPU profile on the CPU-only library run on the CPU, which is allowed but worth a warning.
fn provider_line(r: &mut Report, wanted: &[String]) {
    let mut have = Vec::new();
    let mut lack = Vec::new();
    for name in wanted {
        match crate::infer::detector::provider_available(name) {
            Ok(true) => have.push(name.as_str()),
            Ok(false) => lack.push(name.clone()),
            Err(e) => lack.push(format!("{name} ({e})")),
        }
    }
    let detail = if lack.is_empty() {
        format!("{} available", have.join(", "))
    } else {
        format!(
            "{} available; WARNING: not in this ONNX Runtime build: {} (the models fall back to \
             the next one; a GPU profile needs the GPU build as [inference] ort_library)",
            have.join(", "),
            lack.join(", ")
        )
    };
    r.line(true, "execution providers", detail);
}

/// The `min_age_days` floors against the disk budget (measured from the recordings index
/// when the box has recorded), and the evidence signing key's public half. Opens an existing
/// database only; writes nothing.
fn storage_lines(r: &mut Report, cfg: &Config) {
    use crate::record::retention::{floor_check, DiskStats, Statvfs};
    let db = cfg.data_dir.join(crate::store::DB_FILE);
    // Only a database at this build's schema is opened: opening an older one would migrate
    // it, and `check` writes nothing.
    let version = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()
    .and_then(|c| crate::store::migrations::current_version(&c).ok());
    let store = match version {
        Some(v) if db.exists() && v == crate::store::migrations::latest_version() => {
            match crate::store::Store::open_shared(&cfg.data_dir) {
                Ok(s) => Some(s),
                Err(e) => {
                    r.line(false, "storage", format!("cannot open {}: {e}", db.display()));
                    None
                }
            }
        }
        Some(v) if db.exists() => {
            r.line(
                true,
                "storage",
                format!(
                    "{} is at schema version {v}; the next `gridwatch run` migrates it (recording rates not measured)",
                    db.display()
                ),
            );
            None
        }
        _ => None,
    };
    let mut dir = cfg.data_dir.as_path();
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
    let disk = Statvfs.usage(dir).ok();
    match floor_check(cfg, store.as_ref(), disk, time::OffsetDateTime::now_utc()) {
        Ok(msg) => r.line(true, "storage floor", msg),
        Err(msg) => r.line(false, "storage floor", msg),
    }
    let key_path = cfg.data_dir.join(crate::evidence::KEY_FILE);
    if std::fs::metadata(&key_path).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    {
        r.line(
            true,
            "evidence key",
            format!("{} is not readable by this user: run check as the service's user to see its public key", key_path.display()),
        );
        return;
    }
    match crate::evidence::BoxKey::public_of(&cfg.data_dir) {
        Ok(Some(k)) => r.line(
            true,
            "evidence key",
            format!("ed25519 public key {} (SHA-256 {})", k.public_base64(), k.fingerprint()),
        ),
        Ok(None) => r.line(
            true,
            "evidence key",
            format!(
                "not created yet: the first `gridwatch run` creates {}",
                cfg.data_dir.join(crate::evidence::KEY_FILE).display()
            ),
        ),
        Err(e) => r.line(false, "evidence key", e),
    }
}

/// `[[uplink.gat1400]]`: registers with each enabled VIID platform, reads its clock and
/// unregisters (a wrong password or an unreachable platform fails with the reason).
fn gat1400_lines(r: &mut Report, cfg: &Config) {
    let sinks: Vec<_> = cfg.uplink.gat1400.iter().filter(|g| g.enabled).collect();
    if sinks.is_empty() {
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return r.line(false, "gat1400", format!("cannot start a runtime: {e}")),
    };
    for g in sinks {
        let what = format!("gat1400 {}", g.name);
        match rt.block_on(crate::uplink::gat1400::probe(g)) {
            Ok(m) => r.line(true, &what, m),
            Err(e) => r.line(false, &what, e),
        }
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
