//! Verifiable evidence packages (issue 17 item 2, docs/design/0038): the box's Ed25519
//! signing key, the package format (a POSIX ustar archive), building one from the store and
//! checking one offline (`gridwatch verify`).
//!
//! A package `evidence-<id>.tar` holds one directory `evidence-<id>/` with
//! `manifest.json`, `manifest.sig` (the base64 Ed25519 signature of `manifest.json`'s exact
//! bytes), `video.mp4` (the original footage, remuxed, never re-encoded), and for an event
//! `snapshot.jpg` (if it has one) and `event.json` (the event with its review history and
//! locks). The manifest lists every other file with its SHA-256 and size, and says which
//! box, camera and span it is, the clock the footage was timed by, the software, who
//! exported it and when. Verification checks the signature, then every file, and names
//! the first file that fails; the archive itself is read strictly (header checksums, zero
//! padding, nothing after the end), so no byte of it can change unnoticed.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// The signing key's file in the data dir (PKCS#8 v2, mode 0600), made by the first run.
pub const KEY_FILE: &str = "evidence-key.pk8";
/// The `format` of a manifest this version writes and reads.
pub const FORMAT: &str = "gridwatch-evidence/1";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
/// Largest manifest or signature file read (bytes).
const MAX_SMALL_FILE: u64 = 4 << 20;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ---------------------------------------------------------------------------------------
// Keys

/// An Ed25519 public key (32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Standard base64 of the 32 bytes (how `check`, the API and manifests show it).
    pub fn public_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// SHA-256 of the 32 bytes, lowercase hex (to compare keys by eye).
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.0))
    }

    /// From base64 text (surrounding whitespace ignored), or the path of a file holding it.
    pub fn parse(s: &str) -> Result<PublicKey, String> {
        let text = match std::fs::read_to_string(s) {
            Ok(t) if Path::new(s).is_file() => t,
            _ => s.to_string(),
        };
        let bytes =
            B64.decode(text.trim()).map_err(|e| format!("the public key is not base64: {e}"))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("an Ed25519 public key has 32 bytes, this one {}", b.len())
        })?;
        Ok(PublicKey(arr))
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.0).verify(message, signature).is_ok()
    }
}

/// The box's signing key.
pub struct BoxKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for BoxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BoxKey({})", self.public().fingerprint())
    }
}

impl BoxKey {
    /// The key in `data_dir`, created (0600, never overwritten) when there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<BoxKey, String> {
        let path = data_dir.join(KEY_FILE);
        match Self::read(&path) {
            Ok(Some(k)) => return Ok(k),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| {
            "cannot generate an Ed25519 key: the OS random source failed".to_string()
        })?;
        let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let written = crate::store::create_private(&tmp)
            .and_then(|mut f| f.write_all(doc.as_ref()).and_then(|()| f.sync_all()));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot write {}: {e}", tmp.display()));
        }
        // A hard link does not replace an existing file: two first runs cannot race each
        // other's key away.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Ok(d) = File::open(data_dir) {
                    let _ = d.sync_all();
                }
                tracing::info!(path = %path.display(), "evidence signing key created");
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
        Self::read(&path)?.ok_or_else(|| format!("{} vanished after it was made", path.display()))
    }

    /// The public half of the key in `data_dir`, if there is one (reads only).
    pub fn public_of(data_dir: &Path) -> Result<Option<PublicKey>, String> {
        Ok(Self::read(&data_dir.join(KEY_FILE))?.map(|k| k.public()))
    }

    fn read(path: &Path) -> Result<Option<BoxKey>, String> {
        use std::os::unix::fs::PermissionsExt;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                // As the store does with a database left open by an older version.
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
            }
        }
        let pair = Ed25519KeyPair::from_pkcs8(&bytes)
            .map_err(|e| format!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()))?;
        Ok(Some(BoxKey { pair }))
    }

    pub fn public(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

// ---------------------------------------------------------------------------------------
// The clock

/// The box's clock as the kernel reports it (`adjtimex(2)`, read only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockState {
    /// `system`: recordings are timed by the box's system clock (UTC), mapped once per
    /// pipeline run from its running time (docs/storage.md).
    pub source: String,
    /// The kernel considers the clock synchronised (NTP/PTP discipline, `STA_UNSYNC`
    /// clear); `null` when it cannot be asked.
    pub synchronized: Option<bool>,
    /// The discipline's current offset estimate (µs), maximum and estimated error (µs).
    pub offset_us: Option<i64>,
    pub max_error_us: Option<i64>,
    pub est_error_us: Option<i64>,
    /// When it was read (at export).
    #[serde(with = "time::serde::rfc3339")]
    pub read_at: OffsetDateTime,
}

