//! Skips decoding pictures that nothing references and that detection will not miss: a pad
//! probe on the decoder's sink pad drops H.264 access units whose slices all have
//! `nal_ref_idc = 0`, and H.265 ones whose pictures are all sub-layer non-reference
//! (`TRAIL_N`, `TSA_N`, `STSA_N`, `RADL_N`, `RASL_N`, reserved `RSV_VCL_N1x`). No other
//! picture is decoded from them, so the rest decode exactly as before. A picture is dropped
//! only while the reference pictures alone arrive at least [`HEADROOM`] × `detect_fps`, so
//! `videorate` still finds a picture near each analysis tick. The record branch sits before
//! the decoder (its `tee`), so recordings keep every picture. docs/design/0036.

use std::collections::VecDeque;

/// Reference pictures must arrive at least this many times faster than `detect_fps` for the
/// others to be dropped.
pub const HEADROOM: f64 = 2.0;

/// The codec of a parsed, access-unit aligned stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

/// Whether an access unit is referenced by other pictures: `Some(false)` when every picture
/// slice in it is non-reference, `Some(true)` when one is a reference, `None` when the bytes
/// cannot be read (then it is kept). `data` is Annex B (start codes) or length-prefixed (4
/// bytes, as `avc`/`hvc1` streams usually are); which one is told by the caps
/// (`stream-format`), `length_prefixed`.
pub fn is_reference(codec: Codec, data: &[u8], length_prefixed: bool) -> Option<bool> {
    let mut slices = 0;
    let mut reference = false;
    let mut visit = |nal: &[u8]| -> Option<()> {
        let h = *nal.first()?;
        match codec {
            Codec::H264 => {
                let kind = h & 0x1f;
                if (1..=5).contains(&kind) {
                    slices += 1;
                    reference |= (h >> 5) & 3 != 0 || kind == 5;
                }
            }
            Codec::H265 => {
                let kind = (h >> 1) & 0x3f;
                if kind < 32 {
                    slices += 1;
                    reference |= kind > 14 || kind % 2 == 1;
                }
            }
        }
        Some(())
    };
    if length_prefixed {
        let mut rest = data;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let nal = rest.get(4..4 + len)?;
            visit(nal)?;
            rest = &rest[4 + len..];
        }
    } else {
        let mut i = 0;
        let mut starts = Vec::new();
        while i + 3 <= data.len() {
            if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        if starts.first().is_none_or(|&s| s > 4) {
            return None; // not Annex B
        }
        for (k, &s) in starts.iter().enumerate() {
            let end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
            visit(data.get(s..end.max(s))?)?;
        }
    }
    (slices > 0).then_some(reference)
}

/// Decides, picture by picture, which to drop.
pub struct Skipper {
    min_ref_fps: f64,
    /// Stream times (ns) of the reference pictures of the last 2 s.
    refs: VecDeque<u64>,
    pub dropped: u64,
}

impl Skipper {
    /// For a camera analysed at `detect_fps` (> 0).
    pub fn new(detect_fps: f64) -> Skipper {
        Skipper { min_ref_fps: HEADROOM * detect_fps, refs: VecDeque::new(), dropped: 0 }
    }

    /// Whether to drop the access unit at stream time `t_ns` (its DTS, else its PTS) that is a
    /// reference picture (`Some(true)`), is not (`Some(false)`) or cannot be read (`None`).
    pub fn skip(&mut self, t_ns: Option<u64>, reference: Option<bool>) -> bool {
        let Some(t) = t_ns else { return false };
        match reference {
            Some(true) => {
                // A step back of more than a second (a loop, a seek) starts the window again;
                // smaller ones are pictures out of presentation order.
                if self.refs.back().is_some_and(|&b| t + 1_000_000_000 < b) {
                    self.refs.clear();
                }
                self.refs.push_back(t);
                let newest = self.refs.iter().copied().max().unwrap_or(t);
                while self.refs.front().is_some_and(|&f| newest.saturating_sub(f) > 2_000_000_000) {
                    self.refs.pop_front();
                }
                false
            }
            Some(false) => {
                let (Some(first), Some(last)) =
                    (self.refs.iter().copied().min(), self.refs.iter().copied().max())
                else {
                    return false;
                };
                let span = (last - first) as f64 / 1e9;
                let enough = span >= 0.5 && (self.refs.len() - 1) as f64 / span >= self.min_ref_fps;
                self.dropped += u64::from(enough);
                enough
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat()).collect()
    }

    fn avc(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| [&(n.len() as u32).to_be_bytes()[..], n].concat()).collect()
    }

