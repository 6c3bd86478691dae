use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// gridwatch: edge video analytics for city grid management.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the appliance: cameras, detection, rules, events, API.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config: profile elements, ONNX Runtime, models (sha256), camera URLs.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Verify an evidence package offline (a `.tar` or its unpacked directory): the
    /// signature of its manifest and the SHA-256 of every file; names the file that fails.
    Verify {
        /// The package: `evidence-<id>.tar` or the directory it unpacks to.
        package: PathBuf,
        /// The box's public key (base64, or a file holding it), as `gridwatch check` and
        /// `GET /api/v1/evidence/key` show it. Without it the key named in the manifest is
        /// used, which proves integrity but not origin.
        #[arg(long)]
        key: Option<String>,
    },
    /// Run a model on an image or a video and print the detections.
    Detect {
        /// Model manifest (models/<name>/model.toml) or its directory.
        #[arg(long, short)]
        model: PathBuf,
        #[arg(long, conflicts_with = "video", required_unless_present = "video")]
        image: Option<PathBuf>,
        #[arg(long)]
        video: Option<PathBuf>,
        /// Frames to analyse from a video (0 = all).
        #[arg(long, default_value_t = 0)]
        frames: u64,
        /// Width frames are scaled to before detection (videos).
        #[arg(long, default_value_t = 640)]
        width: u32,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure decode-only, inference-only and full-pipeline throughput on a video; with
    /// `capacity`, cameras per box.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchCmd>,
        #[arg(long, required = true)]
        video: Option<PathBuf>,
        #[arg(long, short, required = true)]
        model: Option<PathBuf>,
        /// Frames to analyse in each stage.
        #[arg(long, default_value_t = 300)]
        frames: u64,
        #[arg(long, default_value_t = 640)]
        width: u32,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Tiled detection (`[cameras.tiles]`): vehicle detections per frame and detection time,
    /// whole frames vs tiles on every frame, per clip (docs/performance.md).
    BenchTiles {
        /// Clips, each run twice (whole, tiled).
        #[arg(required = true)]
        videos: Vec<PathBuf>,
        #[arg(long, short)]
        model: PathBuf,
        /// Analysed frames per second of video time.
        #[arg(long, default_value_t = 5.0)]
        fps: f64,
        #[arg(long, default_value_t = 640)]
        width: u32,
        /// Seconds of each clip to analyse.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 2)]
        grid: u32,
        #[arg(long, default_value_t = 0.2)]
        overlap: f64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Cost of the built-in fire and smoke detector (`builtin-fire`) per analysed frame, one
    /// thread, per clip (docs/performance.md). `bench` runs it on its video too.
    BenchFire {
        /// Clips, each decoded at `--width` and analysed frame after frame.
        #[arg(required = true)]
        videos: Vec<PathBuf>,
        #[arg(long, default_value_t = 640)]
        width: u32,
        /// Frames to analyse per clip (at most).
        #[arg(long, default_value_t = 300)]
        frames: usize,
        /// Analyse every N-th decoded frame (1: all).
        #[arg(long, default_value_t = 1)]
        every: usize,
    },
    /// CPU cost of recording a 1080p30 H.264 stream without re-encoding (generated stream).
    BenchRecord {
        /// Seconds of video to generate and record.
        #[arg(long, default_value_t = 30)]
        secs: u32,
        #[arg(long, default_value_t = 4000)]
        bitrate_kbps: u32,
    },
    /// Cost of a masked copy of a clip (decode → mask faces and plates → encode), in seconds
    /// per second of video, with masking on and off (docs/performance.md "Masking").
    BenchMaskClip {
        /// The MP4 to mask.
        #[arg(long)]
        clip: std::path::PathBuf,
        /// The object detector (people and vehicles).
        #[arg(long, default_value = "models/nanodet-g-coco-416/model.toml")]
        model: std::path::PathBuf,
        /// The face model.
        #[arg(long, default_value = "models/blazeface-back-256/model.toml")]
        face_model: std::path::PathBuf,
        /// ONNX Runtime threads per model.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Uplink: drain rate of a backlog to a local webhook receiver; with --video and --model
    /// also the frame-to-upstream latency of new events through the whole pipeline.
    BenchUplink {
        /// Changes in the backlog.
        #[arg(long, default_value_t = 100_000)]
        changes: usize,
        /// Cameras the backlog is spread over (each camera's changes go one at a time).
        #[arg(long, default_value_t = 4)]
        cameras: usize,
        #[arg(long, requires = "model")]
        video: Option<PathBuf>,
        #[arg(long, short, requires = "video")]
        model: Option<PathBuf>,
        /// Seconds of video for the latency measurement.
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
    /// Connection discipline: N slow clients against a real `gridwatch run` with a recording
    /// file camera under a service-like open-file limit; analysed fps, recorded seconds and
    /// a good client's answers without and with the attack (docs/security.md).
    BenchConnections {
        #[arg(long)]
        video: PathBuf,
        #[arg(long, short, default_value = "models/nanodet-g-coco-320")]
        model: PathBuf,
        /// Slow clients at once.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Seconds without, then with the attack.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Distinct client addresses (127.1.x.y) the slow clients come from.
        #[arg(long, default_value_t = 100)]
        addresses: usize,
        /// Open-file limit (soft and hard) of the box, as a service might run.
        #[arg(long, default_value_t = 512)]
        fd_limit: u64,
        /// The `gridwatch` binary to attack (default: this one), e.g. an older build.
        #[arg(long)]
        box_bin: Option<PathBuf>,
    },
    /// Evaluate the analytics against ground truth.
    Eval {
        #[command(subcommand)]
        cmd: EvalCmd,
    },
    /// Manage API tokens (stored hashed in the database) for machines and scripts.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Manage users who log in with a password (console, API sessions).
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Serve a video file as a live RTSP camera (for tests and demos).
    RtspServe {
        #[arg(long)]
        video: PathBuf,
        #[arg(long, default_value_t = 8554)]
        port: u16,
        #[arg(long, default_value = "/cam")]
        path: String,
        /// Also serve a sub-stream this many pixels wide at `--sub-path`: the video is then
        /// decoded once, played live in a loop and encoded at both sizes (a camera with a
        /// main and a sub-stream showing the same moment).
        #[arg(long)]
        sub_width: Option<u32>,
        #[arg(long, default_value = "/sub")]
        sub_path: String,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Cameras per box: N cameras looping a clip in real time through the appliance's own
    /// stages (recording on, shipped defaults), per N the share of wanted analysis frames
    /// delivered, CPU cores, RSS and frame-to-event latency (docs/performance.md "Capacity").
    Capacity {
        /// The clip every camera loops (but the busy ones).
        #[arg(long)]
        clip: PathBuf,
        /// Camera counts to measure, each in its own process (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        cameras: Vec<usize>,
        /// The first `--busy` cameras loop this clip instead (a mixed scene).
        #[arg(long, requires = "busy")]
        busy_clip: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        busy: usize,
        /// A sub-stream for every camera: detection decodes this clip (`detect_url`) and
        /// `--clip` is the main stream, only recorded.
        #[arg(long)]
        detect_clip: Option<PathBuf>,
        /// The busy cameras' sub-stream (with `--detect-clip` and `--busy-clip`).
        #[arg(long)]
        busy_detect_clip: Option<PathBuf>,
        #[arg(long, short, default_value = "models/nanodet-g-coco-416-int8")]
        model: PathBuf,
        #[arg(long, default_value_t = 5.0)]
        detect_fps: f64,
        /// Seconds of warm-up before the window.
        #[arg(long, default_value_t = 15.0)]
        warmup_secs: f64,
        /// Seconds measured per camera count.
        #[arg(long, default_value_t = 45.0)]
        secs: f64,
        /// Record every camera (default on).
        #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
        record: String,
        /// Turn every camera's motion gate on or off (default: the config default).
        #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
        motion_gate: Option<String>,
        /// Turn ONNX Runtime's intra-op spinning on or off (default: the config default, off).
        #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
        spinning: Option<String>,
        /// `[inference] workers` (default: the config default for the cores and cameras).
        #[arg(long)]
        workers: Option<usize>,
        /// `[inference] intra_op_threads` (default: the config default for the cores).
        #[arg(long)]
        intra_op_threads: Option<usize>,
        /// Hardware profile: a built-in name (cpu, nvidia-dgpu, …) or a profile TOML.
        #[arg(long, default_value = "cpu")]
        profile: String,
        /// `[inference] ort_library`: the ONNX Runtime library to load (a GPU build for a GPU
        /// profile; default: the one found next to the binary or fetched by setup).
        #[arg(long)]
        ort_library: Option<PathBuf>,
        /// Measure the first count in this process and print one result line (used by the
        /// parent run for each count).
        #[arg(long, hide = true)]
        one: bool,
    },
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Detection + tracking over a video, scored against MOTChallenge ground truth
    /// (CLEAR-MOT: MOTA, MOTP, FP, FN, ID switches, fragmentations; IDF1, IDP, IDR).
    Mot {
        #[arg(long)]
        video: PathBuf,
        /// Ground truth, MOTChallenge format (frame,id,left,top,width,height,conf,…).
        #[arg(long)]
        gt: PathBuf,
        /// Frames to evaluate, 1-based inclusive (`A-B`); frame N is the N-th decoded frame.
        /// Default: the ground truth's first to last frame.
        #[arg(long)]
        frames: Option<String>,
        /// Model manifest (models/<name>/model.toml) or its directory.
        #[arg(long, short, default_value = "models/nanodet-g-coco-416-int8")]
        model: PathBuf,
        /// Width frames are scaled to before detection.
        #[arg(long, default_value_t = 768)]
        width: u32,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Pixel size of the ground-truth coordinates (`WxH`). Default: the video's size.
        #[arg(long)]
        gt_size: Option<String>,
        /// Class label to track and score.
        #[arg(long, default_value = "person")]
        class: String,
        /// Detector score threshold. Default: the tracker's `low_score`.
        #[arg(long)]
        score_threshold: Option<f32>,
        /// Tracker parameter override, `KEY=VALUE` (keys of [cameras.tracker]); repeatable.
        #[arg(long = "tracker", value_name = "KEY=VALUE")]
        tracker: Vec<String>,
        /// Write the detections to this file (MOT det format, GT pixels).
        #[arg(long)]
        save_dets: Option<PathBuf>,
        /// Read detections from this file (as written by --save-dets) instead of running the model.
        #[arg(long, conflicts_with = "save_dets")]
        dets: Option<PathBuf>,
        /// Write the tracker output to this file (MOTChallenge result format, GT pixels).
        #[arg(long)]
        save_tracks: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Labelled clips through the real frame path (offline, every analysed frame): count
    /// error per line and direction, event precision/recall, time to alarm, frames/s.
    Scenarios {
        /// Scenario manifest (TOML; see tests/scenarios/README.md).
        #[arg(long)]
        manifest: PathBuf,
        /// Only these scenarios (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        clips: Vec<String>,
        /// Analyse at most this many seconds of each clip.
        #[arg(long)]
        max_secs: Option<f64>,
        /// Replay looped scenarios (`loop_secs`) to at most this many seconds of camera time.
        #[arg(long)]
        loop_secs: Option<f64>,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Write every analysed frame's detections, tracks and counts to
        /// `DIR/<scenario>.jsonl` (for diagnosis).
        #[arg(long, value_name = "DIR")]
        dump: Option<PathBuf>,
        /// Run a model of the manifest from another manifest file, `NAME=PATH` (e.g.
        /// `default=models/nanodet-g-coco-416-int8/model.toml`); repeatable.
        #[arg(long = "model", value_name = "NAME=PATH")]
        models: Vec<String>,
        /// Turn every scenario camera's motion gate on or off (`[cameras.motion_gate]`),
        /// whatever the manifest says: what gating costs, on the same clips.
        #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
        motion_gate: Option<String>,
    },
    /// The masker's recall on hand-labelled frames: labelled faces (≥ 20 px wide) and plates
    /// (≥ 40 px wide) masked, the faces an independent detector (CenterFace) finds that were
    /// left unmasked, and the masking cost per frame.
    Masking {
        /// Labels (TOML; see tests/masking/labels.toml).
        #[arg(long)]
        labels: PathBuf,
        /// Folder the labels' clip paths are relative to.
        #[arg(long, default_value = "../shared/media")]
        media: PathBuf,
        /// The masker's face model.
        #[arg(long, default_value = "models/blazeface-back-256/model.toml")]
        face_model: PathBuf,
        /// The masker's object detector (people and vehicles).
        #[arg(long, short, default_value = "models/nanodet-g-coco-416/model.toml")]
        model: PathBuf,
        /// The independent face detector; `none` to skip it.
        #[arg(long, default_value = "models/centerface/model.toml")]
        checker: String,
        /// Only clips whose path contains one of these (comma-separated).
        #[arg(long, value_delimiter = ',')]
        clips: Vec<String>,
        /// At most this many labelled frames per clip (the first in the file).
        #[arg(long)]
        max_frames: Option<usize>,
        /// Also mask every N-th frame of each labelled clip; the independent detector checks
        /// those (no hand labels there), and they count in the cost.
        #[arg(long, value_name = "N")]
        sweep: Option<u64>,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Write every frame as PNG to DIR, and masked, labels outlined green and checker faces
        /// magenta (`-masked.png`).
        #[arg(long, value_name = "DIR")]
        dump: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token; it is printed once and only its hash is stored.
    Create {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, default_value = "cli")]
        name: String,
        /// viewer, operator, installer, admin or platform (machines: feed, events, clips).
        #[arg(long, default_value = "admin")]
        role: String,
        /// Limit the token to these cameras (comma-separated ids).
        #[arg(long)]
        cameras: Option<String>,
        /// Limit the token to the cameras in these grid cells (comma-separated).
        #[arg(long)]
        grid_cells: Option<String>,
    },
    /// Revoke a token by id (it stops working at once).
    Revoke {
        #[arg(long, short)]
        config: PathBuf,
        id: String,
    },
    /// List the tokens (never the tokens themselves).
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user; the password is asked for (no echo) or read from standard input.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        /// viewer, operator, installer or admin.
        #[arg(long)]
        role: String,
        /// Limit the user to these cameras (comma-separated ids).
        #[arg(long)]
        cameras: Option<String>,
        /// Limit the user to the cameras in these grid cells (comma-separated).
        #[arg(long)]
        grid_cells: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        username: String,
    },
    /// Set a user's password (ends their sessions, lifts a login lockout).
    Passwd {
        #[arg(long, short)]
        config: PathBuf,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        username: String,
    },
    /// List the users.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    // Files 0600, directories 0700: footage, database, snapshots, exports (docs/security.md).
    gridwatch::store::set_private_umask();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRIDWATCH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Run { config } => load(&config).and_then(gridwatch::app::run),
        Cmd::Check { config } => return gridwatch::check::run(&config),
        Cmd::Verify { package, key } => {
            return gridwatch::evidence::run_verify(&package, key.as_deref())
        }
        Cmd::Detect { model, image, video, frames, width, threads, json } => {
            gridwatch::cli::detect(
                &model,
                image.as_deref(),
                video.as_deref(),
                frames,
                width,
                threads,
                json,
            )
        }
        Cmd::BenchFire { videos, width, frames, every } => videos.iter().try_for_each(|v| {
            println!("{}", v.display());
            gridwatch::bench::fire::fire_cost(v, width, frames, every)
                .map(|c| gridwatch::bench::fire::print(&c))
        }),
        Cmd::Bench {
            what: None,
            video: Some(video),
            model: Some(model),
            frames,
            width,
            threads,
        } => gridwatch::bench::run(&video, &model, frames, width, threads),
        Cmd::Bench { what: None, .. } => {
            Err(anyhow::anyhow!("bench: --video and --model are required"))
        }
        Cmd::Bench {
            what:
                Some(BenchCmd::Capacity {
                    clip,
                    cameras,
                    busy_clip,
                    busy,
                    detect_clip,
                    busy_detect_clip,
                    model,
                    detect_fps,
                    warmup_secs,
                    secs,
                    record,
                    motion_gate,
                    spinning,
                    workers,
                    intra_op_threads,
                    profile,
                    ort_library,
                    one,
                }),
            ..
        } => gridwatch::bench::capacity::run(&gridwatch::bench::capacity::Options {
            clip,
            cameras,
            busy_clip,
            busy,
            detect_clip,
            busy_detect_clip,
            model,
            detect_fps,
            warmup_secs,
            secs,
            record: record == "on",
            motion_gate: motion_gate.map(|g| g == "on"),
            spinning: spinning.map(|s| s == "on"),
            workers,
            intra_op_threads,
            profile,
            ort_library,
            one,
        }),
        Cmd::BenchTiles { videos, model, fps, width, secs, grid, overlap, threads } => {
            gridwatch::bench::tiles::run(&videos, &model, fps, width, secs, grid, overlap, threads)
        }
        Cmd::BenchRecord { secs, bitrate_kbps } => {
            gridwatch::bench::record_cost(secs, bitrate_kbps)
        }
        Cmd::BenchMaskClip { clip, model, face_model, threads } => {
            gridwatch::bench::mask_clip_cost(&clip, &model, &face_model, threads)
        }
        Cmd::BenchUplink { changes, cameras, video, model, secs } => {
            gridwatch::bench::uplink::drain(changes, cameras.max(1)).and_then(|()| {
                match (video, model) {
                    (Some(v), Some(m)) => gridwatch::bench::uplink::latency(&v, &m, secs),
                    _ => Ok(()),
                }
            })
        }
        Cmd::BenchConnections { video, model, clients, secs, addresses, fd_limit, box_bin } => {
            let model = if model.is_dir() { model.join("model.toml") } else { model };
            let o = gridwatch::bench::connections::Options {
                video,
                model,
                clients,
                secs,
                addresses,
                fd_limit,
                box_bin,
            };
            gridwatch::bench::connections::run(&o)
        }
        Cmd::Eval {
            cmd:
                EvalCmd::Mot {
                    video,
                    gt,
                    frames,
                    model,
                    width,
                    threads,
                    gt_size,
                    class,
                    score_threshold,
                    tracker,
                    save_dets,
                    dets,
                    save_tracks,
                    json,
                },
        } => {
            let files = (save_dets, dets, save_tracks);
            eval_mot(
                video,
                gt,
                frames,
                model,
                width,
                threads,
                gt_size,
                class,
                score_threshold,
                &tracker,
                files,
                json,
            )
        }
        Cmd::Eval {
            cmd:
                EvalCmd::Scenarios {
                    manifest,
                    clips,
                    max_secs,
                    loop_secs,
                    threads,
                    json,
                    dump,
                    models,
                    motion_gate,
                },
        } => eval_scenarios(
            &manifest,
            gridwatch::eval::scenarios::Options {
                only: clips,
                max_secs,
                loop_secs,
                threads,
                dump,
                motion_gate: motion_gate.map(|g| g == "on"),
            },
            json,
            &models,
        ),
        Cmd::Eval {
            cmd:
                EvalCmd::Masking {
                    labels,
                    media,
                    face_model,
                    model,
                    checker,
                    clips,
                    max_frames,
                    sweep,
                    threads,
                    json,
                    dump,
                },
        } => eval_masking(
            gridwatch::eval::masking::Options {
                labels,
                media,
                face_model,
                model,
                checker: (checker != "none").then(|| PathBuf::from(checker)),
                only: clips,
                max_frames,
                sweep,
                threads,
                dump,
            },
            json,
        ),
        Cmd::Token { cmd } => token(cmd),
        Cmd::User { cmd } => user(cmd),
        Cmd::RtspServe { video, port, path, sub_width: None, .. } => {
            gridwatch::cli::rtsp_serve(&video, port, &path)
        }
        Cmd::RtspServe { video, port, path, sub_width: Some(w), sub_path } => {
            gridwatch::cli::rtsp_serve_two_sizes(&video, port, &path, &sub_path, w)
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn token(cmd: TokenCmd) -> anyhow::Result<()> {
    use gridwatch::accounts;
    match cmd {
        TokenCmd::Create { config, name, role, cameras, grid_cells } => accounts::token_create(
            &load(&config)?,
            &name,
            &role,
            cameras.as_deref(),
            grid_cells.as_deref(),
        ),
        TokenCmd::Revoke { config, id } => accounts::token_revoke(&load(&config)?, &id),
        TokenCmd::List { config } => accounts::token_list(&load(&config)?),
    }
}

fn user(cmd: UserCmd) -> anyhow::Result<()> {
    use gridwatch::accounts;
    match cmd {
        UserCmd::Add { config, role, cameras, grid_cells, password_stdin, username } => {
            accounts::user_add(
                &load(&config)?,
                &username,
                &role,
                cameras.as_deref(),
                grid_cells.as_deref(),
                password_stdin,
            )
        }
        UserCmd::Passwd { config, password_stdin, username } => {
            accounts::user_passwd(&load(&config)?, &username, password_stdin)
        }
        UserCmd::List { config } => accounts::user_list(&load(&config)?),
    }
}

#[allow(clippy::too_many_arguments)]
fn eval_mot(
    video: PathBuf,
    gt: PathBuf,
    frames: Option<String>,
    model: PathBuf,
    width: u32,
    threads: usize,
    gt_size: Option<String>,
    class: String,
    score_threshold: Option<f32>,
    tracker: &[String],
    (save_dets, dets, save_tracks): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
    json: bool,
) -> anyhow::Result<()> {
    use gridwatch::eval;
    let opts = eval::MotOptions {
        video,
        gt,
        frames: frames.as_deref().map(eval::parse_range).transpose()?,
        model,
        width,
        threads,
        gt_size: gt_size.as_deref().map(eval::parse_size).transpose()?,
        class,
        score_threshold,
        tracker: eval::tracker_config(tracker)?,
        dets_in: dets,
        dets_out: save_dets,
        tracks_out: save_tracks,
    };
    let report = eval::run_mot(&opts)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", eval::format_report(&report));
    }
    Ok(())
}

fn eval_scenarios(
    manifest: &std::path::Path,
    opts: gridwatch::eval::scenarios::Options,
    json: bool,
    models: &[String],
) -> anyhow::Result<()> {
    use gridwatch::eval::scenarios;
    if opts.max_secs.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        anyhow::bail!("--max-secs: must be a positive number of seconds");
    }
    if opts.loop_secs.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        anyhow::bail!("--loop-secs: must be a positive number of seconds");
    }
    let mut m = scenarios::Manifest::load(manifest)?;
    for spec in models {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--model {spec}: expected NAME=PATH"))?;
        m.use_model(name, std::path::Path::new(path))?;
    }
    let report = scenarios::run(&m, &opts, &mut |line| eprintln!("{line}"))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", scenarios::format_report(&report));
    }
    Ok(())
}

fn eval_masking(opts: gridwatch::eval::masking::Options, json: bool) -> anyhow::Result<()> {
    use gridwatch::eval::masking;
    let report = masking::run(&opts, &mut |line| eprintln!("{line}"))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", masking::format_report(&report));
    }
    Ok(())
}

fn load(path: &std::path::Path) -> anyhow::Result<gridwatch::config::Config> {
    Ok(gridwatch::config::Config::load(path)?)
}
