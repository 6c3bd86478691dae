//! The Debian package (tools/build-deb.sh, packaging/): built from this test build's binary,
//! its control fields, contents and modes; the packaged config and models pass
//! `gridwatch check` from the unpacked tree; the systemd unit passes `systemd-analyze
//! verify` and carries `Type=notify`, the watchdog and the hardening; and the packaged
//! binary speaks the notify protocol as systemd would see it (READY=1 once serving,
//! WATCHDOG=1 at half `WATCHDOG_USEC`, STOPPING=1 on SIGTERM, then a clean exit).
//! Skips with a message where dpkg-deb, dpkg-shlibdeps or systemd-analyze is missing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, repo};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Builds the package into `dir` and unpacks it under `dir/root`; returns the .deb.
fn build(dir: &Path) -> PathBuf {
    let (ok, out, err) = run(Command::new(repo().join("tools/build-deb.sh"))
        .args(["--binary", bin(), "--out"])
        .arg(dir));
    assert!(ok, "build-deb failed:\n{out}\n{err}");
    let deb = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    assert!(deb.is_file(), "no package at {}: {out}", deb.display());
    let (ok, _, err) = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir.join("root")));
    assert!(ok, "dpkg-deb -x: {err}");
    deb
}

/// The packaged config with its absolute paths moved into the unpacked tree `root`, its data
/// dir in `data`, listening on `port`.
fn config_in(root: &Path, data: &Path, port: u16) -> String {
    let text = std::fs::read_to_string(root.join("etc/gridwatch/gridwatch.toml")).unwrap();
    let r = root.display().to_string();
    text.replace("\"/usr/", &format!("\"{r}/usr/"))
        .replace("\"/var/lib/gridwatch\"", &format!("\"{}\"", data.display()))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
}

#[test]
fn the_debian_package_installs_a_hardened_notify_service() {
    for tool in ["dpkg-deb", "dpkg-shlibdeps", "systemd-analyze", "strip"] {
        if !have(tool) {
            eprintln!("SKIP: {tool} is missing (make setup installs it)");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());
    let root = dir.path().join("root");

    // Control fields.
    let field = |f: &str| {
        let (ok, out, err) = run(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(f));
        assert!(ok, "dpkg-deb -f {f}: {err}");
        out.trim().to_string()
    };
    assert_eq!(field("Package"), "gridwatch");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let depends = field("Depends");
    for dep in ["adduser", "libgstreamer1.0-0", "libopencv-core", "gstreamer1.0-libav"] {
        assert!(depends.contains(dep), "Depends lacks {dep}: {depends}");
    }
    let (ok, conffiles, err) =
        run(Command::new("dpkg-deb").arg("--info").arg(&deb).arg("conffiles"));
    assert!(ok && conffiles.trim() == "/etc/gridwatch/gridwatch.toml", "{conffiles}{err}");

    // Contents and modes.
    let mode = |p: &str| {
        let m = std::fs::metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        m.permissions().mode() & 0o7777
    };
    assert_eq!(mode("usr/bin/gridwatch"), 0o755);
    assert_eq!(mode("etc/gridwatch/gridwatch.toml"), 0o640, "the config may hold secrets");
    for p in [
        "usr/lib/gridwatch/libonnxruntime.so.1.32.0",
        "usr/share/gridwatch/models/nanodet-g-coco-416/model.toml",
        "usr/share/gridwatch/models/movenet-multipose-lightning-256/model.toml",
        "lib/systemd/system/gridwatch.service",
        "usr/share/doc/gridwatch/security.md",
    ] {
        assert!(root.join(p).is_file(), "{p} is not in the package");
    }
    let postinst = std::fs::read_to_string(repo().join("packaging/debian/postinst")).unwrap();
    assert!(postinst.contains("adduser --system") && postinst.contains("install -d -m 0700"));
    for script in ["postinst", "prerm", "postrm"] {
        let path = repo().join("packaging/debian").join(script);
        let (ok, _, err) = run(Command::new("sh").arg("-n").arg(&path));
        assert!(ok, "{script}: {err}");
    }

    // The packaged config and models pass `gridwatch check` from the unpacked tree.
    let data = dir.path().join("data");
    let cfg = dir.path().join("gridwatch.toml");
    std::fs::write(&cfg, config_in(&root, &data, common::free_port())).unwrap();
    let packaged = root.join("usr/bin/gridwatch");
    let (ok, out, err) = run(Command::new(&packaged).arg("check").arg("--config").arg(&cfg));
    assert!(ok && out.contains("all checks passed"), "check:\n{out}\n{err}");

    // The unit: systemd-analyze verify (against the host's targets), no complaint at all.
    let unit_dir = root.join("lib/systemd/system");
    for entry in std::fs::read_dir("/lib/systemd/system").unwrap().flatten() {
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if n.ends_with(".target") || n.ends_with(".slice") {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                std::fs::write(unit_dir.join(&name), bytes).unwrap();
            }
        }
    }
    let (ok, out, err) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg("lib/systemd/system/gridwatch.service"));
    assert!(ok && out.trim().is_empty() && err.trim().is_empty(), "verify:\n{out}\n{err}");
    let unit = std::fs::read_to_string(unit_dir.join("gridwatch.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=gridwatch",
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        "ReadWritePaths=/var/lib/gridwatch",
        "StateDirectoryMode=0700",
        "ExecStart=/usr/bin/gridwatch run --config /etc/gridwatch/gridwatch.toml",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "the unit lacks {line}");
    }

    // The notify protocol, as systemd sees it: a datagram socket in NOTIFY_SOCKET.
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut child = common::Proc(
        Command::new(&packaged)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification within 60 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let started = Instant::now();
    let mut seen = Vec::new();
    while !(seen.iter().any(|m| m == "READY=1")
        && seen.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3)
    {
        seen.push(next());
        assert!(started.elapsed() < Duration::from_secs(60), "{seen:?}");
    }
    // Three pings at 0.2 s apart (half of 0.4 s), not faster than asked.
    let pings = started.elapsed();
    assert!(pings >= Duration::from_millis(300), "{pings:?}: {seen:?}");
    let _ = Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status();
    let mut stopping = false;
    while !stopping {
        stopping = next() == "STOPPING=1";
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    let data_mode = std::fs::metadata(&data).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(data_mode.ok(), Some(0o700), "the data dir");
}
