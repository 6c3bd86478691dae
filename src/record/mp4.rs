//! Top-level ISO-BMFF box scanning and crash repair of fragmented MP4 segments.
//!
//! A segment is written by `mp4mux` in fragmented mode: `ftyp`, `moov`, (`uuid`), then one
//! `moof`+`mdat` pair per fragment (about one second each), and a final `mfra` when the file
//! is closed properly. A process killed while writing leaves the same sequence without the
//! `mfra`, possibly ending in a torn box (a header claiming more bytes than the file has) or a
//! `moof` whose `mdat` was never written. [`repair`] cuts such a file after its last complete
//! fragment, which leaves a valid fragmented MP4 that demuxers play to its end.
//!
//! Only top-level box headers are read (a few bytes per box); the payloads are not parsed.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// A four-character box type.
pub type FourCC = [u8; 4];

/// One complete top-level box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: FourCC,
    /// Offset of the box's first byte in the file.
    pub offset: u64,
    /// Total size including the header (8 bytes, or 16 with a 64-bit `largesize`).
    pub size: u64,
}

impl BoxHeader {
    /// Offset just past the box.
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }
    pub fn is(&self, kind: &[u8; 4]) -> bool {
        &self.kind == kind
    }
}

impl fmt::Display for BoxHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` at {} ({} bytes)", fourcc(&self.kind), self.offset, self.size)
    }
}

/// A box type for messages (non-printable bytes as `.`).
pub fn fourcc(k: &FourCC) -> String {
    k.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect()
}

/// The top-level layout of a file: its complete boxes in order and, if the file does not end
/// on a box boundary, why the scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub boxes: Vec<BoxHeader>,
    pub file_len: u64,
    /// Where the complete boxes end (`file_len` when the whole file is boxes).
    pub complete_len: u64,
    /// What follows `complete_len`: a torn box or bytes that are not a box header.
    pub torn: Option<String>,
}

/// Reads the top-level box headers of `len` bytes of `r` (from offset 0).
///
/// A size of 0 means "to the end of the file"; a size of 1 means a 64-bit `largesize`
/// follows the type. A header with an impossible size (2–7, or a `largesize` below 16), a
/// non-printable type, or a size reaching past `len` ends the scan as `torn`.
pub fn scan<R: Read + Seek>(r: &mut R, len: u64) -> io::Result<Scan> {
    let mut boxes = Vec::new();
    let mut pos = 0u64;
    let torn = loop {
        if pos == len {
            break None;
        }
        let left = len - pos;
        if left < 8 {
            break Some(format!("{left} bytes at {pos}: a partial box header"));
        }
        r.seek(SeekFrom::Start(pos))?;
        let mut h = [0u8; 8];
        r.read_exact(&mut h)?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let kind: FourCC = [h[4], h[5], h[6], h[7]];
        if !kind.iter().all(|b| (0x20..0x7f).contains(b)) {
            break Some(format!("no box header at {pos} (type bytes {kind:02x?})"));
        }
        let size = match size32 {
            0 => left,
            1 => {
                if left < 16 {
                    break Some(format!("box `{}` at {pos}: partial 64-bit size", fourcc(&kind)));
                }
                let mut l = [0u8; 8];
                r.read_exact(&mut l)?;
                let large = u64::from_be_bytes(l);
                if large < 16 {
                    break Some(format!(
                        "box `{}` at {pos}: invalid 64-bit size {large}",
                        fourcc(&kind)
                    ));
                }
                large
            }
            2..=7 => {
                break Some(format!("box `{}` at {pos}: invalid size {size32}", fourcc(&kind)))
            }
            s => u64::from(s),
        };
        if size > left {
            break Some(format!(
                "box `{}` at {pos} is torn: {size} bytes, {left} present",
                fourcc(&kind)
            ));
        }
        boxes.push(BoxHeader { kind, offset: pos, size });
        pos += size;
    };
    Ok(Scan { boxes, file_len: len, complete_len: pos, torn })
}

/// Reads the top-level box headers of a file.
pub fn scan_file(path: &Path) -> io::Result<Scan> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    scan(&mut io::BufReader::with_capacity(64, &mut f), len)
}

/// What [`repair`] found (and did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// The file is playable: `new_len` bytes holding `fragments` complete `moof`+`mdat`
    /// pairs after its `ftyp`+`moov` header. If `new_len < original_len` the file was cut
    /// to that length. `finalized`: a complete `mfra` follows the last fragment (the file
    /// was closed properly).
    Playable { original_len: u64, new_len: u64, fragments: u32, finalized: bool },
    /// Nothing playable (no `ftyp`+`moov` header, or no complete fragment). The file is
    /// left as it is; the caller deletes it.
    Unrecoverable { original_len: u64, reason: String },
}

impl Repair {
    /// The file was (or, from [`analyse`], would be) cut.
    pub fn truncated(&self) -> bool {
        matches!(self, Repair::Playable { original_len, new_len, .. } if new_len < original_len)
    }
    pub fn fragments(&self) -> u32 {
        match self {
            Repair::Playable { fragments, .. } => *fragments,
            Repair::Unrecoverable { .. } => 0,
        }
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::Playable { original_len, new_len, fragments, finalized } => {
                write!(f, "{fragments} fragments")?;
                if *finalized {
                    write!(f, ", finalized")?;
                }
                if new_len < original_len {
                    write!(f, ", cut from {original_len} to {new_len} bytes")?;
                }
                Ok(())
            }
            Repair::Unrecoverable { original_len, reason } => {
                write!(f, "unrecoverable ({original_len} bytes): {reason}")
            }
        }
    }
}

/// Decides how a scanned file is repaired (does not touch the file).
///
/// The file must start with `ftyp` and have a `moov` before its first `moof`. After the
/// header, every `moof` directly followed by an `mdat` is a complete fragment; other complete
/// boxes between fragments (`free`, `sidx`, …) are kept. The file is cut at the end of the
/// last complete fragment of that run — or after the `mfra` that directly follows it — so a
/// torn box, a `moof` without its `mdat` and anything after them are dropped.
pub fn analyse(scan: &Scan) -> Repair {
    let original_len = scan.file_len;
    let bad = |reason: String| Repair::Unrecoverable { original_len, reason };
    let boxes = &scan.boxes;
    match boxes.first() {
        Some(b) if b.is(b"ftyp") => {}
        Some(b) => return bad(format!("first box is {b}, not `ftyp`")),
        None => return bad(scan.torn.clone().unwrap_or_else(|| "empty file".into())),
    }
    let Some(moov) = boxes.iter().position(|b| b.is(b"moov")) else {
        return bad("no complete `moov` box".into());
    };
    if let Some(first_moof) = boxes.iter().position(|b| b.is(b"moof")) {
        if first_moof < moov {
            return bad("`moof` before `moov`".into());
        }
    }
    let mut fragments = 0u32;
    let mut cut = None;
    let mut finalized = false;
    let mut i = moov + 1;
    while i < boxes.len() {
        let b = &boxes[i];
        if b.is(b"moof") {
            match boxes.get(i + 1) {
                Some(m) if m.is(b"mdat") => {
                    fragments += 1;
                    cut = Some(m.end());
                    i += 2;
                    continue;
                }
                _ => break, // a fragment whose data never made it
            }
        }
        if b.is(b"mfra") {
            if fragments > 0 && boxes[i - 1].is(b"mdat") {
                finalized = true;
                cut = Some(b.end());
            }
            break;
        }
        if b.is(b"mdat") && fragments > 0 {
            break; // data without its fragment header: not ours to interpret
        }
        i += 1;
    }
    match cut {
        Some(new_len) if fragments > 0 => {
            Repair::Playable { original_len, new_len, fragments, finalized }
        }
        _ => bad(match &scan.torn {
            Some(t) => format!("no complete fragment ({t})"),
            None => "no complete fragment".into(),
        }),
    }
}

/// What [`repair`] would do to `path`, without changing it.
pub fn inspect(path: &Path) -> io::Result<Repair> {
    Ok(analyse(&scan_file(path)?))
}

/// Repairs a fragmented MP4 left by a crash: cuts it after its last complete fragment (see
/// [`analyse`]) and fsyncs it. A complete file is left unchanged. An unrecoverable file is
/// not modified.
pub fn repair(path: &Path) -> io::Result<Repair> {
    let r = inspect(path)?;
    if let Repair::Playable { new_len, .. } = r {
        if r.truncated() {
            let f = OpenOptions::new().write(true).open(path)?;
            f.set_len(new_len)?;
            f.sync_all()?;
        }
    }
    Ok(r)
}

/// Seconds between 1904-01-01 (the MP4 epoch) and 1970-01-01.
const MP4_EPOCH_OFFSET: i64 = 2_082_844_800;

/// Sets `creation_time` (to `created`, UTC) and `modification_time` (to `modified`) of the
/// movie, every track and every media header (`mvhd`, `tkhd`, `mdhd` inside `moov`), in
/// place: the fields have a fixed size, so nothing moves. The muxer writes the time it ran;
/// a clip or export records here the UTC time of its first frame instead (players show it
/// as the file's creation time, e.g. ffprobe's `creation_time`).
pub fn set_times(
    path: &Path,
    created: time::OffsetDateTime,
    modified: time::OffsetDateTime,
) -> io::Result<()> {
    use std::io::Write;
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let s = scan(&mut f, len)?;
    let moov = s.boxes.iter().find(|b| b.is(b"moov")).copied().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "no complete `moov` box to stamp")
    })?;
    if moov.size > 64 << 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "`moov` box over 64 MiB"));
    }
    let mut buf = vec![0u8; moov.size as usize];
    f.seek(SeekFrom::Start(moov.offset))?;
    f.read_exact(&mut buf)?;
    let t = |x: time::OffsetDateTime| (x.unix_timestamp() + MP4_EPOCH_OFFSET).max(0) as u64;
    let n = stamp(&mut buf[8..], t(created), t(modified));
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no `mvhd` in `moov`"));
    }
    f.seek(SeekFrom::Start(moov.offset))?;
    f.write_all(&buf)?;
    Ok(())
}

/// The `creation_time` of the movie header (`moov/mvhd`), UTC.
pub fn creation_time(path: &Path) -> io::Result<Option<time::OffsetDateTime>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let s = scan(&mut f, len)?;
    let Some(moov) = s.boxes.iter().find(|b| b.is(b"moov")).copied() else { return Ok(None) };
    let mut buf = vec![0u8; moov.size.min(64 << 20) as usize];
    f.seek(SeekFrom::Start(moov.offset))?;
    f.read_exact(&mut buf)?;
    let mut at = 8;
    while at + 8 <= buf.len() {
        let size = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if size < 8 || at + size > buf.len() {
            break;
        }
        if &buf[at + 4..at + 8] == b"mvhd" && size >= 20 {
            let b = &buf[at + 8..at + size];
            let secs = if b[0] == 1 && b.len() >= 12 {
                u64::from_be_bytes(b[4..12].try_into().unwrap_or_default()) as i64
            } else {
                u32::from_be_bytes(b[4..8].try_into().unwrap_or_default()) as i64
            };
            return Ok(time::OffsetDateTime::from_unix_timestamp(secs - MP4_EPOCH_OFFSET).ok());
        }
        at += size;
    }
    Ok(None)
}

/// Walks the boxes in `buf` (the payload of a container), descending into `trak` and
/// `mdia`, and writes the times into every `mvhd`, `tkhd` and `mdhd`; returns how many.
fn stamp(buf: &mut [u8], created: u64, modified: u64) -> usize {
    let mut n = 0;
    let mut at = 0;
    while at + 8 <= buf.len() {
        let size = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if size < 8 || at + size > buf.len() {
            break;
        }
        let kind: [u8; 4] = [buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]];
        let body = &mut buf[at + 8..at + size];
        match &kind {
            b"trak" | b"mdia" => n += stamp(body, created, modified),
            b"mvhd" | b"tkhd" | b"mdhd" if !body.is_empty() => {
                // Full box: version (1 byte), flags (3), then the two times: 32-bit in
                // version 0, 64-bit in version 1.
                if body[0] == 1 && body.len() >= 20 {
                    body[4..12].copy_from_slice(&created.to_be_bytes());
                    body[12..20].copy_from_slice(&modified.to_be_bytes());
                    n += 1;
                } else if body[0] == 0 && body.len() >= 12 {
                    let c = u32::try_from(created).unwrap_or(u32::MAX);
                    let m = u32::try_from(modified).unwrap_or(u32::MAX);
                    body[4..8].copy_from_slice(&c.to_be_bytes());
                    body[8..12].copy_from_slice(&m.to_be_bytes());
                    n += 1;
                }
            }
            _ => {}
        }
        at += size;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn bx(kind: &[u8; 4], payload: usize) -> Vec<u8> {
        let mut v = ((payload + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend(std::iter::repeat_n(0xab, payload));
        v
    }

    fn large(kind: &[u8; 4], payload: usize) -> Vec<u8> {
        let mut v = 1u32.to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(&((payload + 16) as u64).to_be_bytes());
        v.extend(std::iter::repeat_n(0xcd, payload));
        v
    }

    /// ftyp, moov, uuid, `n` fragments (moof 100 + mdat 1000), optional mfra.
    fn segment(n: usize, mfra: bool) -> Vec<u8> {
        let mut v = bx(b"ftyp", 24);
        v.extend(bx(b"moov", 900));
        v.extend(bx(b"uuid", 50));
        for _ in 0..n {
            v.extend(bx(b"moof", 100));
            v.extend(bx(b"mdat", 1000));
        }
        if mfra {
            v.extend(bx(b"mfra", 62));
        }
        v
    }

    const HEADER: u64 = 32 + 908 + 58;
    const FRAG: u64 = 108 + 1008;

    fn analyse_bytes(b: &[u8]) -> Repair {
        analyse(&scan(&mut Cursor::new(b), b.len() as u64).unwrap())
    }

    fn playable(original: usize, new: u64, fragments: u32, finalized: bool) -> Repair {
        Repair::Playable { original_len: original as u64, new_len: new, fragments, finalized }
    }

    #[test]
    fn complete_segment_is_left_alone() {
        let b = segment(3, true);
        let s = scan(&mut Cursor::new(&b), b.len() as u64).unwrap();
        assert_eq!(s.torn, None);
        assert_eq!(s.boxes.len(), 3 + 6 + 1);
        assert_eq!(s.complete_len, b.len() as u64);
        let r = analyse(&s);
        assert_eq!(r, playable(b.len(), b.len() as u64, 3, true));
        assert!(!r.truncated());
    }

    #[test]
    fn crash_without_mfra_keeps_every_fragment() {
        let b = segment(3, false);
        assert_eq!(analyse_bytes(&b), playable(b.len(), HEADER + 3 * FRAG, 3, false));
    }

    #[test]
    fn torn_mdat_is_cut() {
        let mut b = segment(2, false);
        let mut last = bx(b"moof", 100);
        last.extend(bx(b"mdat", 1000));
        b.extend_from_slice(&last[..108 + 500]); // half of the third mdat
        let s = scan(&mut Cursor::new(&b), b.len() as u64).unwrap();
        assert!(s.torn.as_deref().unwrap().contains("`mdat`"), "{:?}", s.torn);
        let r = analyse(&s);
        assert_eq!(r, playable(b.len(), HEADER + 2 * FRAG, 2, false));
        assert!(r.truncated());
    }

    #[test]
    fn torn_moof_and_torn_header_are_cut() {
        let base = segment(2, false);
        for tail in [50usize, 3, 7, 8] {
            let mut b = base.clone();
            b.extend_from_slice(&bx(b"moof", 100)[..tail]);
            assert_eq!(
                analyse_bytes(&b),
                playable(b.len(), HEADER + 2 * FRAG, 2, false),
                "tail {tail}"
            );
        }
    }

    #[test]
    fn trailing_moof_without_mdat_is_cut() {
        let mut b = segment(2, false);
        b.extend(bx(b"moof", 100));
        assert_eq!(analyse_bytes(&b), playable(b.len(), HEADER + 2 * FRAG, 2, false));
        // … also when a complete unrelated box follows it.
        b.extend(bx(b"free", 10));
        assert_eq!(analyse_bytes(&b), playable(b.len(), HEADER + 2 * FRAG, 2, false));
    }

    #[test]
    fn torn_mfra_is_cut_and_not_finalized() {
        let mut b = segment(2, false);
        b.extend_from_slice(&bx(b"mfra", 62)[..40]);
        assert_eq!(analyse_bytes(&b), playable(b.len(), HEADER + 2 * FRAG, 2, false));
    }

    #[test]
    fn zero_filled_tail_is_cut() {
        // What delayed allocation can leave after a power cut.
        let mut b = segment(1, false);
        b.extend(std::iter::repeat_n(0u8, 4096));
        let s = scan(&mut Cursor::new(&b), b.len() as u64).unwrap();
        assert!(s.torn.as_deref().unwrap().contains("no box header"), "{:?}", s.torn);
        assert_eq!(analyse(&s), playable(b.len(), HEADER + FRAG, 1, false));
    }

    #[test]
    fn largesize_boxes() {
        let mut b = bx(b"ftyp", 24);
        b.extend(bx(b"moov", 900));
        b.extend(bx(b"moof", 100));
        b.extend(large(b"mdat", 3000));
        b.extend(bx(b"moof", 100));
        let torn_at = b.len();
        b.extend_from_slice(&large(b"mdat", 3000)[..12]); // torn inside the 64-bit size
        let s = scan(&mut Cursor::new(&b), b.len() as u64).unwrap();
        assert_eq!(s.boxes[3], BoxHeader { kind: *b"mdat", offset: 32 + 908 + 108, size: 3016 });
        assert!(s.torn.as_deref().unwrap().contains("partial 64-bit size"), "{:?}", s.torn);
        assert_eq!(s.complete_len, torn_at as u64);
        assert_eq!(analyse(&s), playable(b.len(), 32 + 908 + 108 + 3016, 1, false));
        // A largesize smaller than its own header is not a box.
        let mut bad = bx(b"ftyp", 24);
        bad.extend(1u32.to_be_bytes());
        bad.extend(b"mdat");
        bad.extend(8u64.to_be_bytes());
        let s = scan(&mut Cursor::new(&bad), bad.len() as u64).unwrap();
        assert!(s.torn.as_deref().unwrap().contains("invalid 64-bit size 8"), "{:?}", s.torn);
    }

    #[test]
    fn size_zero_extends_to_the_end() {
        let mut b = segment(1, false);
        b.extend(bx(b"moof", 100));
        b.extend(0u32.to_be_bytes());
        b.extend(b"mdat");
        b.extend([1u8; 500]);
        let s = scan(&mut Cursor::new(&b), b.len() as u64).unwrap();
        assert_eq!(s.torn, None);
        assert_eq!(s.boxes.last().unwrap().size, 508);
        assert_eq!(analyse(&s), playable(b.len(), b.len() as u64, 2, false));
    }

    #[test]
    fn unrecoverable_files() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "empty file"),
            ("header only", segment(0, false), "no complete fragment"),
            (
                "torn first fragment",
                segment(1, false)[..HEADER as usize + 500].to_vec(),
                "no complete fragment",
            ),
            ("torn moov", segment(1, false)[..100].to_vec(), "no complete `moov`"),
            ("no ftyp", segment(1, false)[32..].to_vec(), "not `ftyp`"),
            ("garbage", vec![0u8; 100], "no box header"),
            ("invalid size", [&7u32.to_be_bytes()[..], b"ftyp"].concat(), "invalid size 7"),
        ];
        for (name, b, why) in cases {
            match analyse_bytes(&b) {
                Repair::Unrecoverable { original_len, reason } => {
                    assert_eq!(original_len, b.len() as u64, "{name}");
                    assert!(reason.contains(why), "{name}: {reason}");
                }
                r => panic!("{name}: {r:?}"),
            }
        }
        let mut moof_first = bx(b"ftyp", 24);
        moof_first.extend(bx(b"moof", 10));
        moof_first.extend(bx(b"mdat", 10));
        moof_first.extend(bx(b"moov", 10));
        assert!(matches!(analyse_bytes(&moof_first), Repair::Unrecoverable { .. }));
    }

    #[test]
    fn repair_cuts_the_file_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("1-00000.mp4");
        let mut b = segment(4, false);
        b.extend_from_slice(&bx(b"moof", 100)[..60]);
        std::fs::write(&p, &b).unwrap();
        let r = repair(&p).unwrap();
        assert_eq!(r, playable(b.len(), HEADER + 4 * FRAG, 4, false));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), HEADER + 4 * FRAG);
        assert_eq!(std::fs::read(&p).unwrap(), b[..(HEADER + 4 * FRAG) as usize]);
        let again = repair(&p).unwrap();
        assert_eq!(again, playable((HEADER + 4 * FRAG) as usize, HEADER + 4 * FRAG, 4, false));
        assert!(!again.truncated());
        // Unrecoverable files are not touched.
        std::fs::write(&p, &b[..200]).unwrap();
        assert!(matches!(repair(&p).unwrap(), Repair::Unrecoverable { .. }));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 200);
        assert_eq!(
            repair(&dir.path().join("missing.mp4")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