impl ClockState {
    pub fn read(now: OffsetDateTime) -> ClockState {
        let mut st = ClockState {
            source: "system".into(),
            synchronized: None,
            offset_us: None,
            max_error_us: None,
            est_error_us: None,
            read_at: now,
        };
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `tx` is a zeroed, writable timex; modes = 0 only reads the state.
            let mut tx: libc::timex = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::adjtimex(&mut tx) };
            if rc >= 0 {
                let nano = tx.status & libc::STA_NANO != 0;
                st.synchronized = Some(tx.status & libc::STA_UNSYNC == 0 && rc != libc::TIME_ERROR);
                st.offset_us = Some(if nano { tx.offset as i64 / 1000 } else { tx.offset as i64 });
                st.max_error_us = Some(tx.maxerror as i64);
                st.est_error_us = Some(tx.esterror as i64);
            }
        }
        st
    }
}

// ---------------------------------------------------------------------------------------
// The manifest

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRef {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    pub codec: String,
    /// Indexed after a crash (start time from the file name, duration from a probe).
    pub recovered: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Software {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub package_id: Uuid,
    pub box_id: String,
    pub camera_id: String,
    pub event_id: Option<Uuid>,
    /// The span asked for (an event: its clip span).
    #[serde(with = "time::serde::rfc3339")]
    pub requested_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_end: OffsetDateTime,
    /// UTC times of the first frame in `video.mp4` and the end of its last.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Frames in `video.mp4` (`null`: an event's stored clip, not counted again).
    pub frames: Option<u64>,
    pub clock: ClockState,
    /// The recorded segments the video was cut from.
    pub segments: Vec<SegmentRef>,
    pub software: Software,
    /// The audit name of who exported it (`user:<name>`, `token:<id>`, …) and their role.
    pub exported_by: String,
    pub exported_role: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    /// `ed25519`, and the signing key (base64) and its SHA-256 fingerprint. A verifier
    /// compares the key with the box's (`gridwatch check`, `GET /api/v1/evidence/key`);
    /// the key in the manifest alone proves nothing.
    pub signature_algorithm: String,
    pub public_key: String,
    pub key_fingerprint: String,
    pub files: Vec<FileEntry>,
    /// `video.mp4` and `snapshot.jpg` are masked copies (faces and plates filled, the video
    /// decoded and encoded again; docs/security.md "Masking"), not the originals. Absent in
    /// packages made before masking: false.
    #[serde(default)]
    pub masked: bool,
}

// ---------------------------------------------------------------------------------------
// ustar

const BLOCK: usize = 512;

fn octal(field: &mut [u8], v: u64) {
    let n = field.len() - 1;
    let s = format!("{:0width$o}", v, width = n);
    field[..n].copy_from_slice(&s.as_bytes()[s.len() - n..]);
    field[n] = 0;
}

fn tar_header(name: &str, size: u64, mtime: i64, dir: bool) -> Result<[u8; BLOCK], String> {
    let mut h = [0u8; BLOCK];
    if size >= 1 << 33 {
        return Err(format!(
            "archive entry `{name}` has {size} bytes, more than ustar holds (8 GiB)"
        ));
    }
    if name.len() > 100 {
        return Err(format!("archive entry name `{name}` longer than 100 bytes"));
    }
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], if dir { 0o755 } else { 0o644 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime.max(0) as u64);
    h[156] = if dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// Writes a ustar archive: one directory, then files, then two zero blocks.
struct TarWriter<W: Write> {
    out: W,
    mtime: i64,
}

impl<W: Write> TarWriter<W> {
    fn dir(&mut self, name: &str) -> Result<(), String> {
        let h = tar_header(&format!("{name}/"), 0, self.mtime, true)?;
        self.out.write_all(&h).map_err(|e| format!("writing the archive: {e}"))
    }

    fn file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<(), String> {
        let h = tar_header(name, size, self.mtime, false)?;
        let err = |e: io::Error| format!("writing {name} into the archive: {e}");
        self.out.write_all(&h).map_err(err)?;
        let copied = io::copy(&mut data.take(size), &mut self.out).map_err(err)?;
        if copied != size {
            return Err(format!("{name} changed size while it was archived"));
        }
        let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
        self.out.write_all(&vec![0u8; pad]).map_err(err)
    }

    fn finish(mut self) -> Result<W, String> {
        self.out.write_all(&[0u8; 2 * BLOCK]).map_err(|e| format!("writing the archive: {e}"))?;
        self.out.flush().map_err(|e| format!("writing the archive: {e}"))?;
        Ok(self.out)
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s: Vec<u8> = field.iter().copied().take_while(|&b| b != 0).collect();
    let s = std::str::from_utf8(&s).ok()?.trim();
    if s.is_empty() || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).ok()
}

// ---------------------------------------------------------------------------------------
// Verification

/// Why a package does not verify: the file at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub file: String,
    pub reason: String,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.reason)
    }
}

