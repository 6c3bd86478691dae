//! Bounded, seeded fuzzing of the parsers that read untrusted bytes (docs/security.md
//! "Fuzzing and schema testing"). Each target starts from its committed corpus in
//! `tests/fuzz-corpus/<target>/` (real inputs: the documented config, the shipped model
//! manifests, real `Range` headers, a real fragmented MP4 from the recorder's muxer, real
//! signed webhook deliveries), checks every seed as it is, then checks mutations of them
//! (bit flips, byte edits, insertions of the target's tokens, deletions, splices,
//! truncations, extreme numbers) until a case count or a time budget runs out. A check asserts
//! no panic and the target's properties (a clean error naming a field, a consistent result).
//!
//! Bounds: `GRIDWATCH_FUZZ_SECS` seconds per target (default 4) and `GRIDWATCH_FUZZ_CASES`
//! cases per target (default 20000), whichever ends first; `GRIDWATCH_FUZZ_SEED` (default a
//! fixed seed, so `make test` is repeatable). A failing input is written to
//! `target/fuzz-failures/<target>/` and named in the panic: add it to the corpus as a
//! regression seed once fixed. `make fuzz` runs longer with a random seed.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gridwatch::api::{parse_range, ByteRange};
use gridwatch::config::Config;
use gridwatch::infer::manifest::ModelManifest;
use gridwatch::record::mp4;
use gridwatch::uplink::signing::{self, VerifyError};

// ---------------------------------------------------------------------------------------
// The harness

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Numbers at the edges of the types the parsers convert to.
const EXTREME_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "-0",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "-inf",
    "0.0",
    "1e-320",
    "255",
    "256",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
];

/// One to four mutations of `input`; `others` are the target's seeds (for splicing), `dict`
/// its tokens.
fn mutate(rng: &mut Rng, input: &[u8], others: &[(String, Vec<u8>)], dict: &[&[u8]]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                const B: &[u8] = b"\0\xff\x7f\x80\"'=\n[]{}-,.#\\ 0123456789";
                v[i] = if rng.chance(2) { B[rng.below(B.len())] } else { rng.next() as u8 };
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let max = if rng.chance(4) { 4096 } else { 16 };
                let n = 1 + rng.below((len - i).min(max));
                v.drain(i..i + n);
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            4 | 5 if !dict.is_empty() => {
                let i = rng.below(len + 1);
                let t = dict[rng.below(dict.len())];
                v.splice(i..i, t.iter().copied());
            }
            6 if len > 1 => {
                let a = rng.below(len);
                let n = 1 + rng.below((len - a).min(64));
                let chunk = v[a..a + n].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, chunk);
            }
            7 if !others.is_empty() => {
                let other = &others[rng.below(others.len())].1;
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            8 if len > 0 => v.truncate(rng.below(len)),
            _ => {
                // Replace a run of ASCII digits with an extreme number.
                let digits: Vec<usize> = (0..len).filter(|&i| v[i].is_ascii_digit()).collect();
                if digits.is_empty() {
                    continue;
                }
                let mut a = digits[rng.below(digits.len())];
                while a > 0 && (v[a - 1].is_ascii_digit() || v[a - 1] == b'.') {
                    a -= 1;
                }
                let mut b = a;
                while b < len && (v[b].is_ascii_digit() || v[b] == b'.') {
                    b += 1;
                }
                let n = EXTREME_NUMBERS[rng.below(EXTREME_NUMBERS.len())];
                v.splice(a..b, n.bytes());
            }
        }
    }
    v
}

