//! Access control: roles and what they may do, per-camera scopes, password hashing.
//! The HTTP side (sessions, tokens, lockout) is in api/auth.rs, the tables in
//! store/auth.rs. See docs/api.md "Authentication and access control".

use std::fmt;

use argon2::password_hash::{
    Output, ParamsString, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::{Deserialize, Serialize};

/// Who a user or token is. Human roles nest: each can do everything the one before it can
/// (`viewer` ⊂ `operator` ⊂ `installer` ⊂ `admin`). `platform` is for machines: it sees
/// like a viewer and may read the uplink status and metrics, but never reviews or configures.
/// `open_data` is for re-publishers: it reads only the aggregated open-data statistics (no
/// camera, no id, no image; docs/api.md "Open data").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Installer,
    Admin,
    Platform,
    OpenData,
}

/// What a request needs (the router declares one per operation, see `api::routes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Cameras, events, snapshots, clips, recordings, exports, statistics, the feed.
    See,
    /// Review workflow of events (acknowledge, resolve, false alarm).
    Review,
    /// Evidence locks: lock an event's or a time range's footage against retention.
    Lock,
    /// Release an evidence lock (admins only; audited).
    Unlock,
    /// Box-wide operational status: uplink delivery, Prometheus metrics.
    Monitor,
    /// Cameras, zones and rules (the configuration endpoints, when they exist).
    Configure,
    /// Users, tokens and the audit log.
    Administer,
    /// Aggregated open-data statistics (grid cell × hour × class, small cells withheld).
    OpenData,
    /// Stills without masking of faces and plates (`?unmasked=1`), audited on every use.
    ViewUnmasked,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::See,
        Permission::Review,
        Permission::Lock,
        Permission::Unlock,
        Permission::Monitor,
        Permission::Configure,
        Permission::Administer,
        Permission::OpenData,
        Permission::ViewUnmasked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::See => "see",
            Permission::Review => "review",
            Permission::Lock => "lock",
            Permission::Unlock => "unlock",
            Permission::Monitor => "monitor",
            Permission::Configure => "configure",
            Permission::Administer => "administer",
            Permission::OpenData => "open_data",
            Permission::ViewUnmasked => "view_unmasked",
        }
    }

    /// Box-wide permissions are refused to principals limited to some cameras.
    pub fn box_wide(self) -> bool {
        matches!(self, Permission::Monitor | Permission::Configure | Permission::Administer)
    }
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Operator,
        Role::Installer,
        Role::Admin,
        Role::Platform,
        Role::OpenData,
    ];
    /// Roles a user (a person with a password) may have.
    pub const HUMAN: [Role; 4] = [Role::Viewer, Role::Operator, Role::Installer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Installer => "installer",
            Role::Admin => "admin",
            Role::Platform => "platform",
            Role::OpenData => "open_data",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The one place roles map to permissions (docs/api.md has the same table).
    pub fn can(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Viewer => matches!(p, See | OpenData),
            Role::Operator => matches!(p, See | Review | Lock | OpenData | ViewUnmasked),
            Role::Installer => {
                matches!(p, See | Review | Lock | Monitor | Configure | OpenData | ViewUnmasked)
            }
            Role::Admin => true,
            Role::Platform => matches!(p, See | Monitor | OpenData),
            Role::OpenData => matches!(p, OpenData),
        }
    }

    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|p| self.can(*p)).collect()
    }

    pub fn is_human(self) -> bool {
        !matches!(self, Role::Platform | Role::OpenData)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit to some cameras: those listed in `cameras`, those whose configured `grid_cell`
/// is listed in `grid_cells`, and events tagged with a listed grid cell. A principal
/// without a scope (`None`) sees every camera. A scope lists at least one camera or cell.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default)]
    pub cameras: Vec<String>,
    #[serde(default)]
    pub grid_cells: Vec<String>,
}

impl Scope {
    /// Sorted, deduplicated; error when empty or when an entry is not a valid id.
    pub fn normalised(mut self) -> Result<Scope, String> {
        for (what, list) in [("cameras", &mut self.cameras), ("grid_cells", &mut self.grid_cells)] {
            for v in list.iter() {
                if v.is_empty()
                    || v.len() > 64
                    || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
                {
                    let shown = if v.len() > 64 {
                        format!("an id of {} bytes", v.len())
                    } else {
                        format!("`{}`", loggable(v))
                    };
                    return Err(format!(
                        "scope.{what}: {shown} is not a valid id (1–64 letters, digits, '-', '_', '.', ':')"
                    ));
                }
            }
            list.sort();
            list.dedup();
        }
        if self.cameras.is_empty() && self.grid_cells.is_empty() {
            return Err(
                "scope: list at least one camera or grid cell (no scope at all means every camera)"
                    .into(),
            );
        }
        Ok(self)
    }