impl std::error::Error for VerifyError {}

fn fail(file: impl Into<String>, reason: impl Into<String>) -> VerifyError {
    VerifyError { file: file.into(), reason: reason.into() }
}

/// What a package holds: for each file its SHA-256 and size; the manifest and signature
/// bytes.
#[derive(Default)]
struct Contents {
    files: Vec<(String, String, u64)>,
    manifest: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
}

impl Contents {
    fn add(&mut self, name: &str, r: &mut dyn Read, size: u64) -> Result<(), VerifyError> {
        let io_err = |e: io::Error| fail(name, format!("cannot read: {e}"));
        if self.files.iter().any(|f| f.0 == name)
            || (name == MANIFEST && self.manifest.is_some())
            || (name == SIGNATURE && self.signature.is_some())
        {
            return Err(fail(name, "appears twice in the package"));
        }
        if name == MANIFEST || name == SIGNATURE {
            if size > MAX_SMALL_FILE {
                return Err(fail(name, format!("{size} bytes, more than a manifest may have")));
            }
            let mut b = Vec::with_capacity(size as usize);
            r.take(size).read_to_end(&mut b).map_err(io_err)?;
            if b.len() as u64 != size {
                return Err(fail(name, "truncated"));
            }
            if name == MANIFEST {
                self.manifest = Some(b);
            } else {
                self.signature = Some(b);
            }
            return Ok(());
        }
        let mut h = Sha256::new();
        let n = io::copy(&mut r.take(size), &mut h).map_err(io_err)?;
        if n != size {
            return Err(fail(name, "truncated"));
        }
        self.files.push((name.to_string(), hex::encode(h.finalize()), size));
        Ok(())
    }
}