/// Checks every seed of `target`, then mutations of them within the bounds. `check` gets
/// the input and the case's rng (for side values), and returns Err to report a broken
/// property; a panic is caught and reported the same way, with the input saved.
fn fuzz(
    target: &str,
    dict: &[&[u8]],
    mut check: impl FnMut(&[u8], &mut Rng) -> Result<(), String>,
) {
    let seeds = corpus(target);
    let secs = env_u64("GRIDWATCH_FUZZ_SECS", 4);
    let max_cases = env_u64("GRIDWATCH_FUZZ_CASES", 20_000);
    let seed = env_u64("GRIDWATCH_FUZZ_SEED", 0x6772_6964_7761_7463) | 1;
    let mut rng = Rng(seed ^ target.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b)));
    let mut run = |input: &[u8], rng: &mut Rng, what: &str| {
        let r = catch_unwind(AssertUnwindSafe(|| check(input, rng)));
        let why = match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(p) => format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures").join(target);
        let _ = std::fs::create_dir_all(&dir);
        let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let path = dir.join(format!("{hash:016x}"));
        let _ = std::fs::write(&path, input);
        panic!(
            "fuzz target `{target}`, {what} (GRIDWATCH_FUZZ_SEED={seed}): {why}\ninput saved as {}\ninput: {:?}",
            path.display(),
            String::from_utf8_lossy(&input[..input.len().min(2000)])
        );
    };
    for (name, bytes) in &seeds {
        run(bytes, &mut rng, &format!("seed {name}"));
    }
    let start = Instant::now();
    let budget = Duration::from_secs(secs);
    let mut cases = 0u64;
    // The input mutated last, mutated further now and then (stacked mutations reach deeper).
    let mut last: Option<Vec<u8>> = None;
    while cases < max_cases && start.elapsed() < budget {
        let base = match &last {
            Some(l) if rng.chance(3) => l.clone(),
            _ => seeds[rng.below(seeds.len())].1.clone(),
        };
        let input = mutate(&mut rng, &base, &seeds, dict);
        run(&input, &mut rng, &format!("case {cases}"));
        last = Some(input);
        cases += 1;
    }
    eprintln!(
        "fuzz {target}: {} seeds, {cases} mutated cases in {:.1} s, no failure",
        seeds.len(),
        start.elapsed().as_secs_f64()
    );
}

fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

/// A message that names what is wrong: a TOML syntax error (with its line and column), or
/// one that names a field (`field \`...\``) as every validation message does.
fn clean_error(msg: &str) -> Result<(), String> {
    if msg.trim().is_empty() {
        return Err("empty error message".into());
    }
    if msg.starts_with("TOML parse error") || msg.contains("field `") {
        return Ok(());
    }
    Err(format!("error names no field and is no TOML syntax error: {msg}"))
}

// ---------------------------------------------------------------------------------------
// The targets

#[test]
fn fuzz_config_parse() {
    let base = tempfile::tempdir().unwrap();
    let dict: &[&[u8]] = &[
        b"[[cameras]]\n",
        b"[[cameras.rules]]\n",
        b"[[cameras.zones]]\n",
        b"[[cameras.lines]]\n",
        b"[api]\n",
        b"[storage]\n",
        b"[uplink]\n",
        b"[[uplink.webhooks]]\n",
        b"[[uplink.mqtt]]\n",
        b"id = \"x\"\n",
        b"url = \"rtsp://u:p@h/x\"\n",
        b"kind = \"presence\"\n",
        b"points = [[0.0, 0.0], [1.0, 1.0]]\n",
        b"\"\"\"",
        b"\\u0000",
        b"= []",
        b"= {}",
        b"= true",
        b"1979-05-27T07:32:00Z",
    ];
    fuzz("config", dict, |input, _| match Config::parse(&text(input), base.path()) {
        Ok(cfg) => {
            // A config that parses validates again unchanged (what `gridwatch check` does).
            if cfg.box_id.trim().is_empty() {
                return Err("accepted an empty box_id".into());
            }
            Ok(())
        }
        Err(msg) => clean_error(&msg),
    });
}

#[test]
fn fuzz_model_manifest_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/nanodet-g-coco-320");
    let dict: &[&[u8]] = &[
        b"[input]\n",
        b"[output]\n",
        b"kind = \"nanodet\"\n",
        b"kind = \"yolov8\"\n",
        b"kind = \"movenet\"\n",
        b"size = [0, 0]\n",
        b"mean = [",
        b"std = [0.0, 0.0, 0.0]\n",
        b"strides = []\n",
        b"file = \"../../../etc/passwd\"\n",
        b"sha256 = \"\"\n",
        b"\"\"\"",
        b"= []",
    ];
    fuzz("manifest", dict, |input, _| match ModelManifest::parse(&text(input), &dir) {
        Ok(m) => {
            if m.name.trim().is_empty() {
                return Err("accepted an empty name".into());
            }
            Ok(())
        }
        Err(msg) => clean_error(&msg),
    });
}

