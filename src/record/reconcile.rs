//! Start-up reconciliation of the media files with the index, run before any camera
//! records (nothing writes the files meanwhile).
//!
//! * A segment file the index does not know (the process died before indexing it, or while
//!   writing it) is cut after its last complete fragment ([`mp4::repair`]) and demuxed
//!   ([`probe::probe`]); if it holds frames it is fsynced and indexed with `recovered = 1`,
//!   otherwise deleted.
//! * An index row whose file is gone is deleted.
//! * In `clips/`: leftovers of interrupted clip writes (`*.tmp`) and clip files no row
//!   references are deleted; clip rows whose file is gone are deleted.
//! * Empty day directories are removed.
//!
//! After it, every index row points at a playable file and every segment file is indexed.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::fsync::sync_file_and_dir;
use super::mp4;
use super::probe::{self, ProbeError};
use crate::store::recordings::{NewSegment, CLIPS_DIR};
use crate::store::{Store, StoreError};

/// What one reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Unindexed segment files that were indexed (`recovered`).
    pub indexed: usize,
    /// … of which were cut after their last complete fragment first.
    pub repaired: usize,
    /// Unindexed segment files deleted: no complete fragment or no playable frame.
    pub dropped: usize,
    /// Bytes of the dropped files and of the parts cut off repaired ones.
    pub dropped_bytes: u64,
    /// Unindexed files left in place because they could not be judged (I/O error, GStreamer
    /// unusable); the next start-up tries again.
    pub skipped: usize,
    /// Segment rows whose file was missing (deleted).
    pub missing_rows: usize,
    /// Files deleted from `clips/`: `*.tmp` leftovers and clips no row references.
    pub clips_removed: usize,
    /// Clip rows whose file was missing (deleted).
    pub missing_clip_rows: usize,
    /// Empty day directories removed.
    pub dirs_removed: usize,
}

impl ReconcileReport {
    /// Nothing was changed.
    pub fn is_noop(&self) -> bool {
        *self == ReconcileReport { skipped: self.skipped, ..Default::default() }
    }
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "indexed {} recovered segments ({} repaired), dropped {} unplayable ({} bytes), skipped {}, \
             removed {} rows of missing segments, {} stray clip files, {} rows of missing clips, {} empty dirs",
            self.indexed,
            self.repaired,
            self.dropped,
            self.dropped_bytes,
            self.skipped,
            self.missing_rows,
            self.clips_removed,
            self.missing_clip_rows,
            self.dirs_removed
        )
    }
}

/// Reconciles the data dir with the index (see the module docs). Database errors abort it;
/// file errors are logged and counted, never fatal.
pub fn reconcile(store: &Store) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();
    drop_missing_segment_rows(store, &mut report)?;
    index_unindexed_segments(store, &mut report)?;
    reconcile_clips(store, &mut report)?;
    if report.is_noop() {
        tracing::info!("reconcile: media files and index agree");
    } else {
        tracing::info!("reconcile: {report}");
    }
    Ok(report)
}

fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn drop_missing_segment_rows(
    store: &Store,
    report: &mut ReconcileReport,
) -> Result<(), StoreError> {
    const PAGE: usize = 1000;
    let mut cursor = None;
    loop {
        let page = store.segment_files(None, None, cursor, PAGE)?;
        let Some(last) = page.last() else { break };
        cursor = Some((last.start_ms, last.id));
        for seg in &page {
            let missing = match store.media_path(&seg.path) {
                Ok(abs) => match exists(&abs) {
                    Ok(e) => !e,
                    Err(e) => {
                        tracing::warn!(path = %abs.display(), "cannot check segment file: {e}");
                        false
                    }
                },
                Err(e) => {
                    tracing::warn!(id = seg.id, "segment row with a bad path: {e}");
                    true
                }
            };
            if missing && store.delete_segment_row(seg.id)? {
                tracing::warn!(camera = %seg.camera_id, id = seg.id, path = %seg.path, "segment file missing; index row deleted");
                report.missing_rows += 1;
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    Ok(())
}

/// Sub-directories of `dir` (sorted); a missing `dir` has none.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return vec![],
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "cannot list directory: {e}");
            return vec![];
        }
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn index_unindexed_segments(store: &Store, report: &mut ReconcileReport) -> Result<(), StoreError> {
    let indexed = store.segment_paths()?;
    for cam_dir in subdirs(&store.recordings_dir()) {
        let Some(camera) = cam_dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            tracing::warn!(dir = %cam_dir.display(), "recordings directory with a non-UTF-8 name; ignored");
            continue;
        };
        for day_dir in subdirs(&cam_dir) {
            let mut files: Vec<PathBuf> = match fs::read_dir(&day_dir) {
                Ok(e) => e
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
                    .collect(),
                Err(e) => {
                    tracing::warn!(dir = %day_dir.display(), "cannot list directory: {e}");
                    continue;
                }
            };
            files.sort();
            for path in files {
                let known =
                    store.relative_media_path(&path).is_some_and(|rel| indexed.contains(&rel));
                if !known {
                    recover(store, &camera, &path, report)?;
                }
            }
            if fs::remove_dir(&day_dir).is_ok() {
                report.dirs_removed += 1; // it was empty
            }
        }
    }
    Ok(())
}

/// What [`recover_file`] did with one unindexed segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Indexed (`recovered = 1`) as segment `id`, after cutting `cut_bytes` of torn tail.
    Indexed { id: i64, frames: u64, duration_ns: u64, cut_bytes: u64 },
    /// Deleted: no complete fragment or no playable frame.
    Dropped { bytes: u64, reason: String },
    /// Left as it is: it could not be judged (I/O error, GStreamer unusable).
    Skipped { reason: String },
    /// The file is indexed already; nothing was done.
    AlreadyIndexed,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Indexed { id, frames, duration_ns, cut_bytes } => {
                write!(
                    f,
                    "indexed as segment {id} ({frames} frames, {:.1} s",
                    *duration_ns as f64 / 1e9
                )?;
                if *cut_bytes > 0 {
                    write!(f, ", {cut_bytes} bytes of torn tail cut")?;
                }
                write!(f, ")")
            }
            Recovery::Dropped { bytes, reason } => write!(f, "deleted ({bytes} bytes): {reason}"),
            Recovery::Skipped { reason } => write!(f, "left in place: {reason}"),
            Recovery::AlreadyIndexed => write!(f, "already indexed"),
        }
    }
}

fn drop_file(path: &Path, bytes: u64, reason: String) -> Recovery {
    match fs::remove_file(path) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), bytes, "unplayable segment deleted: {reason}");
            Recovery::Dropped { bytes, reason }
        }
        Err(e) => {
            tracing::error!(path = %path.display(), "cannot delete unplayable segment ({reason}): {e}");
            Recovery::Skipped { reason: format!("{reason}; cannot delete it: {e}") }
        }
    }
}

fn skip(path: &Path, reason: String) -> Recovery {
    tracing::error!(path = %path.display(), "segment left unindexed: {reason}");
    Recovery::Skipped { reason }
}