/// Reads a ustar archive strictly: one top directory, regular files in it, valid header
/// checksums, zero padding, and only zeros after the end marker.
fn read_tar(path: &Path) -> Result<Contents, VerifyError> {
    let archive = path.display().to_string();
    let mut f = File::open(path).map_err(|e| fail(&archive, format!("cannot open: {e}")))?;
    let len = f.metadata().map_err(|e| fail(&archive, e.to_string()))?.len();
    let mut c = Contents::default();
    let mut top: Option<String> = None;
    let mut pos = 0u64;
    let mut entry = 0usize;
    loop {
        let mut h = [0u8; BLOCK];
        if pos + BLOCK as u64 > len {
            return Err(fail(&archive, "ends without the end-of-archive marker"));
        }
        f.read_exact(&mut h).map_err(|e| fail(&archive, format!("cannot read: {e}")))?;
        pos += BLOCK as u64;
        if h.iter().all(|&b| b == 0) {
            // End marker: the rest of the file must be zeros too.
            let mut rest = Vec::new();
            f.read_to_end(&mut rest).map_err(|e| fail(&archive, format!("cannot read: {e}")))?;
            // Exactly the second zero block, as written: nothing may be appended.
            if rest.len() != BLOCK || rest.iter().any(|&b| b != 0) {
                return Err(fail(
                    &archive,
                    "the archive does not end with exactly two zero blocks (bytes were added or removed)",
                ));
            }
            break;
        }
        entry += 1;
        let name = cstr(&h[0..100]).unwrap_or_default();
        let what =
            if name.is_empty() { format!("entry {entry} of the archive") } else { name.clone() };
        let mut hh = h;
        hh[148..156].fill(b' ');
        let sum: u64 = hh.iter().map(|&b| b as u64).sum();
        // The field exactly as written (six octal digits, NUL, space): a changed byte in
        // it is a change too.
        if h[148..156] != *format!("{sum:06o}\0 ").as_bytes() {
            return Err(fail(
                what,
                "archive header checksum does not match (the header was altered)",
            ));
        }
        if &h[257..263] != b"ustar\0" || h[345] != 0 {
            return Err(fail(what, "not a plain ustar header"));
        }
        let size = parse_octal(&h[124..136]).ok_or_else(|| fail(&what, "bad size field"))?;
        if size > len - pos {
            return Err(fail(&what, "claims more bytes than the archive has"));
        }
        let base = match h[156] {
            b'5' => {
                let d = name.trim_end_matches('/').to_string();
                if top.is_some()
                    || size != 0
                    || d.is_empty()
                    || d.contains('/')
                    || d.starts_with('.')
                {
                    return Err(fail(what, "unexpected directory in the package"));
                }
                top = Some(d);
                continue;
            }
            b'0' | 0 => {
                let Some(t) = &top else {
                    return Err(fail(what, "file before the package directory"));
                };
                match name.strip_prefix(&format!("{t}/")) {
                    Some(b) if !b.is_empty() && !b.contains('/') && !b.starts_with('.') => {
                        b.to_string()
                    }
                    _ => return Err(fail(what, "file outside the package directory")),
                }
            }
            other => {
                return Err(fail(
                    what,
                    format!("unsupported archive entry type `{}`", other as char),
                ))
            }
        };
        c.add(&base, &mut f, size)?;
        pos += size;
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let mut p = vec![0u8; pad as usize];
        f.read_exact(&mut p).map_err(|_| fail(&base, "archive ends inside its padding"))?;
        if p.iter().any(|&b| b != 0) {
            return Err(fail(&base, "padding after the file in the archive is not zero"));
        }
        pos += pad;
        f.stream_position().map_err(|e| fail(&archive, e.to_string()))?;
    }
    if top.is_none() {
        return Err(fail(&archive, "empty archive"));
    }
    Ok(c)
}

/// Reads an unpacked package: the directory holding `manifest.json` (or the one directory
/// inside it that does).
fn read_dir(path: &Path) -> Result<Contents, VerifyError> {
    let mut dir = path.to_path_buf();
    if !dir.join(MANIFEST).exists() {
        let subs: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| fail(path.display().to_string(), format!("cannot list: {e}")))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(MANIFEST).is_file())
            .collect();
        if let [one] = subs.as_slice() {
            dir = one.clone();
        }
    }
    let mut c = Contents::default();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| fail(dir.display().to_string(), format!("cannot list: {e}")))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = e.metadata().map_err(|x| fail(&name, x.to_string()))?;
        if !meta.is_file() {
            return Err(fail(&name, "not a regular file"));
        }
        let mut f = File::open(e.path()).map_err(|x| fail(&name, format!("cannot open: {x}")))?;
        c.add(&name, &mut f, meta.len())?;
    }
    Ok(c)
}