#[test]
fn fuzz_range_header() {
    let dict: &[&[u8]] = &[b"bytes=", b"-", b",", b" ", b"=", b"18446744073709551615", b"+1"];
    fuzz("range", dict, |input, rng| {
        let header = text(input);
        let totals = [0, 1, 2, 100, 72_425, u64::MAX - 1, u64::MAX, rng.next()];
        let total = totals[rng.below(totals.len())];
        match parse_range(Some(&header), total) {
            ByteRange::Partial { start, end } => {
                if !(start <= end && end < total) {
                    return Err(format!("Partial {start}..={end} outside a file of {total} bytes"));
                }
                // The length a 206 sends, computed as the handler does, cannot overflow.
                if (end - start).checked_add(1).is_none() {
                    return Err(format!("length of {start}..={end} overflows"));
                }
                // A plain `bytes=a-b` is served exactly as asked, capped at the end.
                if let Some((a, b)) = header.strip_prefix("bytes=").and_then(|s| s.split_once('-'))
                {
                    if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                        if a.to_string() == header[6..6 + a.to_string().len()]
                            && (start, end) != (a, b.min(total - 1))
                        {
                            return Err(format!("bytes={a}-{b} served as {start}..={end}"));
                        }
                    }
                }
                Ok(())
            }
            ByteRange::Full | ByteRange::Unsatisfiable => Ok(()),
        }
    });
    assert_eq!(parse_range(None, 10), ByteRange::Full);
}

/// Checks what the scan and the repair decision say about `bytes` against each other, and
/// that cutting where the decision says gives a file that scans whole and repairs to itself.
fn check_mp4(bytes: &[u8]) -> Result<(), String> {
    let len = bytes.len() as u64;
    let scan = mp4::scan(&mut Cursor::new(bytes), len).map_err(|e| format!("scan: {e}"))?;
    let mut pos = 0;
    for b in &scan.boxes {
        if b.offset != pos || b.size < 8 || b.end() > len {
            return Err(format!("box {b} does not follow at {pos} within {len} bytes"));
        }
        pos = b.end();
    }
    if pos != scan.complete_len || scan.complete_len > len {
        return Err(format!("complete_len {} but boxes end at {pos}", scan.complete_len));
    }
    if scan.torn.is_none() != (scan.complete_len == len) {
        return Err(format!("torn {:?} with {} of {len} bytes complete", scan.torn, pos));
    }
    match mp4::analyse(&scan) {
        mp4::Repair::Playable { original_len, new_len, fragments, finalized } => {
            if original_len != len || new_len > len || fragments == 0 {
                return Err(format!("Playable {original_len} -> {new_len} ({fragments}) of {len}"));
            }
            if !scan.boxes.iter().any(|b| b.end() == new_len) {
                return Err(format!("cut at {new_len}, not at the end of a box"));
            }
            let cut = &bytes[..new_len as usize];
            let again = mp4::scan(&mut Cursor::new(cut), new_len).map_err(|e| e.to_string())?;
            match mp4::analyse(&again) {
                mp4::Repair::Playable { new_len: l2, fragments: f2, finalized: z2, .. }
                    if l2 == new_len
                        && f2 == fragments
                        && z2 == finalized
                        && again.torn.is_none() =>
                {
                    Ok(())
                }
                other => Err(format!("repaired file ({new_len} bytes) analyses as {other}")),
            }
        }
        mp4::Repair::Unrecoverable { original_len, reason } => {
            if original_len != len || reason.is_empty() {
                return Err(format!("Unrecoverable {original_len} of {len}: `{reason}`"));
            }
            Ok(())
        }
    }
}

