//! Small command-line tools: `detect`, `rtsp-serve` (users and tokens: `accounts`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::infer::detector::{Detector, DetectorOptions};
use crate::infer::manifest::ModelManifest;
use crate::ingest::gst::GstOpener;
use crate::ingest::profile::HardwareProfile;
use crate::ingest::{FrameStream, Opener, StreamEvent};
use crate::types::Detection;

/// Accepts a manifest path or a model directory holding `model.toml`.
pub fn manifest_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("model.toml")
    } else {
        p.to_path_buf()
    }
}

/// Loads, verifies and opens a model on the CPU with `threads` intra-op threads.
pub fn open_detector(model: &Path, threads: usize) -> anyhow::Result<Detector> {
    crate::infer::runtime::init(None)?;
    let path = manifest_path(model);
    let m = ModelManifest::load(&path)?;
    m.verify()?;
    let opts = DetectorOptions { intra_op_threads: threads, ..DetectorOptions::default() };
    Ok(Detector::load(&m, &opts)?)
}

/// Opens a video file as a lossless, unpaced frame stream scaled to `width`.
pub fn open_video(video: &Path, width: u32) -> anyhow::Result<Box<dyn FrameStream>> {
    if !video.is_file() {
        return Err(anyhow!("video {} does not exist or is not a file", video.display()));
    }
    let profile = HardwareProfile::load("cpu", Path::new(".")).map_err(|e| anyhow!(e))?;
    let opener = GstOpener {
        camera_id: Arc::from("video"),
        description: profile.offline_file_pipeline(video, width),
        record: None,
        skip_nonref_fps: None,
        decoder_threads: profile.elements.decoder_threads,
    };
    opener.open().with_context(|| format!("opening {}", video.display()))
}

fn print_dets(label: &str, dets: &[Detection], json: bool) {
    if json {
        println!("{}", serde_json::json!({ "frame": label, "objects": dets }));
    } else {
        let items: Vec<String> = dets
            .iter()
            .map(|d| {
                let b = d.bbox;
                format!(
                    "{} {:.2} [{:.3},{:.3},{:.3},{:.3}]",
                    d.class, d.score, b.x1, b.y1, b.x2, b.y2
                )
            })
            .collect();
        println!(
            "{label}: {} object(s){}{}",
            dets.len(),
            if items.is_empty() { "" } else { ": " },
            items.join("; ")
        );
    }
}

pub fn detect(
    model: &Path,
    image: Option<&Path>,
    video: Option<&Path>,
    frames: u64,
    width: u32,
    threads: usize,
    json: bool,
) -> anyhow::Result<()> {
    let mut det = open_detector(model, threads)?;
    if let Some(img) = image {
        let rgb =
            image::open(img).with_context(|| format!("reading image {}", img.display()))?.to_rgb8();
        let (w, h) = rgb.dimensions();
        let dets = det.detect(rgb.as_raw(), w, h)?;
        print_dets(&img.display().to_string(), &dets, json);
        return Ok(());
    }
    let video = video.ok_or_else(|| anyhow!("give --image or --video"))?;
    let mut stream = open_video(video, width)?;
    let mut n = 0;
    loop {
        match stream.next(Duration::from_secs(10)) {
            StreamEvent::Frame(f) => {
                let dets = det.detect(&f.rgb, f.width, f.height)?;
                print_dets(&format!("frame {}", f.index), &dets, json);
                n += 1;
                if frames > 0 && n >= frames {
                    break;
                }
            }
            StreamEvent::Eos => break,
            StreamEvent::Idle => return Err(anyhow!("{}: no frame for 10 s", video.display())),
            StreamEvent::Error(e) => return Err(anyhow!("{}: {e}", video.display())),
        }
    }
    Ok(())
}

