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
    /// Measure decode-only, inference-only and full-pipeline throughput on a video.
    Bench {
        #[arg(long)]
        video: PathBuf,
        #[arg(long, short)]
        model: PathBuf,
        /// Frames to analyse in each stage.
        #[arg(long, default_value_t = 300)]
        frames: u64,
        #[arg(long, default_value_t = 640)]
        width: u32,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Manage API tokens (stored hashed in the database).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Serve a video file as a live RTSP camera (for tests and demos).
    RtspServe {
        #[arg(long)]
        video: PathBuf,
        #[arg(long, default_value_t = 8554)]
        port: u16,
        #[arg(long, default_value = "/cam")]
        path: String,
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
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRIDWATCH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Run { config } => load(&config).and_then(gridwatch::app::run),
        Cmd::Check { config } => return gridwatch::check::run(&config),
        Cmd::Detect { model, image, video, frames, width, threads, json } => {
            gridwatch::cli::detect(&model, image.as_deref(), video.as_deref(), frames, width, threads, json)
        }
        Cmd::Bench { video, model, frames, width, threads } => {
            gridwatch::bench::run(&video, &model, frames, width, threads)
        }
        Cmd::Token { cmd: TokenCmd::Create { config, name } } => {
            load(&config).and_then(|c| gridwatch::cli::token_create(&c, &name))
        }
        Cmd::RtspServe { video, port, path } => gridwatch::cli::rtsp_serve(&video, port, &path),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<gridwatch::config::Config> {
    Ok(gridwatch::config::Config::load(path)?)
}