    /// Parses the comma-separated lists of the command line (`--cameras a,b --grid-cells C3`).
    pub fn from_lists(
        cameras: Option<&str>,
        grid_cells: Option<&str>,
    ) -> Result<Option<Scope>, String> {
        let split = |s: Option<&str>| -> Vec<String> {
            s.map(|s| {
                s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
            })
            .unwrap_or_default()
        };
        if cameras.is_none() && grid_cells.is_none() {
            return Ok(None);
        }
        Scope { cameras: split(cameras), grid_cells: split(grid_cells) }.normalised().map(Some)
    }

    /// `cameras a, b; grid cells C3` (for messages and listings).
    pub fn describe(scope: Option<&Scope>) -> String {
        match scope {
            None => "all cameras".into(),
            Some(s) => {
                let mut parts = Vec::new();
                if !s.cameras.is_empty() {
                    parts.push(format!("cameras {}", s.cameras.join(", ")));
                }
                if !s.grid_cells.is_empty() {
                    parts.push(format!("grid cells {}", s.grid_cells.join(", ")));
                }
                parts.join("; ")
            }
        }
    }
}

/// Longest password accepted (hashing cost must not be a lever for clients).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Longest username (bytes); a longer one in a request is refused with a 400 before it is
/// logged or audited.
pub const MAX_USERNAME_BYTES: usize = 64;

/// A client-supplied name as it may go into the log and the audit log: control and other
/// non-printable characters escaped (no forged log lines), at most [`MAX_USERNAME_BYTES`]
/// characters kept (callers refuse longer input first; this is the second fence).
pub fn loggable(name: &str) -> String {
    let mut out: String =
        name.chars().take(MAX_USERNAME_BYTES).flat_map(char::escape_debug).collect();
    if name.chars().nth(MAX_USERNAME_BYTES).is_some() {
        out.push('…');
    }
    out
}

/// Usernames: 1–64 of ASCII letters, digits, `.`, `_`, `-`, `@`; compared case-insensitively.
pub fn validate_username(name: &str) -> Result<(), String> {
    if name.len() > MAX_USERNAME_BYTES {
        // Not echoed: the message must not carry a client's megabyte.
        return Err(format!(
            "the username is too long ({} bytes): use 1–64 letters, digits, '.', '_', '-' or '@'",
            name.len()
        ));
    }
    if name.is_empty()
        || name.len() > MAX_USERNAME_BYTES
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(format!(
            "username `{name}` is not valid: use 1–64 letters, digits, '.', '_', '-' or '@'"
        ));
    }
    Ok(())
}

/// The password policy: at least `min_len` characters, at most [`MAX_PASSWORD_BYTES`].
pub fn check_password(password: &str, min_len: usize) -> Result<(), String> {
    let n = password.chars().count();
    if n < min_len {
        return Err(format!("the password must have at least {min_len} characters (it has {n})"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("the password must have at most {MAX_PASSWORD_BYTES} bytes"));
    }
    if password.trim().is_empty() {
        return Err("the password must not be blank".into());
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("OS random generator failed: {0}")]
    Random(String),
}

/// Argon2id with the crate's defaults (m = 19 MiB, t = 2, p = 1: OWASP's recommendation),
/// as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) that carries its parameters.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC string (false for a malformed hash).
pub fn verify_password(stored: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A fixed hash to verify against, so that an unknown username costs as much time as a
/// wrong password (no user enumeration by timing).
fn dummy_hash() -> Option<&'static str> {
    use std::sync::OnceLock;
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("gridwatch-no-such-user").ok()).as_deref()
}

/// Verifies against a fixed hash (see [`dummy_hash`]).
pub fn burn_verify(password: &str) {
    if let Some(h) = dummy_hash() {
        let _ = verify_password(h, password);
    }
}

/// Largest argon2 memory accepted from a stored hash (KiB): 256 MiB. Ours use 19 MiB.
const MAX_M_COST_KIB: u32 = 256 * 1024;