#[test]
fn fuzz_mp4_scan_and_repair() {
    let dict: &[&[u8]] = &[
        b"\0\0\0\0moof",
        b"\0\0\0\x08mdat",
        b"\0\0\0\x01mdat\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\0\0\0\x01moof\0\0\0\0\0\0\0\x0f",
        b"\0\0\0\x07free",
        b"\0\0\0\x10mfra\0\0\0\x08mfro",
        b"\xff\xff\xff\xffmdat",
        b"\0\0\0\x08ftyp",
        b"\0\0\0\x08moov",
    ];
    fuzz("mp4", dict, |input, _| check_mp4(input));
}

/// The recovery path itself (repair on disk, the GStreamer probe, the index) on truncated and
/// garbled copies of the real segment: a handful of cases, since each one demuxes.
#[test]
fn fuzz_mp4_recover_file() {
    use gridwatch::record::reconcile::{recover_file, Recovery};
    use gridwatch::store::Store;
    let seeds = corpus("mp4");
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    let dir = data.path().join("recordings/cam");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(env_u64("GRIDWATCH_FUZZ_SEED", 0x6772_6964_7761_7463) | 1);
    let cases = env_u64("GRIDWATCH_FUZZ_RECOVER_CASES", 48);
    let start = Instant::now();
    let (mut indexed, mut dropped) = (0, 0);
    for case in 0..cases {
        let seed = &seeds[rng.below(seeds.len())].1;
        // Half truncations (a crash mid-write), half garbling (disk or copy damage).
        let bytes = if case % 2 == 0 {
            seed[..rng.below(seed.len() + 1)].to_vec()
        } else {
            mutate(&mut rng, seed, &seeds, &[])
        };
        let path = dir.join(format!("{}-{case}.mp4", 1_796_000_000_000u64 + case * 2000));
        std::fs::write(&path, &bytes).unwrap();
        let what = format!("case {case} ({} bytes)", bytes.len());
        let r = catch_unwind(AssertUnwindSafe(|| recover_file(&store, "cam", &path)))
            .unwrap_or_else(|_| panic!("recover_file panicked on {what}"))
            .unwrap_or_else(|e| panic!("recover_file: database error on {what}: {e}"));
        match &r {
            Recovery::Indexed { frames, .. } => {
                indexed += 1;
                assert!(*frames > 0, "{what}: indexed with no frames");
                let left = std::fs::read(&path).unwrap();
                check_mp4(&left).unwrap_or_else(|e| panic!("{what}: indexed file: {e}"));
                assert!(
                    matches!(mp4::analyse(&mp4::scan_file(&path).unwrap()), mp4::Repair::Playable { new_len, original_len, .. } if new_len == original_len),
                    "{what}: indexed file still needs a repair"
                );
            }
            Recovery::Dropped { .. } => {
                dropped += 1;
                assert!(!path.exists(), "{what}: dropped but still there");
            }
            Recovery::Skipped { reason } => panic!("{what}: skipped: {reason}"),
            Recovery::AlreadyIndexed => panic!("{what}: a new file counted as indexed"),
        }
    }
    eprintln!(
        "fuzz mp4 recover_file: {cases} cases ({indexed} indexed, {dropped} dropped) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // Both outcomes were exercised (the seed's fragments survive most truncations).
    assert!(indexed > 0 && dropped > 0, "{indexed} indexed, {dropped} dropped");
}

/// A delivery as stored in the corpus: `name: value` lines (`secret`, `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`), a blank line, the body. Missing parts are empty.
struct Delivery {
    secret: String,
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

fn delivery(input: &[u8]) -> Delivery {
    let split = input.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&input[..i], input[i + 2..].to_vec()),
        None => (input, Vec::new()),
    };
    let head = text(head);
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
            .unwrap_or("")
            .to_string()
    };
    Delivery {
        secret: field("secret"),
        id: field("webhook-id"),
        timestamp: field("webhook-timestamp"),
        signature: field("webhook-signature"),
        body,
    }
}