/// Repairs, probes and indexes (or deletes) one segment file of `camera_id` that the index
/// does not know: at start-up for every such file, and during operation for a segment a
/// pipeline abandoned without finalising it. The file is cut after its last complete
/// fragment ([`mp4::repair`]); if it then holds frames it is fsynced (file and directory)
/// and indexed with `recovered = 1` — start from its name `<start_unix_ms>-<n>.mp4`
/// (otherwise its mtime minus its duration), end = start + duration, codec and frame count
/// from [`probe::probe`]; otherwise it is deleted. Only database errors are returned.
pub fn recover_file(store: &Store, camera_id: &str, path: &Path) -> Result<Recovery, StoreError> {
    let Some(rel) = store.relative_media_path(path) else {
        return Ok(skip(path, "not a UTF-8 path inside the data dir".into()));
    };
    if store.segment_id_by_path(&rel)?.is_some() {
        return Ok(Recovery::AlreadyIndexed);
    }
    let repair = match mp4::repair(path) {
        Ok(r) => r,
        Err(e) => return Ok(skip(path, format!("cannot repair: {e}"))),
    };
    let (original_len, new_len) = match &repair {
        mp4::Repair::Unrecoverable { original_len, reason } => {
            return Ok(drop_file(path, *original_len, reason.clone()))
        }
        mp4::Repair::Playable { original_len, new_len, .. } => (*original_len, *new_len),
    };
    let info = match probe::probe(path) {
        Ok(i) if i.frames > 0 => i,
        Ok(_) => return Ok(drop_file(path, new_len, "no frames".into())),
        Err(e @ ProbeError::Setup(_)) => return Ok(skip(path, format!("cannot probe: {e}"))),
        Err(e) => return Ok(drop_file(path, new_len, e.to_string())),
    };
    let bytes = match sync_file_and_dir(path) {
        Ok(b) => b,
        Err(e) => return Ok(skip(path, format!("cannot fsync: {e}"))),
    };
    let duration = time::Duration::nanoseconds(i64::try_from(info.duration_ns).unwrap_or(i64::MAX));
    let start = match start_from_name(path) {
        Some(t) => t,
        None => match fs::metadata(path).and_then(|m| m.modified()) {
            Ok(m) => OffsetDateTime::from(m) - duration,
            Err(e) => {
                return Ok(skip(path, format!("no start time in its name and no mtime: {e}")))
            }
        },
    };
    let row = NewSegment {
        camera_id: camera_id.to_string(),
        path: rel,
        start,
        end: start + duration,
        start_pts_ns: None,
        end_pts_ns: None,
        bytes,
        codec: info.codec.clone(),
        frames: Some(info.frames),
        recovered: true,
    };
    let id = store.insert_segment(&row)?;
    let r = Recovery::Indexed {
        id,
        frames: info.frames,
        duration_ns: info.duration_ns,
        cut_bytes: original_len.saturating_sub(new_len),
    };
    tracing::info!(camera = camera_id, path = %row.path, "recovered segment: {r} ({repair})");
    Ok(r)
}

/// Recovers one unindexed file found at start-up and counts the outcome.
fn recover(
    store: &Store,
    camera: &str,
    path: &Path,
    report: &mut ReconcileReport,
) -> Result<(), StoreError> {
    match recover_file(store, camera, path)? {
        Recovery::Indexed { cut_bytes, .. } => {
            report.indexed += 1;
            if cut_bytes > 0 {
                report.repaired += 1;
                report.dropped_bytes += cut_bytes;
            }
        }
        Recovery::Dropped { bytes, .. } => {
            report.dropped += 1;
            report.dropped_bytes += bytes;
        }
        Recovery::Skipped { .. } => report.skipped += 1,
        Recovery::AlreadyIndexed => {}
    }
    Ok(())
}

/// The start time in a segment's name: `<start_unix_ms>-<n>.mp4`.
pub fn start_from_name(path: &Path) -> Option<OffsetDateTime> {
    let stem = path.file_stem()?.to_str()?;
    let ms: i64 = stem.split('-').next()?.parse().ok()?;
    crate::store::from_ms(ms).ok()
}

