//! Hardware profiles (hardware-profiles/*.toml) and pipeline templates (pipelines/*.pipeline).
//! The repo's profiles and templates are embedded in the binary; a config may also name a
//! profile file by path.

use std::path::Path;

use serde::Deserialize;

use crate::config::{CameraConfig, Config, Source};

const BUILTIN_PROFILES: &[(&str, &str)] = &[
    ("cpu", include_str!("../../hardware-profiles/cpu.toml")),
    ("nvidia-dgpu", include_str!("../../hardware-profiles/nvidia-dgpu.toml")),
    ("jetson", include_str!("../../hardware-profiles/jetson.toml")),
    ("intel-vaapi", include_str!("../../hardware-profiles/intel-vaapi.toml")),
    ("rockchip-rk3588", include_str!("../../hardware-profiles/rockchip-rk3588.toml")),
];

const TEMPLATES: &[(&str, &str)] = &[
    ("file", include_str!("../../pipelines/file.pipeline")),
    ("file-passthrough", include_str!("../../pipelines/file-passthrough.pipeline")),
    ("rtsp-auto", include_str!("../../pipelines/rtsp-auto.pipeline")),
    ("rtsp-h264", include_str!("../../pipelines/rtsp-h264.pipeline")),
    ("rtsp-h265", include_str!("../../pipelines/rtsp-h265.pipeline")),
    ("usb", include_str!("../../pipelines/usb.pipeline")),
    ("rtsp-record", include_str!("../../pipelines/rtsp-record.pipeline")),
    ("file-record", include_str!("../../pipelines/file-record.pipeline")),
];

/// The record branch appended to a recorded camera's pipeline.
const RECORD_BRANCH: &str = include_str!("../../pipelines/record.pipeline");

/// Placeholders of the templates (not element factories).
const PLACEHOLDERS: &[&str] = &[
    "h264_decoder",
    "h265_decoder",
    "file_decoder",
    "scale",
    "convert",
    "split",
    "record",
    "decoder",
    "parsed_caps",
    "encode",
    "h264_encoder",
    "parse",
];