    #[test]
    fn reads_h264_and_h265_reference_flags_in_both_framings() {
        // H.264: SPS (7), PPS (8), IDR slice (5, ref 3) / P slice (1, ref 2) / B slice (1, ref 0).
        let idr = annexb(&[&[0x67, 1, 2], &[0x68, 3], &[0x65, 0x88]]);
        let p = annexb(&[&[0x41, 0x9a]]);
        let b = annexb(&[&[0x09, 0x10], &[0x01, 0x9e], &[0x01, 0x9f]]);
        assert_eq!(is_reference(Codec::H264, &idr, false), Some(true));
        assert_eq!(is_reference(Codec::H264, &p, false), Some(true));
        assert_eq!(is_reference(Codec::H264, &b, false), Some(false));
        assert_eq!(is_reference(Codec::H264, &avc(&[&[0x01, 0x9e]]), true), Some(false));
        assert_eq!(is_reference(Codec::H264, &avc(&[&[0x41, 0x9a]]), true), Some(true));
        // One reference slice among non-reference ones: the picture is a reference.
        assert_eq!(
            is_reference(Codec::H264, &annexb(&[&[0x01, 1], &[0x21, 1]]), false),
            Some(true)
        );
        // No slice, truncated length, or not Annex B: unreadable, kept.
        assert_eq!(is_reference(Codec::H264, &annexb(&[&[0x67, 1]]), false), None);
        assert_eq!(is_reference(Codec::H264, &[0, 0, 0, 9, 0x01], true), None);
        assert_eq!(is_reference(Codec::H264, &[0x41, 0x9a, 0, 0], false), None);
        // H.265 (2-byte headers): TRAIL_N (0) and RASL_N (8) are not, TRAIL_R (1) and
        // IDR_W_RADL (19) are; VPS (32) is not a picture.
        let h = |t: u8| [t << 1, 1, 0xaa];
        assert_eq!(is_reference(Codec::H265, &annexb(&[&h(32), &h(0)]), false), Some(false));
        assert_eq!(is_reference(Codec::H265, &annexb(&[&h(8)]), false), Some(false));
        assert_eq!(is_reference(Codec::H265, &annexb(&[&h(1)]), false), Some(true));
        assert_eq!(is_reference(Codec::H265, &avc(&[&h(19)]), true), Some(true));
    }

    #[test]
    fn drops_only_while_reference_pictures_are_frequent_enough() {
        let ms = |m: u64| Some(m * 1_000_000);
        // detect_fps 5 needs 10 reference pictures a second.
        let mut s = Skipper::new(5.0);
        assert!(!s.skip(ms(0), Some(false)), "nothing known yet");
        // 25 fps, every other picture a reference: 12.5 reference pictures a second.
        let mut dropped = 0;
        for i in 0..50u64 {
            let t = ms(i * 40);
            let reference = i % 2 == 0;
            dropped += u64::from(s.skip(t, Some(reference)));
        }
        assert!(dropped >= 10, "{dropped}");
        assert!(!s.skip(ms(2000), None), "unreadable pictures are kept");
        assert!(!s.skip(None, Some(false)), "pictures without a time are kept");
        // 7 fps with one reference picture in 3: too few, nothing dropped.
        let mut s = Skipper::new(5.0);
        let dropped = (0..70u64).filter(|i| s.skip(ms(i * 143), Some(i % 3 == 0))).count();
        assert_eq!(dropped, 0);
        // A loop (time goes back) starts the window again.
        let mut s = Skipper::new(1.0);
        for i in 0..40u64 {
            s.skip(ms(i * 40), Some(true));
        }
        assert!(s.skip(ms(1600), Some(false)));
        s.skip(ms(0), Some(true));
        assert!(!s.skip(ms(40), Some(false)), "one reference picture since the loop");
    }
}