fn reconcile_clips(store: &Store, report: &mut ReconcileReport) -> Result<(), StoreError> {
    let rows = store.clip_files()?;
    let mut referenced = HashSet::new();
    for (event_id, rel) in rows {
        let present = match store.media_path(&rel) {
            Ok(abs) => exists(&abs).unwrap_or_else(|e| {
                tracing::warn!(path = %abs.display(), "cannot check clip file: {e}");
                true
            }),
            Err(_) => false,
        };
        if present {
            referenced.insert(rel);
        } else if store.delete_clip_row_by_key(&event_id)? {
            tracing::warn!(event = %event_id, path = %rel, "clip file missing; clip row deleted");
            report.missing_clip_rows += 1;
        }
    }
    let dir = store.clips_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "cannot list clips: {e}");
            return Ok(());
        }
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name();
        let rel = name.to_str().map(|n| format!("{CLIPS_DIR}/{n}"));
        let stray = match &rel {
            Some(r) => r.ends_with(".tmp") || !referenced.contains(r),
            None => true,
        };
        if stray {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "stray clip file removed");
                    report.clips_removed += 1;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot remove stray clip file: {e}")
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::probe::tests::record_segments;
    use crate::record::probe::{decode_check, probe};
    use crate::store::recordings::Clip;
    use crate::types::{Change, EventChange, Severity};

    const DAY: &str = "20270115";
    const T0_MS: i64 = 1_800_000_000_000;

    fn new_event(store: &Store) -> uuid::Uuid {
        let ev = EventChange::bare(
            uuid::Uuid::now_v7(),
            Change::Started,
            "cam1",
            "presence",
            Severity::Low,
            OffsetDateTime::now_utc(),
        );
        store.apply(&ev).unwrap().id
    }

    /// Names a recorded segment like the pipeline does: `<start ms>-<n>.mp4`.
    fn name(i: usize) -> String {
        format!("{}-{i:05}.mp4", T0_MS + i as i64 * 4000)
    }

    #[test]
    fn crash_leftovers_are_repaired_indexed_or_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("data")).unwrap();
        let day = store.recordings_dir().join("cam1").join(DAY);
        let recorded = record_segments(&tmp.path().join("rec"), 4, 12);
        assert_eq!(recorded.len(), 3);
        fs::create_dir_all(&day).unwrap();
        for (i, f) in recorded.iter().enumerate() {
            fs::rename(f, day.join(name(i))).unwrap();
        }
        // Segment 0 was indexed normally; 1 and 2 were closed but never indexed.
        let p0 = day.join(name(0));
        let info0 = probe(&p0).unwrap();
        store
            .insert_segment(&NewSegment {
                camera_id: "cam1".into(),
                path: store.relative_media_path(&p0).unwrap(),
                start: crate::store::from_ms(T0_MS).unwrap(),
                end: crate::store::from_ms(T0_MS + 4000).unwrap(),
                start_pts_ns: Some(0),
                end_pts_ns: Some(4_000_000_000),
                bytes: fs::metadata(&p0).unwrap().len(),
                codec: "h264".into(),
                frames: None,
                recovered: false,
            })
            .unwrap();
        // A row whose file is gone.
        store
            .insert_segment(&NewSegment {
                camera_id: "cam2".into(),
                path: "recordings/cam2/20270115/1-00000.mp4".into(),
                start: crate::store::from_ms(T0_MS).unwrap(),
                end: crate::store::from_ms(T0_MS + 4000).unwrap(),
                start_pts_ns: None,
                end_pts_ns: None,
                bytes: 1,
                codec: "h264".into(),
                frames: None,
                recovered: false,
            })
            .unwrap();

        // Copies of segment 1 torn at arbitrary offsets (what kill -9 leaves).
        let whole = fs::read(day.join(name(1))).unwrap();
        let scan = mp4::scan(&mut io::Cursor::new(&whole), whole.len() as u64).unwrap();
        assert!(scan.boxes.last().unwrap().is(b"mfra"));
        let mdat_ends: Vec<u64> =
            scan.boxes.iter().filter(|b| b.is(b"mdat")).map(|b| b.end()).collect();
        assert!(mdat_ends.len() >= 4, "{:?}", scan.boxes);
        let moofs: Vec<u64> =
            scan.boxes.iter().filter(|b| b.is(b"moof")).map(|b| b.offset).collect();
        let len = whole.len() as u64;
        let mut offsets = vec![
            20,               // inside ftyp
            moofs[0] - 100,   // inside moov/uuid: no fragment
            moofs[0],         // header only
            moofs[0] + 50,    // inside the first moof
            mdat_ends[0] - 1, // one byte short of the first fragment
            mdat_ends[0],     // exactly one fragment
            mdat_ends[1] + 4, // a partial header after two fragments
            len - 10,         // inside mfra
        ];
        // … and two pseudo-random ones.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            offsets.push(moofs[0] + x % (len - moofs[0]));
        }
        let torn: Vec<(PathBuf, u64)> = offsets
            .iter()
            .enumerate()
            .map(|(k, &off)| {
                let p = day.join(name(10 + k));
                fs::write(&p, &whole[..off as usize]).unwrap();
                (p, off)
            })
            .collect();
        // Expected outcome from the box layout: playable iff a whole fragment precedes the cut.
        let expect_fragments = |off: u64| mdat_ends.iter().filter(|&&e| e <= off).count();

        // Clip leftovers: a stray .tmp, an unreferenced clip, a referenced one, a row whose file is gone.
        let clips = store.clips_dir();
        fs::create_dir_all(&clips).unwrap();
        fs::write(clips.join("x.mp4.tmp"), b"partial").unwrap();
        fs::write(clips.join("orphan.mp4"), b"orphan").unwrap();
        let kept = new_event(&store);
        let gone = new_event(&store);
        let t = OffsetDateTime::now_utc();
        for (id, write) in [(kept, true), (gone, false)] {
            let rel = format!("clips/{id}.mp4");
            if write {
                fs::write(store.data_dir().join(&rel), b"clip").unwrap();
            }
            store.put_clip(&Clip { event_id: id, path: rel, start: t, end: t, bytes: 4 }).unwrap();
        }
        let empty_day = store.recordings_dir().join("cam1").join("20270101");
        fs::create_dir_all(&empty_day).unwrap();

        let report = reconcile(&store).unwrap();
        println!("{report}");

        let playable_torn = offsets.iter().filter(|&&o| expect_fragments(o) > 0).count();
        let truncated_torn =
            offsets.iter().filter(|&&o| expect_fragments(o) > 0 && !mdat_ends.contains(&o)).count();
        assert_eq!(report.indexed, 2 + playable_torn, "{report}");
        assert_eq!(report.repaired, truncated_torn, "{report}");
        assert_eq!(report.dropped, offsets.len() - playable_torn, "{report}");
        assert_eq!((report.skipped, report.missing_rows), (0, 1), "{report}");
        assert_eq!(
            (report.clips_removed, report.missing_clip_rows, report.dirs_removed),
            (2, 1, 1),
            "{report}"
        );
        assert!(!empty_day.exists());

        for (p, off) in &torn {
            let n = expect_fragments(*off);
            if n == 0 {
                assert!(
                    !p.exists(),
                    "{} (cut at {off}) has no whole fragment and must be gone",
                    p.display()
                );
            } else {
                let want = mdat_ends[n - 1];
                assert_eq!(fs::metadata(p).unwrap().len(), want, "{} cut at {off}", p.display());
            }
        }
        // Every .mp4 is indexed, every row's file plays to its end, all its frames.
        let rows = store.segments(None, None, None, 1000).unwrap();
        let on_disk: HashSet<String> = fs::read_dir(&day)
            .unwrap()
            .map(|e| store.relative_media_path(&e.unwrap().path()).unwrap())
            .collect();
        let indexed: HashSet<String> = rows.iter().map(|r| r.path.clone()).collect();
        assert_eq!(on_disk, indexed);
        for r in &rows {
            let p = store.media_path(&r.path).unwrap();
            let info = probe(&p).unwrap();
            let dec = decode_check(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(dec.frames_decoded, info.frames, "{}", r.path);
            assert!(info.first_is_keyframe, "{}", r.path);
            assert_eq!(
                r.recovered,
                r.path != store.relative_media_path(&p0).unwrap(),
                "{}",
                r.path
            );
            if r.recovered {
                assert_eq!(r.frames, Some(info.frames));
                assert_eq!(r.bytes, fs::metadata(&p).unwrap().len());
                assert_eq!(
                    crate::store::to_ms(r.start),
                    start_from_name(&p).map(crate::store::to_ms).unwrap()
                );
                assert_eq!(
                    (r.end - r.start).whole_milliseconds(),
                    info.duration_ns as i128 / 1_000_000
                );
            }
        }
        // The complete, never-indexed segments were indexed whole (nothing cut).
        let s1 = rows.iter().find(|r| r.path.ends_with(&name(1))).unwrap();
        assert_eq!((s1.bytes, s1.frames, s1.codec.as_str()), (len, Some(40), "h264"));
        assert_eq!(info0.frames, 40);

        assert!(clips.join(format!("{kept}.mp4")).exists());
        assert_eq!(fs::read_dir(&clips).unwrap().count(), 1);
        assert!(store.clip(gone).unwrap().is_none());
        assert!(store.clip(kept).unwrap().is_some());

        let again = reconcile(&store).unwrap();
        assert!(again.is_noop(), "second reconcile changed something: {again}");
        assert_eq!(again, ReconcileReport::default());
    }

    #[test]
    fn an_abandoned_segment_is_recovered_during_operation() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("data")).unwrap();
        let day = store.recordings_dir().join("cam1").join(DAY);
        let files = record_segments(&tmp.path().join("rec"), 4, 4);
        let whole = fs::read(&files[0]).unwrap();
        let scan = mp4::scan(&mut io::Cursor::new(&whole), whole.len() as u64).unwrap();
        let mdat_ends: Vec<u64> =
            scan.boxes.iter().filter(|b| b.is(b"mdat")).map(|b| b.end()).collect();
        fs::create_dir_all(&day).unwrap();
        // Stopped in the middle of its third fragment.
        let torn = day.join(name(0));
        let cut = (mdat_ends[1] + 700) as usize;
        fs::write(&torn, &whole[..cut]).unwrap();
        let r = recover_file(&store, "cam1", &torn).unwrap();
        let Recovery::Indexed { id, frames, cut_bytes, .. } = r else { panic!("{r}") };
        assert_eq!(cut_bytes, cut as u64 - mdat_ends[1], "{r}");
        assert_eq!(frames, 20, "two 1-second fragments at 10 fps: {r}");
        let row = store.segment(id).unwrap().unwrap();
        assert!(row.recovered && row.camera_id == "cam1" && row.bytes == mdat_ends[1]);
        assert_eq!(decode_check(&torn).unwrap().frames_decoded, 20);
        assert_eq!(recover_file(&store, "cam1", &torn).unwrap(), Recovery::AlreadyIndexed);
        // One that never got a whole fragment is deleted.
        let head = day.join(name(1));
        fs::write(&head, &whole[..(mdat_ends[0] - 1) as usize]).unwrap();
        let r = recover_file(&store, "cam1", &head).unwrap();
        assert!(matches!(r, Recovery::Dropped { .. }), "{r}");
        assert!(!head.exists());
        assert!(reconcile(&store).unwrap().is_noop());
    }

    #[test]
    fn start_time_comes_from_the_name() {
        let t = start_from_name(Path::new("/x/1800000000123-00042.mp4")).unwrap();
        assert_eq!(crate::store::to_ms(t), 1_800_000_000_123);
        assert!(start_from_name(Path::new("/x/seg-00001.mp4")).is_none());
    }

    #[test]
    fn a_file_named_without_a_time_uses_its_mtime() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let day = store.recordings_dir().join("cam9").join(DAY);
        let files = record_segments(&day, 4, 4);
        let before = OffsetDateTime::now_utc();
        let report = reconcile(&store).unwrap();
        assert_eq!(report.indexed, 1, "{report}");
        let row = &store.segments(Some("cam9"), None, None, 10).unwrap()[0];
        assert!(row.path.ends_with("seg-00000.mp4"), "{}", files[0].display());
        assert!(
            row.end <= before + time::Duration::seconds(1)
                && row.end > before - time::Duration::minutes(5),
            "{row:?}"
        );
        assert_eq!(row.duration_secs(), 4.0);
    }
}