/// Most `elements.decoder_threads` a profile may ask for.
pub const MAX_DECODER_THREADS: u32 = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareProfile {
    pub name: String,
    pub description: String,
    /// Whether this profile has been run on real hardware by the project.
    pub tested: bool,
    pub elements: Elements,
    pub inference: ProfileInference,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Elements {
    pub h264_decoder: String,
    pub h265_decoder: String,
    pub file_decoder: String,
    /// One-time H.264 encode for recorded sources that are not H.264/H.265; `{bitrate_kbps}`
    /// or `{bitrate_bps}` is replaced by the camera's `record.encode_bitrate_kbps`.
    #[serde(default = "default_h264_encoder")]
    pub h264_encoder: String,
    pub scale: String,
    pub convert: String,
    /// Threads of each software video decoder that has a `max-threads` property (libav);
    /// 0 leaves the decoder's own choice (one per core, and the frames that frame threading
    /// holds). Default 0.
    #[serde(default)]
    pub decoder_threads: u32,
}

fn default_h264_encoder() -> String {
    "x264enc bitrate={bitrate_kbps} speed-preset=veryfast tune=zerolatency key-int-max=60".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileInference {
    pub execution_providers: Vec<String>,
}

/// How the pipeline paces and drops frames.
#[derive(Debug, Clone, Copy)]
pub struct PipelineMode {
    /// Play files at their native rate (like a live camera).
    pub realtime: bool,
    /// Drop frames at the appsink when the consumer is behind (live); false = back-pressure.
    pub drop: bool,
    /// Limit frames per second handed to Rust (0 = no limit).
    pub max_fps: f64,
}

/// How a recorded camera's stream reaches its segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordMode {
    /// The compressed stream is written as is: `Some("h264" | "h265")`, or `None` when the
    /// codec is only known at run time (RTSP with `codec = "auto"`).
    Passthrough(Option<&'static str>),
    /// The decoded video is encoded once to H.264 (USB cameras, non-H.264/H.265 files).
    Encode { bitrate_kbps: u32 },
}

/// Recording part of a pipeline: mode and segment length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPlan {
    pub mode: RecordMode,
    pub segment_ns: u64,
}

impl HardwareProfile {
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN_PROFILES.iter().map(|(n, _)| *n)
    }

    /// Loads `name` as a built-in profile, or as a path to a TOML file.
    pub fn load(name: &str, base: &Path) -> Result<HardwareProfile, String> {
        let (text, origin) = if let Some((_, t)) = BUILTIN_PROFILES.iter().find(|(n, _)| *n == name)
        {
            (t.to_string(), format!("built-in profile `{name}`"))
        } else {
            let p = base.join(name);
            let t = std::fs::read_to_string(&p).map_err(|e| {
                format!(
                    "field `hardware_profile`: `{name}` is neither a built-in profile ({}) nor a readable file ({}: {e})",
                    Self::builtin_names().collect::<Vec<_>>().join(", "),
                    p.display()
                )
            })?;
            (t, p.display().to_string())
        };
        let p: HardwareProfile =
            toml::from_str(&text).map_err(|e| format!("hardware profile {origin}: {e}"))?;
        if p.elements.decoder_threads > MAX_DECODER_THREADS {
            return Err(format!(
                "hardware profile {origin}: field `elements.decoder_threads`: at most \
                 {MAX_DECODER_THREADS} (0 = the decoder's own choice), got {}",
                p.elements.decoder_threads
            ));
        }
        Ok(p)
    }

    pub fn for_config(cfg: &Config) -> Result<HardwareProfile, String> {
        Self::load(&cfg.hardware_profile, &cfg.base_dir)
    }

    /// Every GStreamer element factory this profile's pipelines need.
    pub fn required_elements(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let e = &self.elements;
        let mut add = |desc: &str| {
            for f in factories_in(desc) {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        };
        // Optional fragments vanish; element placeholders become their names (dropped below).
        let bare = |t: &str| {
            strip_comments(t)
                .replace("{split}", "")
                .replace("{record}", "")
                .replace("{encode}", "")
                .replace("{parse}", "")
                .replace(['{', '}'], "")
        };
        for (_, t) in TEMPLATES {
            add(&bare(t));
        }
        add(&bare(RECORD_BRANCH));
        for d in [
            &e.h264_decoder,
            &e.h265_decoder,
            &e.file_decoder,
            &e.scale,
            &e.convert,
            &e.h264_encoder,
        ] {
            add(d);
        }
        add("tee ! parsebin ! h264parse ! h265parse ! mp4mux ! filesink ! qtdemux ! appsrc");
        // Placeholders themselves are not factories; `rec.` is a pad reference.
        out.retain(|f| !PLACEHOLDERS.contains(&f.as_str()) && !f.ends_with('.'));
        out
    }

    /// Builds the gst-launch description of a camera's detect pipeline (`source` is the
    /// stream detection decodes, [`CameraConfig::detect_source`]); `record` adds the record
    /// branch (see pipelines/record.pipeline) when that stream is also the recorded one.
    pub fn pipeline_for(
        &self,
        cam: &CameraConfig,
        source: &Source,
        mode: PipelineMode,
        record: Option<RecordPlan>,
    ) -> String {
        let codec = cam.detect_stream_codec();
        self.render(source, codec, cam.detect_width, cam.detect_height, mode, record)
    }

    /// The main stream of a camera with a `detect_url`, recorded as is and never decoded: an
    /// RTSP stream (pipelines/rtsp-record.pipeline), or an H.264/H.265 file paced at its own
    /// rate (pipelines/file-record.pipeline); `None` for other sources and for a file that
    /// would have to be encoded.
    pub fn record_pipeline(
        &self,
        source: &Source,
        codec: &str,
        plan: RecordPlan,
    ) -> Option<String> {
        let template = |name: &str| TEMPLATES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        let url = match source {
            Source::Rtsp(url) => url,
            Source::File(path) => {
                let RecordMode::Passthrough(Some(c)) = plan.mode else { return None };
                return Some(
                    strip_comments(template("file-record")?)
                        .replace("{parsed_caps}", &format!("video/x-{c}"))
                        .replace("{record}", &self.record_branch(plan, true))
                        .replace("{location}", &quote(&path.display().to_string())),
                );
            }
            Source::V4l2(_) => return None,
        };
        let text = template("rtsp-record")?;
        let parse = match codec {
            "h264" => "rtph264depay ! h264parse ! ",
            "h265" => "rtph265depay ! h265parse ! ",
            _ => "parsebin ! ",
        };
        Some(
            strip_comments(text)
                .replace("{parse}", parse)
                .replace("{record}", &self.record_branch(plan, false))
                .replace("{location}", &quote(url)),
        )
    }

    /// Fills the template for `source` with this profile's elements.
    pub fn render(
        &self,
        source: &Source,
        codec: &str,
        width: u32,
        height: Option<u32>,
        mode: PipelineMode,
        record: Option<RecordPlan>,
    ) -> String {
        let passthrough_file = match (source, record.map(|r| r.mode)) {
            (Source::File(_), Some(RecordMode::Passthrough(Some(c)))) => Some(c),
            _ => None,
        };
        let (template, location) = match source {
            Source::File(p) if passthrough_file.is_some() => {
                ("file-passthrough", p.display().to_string())
            }
            Source::File(p) => ("file", p.display().to_string()),
            Source::V4l2(p) => ("usb", p.display().to_string()),
            Source::Rtsp(u) => (
                match codec {
                    "h264" => "rtsp-h264",
                    "h265" => "rtsp-h265",
                    _ => "rtsp-auto",
                },
                u.clone(),
            ),
        };
        let text =
            TEMPLATES.iter().find(|(n, _)| *n == template).map(|(_, t)| *t).unwrap_or_default();
        let size_caps = match height {
            Some(h) => format!("width={width},height={h}"),
            None => format!("width={width}"),
        };
        let max_rate =
            if mode.max_fps > 0.0 { (mode.max_fps.ceil() as u64).max(1) } else { i32::MAX as u64 };
        let e = &self.elements;
        let (split, record_branch) = match record {
            None => (String::new(), String::new()),
            Some(plan) => {
                let tee = "tee name=rec ! queue ! ";
                let split = if template == "rtsp-auto" {
                    format!("parsebin ! {tee}")
                } else {
                    tee.to_string()
                };
                // Files are parsed again for the muxer; RTSP streams are parsed before the tee.
                (split, self.record_branch(plan, template.starts_with("file")))
            }
        };
        let (parsed_caps, decoder) = match passthrough_file {
            Some("h265") => ("video/x-h265", e.h265_decoder.as_str()),
            _ => ("video/x-h264", e.h264_decoder.as_str()),
        };
        strip_comments(text)
            .replace("{split}", &split)
            .replace("{record}", &record_branch)
            .replace("{parsed_caps}", parsed_caps)
            .replace("{decoder}", decoder)
            .replace("{location}", &quote(&location))
            .replace("{file_decoder}", &e.file_decoder)
            .replace("{h264_decoder}", &e.h264_decoder)
            .replace("{h265_decoder}", &e.h265_decoder)
            .replace("{scale}", &e.scale)
            .replace("{convert}", &e.convert)
            .replace("{size_caps}", &size_caps)
            .replace("{max_rate}", &max_rate.to_string())
            .replace("{sync}", if mode.realtime { "true" } else { "false" })
            .replace("{drop}", if mode.drop { "true" } else { "false" })
    }

    /// The record branch (pipelines/record.pipeline) fed from `tee name=rec`; `parse` adds
    /// the codec's parser in front of the muxer for passthrough.
    pub fn record_branch(&self, plan: RecordPlan, parse: bool) -> String {
        let (encode, requests) = match plan.mode {
            RecordMode::Passthrough(Some(c)) if parse => (format!("{c}parse ! "), false),
            RecordMode::Passthrough(_) => (String::new(), false),
            RecordMode::Encode { bitrate_kbps } => {
                let enc = self
                    .elements
                    .h264_encoder
                    .replace("{bitrate_kbps}", &bitrate_kbps.to_string())
                    .replace("{bitrate_bps}", &(u64::from(bitrate_kbps) * 1000).to_string());
                (format!("videoconvert ! {enc} ! h264parse ! "), true)
            }
        };
        strip_comments(RECORD_BRANCH)
            .replace("{encode}", &encode)
            .replace("{segment_ns}", &plan.segment_ns.to_string())
            .replace("{keyframe_requests}", if requests { "true" } else { "false" })
    }

    /// A lossless, unpaced file decoder for offline tools (`detect`, `bench`, `eval`).
    pub fn offline_file_pipeline(&self, path: &Path, width: u32) -> String {
        self.render(
            &Source::File(path.to_path_buf()),
            "auto",
            width,
            None,
            PipelineMode { realtime: false, drop: false, max_fps: 0.0 },
            None,
        )
    }
}

fn strip_comments(t: &str) -> String {
    t.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes a value for gst_parse (double quotes, backslash escapes).
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Element factory names in a gst-launch fragment (first word of each `!` segment, skipping caps).
fn factories_in(desc: &str) -> Vec<String> {
    desc.split('!')
        .filter_map(|seg| seg.split_whitespace().next())
        .filter(|w| !w.contains('/') && !w.contains('=') && !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_name_elements() {
        for n in HardwareProfile::builtin_names() {
            let p = HardwareProfile::load(n, Path::new(".")).unwrap();
            assert_eq!(p.name, n);
            let els = p.required_elements();
            assert!(els.contains(&"appsink".to_string()), "{n}: {els:?}");
            assert!(els.contains(&p.elements.h264_decoder), "{n}");
            for e in ["tee", "splitmuxsink", "mp4mux", "videorate", "decodebin", "parsebin"] {
                assert!(els.contains(&e.to_string()), "{n}: {e} missing from {els:?}");
            }
            assert!(
                els.iter().all(|e| !e.starts_with("split") || e == "splitmuxsink"),
                "{n}: {els:?}"
            );
        }
    }

    #[test]
    fn too_many_decoder_threads_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = BUILTIN_PROFILES.iter().find(|(n, _)| *n == "cpu").unwrap().1;
        assert!(
            HardwareProfile::load("cpu", Path::new(".")).unwrap().elements.decoder_threads == 1
        );
        let text = cpu.replace("decoder_threads = 1", "decoder_threads = 100000");
        assert!(text.contains("100000"));
        std::fs::write(dir.path().join("p.toml"), text).unwrap();
        let e = HardwareProfile::load("p.toml", dir.path()).unwrap_err();
        assert!(e.contains("elements.decoder_threads") && e.contains("100000"), "{e}");
    }

    #[test]
    fn unknown_profile_is_clear_error() {
        let e = HardwareProfile::load("nope", Path::new("/tmp")).unwrap_err();
        assert!(e.contains("hardware_profile") && e.contains("cpu"), "{e}");
    }

    #[test]
    fn record_branch_is_added_only_when_recording() {
        let p = HardwareProfile::load("cpu", Path::new(".")).unwrap();
        let mode = PipelineMode { realtime: true, drop: true, max_fps: 5.0 };
        let file = Source::File("/v/a.mp4".into());
        let plain = p.render(&file, "auto", 640, None, mode, None);
        assert!(
            !plain.contains("tee") && !plain.contains("splitmuxsink") && !plain.contains('{'),
            "{plain}"
        );
        let plan = |mode| Some(RecordPlan { mode, segment_ns: 10_000_000_000 });
        let pass =
            p.render(&file, "auto", 640, None, mode, plan(RecordMode::Passthrough(Some("h264"))));
        assert!(
            pass.contains("parsebin ! video/x-h264 ! tee name=rec ! queue ! avdec_h264"),
            "{pass}"
        );
        assert!(
            pass.contains("rec. ! queue name=recq")
                && pass.contains("h264parse ! splitmuxsink name=recorder"),
            "{pass}"
        );
        assert!(
            pass.contains("max-size-time=10000000000")
                && !pass.contains("x264enc")
                && !pass.contains('{'),
            "{pass}"
        );
        let enc = p.render(
            &file,
            "auto",
            640,
            None,
            mode,
            plan(RecordMode::Encode { bitrate_kbps: 1500 }),
        );
        assert!(enc.contains("decodebin ! tee name=rec ! queue ! videorate"), "{enc}");
        assert!(
            enc.contains("x264enc bitrate=1500") && enc.contains("send-keyframe-requests=true"),
            "{enc}"
        );
        let rtsp = Source::Rtsp("rtsp://h/s".into());
        let auto = p.render(&rtsp, "auto", 640, None, mode, plan(RecordMode::Passthrough(None)));
        assert!(auto.contains("parsebin ! tee name=rec ! queue ! decodebin"), "{auto}");
        let h265 =
            p.render(&rtsp, "h265", 640, None, mode, plan(RecordMode::Passthrough(Some("h265"))));
        assert!(
            h265.contains("h265parse ! tee name=rec ! queue ! avdec_h265")
                && !h265.contains("h265parse ! splitmux"),
            "{h265}"
        );
        // Every rendered description is a valid pipeline for GStreamer's parser.
        if crate::gst::init().is_ok() {
            for d in [&plain, &pass, &enc, &auto, &h265] {
                gstreamer::parse::launch(d).unwrap_or_else(|e| panic!("{e}: {d}"));
            }
        }
    }

    #[test]
    fn main_stream_is_recorded_without_decoding() {
        let p = HardwareProfile::load("cpu", Path::new(".")).unwrap();
        let rtsp = Source::Rtsp("rtsp://h/main".into());
        let plan = |c| RecordPlan { mode: RecordMode::Passthrough(c), segment_ns: 10_000_000_000 };
        let h264 = p.record_pipeline(&rtsp, "h264", plan(Some("h264"))).unwrap();
        assert!(h264.contains("rtph264depay ! h264parse ! tee name=rec"), "{h264}");
        let auto = p.record_pipeline(&rtsp, "auto", plan(None)).unwrap();
        assert!(auto.contains("parsebin ! tee name=rec rec. ! queue name=recq"), "{auto}");
        for d in [&h264, &auto] {
            assert!(
                !d.contains("avdec") && !d.contains("decodebin") && !d.contains("appsink"),
                "{d}"
            );
            assert!(!d.contains('{') && d.contains("splitmuxsink name=recorder"), "{d}");
        }
        let file = Source::File("/v/a.mp4".into());
        assert_eq!(p.record_pipeline(&file, "auto", plan(None)), None);
        let f = p.record_pipeline(&file, "auto", plan(Some("h265"))).unwrap();
        assert!(
            f.contains("parsebin ! video/x-h265 ! identity sync=true ! tee name=rec")
                && f.contains("h265parse ! splitmuxsink name=recorder")
                && !f.contains("avdec")
                && !f.contains("appsink"),
            "{f}"
        );
        let usb = Source::V4l2("/dev/video0".into());
        assert_eq!(p.record_pipeline(&usb, "auto", plan(Some("h264"))), None);
        if crate::gst::init().is_ok() {
            for d in [&h264, &auto, &f] {
                gstreamer::parse::launch(d).unwrap_or_else(|e| panic!("{e}: {d}"));
            }
        }
    }

    #[test]
    fn quotes_locations() {
        assert_eq!(quote(r#"/a b/"c".mp4"#), r#""/a b/\"c\".mp4""#);
    }
}
