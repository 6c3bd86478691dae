//! The API's TLS certificate (docs/security.md "TLS", ADR 0034): a configured PEM
//! certificate chain and key, or a self-signed certificate made on the first run and kept in
//! the data dir. rustls with the ring provider (as the uplink's clients use); HTTP/1.1 only.
//!
//! This module knows files and certificates, not the config or the server: `config` checks
//! files with [`load_files`] at load, and `app`/`check` build what `api::serve_tls` serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Directory under the data dir that holds the self-signed certificate.
pub const SELF_SIGNED_DIR: &str = "tls";
const CERT_FILE: &str = "self-signed-cert.pem";
const KEY_FILE: &str = "self-signed-key.pem";
/// Validity of a generated certificate. It is pinned by fingerprint, not checked against a
/// CA, so a long life avoids a silent fingerprint change; delete the files to make a new one.
const SELF_SIGNED_DAYS: i64 = 10 * 365;

/// SHA-256 of a DER certificate as `openssl x509 -noout -fingerprint -sha256` prints it
/// (upper-case hex pairs separated by `:`).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// A certificate chain and its private key, read and checked.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Fingerprint of the end-entity (first) certificate.
    pub fn fingerprint(&self) -> String {
        fingerprint_sha256(self.chain[0].as_ref())
    }

    /// The rustls server configuration: TLS 1.2 and 1.3, ring, no client certificates,
    /// ALPN `http/1.1` (the server speaks HTTP/1 only).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key does not belong to the certificate".to_string()
                }
                e => e.to_string(),
            })?;
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(c))
    }
}

/// Which file a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Cert,
    Key,
}

/// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1) and checks
/// that the key belongs to the first certificate. The error says which file is at fault.
pub fn load_files(cert: &Path, key: &Path) -> Result<Identity, (Which, String)> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| (Which::Cert, format!("cannot read {}: {e}", cert.display())))?;
    let key_pem = std::fs::read(key)
        .map_err(|e| (Which::Key, format!("cannot read {}: {e}", key.display())))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (Which::Cert, format!("{}: not a PEM certificate: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err((Which::Cert, format!("{}: no `CERTIFICATE` block", cert.display())));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| (Which::Key, format!("{}: not a PEM private key: {e}", key.display())))?;
    let id = Identity { chain, key: key_der };
    id.server_config()
        .map_err(|e| (Which::Key, format!("{} and {}: {e}", key.display(), cert.display())))?;
    Ok(id)
}

/// Where the self-signed certificate and key live under `data_dir`.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join(SELF_SIGNED_DIR);
    (dir.join(CERT_FILE), dir.join(KEY_FILE))
}

/// The self-signed identity in `data_dir`: read when it exists (the same certificate, and
/// fingerprint, on every start), otherwise made for `subject_alt_names` (DNS names or IP
/// addresses) and written, the key 0600 and the directory 0700. Returns it and whether it
/// was made now.
pub fn ensure_self_signed(
    data_dir: &Path,
    subject_alt_names: &[String],
) -> Result<(Identity, bool), String> {
    let (cert, key) = self_signed_paths(data_dir);
    if cert.exists() || key.exists() {
        return load_files(&cert, &key).map(|id| (id, false)).map_err(|(_, m)| {
            format!("{m} (the self-signed certificate; delete both files to make a new one)")
        });
    }
    let mut params = rcgen::CertificateParams::new(subject_alt_names.to_vec())
        .map_err(|e| format!("subject alt names {subject_alt_names:?}: {e}"))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, subject_alt_names.first().cloned().unwrap_or_default());
    dn.push(rcgen::DnType::OrganizationName, "gridwatch (self-signed)");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    let key_pair = rcgen::KeyPair::generate().map_err(|e| format!("making a key: {e}"))?;
    let made = params.self_signed(&key_pair).map_err(|e| format!("making a certificate: {e}"))?;
    let dir = cert.parent().unwrap_or(data_dir);
    create_private_dir(dir)?;
    // The key first: a certificate without its key is never left behind alone.
    write_new(&key, pem("PRIVATE KEY", &key_pair.serialize_der()).as_bytes(), 0o600)?;
    write_new(&cert, pem("CERTIFICATE", made.der()).as_bytes(), 0o644)?;
    let id = load_files(&cert, &key).map_err(|(_, m)| m)?;
    Ok((id, true))
}

/// RFC 7468 text encoding: base64 in lines of 64 between BEGIN/END `label` lines.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Fingerprint of the self-signed certificate in `data_dir`, if one was made already.
pub fn self_signed_fingerprint(data_dir: &Path) -> Result<Option<String>, String> {
    let (cert, key) = self_signed_paths(data_dir);
    if !cert.exists() && !key.exists() {
        return Ok(None);
    }
    load_files(&cert, &key).map(|id| Some(id.fingerprint())).map_err(|(_, m)| m)
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("restricting {}: {e}", dir.display()))
}

/// Writes a new file with `mode` from its creation (whatever the umask) and syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Whether `name` can be a subject alt name: an IP address, or a DNS name (labels of
/// letters, digits and '-', a leading `*.` allowed).
pub fn valid_alt_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(self_signed_fingerprint(dir.path()).unwrap(), None);
        let sans = vec!["box-1".to_string(), "localhost".into(), "127.0.0.1".into()];
        let (a, made) = ensure_self_signed(dir.path(), &sans).unwrap();
        assert!(made);
        let (b, made) = ensure_self_signed(dir.path(), &sans).unwrap();
        assert!(!made, "the second start reads the files");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(self_signed_fingerprint(dir.path()).unwrap(), Some(a.fingerprint()));
        assert_eq!(a.fingerprint().len(), 32 * 3 - 1);
        use std::os::unix::fs::PermissionsExt;
        let (cert, key) = self_signed_paths(dir.path());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(cert.parent().unwrap()), 0o700);
        // A different box's certificate with this box's key: refused, naming the key.
        let other = tempfile::tempdir().unwrap();
        let (_, _) = ensure_self_signed(other.path(), &sans).unwrap();
        let (other_cert, _) = self_signed_paths(other.path());
        let (which, m) = load_files(&other_cert, &key).unwrap_err();
        assert_eq!(which, Which::Key);
        assert!(m.contains("does not belong"), "{m}");
        let (which, m) = load_files(&key, &key).unwrap_err();
        assert_eq!(which, Which::Cert, "{m}");
    }

    #[test]
    fn alt_names() {
        for ok in ["localhost", "box-1", "cam.example.org", "*.example.org", "10.0.0.2", "::1"] {
            assert!(valid_alt_name(ok), "{ok}");
        }
        for bad in ["", "a b", "-x", "x..y", "http://x", "box_1"] {
            assert!(!valid_alt_name(bad), "{bad}");
        }
    }
}
