//! `gridwatch user add|passwd|list` and `gridwatch token create|revoke|list`: accounts
//! managed on the box itself (by whoever can read its config and data dir), e.g. the first
//! admin user. Every change is in the audit log with actor `cli`. Passwords come from a
//! prompt without echo or from `--password-stdin`, never from an argument.

use std::io::{BufRead, Write};

use anyhow::{anyhow, bail, Context};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::{self, Role, Scope};
use crate::config::Config;
use crate::store::auth::{NewAudit, UserUpdate};
use crate::store::{self, Store};

/// The audit log's actor for command-line changes.
pub const CLI_ACTOR: &str = "cli";

fn open(cfg: &Config) -> anyhow::Result<Store> {
    Store::open_shared(&cfg.data_dir)
        .with_context(|| format!("opening data dir {}", cfg.data_dir.display()))
}

fn os_user() -> Option<String> {
    std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).ok()
}

fn audit(action: &'static str, target: String, detail: serde_json::Value) -> NewAudit {
    let mut detail = detail;
    if let (serde_json::Value::Object(m), Some(u)) = (&mut detail, os_user()) {
        m.insert("os_user".into(), u.into());
    }
    NewAudit::new(CLI_ACTOR, None, action).target(target).detail(detail)
}

fn parse_role(s: &str, human: bool) -> anyhow::Result<Role> {
    let allowed: Vec<&str> =
        Role::ALL.iter().filter(|r| !human || r.is_human()).map(|r| r.as_str()).collect();
    Role::parse(s)
        .filter(|r| !human || r.is_human())
        .ok_or_else(|| anyhow!("--role must be one of {}, got `{s}`", allowed.join(", ")))
}

/// `--cameras` / `--grid-cells`, checked against the config's cameras.
fn scope(
    cfg: &Config,
    cameras: Option<&str>,
    grid_cells: Option<&str>,
) -> anyhow::Result<Option<Scope>> {
    let Some(scope) = Scope::from_lists(cameras, grid_cells)
        .map_err(|m| anyhow!("--cameras/--grid-cells: {m}"))?
    else {
        return Ok(None);
    };
    for c in &scope.cameras {
        if !cfg.cameras.iter().any(|k| k.id == *c) {
            let known: Vec<&str> = cfg.cameras.iter().map(|k| k.id.as_str()).collect();
            bail!("--cameras: the config has no camera `{c}` (cameras: {})", known.join(", "));
        }
    }
    for g in &scope.grid_cells {
        if !cfg.cameras.iter().any(|k| k.grid_cell.as_deref() == Some(g.as_str())) {
            bail!("--grid-cells: no camera of the config is in grid cell `{g}`");
        }
    }
    Ok(Some(scope))
}

/// Reads a password: the first line of `input` (`--password-stdin`), or else twice from
/// the terminal without echo.
pub fn read_password(
    password_stdin: bool,
    input: &mut dyn BufRead,
    min_len: usize,
) -> anyhow::Result<String> {
    let pw = if password_stdin {
        let mut line = String::new();
        input.read_line(&mut line).context("reading the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let a = prompt_hidden("Password: ")?;
        auth::check_password(&a, min_len).map_err(|m| anyhow!(m))?;
        let b = prompt_hidden("Repeat the password: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        a
    };
    auth::check_password(&pw, min_len).map_err(|m| anyhow!(m))?;
    Ok(pw)
}

/// Prompts on the controlling terminal with echo off.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(|e| {
        anyhow!("no terminal to ask for the password ({e}); pipe it in with --password-stdin")
    })?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain old data; tcgetattr fills it for a valid fd.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        bail!("cannot read the terminal's settings: {}", std::io::Error::last_os_error());
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: fd is open; `quiet` is a valid termios derived from the current one.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        bail!("cannot turn the terminal's echo off: {}", std::io::Error::last_os_error());
    }
    let res = (|| {
        let mut w = &tty;
        w.write_all(prompt.as_bytes())?;
        w.flush()?;
        let mut line = String::new();
        std::io::BufReader::new(&tty).read_line(&mut line)?;
        Ok::<_, std::io::Error>(line.trim_end_matches(['\n', '\r']).to_string())
    })();
    // SAFETY: restores the settings read above on the same fd.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    res.context("reading the password from the terminal")
}

fn fmt_time(t: Option<OffsetDateTime>) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]Z");
    t.and_then(|t| t.format(&fmt).ok()).unwrap_or_else(|| "-".into())
}

pub fn user_add(
    cfg: &Config,
    username: &str,
    role: &str,
    cameras: Option<&str>,
    grid_cells: Option<&str>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    auth::validate_username(username).map_err(|m| anyhow!(m))?;
    let role = parse_role(role, true)?;
    let scope = scope(cfg, cameras, grid_cells)?;
    let store = open(cfg)?;
    if store.user_by_name(username)?.is_some() {
        bail!("a user named `{username}` exists already (change the password with `gridwatch user passwd`)");
    }
    let pw =
        read_password(password_stdin, &mut std::io::stdin().lock(), cfg.auth.min_password_len)?;
    let hash = auth::hash_password(&pw)?;
    let a = audit(
        "user_create",
        format!("user:{username}"),
        serde_json::json!({ "role": role, "scope": scope }),
    );
    let user =
        store.create_user(username, &hash, role, scope.as_ref(), &a, OffsetDateTime::now_utc())?;
    store.close()?;
    eprintln!(
        "user `{}` added: role {}, {}",
        user.username,
        user.role,
        Scope::describe(user.scope.as_ref())
    );
    Ok(())
}