/// What a successful verification found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    /// The key the signature was checked with, and whether it came from the manifest
    /// itself (then only comparing its fingerprint with the box's makes it evidence).
    pub key: PublicKey,
    pub key_from_manifest: bool,
}

/// Verifies a package (a `.tar` or an unpacked directory) with `key` (the box's public key;
/// `None`: the key the manifest names, which proves integrity but not origin).
pub fn verify(path: &Path, key: Option<&PublicKey>) -> Result<Verified, VerifyError> {
    let c = if path.is_dir() { read_dir(path)? } else { read_tar(path)? };
    let manifest_bytes = c.manifest.ok_or_else(|| fail(MANIFEST, "missing"))?;
    let sig_text = c.signature.ok_or_else(|| fail(SIGNATURE, "missing"))?;
    let sig = std::str::from_utf8(&sig_text)
        .ok()
        .and_then(|s| B64.decode(s.trim()).ok())
        .filter(|s| s.len() == 64)
        // Exactly as written (one line, canonical base64): no byte may change unnoticed.
        .filter(|s| format!("{}\n", B64.encode(s)).as_bytes() == sig_text.as_slice())
        .ok_or_else(|| {
            fail(SIGNATURE, "not one line of the base64 of a 64-byte Ed25519 signature")
        })?;
    let claimed: Option<PublicKey> = serde_json::from_slice::<serde_json::Value>(&manifest_bytes)
        .ok()
        .and_then(|v| v.get("public_key").and_then(|k| k.as_str()).map(String::from))
        .and_then(|k| PublicKey::parse(&k).ok());
    let (key, from_manifest) = match (key, claimed) {
        (Some(k), _) => (k.clone(), false),
        (None, Some(k)) => (k, true),
        (None, None) => {
            return Err(fail(MANIFEST, "names no usable public key; give one with --key"))
        }
    };
    if !key.verify(&manifest_bytes, &sig) {
        return Err(fail(
            MANIFEST,
            format!(
                "the signature in {SIGNATURE} does not verify with key {} (SHA-256 {}): \
                 {MANIFEST} or {SIGNATURE} was altered, or another key signed it",
                key.public_base64(),
                key.fingerprint()
            ),
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| fail(MANIFEST, format!("signed but not a valid manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(fail(MANIFEST, format!("format `{}`, expected `{FORMAT}`", manifest.format)));
    }
    for want in &manifest.files {
        let Some((_, sha, bytes)) = c.files.iter().find(|f| f.0 == want.name) else {
            return Err(fail(&want.name, "listed in the manifest but missing from the package"));
        };
        if *bytes != want.bytes {
            return Err(fail(
                &want.name,
                format!("{bytes} bytes, the manifest says {}", want.bytes),
            ));
        }
        if *sha != want.sha256 {
            return Err(fail(
                &want.name,
                format!(
                    "SHA-256 {sha} differs from the manifest's {}: the file was altered",
                    want.sha256
                ),
            ));
        }
    }
    if let Some((extra, _, _)) =
        c.files.iter().find(|f| !manifest.files.iter().any(|w| w.name == f.0))
    {
        return Err(fail(extra, "in the package but not listed in the manifest"));
    }
    Ok(Verified { manifest, key, key_from_manifest: from_manifest })
}

// ---------------------------------------------------------------------------------------
// Building

/// One file to put into a package.
pub struct PackageFile {
    pub name: &'static str,
    pub media_type: &'static str,
    pub path: PathBuf,
}

/// Hashes `path`: `(sha256 hex, bytes)`.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let n = io::copy(&mut f, &mut h)?;
    Ok((hex::encode(h.finalize()), n))
}

/// Writes the package to `out`: hashes `files` into `manifest.files`, signs the manifest
/// with `key` and archives manifest, signature and files under `evidence-<package id>/`.
/// Returns the manifest as written.
pub fn write_package(
    mut manifest: Manifest,
    files: &[PackageFile],
    key: &BoxKey,
    out: &Path,
) -> Result<Manifest, String> {
    let public = key.public();
    manifest.signature_algorithm = "ed25519".into();
    manifest.public_key = public.public_base64();
    manifest.key_fingerprint = public.fingerprint();
    manifest.files.clear();
    for f in files {
        let (sha256, bytes) =
            sha256_file(&f.path).map_err(|e| format!("hashing {}: {e}", f.path.display()))?;
        manifest.files.push(FileEntry {
            name: f.name.into(),
            sha256,
            bytes,
            media_type: f.media_type.into(),
        });
    }
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    json.push(b'\n');
    let sig = format!("{}\n", B64.encode(key.sign(&json)));
    let top = format!("evidence-{}", manifest.package_id);
    let file = crate::store::create_private(out)
        .map_err(|e| format!("creating {}: {e}", out.display()))?;
    let mut tar =
        TarWriter { out: io::BufWriter::new(file), mtime: manifest.exported_at.unix_timestamp() };
    tar.dir(&top)?;
    tar.file(&format!("{top}/{MANIFEST}"), json.len() as u64, &mut json.as_slice())?;
    tar.file(&format!("{top}/{SIGNATURE}"), sig.len() as u64, &mut sig.as_bytes())?;
    for (f, entry) in files.iter().zip(&manifest.files) {
        let mut r =
            File::open(&f.path).map_err(|e| format!("opening {}: {e}", f.path.display()))?;
        tar.file(&format!("{top}/{}", f.name), entry.bytes, &mut r)?;
    }
    let w = tar.finish()?;
    let file = w.into_inner().map_err(|e| format!("writing {}: {e}", out.display()))?;
    file.sync_all().map_err(|e| format!("syncing {}: {e}", out.display()))?;
    Ok(manifest)
}

/// A manifest with everything but the files and key, which [`write_package`] fills in.
#[allow(clippy::too_many_arguments)]
pub fn new_manifest(
    box_id: &str,
    camera_id: &str,
    event_id: Option<Uuid>,
    requested: (OffsetDateTime, OffsetDateTime),
    footage: (OffsetDateTime, OffsetDateTime, Option<u64>),
    segments: Vec<SegmentRef>,
    exported_by: String,
    exported_role: Option<String>,
    now: OffsetDateTime,
) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        package_id: Uuid::now_v7(),
        box_id: box_id.into(),
        camera_id: camera_id.into(),
        event_id,
        requested_start: requested.0,
        requested_end: requested.1,
        start: footage.0,
        end: footage.1,
        frames: footage.2,
        clock: ClockState::read(now),
        segments,
        software: Software { name: "gridwatch".into(), version: env!("CARGO_PKG_VERSION").into() },
        exported_by,
        exported_role,
        exported_at: now,
        signature_algorithm: String::new(),
        public_key: String::new(),
        key_fingerprint: String::new(),
        files: vec![],
        masked: false,
    }
}

/// `gridwatch verify PACKAGE [--key KEY]`: prints what was checked; exit 0 when it
/// verifies, 1 (naming the file that fails) when not.
pub fn run_verify(path: &Path, key: Option<&str>) -> std::process::ExitCode {
    let key = match key.map(PublicKey::parse).transpose() {
        Ok(k) => k,
        Err(e) => {
            println!("FAIL --key: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match verify(path, key.as_ref()) {
        Ok(v) => {
            let m = &v.manifest;
            println!("OK {}: signature and {} file(s) verify", path.display(), m.files.len());
            for f in &m.files {
                println!("  ok {} ({} bytes, SHA-256 {})", f.name, f.bytes, f.sha256);
            }
            println!(
                "  box {}, camera {}, {}{} to {} (UTC), exported by {} at {}",
                m.box_id,
                m.camera_id,
                m.event_id.map(|e| format!("event {e}, ")).unwrap_or_default(),
                fmt(m.start),
                fmt(m.end),
                m.exported_by,
                fmt(m.exported_at)
            );
            if m.masked {
                println!(
                    "  masked copy: faces and plates in video.mp4 and snapshot.jpg are filled \
                     (the video was decoded and encoded again); the originals stay on the box"
                );
            }
            if v.key_from_manifest {
                println!(
                    "  WARNING: checked with the key the package names ({}, SHA-256 {}). That \
                     proves the files match the manifest, not who made it: compare the \
                     fingerprint with the box's (`gridwatch check`, GET /api/v1/evidence/key) \
                     or pass --key.",
                    v.key.public_base64(),
                    v.key.fingerprint()
                );
            } else {
                println!("  signed by key SHA-256 {}", v.key.fingerprint());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAIL {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn fmt(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap()
    }

    /// A package of three files (stand-ins for the real ones: the real footage is in
    /// tests/evidence.rs) signed by the key in `dir`.
    fn package(dir: &Path) -> (PathBuf, BoxKey) {
        let key = BoxKey::load_or_create(dir).unwrap();
        let mut files = Vec::new();
        for (name, media_type, len) in [
            ("video.mp4", "video/mp4", 1100usize),
            ("snapshot.jpg", "image/jpeg", 300),
            ("event.json", "application/json", 90),
        ] {
            let path = dir.join(name);
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, data).unwrap();
            files.push(PackageFile { name, media_type, path });
        }
        let m = new_manifest(
            "box-a",
            "gate",
            Some(Uuid::now_v7()),
            (t(0), t(20)),
            (t(1), t(19), Some(180)),
            vec![SegmentRef { start: t(-5), end: t(25), codec: "h264".into(), recovered: false }],
            "user:alice".into(),
            Some("operator".into()),
            t(100),
        );
        let out = dir.join("p.tar");
        let written = write_package(m, &files, &key, &out).unwrap();
        assert_eq!(written.files.len(), 3);
        (out, key)
    }

    /// Unpacks `tar` with the system's tar (an independent reader) into `dir`.
    fn untar(tar: &Path, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(tar)
            .arg("-C")
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success());
        let sub = std::fs::read_dir(dir).unwrap().next().unwrap().unwrap().path();
        assert!(sub.join(MANIFEST).is_file(), "{}", sub.display());
        sub
    }

    #[test]
    fn key_is_made_once_with_mode_0600_and_kept() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(BoxKey::public_of(d.path()).unwrap(), None);
        let k1 = BoxKey::load_or_create(d.path()).unwrap();
        let mode = std::fs::metadata(d.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let k2 = BoxKey::load_or_create(d.path()).unwrap();
        assert_eq!(k1.public(), k2.public());
        assert_eq!(BoxKey::public_of(d.path()).unwrap(), Some(k1.public()));
        let p = k1.public();
        assert_eq!(PublicKey::parse(&p.public_base64()).unwrap(), p);
        assert_eq!(p.fingerprint().len(), 64);
        let sig = k1.sign(b"hello");
        assert!(p.verify(b"hello", &sig) && !p.verify(b"hellp", &sig));
        let other = BoxKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_ne!(other.public(), p);
        assert!(PublicKey::parse("not base64!").is_err());
        assert!(PublicKey::parse(&B64.encode([1u8; 31])).is_err());
    }

    #[test]
    fn a_package_verifies_as_tar_and_unpacked_and_only_with_its_box_key() {
        let d = tempfile::tempdir().unwrap();
        let (tar, key) = package(d.path());
        let v = verify(&tar, Some(&key.public())).unwrap();
        assert!(!v.key_from_manifest);
        assert_eq!(v.manifest.box_id, "box-a");
        assert_eq!(v.manifest.public_key, key.public().public_base64());
        let v = verify(&tar, None).unwrap();
        assert!(v.key_from_manifest);
        let dir = untar(&tar, &d.path().join("x"));
        verify(&dir, Some(&key.public())).unwrap();
        verify(&d.path().join("x"), Some(&key.public())).unwrap();
        // Another box's key: the signature does not verify, and it says so naming the
        // manifest and the key.
        let o = tempfile::tempdir().unwrap();
        let other = BoxKey::load_or_create(o.path()).unwrap().public();
        assert_ne!(other, key.public());
        let e = verify(&tar, Some(&other)).unwrap_err();
        assert_eq!(e.file, MANIFEST, "{e}");
        assert!(e.reason.contains(&other.fingerprint()), "{e}");
        assert!(verify(&dir, Some(&other)).is_err());
    }

    /// The bytes flipped in a file of `len` bytes: every byte of a small file (the manifest,
    /// signature, event, and every tar header block, which sit in the first and last KiB or
    /// at 512-byte boundaries), and for a large one its first and last KiB, each 512-byte
    /// block's first 16 bytes, and every 61st byte in between (a prime stride, so the
    /// offsets inside blocks vary). Flipping all of a video's bytes took a minute in debug.
    fn flip_positions(len: usize) -> Vec<usize> {
        if len <= 4096 {
            return (0..len).collect();
        }
        let mut v: Vec<usize> = (0..1024).chain(len - 1024..len).collect();
        v.extend((0..len).step_by(512).flat_map(|b| b..(b + 16).min(len)));
        v.extend((1024..len - 1024).step_by(61));
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn flipped_bytes_of_every_file_fail_and_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let (tar, key) = package(d.path());
        let dir = untar(&tar, &d.path().join("u"));
        let pk = key.public();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["event.json", "manifest.json", "manifest.sig", "snapshot.jpg", "video.mp4"]
        );
        for name in &names {
            let path = dir.join(name);
            let orig = std::fs::read(&path).unwrap();
            for i in flip_positions(orig.len()) {
                let mut bad = orig.clone();
                bad[i] ^= 0x01;
                std::fs::write(&path, &bad).unwrap();
                let e = verify(&dir, Some(&pk)).expect_err(&format!("{name} byte {i} flipped"));
                let named = if name == SIGNATURE {
                    e.file == SIGNATURE || e.reason.contains(SIGNATURE)
                } else {
                    e.file == *name
                };
                assert!(named, "{name} byte {i}: {e}");
            }
            std::fs::write(&path, &orig).unwrap();
            verify(&dir, Some(&pk)).unwrap();
        }
        // A file dropped or added.
        std::fs::rename(dir.join("snapshot.jpg"), d.path().join("s.jpg")).unwrap();
        assert_eq!(verify(&dir, Some(&pk)).unwrap_err().file, "snapshot.jpg");
        std::fs::rename(d.path().join("s.jpg"), dir.join("snapshot.jpg")).unwrap();
        std::fs::write(dir.join("extra.txt"), b"x").unwrap();
        assert_eq!(verify(&dir, Some(&pk)).unwrap_err().file, "extra.txt");

        // The archive itself: headers, data, padding and the end.
        let orig = std::fs::read(&tar).unwrap();
        let bad_tar = d.path().join("bad.tar");
        for i in flip_positions(orig.len()) {
            let mut bad = orig.clone();
            bad[i] ^= 0x01;
            std::fs::write(&bad_tar, &bad).unwrap();
            let e = verify(&bad_tar, Some(&pk));
            assert!(e.is_err(), "tar byte {i} flipped and it still verifies");
        }
        // Truncated, or with bytes appended.
        std::fs::write(&bad_tar, &orig[..orig.len() - 512]).unwrap();
        assert!(verify(&bad_tar, Some(&pk)).is_err());
        let mut longer = orig.clone();
        longer.extend_from_slice(b"tail");
        std::fs::write(&bad_tar, &longer).unwrap();
        assert!(verify(&bad_tar, Some(&pk)).is_err());
    }

    #[test]
    fn the_clock_state_reads() {
        let c = ClockState::read(t(0));
        assert_eq!(c.source, "system");
        #[cfg(target_os = "linux")]
        assert!(c.synchronized.is_some() && c.max_error_us.is_some(), "{c:?}");
    }
}