/// [`verify_password`] in the caller's memory `blocks` (grown to the hash's `m` if needed).
fn verify_in(stored: &str, password: &str, blocks: &mut Vec<Block>) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(h) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(h.algorithm) else { return false };
    let version = match h.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&h) else { return false };
    if params.m_cost() > MAX_M_COST_KIB {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let need = params.block_count();
    if blocks.len() < need {
        blocks.resize(need, Block::default());
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else { return false };
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut blocks[..need])
        .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(out).is_ok_and(|o| o == expected)
}

/// [`hash_password`] in the caller's memory `blocks`.
fn hash_in(password: &str, blocks: &mut Vec<Block>) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    let mut salt_buf = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut salt_buf).map_err(|e| AuthError::Hash(e.to_string()))?;
    let argon = Argon2::default();
    let params = argon.params().clone();
    let need = params.block_count();
    if blocks.len() < need {
        blocks.resize(need, Block::default());
    }
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            raw_salt,
            &mut out,
            &mut blocks[..need],
        )
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| AuthError::Hash(e.to_string()))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| AuthError::Hash(e.to_string()))?),
    };
    Ok(phc.to_string())
}

/// Password work (argon2id hashing and checking) was refused: the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Bounded password work. Argon2id costs 19 MiB and tens of milliseconds a time on purpose,
/// so an unbounded number of parallel logins would cost unbounded memory. At most
/// `parallel` hashes or checks run at once, each in a memory buffer that is kept and reused
/// (so the memory of password work is `parallel` × 19 MiB, allocated once); up to `queued`
/// more wait for a turn (at most [`PasswordWork::MAX_WAIT`]); beyond that the caller gets
/// [`Busy`] at once.
pub struct PasswordWork {
    permits: tokio::sync::Semaphore,
    queued: usize,
    waiting: std::sync::atomic::AtomicUsize,
    buffers: std::sync::Mutex<Vec<Vec<Block>>>,
}

impl fmt::Debug for PasswordWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordWork")
            .field("available", &self.permits.available_permits())
            .field("queued", &self.queued)
            .finish()
    }
}

