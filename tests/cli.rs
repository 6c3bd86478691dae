//! `gridwatch check` / `run` on good and bad configs: bad ones exit non-zero naming the field.

mod common;
use common::*;
use std::process::Command;

fn write_cfg(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("gridwatch.toml");
    std::fs::write(&p, body).unwrap();
    p
}

fn base(extra_cam: &str, model: &str) -> String {
    format!(
        r#"box_id = "t"
data_dir = "data"
[models]
coco = "{model}"
[[cameras]]
id = "front-gate"
url = "{mp4}"
models = ["coco"]
{extra_cam}
"#,
        mp4 = pets_mp4().display()
    )
}

fn model() -> String {
    repo().join("models/nanodet-g-coco-416/model.toml").display().to_string()
}

fn run(args: &[&str], cfg: &std::path::Path) -> (i32, String) {
    let out = Command::new(bin()).args(args).arg("--config").arg(cfg).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_configs_fail_check_and_run_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (base("detect_fsp = 3", &model()), "detect_fsp"),
        (
            base("", &model()).replace(&pets_mp4().display().to_string(), "http://10.0.0.9/stream"),
            "cameras[0].url",
        ),
        (base("", "/nonexistent/model.toml"), "models.coco"),
    ];
    for (cfg, needle) in cases {
        let p = write_cfg(dir.path(), &cfg);
        for cmd in ["check", "run"] {
            let (code, text) = run(&[cmd], &p);
            assert_ne!(code, 0, "{cmd} accepted a bad config:\n{cfg}\n{text}");
            assert!(text.contains(needle), "{cmd}: message does not name `{needle}`:\n{text}");
        }
    }
    // Errors inside a camera also name the camera.
    let p = write_cfg(dir.path(), &base("detect_fsp = 3", &model()));
    assert!(run(&["check"], &p).1.contains("front-gate"));
}

#[test]
fn check_passes_on_the_demo_config() {
    let (code, text) = run(&["check"], &repo().join("config/demo.toml"));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("gstreamer elements") && text.contains("sha256 ok"), "{text}");
}

/// `check` prints the inference layout it would run, derived from the cores this process may
/// use (one core under `taskset`), and warns when the profile's GPU execution providers are
/// not in the ONNX Runtime build (the CPU one setup fetches).
#[test]
fn check_prints_the_layout_for_the_cores_and_the_missing_execution_providers() {
    let dir = tempfile::tempdir().unwrap();
    let one_core = |cfg: &std::path::Path| {
        let out = Command::new("taskset")
            .args(["-c", "0"])
            .arg(bin())
            .arg("check")
            .arg("--config")
            .arg(cfg)
            .output()
            .expect("taskset (util-linux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let line = |text: &str, what: &str| {
        text.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what}:\n{text}"))
            .to_string()
    };
    let p = write_cfg(dir.path(), &base("", &model()));
    let text = one_core(&p);
    assert_eq!(
        line(&text, "] inference:"),
        "[ ok ] inference: 1 worker(s) × 1 intra-op thread(s) on 1 core(s) (the default for the cores)"
    );
    assert_eq!(line(&text, "] execution providers:"), "[ ok ] execution providers: cpu available");
    // Set fields are kept.
    let p = write_cfg(
        dir.path(),
        &format!("{}[inference]\nworkers = 3\nintra_op_threads = 2\n", base("", &model())),
    );
    let l = line(&one_core(&p), "] inference:");
    assert!(l.contains("3 worker(s) × 2 intra-op thread(s)") && l.ends_with("(as set)"), "{l}");
    // The GPU profile on the CPU build of ONNX Runtime: its models would run on the CPU.
    let p = write_cfg(
        dir.path(),
        &format!("hardware_profile = \"nvidia-dgpu\"\n{}", base("", &model())),
    );
    let l = line(&one_core(&p), "] execution providers:");
    assert!(
        l.starts_with(
            "[ ok ] execution providers: cpu available; WARNING: not in this ONNX \
                       Runtime build: tensorrt, cuda"
        ),
        "{l}"
    );
}

#[test]
fn check_reports_unreachable_camera_and_corrupt_model() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the model manifest pointing at a corrupted model file.
    let mdir = dir.path().join("m");
    std::fs::create_dir(&mdir).unwrap();
    let src = repo().join("models/nanodet-g-coco-416");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), mdir.join(e.file_name())).unwrap();
    }
    let onnx = std::fs::read_dir(&mdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "onnx"))
        .unwrap();
    let mut bytes = std::fs::read(&onnx).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&onnx, bytes).unwrap();
    let port = free_port(); // nothing listens there
    let cfg = base("", &mdir.join("model.toml").display().to_string()).replace(
        &pets_mp4().display().to_string(),
        &format!("rtsp://user:secret@127.0.0.1:{port}/x"),
    );
    let p = write_cfg(dir.path(), &cfg);
    let (code, text) = run(&["check"], &p);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("[FAIL] model coco") && text.contains("sha256"), "{text}");
    assert!(text.contains("[FAIL] camera front-gate"), "{text}");
    assert!(!text.contains("secret"), "password leaked: {text}");
    // `run` refuses the corrupt model too.
    let (code, text) = run(&["run"], &p);
    assert_ne!(code, 0);
    assert!(text.contains("sha256"), "{text}");
}