pub fn user_passwd(cfg: &Config, username: &str, password_stdin: bool) -> anyhow::Result<()> {
    let store = open(cfg)?;
    let user =
        store.user_by_name(username)?.ok_or_else(|| anyhow!("no user named `{username}`"))?;
    let pw =
        read_password(password_stdin, &mut std::io::stdin().lock(), cfg.auth.min_password_len)?;
    let hash = auth::hash_password(&pw)?;
    let a = audit("password_change", format!("user:{}", user.username), serde_json::json!({}));
    let update = UserUpdate { password_hash: Some(hash), ..Default::default() };
    store.update_user(user.id, &update, &a, OffsetDateTime::now_utc())?;
    // A forgotten password usually comes with a locked account.
    store.login_unlock(&user.username)?;
    store.close()?;
    eprintln!(
        "password of `{}` changed; their sessions were ended and the account unlocked",
        user.username
    );
    Ok(())
}

pub fn user_list(cfg: &Config) -> anyhow::Result<()> {
    let store = open(cfg)?;
    let users = store.users()?;
    if users.is_empty() {
        eprintln!("no users (add one: gridwatch user add --config <file> --role admin <name>)");
        return Ok(());
    }
    println!("{:<24} {:<10} {:<9} {:<18} scope", "username", "role", "state", "last login");
    for u in users {
        println!(
            "{:<24} {:<10} {:<9} {:<18} {}",
            u.username,
            u.role.as_str(),
            if u.disabled { "disabled" } else { "enabled" },
            fmt_time(u.last_login_at),
            Scope::describe(u.scope.as_ref())
        );
    }
    Ok(())
}

pub fn token_create(
    cfg: &Config,
    name: &str,
    role: &str,
    cameras: Option<&str>,
    grid_cells: Option<&str>,
) -> anyhow::Result<()> {
    let role = parse_role(role, false)?;
    let scope = scope(cfg, cameras, grid_cells)?;
    let store = open(cfg)?;
    let token = store::try_generate_token()?;
    let detail = serde_json::json!({ "name": name, "role": role, "scope": scope });
    let info = store.create_token(
        name,
        &store::hash_token(&token),
        role,
        scope.as_ref(),
        CLI_ACTOR,
        |id| audit("token_create", format!("token:{id}"), detail),
        OffsetDateTime::now_utc(),
    )?;
    if let Some(ha1) = crate::api::platform_ha1(role, name, &token) {
        store.set_token_digest(info.id, &ha1)?;
    }
    store.close()?;
    println!("{token}");
    eprintln!(
        "token `{name}` ({}) created: role {}, {}; it is shown only now (the box stores its SHA-256)",
        info.id,
        info.role,
        Scope::describe(info.scope.as_ref())
    );
    Ok(())
}

pub fn token_revoke(cfg: &Config, id: &str) -> anyhow::Result<()> {
    let id = Uuid::parse_str(id)
        .map_err(|_| anyhow!("`{id}` is not a token id (see `gridwatch token list`)"))?;
    let store = open(cfg)?;
    let a = audit("token_revoke", format!("token:{id}"), serde_json::json!({}));
    if !store.revoke_token_audited(id, &a, OffsetDateTime::now_utc())? {
        bail!("no active token {id} (see `gridwatch token list`)");
    }
    store.close()?;
    eprintln!("token {id} revoked");
    Ok(())
}

pub fn token_list(cfg: &Config) -> anyhow::Result<()> {
    let store = open(cfg)?;
    println!(
        "{:<36} {:<20} {:<10} {:<18} {:<18} scope",
        "id", "name", "role", "created", "revoked"
    );
    for t in store.list_tokens()? {
        println!(
            "{:<36} {:<20} {:<10} {:<18} {:<18} {}",
            t.id,
            t.name,
            t.role.as_str(),
            fmt_time(Some(t.created_at)),
            fmt_time(t.revoked_at),
            Scope::describe(t.scope.as_ref())
        );
    }
    if !cfg.api.tokens_sha256.is_empty() {
        println!(
            "(and {} token(s) from the config's api.tokens_sha256, role admin)",
            cfg.api.tokens_sha256.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_from_stdin_follow_the_policy() {
        let mut ok = std::io::Cursor::new(b"long enough pw\nignored\n".to_vec());
        assert_eq!(read_password(true, &mut ok, 10).unwrap(), "long enough pw");
        let mut crlf = std::io::Cursor::new(b"long enough pw\r\n".to_vec());
        assert_eq!(read_password(true, &mut crlf, 10).unwrap(), "long enough pw");
        let mut short = std::io::Cursor::new(b"short\n".to_vec());
        assert!(read_password(true, &mut short, 10)
            .unwrap_err()
            .to_string()
            .contains("at least 10"));
        let mut empty = std::io::Cursor::new(Vec::new());
        assert!(read_password(true, &mut empty, 10).is_err());
    }
}