#[test]
fn fuzz_webhook_verify() {
    // Every seed but the regressions (inputs that once failed) is a real signed delivery:
    // it verifies as it is.
    for (name, bytes) in corpus("envelope") {
        if name.starts_with("regression-") {
            continue;
        }
        let d = delivery(&bytes);
        let ts: i64 = d.timestamp.parse().unwrap();
        let r = signing::verify(&d.secret, &d.id, &d.timestamp, &d.signature, &d.body, ts, 300);
        assert_eq!(r, Ok(()), "seed {name} does not verify");
    }
    let dict: &[&[u8]] = &[b" v1,", b"v1,", b"whsec_", b"=", b"+", b"-", b"\n\n", b" "];
    fuzz("envelope", dict, |input, rng| {
        let d = delivery(input);
        let parsed: Option<i64> = d.timestamp.trim().parse().ok();
        // The receiver's clock: mostly within tolerance of the timestamp, sometimes far off.
        let now = match parsed {
            Some(ts) if !rng.chance(8) => ts.saturating_add(rng.below(601) as i64 - 300),
            _ => rng.next() as i64,
        };
        let r = signing::verify(&d.secret, &d.id, &d.timestamp, &d.signature, &d.body, now, 300);
        match r {
            Ok(()) => {
                // Ok only for a genuine signature of exactly this id, timestamp and body.
                let key = signing::key_bytes(&d.secret).map_err(|e| format!("Ok with {e}"))?;
                let ts = parsed.ok_or("Ok with an unparsable timestamp")?;
                let want = signing::sign(&key, &d.id, ts, &d.body);
                if !d.signature.split_whitespace().any(|s| s == want) {
                    return Err(format!("Ok, but no signature in `{}` is {want}", d.signature));
                }
                if now.abs_diff(ts) > 300 {
                    return Err(format!("Ok {} s away from now", now.abs_diff(ts)));
                }
                Ok(())
            }
            Err(VerifyError::Stale { skew_secs, .. }) => match parsed {
                Some(ts) if skew_secs.unsigned_abs() > 300 && now.abs_diff(ts) > 300 => Ok(()),
                _ => Err(format!("Stale ({skew_secs} s) for `{}` at {now}", d.timestamp)),
            },
            Err(VerifyError::BadTimestamp(_)) if parsed.is_none() => Ok(()),
            Err(VerifyError::Secret(m)) if !m.is_empty() => Ok(()),
            Err(VerifyError::BadSignature) => Ok(()),
            Err(e) => Err(format!("unexpected {e:?}")),
        }
    });
}

/// The public key that signed `tests/fuzz-corpus/evidence/small.tar` (its private half was
/// thrown away).
const EVIDENCE_SEED_KEY: &str = "MS2oJMM3vYlP/9hnxoGsjzrk8ny58eh/OlYXQVrzDTM=";

#[test]
fn fuzz_evidence_package() {
    use gridwatch::evidence::{verify, PublicKey};
    let key = PublicKey::parse(EVIDENCE_SEED_KEY).unwrap();
    let seeds: Vec<Vec<u8>> = corpus("evidence").into_iter().map(|(_, b)| b).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.tar");
    let dict: &[&[u8]] = &[
        b"ustar\0",
        b"00000000000\0",
        b"77777777777\0",
        b"evidence-x/",
        b"../",
        b"manifest.json",
        b"manifest.sig",
        b"\"sha256\": \"",
        &[0u8; 512],
    ];
    fuzz("evidence", dict, |input, _| {
        std::fs::write(&path, input).map_err(|e| e.to_string())?;
        match verify(&path, Some(&key)) {
            Ok(_) if seeds.iter().any(|s| s == input) => Ok(()),
            Ok(_) => Err("a changed package verified".into()),
            Err(e) if seeds.iter().any(|s| s == input) => Err(format!("a seed failed: {e}")),
            Err(e) if e.file.is_empty() || e.reason.is_empty() => {
                Err(format!("a failure that names no file: {e:?}"))
            }
            Err(_) => Ok(()),
        }
    });
}