impl PasswordWork {
    /// The longest a caller waits in the queue before it is refused.
    pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    pub fn new(parallel: usize, queued: usize) -> PasswordWork {
        PasswordWork {
            permits: tokio::sync::Semaphore::new(parallel.max(1)),
            queued,
            waiting: std::sync::atomic::AtomicUsize::new(0),
            buffers: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with a memory buffer on a blocking thread, once a turn is free.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        use std::sync::atomic::Ordering;
        let permit = match self.permits.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queued {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(Busy);
                }
                let p = tokio::time::timeout(Self::MAX_WAIT, self.permits.acquire()).await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                match p {
                    Ok(Ok(p)) => p,
                    _ => return Err(Busy),
                }
            }
        };
        let mut buf =
            self.buffers.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        let res = tokio::task::spawn_blocking(move || {
            let out = f(&mut buf);
            (out, buf)
        })
        .await;
        drop(permit);
        match res {
            Ok((out, buf)) => {
                self.buffers.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
                Ok(out)
            }
            // The work panicked (it does not): its buffer is gone, the next one is new.
            Err(_) => Err(Busy),
        }
    }

    /// Whether `password` matches the stored PHC string.
    pub async fn verify(&self, stored: String, password: String) -> Result<bool, Busy> {
        self.run(move |b| verify_in(&stored, &password, b)).await
    }

    /// Spends the time of a check against a fixed hash (an unknown user); always false.
    pub async fn burn(&self, password: String) -> Result<bool, Busy> {
        self.run(move |b| {
            if let Some(h) = dummy_hash() {
                let _ = verify_in(h, &password, b);
            }
            false
        })
        .await
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<Result<String, AuthError>, Busy> {
        self.run(move |b| hash_in(&password, b)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_platform_is_narrow() {
        use Permission::*;
        for p in Permission::ALL {
            // Each human role can do what the one before it can.
            for w in Role::HUMAN.windows(2) {
                assert!(!w[0].can(p) || w[1].can(p), "{} can {p:?} but {} cannot", w[0], w[1]);
            }
        }
        assert_eq!(Role::Viewer.permissions(), [See, OpenData]);
        assert_eq!(Role::Operator.permissions(), [See, Review, Lock, OpenData, ViewUnmasked]);
        assert_eq!(
            Role::Installer.permissions(),
            [See, Review, Lock, Monitor, Configure, OpenData, ViewUnmasked]
        );
        // Releasing an evidence lock is for admins only.
        assert!(Role::HUMAN
            .iter()
            .chain(&[Role::Platform, Role::OpenData])
            .all(|r| r.can(Unlock) == (*r == Role::Admin)));
        assert_eq!(Role::Admin.permissions(), Permission::ALL);
        assert_eq!(Role::Platform.permissions(), [See, Monitor, OpenData]);
        assert_eq!(Role::OpenData.permissions(), [OpenData]);
        assert!(!Role::OpenData.is_human());
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn passwords_are_argon2id_salted_and_verified() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password(&a, "correct horse"));
        assert!(!verify_password(&a, "correct horsf"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(!verify_password(&a, &"x".repeat(MAX_PASSWORD_BYTES + 1)));
        burn_verify("anything");
    }

    #[test]
    fn pooled_work_hashes_and_checks_like_the_crate_in_reused_memory() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let work = PasswordWork::new(1, 4);
        rt.block_on(async {
            let a = work.hash("correct horse".into()).await.unwrap().unwrap();
            assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
            // The crate's verifier accepts ours and ours accepts the crate's.
            assert!(verify_password(&a, "correct horse"));
            let b = hash_password("battery staple").unwrap();
            assert!(work.verify(b.clone(), "battery staple".into()).await.unwrap());
            assert!(!work.verify(b.clone(), "battery stapl".into()).await.unwrap());
            assert!(!work.verify("junk".into(), "battery staple".into()).await.unwrap());
            assert!(!work.verify(b, "x".repeat(MAX_PASSWORD_BYTES + 1)).await.unwrap());
            assert!(!work.burn("anything".into()).await.unwrap());
        });
        // One buffer, reused by every call.
        assert_eq!(work.buffers.lock().unwrap().len(), 1);
    }

    #[test]
    fn work_beyond_the_queue_is_refused() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let work = std::sync::Arc::new(PasswordWork::new(1, 1));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        rt.block_on(async {
            // One runs (held until told), one waits, the third is refused.
            let w = work.clone();
            let running = tokio::spawn(async move {
                w.run(move |_| {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                })
                .await
            });
            tokio::task::spawn_blocking(move || started_rx.recv().unwrap()).await.unwrap();
            let w = work.clone();
            let waiting = tokio::spawn(async move { w.run(|_| 7).await });
            while work.waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
            assert_eq!(work.run(|_| 8).await, Err(Busy));
            go_tx.send(()).unwrap();
            assert_eq!(running.await.unwrap(), Ok(()));
            assert_eq!(waiting.await.unwrap(), Ok(7));
        });
    }

    #[test]
    fn names_are_escaped_and_capped_for_the_log() {
        assert_eq!(loggable("alice"), "alice");
        assert_eq!(loggable("a\nforged line"), "a\\nforged line");
        let long = loggable(&"x".repeat(1 << 20));
        assert_eq!(long.chars().count(), MAX_USERNAME_BYTES + 1);
    }

    #[test]
    fn policy_usernames_and_scopes() {
        assert!(check_password("short", 10).unwrap_err().contains("at least 10"));
        assert!(check_password("          ", 10).unwrap_err().contains("blank"));
        assert!(check_password(&"y".repeat(2000), 10).is_err());
        check_password("long enough pw", 10).unwrap();
        validate_username("alice.o-b_2@city").unwrap();
        for bad in ["", "a b", "ä", "x/y", &"n".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
        let e = validate_username(&"n".repeat(1 << 20)).unwrap_err();
        assert!(e.len() < 200 && e.contains("too long (1048576 bytes)"), "{e}");
        assert_eq!(Scope::from_lists(None, None).unwrap(), None);
        let s = Scope::from_lists(Some("cam2, cam1,cam2"), None).unwrap().unwrap();
        assert_eq!(
            (s.cameras.as_slice(), s.grid_cells.len()),
            (["cam1".to_string(), "cam2".into()].as_slice(), 0)
        );
        assert!(Scope::from_lists(Some(""), Some(" ")).unwrap_err().contains("at least one"));
        assert!(Scope::from_lists(Some("a b"), None).unwrap_err().contains("`a b`"));
        assert_eq!(
            Scope::describe(Some(&Scope {
                cameras: vec!["a".into()],
                grid_cells: vec!["C3".into()]
            })),
            "cameras a; grid cells C3"
        );
        assert_eq!(Scope::describe(None), "all cameras");
    }
}