/// Serves `video` in a loop as rtsp://127.0.0.1:{port}{path} (H.264 files are passed
/// through; anything else is encoded with x264). Runs until killed.
pub fn rtsp_serve(video: &Path, port: u16, path: &str) -> anyhow::Result<()> {
    use gstreamer_rtsp_server as rtsp;
    use gstreamer_rtsp_server::prelude::*;
    crate::gst::init()?;
    if !video.is_file() {
        return Err(anyhow!("video {} does not exist", video.display()));
    }
    let loc = video.display().to_string().replace('"', "\\\"");
    let launch = if loc.ends_with(".mp4") {
        format!("( filesrc location=\"{loc}\" ! qtdemux ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )")
    } else {
        format!(
            "( filesrc location=\"{loc}\" ! decodebin ! videoconvert ! x264enc tune=zerolatency key-int-max=25 \
             ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
    };
    let server = rtsp::RTSPServer::new();
    server.set_service(&port.to_string());
    server.set_address("127.0.0.1");
    let mounts = server.mount_points().ok_or_else(|| anyhow!("RTSP server has no mount points"))?;
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(&launch);
    factory.set_shared(true);
    mounts.add_factory(path, factory);
    let main_loop = gstreamer::glib::MainLoop::new(None, false);
    let _source =
        server.attach(None).map_err(|e| anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!("rtsp://127.0.0.1:{port}{path}");
    main_loop.run();
    Ok(())
}

/// Serves `video` as a camera with two streams: rtsp://127.0.0.1:{port}{path} at the video's
/// size and {sub_path} scaled to `sub_width` pixels wide. The video is decoded once and played
/// live in a loop; each mount encodes what is playing now (x264), so both streams show the
/// same moment, as a camera's main and sub-streams do. Runs until killed.
pub fn rtsp_serve_two_sizes(
    video: &Path,
    port: u16,
    path: &str,
    sub_path: &str,
    sub_width: u32,
) -> anyhow::Result<()> {
    use gstreamer::prelude::*;
    use gstreamer_rtsp_server as rtsp;
    use gstreamer_rtsp_server::prelude::*;
    crate::gst::init()?;
    if !video.is_file() {
        return Err(anyhow!("video {} does not exist", video.display()));
    }
    if !(32..=4096).contains(&sub_width) {
        return Err(anyhow!("--sub-width must be between 32 and 4096"));
    }
    let loc = video.display().to_string().replace('"', "\\\"");
    let (main_ch, sub_ch) = (format!("gw-{port}-main"), format!("gw-{port}-sub"));
    let feeder = gstreamer::parse::launch(&format!(
        "filesrc location=\"{loc}\" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! tee name=t \
         t. ! queue ! intervideosink channel={main_ch} sync=true \
         t. ! queue ! videoscale ! video/x-raw,width={sub_width},pixel-aspect-ratio=1/1 \
         ! intervideosink channel={sub_ch} sync=true"
    ))
    .context("building the player")?
    .downcast::<gstreamer::Pipeline>()
    .map_err(|_| anyhow!("the player is not a pipeline"))?;
    let server = rtsp::RTSPServer::new();
    server.set_service(&port.to_string());
    server.set_address("127.0.0.1");
    let mounts = server.mount_points().ok_or_else(|| anyhow!("RTSP server has no mount points"))?;
    for (mount, channel) in [(path, &main_ch), (sub_path, &sub_ch)] {
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&format!(
            "( intervideosrc channel={channel} ! videoconvert ! x264enc tune=zerolatency \
             speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        ));
        factory.set_shared(true);
        mounts.add_factory(mount, factory);
    }
    let main_loop = gstreamer::glib::MainLoop::new(None, false);
    let bus = feeder.bus().ok_or_else(|| anyhow!("the player has no bus"))?;
    let player = feeder.downgrade();
    let _watch = bus
        .add_watch(move |_, msg| {
            match msg.view() {
                // Loop: back to the start.
                gstreamer::MessageView::Eos(_) => {
                    if let Some(p) = player.upgrade() {
                        let _ = p.seek_simple(
                            gstreamer::SeekFlags::FLUSH | gstreamer::SeekFlags::KEY_UNIT,
                            gstreamer::ClockTime::ZERO,
                        );
                    }
                }
                gstreamer::MessageView::Error(e) => {
                    eprintln!("error: player: {}", crate::gst::format_error(e));
                    std::process::exit(1);
                }
                _ => {}
            }
            gstreamer::glib::ControlFlow::Continue
        })
        .context("watching the player's bus")?;
    feeder.set_state(gstreamer::State::Playing).context("starting the player")?;
    let _source =
        server.attach(None).map_err(|e| anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!("rtsp://127.0.0.1:{port}{path} rtsp://127.0.0.1:{port}{sub_path}");
    main_loop.run();
    Ok(())
}
