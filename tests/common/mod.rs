//! Helpers for end-to-end tests: run the real `gridwatch` binary as a child process with a
//! temporary data dir and talk to its real HTTP API.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "gw_test_token_for_e2e";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gridwatch")
}

pub fn pets_mp4() -> PathBuf {
    repo().join("test-videos/pets09-s2l1.mp4")
}

pub const PETS_AVI: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

pub fn token_hash() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` every 200 ms until it returns Some, or panics after `secs` with `what`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub struct Appliance {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    data_dir: PathBuf,
    /// How many times this appliance has been started (names the log files).
    runs: u32,
}

impl Appliance {
    /// Writes `cameras_toml` into a config with a temp data dir and the test token, and
    /// starts `gridwatch run`.
    pub fn start(cameras_toml: &str) -> Appliance {
        Self::start_at(None, cameras_toml)
    }

    /// Like `start`, with the data dir at `data_dir` (default: `<temp dir>/data`).
    /// `cameras_toml` may begin with other top-level tables such as `[storage]`.
    pub fn start_at(data_dir: Option<PathBuf>, cameras_toml: &str) -> Appliance {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = data_dir.unwrap_or_else(|| dir.path().join("data"));
        let port = free_port();
        let cfg = format!(
            r#"box_id = "e2e"
data_dir = "{data}"
[api]
listen = "127.0.0.1:{port}"
tokens_sha256 = ["{hash}"]
[inference]
intra_op_threads = 1
[models]
coco = "{repo}/models/nanodet-g-coco-320/model.toml"
{cameras_toml}
"#,
            data = data_dir.display(),
            hash = token_hash(),
            repo = repo().display(),
        );
        std::fs::write(dir.path().join("gridwatch.toml"), cfg).unwrap();
        let mut a = Appliance { child: None, port, dir, data_dir, runs: 0 };
        a.restart();
        a
    }

    /// Starts `gridwatch run` again with the same config and data dir (after `stop` or
    /// `kill9`) and waits for the API. Each run logs to `stdout[-N].log` / `stderr[-N].log`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        let suffix = if self.runs == 0 { String::new() } else { format!("-{}", self.runs) };
        self.runs += 1;
        let log = |n: &str| {
            std::fs::File::create(self.dir.path().join(format!("{n}{suffix}.log"))).unwrap()
        };
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(self.dir.path().join("gridwatch.toml"))
            .env("GRIDWATCH_LOG", "info")
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for(90, "the API to answer /api/v1/health", || self.get("/api/v1/health", None).ok());
    }

    /// SIGKILL (no chance to clean up), then reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A log file of the latest run (`stdout` or `stderr`).
    pub fn log(&self, name: &str) -> String {
        let suffix = if self.runs <= 1 { String::new() } else { format!("-{}", self.runs - 1) };
        std::fs::read_to_string(self.dir.path().join(format!("{name}{suffix}.log")))
            .unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET with an optional bearer token → (status, content-type, body).
    pub fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, String, Vec<u8>), String> {
        let client =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut req = client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok((status, ct, resp.bytes().map_err(|e| e.to_string())?.to_vec()))
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, _, body) = self.get(path, Some(TOKEN)).unwrap();
        assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    pub fn camera(&self, id: &str) -> serde_json::Value {
        let cams = self.get_json("/api/v1/cameras");
        let list = cams
            .as_array()
            .cloned()
            .or_else(|| cams["cameras"].as_array().cloned())
            .unwrap_or_default();
        list.into_iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("camera {id} not listed: {cams}"))
    }

    /// Both logs of the latest run.
    pub fn logs(&self) -> String {
        format!("--- stdout ---\n{}\n--- stderr ---\n{}", self.log("stdout"), self.log("stderr"))
    }

    pub fn data(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// SIGTERM, then waits for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_quiet(args: &[&str], log: &Path) -> Proc {
    Proc(
        Command::new(bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}