#[test]
fn detect_prints_people_on_a_pets_video_and_rejects_bad_input() {
    let model = repo().join("models/nanodet-g-coco-320");
    let out = Command::new(bin())
        .args(["detect", "--model"])
        .arg(&model)
        .args(["--video", PETS_AVI, "--frames", "3", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        let people =
            l["objects"].as_array().unwrap().iter().filter(|o| o["class"] == "person").count();
        assert!(people >= 3, "few people in {l}");
    }
    // A corrupt "image" and a missing video are errors that say which file.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, b"not a jpeg").unwrap();
    for args in [vec!["--image", bad.to_str().unwrap()], vec!["--video", "/nonexistent.mp4"]] {
        let out = Command::new(bin())
            .args(["detect", "--model"])
            .arg(&model)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(args[1]), "{err}");
    }
}

/// Runs `gridwatch <args> --config <cfg>` with `stdin` piped in → (exit code, stdout, stderr).
fn run_stdin(args: &[&str], cfg: &std::path::Path, stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(cfg)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `gridwatch user` and `gridwatch token` beside the running appliance: the accounts they
/// make work over real HTTP at once (login with a session cookie, a scoped platform token),
/// revocation is immediate, failed logins from the real client address lock out, and every
/// change is in the audit log.
#[test]
fn user_and_token_commands_work_beside_the_running_appliance() {
    let cams = r#"
[[cameras]]
id = "gate"
url = "/nonexistent/gate.mp4"
grid_cell = "C3"
models = ["coco"]
reconnect_min_secs = 1.0
reconnect_max_secs = 5.0
"#;
    let a = Appliance::start(cams);
    let cfg = a.dir.path().join("gridwatch.toml");
    let pw = "correct horse battery\n";

    let (code, _, err) =
        run_stdin(&["user", "add", "--role", "admin", "--password-stdin", "root"], &cfg, pw);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("user `root` added: role admin, all cameras"), "{err}");
    let (code, _, err) =
        run_stdin(&["user", "add", "--role", "admin", "--password-stdin", "ROOT"], &cfg, pw);
    assert!(code != 0 && err.contains("exists already"), "{err}");
    let (code, _, err) =
        run_stdin(&["user", "add", "--role", "viewer", "--password-stdin", "v"], &cfg, "short\n");
    assert!(code != 0 && err.contains("at least 10"), "{err}");
    let (code, _, err) =
        run_stdin(&["user", "add", "--role", "platform", "--password-stdin", "v"], &cfg, pw);
    assert!(code != 0 && err.contains("--role"), "{err}");
    let (code, _, err) = run_stdin(
        &["user", "add", "--role", "viewer", "--cameras", "nope", "--password-stdin", "v"],
        &cfg,
        pw,
    );
    assert!(code != 0 && err.contains("no camera `nope`"), "{err}");
    let (code, _, err) = run_stdin(
        &["user", "add", "--role", "operator", "--grid-cells", "C3", "--password-stdin", "olga"],
        &cfg,
        pw,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_stdin(&["user", "list"], &cfg, "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("root")
            && out.contains("admin")
            && out.contains("olga")
            && out.contains("grid cells C3"),
        "{out}"
    );

    // Log in over real HTTP; the cookie works on the API.
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let login = |user: &str, password: &str| {
        client
            .post(a.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .unwrap()
    };
    let r = login("olga", "correct horse battery");
    assert_eq!(r.status().as_u16(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let me: serde_json::Value = client
        .get(a.url("/api/v1/auth/me"))
        .header("cookie", &cookie)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("olga"), Some("operator")));
    assert_eq!(me["scope"], serde_json::json!({"cameras": [], "grid_cells": ["C3"]}));
    let cams: serde_json::Value = client
        .get(a.url("/api/v1/cameras"))
        .header("cookie", &cookie)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(cams["cameras"][0]["id"], "gate");
    assert_eq!(
        client
            .get(a.url("/api/v1/users"))
            .header("cookie", &cookie)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        403
    );

    // A platform token limited to the camera: feed yes, users no; revoked from the CLI: 401.
    let (code, out, err) = run_stdin(
        &["token", "create", "--name", "city", "--role", "platform", "--cameras", "gate"],
        &cfg,
        "",
    );
    assert_eq!(code, 0, "{err}");
    let token = out.trim().to_string();
    assert!(token.starts_with("gw_") && err.contains("role platform, cameras gate"), "{out}{err}");
    let get = |path: &str, t: &str| {
        client.get(a.url(path)).bearer_auth(t).send().unwrap().status().as_u16()
    };
    assert_eq!(get("/api/v1/feed", &token), 200);
    assert_eq!(get("/api/v1/users", &token), 403);
    // The same token is the HTTP Digest credential of /VIID/ (name "city", password the
    // token): the CLI stored its digest secret.
    let viid = |t: &str| {
        let uri = "/VIID/Subscribes";
        let first = client.get(a.url(uri)).send().unwrap();
        assert_eq!(first.status().as_u16(), 401);
        let ch = first.headers()["www-authenticate"].to_str().unwrap().to_string();
        let nonce = ch.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
        let md5 = |x: String| hex::encode(<md5::Md5 as md5::Digest>::digest(x.as_bytes()));
        let ha1 = md5(format!("city:gridwatch:{t}"));
        let resp = md5(format!("{ha1}:{nonce}:00000001:c0ffee:auth:{}", md5(format!("GET:{uri}"))));
        let auth = format!(
            "Digest username=\"city\", realm=\"gridwatch\", nonce=\"{nonce}\", uri=\"{uri}\", qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{resp}\""
        );
        client.get(a.url(uri)).header("authorization", auth).send().unwrap().status().as_u16()
    };
    assert_eq!(viid(&token), 200);
    let (code, out, _) = run_stdin(&["token", "list"], &cfg, "");
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.contains("city")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("platform") && line.contains("cameras gate"), "{line}");
    let id = line.split_whitespace().next().unwrap().to_string();
    let (code, _, err) = run_stdin(&["token", "revoke", &id], &cfg, "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(get("/api/v1/feed", &token), 401);
    assert_eq!(viid(&token), 401, "a revoked token's digest is refused");
    let (code, _, err) = run_stdin(&["token", "revoke", &id], &cfg, "");
    assert!(code != 0 && err.contains("no active token"), "{err}");
    // The config's token keeps full access.
    assert_eq!(get("/api/v1/users", TOKEN), 200);

    // Five wrong passwords from this address lock the account from here: 429 + Retry-After.
    for _ in 0..4 {
        assert_eq!(login("olga", "wrong password 1").status().as_u16(), 401);
    }
    let r = login("olga", "wrong password 1");
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "900");
    let e: serde_json::Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "account_locked", "{e}");
    assert_eq!(
        login("olga", "correct horse battery").status().as_u16(),
        429,
        "locked even for the right password"
    );
    // An installer resets the password, which lifts the account's lock.
    let (code, _, err) =
        run_stdin(&["user", "passwd", "--password-stdin", "olga"], &cfg, "a new long password\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(login("olga", "a new long password").status().as_u16(), 200);
    assert_eq!(
        client
            .get(a.url("/api/v1/auth/me"))
            .header("cookie", &cookie)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401,
        "a new password ends the user's sessions"
    );

    // Audit: the CLI's changes (actor `cli`), the login, the failures from 127.0.0.1, the lockouts.
    let audit: serde_json::Value = client
        .get(a.url("/api/v1/audit?limit=1000"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let entries = audit["entries"].as_array().unwrap();
    let has = |action: &str, actor: &str| {
        entries.iter().any(|e| e["action"] == action && e["actor"] == actor)
    };
    for (action, actor) in [
        ("user_create", "cli"),
        ("token_create", "cli"),
        ("token_revoke", "cli"),
        ("password_change", "cli"),
        ("login", "user:olga"),
        ("login_failed", "anonymous"),
        ("login_lockout", "anonymous"),
    ] {
        assert!(has(action, actor), "no {action} by {actor} in {audit}");
    }
    assert!(
        entries.iter().any(|e| e["action"] == "login_failed" && e["address"] == "127.0.0.1"),
        "{audit}"
    );
    assert!(
        !audit.to_string().contains("correct horse") && !audit.to_string().contains(&token),
        "no secrets in the audit log"
    );
    // And the log names the failures and the lockout, without the passwords.
    let logs = a.logs();
    assert!(logs.contains("failed login") && logs.contains("login locked"), "{logs}");
    assert!(
        !logs.contains("wrong password 1") && !logs.contains("correct horse"),
        "a password in the log:\n{logs}"
    );
}

/// A box started with no credentials at all makes an API token and a first-run admin with
/// an unguessable name, and writes them to a 0600 file in the data dir; standard output
/// (the journal, under a service manager) says only where (issue 15, L1 and M2). Both work
/// over HTTP (the console's login); a restart makes none again. The console page is served
/// with its strict CSP.
#[test]
fn first_run_creates_a_token_and_an_admin_login_shown_once() {
    use std::os::unix::fs::PermissionsExt;
    let cams = r#"
[[cameras]]
id = "gate"
url = "/nonexistent/gate.mp4"
models = ["coco"]
"#;
    let mut a = Appliance::start(cams);
    a.stop();
    let cfg = a.dir.path().join("gridwatch.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("tokens_sha256"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg, text).unwrap();
    a.restart();
    let out = a.log("stdout");
    let file = a.data().join("first-run-credentials.txt");
    assert!(out.contains(&file.display().to_string()), "stdout names the file:\n{out}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let creds = std::fs::read_to_string(&file).unwrap();
    let value = |key: &str| {
        let line = creds
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("`{key}` not in the file:\n{creds}"));
        line.split('"').nth(1).unwrap().to_string()
    };
    let (token, username, password) =
        (value("api_token"), value("console_username"), value("console_password"));
    assert!(token.starts_with("gw_") && password.len() == 20, "{creds}");
    assert!(username.starts_with("admin-") && username.len() == 12, "not guessable: {username}");
    for secret in [&token, &password] {
        assert!(!out.contains(secret.as_str()), "a secret on stdout:\n{out}");
        assert!(!a.log("stderr").contains(secret.as_str()), "a secret in the log");
    }

    let client = reqwest::blocking::Client::new();
    let r = client.get(a.url("/api/v1/cameras")).bearer_auth(&token).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .post(a.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());
    let r = client
        .post(a.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "no user `admin` to aim at");
    let page = client.get(a.url("/")).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert!(page.text().unwrap().contains("<html"));

    a.stop();
    a.restart();
    let again = a.log("stdout");
    assert!(!again.contains(&token) && !again.contains(&password), "{again}");
    assert!(again.contains("still holds the first-run credentials"), "a reminder: {again}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), creds, "made once");
}

/// Issue 17: `check` compares the `min_age_days` floors with the budget at the camera's
/// measured recording rate, and prints the evidence signing key's public half.
#[test]
fn check_fails_when_the_min_age_floors_exceed_the_budget_and_prints_the_evidence_key() {
    use gridwatch::store::recordings::NewSegment;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens there: a recording RTSP camera
    let cfg = |max_bytes: u64| {
        base("[cameras.record]\nmin_age_days = 1.0", &model())
            .replace(&pets_mp4().display().to_string(), &format!("rtsp://127.0.0.1:{port}/x"))
            + &format!("[storage]\nmax_bytes = {max_bytes}\n")
    };
    let p = write_cfg(dir.path(), &cfg(100_000_000));
    let (_, text) = run(&["check"], &p);
    assert!(text.contains("[ ok ] storage floor") && text.contains("not measured yet"), "{text}");
    assert!(text.contains("[ ok ] evidence key: not created yet"), "{text}");
    // One hour of footage at 10 kB/s: a day needs 864 MB, the budget holds 100 MB.
    let data = dir.path().join("data");
    let store = gridwatch::store::Store::open(&data).unwrap();
    let now = time::OffsetDateTime::now_utc();
    for i in 0..360 {
        let start = now - time::Duration::hours(1) + time::Duration::seconds(10 * i);
        let rel = format!("recordings/front-gate/x/{i}.mp4");
        store
            .insert_segment(&NewSegment {
                camera_id: "front-gate".into(),
                path: rel,
                start,
                end: start + time::Duration::seconds(10),
                start_pts_ns: None,
                end_pts_ns: None,
                bytes: 100_000,
                codec: "h264".into(),
                frames: None,
                recovered: false,
            })
            .unwrap();
    }
    drop(store);
    let key = gridwatch::evidence::BoxKey::load_or_create(&data).unwrap().public();
    let (code, text) = run(&["check"], &p);
    assert_eq!(code, 1, "{text}");
    let line = text.lines().find(|l| l.contains("storage floor")).unwrap_or_default();
    assert!(
        line.starts_with("[FAIL]")
            && line.contains("front-gate")
            && line.contains("864.0 MB")
            && line.contains("storage.max_bytes"),
        "{text}"
    );
    assert!(text.contains(&key.public_base64()) && text.contains(&key.fingerprint()), "{text}");
    // A budget that holds it passes that line.
    let p = write_cfg(dir.path(), &cfg(2_000_000_000));
    let (_, text) = run(&["check"], &p);
    assert!(text.contains("[ ok ] storage floor: floors need 864.0 MB"), "{text}");
}
